// fuzz-sources: core/gateway_proto.c core/json_scan.c core/inflate.c
/* libFuzzer target: gateway frame handling. The input is a script of records
 *   [cmd] [len lo] [len hi] [len bytes of payload]
 * cmd % 8: 0 text frame, 1 clock advance (payload's first 2 bytes, x16 ms), 2 transport
 * open, 3 close (payload's first 2 bytes = code), 4 connect failure, 5 application send,
 * 6 shutdown, 7 zlib-stream bytes (inflated, complete messages fed as frames).
 * The scanner also parses each frame on its own. Invariants checked: every frame sent
 * fits in 4096 bytes and is valid JSON; nothing connects after a fatal stop. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway_proto.h"
#include "inflate.h"
#include "json_scan.h"

static uint32_t rng_state;
static double fz_random(void *ud) {
  (void)ud;
  rng_state = rng_state * 1103515245u + 12345u;
  return (double)(rng_state >> 8) / (double)(1u << 24);
}

static int stopped_fatally;

static void drain(gw_proto *g) {
  gw_action a;
  while (gw_poll(g, &a)) {
    json_span v;
    switch (a.kind) {
    case GW_ACT_SEND:
      if (a.len > GW_MAX_PAYLOAD || json_parse(a.data, a.len, &v) != 0) abort();
      break;
    case GW_ACT_CONNECT:
      if (stopped_fatally) abort();
      break;
    case GW_ACT_FATAL:
      stopped_fatally = 1;
      break;
    case GW_ACT_DISPATCH:
      if (json_parse(a.data, a.len, &v) != 0) abort();
      break;
    default:
      break;
    }
  }
}

static void scan_alone(const uint8_t *p, size_t n) {
  json_span root, v;
  int64_t i;
  double d;
  char buf[64];
  if (json_parse((const char *)p, n, &root) != 0) return;
  if (root.type != JSON_OBJECT) return;
  if (json_get(root, "op", &v) == 0) json_int64(v, &i);
  if (json_get(root, "t", &v) == 0) json_string(v, buf, sizeof buf, NULL);
  if (json_get(root, "d", &v) == 0 && v.type == JSON_OBJECT) {
    json_span w;
    if (json_get(v, "heartbeat_interval", &w) == 0) json_double(w, &d);
    if (json_get(v, "session_id", &w) == 0) json_string_eq(w, "x");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gw_config cfg = {
      .url = "wss://gateway.example",
      .token = "token",
      .intents = 37377,
      .compress = 1,
      .random = fz_random,
  };
  rng_state = 1;
  stopped_fatally = 0;
  gw_proto *g = gw_new(&cfg, NULL);
  if (!g) abort();
  zs_inflater zi;
  if (zs_init(&zi, 1 << 20) != 0) abort();
  uint64_t now = 1000;
  gw_start(g, now);
  drain(g);
  size_t off = 0;
  while (off + 3 <= size) {
    uint8_t cmd = data[off];
    size_t len = (size_t)data[off + 1] | ((size_t)data[off + 2] << 8);
    off += 3;
    if (len > size - off) len = size - off;
    const uint8_t *p = data + off;
    off += len;
    unsigned arg = len >= 2 ? (unsigned)p[0] | ((unsigned)p[1] << 8) : 0;
    switch (cmd % 8) {
    case 0:
      scan_alone(p, len);
      gw_on_frame(g, now, (const char *)p, len);
      break;
    case 1:
      now += (uint64_t)arg * 16;
      if (now >= gw_next_deadline(g) || (cmd & 0x80)) gw_tick(g, now);
      break;
    case 2:
      gw_on_open(g, now);
      zs_reset(&zi);
      break;
    case 3:
      gw_on_closed(g, now, (int)arg);
      break;
    case 4:
      gw_on_connect_failed(g, now, "fuzz");
      break;
    case 5:
      gw_send(g, now, (const char *)p, len);
      break;
    case 6:
      gw_shutdown(g, now, cmd & 0x80);
      break;
    case 7: {
      const char *msg;
      size_t mlen;
      int rc = zs_feed(&zi, p, len, &msg, &mlen);
      if (rc == 1) {
        scan_alone((const uint8_t *)msg, mlen);
        gw_on_frame(g, now, msg, mlen);
      } else if (rc < 0) {
        zs_reset(&zi);
      }
      break;
    }
    }
    drain(g);
  }
  /* Run the clock out: timers must converge, never spin. */
  for (int i = 0; i < 64 && gw_next_deadline(g) != UINT64_MAX; i++) {
    uint64_t d = gw_next_deadline(g);
    if (d > now) now = d;
    gw_tick(g, now);
    drain(g);
  }
  zs_free(&zi);
  gw_close(g);
  return 0;
}
