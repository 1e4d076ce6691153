/* Discord REST rate limits as a scheduler: pure logic, no I/O, the clock injected.
 *
 * The caller owns the requests (an rl_req embedded in its own struct) and the clock
 * (seconds on a monotonic scale, as doubles). The conversation is:
 *
 *   rl_enqueue(rl, req, "POST", "/channels/1/messages", flags);   queue it
 *   while ((r = rl_poll(rl, now, &again)) != NULL) send(r);        what may go now
 *   arm a timer for `again` (RL_NEVER: wait for a response or a new request)
 *   rl_done(rl, r, now, &response)                                 headers and status
 *     -> RL_RESULT_RETRY: the limiter queued r again at the head (429); poll later
 *     -> RL_RESULT_DONE: r is out of the limiter (the caller may rl_requeue() it, for
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

/* Request flags; rl_enqueue() adds RL_PRIORITY and RL_EXEMPT from the route itself. */
enum {
  RL_PRIORITY = 1 << 0, /* interaction callback: polled before anything else */
  RL_EXEMPT = 1 << 1,   /* not counted by nor held by the global limit */
  RL_ORDERED = 1 << 2,  /* never in flight together with another of its bucket */
};

enum rl_scope { RL_SCOPE_NONE, RL_SCOPE_USER, RL_SCOPE_GLOBAL, RL_SCOPE_SHARED };

enum rl_result { RL_RESULT_DONE = 0, RL_RESULT_RETRY = 1 };

/* Events rl_done() reports through rl_events(), for the caller to log. */
enum {
  RL_EV_INVALID_WARN = 1 << 0, /* the invalid-request count crossed invalid_warn */
  RL_EV_INVALID_SLOW = 1 << 1, /* ... crossed invalid_slow: the global pace slowed */
  RL_EV_GLOBAL_PAUSE = 1 << 2, /* a global 429 paused every route */
  RL_EV_BUCKET_LEARNED = 1 << 3,
};

typedef struct rl_bucket rl_bucket;
typedef struct rl_limiter rl_limiter;

typedef struct rl_req {
  struct rl_req *next, *prev; /* the bucket's queue or in-flight list */
  rl_bucket *bucket;
  unsigned long seq;          /* dispatch order within the bucket */
  double not_before;          /* set by rl_requeue() */
  unsigned flags;
  int state;                  /* internal */
  void *data;                 /* the caller's */
} rl_req;

typedef struct rl_config {
  double global_per_second; /* 0 = no proactive global limit; default 50 */
  int invalid_warn;         /* default 2500 */
  int invalid_slow;         /* default 5000: beyond it the global pace is divided by 10 */
  double invalid_window;    /* default 600 s */
} rl_config;

/* What the caller learnt from a response (or status 0 for a transport failure). */
typedef struct rl_response {
  int status;
  bool has_bucket, has_limit, has_remaining, has_reset, has_reset_after, has_retry_after;
  char bucket[64];
  int limit, remaining;
  double reset;       /* X-RateLimit-Reset, epoch seconds */
  double reset_after; /* X-RateLimit-Reset-After, seconds */
  double retry_after; /* body retry_after, else the Retry-After header */
  bool global;        /* X-RateLimit-Global or the body's "global": true */
  enum rl_scope scope;
} rl_response;

void rl_config_default(rl_config *cfg);
/* Allocates a limiter; NULL on allocation failure. cfg NULL means the defaults. */
rl_limiter *rl_new(const rl_config *cfg);
/* Frees the limiter; requests still queued or in flight are simply forgotten. */
void rl_free(rl_limiter *rl);
void rl_set_global_per_second(rl_limiter *rl, double per_second);

/* Route of a request: "METHOD /template" with ids replaced, and its top-level resource
 * ("channels/1", "webhooks/2/TOKEN", "" when none). Returns the flags the route implies
 * (RL_PRIORITY|RL_EXEMPT for interaction callbacks, RL_EXEMPT for webhook tokens), or
 * -1 when the buffers are too small. Pure; exposed for tests and logs. */
int rl_route(const char *method, const char *path, char *route, size_t route_len,
             char *major, size_t major_len);

/* Queues req (FIFO in its bucket). Returns 0, or -ENOMEM / -EINVAL. */
int rl_enqueue(rl_limiter *rl, rl_req *req, const char *method, const char *path,
               unsigned flags);
/* Returns a request that may be sent now (it is then in flight), or NULL, setting
 * *again to the time at which to poll again (RL_NEVER: only a response or a new request
 * can change anything). */
rl_req *rl_poll(rl_limiter *rl, double now, double *again);
/* Feeds the response of an in-flight request. */
enum rl_result rl_done(rl_limiter *rl, rl_req *req, double now, const rl_response *resp);
/* Puts a request that rl_done() let go back at the head of its bucket, not to be sent
 * before `not_before` (a retry after a 5xx keeps its place). Returns 0 or -ENOMEM. */
int rl_requeue(rl_limiter *rl, rl_req *req, double not_before);
/* Takes req out of the limiter whether queued or in flight (cancellation). */
void rl_cancel(rl_limiter *rl, rl_req *req);
bool rl_req_queued(const rl_req *req);
bool rl_req_inflight(const rl_req *req);
/* The bucket key of req ("hash|major", or "?route|major" before the hash is known). */
const char *rl_req_bucket(const rl_req *req);

/* Events since the last call (RL_EV_*), cleared by the call. */
unsigned rl_events(rl_limiter *rl);
/* Invalid requests (401/403/429 except shared) counted in the last window. */
int rl_invalid_count(rl_limiter *rl, double now);
/* Until when a global 429 pauses traffic (0 when not paused). */
double rl_global_paused_until(const rl_limiter *rl);
size_t rl_bucket_count(const rl_limiter *rl);

/* Header parsing helpers: fill resp from one header (name case-insensitive), and the
 * retry_after / global fields from a 429 body. Unknown headers are ignored. */
void rl_response_init(rl_response *resp, int status);
void rl_parse_header(rl_response *resp, const char *name, size_t name_len,
                     const char *value, size_t value_len);
void rl_parse_429_body(rl_response *resp, const char *body, size_t len);

#endif
