/* The Discord gateway connection: libwebsockets as a guest on the libuv loop, driving the
 * protocol state machine (gateway_proto.h). It owns the websocket, reassembles fragments,
 * inflates zlib-stream, arms one uv timer for the machine's deadlines and reports
 * dispatches through callbacks. No Lua here.
 *
 * Life cycle: gateway_start() connects and keeps reconnecting on its own; callbacks fire
 * from loop callbacks, never inline from a gateway_* call. gateway_stop() leaves (close
 * 1000, or 4000 to keep the session resumable); on_stopped fires once when the gateway has
 * stopped for any reason (stop or fatal close code). gateway_close() then releases it:
 * the memory is freed in the loop once libwebsockets has let go of its handles. */
#ifndef CC_GATEWAY_H
#define CC_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gateway_proto.h"

typedef struct gateway gateway;

typedef struct gateway_callbacks {
  /* One dispatch (op 0): name is t, data the raw JSON of d (NUL-terminated). */
  void (*on_dispatch)(void *ud, const char *name, const char *data, size_t len, int64_t seq);
  /* A fatal close code: the operator must act. message says what to fix. */
  void (*on_fatal)(void *ud, int code, const char *message);
  /* No connection now and none coming (after gateway_stop or a fatal close). */
  void (*on_stopped)(void *ud);
} gateway_callbacks;

typedef struct gateway_options {
  gw_config proto;       /* url, token, intents, shard, compress, timeouts... */
  const char *ca_file;   /* PEM bundle to verify the server with; NULL: the system's */
  size_t max_message;    /* largest inflated message (0: 64 MiB) */
} gateway_options;

/* 0, -EINVAL (bad options), -ENOMEM, or -ENOSYS when libwebsockets cannot run on libuv
 * (the libwebsockets-evlib-uv package is missing): then *err_msg says so. */
int gateway_start(uv_loop_t *loop, const gateway_options *opts, const gateway_callbacks *cb,
                  void *ud, gateway **out, const char **err_msg);
/* Queues an application payload (see gw_send for the errors). */
int gateway_send(gateway *gw, const char *json, size_t len);
void gateway_stop(gateway *gw, bool keep_session);
/* Releases the gateway; no callback fires after this returns. */
void gateway_close(gateway *gw);

enum gw_state gateway_state(const gateway *gw);
const gw_proto *gateway_proto(const gateway *gw);

#endif
