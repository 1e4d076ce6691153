/* Cost of the bucket layer alone: enqueue + poll + done with Discord-like headers,
 * over 20 buckets, in ns per request (no I/O). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ratelimit.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 2000000;
  rate_limiter *rl = rate_new(NULL);
  rate_set_global_per_second(rl, 0);
  rate_req reqs[20];
  memset(reqs, 0, sizeof reqs);
  char paths[20][64];
  for (int i = 0; i < 20; i++) snprintf(paths[i], sizeof paths[i], "/channels/13000000000000%05d/messages", i);
  rate_response resp;
  rate_response_init(&resp, 200);
  const char *h[][2] = {{"x-ratelimit-bucket", "f7636bd717b6c7b28a00ec39bb138eb5"},
                        {"x-ratelimit-limit", "1000000000"},
                        {"x-ratelimit-remaining", "999999999"},
                        {"x-ratelimit-reset", "1700000000.000"},
                        {"x-ratelimit-reset-after", "100000.000"}};
  double t0 = now_s();
  for (long k = 0; k < n; k++) {
    int i = (int)(k % 20);
    double t = t0 + (double)k * 1e-6;
    rate_enqueue(rl, &reqs[i], "POST", paths[i], 0);
    double again;
    rate_req *r = rate_poll(rl, t, &again);
    if (r != &reqs[i]) {
      fprintf(stderr, "unexpected poll result at %ld\n", k);
      return 1;
    }
    rate_response_init(&resp, 200);
    for (int j = 0; j < 5; j++)
      rate_parse_header(&resp, h[j][0], strlen(h[j][0]), h[j][1], strlen(h[j][1]));
    rate_done(rl, r, t, &resp);
  }
  double el = now_s() - t0;
  printf("%.1f\n", el / (double)n * 1e9);
  rate_free(rl);
  return 0;
}
