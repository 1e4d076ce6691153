/* core/chanlock.c alone, no Lua: acquire+release of a free key, and a handoff between
 * two requests (release hands the key to the waiter, which releases in turn). Prints
 * medians of 5 runs in ns per pair. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "chanlock.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median5(double *v) {
  qsort(v, 5, sizeof *v, cmp);
  return v[2];
}

int main(void) {
  enum { N = 2000000 };
  chanlock cl;
  chanlock_init(&cl);
  char a, b;
  chanlock_req ra, rb;
  double un[5], co[5];
  for (int r = 0; r < 5; r++) {
    double t0 = now();
    for (int i = 0; i < N; i++) {
      chanlock_req_init(&ra, &a, NULL);
      if (chanlock_acquire(&cl, &ra, "123456789012345678", 18) != CHANLOCK_GRANTED) return 1;
      chanlock_release(&cl, &ra);
    }
    un[r] = (now() - t0) * 1e9 / N;
    /* contended: a holds, b queues; each step the holder releases (handing over) and
     * queues again behind the new holder */
    chanlock_req_init(&ra, &a, NULL);
    chanlock_req_init(&rb, &b, NULL);
    chanlock_acquire(&cl, &ra, "123456789012345678", 18);
    chanlock_acquire(&cl, &rb, "123456789012345678", 18);
    chanlock_req *holder = &ra;
    t0 = now();
    for (int i = 0; i < N; i++) {
      chanlock_req *next = chanlock_release(&cl, holder);
      chanlock_acquire(&cl, holder, "123456789012345678", 18);
      holder = next;
    }
    co[r] = (now() - t0) * 1e9 / N;
    chanlock_release(&cl, holder);
    chanlock_release(&cl, holder == &ra ? &rb : &ra);
  }
  printf("%.1f %.1f\n", median5(un), median5(co));
  chanlock_close(&cl);
  return 0;
}
