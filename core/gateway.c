/* The gateway transport: libwebsockets on the project's libuv loop, feeding gw_proto.
 *
 * One lws context per gateway (created at start, destroyed when it stops), one wsi per
 * connection attempt. Each wsi carries a small `conn` (its opaque user data) that points
 * back at the gateway until the gateway lets go of it (abort, close), after which that
 * wsi's late callbacks are ignored; the conn is freed when lws destroys the wsi. */
#include "gateway.h"

#include <errno.h>
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "inflate.h"
#include "log.h"

#define COMPONENT "gateway"
#define TEXT_MAX_DEFAULT ((size_t)64 << 20)

typedef struct outframe {
  struct outframe *next;
  size_t len;
  unsigned char buf[]; /* LWS_PRE bytes of headroom, then the payload */
} outframe;

typedef struct conn {
  gateway *gw;        /* NULL once detached */
  struct lws *wsi;
  int peer_code;      /* the peer's close code, 0 if none yet */
  int close_sent;     /* the code of the close frame we sent, 0 if none */
  bool established, reported, destroyed;
} conn;

struct gateway {
  uv_loop_t *loop;
  struct lws_context *ctx;
  gw_proto *proto;
  gateway_callbacks cb;
  void *ud;
  bool compress;
  size_t max_message;
  char *ca_file;

  uv_timer_t timer;
  conn *cur;
  outframe *out_head, *out_tail;
  int close_code;     /* a CLOSE action waiting for the writable callback; 0: none */

  /* inbound reassembly */
  zs_inflater zs;
  char *text;
  size_t text_len, text_cap;
  bool text_overflow;

  bool pumping, stopped, closing, freed_by_timer;
};

/* The conn whose lws_client_connect_via_info() is running (set only during that call):
 * lws may destroy its wsi inside the call, and connect_to() still needs the conn. */
static conn *connecting;

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

static void pump(gateway *gw);

/* ---- outbound --------------------------------------------------------------------- */

static void out_clear(gateway *gw) {
  while (gw->out_head) {
    outframe *f = gw->out_head;
    gw->out_head = f->next;
    free(f);
  }
  gw->out_tail = NULL;
}

static void out_push(gateway *gw, const char *data, size_t len) {
  outframe *f = malloc(sizeof *f + LWS_PRE + len);
  if (!f) {
    log_error(COMPONENT, "out of memory: a gateway payload was dropped");
    return;
  }
  f->next = NULL;
  f->len = len;
  memcpy(f->buf + LWS_PRE, data, len);
  if (gw->out_tail)
    gw->out_tail->next = f;
  else
    gw->out_head = f;
  gw->out_tail = f;
}

/* ---- connections ------------------------------------------------------------------ */

static void detach(gateway *gw) {
  conn *c = gw->cur;
  gw->cur = NULL;
  out_clear(gw);
  gw->close_code = 0;
  if (!c) return;
  c->gw = NULL;
  if (c->wsi) lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void connect_to(gateway *gw, const char *url) {
  char buf[2048];
  const char *prot, *addr, *path;
  int port;
  snprintf(buf, sizeof buf, "%s", url);
  if (lws_parse_uri(buf, &prot, &addr, &port, &path)) {
    gw_on_connect_failed(gw->proto, now_ms(), "unparsable URL");
    return;
  }
  bool tls = strcmp(prot, "wss") == 0 || strcmp(prot, "https") == 0;
  char fullpath[2048];
  snprintf(fullpath, sizeof fullpath, "/%s", path);

  conn *c = calloc(1, sizeof *c);
  if (!c) {
    gw_on_connect_failed(gw->proto, now_ms(), "out of memory");
    return;
  }
  c->gw = gw;
  gw->cur = c;
  zs_reset(&gw->zs);
  gw->text_len = 0;
  gw->text_overflow = false;

  struct lws_client_connect_info ci;
  memset(&ci, 0, sizeof ci);
  ci.context = gw->ctx;
  ci.address = addr;
  ci.port = port;
  ci.path = fullpath;
  ci.host = addr;
  ci.origin = addr;
  ci.ssl_connection = tls ? LCCSCF_USE_SSL : 0;
  ci.alpn = "http/1.1";
  ci.local_protocol_name = "discord-gateway";
  ci.opaque_user_data = c;
  ci.pwsi = &c->wsi;
  connecting = c;
  struct lws *wsi = lws_client_connect_via_info(&ci);
  connecting = NULL;
  if (!wsi) {
    /* Failed synchronously. lws may have reported it and destroyed the wsi already
     * (WSI_DESTROY left c to us while we were inside the call). */
    bool reported = c->reported;
    if (gw->cur == c) gw->cur = NULL;
    c->gw = NULL;
    if (c->destroyed || !c->wsi)
      free(c);
    else
      lws_set_opaque_user_data(c->wsi, c); /* freed at WSI_DESTROY */
    if (!reported) gw_on_connect_failed(gw->proto, now_ms(), "could not start the connection");
  } else if (c->destroyed) {
    free(c);
  }
}

static void do_close(gateway *gw, int code) {
  if (!gw->cur || !gw->cur->wsi) return;
  gw->close_code = code;
  lws_callback_on_writable(gw->cur->wsi);
}

/* ---- the machine's actions and timer ---------------------------------------------- */

static void on_timer(uv_timer_t *t) {
  gateway *gw = t->data;
  if (gw->stopped) {
    /* Let go of the loop: lws closes its handles, so an idle loop can end. Done here,
     * never inside an lws callback. */
    if (gw->ctx) {
      lws_context_destroy(gw->ctx);
      gw->ctx = NULL;
    }
    return;
  }
  gw_tick(gw->proto, now_ms());
  pump(gw);
}

static void arm_timer(gateway *gw) {
  uint64_t d = gw_next_deadline(gw->proto);
  if (gw->stopped) {
    if (gw->ctx)
      uv_timer_start(&gw->timer, on_timer, 0, 0);
    else
      uv_timer_stop(&gw->timer);
    return;
  }
  if (d == UINT64_MAX) {
    uv_timer_stop(&gw->timer);
    return;
  }
  uint64_t now = now_ms();
  uv_timer_start(&gw->timer, on_timer, d > now ? d - now : 0, 0);
}

static void log_proto(const gw_action *a) {
  static const enum log_level map[] = {LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR};
  log_msg(map[a->level & 3], COMPONENT, "%.*s", (int)a->len, a->data);
}

static void pump(gateway *gw) {
  if (gw->pumping) return; /* the outer loop picks up what this call queued */
  gw->pumping = true;
  gw_action a;
  while (gw_poll(gw->proto, &a)) {
    switch (a.kind) {
    case GW_ACT_CONNECT:
      connect_to(gw, a.url);
      break;
    case GW_ACT_SEND:
      if (gw->cur && gw->cur->wsi) {
        out_push(gw, a.data, a.len);
        lws_callback_on_writable(gw->cur->wsi);
      }
      break;
    case GW_ACT_CLOSE:
      do_close(gw, a.code);
      break;
    case GW_ACT_ABORT:
      detach(gw);
      break;
    case GW_ACT_DISPATCH:
      if (gw->cb.on_dispatch && !gw->closing)
        gw->cb.on_dispatch(gw->ud, a.name, a.data, a.len, a.seq);
      break;
    case GW_ACT_LOG:
      log_proto(&a);
      break;
    case GW_ACT_FATAL:
      log_error(COMPONENT, "%.*s", (int)a.len, a.data);
      if (gw->cb.on_fatal && !gw->closing) gw->cb.on_fatal(gw->ud, a.code, a.data);
      break;
    case GW_ACT_STOPPED:
      gw->stopped = true;
      detach(gw);
      if (gw->cb.on_stopped && !gw->closing) gw->cb.on_stopped(gw->ud);
      break;
    }
  }
  gw->pumping = false;
  if (!gw->closing) arm_timer(gw);
}

/* ---- inbound ---------------------------------------------------------------------- */

static void deliver(gateway *gw, const char *msg, size_t len) {
  gw_on_frame(gw->proto, now_ms(), msg, len);
}

static void received(gateway *gw, struct lws *wsi, const void *in, size_t len) {
  bool final = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
  if (gw->compress) {
    const char *msg;
    size_t mlen;
    int rc = zs_feed(&gw->zs, in, len, &msg, &mlen);
    if (rc == 1) {
      deliver(gw, msg, mlen);
    } else if (rc < 0) {
      log_warn(COMPONENT, "zlib-stream could not be inflated (%s): reconnecting",
               rc == -EMSGSIZE ? "message too large" : "corrupt data");
      /* A broken stream cannot continue: drop this connection and let the machine
       * resume on a new one. */
      detach(gw);
      gw_on_closed(gw->proto, now_ms(), 1006);
    }
    return;
  }
  if (!gw->text_overflow) {
    if (gw->text_len + len + 1 > gw->text_cap) {
      size_t cap = gw->text_cap ? gw->text_cap : 65536;
      while (cap < gw->text_len + len + 1) cap *= 2;
      if (cap > gw->max_message + 1) {
        gw->text_overflow = true;
      } else {
        char *n = realloc(gw->text, cap);
        if (!n) {
          gw->text_overflow = true;
        } else {
          gw->text = n;
          gw->text_cap = cap;
        }
      }
    }
    if (!gw->text_overflow) {
      memcpy(gw->text + gw->text_len, in, len);
      gw->text_len += len;
    }
  }
  if (!final) return;
  if (gw->text_overflow) {
    log_warn(COMPONENT, "a gateway message larger than %zu bytes was dropped", gw->max_message);
  } else {
    gw->text[gw->text_len] = '\0';
    deliver(gw, gw->text, gw->text_len);
  }
  gw->text_len = 0;
  gw->text_overflow = false;
}

static int writeable(gateway *gw, struct lws *wsi) {
  if (gw->out_head) {
    outframe *f = gw->out_head;
    gw->out_head = f->next;
    if (!gw->out_head) gw->out_tail = NULL;
    int n = lws_write(wsi, f->buf + LWS_PRE, f->len, LWS_WRITE_TEXT);
    free(f);
    if (n < 0) return -1;
    if (gw->out_head || gw->close_code) lws_callback_on_writable(wsi);
    return 0;
  }
  if (gw->close_code) {
    /* Our close frame, written by hand: with lws 4.1 a client returning -1 after
     * lws_close_reason() drops the TCP connection without sending it. The peer echoes
     * it and lws then closes; the machine's close timeout covers a peer that does not. */
    unsigned char frame[LWS_PRE + 2];
    frame[LWS_PRE] = (unsigned char)(gw->close_code >> 8);
    frame[LWS_PRE + 1] = (unsigned char)(gw->close_code & 0xff);
    gw->cur->close_sent = gw->close_code;
    gw->close_code = 0;
    /* 4 is lws's internal LWSWRITE_CLOSE (the public enum leaves the value out) */
    if (lws_write(wsi, frame + LWS_PRE, 2, (enum lws_write_protocol)4) < 0) return -1;
  }
  return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
  conn *c = lws_get_opaque_user_data(wsi);
  gateway *gw = c ? c->gw : NULL;
  switch (reason) {
  case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    if (!c) break;
    c->reported = true;
    if (gw) {
      gw->cur = NULL;
      c->gw = NULL;
      gw_on_connect_failed(gw->proto, now_ms(), in ? (const char *)in : "connection error");
      pump(gw);
    }
    break;
  case LWS_CALLBACK_CLIENT_ESTABLISHED:
    if (!gw) return -1;
    c->established = true;
    gw_on_open(gw->proto, now_ms());
    pump(gw);
    break;
  case LWS_CALLBACK_CLIENT_RECEIVE:
    if (!gw) return -1;
    received(gw, wsi, in, len);
    pump(gw);
    break;
  case LWS_CALLBACK_CLIENT_WRITEABLE:
    if (!gw) return -1;
    return writeable(gw, wsi);
  case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    if (c && len >= 2) {
      const unsigned char *p = in;
      c->peer_code = (p[0] << 8) | p[1];
    }
    break;
  case LWS_CALLBACK_CLIENT_CLOSED:
    if (!c) break;
    c->reported = true;
    if (gw) {
      int code = c->peer_code ? c->peer_code : (c->close_sent ? c->close_sent : 1006);
      gw->cur = NULL;
      c->gw = NULL;
      out_clear(gw);
      gw->close_code = 0;
      gw_on_closed(gw->proto, now_ms(), code);
      pump(gw);
    }
    break;
  case LWS_CALLBACK_WSI_DESTROY:
    if (!c) break;
    lws_set_opaque_user_data(wsi, NULL);
    c->wsi = NULL;
    if (connecting == c) { /* connect_to() frees it when the call returns */
      c->destroyed = true;
      if (gw && gw->cur == c) gw->cur = NULL;
      if (gw && !c->reported) {
        c->reported = true;
        gw_on_connect_failed(gw->proto, now_ms(), "connection failed");
      }
      break;
    }
    if (gw && gw->cur == c) {
      /* Destroyed without a close report (e.g. killed during the handshake). */
      gw->cur = NULL;
      out_clear(gw);
      gw->close_code = 0;
      if (c->established)
        gw_on_closed(gw->proto, now_ms(), c->peer_code ? c->peer_code : 1006);
      else if (!c->reported)
        gw_on_connect_failed(gw->proto, now_ms(), "connection closed during the handshake");
      pump(gw);
    }
    free(c);
    break;
  default:
    break;
  }
  return 0;
}

static const struct lws_protocols protocols[] = {
    {"discord-gateway", callback, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- life cycle ------------------------------------------------------------------- */

static void lws_log_bridge(int level, const char *line) {
  size_t n = strlen(line);
  while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
  if (level & LLL_ERR)
    log_warn("lws", "%.*s", (int)n, line);
  else
    log_debug("lws", "%.*s", (int)n, line);
}

static void free_gateway(gateway *gw) {
  out_clear(gw);
  gw_close(gw->proto);
  zs_free(&gw->zs);
  free(gw->text);
  free(gw->ca_file);
  free(gw);
}

static void timer_closed(uv_handle_t *h) { free_gateway(h->data); }

int gateway_start(uv_loop_t *loop, const gateway_options *opts, const gateway_callbacks *cb,
                  void *ud, gateway **out, const char **err_msg) {
  int err = 0;
  static const char *no_msg = "";
  if (err_msg) *err_msg = no_msg;
  gateway *gw = calloc(1, sizeof *gw);
  if (!gw) return -ENOMEM;
  gw->loop = loop;
  gw->cb = *cb;
  gw->ud = ud;
  gw->compress = opts->proto.compress;
  gw->max_message = opts->max_message ? opts->max_message : TEXT_MAX_DEFAULT;
  gw->proto = gw_new(&opts->proto, &err);
  if (!gw->proto) {
    free(gw);
    if (err_msg) *err_msg = "invalid gateway settings";
    return err ? err : -EINVAL;
  }
  if (zs_init(&gw->zs, gw->max_message) < 0) {
    gw_close(gw->proto);
    free(gw);
    return -ENOMEM;
  }
  if (opts->ca_file) gw->ca_file = strdup(opts->ca_file);

  lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_bridge);
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  void *loops[1] = {loop};
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = protocols;
  info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  info.foreign_loops = loops;
  info.client_ssl_ca_filepath = gw->ca_file;
  info.connect_timeout_secs = 20;
  info.timeout_secs = 20;
  gw->ctx = lws_create_context(&info);
  if (!gw->ctx) {
    zs_free(&gw->zs);
    gw_close(gw->proto);
    free(gw->ca_file);
    free(gw);
    if (err_msg)
      *err_msg = "could not create the websocket context on libuv (is the "
                 "libwebsockets-evlib-uv package installed?)";
    return -ENOSYS;
  }
  uv_timer_init(loop, &gw->timer);
  gw->timer.data = gw;
  gw_start(gw->proto, now_ms());
  *out = gw;
  /* Actions (the first CONNECT) run from the loop, so no callback fires before this
   * function has returned. */
  uv_timer_start(&gw->timer, on_timer, 0, 0);
  return 0;
}

int gateway_send(gateway *gw, const char *json, size_t len) {
  int rc = gw_send(gw->proto, now_ms(), json, len);
  if (rc == 0) uv_timer_start(&gw->timer, on_timer, 0, 0); /* flush from the loop */
  return rc;
}

void gateway_stop(gateway *gw, bool keep_session) {
  gw_shutdown(gw->proto, now_ms(), keep_session);
  uv_timer_start(&gw->timer, on_timer, 0, 0);
}

void gateway_close(gateway *gw) {
  if (!gw || gw->closing) return;
  gw->closing = true;
  detach(gw);
  uv_timer_stop(&gw->timer);
  if (gw->ctx) {
    lws_context_destroy(gw->ctx); /* finishes in the loop, closing lws's own handles */
    gw->ctx = NULL;
  }
  uv_close((uv_handle_t *)&gw->timer, timer_closed);
}

enum gw_state gateway_state(const gateway *gw) { return gw_get_state(gw->proto); }
const gw_proto *gateway_proto(const gateway *gw) { return gw->proto; }
