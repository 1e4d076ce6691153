/* Rate-limit scheduler, clock injected: what may go when, given Discord's headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ratelimit.h"

#define NREQ 64

typedef struct {
  rate_limiter *rl;
  rate_req req[NREQ];
} fixture;

static int setup(void **state) {
  static fixture f;
  memset(&f, 0, sizeof f);
  f.rl = rate_new(NULL);
  assert_non_null(f.rl);
  for (int i = 0; i < NREQ; i++) f.req[i].data = (void *)(intptr_t)i;
  *state = &f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  rate_free(f->rl);
  return 0;
}

static int idx(rate_req *r) { return r ? (int)(intptr_t)r->data : -1; }

/* Polls once; returns the index of the request that may go, or -1. */
static int poll1(fixture *f, double now, double *again) {
  double a;
  rate_req *r = rate_poll(f->rl, now, again ? again : &a);
  return idx(r);
}

static rate_response limits(int status, const char *bucket, int limit, int remaining,
                          double reset, double reset_after) {
  rate_response r;
  rate_response_init(&r, status);
  if (bucket) {
    snprintf(r.bucket, sizeof r.bucket, "%s", bucket);
    r.has_bucket = true;
  }
  r.limit = limit;
  r.has_limit = true;
  r.remaining = remaining;
  r.has_remaining = true;
  r.reset = reset;
  r.has_reset = true;
  r.reset_after = reset_after;
  r.has_reset_after = true;
  return r;
}

static void enq(fixture *f, int i, const char *method, const char *path) {
  assert_int_equal(rate_enqueue(f->rl, &f->req[i], method, path, 0), 0);
}

static void test_route_templates(void **state) {
  (void)state;
  char route[256], major[256];
  assert_int_equal(rate_route("POST", "/channels/123/messages", route, sizeof route, major,
                            sizeof major), 0);
  assert_string_equal(route, "POST /channels/:id/messages");
  assert_string_equal(major, "channels/123");

  rate_route("PUT", "/channels/9/messages/77/reactions/%F0%9F%91%8D/@me", route, sizeof route,
           major, sizeof major);
  assert_string_equal(route, "PUT /channels/:id/messages/:id/reactions/:emoji/@me");
  assert_string_equal(major, "channels/9");

  rate_route("GET", "/guilds/5/members?limit=10", route, sizeof route, major, sizeof major);
  assert_string_equal(route, "GET /guilds/:id/members");
  assert_string_equal(major, "guilds/5");

  int fl = rate_route("PATCH", "/webhooks/42/tok_en/messages/@original", route, sizeof route,
                    major, sizeof major);
  assert_string_equal(route, "PATCH /webhooks/:id/:token/messages/@original");
  assert_string_equal(major, "webhooks/42/tok_en");
  assert_int_equal(fl, RL_EXEMPT);

  fl = rate_route("POST", "/interactions/11/abc/callback", route, sizeof route, major,
                sizeof major);
  assert_string_equal(route, "POST /interactions/:id/:token/callback");
  assert_string_equal(major, "interactions/11/abc");
  assert_int_equal(fl, RL_PRIORITY | RL_EXEMPT);

  fl = rate_route("PUT", "/applications/8/guilds/5/commands", route, sizeof route, major,
                sizeof major);
  assert_string_equal(route, "PUT /applications/:id/guilds/:id/commands");
  assert_string_equal(major, "");
  assert_int_equal(fl, 0);

  assert_int_equal(rate_route("GET", "/channels/1", route, 8, major, sizeof major), -1);
}

/* Before the hash is known, one at a time; then Remaining decides. */
static void test_learning_a_bucket(void **state) {
  fixture *f = *state;
  double again;
  for (int i = 0; i < 6; i++) enq(f, i, "POST", "/channels/1/messages");
  assert_int_equal(poll1(f, 0, &again), 0);
  assert_int_equal(poll1(f, 0, &again), -1); /* unknown bucket: the first must answer */
  assert_true(again == RL_NEVER);
  assert_true(strncmp(rate_req_bucket(&f->req[0]), "?POST /channels/:id/messages|", 29) == 0);

  rate_response r = limits(200, "abcd", 5, 4, 1000.5, 2.5);
  assert_int_equal(rate_done(f->rl, &f->req[0], 0.1, &r), RL_RESULT_DONE);
  assert_string_equal(rate_req_bucket(&f->req[0]), "abcd|channels/1");
  assert_true(rate_events(f->rl) & RL_EV_BUCKET_LEARNED);
  /* four left in this window: several in flight at once, in FIFO order */
  for (int i = 1; i <= 4; i++) assert_int_equal(poll1(f, 0.1, &again), i);
  assert_int_equal(poll1(f, 0.1, &again), -1);
  assert_true(fabs(again - 2.6) < 1e-9); /* reset_after counted from the response */
  assert_string_equal(rate_req_bucket(&f->req[5]), "abcd|channels/1");
  assert_int_equal(poll1(f, 2.59, &again), -1);
  assert_int_equal(poll1(f, 2.6, &again), 5);
}

/* Two routes answering with one hash share its capacity (for one resource). */
static void test_two_routes_share_a_hash(void **state) {
  fixture *f = *state;
  enq(f, 0, "PATCH", "/channels/1/messages/10");
  enq(f, 1, "DELETE", "/channels/1/messages/11");
  assert_int_equal(poll1(f, 0, NULL), 0);
  assert_int_equal(poll1(f, 0, NULL), 1); /* different routes, both unknown */
  rate_response r = limits(200, "shared", 3, 2, 500, 5);
  rate_done(f->rl, &f->req[0], 0.01, &r);
  r = limits(204, "shared", 3, 1, 500, 5);
  rate_done(f->rl, &f->req[1], 0.02, &r);
  assert_string_equal(rate_req_bucket(&f->req[0]), rate_req_bucket(&f->req[1]));
  /* one left between both routes */
  enq(f, 2, "PATCH", "/channels/1/messages/12");
  enq(f, 3, "DELETE", "/channels/1/messages/13");
  assert_int_equal(poll1(f, 0.03, NULL), 2);
  double again;
  assert_int_equal(poll1(f, 0.03, &again), -1);
  assert_true(fabs(again - 5.01) < 1e-9); /* the window's end, from the first answer */
  assert_int_equal(poll1(f, 5.01, NULL), 3);
}

/* The same hash on another channel is another bucket: exhausting one holds nothing else. */
static void test_top_level_resources_are_separate(void **state) {
  fixture *f = *state;
  enq(f, 0, "POST", "/channels/1/messages");
  assert_int_equal(poll1(f, 0, NULL), 0);
  rate_response r = limits(200, "msg", 1, 0, 100, 5);
  rate_done(f->rl, &f->req[0], 0.01, &r);
  enq(f, 1, "POST", "/channels/1/messages");
  enq(f, 2, "POST", "/channels/2/messages");
  enq(f, 3, "POST", "/guilds/1/channels");
  assert_int_equal(poll1(f, 0.02, NULL), 2); /* channel 1 is exhausted, 2 is not */
  assert_int_equal(poll1(f, 0.02, NULL), 3);
  assert_int_equal(poll1(f, 0.02, NULL), -1);
  assert_string_equal(rate_req_bucket(&f->req[2]), "msg|channels/2");
  /* channel 2's bucket is fresh: one at a time until its own headers came */
  enq(f, 4, "POST", "/channels/2/messages");
  assert_int_equal(poll1(f, 0.02, NULL), -1);
  r = limits(200, "msg", 5, 4, 100, 5);
  rate_done(f->rl, &f->req[2], 0.03, &r);
  assert_int_equal(poll1(f, 0.03, NULL), 4);
  /* webhook tokens and interaction tokens are resources of their own */
  enq(f, 5, "POST", "/webhooks/7/tokA");
  enq(f, 6, "POST", "/webhooks/7/tokB");
  assert_int_equal(poll1(f, 0.03, NULL), 5);
  assert_int_equal(poll1(f, 0.03, NULL), 6);
}

/* Reset-After has decimals: 0.25 s means 250 ms, not 0 and not 250 s. */
static void test_reset_after_decimals(void **state) {
  fixture *f = *state;
  double again;
  enq(f, 0, "GET", "/channels/1/messages");
  enq(f, 1, "GET", "/channels/1/messages");
  assert_int_equal(poll1(f, 10, NULL), 0);
  rate_response r;
  rate_response_init(&r, 200);
  const char *h[][2] = {{"X-RateLimit-Bucket", "b1"}, {"X-RateLimit-Limit", "1"},
                        {"x-ratelimit-remaining", "0"}, {"X-RateLimit-Reset", "1700000000.250"},
                        {"X-RateLimit-Reset-After", " 0.250 "}};
  for (size_t i = 0; i < 5; i++)
    rate_parse_header(&r, h[i][0], strlen(h[i][0]), h[i][1], strlen(h[i][1]));
  assert_true(r.has_reset_after && fabs(r.reset_after - 0.25) < 1e-12);
  assert_true(fabs(r.reset - 1700000000.25) < 1e-6);
  rate_done(f->rl, &f->req[0], 10, &r);
  assert_int_equal(poll1(f, 10.2, &again), -1);
  assert_true(fabs(again - 10.25) < 1e-9);
  assert_int_equal(poll1(f, 10.25, &again), 1);
}

/* A global 429 pauses every route (not interaction callbacks); the request is retried
 * first, after retry_after seconds (a float). */
static void test_global_pause(void **state) {
  fixture *f = *state;
  double again;
  enq(f, 0, "POST", "/channels/1/messages");
  enq(f, 1, "POST", "/channels/2/messages");
  assert_int_equal(poll1(f, 0, NULL), 0);
  assert_int_equal(poll1(f, 0, NULL), 1);
  rate_response r;
  rate_response_init(&r, 429);
  const char *body = "{\"message\": \"You are being rate limited.\", \"retry_after\": 0.3, "
                     "\"global\": true}";
  rate_parse_header(&r, "Retry-After", 11, "1", 1);
  rate_parse_429_body(&r, body, strlen(body));
  assert_true(r.global && fabs(r.retry_after - 0.3) < 1e-12);
  assert_int_equal(rate_done(f->rl, &f->req[0], 0.01, &r), RL_RESULT_RETRY);
  assert_true(rate_events(f->rl) & RL_EV_GLOBAL_PAUSE);
  assert_true(rate_req_queued(&f->req[0]));
  rate_response ok = limits(200, "m", 5, 4, 100, 5);
  rate_done(f->rl, &f->req[1], 0.01, &ok);
  enq(f, 2, "POST", "/channels/2/messages");
  enq(f, 3, "GET", "/guilds/1");
  enq(f, 4, "POST", "/interactions/9/tok/callback");
  assert_int_equal(poll1(f, 0.02, &again), 4); /* exempt, and first */
  assert_int_equal(poll1(f, 0.02, &again), -1);
  assert_true(fabs(again - 0.31) < 1e-9);
  assert_true(fabs(rate_global_paused_until(f->rl) - 0.31) < 1e-9);
  int got[3];
  for (int i = 0; i < 3; i++) got[i] = poll1(f, 0.31, NULL);
  assert_int_equal(poll1(f, 0.31, NULL), -1);
  /* all three go; request 0 was at the head of its own bucket */
  int seen = 0;
  for (int i = 0; i < 3; i++) seen |= 1 << got[i];
  assert_int_equal(seen, (1 << 0) | (1 << 2) | (1 << 3));
  assert_int_equal(rate_invalid_count(f->rl, 0.31), 1);
}

/* A bucket 429 waits retry_after, keeps FIFO order, and holds only that bucket. */
static void test_bucket_429_keeps_order(void **state) {
  fixture *f = *state;
  double again;
  enq(f, 0, "POST", "/channels/1/messages");
  assert_int_equal(poll1(f, 0, NULL), 0);
  rate_response r = limits(200, "m", 5, 4, 100, 5);
  rate_done(f->rl, &f->req[0], 0, &r);
  enq(f, 1, "POST", "/channels/1/messages");
  enq(f, 2, "POST", "/channels/1/messages");
  assert_int_equal(poll1(f, 0, NULL), 1);
  r = limits(429, "m", 5, 0, 100, 0.3);
  r.retry_after = 0.3;
  r.has_retry_after = true;
  r.scope = RL_SCOPE_SHARED;
  assert_int_equal(rate_done(f->rl, &f->req[1], 0.1, &r), RL_RESULT_RETRY);
  assert_int_equal(rate_invalid_count(f->rl, 0.1), 0); /* shared scope is not our fault */
  enq(f, 3, "POST", "/channels/2/messages");
  assert_int_equal(poll1(f, 0.1, &again), 3);
  assert_int_equal(poll1(f, 0.1, &again), -1);
  assert_true(fabs(again - 0.4) < 1e-9);
  assert_int_equal(poll1(f, 0.4, NULL), 1); /* the retried one before the one behind it */
}

/* Responses arriving out of order never give back capacity already spent. */
static void test_out_of_order_responses(void **state) {
  fixture *f = *state;
  enq(f, 0, "POST", "/channels/1/messages");
  assert_int_equal(poll1(f, 0, NULL), 0);
  rate_response r = limits(200, "m", 4, 3, 100, 5);
  rate_done(f->rl, &f->req[0], 0, &r);
  for (int i = 1; i <= 4; i++) enq(f, i, "POST", "/channels/1/messages");
  for (int i = 1; i <= 3; i++) assert_int_equal(poll1(f, 0, NULL), i);
  assert_int_equal(poll1(f, 0, NULL), -1);
  /* the last one sent answers first, then the first one with a higher Remaining */
  r = limits(200, "m", 4, 0, 100, 4.9);
  rate_done(f->rl, &f->req[3], 0.1, &r);
  r = limits(200, "m", 4, 2, 100, 4.95);
  rate_done(f->rl, &f->req[1], 0.11, &r);
  assert_int_equal(poll1(f, 0.12, NULL), -1);
  /* request 2's response is delayed past the reset: the refill happens... */
  double again;
  assert_int_equal(poll1(f, 4.9, &again), -1);
  assert_int_equal(poll1(f, 5.0, &again), 4);
  /* ...and its stale headers from the old window (Remaining 1) change nothing */
  r = limits(200, "m", 4, 1, 100, 4.9);
  rate_done(f->rl, &f->req[2], 5.01, &r);
  for (int i = 5; i <= 9; i++) enq(f, i, "POST", "/channels/1/messages");
  /* the refill counted request 2 still in flight: 4 - 1 = 3, one used by request 4 */
  assert_int_equal(poll1(f, 5.02, NULL), 5);
  assert_int_equal(poll1(f, 5.02, NULL), 6);
  assert_int_equal(poll1(f, 5.02, NULL), -1);
  /* the new window's first answer: it is newer, so it counts, minus what went after it */
  r = limits(200, "m", 4, 3, 105, 4.98);
  rate_done(f->rl, &f->req[4], 5.03, &r);
  assert_int_equal(poll1(f, 5.03, NULL), 7);
  assert_int_equal(poll1(f, 5.03, NULL), -1);
}

/* Requests flagged ordered never overlap within their bucket. */
static void test_ordered_requests(void **state) {
  fixture *f = *state;
  enq(f, 0, "POST", "/channels/1/messages");
  assert_int_equal(poll1(f, 0, NULL), 0);
  rate_response r = limits(200, "m", 5, 4, 100, 5);
  rate_done(f->rl, &f->req[0], 0, &r);
  for (int i = 1; i <= 3; i++)
    assert_int_equal(rate_enqueue(f->rl, &f->req[i], "POST", "/channels/1/messages",
                                RL_ORDERED), 0);
  assert_int_equal(poll1(f, 0, NULL), 1);
  assert_int_equal(poll1(f, 0, NULL), -1);
  r = limits(200, "m", 5, 3, 100, 5);
  rate_done(f->rl, &f->req[1], 0.01, &r);
  assert_int_equal(poll1(f, 0.01, NULL), 2);
  /* a 5xx retry keeps its place at the head */
  rate_response bad;
  rate_response_init(&bad, 502);
  assert_int_equal(rate_done(f->rl, &f->req[2], 0.02, &bad), RL_RESULT_DONE);
  assert_int_equal(rate_requeue(f->rl, &f->req[2], 0.5), 0);
  double again;
  assert_int_equal(poll1(f, 0.02, &again), -1);
  assert_true(fabs(again - 0.5) < 1e-9);
  assert_int_equal(poll1(f, 0.5, NULL), 2);
  /* cancelling the in-flight one frees the turn */
  rate_cancel(f->rl, &f->req[2]);
  assert_int_equal(poll1(f, 0.5, NULL), 3);
}

/* The proactive global limit: 50 per second, interaction callbacks and webhook follow-ups
 * exempt, callbacks ahead of everything. */
static void test_proactive_global_limit(void **state) {
  fixture *f = *state;
  rate_set_global_per_second(f->rl, 5);
  for (int i = 0; i < 8; i++) {
    char path[64];
    snprintf(path, sizeof path, "/channels/%d/typing", i + 1);
    enq(f, i, "POST", path);
  }
  for (int i = 0; i < 3; i++) assert_true(poll1(f, 0, NULL) >= 0);
  for (int i = 0; i < 2; i++) assert_true(poll1(f, 0.2, NULL) >= 0);
  double again;
  assert_int_equal(poll1(f, 0.5, &again), -1);
  assert_true(fabs(again - 1.05) < 1e-9); /* a sliding window, with 50 ms of slack */
  enq(f, 20, "POST", "/webhooks/3/tok");
  enq(f, 21, "POST", "/interactions/4/tok/callback");
  assert_int_equal(poll1(f, 0.5, NULL), 21);
  assert_int_equal(poll1(f, 0.5, NULL), 20);
  assert_int_equal(poll1(f, 0.5, NULL), -1);
  for (int i = 0; i < 3; i++) assert_true(poll1(f, 1.05, NULL) >= 5);
  assert_int_equal(poll1(f, 1.05, NULL), -1); /* the two sent at 0.2 still count */
  assert_int_equal(poll1(f, 1.25, &again), -1); /* all three remaining went at 1.05 */
  assert_true(again == RL_NEVER);
}

/* Invalid requests: counted over 10 minutes, a warning and a slower pace well before
 * Discord's 10,000, and forgotten once the window passes. */
static void test_invalid_request_accounting(void **state) {
  fixture *f = *state;
  rate_config cfg;
  rate_config_default(&cfg);
  cfg.invalid_warn = 20;
  cfg.invalid_slow = 40;
  cfg.global_per_second = 50;
  rate_free(f->rl);
  f->rl = rate_new(&cfg);
  rate_response r;
  double t = 0;
  for (int i = 0; i < 40; i++) {
    char path[64];
    snprintf(path, sizeof path, "/channels/%d/messages", 100 + i);
    enq(f, 0, "POST", path);
    assert_int_equal(poll1(f, t, NULL), 0);
    rate_response_init(&r, i % 2 ? 403 : 401);
    rate_done(f->rl, &f->req[0], t, &r);
    unsigned ev = rate_events(f->rl);
    if (i == 19) assert_true(ev & RL_EV_INVALID_WARN);
    else if (i == 39) assert_true(ev & RL_EV_INVALID_SLOW);
    else assert_int_equal(ev & (RL_EV_INVALID_WARN | RL_EV_INVALID_SLOW), 0);
    t += 1.5;
  }
  assert_int_equal(rate_invalid_count(f->rl, t), 40);
  /* slowed: 5 per second instead of 50 */
  for (int i = 0; i < 10; i++) {
    char path[64];
    snprintf(path, sizeof path, "/channels/%d/typing", i + 1);
    enq(f, i, "POST", path);
  }
  int sent = 0;
  while (poll1(f, t + 2, NULL) >= 0) sent++;
  assert_int_equal(sent, 5);
  /* ten minutes later none count any more, and the pace is back */
  assert_int_equal(rate_invalid_count(f->rl, t + 700), 0);
  sent = 0;
  while (poll1(f, t + 700, NULL) >= 0) sent++;
  assert_int_equal(sent, 5);
}

/* A route without rate-limit headers is not limited per route. */
static void test_unlimited_route_and_cancel(void **state) {
  fixture *f = *state;
  enq(f, 0, "GET", "/gateway/bot");
  enq(f, 1, "GET", "/gateway/bot");
  assert_int_equal(poll1(f, 0, NULL), 0);
  assert_int_equal(poll1(f, 0, NULL), -1);
  rate_cancel(f->rl, &f->req[1]);
  assert_false(rate_req_queued(&f->req[1]));
  rate_response r;
  rate_response_init(&r, 200);
  rate_done(f->rl, &f->req[0], 0, &r);
  for (int i = 2; i < 5; i++) enq(f, i, "GET", "/gateway/bot");
  for (int i = 2; i < 5; i++) assert_int_equal(poll1(f, 0, NULL), i);
  /* a transport failure on a learning bucket lets the next one try */
  enq(f, 5, "GET", "/channels/5");
  enq(f, 6, "GET", "/channels/5");
  assert_int_equal(poll1(f, 0, NULL), 5);
  assert_int_equal(poll1(f, 0, NULL), -1);
  rate_response_init(&r, 0);
  rate_done(f->rl, &f->req[5], 0, &r);
  assert_int_equal(poll1(f, 0, NULL), 6);
  /* idle buckets are forgotten */
  rate_response_init(&r, 200);
  for (int i = 2; i < 5; i++) rate_done(f->rl, &f->req[i], 0, &r);
  rate_done(f->rl, &f->req[6], 0, &r);
  assert_true(rate_bucket_count(f->rl) > 0);
  double again;
  poll1(f, 1000, &again);
  assert_int_equal(rate_bucket_count(f->rl), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_route_templates),
    cmocka_unit_test_setup_teardown(test_learning_a_bucket, setup, teardown),
    cmocka_unit_test_setup_teardown(test_two_routes_share_a_hash, setup, teardown),
    cmocka_unit_test_setup_teardown(test_top_level_resources_are_separate, setup, teardown),
    cmocka_unit_test_setup_teardown(test_reset_after_decimals, setup, teardown),
    cmocka_unit_test_setup_teardown(test_global_pause, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bucket_429_keeps_order, setup, teardown),
    cmocka_unit_test_setup_teardown(test_out_of_order_responses, setup, teardown),
    cmocka_unit_test_setup_teardown(test_ordered_requests, setup, teardown),
    cmocka_unit_test_setup_teardown(test_proactive_global_limit, setup, teardown),
    cmocka_unit_test_setup_teardown(test_invalid_request_accounting, setup, teardown),
    cmocka_unit_test_setup_teardown(test_unlimited_route_and_cancel, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
