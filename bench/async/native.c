/* The C side of the async benchmarks (medians of 5 runs):
 *   native chanlock        core/chanlock.c alone, no Lua: acquire+release of a free key,
 *                          and a handoff between two requests, in ns per pair
 *   native forkexec COUNT  the baseline for core.proc.run: fork, exec /bin/true, waitpid
 *                          in a plain loop, in microseconds per spawn */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

#define KEY "123456789012345678", 18

static int bench_chanlock(void) {
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
      if (chanlock_acquire(&cl, &ra, KEY) != CHANLOCK_GRANTED)
        return 1;
      chanlock_release(&cl, &ra);
    }
    un[r] = (now() - t0) * 1e9 / N;
    /* contended: a holds, b queues; each step the holder releases (handing over) and
     * queues again behind the new holder */
    chanlock_req_init(&ra, &a, NULL);
    chanlock_req_init(&rb, &b, NULL);
    chanlock_acquire(&cl, &ra, KEY);
    chanlock_acquire(&cl, &rb, KEY);
    chanlock_req *holder = &ra;
    t0 = now();
    for (int i = 0; i < N; i++) {
      chanlock_req *next = chanlock_release(&cl, holder);
      chanlock_acquire(&cl, holder, KEY);
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

static int bench_forkexec(int n) {
  double runs[5];
  for (int r = 0; r < 5; r++) {
    double t0 = now();
    for (int i = 0; i < n; i++) {
      pid_t pid = fork();
      if (pid < 0) {
        perror("fork");
        return 1;
      }
      if (pid == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
      }
      int st;
      if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "child failed\n");
        return 1;
      }
    }
    runs[r] = (now() - t0) * 1e6 / n;
  }
  printf("%.1f\n", median5(runs));
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "chanlock") == 0)
    return bench_chanlock();
  if (argc > 1 && strcmp(argv[1], "forkexec") == 0)
    return bench_forkexec(argc > 2 ? atoi(argv[2]) : 300);
  fprintf(stderr, "usage: %s chanlock | forkexec [count]\n", argv[0]);
  return 2;
}
