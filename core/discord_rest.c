/* Discord REST over the HTTP client and the rate-limit scheduler: see discord_rest.h. */
#include "discord_rest.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#include <stdarg.h>

/* asprintf without _GNU_SOURCE (which would pull <sched.h> from the wrong place) */
static int fmt_alloc(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fmt_alloc(char **out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  *out = NULL;
  if (n < 0) return -1;
  char *p = malloc((size_t)n + 1);
  if (!p) return -1;
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  *out = p;
  return n;
}

struct rest_client {
  uv_loop_t *loop;
  http_client *http;
  rate_limiter *rl;
  uv_timer_t timer;
  rest_config cfg;
  char *api_url, *auth, *user_agent, *ca_file;
  bool configured, unauthorized, closing;
  rest_call *calls; /* every live call */
  rest_stats stats;
  uint64_t rng;
};

struct rest_call {
  rate_req rl;
  rest_client *rc;
  rest_call *prev, *next;
  char *method, *path, *url, *body;
  size_t body_len;
  char **headers; /* NULL-terminated */
  double timeout;
  unsigned flags;
  rest_done_fn done;
  void *ud;
  http_req *inflight;
  http_req *last;   /* response of the last attempt (or NULL) */
  char error[160];
  bool failed;
  int status, attempts, retries, n429;
  double created, queued_at;
  char route[256];
};

static double mono(void) { return (double)uv_hrtime() / 1e9; }

static uint64_t next_rand(rest_client *rc) {
  /* xorshift64*: jitter only, nothing secret */
  uint64_t x = rc->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rc->rng = x;
  return x * 2685821657736338717ull;
}

void rest_config_default(rest_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->api_url = "https://discord.com/api/v10";
  cfg->user_agent_url = "https://github.com/claude-coordinator";
  cfg->version = "0.1";
  cfg->global_per_second = 50;
  cfg->max_retries = 3;
  cfg->retry_base = 0.5;
  cfg->retry_max = 10;
  cfg->max_429_retries = 30;
  cfg->timeout = 15;
}

int rest_client_new(uv_loop_t *loop, http_client *http, rest_client **out) {
  rest_client *rc = calloc(1, sizeof *rc);
  if (!rc) return -ENOMEM;
  rc->loop = loop;
  rc->http = http;
  rest_config_default(&rc->cfg);
  rc->rl = rate_new(NULL);
  if (!rc->rl) {
    free(rc);
    return -ENOMEM;
  }
  uv_timer_init(loop, &rc->timer);
  rc->timer.data = rc;
  rc->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
  if (!rc->rng) rc->rng = 1;
  *out = rc;
  return 0;
}

static char *dupz(const char *s) { return s ? strdup(s) : NULL; }

int rest_configure(rest_client *rc, const rest_config *cfg) {
  if (!cfg->api_url || !cfg->token || !cfg->token[0]) return -EINVAL;
  char *api = strdup(cfg->api_url);
  char *auth = NULL, *ua = NULL;
  if (fmt_alloc(&auth, "Authorization: Bot %s", cfg->token) < 0) auth = NULL;
  if (fmt_alloc(&ua, "User-Agent: DiscordBot (%s, %s)",
               cfg->user_agent_url ? cfg->user_agent_url : "", cfg->version ? cfg->version : "")
      < 0)
    ua = NULL;
  char *ca = dupz(cfg->ca_file);
  if (!api || !auth || !ua || (cfg->ca_file && !ca)) {
    free(api), free(auth), free(ua), free(ca);
    return -ENOMEM;
  }
  while (api[0] && api[strlen(api) - 1] == '/') api[strlen(api) - 1] = '\0';
  log_add_secret(cfg->token);
  free(rc->api_url), free(rc->auth), free(rc->user_agent), free(rc->ca_file);
  rc->api_url = api;
  rc->auth = auth;
  rc->user_agent = ua;
  rc->ca_file = ca;
  rc->cfg = *cfg;
  rc->cfg.api_url = rc->cfg.token = rc->cfg.user_agent_url = rc->cfg.version = NULL;
  rc->cfg.ca_file = NULL;
  if (rc->cfg.max_retries < 0) rc->cfg.max_retries = 0;
  if (rc->cfg.retry_base <= 0) rc->cfg.retry_base = 0.5;
  if (rc->cfg.retry_max <= 0) rc->cfg.retry_max = 10;
  if (rc->cfg.max_429_retries <= 0) rc->cfg.max_429_retries = 30;
  if (rc->cfg.timeout <= 0) rc->cfg.timeout = 15;
  rate_set_global_per_second(rc->rl, cfg->global_per_second);
  if (cfg->invalid_warn > 0 || cfg->invalid_slow > 0) {
    /* thresholds live in the limiter's config: make a fresh one only while idle */
    if (!rc->calls) {
      rate_config rcfg;
      rate_config_default(&rcfg);
      rcfg.global_per_second = cfg->global_per_second;
      if (cfg->invalid_warn > 0) rcfg.invalid_warn = cfg->invalid_warn;
      if (cfg->invalid_slow > 0) rcfg.invalid_slow = cfg->invalid_slow;
      rate_limiter *n = rate_new(&rcfg);
      if (n) {
        rate_free(rc->rl);
        rc->rl = n;
      }
    }
  }
  rc->configured = true;
  rc->unauthorized = false;
  return 0;
}

int rest_configured(const rest_client *rc) { return rc->configured; }

/* ---- calls ---- */

static void call_destroy(rest_call *c) {
  if (c->inflight) http_cancel(c->inflight);
  if (c->last) http_req_free(c->last);
  if (c->headers)
    for (char **h = c->headers; *h; h++) free(*h);
  free(c->headers);
  free(c->method);
  free(c->path);
  free(c->url);
  free(c->body);
  free(c);
}

static void call_unlink(rest_call *c) {
  rest_client *rc = c->rc;
  if (!rc) return;
  if (c->prev) c->prev->next = c->next;
  else rc->calls = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  c->rc = NULL;
}

void rest_call_free(rest_call *c) {
  if (!c) return;
  call_unlink(c);
  call_destroy(c);
}

static void pump(rest_client *rc);

static void on_timer(uv_timer_t *t) { pump(t->data); }

static void arm(rest_client *rc, double now, double again) {
  if (again == RL_NEVER) {
    uv_timer_stop(&rc->timer);
    return;
  }
  double ms = ceil((again - now) * 1000.0);
  if (ms < 0) ms = 0;
  uv_timer_start(&rc->timer, on_timer, (uint64_t)ms, 0);
}

/* The bucket key for logs: hash and resource without any webhook/interaction token. */
static void log_bucket(const rest_call *c, char *out, size_t n) {
  const char *key = rate_req_bucket(&c->rl);
  size_t i = 0;
  int slashes = 0;
  bool in_major = false;
  for (const char *p = key; *p && i + 4 < n; p++) {
    if (*p == '|') in_major = true, slashes = 0;
    else if (in_major && *p == '/' && ++slashes == 2) {
      memcpy(out + i, "/:token", 7 < n - i - 1 ? 7 : n - i - 1);
      i += 7 < n - i - 1 ? 7 : n - i - 1;
      break;
    }
    out[i++] = *p;
  }
  out[i < n ? i : n - 1] = '\0';
}

static void finish(rest_call *c) {
  rest_client *rc = c->rc;
  call_unlink(c);
  (void)rc;
  c->done(c, c->ud);
}

static void http_done(http_req *req, void *ud);

static void send_call(rest_client *rc, rest_call *c, double now) {
  c->attempts++;
  rc->stats.sent++;
  rc->stats.queue_seconds += now - c->queued_at;
  const char *hv[64];
  size_t n = 0;
  for (char **h = c->headers; *h && n < 63; h++) hv[n++] = *h;
  hv[n] = NULL;
  http_opts o = {.method = c->method, .url = c->url, .headers = hv, .body = c->body,
                 .body_len = c->body_len, .timeout = c->timeout, .ca_file = rc->ca_file};
  if (c->last) {
    http_req_free(c->last);
    c->last = NULL;
  }
  int r = http_start(rc->http, &o, http_done, c, &c->inflight);
  if (r < 0) {
    c->inflight = NULL;
    rate_response resp;
    rate_response_init(&resp, 0);
    rate_done(rc->rl, &c->rl, now, &resp);
    snprintf(c->error, sizeof c->error, "http: could not start the request (%d)", r);
    c->failed = true;
    finish(c);
  }
}

static void pump(rest_client *rc) {
  if (rc->closing) return;
  double now = mono(), again;
  rate_req *r;
  while ((r = rate_poll(rc->rl, now, &again))) send_call(rc, r->data, now);
  arm(rc, now, again);
}

static bool retryable_error(const char *err) {
  return strncmp(err, "tls:", 4) != 0;
}

static void report_events(rest_client *rc, double now) {
  unsigned ev = rate_events(rc->rl);
  if (ev & RL_EV_INVALID_WARN)
    log_warn("discord", "%d invalid requests (401/403/429) in the last 10 minutes; Discord bans "
             "the IP beyond 10000", rate_invalid_count(rc->rl, now));
  if (ev & RL_EV_INVALID_SLOW)
    log_warn("discord", "%d invalid requests in 10 minutes: slowing every request down",
             rate_invalid_count(rc->rl, now));
}

static void http_done(http_req *req, void *ud) {
  rest_call *c = ud;
  rest_client *rc = c->rc;
  c->inflight = NULL;
  c->last = req;
  double now = mono();
  rate_response resp;
  const char *err = http_req_error(req);
  if (err) {
    rate_response_init(&resp, 0);
    snprintf(c->error, sizeof c->error, "%s", err);
    c->failed = true;
    c->status = 0;
  } else {
    rc->stats.responses++;
    c->failed = false;
    c->error[0] = '\0';
    c->status = http_req_status(req);
    rate_response_init(&resp, c->status);
    for (size_t i = 0; i < http_req_header_count(req); i++) {
      http_header h = http_req_header(req, i);
      rate_parse_header(&resp, h.name, strlen(h.name), h.value, strlen(h.value));
    }
    if (c->status == 429) {
      size_t len;
      const char *body = http_req_body(req, &len);
      rate_parse_429_body(&resp, body, len);
    }
  }
  enum rate_result res = rate_done(rc->rl, &c->rl, now, &resp);
  report_events(rc, now);
  if (c->status == 401) rc->unauthorized = true;

  char bucket[128];
  log_bucket(c, bucket, sizeof bucket);
  if (log_get_level() <= LOG_DEBUG)
    log_debug("discord", "%s -> %d%s%s bucket=%s %.1f ms attempt %d", c->route, c->status,
              err ? " " : "", err ? err : "", bucket, http_req_elapsed(req) * 1000.0,
              c->attempts);

  if (res == RL_RESULT_RETRY) {
    rc->stats.retries_429++;
    c->queued_at = now;
    if (++c->n429 > rc->cfg.max_429_retries) {
      log_warn("discord", "%s: still 429 after %d retries; giving up", c->route, c->n429 - 1);
      rate_cancel(rc->rl, &c->rl);
      finish(c);
    } else {
      log_info("discord", "%s: 429 (%s%s), retrying after %.3f s", c->route,
               resp.global || resp.scope == RL_SCOPE_GLOBAL ? "global"
               : resp.scope == RL_SCOPE_SHARED               ? "shared"
                                                             : "bucket",
               "", resp.has_retry_after ? resp.retry_after : resp.reset_after);
    }
  } else if (((err && retryable_error(err)) || c->status >= 500) &&
             c->retries < rc->cfg.max_retries) {
    double delay = rc->cfg.retry_base * pow(2.0, c->retries);
    if (delay > rc->cfg.retry_max) delay = rc->cfg.retry_max;
    delay *= 0.5 + 0.5 * ((double)(next_rand(rc) >> 11) / 9007199254740992.0);
    c->retries++;
    rc->stats.retries_other++;
    log_info("discord", "%s: %s, retry %d/%d in %.2f s", c->route,
             err ? err : (c->status == 502 ? "502" : "server error"), c->retries,
             rc->cfg.max_retries, delay);
    c->queued_at = now;
    if (rate_requeue(rc->rl, &c->rl, now + delay) < 0) finish(c);
  } else {
    if (c->status == 401)
      log_error("discord", "%s: 401 Unauthorized: the bot token is wrong or was revoked",
                c->route);
    finish(c);
  }
  pump(rc);
}

int rest_start(rest_client *rc, const rest_opts *o, rest_done_fn done, void *ud,
               rest_call **out) {
  if (!rc->configured || rc->closing) return -ENOTCONN;
  if (rc->unauthorized) return -EACCES;
  if (!o->method || !o->path || o->path[0] != '/' || !done) return -EINVAL;
  rest_call *c = calloc(1, sizeof *c);
  if (!c) return -ENOMEM;
  c->rl.data = c;
  c->done = done;
  c->ud = ud;
  c->method = strdup(o->method);
  c->path = strdup(o->path);
  if (fmt_alloc(&c->url, "%s%s", rc->api_url, o->path) < 0) c->url = NULL;
  if (o->body) {
    c->body = malloc(o->body_len + 1);
    if (c->body) {
      memcpy(c->body, o->body, o->body_len);
      c->body[o->body_len] = '\0';
    }
    c->body_len = o->body_len;
  }
  size_t nextra = 0;
  for (const char *const *h = o->headers; h && *h; h++) nextra++;
  if (nextra > 40) nextra = 40;
  c->headers = calloc(nextra + 6, sizeof *c->headers);
  if (!c->method || !c->path || !c->url || (o->body && !c->body) || !c->headers) goto nomem;
  size_t n = 0;
  if (!(c->headers[n++] = strdup(rc->auth))) goto nomem;
  if (!(c->headers[n++] = strdup(rc->user_agent))) goto nomem;
  if (o->body) {
    if (fmt_alloc(&c->headers[n], "Content-Type: %s",
                 o->content_type ? o->content_type : "application/json") < 0) {
      c->headers[n] = NULL;
      goto nomem;
    }
    n++;
  }
  if (o->reason && o->reason[0]) {
    char *enc = rest_urlencode(o->reason);
    if (!enc) goto nomem;
    int r = fmt_alloc(&c->headers[n], "X-Audit-Log-Reason: %s", enc);
    free(enc);
    if (r < 0) {
      c->headers[n] = NULL;
      goto nomem;
    }
    n++;
  }
  for (size_t i = 0; i < nextra; i++)
    if (!(c->headers[n++] = strdup(o->headers[i]))) goto nomem;
  c->timeout = o->timeout > 0 ? o->timeout : rc->cfg.timeout;
  c->flags = o->flags;
  if (rate_route(c->method, c->path, c->route, sizeof c->route, (char[256]){0}, 256) < 0)
    snprintf(c->route, sizeof c->route, "%s (long path)", c->method);
  int r = rate_enqueue(rc->rl, &c->rl, c->method, c->path, c->flags);
  if (r < 0) {
    call_destroy(c);
    return r;
  }
  c->created = c->queued_at = mono();
  c->rc = rc;
  c->next = rc->calls;
  if (rc->calls) rc->calls->prev = c;
  rc->calls = c;
  if (out) *out = c;
  pump(rc);
  return 0;
nomem:
  call_destroy(c);
  return -ENOMEM;
}

void rest_cancel(rest_call *c) {
  if (!c) return;
  rest_client *rc = c->rc;
  if (rc) rate_cancel(rc->rl, &c->rl);
  call_unlink(c);
  call_destroy(c);
  if (rc) pump(rc);
}

static void timer_closed(uv_handle_t *h) {
  rest_client *rc = h->data;
  free(rc->api_url), free(rc->auth), free(rc->user_agent), free(rc->ca_file);
  free(rc);
}

void rest_client_close(rest_client *rc) {
  if (!rc || rc->closing) return;
  rc->closing = true;
  while (rc->calls) {
    rest_call *c = rc->calls;
    rate_cancel(rc->rl, &c->rl);
    call_unlink(c);
    call_destroy(c);
  }
  rate_free(rc->rl);
  rc->rl = NULL;
  uv_timer_stop(&rc->timer);
  uv_close((uv_handle_t *)&rc->timer, timer_closed);
}

const char *rest_call_error(const rest_call *c) { return c->failed ? c->error : NULL; }
const http_req *rest_call_response(const rest_call *c) { return c->failed ? NULL : c->last; }
int rest_call_status(const rest_call *c) { return c->status; }
int rest_call_attempts(const rest_call *c) { return c->attempts; }
const char *rest_call_route(const rest_call *c) { return c->route; }
double rest_call_elapsed(const rest_call *c) { return mono() - c->created; }

void rest_get_stats(const rest_client *rc, rest_stats *out) {
  *out = rc->stats;
  out->invalid = rc->rl ? (unsigned long)rate_invalid_count(rc->rl, mono()) : 0;
}

/* ---- pure helpers ---- */

char *rest_urlencode(const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s);
  char *out = malloc(n * 3 + 1), *p = out;
  if (!out) return NULL;
  for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
    unsigned char ch = *q;
    if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
        ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      *p++ = (char)ch;
    } else {
      *p++ = '%';
      *p++ = hex[ch >> 4];
      *p++ = hex[ch & 15];
    }
  }
  *p = '\0';
  return out;
}

static bool contains(const char *hay, size_t hlen, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; n <= hlen && i <= hlen - n; i++)
    if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0) return true;
  return false;
}

int rest_multipart(const char *payload_json, size_t payload_len, const rest_file *files,
                   size_t nfiles, char **out, size_t *out_len, char *content_type,
                   size_t content_type_len) {
  static unsigned long counter;
  char boundary[64];
  for (;;) {
    snprintf(boundary, sizeof boundary, "ccboundary%016llx%04lx",
             (unsigned long long)(uv_hrtime() * 2654435761ull), ++counter & 0xffff);
    bool clash = payload_json && contains(payload_json, payload_len, boundary);
    for (size_t i = 0; !clash && i < nfiles; i++)
      clash = contains(files[i].data, files[i].len, boundary);
    if (!clash) break;
  }
  size_t cap = payload_len + 512;
  for (size_t i = 0; i < nfiles; i++)
    cap += files[i].len + strlen(files[i].name ? files[i].name : "") * 3 + 256 +
           strlen(files[i].content_type ? files[i].content_type : "");
  char *buf = malloc(cap), *p = buf;
  if (!buf) return -ENOMEM;
  if (payload_json) {
    p += sprintf(p, "--%s\r\nContent-Disposition: form-data; name=\"payload_json\"\r\n"
                    "Content-Type: application/json\r\n\r\n", boundary);
    memcpy(p, payload_json, payload_len);
    p += payload_len;
    p += sprintf(p, "\r\n");
  }
  for (size_t i = 0; i < nfiles; i++) {
    p += sprintf(p, "--%s\r\nContent-Disposition: form-data; name=\"files[%zu]\"; filename=\"",
                 boundary, i);
    for (const char *q = files[i].name ? files[i].name : "file"; *q; q++) {
      /* the filename is a quoted string: escape what would end it */
      if (*q == '"') p += sprintf(p, "%%22");
      else if (*q == '\r' || *q == '\n') p += sprintf(p, "%%0A");
      else if (*q == '\\') p += sprintf(p, "%%5C");
      else *p++ = *q;
    }
    p += sprintf(p, "\"\r\nContent-Type: %s\r\n\r\n",
                 files[i].content_type ? files[i].content_type : "application/octet-stream");
    if (files[i].len) memcpy(p, files[i].data, files[i].len);
    p += files[i].len;
    p += sprintf(p, "\r\n");
  }
  p += sprintf(p, "--%s--\r\n", boundary);
  *out = buf;
  *out_len = (size_t)(p - buf);
  snprintf(content_type, content_type_len, "multipart/form-data; boundary=%s", boundary);
  return 0;
}

void rest_nonce(char out[26]) {
  static unsigned long long counter;
  static unsigned long long salt;
  if (!salt) salt = (uv_hrtime() ^ ((unsigned long long)getpid() << 20)) & 0xffffffffffull;
  /* at most 10 + 1 + 12 characters */
  snprintf(out, 26, "%010llx-%llx", salt, ++counter & 0xffffffffffffull);
}
