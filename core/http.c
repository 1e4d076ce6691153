/* HTTP over curl multi on the libuv loop: see http.h. */
#include "http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

struct http_client {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  http_req *reqs; /* running requests */
  size_t active;
  int closing;
  int handles_open; /* timer + poll contexts not yet closed */
  struct sock_ctx *socks;
};

typedef struct sock_ctx {
  uv_poll_t poll;
  curl_socket_t fd;
  http_client *c;
  struct sock_ctx *prev, *next;
} sock_ctx;

struct http_req {
  http_client *c;
  CURL *easy;
  struct curl_slist *headers;
  char *body;
  http_done_fn done;
  void *ud;
  http_req *prev, *next;
  int running;
  /* response */
  int status;
  char *resp;
  size_t resp_len, resp_cap;
  char *hbuf; /* "name\0value\0" pairs */
  size_t hbuf_len, hbuf_cap;
  size_t *hoff; /* offsets of names in hbuf */
  size_t nheaders, hoff_cap;
  char errbuf[CURL_ERROR_SIZE];
  char error[CURL_ERROR_SIZE + 32];
  int failed;
  uint64_t started_ns, ended_ns;
};

static int curl_inited;

/* ---- buffers ---- */

static int grow(char **buf, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t n = *cap ? *cap : 256;
  while (n < need) n *= 2;
  char *p = realloc(*buf, n);
  if (!p) return -1;
  *buf = p;
  *cap = n;
  return 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
  http_req *r = ud;
  size_t n = size * nmemb;
  if (grow(&r->resp, &r->resp_cap, r->resp_len + n + 1) < 0) return 0;
  memcpy(r->resp + r->resp_len, ptr, n);
  r->resp_len += n;
  r->resp[r->resp_len] = '\0';
  return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud) {
  http_req *r = ud;
  size_t n = size * nmemb;
  size_t len = n;
  while (len && (ptr[len - 1] == '\r' || ptr[len - 1] == '\n')) len--;
  if (len >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
    /* a new response (after 100 Continue, for example): forget the previous headers */
    r->hbuf_len = 0;
    r->nheaders = 0;
    return n;
  }
  const char *colon = memchr(ptr, ':', len);
  if (!colon) return n;
  size_t nlen = (size_t)(colon - ptr);
  const char *v = colon + 1;
  size_t vlen = len - nlen - 1;
  while (vlen && (*v == ' ' || *v == '\t')) v++, vlen--;
  while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) vlen--;
  if (grow(&r->hbuf, &r->hbuf_cap, r->hbuf_len + nlen + vlen + 2) < 0) return 0;
  if (r->nheaders == r->hoff_cap) {
    size_t cap = r->hoff_cap ? r->hoff_cap * 2 : 16;
    size_t *p = realloc(r->hoff, cap * sizeof *p);
    if (!p) return 0;
    r->hoff = p;
    r->hoff_cap = cap;
  }
  r->hoff[r->nheaders++] = r->hbuf_len;
  for (size_t i = 0; i < nlen; i++) r->hbuf[r->hbuf_len++] = (char)tolower((unsigned char)ptr[i]);
  r->hbuf[r->hbuf_len++] = '\0';
  memcpy(r->hbuf + r->hbuf_len, v, vlen);
  r->hbuf_len += vlen;
  r->hbuf[r->hbuf_len++] = '\0';
  return n;
}

/* ---- request list ---- */

static void link_req(http_client *c, http_req *r) {
  r->prev = NULL;
  r->next = c->reqs;
  if (c->reqs) c->reqs->prev = r;
  c->reqs = r;
  c->active++;
  r->running = 1;
}

static void unlink_req(http_req *r) {
  http_client *c = r->c;
  if (!r->running) return;
  if (r->prev) r->prev->next = r->next;
  else c->reqs = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  c->active--;
  r->running = 0;
}

/* ---- completion ---- */

static void describe_error(http_req *r, CURLcode rc) {
  const char *detail = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
  switch (rc) {
  case CURLE_OPERATION_TIMEDOUT:
    snprintf(r->error, sizeof r->error, "timeout");
    break;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_CONNECT:
    snprintf(r->error, sizeof r->error, "connect: %s", detail);
    break;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_USE_SSL_FAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_SHUTDOWN_FAILED:
    snprintf(r->error, sizeof r->error, "tls: %s", detail);
    break;
  default:
    snprintf(r->error, sizeof r->error, "http: %s", detail);
    break;
  }
  r->failed = 1;
}

static void check_multi_info(http_client *c) {
  CURLMsg *msg;
  int pending;
  while ((msg = curl_multi_info_read(c->multi, &pending))) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL *easy = msg->easy_handle;
    CURLcode rc = msg->data.result;
    http_req *r = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
    curl_multi_remove_handle(c->multi, easy);
    if (!r) continue;
    unlink_req(r);
    r->ended_ns = uv_hrtime();
    if (rc == CURLE_OK) {
      long code = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
      r->status = (int)code;
    } else {
      describe_error(r, rc);
    }
    r->done(r, r->ud);
  }
}

/* ---- curl <-> libuv ---- */

static void ctx_closed(uv_handle_t *h) {
  sock_ctx *ctx = h->data;
  http_client *c = ctx->c;
  free(ctx);
  if (--c->handles_open == 0 && c->closing) free(c);
}

static void ctx_close(sock_ctx *ctx) {
  http_client *c = ctx->c;
  if (ctx->prev) ctx->prev->next = ctx->next;
  else c->socks = ctx->next;
  if (ctx->next) ctx->next->prev = ctx->prev;
  uv_poll_stop(&ctx->poll);
  uv_close((uv_handle_t *)&ctx->poll, ctx_closed);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  sock_ctx *ctx = h->data;
  http_client *c = ctx->c;
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running;
  curl_multi_socket_action(c->multi, ctx->fd, flags, &running);
  check_multi_info(c);
}

static int on_socket(CURL *easy, curl_socket_t s, int action, void *userp, void *socketp) {
  (void)easy;
  http_client *c = userp;
  sock_ctx *ctx = socketp;
  if (action == CURL_POLL_REMOVE) {
    if (ctx) {
      ctx_close(ctx);
      curl_multi_assign(c->multi, s, NULL);
    }
    return 0;
  }
  if (!ctx) {
    ctx = calloc(1, sizeof *ctx);
    if (!ctx) return -1;
    ctx->fd = s;
    ctx->c = c;
    if (uv_poll_init_socket(c->loop, &ctx->poll, s) < 0) {
      free(ctx);
      return -1;
    }
    ctx->poll.data = ctx;
    c->handles_open++;
    ctx->next = c->socks;
    if (c->socks) c->socks->prev = ctx;
    c->socks = ctx;
    curl_multi_assign(c->multi, s, ctx);
  }
  int events = 0;
  if (action == CURL_POLL_IN || action == CURL_POLL_INOUT) events |= UV_READABLE;
  if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT) events |= UV_WRITABLE;
  uv_poll_start(&ctx->poll, events, on_poll);
  return 0;
}

static void on_timeout(uv_timer_t *t) {
  http_client *c = t->data;
  int running;
  curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_multi_info(c);
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  http_client *c = userp;
  if (timeout_ms < 0) uv_timer_stop(&c->timer);
  else uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0); /* 0: next turn */
  return 0;
}

/* ---- client ---- */

int http_client_new(uv_loop_t *loop, http_client **out) {
  if (!curl_inited) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return -EIO;
    curl_inited = 1;
  }
  http_client *c = calloc(1, sizeof *c);
  if (!c) return -ENOMEM;
  c->loop = loop;
  c->multi = curl_multi_init();
  if (!c->multi) {
    free(c);
    return -ENOMEM;
  }
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  c->handles_open = 1;
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 64L);
  *out = c;
  return 0;
}

size_t http_client_active(const http_client *c) { return c->active; }

static void timer_closed(uv_handle_t *h) {
  http_client *c = h->data;
  if (--c->handles_open == 0 && c->closing) free(c);
}

void http_client_close(http_client *c) {
  if (!c || c->closing) return;
  while (c->reqs) http_cancel(c->reqs);
  c->closing = 1;
  /* cleanup closes the cached connections; sockets it did not report removed are
   * closed here */
  curl_multi_cleanup(c->multi);
  c->multi = NULL;
  while (c->socks) ctx_close(c->socks);
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, timer_closed);
}

/* ---- requests ---- */

static void req_destroy(http_req *r) {
  if (r->easy) curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->headers);
  free(r->body);
  free(r->resp);
  free(r->hbuf);
  free(r->hoff);
  free(r);
}

int http_start(http_client *c, const http_opts *o, http_done_fn done, void *ud,
               http_req **out) {
  if (!c || c->closing || !o || !o->url || !done) return -EINVAL;
  const char *method = o->method ? o->method : "GET";
  http_req *r = calloc(1, sizeof *r);
  if (!r) return -ENOMEM;
  r->c = c;
  r->done = done;
  r->ud = ud;
  r->easy = curl_easy_init();
  if (!r->easy) goto nomem;
  CURL *e = r->easy;
  curl_easy_setopt(e, CURLOPT_URL, o->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L); /* prefer one multiplexed HTTP/2 connection */
  double timeout = o->timeout > 0 ? o->timeout : 30;
  long tms = (long)(timeout * 1000 + 0.5);
  if (tms < 1) tms = 1;
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, tms);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, tms < 10000 ? tms : 10000L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, o->insecure ? 0L : 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, o->insecure ? 0L : 2L);
  if (o->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);

  if (strcmp(method, "GET") == 0) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else {
    if (strcmp(method, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (o->body || strcmp(method, "DELETE") != 0) {
      r->body = malloc(o->body_len + 1);
      if (!r->body) goto nomem;
      if (o->body_len) memcpy(r->body, o->body, o->body_len);
      r->body[o->body_len] = '\0';
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
    }
  }
  /* no "Expect: 100-continue" round trip for large bodies; no default content type */
  struct curl_slist *h = curl_slist_append(NULL, "Expect:");
  if (!h) goto nomem;
  r->headers = h;
  bool has_ct = false;
  for (const char *const *p = o->headers; p && *p; p++) {
    if (strncasecmp(*p, "content-type:", 13) == 0) has_ct = true;
    struct curl_slist *n = curl_slist_append(r->headers, *p);
    if (!n) goto nomem;
    r->headers = n;
  }
  if (!has_ct && r->body) {
    struct curl_slist *n = curl_slist_append(r->headers, "Content-Type:");
    if (!n) goto nomem;
    r->headers = n;
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  r->started_ns = uv_hrtime();
  if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
    req_destroy(r);
    return -EIO;
  }
  link_req(c, r);
  if (out) *out = r;
  return 0;
nomem:
  req_destroy(r);
  return -ENOMEM;
}

void http_cancel(http_req *r) {
  if (!r) return;
  if (r->running) {
    curl_multi_remove_handle(r->c->multi, r->easy);
    unlink_req(r);
  }
  req_destroy(r);
}

void http_req_free(http_req *r) {
  if (r) req_destroy(r);
}

const char *http_req_error(const http_req *r) { return r->failed ? r->error : NULL; }
int http_req_status(const http_req *r) { return r->status; }

const char *http_req_body(const http_req *r, size_t *len) {
  if (len) *len = r->resp_len;
  return r->resp ? r->resp : "";
}

size_t http_req_header_count(const http_req *r) { return r->nheaders; }

http_header http_req_header(const http_req *r, size_t i) {
  http_header h = {NULL, NULL};
  if (i >= r->nheaders) return h;
  h.name = r->hbuf + r->hoff[i];
  h.value = h.name + strlen(h.name) + 1;
  return h;
}

const char *http_req_find_header(const http_req *r, const char *name) {
  for (size_t i = 0; i < r->nheaders; i++) {
    http_header h = http_req_header(r, i);
    if (strcasecmp(h.name, name) == 0) return h.value;
  }
  return NULL;
}

double http_req_elapsed(const http_req *r) {
  uint64_t end = r->ended_ns ? r->ended_ns : uv_hrtime();
  return (double)(end - r->started_ns) / 1e9;
}
