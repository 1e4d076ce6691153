/* The Discord gateway protocol as a sans-I/O state machine. See gateway_proto.h; the
 * protocol facts it implements are listed in the README's gateway section. */
#include "gateway_proto.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_scan.h"

#define SESSION_ID_MAX 256
#define URL_MAX 2048
#define SEND_QUEUE_MAX 1024
#define GW_ZOMBIE_CLOSE_MS 1000

enum after_close { AFTER_RECONNECT, AFTER_STOP };

typedef struct act {
  gw_action a;
  char *mem; /* owns every pointer in a */
} act;

typedef struct pending {
  char *data;
  size_t len;
} pending;

struct gw_proto {
  /* configuration */
  char *url_base;      /* original URL without its query */
  char *query;         /* v=10&encoding=json[&compress=zlib-stream] */
  char *token;
  char *identify;      /* the Identify payload, built once */
  size_t identify_len;
  int shard_id;
  gw_identify_limiter own_limiter, *limiter;
  uint64_t hello_timeout, ready_timeout, backoff_base, backoff_max, close_timeout,
      healthy_ms;
  double (*random)(void *);
  void *random_ud;

  enum gw_state state;
  uint64_t deadline; /* of the current state (hello, ready, backoff, ...); 0: none */

  /* session: survives connections */
  char *session_id;
  char *resume_url;  /* READY's resume_gateway_url, query stripped */
  int64_t seq;

  /* current connection */
  bool resume_next;  /* the next connection resumes instead of identifying */
  bool heartbeating, ack_pending;
  uint64_t interval, next_heartbeat, last_heartbeat;
  int64_t latency;
  int reserve;       /* limiter slots kept for heartbeats */
  uint64_t sent_at[GW_SEND_LIMIT];
  unsigned sent_head, sent_count;
  pending *queue;
  size_t q_head, q_len, q_cap;

  /* closing */
  enum after_close after;
  bool after_resume;
  uint64_t after_min_delay;
  int close_code;

  /* reconnection */
  unsigned failures, connects;
  uint64_t healthy_since;

  /* actions */
  act *acts;
  size_t a_head, a_len, a_cap;
  char *held; /* memory of the action last returned by gw_poll */
  unsigned dropped;
};

/* ---- small helpers ---------------------------------------------------------------- */

static char *dupn(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static char *dup(const char *s) { return s ? dupn(s, strlen(s)) : NULL; }

static double rnd(gw_proto *g) {
  double r = g->random ? g->random(g->random_ud) : 0.5;
  if (!(r >= 0.0)) r = 0.0; /* also catches NaN */
  if (r >= 1.0) r = 0.999999;
  return r;
}

/* Appends s as a JSON string literal (quotes included). Returns false when full. */
static bool put_json_string(char *buf, size_t cap, size_t *n, const char *s) {
  static const char hex[] = "0123456789abcdef";
  if (*n + 1 >= cap) return false;
  buf[(*n)++] = '"';
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc = 0;
    switch (*p) {
    case '"': esc = '"'; break;
    case '\\': esc = '\\'; break;
    case '\n': esc = 'n'; break;
    case '\r': esc = 'r'; break;
    case '\t': esc = 't'; break;
    case '\b': esc = 'b'; break;
    case '\f': esc = 'f'; break;
    default: break;
    }
    if (esc) {
      if (*n + 2 >= cap) return false;
      buf[(*n)++] = '\\';
      buf[(*n)++] = esc;
    } else if (*p < 0x20) {
      if (*n + 6 >= cap) return false;
      buf[(*n)++] = '\\';
      buf[(*n)++] = 'u';
      buf[(*n)++] = '0';
      buf[(*n)++] = '0';
      buf[(*n)++] = hex[*p >> 4];
      buf[(*n)++] = hex[*p & 15];
    } else {
      if (*n + 1 >= cap) return false;
      buf[(*n)++] = (char)*p;
    }
  }
  if (*n + 1 >= cap) return false;
  buf[(*n)++] = '"';
  buf[*n] = '\0';
  return true;
}

static bool put_raw(char *buf, size_t cap, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool put_raw(char *buf, size_t cap, size_t *n, const char *fmt, ...) {
  va_list ap;
  if (*n >= cap) return false;
  va_start(ap, fmt);
  int w = vsnprintf(buf + *n, cap - *n, fmt, ap);
  va_end(ap);
  if (w < 0 || (size_t)w >= cap - *n) return false;
  *n += (size_t)w;
  return true;
}

/* "wss://host/path?query" -> "wss://host/path", with "/" added when there is no path. */
static char *url_without_query(const char *url) {
  size_t n = strcspn(url, "?#");
  const char *scheme = strstr(url, "://");
  if (scheme && (size_t)(scheme - url) + 3 > n) scheme = NULL;
  bool has_path = scheme && memchr(scheme + 3, '/', n - (size_t)(scheme + 3 - url));
  char *out = malloc(n + 2);
  if (!out) return NULL;
  memcpy(out, url, n);
  if (!has_path) out[n++] = '/';
  out[n] = '\0';
  return out;
}

static bool url_ok(const char *url);

/* ---- actions ---------------------------------------------------------------------- */

static act *push_act(gw_proto *g, enum gw_action_kind kind, size_t mem_size) {
  if (g->a_head > 0 && g->a_head == g->a_len) g->a_head = g->a_len = 0;
  if (g->a_len == g->a_cap) {
    if (g->a_head > 0) {
      memmove(g->acts, g->acts + g->a_head, (g->a_len - g->a_head) * sizeof(act));
      g->a_len -= g->a_head;
      g->a_head = 0;
    } else {
      size_t cap = g->a_cap ? g->a_cap * 2 : 16;
      act *na = realloc(g->acts, cap * sizeof(act));
      if (!na) {
        g->dropped++;
        return NULL;
      }
      g->acts = na;
      g->a_cap = cap;
    }
  }
  char *mem = NULL;
  if (mem_size) {
    mem = malloc(mem_size);
    if (!mem) {
      g->dropped++;
      return NULL;
    }
  }
  act *a = &g->acts[g->a_len++];
  memset(a, 0, sizeof *a);
  a->a.kind = kind;
  a->mem = mem;
  return a;
}

static void emit_text(gw_proto *g, enum gw_action_kind kind, int level, int code,
                      const char *fmt, va_list ap) {
  char tmp[1024];
  int w = vsnprintf(tmp, sizeof tmp, fmt, ap);
  if (w < 0) return;
  size_t n = (size_t)w < sizeof tmp ? (size_t)w : sizeof tmp - 1;
  act *a = push_act(g, kind, n + 1);
  if (!a) return;
  memcpy(a->mem, tmp, n + 1);
  a->a.data = a->mem;
  a->a.len = n;
  a->a.level = level;
  a->a.code = code;
}

static void gw_log(gw_proto *g, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void gw_log(gw_proto *g, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit_text(g, GW_ACT_LOG, level, 0, fmt, ap);
  va_end(ap);
}

static void emit_fatal(gw_proto *g, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void emit_fatal(gw_proto *g, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit_text(g, GW_ACT_FATAL, GW_LOG_ERROR, code, fmt, ap);
  va_end(ap);
}

static void emit_simple(gw_proto *g, enum gw_action_kind kind, int code) {
  act *a = push_act(g, kind, 0);
  if (a) a->a.code = code;
}

static void emit_connect(gw_proto *g, const char *base) {
  size_t n = strlen(base) + 1 + strlen(g->query) + 1;
  act *a = push_act(g, GW_ACT_CONNECT, n);
  if (!a) return;
  snprintf(a->mem, n, "%s?%s", base, g->query);
  a->a.url = a->mem;
}

static void emit_send(gw_proto *g, const char *data, size_t len) {
  act *a = push_act(g, GW_ACT_SEND, len + 1);
  if (!a) return;
  memcpy(a->mem, data, len);
  a->mem[len] = '\0';
  a->a.data = a->mem;
  a->a.len = len;
}

int gw_poll(gw_proto *g, gw_action *out) {
  free(g->held);
  g->held = NULL;
  if (g->a_head >= g->a_len) {
    g->a_head = g->a_len = 0;
    return 0;
  }
  act *a = &g->acts[g->a_head++];
  *out = a->a;
  g->held = a->mem;
  return 1;
}

/* ---- send limiter ----------------------------------------------------------------- */

static void limiter_expire(gw_proto *g, uint64_t now) {
  while (g->sent_count > 0 && g->sent_at[g->sent_head] + GW_SEND_WINDOW_MS <= now) {
    g->sent_head = (g->sent_head + 1) % GW_SEND_LIMIT;
    g->sent_count--;
  }
}

static void limiter_record(gw_proto *g, uint64_t now) {
  if (g->sent_count == GW_SEND_LIMIT) { /* only heartbeats can get here; forget the oldest */
    g->sent_head = (g->sent_head + 1) % GW_SEND_LIMIT;
    g->sent_count--;
  }
  g->sent_at[(g->sent_head + g->sent_count) % GW_SEND_LIMIT] = now;
  g->sent_count++;
}

static bool limiter_allows_app(gw_proto *g, uint64_t now) {
  limiter_expire(g, now);
  return g->sent_count < (unsigned)(GW_SEND_LIMIT - g->reserve);
}

static void queue_clear(gw_proto *g) {
  for (size_t i = g->q_head; i < g->q_len; i++) free(g->queue[i].data);
  g->q_head = g->q_len = 0;
}

static void queue_flush(gw_proto *g, uint64_t now) {
  while (g->q_head < g->q_len && limiter_allows_app(g, now)) {
    pending *p = &g->queue[g->q_head++];
    emit_send(g, p->data, p->len);
    free(p->data);
    limiter_record(g, now);
  }
  if (g->q_head == g->q_len) g->q_head = g->q_len = 0;
}

/* Identify and Resume: counted, sent at once (each opens a fresh connection's window). */
static void send_counted(gw_proto *g, uint64_t now, const char *data, size_t len) {
  limiter_expire(g, now);
  emit_send(g, data, len);
  limiter_record(g, now);
}

static void send_heartbeat(gw_proto *g, uint64_t now) {
  char buf[64];
  int n = g->seq >= 0 ? snprintf(buf, sizeof buf, "{\"op\":1,\"d\":%" PRId64 "}", g->seq)
                      : snprintf(buf, sizeof buf, "{\"op\":1,\"d\":null}");
  limiter_expire(g, now);
  emit_send(g, buf, (size_t)n);
  limiter_record(g, now);
  g->ack_pending = true;
  g->last_heartbeat = now;
}

/* ---- session ---------------------------------------------------------------------- */

static void drop_session(gw_proto *g) {
  free(g->session_id);
  free(g->resume_url);
  g->session_id = g->resume_url = NULL;
  g->seq = -1;
}

static bool is_connected_state(enum gw_state s) {
  return s == GW_WAIT_HELLO || s == GW_WAIT_IDENTIFY || s == GW_IDENTIFYING ||
         s == GW_RESUMING || s == GW_READY;
}

static void enter_stopped(gw_proto *g) {
  g->state = GW_STOPPED;
  g->deadline = 0;
  g->heartbeating = false;
  queue_clear(g);
  emit_simple(g, GW_ACT_STOPPED, 0);
}

static void do_connect(gw_proto *g, uint64_t now) {
  const char *base = g->url_base;
  if (g->resume_next && g->session_id && g->resume_url) base = g->resume_url;
  g->connects++;
  g->state = GW_CONNECTING;
  /* A connection attempt that neither opens nor fails is abandoned like a missing
   * Hello. */
  g->deadline = now + g->hello_timeout;
  gw_log(g, GW_LOG_INFO, "connecting to %s (attempt %u, %s)", base, g->connects,
         g->resume_next && g->session_id ? "resume" : "identify");
  emit_connect(g, base);
}

static uint64_t backoff_delay(gw_proto *g) {
  if (g->failures == 0) return 0;
  uint64_t d = g->backoff_base;
  for (unsigned i = 1; i < g->failures && d < g->backoff_max; i++) d *= 2;
  if (d > g->backoff_max) d = g->backoff_max;
  return (uint64_t)((double)d * (0.9 + 0.2 * rnd(g)));
}

/* The connection is gone (or never came): decide how and when to try again. */
static void reconnect(gw_proto *g, uint64_t now, bool resume, uint64_t min_delay) {
  g->heartbeating = false;
  g->ack_pending = false;
  queue_clear(g);
  if (g->healthy_since && now - g->healthy_since >= g->healthy_ms) g->failures = 0;
  g->healthy_since = 0;
  uint64_t delay = backoff_delay(g);
  g->failures++;
  if (delay < min_delay) delay = min_delay;
  if (!resume || !g->session_id) {
    if (g->session_id) gw_log(g, GW_LOG_INFO, "dropping session %s", g->session_id);
    drop_session(g);
  }
  g->resume_next = g->session_id != NULL;
  if (delay == 0) {
    do_connect(g, now);
  } else {
    gw_log(g, GW_LOG_INFO, "reconnecting in %" PRIu64 " ms", delay);
    g->state = GW_BACKOFF;
    g->deadline = now + delay;
  }
}

static void finish_close(gw_proto *g, uint64_t now) {
  if (g->after == AFTER_STOP) {
    if (g->close_code == 1000) drop_session(g);
    enter_stopped(g);
  } else {
    reconnect(g, now, g->after_resume, g->after_min_delay);
  }
}

/* We close the connection; what follows is decided now and done once it is closed. */
static void begin_close(gw_proto *g, uint64_t now, int code, enum after_close after,
                        bool resume, uint64_t min_delay) {
  g->after = after;
  g->after_resume = resume;
  g->after_min_delay = min_delay;
  g->close_code = code;
  g->heartbeating = false;
  if (g->state == GW_CONNECTING) {
    emit_simple(g, GW_ACT_ABORT, 0);
    finish_close(g, now);
    return;
  }
  emit_simple(g, GW_ACT_CLOSE, code);
  g->state = GW_CLOSING;
  g->deadline = now + g->close_timeout;
}

static void try_identify(gw_proto *g, uint64_t now) {
  gw_identify_limiter *l = g->limiter;
  int mc = l->max_concurrency > 0 ? l->max_concurrency : 1;
  if (mc > GW_MAX_BUCKETS) mc = GW_MAX_BUCKETS;
  int bucket = g->shard_id % mc;
  uint64_t slot = l->last[bucket] ? l->last[bucket] - 1 + GW_IDENTIFY_SPACING_MS : 0;
  if (now < slot) {
    gw_log(g, GW_LOG_INFO, "identify bucket %d busy: identifying in %" PRIu64 " ms",
           bucket, slot - now);
    g->state = GW_WAIT_IDENTIFY;
    g->deadline = slot;
    return;
  }
  l->last[bucket] = now + 1;
  drop_session(g);
  send_counted(g, now, g->identify, g->identify_len);
  g->state = GW_IDENTIFYING;
  g->deadline = now + g->ready_timeout;
}

static void send_resume(gw_proto *g, uint64_t now) {
  char buf[GW_MAX_PAYLOAD + 1];
  size_t n = 0;
  bool ok = put_raw(buf, sizeof buf, &n, "{\"op\":6,\"d\":{\"token\":") &&
            put_json_string(buf, sizeof buf, &n, g->token) &&
            put_raw(buf, sizeof buf, &n, ",\"session_id\":") &&
            put_json_string(buf, sizeof buf, &n, g->session_id) &&
            put_raw(buf, sizeof buf, &n, ",\"seq\":%" PRId64 "}}", g->seq < 0 ? 0 : g->seq);
  if (!ok) { /* cannot happen with the length caps on token and session id */
    gw_log(g, GW_LOG_ERROR, "resume payload too large; identifying instead");
    try_identify(g, now);
    return;
  }
  send_counted(g, now, buf, n);
  g->state = GW_RESUMING;
  g->deadline = 0;
}

/* ---- inputs ----------------------------------------------------------------------- */

int gw_start(gw_proto *g, uint64_t now) {
  if (g->state != GW_IDLE) return -EALREADY;
  g->resume_next = g->session_id != NULL;
  do_connect(g, now);
  return 0;
}

int gw_shutdown(gw_proto *g, uint64_t now, bool keep_session) {
  switch (g->state) {
  case GW_STOPPED:
    return 0;
  case GW_IDLE:
  case GW_BACKOFF:
    if (!keep_session) drop_session(g);
    enter_stopped(g);
    return 0;
  case GW_CLOSING:
    g->after = AFTER_STOP;
    g->close_code = keep_session ? GW_CLOSE_CODE_RESUME : 1000;
    return 0;
  default:
    begin_close(g, now, keep_session ? GW_CLOSE_CODE_RESUME : 1000, AFTER_STOP,
                keep_session, 0);
    return 0;
  }
}

void gw_on_open(gw_proto *g, uint64_t now) {
  if (g->state != GW_CONNECTING) return;
  g->state = GW_WAIT_HELLO;
  g->deadline = now + g->hello_timeout;
  g->heartbeating = false;
  g->ack_pending = false;
  g->sent_head = g->sent_count = 0;
  g->reserve = 3;
  queue_clear(g);
}

void gw_on_connect_failed(gw_proto *g, uint64_t now, const char *reason) {
  if (g->state != GW_CONNECTING) return;
  gw_log(g, GW_LOG_WARN, "connection failed: %s", reason ? reason : "unknown error");
  reconnect(g, now, true, 0);
}

const char *gw_fatal_message(int code) {
  switch (code) {
  case 4004:
    return "authentication failed: the bot token is invalid or was reset. Put the "
           "current token (Developer Portal > your application > Bot > Reset Token) in "
           "the configured token source and restart";
  case 4010:
    return "invalid shard: shard_id must be lower than shard_count; fix the shard "
           "settings in the configuration";
  case 4011:
    return "sharding required: the bot is in too many guilds for one connection; set "
           "shard_count (GET /gateway/bot suggests one) and run one process per shard";
  case 4012:
    return "invalid API version: this build speaks gateway v10; check the configured "
           "gateway URL";
  case 4013:
    return "invalid intents: the configured intents are not a valid bitfield; fix the "
           "intents in the configuration";
  case 4014:
    return "disallowed intents: enable the MESSAGE_CONTENT intent (and any other "
           "privileged intent you configured) in the Discord Developer Portal > your "
           "application > Bot > Privileged Gateway Intents, or remove it from the "
           "configured intents";
  default:
    return NULL;
  }
}

void gw_on_closed(gw_proto *g, uint64_t now, int code) {
  const char *fatal = gw_fatal_message(code);
  if (g->state == GW_CLOSING) {
    if (fatal && code != g->close_code) goto fatal_close;
    finish_close(g, now);
    return;
  }
  if (g->state == GW_CONNECTING) {
    if (fatal) goto fatal_close;
    gw_log(g, GW_LOG_WARN, "connection closed before it opened (code %d)", code);
    reconnect(g, now, true, 0);
    return;
  }
  if (!is_connected_state(g->state)) return;
  if (fatal) goto fatal_close;
  if (code == 4007 || code == 4009) {
    gw_log(g, GW_LOG_WARN, "gateway closed with %d (%s): starting a new session", code,
           code == 4007 ? "invalid sequence" : "session timed out");
    reconnect(g, now, false, 0);
    return;
  }
  gw_log(g, GW_LOG_WARN, "gateway connection closed (code %d): reconnecting", code);
  reconnect(g, now, true, 0);
  return;

fatal_close:
  gw_log(g, GW_LOG_ERROR, "gateway closed with %d: not reconnecting", code);
  emit_fatal(g, code, "Discord gateway closed with %d, %s", code, fatal);
  drop_session(g);
  enter_stopped(g);
}

static void on_hello(gw_proto *g, uint64_t now, json_span d) {
  json_span hi;
  double ms = 0;
  if (g->state != GW_WAIT_HELLO) return; /* a second Hello changes nothing */
  if (json_get(d, "heartbeat_interval", &hi) < 0 || json_double(hi, &ms) < 0 ||
      !(ms >= 1.0) || ms > 86400000.0) {
    gw_log(g, GW_LOG_WARN, "Hello without a usable heartbeat_interval: reconnecting");
    begin_close(g, now, GW_CLOSE_CODE_RESUME, AFTER_RECONNECT, true, 0);
    return;
  }
  g->interval = (uint64_t)ms;
  g->heartbeating = true;
  g->ack_pending = false;
  g->next_heartbeat = now + (uint64_t)((double)g->interval * rnd(g));
  /* Heartbeats due within one window, plus one answered to a server op 1. */
  uint64_t per_window = (GW_SEND_WINDOW_MS + g->interval - 1) / g->interval;
  g->reserve = (int)(per_window + 1 > GW_SEND_LIMIT / 2 ? GW_SEND_LIMIT / 2 : per_window + 1);
  if (g->resume_next && g->session_id)
    send_resume(g, now);
  else
    try_identify(g, now);
}

static void on_dispatch(gw_proto *g, uint64_t now, json_span root, json_span d) {
  json_span s, t;
  int64_t seq = -1;
  char name[128];
  json_get(root, "s", &s);
  if (s.type == JSON_NUMBER && json_int64(s, &seq) < 0) seq = -1;
  if (json_get(root, "t", &t) < 0 || json_string(t, name, sizeof name, NULL) < 0) {
    gw_log(g, GW_LOG_WARN, "dispatch without a usable event name ignored");
    return;
  }
  if (seq >= 0) {
    if (g->seq >= 0 && seq <= g->seq) {
      gw_log(g, GW_LOG_DEBUG, "duplicate dispatch %s (seq %" PRId64 " <= %" PRId64 ") dropped",
             name, seq, g->seq);
      return;
    }
    g->seq = seq;
  }
  if (strcmp(name, "READY") == 0) {
    json_span sid, rurl;
    char idbuf[SESSION_ID_MAX], urlbuf[URL_MAX];
    if (json_get(d, "session_id", &sid) == 0 &&
        json_string(sid, idbuf, sizeof idbuf, NULL) == 0 && idbuf[0]) {
      free(g->session_id);
      g->session_id = dup(idbuf);
    }
    free(g->resume_url);
    g->resume_url = NULL;
    if (json_get(d, "resume_gateway_url", &rurl) == 0 &&
        json_string(rurl, urlbuf, sizeof urlbuf, NULL) == 0 && urlbuf[0]) {
      if (url_ok(urlbuf))
        g->resume_url = url_without_query(urlbuf);
      else
        gw_log(g, GW_LOG_WARN, "READY's resume_gateway_url is not a websocket URL: ignored");
    }
    if (g->state != GW_CLOSING) {
      g->state = GW_READY;
      g->deadline = 0;
    }
    g->healthy_since = now ? now : 1;
    gw_log(g, GW_LOG_INFO, "ready: session %s", g->session_id ? g->session_id : "(none)");
  } else if (strcmp(name, "RESUMED") == 0) {
    if (g->state != GW_CLOSING) {
      g->state = GW_READY;
      g->deadline = 0;
    }
    g->healthy_since = now ? now : 1;
    gw_log(g, GW_LOG_INFO, "resumed session %s at seq %" PRId64,
           g->session_id ? g->session_id : "(none)", g->seq);
  }
  size_t nlen = strlen(name);
  size_t plen = (size_t)(root.p + root.len - root.p);
  act *a = push_act(g, GW_ACT_DISPATCH, plen + 1 + nlen + 1);
  if (!a) return;
  memcpy(a->mem, root.p, plen);
  a->mem[plen] = '\0';
  memcpy(a->mem + plen + 1, name, nlen + 1);
  a->a.payload = a->mem;
  a->a.payload_len = plen;
  a->a.name = a->mem + plen + 1;
  if (d.type != JSON_NONE) {
    a->a.data = a->mem + (d.p - root.p);
    a->a.len = d.len;
  } else {
    a->a.data = "null";
    a->a.len = 4;
  }
  a->a.seq = seq;
}

void gw_on_frame(gw_proto *g, uint64_t now, const char *data, size_t len) {
  json_span root, op, d;
  int64_t opcode;
  if (!is_connected_state(g->state) && g->state != GW_CLOSING) return;
  if (json_parse(data, len, &root) < 0 || root.type != JSON_OBJECT) {
    gw_log(g, GW_LOG_WARN, "ignored a gateway frame that is not a JSON object (%zu bytes)",
           len);
    return;
  }
  if (json_get(root, "op", &op) < 0 || json_int64(op, &opcode) < 0) {
    gw_log(g, GW_LOG_WARN, "ignored a gateway payload without an integer op");
    return;
  }
  json_get(root, "d", &d);
  if (g->state == GW_CLOSING) {
    /* Events that made it before our close are still real: deliver them. */
    if (opcode == 0) on_dispatch(g, now, root, d);
    return;
  }
  switch (opcode) {
  case 0:
    on_dispatch(g, now, root, d);
    break;
  case 1:
    send_heartbeat(g, now);
    break;
  case 7:
    gw_log(g, GW_LOG_INFO, "server asked to reconnect (op 7)");
    begin_close(g, now, GW_CLOSE_CODE_RESUME, AFTER_RECONNECT, true, 0);
    break;
  case 9: {
    bool resumable = d.type == JSON_TRUE && g->session_id;
    gw_log(g, GW_LOG_WARN, "invalid session (op 9, %s)",
           resumable ? "resumable" : "not resumable: new session");
    uint64_t wait = resumable ? 0 : 1000 + (uint64_t)(4000.0 * rnd(g));
    begin_close(g, now, GW_CLOSE_CODE_RESUME, AFTER_RECONNECT, resumable, wait);
    break;
  }
  case 10:
    on_hello(g, now, d);
    break;
  case 11:
    g->ack_pending = false;
    g->latency = (int64_t)(now - g->last_heartbeat);
    break;
  default:
    gw_log(g, GW_LOG_DEBUG, "ignored gateway op %" PRId64, opcode);
    break;
  }
}

void gw_tick(gw_proto *g, uint64_t now) {
  /* Each step may change the state; loop until nothing is due. */
  for (int guard = 0; guard < 16; guard++) {
    if (g->heartbeating && now >= g->next_heartbeat) {
      if (g->ack_pending) {
        gw_log(g, GW_LOG_WARN,
               "no heartbeat ACK since the last heartbeat: zombie connection, reconnecting");
        begin_close(g, now, GW_CLOSE_CODE_RESUME, AFTER_RECONNECT, true, 0);
        /* A peer that stopped answering will not answer the close either: give the
         * frame a moment to leave, not the full close timeout. */
        if (g->state == GW_CLOSING && g->close_timeout > GW_ZOMBIE_CLOSE_MS)
          g->deadline = now + GW_ZOMBIE_CLOSE_MS;
        continue;
      }
      send_heartbeat(g, now);
      g->next_heartbeat += g->interval;
      if (g->next_heartbeat <= now) g->next_heartbeat = now + g->interval;
      continue;
    }
    if (g->q_head < g->q_len && g->state == GW_READY) {
      size_t before = g->q_head;
      queue_flush(g, now);
      if (g->q_head != before && g->q_len != 0) continue;
    }
    if (!g->deadline || now < g->deadline) break;
    g->deadline = 0;
    switch (g->state) {
    case GW_BACKOFF:
      do_connect(g, now);
      break;
    case GW_CONNECTING:
      gw_log(g, GW_LOG_WARN, "connection attempt timed out");
      emit_simple(g, GW_ACT_ABORT, 0);
      reconnect(g, now, true, 0);
      break;
    case GW_WAIT_HELLO:
      gw_log(g, GW_LOG_WARN, "no Hello within %" PRIu64 " ms: reconnecting", g->hello_timeout);
      begin_close(g, now, GW_CLOSE_CODE_RESUME, AFTER_RECONNECT, true, 0);
      break;
    case GW_WAIT_IDENTIFY:
      try_identify(g, now);
      break;
    case GW_IDENTIFYING:
      gw_log(g, GW_LOG_WARN, "no READY within %" PRIu64 " ms of Identify: reconnecting",
             g->ready_timeout);
      begin_close(g, now, GW_CLOSE_CODE_RESUME, AFTER_RECONNECT, false, 0);
      break;
    case GW_CLOSING:
      gw_log(g, GW_LOG_WARN, "close handshake timed out: dropping the connection");
      emit_simple(g, GW_ACT_ABORT, 0);
      finish_close(g, now);
      break;
    default:
      break;
    }
  }
}

int gw_send(gw_proto *g, uint64_t now, const char *json, size_t len) {
  json_span root;
  if (len > GW_MAX_PAYLOAD) return -EMSGSIZE;
  if (json_parse(json, len, &root) < 0 || root.type != JSON_OBJECT) return -EINVAL;
  if (g->state != GW_READY) return -ENOTCONN;
  if (g->q_head == g->q_len && limiter_allows_app(g, now)) {
    emit_send(g, json, len);
    limiter_record(g, now);
    return 0;
  }
  if (g->q_len - g->q_head >= SEND_QUEUE_MAX) return -ENOBUFS;
  if (g->q_len == g->q_cap) {
    if (g->q_head > 0) {
      memmove(g->queue, g->queue + g->q_head, (g->q_len - g->q_head) * sizeof(pending));
      g->q_len -= g->q_head;
      g->q_head = 0;
    } else {
      size_t cap = g->q_cap ? g->q_cap * 2 : 16;
      pending *nq = realloc(g->queue, cap * sizeof(pending));
      if (!nq) return -ENOMEM;
      g->queue = nq;
      g->q_cap = cap;
    }
  }
  char *copy = dupn(json, len);
  if (!copy) return -ENOMEM;
  g->queue[g->q_len].data = copy;
  g->queue[g->q_len].len = len;
  g->q_len++;
  return 0;
}

uint64_t gw_next_deadline(const gw_proto *g) {
  uint64_t next = UINT64_MAX;
  if (g->heartbeating && g->next_heartbeat < next) next = g->next_heartbeat;
  if (g->deadline && g->deadline < next) next = g->deadline;
  if (g->q_head < g->q_len && g->state == GW_READY && g->sent_count > 0) {
    uint64_t t = g->sent_at[g->sent_head] + GW_SEND_WINDOW_MS;
    if (t < next) next = t;
  }
  return next;
}

/* ---- construction ----------------------------------------------------------------- */

static int build_identify(gw_proto *g, const gw_config *cfg) {
  char buf[GW_MAX_PAYLOAD + 1];
  size_t n = 0;
  bool ok = put_raw(buf, sizeof buf, &n, "{\"op\":2,\"d\":{\"token\":") &&
            put_json_string(buf, sizeof buf, &n, cfg->token) &&
            put_raw(buf, sizeof buf, &n, ",\"intents\":%" PRIu64 ",\"properties\":{\"os\":",
                    cfg->intents) &&
            put_json_string(buf, sizeof buf, &n, cfg->os ? cfg->os : "linux") &&
            put_raw(buf, sizeof buf, &n, ",\"browser\":") &&
            put_json_string(buf, sizeof buf, &n, cfg->browser ? cfg->browser : "claude-coordinator") &&
            put_raw(buf, sizeof buf, &n, ",\"device\":") &&
            put_json_string(buf, sizeof buf, &n, cfg->device ? cfg->device : "claude-coordinator") &&
            put_raw(buf, sizeof buf, &n, "}");
  if (ok && cfg->shard_count > 0)
    ok = put_raw(buf, sizeof buf, &n, ",\"shard\":[%d,%d]", cfg->shard_id, cfg->shard_count);
  if (ok && cfg->large_threshold > 0)
    ok = put_raw(buf, sizeof buf, &n, ",\"large_threshold\":%d", cfg->large_threshold);
  if (ok && cfg->presence_json) {
    json_span p;
    if (json_parse(cfg->presence_json, strlen(cfg->presence_json), &p) < 0 ||
        p.type != JSON_OBJECT)
      return -EINVAL;
    ok = put_raw(buf, sizeof buf, &n, ",\"presence\":%.*s", (int)p.len, p.p);
  }
  if (ok) ok = put_raw(buf, sizeof buf, &n, "}}");
  if (!ok) return -EMSGSIZE;
  g->identify = dupn(buf, n);
  g->identify_len = n;
  return g->identify ? 0 : -ENOMEM;
}

static bool url_ok(const char *url) {
  return url && (strncmp(url, "wss://", 6) == 0 || strncmp(url, "ws://", 5) == 0) &&
         strlen(url) < URL_MAX;
}

gw_proto *gw_new(const gw_config *cfg, int *err) {
  int e = -EINVAL;
  gw_proto *g = NULL;
  if (!cfg || !url_ok(cfg->url) || !cfg->token || !cfg->token[0] ||
      strlen(cfg->token) > 512 || cfg->shard_id < 0 ||
      (cfg->shard_count > 0 && cfg->shard_id >= cfg->shard_count) ||
      (cfg->shard_count == 0 && cfg->shard_id != 0) ||
      (cfg->resume_session_id && strlen(cfg->resume_session_id) >= SESSION_ID_MAX) ||
      (cfg->resume_url && !url_ok(cfg->resume_url)))
    goto fail;
  e = -ENOMEM;
  g = calloc(1, sizeof *g);
  if (!g) goto fail;
  g->seq = -1;
  g->latency = -1;
  g->url_base = url_without_query(cfg->url);
  g->query = dup(cfg->compress ? "v=10&encoding=json&compress=zlib-stream"
                               : "v=10&encoding=json");
  g->token = dup(cfg->token);
  if (!g->url_base || !g->query || !g->token) goto fail;
  e = build_identify(g, cfg);
  if (e < 0) goto fail;
  g->shard_id = cfg->shard_id;
  g->own_limiter.max_concurrency = cfg->max_concurrency > 0 ? cfg->max_concurrency : 1;
  g->limiter = cfg->limiter ? cfg->limiter : &g->own_limiter;
  g->hello_timeout = cfg->hello_timeout_ms ? cfg->hello_timeout_ms : 60000;
  g->ready_timeout = cfg->ready_timeout_ms ? cfg->ready_timeout_ms : 15000;
  g->backoff_base = cfg->backoff_base_ms ? cfg->backoff_base_ms : 1000;
  g->backoff_max = cfg->backoff_max_ms ? cfg->backoff_max_ms : 60000;
  g->close_timeout = cfg->close_timeout_ms ? cfg->close_timeout_ms : 5000;
  g->healthy_ms = cfg->healthy_ms ? cfg->healthy_ms : 5000;
  g->random = cfg->random;
  g->random_ud = cfg->random_ud;
  g->reserve = 3;
  e = -ENOMEM;
  if (cfg->resume_session_id && cfg->resume_session_id[0]) {
    g->session_id = dup(cfg->resume_session_id);
    if (!g->session_id) goto fail;
    g->seq = cfg->resume_seq >= 0 ? cfg->resume_seq : 0;
    if (cfg->resume_url) {
      g->resume_url = url_without_query(cfg->resume_url);
      if (!g->resume_url) goto fail;
    }
  }
  g->state = GW_IDLE;
  return g;
fail:
  if (err) *err = e;
  gw_close(g);
  return NULL;
}

void gw_close(gw_proto *g) {
  if (!g) return;
  queue_clear(g);
  free(g->queue);
  for (size_t i = g->a_head; i < g->a_len; i++) free(g->acts[i].mem);
  free(g->acts);
  free(g->held);
  drop_session(g);
  free(g->url_base);
  free(g->query);
  if (g->token) memset(g->token, 0, strlen(g->token));
  free(g->token);
  if (g->identify) memset(g->identify, 0, g->identify_len);
  free(g->identify);
  free(g);
}

/* ---- inspection ------------------------------------------------------------------- */

enum gw_state gw_get_state(const gw_proto *g) { return g->state; }

const char *gw_state_name(enum gw_state s) {
  static const char *const names[] = {
      "idle", "backoff", "connecting", "wait-hello", "wait-identify",
      "identifying", "resuming", "ready", "closing", "stopped",
  };
  return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

void gw_session(const gw_proto *g, const char **session_id, const char **resume_url,
                int64_t *seq) {
  if (session_id) *session_id = g->session_id;
  if (resume_url) *resume_url = g->resume_url;
  if (seq) *seq = g->seq;
}

unsigned gw_connect_count(const gw_proto *g) { return g->connects; }
int64_t gw_latency(const gw_proto *g) { return g->latency; }
