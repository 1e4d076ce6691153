/* Discord REST rate limits as a scheduler: pure logic, no I/O, the clock injected.
 *
 * The caller owns the requests (an rate_req embedded in its own struct) and the clock
 * (seconds on a monotonic scale, as doubles). The conversation is:
 *
 *   rate_enqueue(rl, req, "POST", "/channels/1/messages", flags);   queue it
 *   while ((r = rate_poll(rl, now, &again)) != NULL) send(r);        what may go now
 *   arm a timer for `again` (RL_NEVER: wait for a response or a new request)
 *   rate_done(rl, r, now, &response)                                 headers and status
 *     -> RL_RESULT_RETRY: the limiter queued r again at the head (429); poll later
 *     -> RL_RESULT_DONE: r is out of the limiter (the caller may rate_requeue() it, for
 *        example after a 5xx, to keep its place at the head of its bucket)
 *
 * What it implements (facts from Discord's documentation, see PROTOCOL-discord.md):
 * - a route's bucket is the X-RateLimit-Bucket hash plus the route's top-level resource
 *   (channels/ID, guilds/ID, webhooks/ID/TOKEN, interactions/ID/TOKEN); until a route's
 *   hash is known, and until a bucket has shown its headers once, one request at a time;
 * - Reset-After is fractional seconds; X-RateLimit-Reset (epoch) identifies the window,
 *   so a stale response from an older window never gives back spent capacity;
 * - FIFO per bucket, several requests in flight while Remaining allows (or one at a time
 *   for requests flagged RL_ORDERED, whose arrival order matters);
 * - 429: wait retry_after (seconds, float) then retry at the head of the queue; a global
 *   429 pauses every route except interaction callbacks and webhook follow-ups;
 * - a proactive global limit (global_per_second, default 50) those are exempt from;
 * - interaction callbacks are polled before anything else;
 * - invalid requests (401, 403, 429 except scope "shared") counted over 10 minutes, with
 *   a warning threshold and a slower global pace once it is crossed. */
#ifndef CC_RATELIMIT_H
#define CC_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>

#define RL_NEVER (-1.0)

/* Request flags; rate_enqueue() adds RL_PRIORITY and RL_EXEMPT from the route itself. */
enum {
  RL_PRIORITY = 1 << 0, /* interaction callback: polled before anything else */
  RL_EXEMPT = 1 << 1,   /* not counted by nor held by the global limit */
  RL_ORDERED = 1 << 2,  /* never in flight together with another of its bucket */
};

enum rate_scope { RL_SCOPE_NONE, RL_SCOPE_USER, RL_SCOPE_GLOBAL, RL_SCOPE_SHARED };

enum rate_result { RL_RESULT_DONE = 0, RL_RESULT_RETRY = 1 };

/* Events rate_done() reports through rate_events(), for the caller to log. */
enum {
  RL_EV_INVALID_WARN = 1 << 0, /* the invalid-request count crossed invalid_warn */
  RL_EV_INVALID_SLOW = 1 << 1, /* ... crossed invalid_slow: the global pace slowed */
  RL_EV_GLOBAL_PAUSE = 1 << 2, /* a global 429 paused every route */
  RL_EV_BUCKET_LEARNED = 1 << 3,
};

typedef struct rate_bucket rate_bucket;
typedef struct rate_limiter rate_limiter;

typedef struct rate_req {
  struct rate_req *next, *prev; /* the bucket's queue or in-flight list */
  rate_bucket *bucket;
  unsigned long seq;          /* dispatch order within the bucket */
  double not_before;          /* set by rate_requeue() */
  unsigned flags;
  int state;                  /* internal */
  void *data;                 /* the caller's */
} rate_req;

typedef struct rate_config {
  double global_per_second; /* 0 = no proactive global limit; default 50 */
  int invalid_warn;         /* default 2500 */
  int invalid_slow;         /* default 5000: beyond it the global pace is divided by 10 */
  double invalid_window;    /* default 600 s */
  double global_window;     /* the global limit's sliding window: 1.05 s (Discord counts per
                             * second; 50 ms of slack absorbs network jitter) */
} rate_config;

/* What the caller learnt from a response (or status 0 for a transport failure). */
typedef struct rate_response {
  int status;
  bool has_bucket, has_limit, has_remaining, has_reset, has_reset_after, has_retry_after;
  char bucket[64];
  int limit, remaining;
  double reset;       /* X-RateLimit-Reset, epoch seconds */
  double reset_after; /* X-RateLimit-Reset-After, seconds */
  double retry_after; /* body retry_after, else the Retry-After header */
  bool global;        /* X-RateLimit-Global or the body's "global": true */
  enum rate_scope scope;
} rate_response;

void rate_config_default(rate_config *cfg);
/* Allocates a limiter; NULL on allocation failure. cfg NULL means the defaults. */
rate_limiter *rate_new(const rate_config *cfg);
/* Frees the limiter; requests still queued or in flight are simply forgotten. */
void rate_free(rate_limiter *rl);
void rate_set_global_per_second(rate_limiter *rl, double per_second);

/* Route of a request: "METHOD /template" with ids replaced, and its top-level resource
 * ("channels/1", "webhooks/2/TOKEN", "" when none). Returns the flags the route implies
 * (RL_PRIORITY|RL_EXEMPT for interaction callbacks, RL_EXEMPT for webhook tokens), or
 * -1 when the buffers are too small. Pure; exposed for tests and logs. */
int rate_route(const char *method, const char *path, char *route, size_t route_len,
             char *major, size_t major_len);

/* Queues req (FIFO in its bucket). Returns 0, or -ENOMEM / -EINVAL. */
int rate_enqueue(rate_limiter *rl, rate_req *req, const char *method, const char *path,
               unsigned flags);
/* Returns a request that may be sent now (it is then in flight), or NULL, setting
 * *again to the time at which to poll again (RL_NEVER: only a response or a new request
 * can change anything). */
rate_req *rate_poll(rate_limiter *rl, double now, double *again);
/* Feeds the response of an in-flight request. */
enum rate_result rate_done(rate_limiter *rl, rate_req *req, double now, const rate_response *resp);
/* Puts a request that rate_done() let go back at the head of its bucket, not to be sent
 * before `not_before` (a retry after a 5xx keeps its place). Returns 0 or -ENOMEM. */
int rate_requeue(rate_limiter *rl, rate_req *req, double not_before);
/* Takes req out of the limiter whether queued or in flight (cancellation). */
void rate_cancel(rate_limiter *rl, rate_req *req);
bool rate_req_queued(const rate_req *req);
bool rate_req_inflight(const rate_req *req);
/* The bucket key of req ("hash|major", or "?route|major" before the hash is known). */
const char *rate_req_bucket(const rate_req *req);

/* Events since the last call (RL_EV_*), cleared by the call. */
unsigned rate_events(rate_limiter *rl);
/* Invalid requests (401/403/429 except shared) counted in the last window. */
int rate_invalid_count(rate_limiter *rl, double now);
/* Until when a global 429 pauses traffic (0 when not paused). */
double rate_global_paused_until(const rate_limiter *rl);
size_t rate_bucket_count(const rate_limiter *rl);

/* Header parsing helpers: fill resp from one header (name case-insensitive), and the
 * retry_after / global fields from a 429 body. Unknown headers are ignored. */
void rate_response_init(rate_response *resp, int status);
void rate_parse_header(rate_response *resp, const char *name, size_t name_len,
                     const char *value, size_t value_len);
void rate_parse_429_body(rate_response *resp, const char *body, size_t len);

#endif
