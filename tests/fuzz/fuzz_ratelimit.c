// fuzz-sources: core/ratelimit.c
/* libFuzzer target: the rate-limit scheduler driven by arbitrary operations and arbitrary
 * response headers and 429 bodies (what a server sends is untrusted). Checks that a
 * request polled was queued, that every request is in exactly one state, that time
 * requested for a retry is never in the past, and that nothing leaks or crashes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

#define NREQ 16

static const char *paths[] = {
  "/channels/1/messages", "/channels/2/messages", "/channels/1/messages/5",
  "/guilds/3/members", "/webhooks/4/tok/messages/@original", "/interactions/5/t/callback",
  "/applications/6/commands", "/channels/1/messages/7/reactions/%F0%9F%91%8D/@me", "/gateway/bot",
};
static const char *methods[] = {"GET", "POST", "PATCH", "DELETE", "PUT"};
static const char *names[] = {"x-ratelimit-bucket", "x-ratelimit-limit", "x-ratelimit-remaining",
                              "x-ratelimit-reset", "x-ratelimit-reset-after", "retry-after",
                              "x-ratelimit-global", "x-ratelimit-scope"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  rate_limiter *rl = rate_new(NULL);
  if (!rl) return 0;
  rate_set_global_per_second(rl, 1 + (size ? data[0] % 60 : 50));
  rate_req reqs[NREQ];
  memset(reqs, 0, sizeof reqs);
  double now = 0;
  size_t i = 1;
  while (i + 2 <= size) {
    uint8_t op = data[i++], arg = data[i++];
    rate_req *r = &reqs[arg % NREQ];
    switch (op % 6) {
    case 0:
      if (!rate_req_queued(r) && !rate_req_inflight(r))
        rate_enqueue(rl, r, methods[(arg >> 4) % 5], paths[op / 6 % 9], (unsigned)(op >> 6) & RL_ORDERED);
      break;
    case 1: {
      double again;
      rate_req *p = rate_poll(rl, now, &again);
      if (p && !rate_req_inflight(p)) abort();
      if (!p && again != RL_NEVER && again < now - 1e-9) abort();
      break;
    }
    case 2: {
      if (!rate_req_inflight(r)) break;
      static const int statuses[] = {200, 204, 400, 401, 403, 404, 429, 500, 502, 0};
      rate_response resp;
      rate_response_init(&resp, statuses[arg % 10]);
      /* a few headers whose values come from the input */
      size_t nh = op >> 5;
      for (size_t h = 0; h < nh && i + 1 < size; h++) {
        const char *name = names[data[i] % 8];
        size_t vlen = data[i + 1] % 24;
        i += 2;
        if (i + vlen > size) vlen = size - i;
        rate_parse_header(&resp, name, strlen(name), (const char *)data + i, vlen);
        i += vlen;
      }
      if (resp.status == 429 && i < size) {
        size_t blen = (size - i) < 64 ? size - i : 64;
        rate_parse_429_body(&resp, (const char *)data + i, blen);
        i += blen;
      }
      enum rate_result res = rate_done(rl, r, now, &resp);
      if (res == RL_RESULT_RETRY && !rate_req_queued(r)) abort();
      if (res == RL_RESULT_DONE && (rate_req_queued(r) || rate_req_inflight(r))) abort();
      if (res == RL_RESULT_DONE && resp.status >= 500 && (arg & 1))
        rate_requeue(rl, r, now + (double)(arg % 7) / 10);
      break;
    }
    case 3:
      rate_cancel(rl, r);
      break;
    case 4:
      now += (double)arg / 64.0;
      break;
    case 5: {
      char route[128], major[128];
      rate_route(methods[arg % 5], paths[op / 6 % 9], route, sizeof route, major, sizeof major);
      break;
    }
    }
    rate_events(rl);
    (void)rate_invalid_count(rl, now);
  }
  for (int k = 0; k < NREQ; k++) rate_cancel(rl, &reqs[k]);
  rate_free(rl);
  return 0;
}
