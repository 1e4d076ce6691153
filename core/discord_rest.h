/* Discord REST requests: authentication and identification headers, the rate-limit
 * scheduler (ratelimit.h) on the loop, retries, multipart bodies. No Lua.
 *
 * A call goes through the bucket queue of its route, is sent over the shared HTTP
 * client, and its response is fed back to the scheduler:
 * - 429: waits retry_after and goes again at the head of its bucket; this does not use
 *   the retry budget (a separate, generous cap stops a server that only says 429);
 * - 5xx and transport failures (timeout, connect, reset): retried after an exponential
 *   backoff with jitter, at most max_retries times, keeping the call's place in its
 *   bucket; TLS failures are not retried (a wrong CA will not fix itself);
 * - 401: the token is wrong or revoked: the call ends with status 401, and every later
 *   call fails at once (-EACCES) until the client is configured again.
 * rest_start() fails synchronously (negative errno, no callback) or calls `done` exactly
 * once, later; `done` owns the call and frees it with rest_call_free(). */
#ifndef CC_DISCORD_REST_H
#define CC_DISCORD_REST_H

#include <stddef.h>
#include <uv.h>

#include "http.h"
#include "ratelimit.h"

typedef struct rest_client rest_client;
typedef struct rest_call rest_call;
typedef void (*rest_done_fn)(rest_call *call, void *ud);

typedef struct rest_config {
  const char *api_url;        /* "https://discord.com/api/v10" */
  const char *token;          /* the bot token (without "Bot ") */
  const char *user_agent_url; /* for "DiscordBot (<url>, <version>)" */
  const char *version;
  const char *ca_file;        /* NULL: the system's CAs */
  double global_per_second;   /* 50; 0 turns the proactive limit off */
  int max_retries;            /* 5xx / transport retries; default 3 */
  double retry_base;          /* first backoff, seconds; default 0.5 (doubling) */
  double retry_max;           /* backoff cap, seconds; default 10 */
  int max_429_retries;        /* default 30 */
  double timeout;             /* per attempt, seconds; default 15 */
  int invalid_warn, invalid_slow; /* see rate_config; 0 = defaults */
} rest_config;

typedef struct rest_opts {
  const char *method;
  const char *path;           /* "/channels/1/messages", with any query */
  const char *body;           /* copied */
  size_t body_len;
  const char *content_type;   /* default application/json when there is a body */
  const char *reason;         /* X-Audit-Log-Reason, URL-encoded here */
  const char *const *headers; /* more "Name: value" lines, NULL-terminated */
  unsigned flags;             /* RL_ORDERED */
  double timeout;             /* per attempt; 0 = the configured one */
} rest_opts;

typedef struct rest_file {
  const char *name;         /* file name as Discord shows it */
  const char *data;
  size_t len;
  const char *content_type; /* default application/octet-stream */
} rest_file;

void rest_config_default(rest_config *cfg);
int rest_client_new(uv_loop_t *loop, http_client *http, rest_client **out);
/* Copies the configuration (strings included) and forgets a previous 401. */
int rest_configure(rest_client *rc, const rest_config *cfg);
int rest_configured(const rest_client *rc);
/* Ends every call without its callback, then frees the client. */
void rest_client_close(rest_client *rc);

int rest_start(rest_client *rc, const rest_opts *o, rest_done_fn done, void *ud,
               rest_call **out);
void rest_cancel(rest_call *call);
void rest_call_free(rest_call *call);

/* Results, valid until rest_call_free(). The error is NULL when an HTTP response
 * arrived; else the transport error of the last attempt ("timeout", "connect: ..."). */
const char *rest_call_error(const rest_call *call);
const http_req *rest_call_response(const rest_call *call); /* NULL without one */
int rest_call_status(const rest_call *call);
int rest_call_attempts(const rest_call *call);
const char *rest_call_route(const rest_call *call);
double rest_call_elapsed(const rest_call *call); /* seconds, queueing included */

/* Counters, for logs and benchmarks. */
typedef struct rest_stats {
  unsigned long sent, responses, retries_429, retries_other, invalid;
  double queue_seconds; /* time calls spent waiting in the scheduler */
} rest_stats;
void rest_get_stats(const rest_client *rc, rest_stats *out);

/* Pure helpers. */
/* application/x-www-form-urlencoded style escaping of s (UTF-8 bytes kept as %XX);
 * returns a malloc'd string or NULL. */
char *rest_urlencode(const char *s);
/* Builds multipart/form-data with a payload_json part and files[0..n-1]; *out is
 * malloc'd; content_type receives "multipart/form-data; boundary=...". 0 or -ENOMEM. */
int rest_multipart(const char *payload_json, size_t payload_len, const rest_file *files,
                   size_t nfiles, char **out, size_t *out_len, char *content_type,
                   size_t content_type_len);
/* A nonce of at most 25 characters, unique for this process. */
void rest_nonce(char out[26]);

#endif
