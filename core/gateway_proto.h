/* The Discord gateway protocol as a sans-I/O state machine: no sockets, no clock, no Lua.
 *
 * Inputs are calls, each with the current monotonic time in milliseconds:
 *   gw_start / gw_shutdown           the owner's decisions
 *   gw_on_open / gw_on_connect_failed / gw_on_closed   transport events
 *   gw_on_frame                      one complete received text message (inflated)
 *   gw_tick                          the clock: call it at gw_next_deadline() (or later)
 *   gw_send                          an application payload (e.g. op 3 presence)
 * Outputs are actions, queued in order and taken with gw_poll():
 *   GW_ACT_CONNECT url               open a websocket to url
 *   GW_ACT_SEND data,len             send one text frame
 *   GW_ACT_CLOSE code                close with this code, then report gw_on_closed
 *   GW_ACT_ABORT                     drop the connection now, report nothing more for it
 *   GW_ACT_DISPATCH name,data,...    an event for the application (op 0)
 *   GW_ACT_LOG level,text            a line worth logging (decisions, reasons)
 *   GW_ACT_FATAL code,text           stop for good: the operator must fix something
 *   GW_ACT_STOPPED                   no connection and none coming (fatal or shutdown)
 * and the one timer: gw_next_deadline() is when gw_tick must run next (UINT64_MAX: never).
 *
 * Inputs may be called while actions are being drained (e.g. a connect that fails
 * synchronously): new actions are appended. The pointers of an action stay valid until
 * the next gw_poll() or gw_close(). Randomness (heartbeat and backoff jitter) comes from
 * cfg.random, so tests are deterministic. */
#ifndef CC_GATEWAY_PROTO_H
#define CC_GATEWAY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_MAX_PAYLOAD 4096      /* Discord closes with 4002 above this */
#define GW_SEND_LIMIT 120        /* payloads per window per connection */
#define GW_SEND_WINDOW_MS 60000
#define GW_IDENTIFY_WINDOW_MS 5000
/* Spacing we keep between identifies of one bucket: the window plus a margin, since
 * Discord measures the window on its side and our two packets may travel differently. */
#define GW_IDENTIFY_SPACING_MS (GW_IDENTIFY_WINDOW_MS + 250)
#define GW_CLOSE_CODE_RESUME 4000 /* what we close with when the session must survive */

/* Identify buckets shared by the shards of one process: max_concurrency identifies per
 * 5 s, bucket = shard_id % max_concurrency. Zero-initialise, then set max_concurrency. */
#define GW_MAX_BUCKETS 64
typedef struct gw_identify_limiter {
  int max_concurrency;
  uint64_t last[GW_MAX_BUCKETS]; /* time of the last identify + 1 (0: never) */
} gw_identify_limiter;

typedef struct gw_config {
  const char *url;        /* original gateway URL, e.g. wss://gateway.discord.gg */
  const char *token;
  uint64_t intents;
  bool compress;          /* adds compress=zlib-stream to the query */
  int shard_id, shard_count; /* shard_count 0: no shard field in Identify */
  const char *os, *browser, *device; /* Identify properties (defaults if NULL) */
  const char *presence_json; /* raw JSON object for Identify's presence, or NULL */
  int large_threshold;    /* 0: omitted */
  int max_concurrency;    /* identify buckets when no shared limiter; 0 means 1 */
  gw_identify_limiter *limiter; /* optional, shared between shards */
  /* A session to resume at start (from a previous process), or NULL. */
  const char *resume_session_id, *resume_url;
  int64_t resume_seq;
  /* Timeouts and backoff (0: defaults 60000, 15000, 1000, 60000, 5000, 5000). */
  uint64_t hello_timeout_ms, ready_timeout_ms, backoff_base_ms, backoff_max_ms,
      close_timeout_ms, healthy_ms;
  double (*random)(void *ud); /* uniform in [0, 1); NULL: always 0.5 */
  void *random_ud;
} gw_config;

enum gw_action_kind {
  GW_ACT_CONNECT = 1,
  GW_ACT_SEND,
  GW_ACT_CLOSE,
  GW_ACT_ABORT,
  GW_ACT_DISPATCH,
  GW_ACT_LOG,
  GW_ACT_FATAL,
  GW_ACT_STOPPED,
};

enum gw_log_level { GW_LOG_DEBUG, GW_LOG_INFO, GW_LOG_WARN, GW_LOG_ERROR };

typedef struct gw_action {
  enum gw_action_kind kind;
  const char *url;         /* CONNECT */
  const char *data;        /* SEND: the frame; DISPATCH: raw JSON of d; LOG/FATAL: text */
  size_t len;
  int code;                /* CLOSE: close code; FATAL: the server's close code */
  int level;               /* LOG */
  const char *name;        /* DISPATCH: t */
  const char *payload;     /* DISPATCH: the whole payload */
  size_t payload_len;
  int64_t seq;             /* DISPATCH: s (-1 if null) */
} gw_action;

enum gw_state {
  GW_IDLE,          /* not started */
  GW_BACKOFF,       /* waiting before the next connection attempt */
  GW_CONNECTING,    /* CONNECT issued */
  GW_WAIT_HELLO,    /* open, no Hello yet */
  GW_WAIT_IDENTIFY, /* Hello received, waiting for the identify bucket */
  GW_IDENTIFYING,   /* Identify sent, waiting for READY */
  GW_RESUMING,      /* Resume sent, waiting for RESUMED */
  GW_READY,         /* session established */
  GW_CLOSING,       /* CLOSE issued, waiting for gw_on_closed */
  GW_STOPPED,       /* fatal error or shutdown complete */
};

typedef struct gw_proto gw_proto;

/* Copies what it needs from cfg. Returns NULL on allocation failure or bad config
 * (-EINVAL in *err when err is not NULL). */
gw_proto *gw_new(const gw_config *cfg, int *err);
void gw_close(gw_proto *g);

int gw_start(gw_proto *g, uint64_t now);
/* Leaves: close with 1000 (the session ends) or, when keep_session, with 4000 so a
 * restarted process can resume it (see gw_session). Ends in GW_STOPPED. */
int gw_shutdown(gw_proto *g, uint64_t now, bool keep_session);

void gw_on_open(gw_proto *g, uint64_t now);
void gw_on_connect_failed(gw_proto *g, uint64_t now, const char *reason);
/* code: the peer's close code, or 1006 when the connection dropped without one. */
void gw_on_closed(gw_proto *g, uint64_t now, int code);
void gw_on_frame(gw_proto *g, uint64_t now, const char *data, size_t len);
void gw_tick(gw_proto *g, uint64_t now);
/* Queues an application payload (a complete JSON object with op and d) subject to the
 * send limit. 0, -EMSGSIZE (> 4096 bytes), -EINVAL (not a JSON object), -ENOTCONN (no
 * established session), -ENOBUFS (queue full). */
int gw_send(gw_proto *g, uint64_t now, const char *json, size_t len);

int gw_poll(gw_proto *g, gw_action *out); /* 1: *out filled, 0: queue empty */
uint64_t gw_next_deadline(const gw_proto *g);

enum gw_state gw_get_state(const gw_proto *g);
const char *gw_state_name(enum gw_state s);
/* The current session (NULL id when none) and last sequence (-1 when none). */
void gw_session(const gw_proto *g, const char **session_id, const char **resume_url,
                int64_t *seq);
/* Connection attempts made so far (for tests and status). */
unsigned gw_connect_count(const gw_proto *g);
/* Heartbeat round-trip latency in ms of the last ACK, or -1. */
int64_t gw_latency(const gw_proto *g);
/* The operator's explanation of a fatal close code, or NULL if the code is not fatal. */
const char *gw_fatal_message(int code);

#endif
