#define _GNU_SOURCE
/* The gateway state machine through every behaviour row of the protocol, with an
 * injected clock and random source and a log of the actions it produced. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include "gateway_proto.h"

#define URL "wss://gateway.example"
#define RESUME "wss://resume.example"
#define TOKEN "tok.en"
#define MAXLOG 4096

typedef struct fx {
  gw_proto *g;
  gw_config cfg;
  uint64_t now;
  double rnd;
  char *log[MAXLOG];
  uint64_t when[MAXLOG];
  size_t n, seen; /* entries, entries already consumed by expect() */
  char *last_dispatch_data;
  int64_t last_dispatch_seq;
  bool auto_ack; /* answer every heartbeat with an ACK, like a healthy server */
} fx;

static double fx_random(void *ud) { return ((fx *)ud)->rnd; }

static void logf_(fx *f, const char *fmt, ...) {
  char buf[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  assert_true(f->n < MAXLOG);
  f->when[f->n] = f->now;
  f->log[f->n++] = strdup(buf);
}

static void drain(fx *f) {
  gw_action a;
  bool heartbeat = false;
  while (gw_poll(f->g, &a)) {
    switch (a.kind) {
    case GW_ACT_CONNECT: logf_(f, "CONNECT %s", a.url); break;
    case GW_ACT_SEND:
      logf_(f, "SEND %.*s", (int)a.len, a.data);
      if (strncmp(a.data, "{\"op\":1,", 8) == 0) heartbeat = true;
      break;
    case GW_ACT_CLOSE: logf_(f, "CLOSE %d", a.code); break;
    case GW_ACT_ABORT: logf_(f, "ABORT"); break;
    case GW_ACT_DISPATCH:
      logf_(f, "DISPATCH %s %.*s", a.name, (int)a.len, a.data);
      free(f->last_dispatch_data);
      f->last_dispatch_data = strndup(a.data, a.len);
      f->last_dispatch_seq = a.seq;
      /* the whole payload is there too */
      assert_true(a.payload_len >= a.len);
      assert_non_null(memmem(a.payload, a.payload_len, a.data, a.len));
      break;
    case GW_ACT_FATAL: logf_(f, "FATAL %d %.*s", a.code, (int)a.len, a.data); break;
    case GW_ACT_STOPPED: logf_(f, "STOPPED"); break;
    case GW_ACT_LOG: break; /* free text: not part of the contract */
    }
  }
  if (heartbeat && f->auto_ack) {
    gw_on_frame(f->g, f->now, "{\"op\":11}", 9);
    drain(f);
  }
}

static fx *fx_new(void) {
  fx *f = calloc(1, sizeof *f);
  f->now = 1000000;
  f->rnd = 0.5;
  f->cfg.url = URL;
  f->cfg.token = TOKEN;
  f->cfg.intents = (1 << 0) | (1 << 9) | (1 << 12) | (1 << 15);
  f->cfg.random = fx_random;
  f->cfg.random_ud = f;
  return f;
}

static void fx_start(fx *f) {
  int err = 0;
  f->g = gw_new(&f->cfg, &err);
  assert_non_null(f->g);
  assert_int_equal(gw_start(f->g, f->now), 0);
  drain(f);
}

static void fx_free(fx *f) {
  gw_close(f->g);
  for (size_t i = 0; i < f->n; i++) free(f->log[i]);
  free(f->last_dispatch_data);
  free(f);
}

/* Moves the clock to now + ms, ticking at every deadline on the way. */
static void advance(fx *f, uint64_t ms) {
  uint64_t target = f->now + ms;
  for (;;) {
    uint64_t d = gw_next_deadline(f->g);
    if (d > target) break;
    if (d > f->now) f->now = d;
    gw_tick(f->g, f->now);
    drain(f);
  }
  f->now = target;
  gw_tick(f->g, f->now);
  drain(f);
}

/* Like advance, but stops right after an action starting with prefix (or at max ms). */
static void advance_until(fx *f, const char *prefix, uint64_t max) {
  uint64_t target = f->now + max;
  size_t from = f->seen;
  for (;;) {
    for (size_t i = from; i < f->n; i++)
      if (strncmp(f->log[i], prefix, strlen(prefix)) == 0) return;
    from = f->n;
    uint64_t d = gw_next_deadline(f->g);
    if (d > target) break;
    if (d > f->now) f->now = d;
    gw_tick(f->g, f->now);
    drain(f);
  }
  f->now = target;
}

static void frame(fx *f, const char *json) {
  gw_on_frame(f->g, f->now, json, strlen(json));
  drain(f);
}

static void open_(fx *f) { gw_on_open(f->g, f->now); drain(f); }
static void closed(fx *f, int code) { gw_on_closed(f->g, f->now, code); drain(f); }

static void hello(fx *f, int interval) {
  char buf[128];
  snprintf(buf, sizeof buf, "{\"op\":10,\"d\":{\"heartbeat_interval\":%d}}", interval);
  frame(f, buf);
}

static void dispatch(fx *f, int seq, const char *name, const char *d) {
  char buf[4096];
  snprintf(buf, sizeof buf, "{\"op\":0,\"s\":%d,\"t\":\"%s\",\"d\":%s}", seq, name, d);
  frame(f, buf);
}

static void ready(fx *f, int seq) {
  dispatch(f, seq, "READY",
           "{\"v\":10,\"session_id\":\"sess1\",\"resume_gateway_url\":\"" RESUME "\","
           "\"user\":{\"id\":\"1234567890123456789\"}}");
}

/* Asserts the next unseen log entry starts with prefix and consumes it. */
static void expect(fx *f, const char *prefix) {
  if (f->seen >= f->n) fail_msg("expected \"%s\", log has nothing more", prefix);
  if (strncmp(f->log[f->seen], prefix, strlen(prefix)) != 0)
    fail_msg("expected \"%s\", got \"%s\"", prefix, f->log[f->seen]);
  f->seen++;
}

static void expect_nothing(fx *f) {
  if (f->seen < f->n) fail_msg("expected no action, got \"%s\"", f->log[f->seen]);
}

static uint64_t last_when(fx *f) { return f->when[f->seen - 1]; }

static void skip_all(fx *f) { f->seen = f->n; }

/* Skips heartbeats, then expects prefix. */
static void expect_skip_hb(fx *f, const char *prefix) {
  while (f->seen < f->n && strncmp(f->log[f->seen], "SEND {\"op\":1,", 13) == 0) f->seen++;
  expect(f, prefix);
}

static size_t count(fx *f, const char *prefix) {
  size_t c = 0;
  for (size_t i = 0; i < f->n; i++)
    if (strncmp(f->log[i], prefix, strlen(prefix)) == 0) c++;
  return c;
}

/* A session up to READY at seq 1: connect, open, Hello (interval), Identify, READY. */
static fx *fx_ready(int interval) {
  fx *f = fx_new();
  fx_start(f);
  expect(f, "CONNECT " URL "/?v=10&encoding=json");
  open_(f);
  hello(f, interval);
  expect(f, "SEND {\"op\":2,");
  ready(f, 1);
  expect(f, "DISPATCH READY");
  return f;
}

/* ---- tests ------------------------------------------------------------------------ */

static void hello_and_jittered_first_heartbeat(void **state) {
  fx *f = fx_new();
  f->rnd = 0.25;
  fx_start(f);
  expect(f, "CONNECT " URL "/?v=10&encoding=json");
  expect_nothing(f);
  open_(f);
  expect_nothing(f);
  hello(f, 40000);
  expect(f, "SEND {\"op\":2,\"d\":{\"token\":\"" TOKEN "\",\"intents\":37377,");
  advance(f, 9999);
  expect_nothing(f); /* first heartbeat at 40000 * 0.25 */
  advance(f, 1);
  expect(f, "SEND {\"op\":1,\"d\":null}"); /* null: no sequence yet */
  frame(f, "{\"op\":11}");
  ready(f, 1);
  expect(f, "DISPATCH READY");
  advance(f, 39999);
  expect_nothing(f); /* then every interval */
  advance(f, 1);
  expect(f, "SEND {\"op\":1,\"d\":1}");
  fx_free(f);
}

static void heartbeat_carries_last_sequence(void **state) {
  fx *f = fx_ready(1000);
  advance(f, 500);
  expect(f, "SEND {\"op\":1,\"d\":1}");
  frame(f, "{\"op\":11,\"d\":null}");
  dispatch(f, 2, "MESSAGE_CREATE", "{\"id\":\"1\"}");
  dispatch(f, 7, "MESSAGE_CREATE", "{\"id\":\"2\"}");
  expect(f, "DISPATCH MESSAGE_CREATE");
  expect(f, "DISPATCH MESSAGE_CREATE");
  advance(f, 1000);
  expect(f, "SEND {\"op\":1,\"d\":7}");
  fx_free(f);
}

static void acked_heartbeats_keep_the_connection(void **state) {
  fx *f = fx_ready(1000);
  for (int i = 0; i < 10; i++) {
    advance(f, 1000);
    expect(f, "SEND {\"op\":1,");
    frame(f, "{\"op\":11}");
  }
  expect_nothing(f);
  assert_true(gw_latency(f->g) >= 0);
  assert_int_equal(gw_get_state(f->g), GW_READY);
  fx_free(f);
}

static void zombie_is_closed_and_resumed(void **state) {
  fx *f = fx_ready(1000);
  dispatch(f, 5, "MESSAGE_CREATE", "{}");
  expect(f, "DISPATCH");
  advance(f, 500);
  expect(f, "SEND {\"op\":1,\"d\":5}");
  uint64_t hb = last_when(f);
  /* no ACK: at the next heartbeat time the connection is a zombie */
  advance(f, 999);
  expect_nothing(f);
  advance(f, 1);
  expect(f, "CLOSE 4000");
  assert_true(last_when(f) - hb <= 2000);
  closed(f, 4000);
  expect(f, "CONNECT " RESUME "/?v=10&encoding=json");
  open_(f);
  hello(f, 1000);
  expect(f, "SEND {\"op\":6,\"d\":{\"token\":\"" TOKEN "\",\"session_id\":\"sess1\",\"seq\":5}}");
  dispatch(f, 6, "MESSAGE_CREATE", "{\"id\":\"missed\"}");
  dispatch(f, 7, "RESUMED", "null");
  expect(f, "DISPATCH MESSAGE_CREATE {\"id\":\"missed\"}");
  expect(f, "DISPATCH RESUMED");
  assert_int_equal(gw_get_state(f->g), GW_READY);
  fx_free(f);
}

static void zombie_close_that_hangs_is_aborted(void **state) {
  fx *f = fx_ready(1000);
  advance(f, 500);
  expect(f, "SEND {\"op\":1,");
  advance(f, 1000);
  expect(f, "CLOSE 4000");
  uint64_t closed_at = last_when(f);
  advance(f, 5000); /* the peer never answers the close: a zombie gets 1 s */
  expect(f, "ABORT");
  assert_int_equal(last_when(f) - closed_at, 1000);
  expect(f, "CONNECT " RESUME);
  fx_free(f);

  /* other closes wait the full close timeout for the peer's answer */
  f = fx_ready(40000);
  frame(f, "{\"op\":7}");
  expect(f, "CLOSE 4000");
  closed_at = last_when(f);
  advance(f, 10000);
  expect_skip_hb(f, "ABORT");
  assert_int_equal(last_when(f) - closed_at, 5000);
  fx_free(f);
}

static void server_heartbeat_request_is_answered_at_once(void **state) {
  fx *f = fx_ready(40000);
  frame(f, "{\"op\":1,\"d\":null}");
  expect(f, "SEND {\"op\":1,\"d\":1}");
  fx_free(f);
}

static void identify_carries_intents_properties_and_shard(void **state) {
  fx *f = fx_new();
  f->cfg.shard_id = 1;
  f->cfg.shard_count = 4;
  f->cfg.large_threshold = 50;
  f->cfg.browser = "b\"x";
  f->cfg.presence_json = "{\"status\":\"online\"}";
  fx_start(f);
  open_(f);
  hello(f, 40000);
  expect(f, "CONNECT");
  expect(f, "SEND {\"op\":2,\"d\":{\"token\":\"tok.en\",\"intents\":37377,"
            "\"properties\":{\"os\":\"linux\",\"browser\":\"b\\\"x\","
            "\"device\":\"claude-coordinator\"},\"shard\":[1,4],\"large_threshold\":50,"
            "\"presence\":{\"status\":\"online\"}}}");
  fx_free(f);

  f = fx_new();
  fx_start(f);
  open_(f);
  hello(f, 40000);
  assert_null(strstr(f->log[1], "shard"));
  assert_null(strstr(f->log[1], "presence"));
  fx_free(f);
}

static void ready_session_is_kept_and_resume_url_keeps_the_query(void **state) {
  fx *f = fx_new();
  f->cfg.compress = true;
  f->cfg.url = URL "/?v=9&encoding=etf"; /* our own query replaces a configured one */
  fx_start(f);
  expect(f, "CONNECT " URL "/?v=10&encoding=json&compress=zlib-stream");
  open_(f);
  hello(f, 40000);
  expect(f, "SEND {\"op\":2,");
  ready(f, 1);
  expect(f, "DISPATCH READY {\"v\":10,\"session_id\":\"sess1\"");
  const char *sid, *rurl;
  int64_t seq;
  gw_session(f->g, &sid, &rurl, &seq);
  assert_string_equal(sid, "sess1");
  assert_string_equal(rurl, RESUME "/");
  assert_int_equal(seq, 1);
  closed(f, 1006);
  expect(f, "CONNECT " RESUME "/?v=10&encoding=json&compress=zlib-stream");
  fx_free(f);
}

static void op7_before_hello_reconnects(void **state) {
  fx *f = fx_new();
  fx_start(f);
  expect(f, "CONNECT " URL);
  open_(f);
  frame(f, "{\"op\":7,\"d\":null}");
  expect(f, "CLOSE 4000");
  closed(f, 4000);
  expect(f, "CONNECT " URL); /* no session yet: the original URL, Identify */
  open_(f);
  hello(f, 40000);
  expect(f, "SEND {\"op\":2,");
  fx_free(f);
}

static void op7_after_ready_resumes(void **state) {
  fx *f = fx_ready(40000);
  dispatch(f, 3, "GUILD_CREATE", "{\"id\":\"9\"}");
  expect(f, "DISPATCH");
  frame(f, "{\"op\":7,\"d\":null}");
  expect(f, "CLOSE 4000");
  /* events that arrive before the close completes are still delivered */
  dispatch(f, 4, "MESSAGE_CREATE", "{\"id\":\"late\"}");
  expect(f, "DISPATCH MESSAGE_CREATE");
  closed(f, 4000);
  expect(f, "CONNECT " RESUME);
  open_(f);
  hello(f, 40000);
  expect(f, "SEND {\"op\":6,\"d\":{\"token\":\"tok.en\",\"session_id\":\"sess1\",\"seq\":4}}");
  fx_free(f);
}

static void op9_true_resumes(void **state) {
  fx *f = fx_ready(40000);
  frame(f, "{\"op\":9,\"d\":true}");
  expect(f, "CLOSE 4000");
  closed(f, 4000);
  expect(f, "CONNECT " RESUME);
  open_(f);
  hello(f, 40000);
  expect(f, "SEND {\"op\":6,");
  fx_free(f);
}

static void op9_false_waits_then_identifies_on_the_original_url(void **state) {
  for (int i = 0; i < 3; i++) {
    double r[] = {0.0, 0.5, 0.9999};
    fx *f = fx_ready(40000);
    f->rnd = r[i];
    frame(f, "{\"op\":9,\"d\":false}");
    expect(f, "CLOSE 4000");
    uint64_t t0 = f->now;
    closed(f, 4000);
    expect_nothing(f);
    advance(f, 6000);
    expect(f, "CONNECT " URL "/?v=10");
    uint64_t waited = last_when(f) - t0;
    assert_true(waited >= 1000 && waited <= 5000);
    open_(f);
    hello(f, 40000);
    expect(f, "SEND {\"op\":2,");
    const char *sid;
    gw_session(f->g, &sid, NULL, NULL);
    assert_null(sid);
    fx_free(f);
  }
}

static void fatal_close_codes_stop_with_the_fix(void **state) {
  int codes[] = {4004, 4010, 4011, 4012, 4013, 4014};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    fx *f = fx_ready(40000);
    closed(f, codes[i]);
    char want[32];
    snprintf(want, sizeof want, "FATAL %d", codes[i]);
    expect(f, want);
    assert_non_null(gw_fatal_message(codes[i]));
    if (codes[i] == 4014) assert_non_null(strstr(f->log[f->seen - 1], "MESSAGE_CONTENT"));
    if (codes[i] == 4004) assert_non_null(strstr(f->log[f->seen - 1], "token"));
    expect(f, "STOPPED");
    advance(f, 3600 * 1000);
    expect_nothing(f); /* no reconnect loop */
    assert_int_equal(gw_connect_count(f->g), 1);
    assert_int_equal(gw_get_state(f->g), GW_STOPPED);
    fx_free(f);
  }
  /* also when the server refuses before Hello (bad token answered at once) */
  fx *f = fx_new();
  fx_start(f);
  expect(f, "CONNECT");
  open_(f);
  closed(f, 4004);
  expect(f, "FATAL 4004");
  expect(f, "STOPPED");
  fx_free(f);
  assert_null(gw_fatal_message(4000));
  assert_null(gw_fatal_message(4009));
}

static void invalid_seq_and_session_timeout_start_a_new_session(void **state) {
  int codes[] = {4007, 4009};
  for (int i = 0; i < 2; i++) {
    fx *f = fx_ready(40000);
    dispatch(f, 9, "X", "{}");
    expect(f, "DISPATCH X");
    closed(f, codes[i]);
    expect(f, "CONNECT " URL);
    open_(f);
    hello(f, 40000);
    /* identifies again, once the 5 s identify window since the last one has passed */
    expect_nothing(f);
    advance(f, GW_IDENTIFY_SPACING_MS - 1);
    skip_all(f);
    assert_int_equal(count(f, "SEND {\"op\":2,"), 1);
    advance(f, 1);
    expect_skip_hb(f, "SEND {\"op\":2,");
    /* the new session starts its sequence again */
    ready(f, 1);
    expect(f, "DISPATCH READY");
    fx_free(f);
  }
}

static void other_codes_and_drops_resume(void **state) {
  int codes[] = {4000, 4001, 4002, 4003, 4005, 4008, 1000, 1001, 1006, 1011};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    fx *f = fx_ready(40000);
    advance(f, 10000);
    skip_all(f);
    closed(f, codes[i]);
    expect(f, "CONNECT " RESUME); /* healthy for 10 s: at once */
    open_(f);
    hello(f, 40000);
    expect(f, "SEND {\"op\":6,");
    fx_free(f);
  }
}

static void backoff_grows_with_jitter_and_resets_after_a_healthy_session(void **state) {
  fx *f = fx_new();
  fx_start(f);
  expect(f, "CONNECT");
  uint64_t prev = last_when(f);
  uint64_t want[] = {0, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    gw_on_connect_failed(f->g, f->now, "refused");
    drain(f);
    advance_until(f, "CONNECT", 70000);
    expect(f, "CONNECT");
    uint64_t at = last_when(f);
    assert_int_equal(at - prev, want[i]);
    f->now = at; /* the next failure happens right when it connects */
    prev = at;
  }
  /* jitter stays within +-10% */
  f->rnd = 0.0;
  gw_on_connect_failed(f->g, f->now, "refused");
  drain(f);
  advance_until(f, "CONNECT", 70000);
  expect(f, "CONNECT");
  assert_int_equal(last_when(f) - prev, 54000);
  f->now = prev = last_when(f);
  f->rnd = 0.999999;
  gw_on_connect_failed(f->g, f->now, "refused");
  drain(f);
  advance_until(f, "CONNECT", 70000);
  expect(f, "CONNECT");
  assert_true(last_when(f) - prev >= 65999 && last_when(f) - prev <= 66000);
  f->now = last_when(f);
  f->rnd = 0.5;
  /* a healthy session resets it */
  open_(f);
  hello(f, 40000);
  expect(f, "SEND {\"op\":2,");
  ready(f, 1);
  expect(f, "DISPATCH READY");
  advance(f, 30000);
  skip_all(f);
  closed(f, 1006);
  expect(f, "CONNECT " RESUME);
  assert_int_equal(last_when(f), f->now);
  /* and the next failures start from the base again */
  gw_on_connect_failed(f->g, f->now, "refused");
  drain(f);
  prev = f->now;
  advance_until(f, "CONNECT", 5000);
  expect(f, "CONNECT");
  assert_int_equal(last_when(f) - prev, 1000);
  fx_free(f);
}

static void a_session_that_dies_at_once_still_backs_off(void **state) {
  fx *f = fx_ready(40000);
  uint64_t prev = f->now;
  for (int i = 0; i < 4; i++) {
    closed(f, 4000);
    advance_until(f, "CONNECT", 100000);
    expect(f, "CONNECT " RESUME);
    uint64_t gap = last_when(f) - prev;
    assert_int_equal(gap, i == 0 ? 0 : 1000u << (i - 1));
    f->now = prev = last_when(f);
    open_(f);
    hello(f, 40000);
    expect(f, "SEND {\"op\":6,");
    dispatch(f, 2 + i, "RESUMED", "null");
    expect(f, "DISPATCH RESUMED");
  }
  fx_free(f);
}

static void hello_timeout_reconnects(void **state) {
  fx *f = fx_new();
  fx_start(f);
  expect(f, "CONNECT");
  open_(f);
  advance(f, 59999);
  expect_nothing(f);
  advance(f, 1);
  expect(f, "CLOSE 4000");
  closed(f, 4000);
  expect(f, "CONNECT");
  fx_free(f);
}

static void connect_that_never_completes_is_abandoned(void **state) {
  fx *f = fx_new();
  fx_start(f);
  expect(f, "CONNECT");
  advance(f, 60000);
  expect(f, "ABORT");
  expect(f, "CONNECT");
  fx_free(f);
}

static void ready_timeout_reidentifies(void **state) {
  fx *f = fx_new();
  fx_start(f);
  expect(f, "CONNECT");
  open_(f);
  hello(f, 40000);
  expect(f, "SEND {\"op\":2,");
  advance(f, 14999);
  skip_all(f);
  advance(f, 1);
  expect_skip_hb(f, "CLOSE 4000");
  closed(f, 4000);
  expect(f, "CONNECT " URL);
  open_(f);
  hello(f, 40000);
  expect(f, "SEND {\"op\":2,");
  fx_free(f);
}

static void send_limit_keeps_room_for_heartbeats(void **state) {
  fx *f = fx_ready(1000); /* 60 heartbeats a window: reserve capped at 60 */
  fx_free(f);
  f = fx_ready(40000); /* 2 heartbeats a window + 1 requested: reserve 3 */
  f->auto_ack = true;
  uint64_t t0 = f->now;
  for (int i = 0; i < 200; i++) {
    char buf[64];
    snprintf(buf, sizeof buf, "{\"op\":3,\"d\":{\"n\":%d}}", i);
    assert_int_equal(gw_send(f->g, f->now, buf, strlen(buf)), 0);
    drain(f);
  }
  /* 120 - 3 reserved - 1 Identify = 116 app payloads in the first window */
  assert_int_equal(count(f, "SEND {\"op\":3,"), 116);
  /* heartbeats still go out */
  frame(f, "{\"op\":1}");
  assert_int_equal(count(f, "SEND {\"op\":1,"), 1);
  assert_int_equal(count(f, "SEND {\"op\":3,"), 116);
  advance(f, 60000);
  /* Sliding window: the Identify slot and the first 116 expire at t0 + 60 s. */
  size_t after = count(f, "SEND {\"op\":3,");
  assert_true(after > 116);
  advance(f, 120000);
  assert_int_equal(count(f, "SEND {\"op\":3,"), 200);
  /* never more than 120 in any 60 s window */
  for (size_t i = 0; i < f->n; i++) {
    if (strncmp(f->log[i], "SEND", 4) != 0) continue;
    size_t in = 0;
    for (size_t j = i; j < f->n && f->when[j] < f->when[i] + 60000; j++)
      if (strncmp(f->log[j], "SEND", 4) == 0) in++;
    assert_true(in <= 120);
  }
  (void)t0;
  /* order is kept */
  int last = -1;
  for (size_t i = 0; i < f->n; i++) {
    int v;
    if (sscanf(f->log[i], "SEND {\"op\":3,\"d\":{\"n\":%d}}", &v) == 1) {
      assert_true(v == last + 1);
      last = v;
    }
  }
  fx_free(f);
}

static void send_rejects_what_discord_would(void **state) {
  fx *f = fx_new();
  fx_start(f);
  assert_int_equal(gw_send(f->g, f->now, "{\"op\":3,\"d\":{}}", 15), -ENOTCONN);
  fx_free(f);
  f = fx_ready(40000);
  char *big = malloc(GW_MAX_PAYLOAD + 2);
  memset(big, ' ', GW_MAX_PAYLOAD + 1);
  big[0] = '{';
  big[GW_MAX_PAYLOAD] = '}';
  assert_int_equal(gw_send(f->g, f->now, big, GW_MAX_PAYLOAD + 1), -EMSGSIZE);
  assert_int_equal(gw_send(f->g, f->now, big, GW_MAX_PAYLOAD), -EINVAL); /* unclosed */
  big[GW_MAX_PAYLOAD - 1] = '}';
  assert_int_equal(gw_send(f->g, f->now, big, GW_MAX_PAYLOAD), 0);
  assert_int_equal(gw_send(f->g, f->now, "[1]", 3), -EINVAL);
  free(big);
  fx_free(f);

  /* an Identify that would exceed 4096 bytes is refused up front */
  f = fx_new();
  char *presence = malloc(5000);
  snprintf(presence, 5000, "{\"s\":\"%04000d\"}", 0);
  f->cfg.presence_json = presence;
  int err = 0;
  assert_null(gw_new(&f->cfg, &err));
  assert_int_equal(err, -EMSGSIZE);
  free(presence);
  f->cfg.presence_json = NULL;
  f->cfg.shard_id = 2;
  f->cfg.shard_count = 2;
  assert_null(gw_new(&f->cfg, &err));
  f->cfg.shard_count = 0;
  f->cfg.shard_id = 0;
  f->cfg.url = "https://x";
  assert_null(gw_new(&f->cfg, &err));
  assert_int_equal(err, -EINVAL);
  free(f);
}

static void identify_spacing_follows_max_concurrency(void **state) {
  for (int mc = 1; mc <= 2; mc++) {
    gw_identify_limiter lim = {.max_concurrency = mc};
    fx *a = fx_new(), *b = fx_new();
    a->cfg.shard_count = b->cfg.shard_count = 2;
    a->cfg.shard_id = 0;
    b->cfg.shard_id = 1;
    a->cfg.limiter = b->cfg.limiter = &lim;
    fx_start(a);
    fx_start(b);
    open_(a);
    open_(b);
    hello(a, 40000);
    hello(b, 40000);
    expect(a, "CONNECT");
    expect(a, "SEND {\"op\":2,");
    expect(b, "CONNECT");
    if (mc == 2) {
      expect(b, "SEND {\"op\":2,"); /* different buckets: at once */
    } else {
      expect_nothing(b);
      assert_int_equal(gw_get_state(b->g), GW_WAIT_IDENTIFY);
      advance(b, GW_IDENTIFY_SPACING_MS - 1);
      skip_all(b);
      assert_int_equal(count(b, "SEND {\"op\":2,"), 0);
      advance(b, 1);
      assert_true(GW_IDENTIFY_SPACING_MS >= 5000);
      expect_skip_hb(b, "SEND {\"op\":2,");
    }
    fx_free(a);
    fx_free(b);
  }
}

static void replayed_duplicates_are_dispatched_once(void **state) {
  fx *f = fx_ready(40000);
  dispatch(f, 2, "MESSAGE_CREATE", "{\"id\":\"a\"}");
  dispatch(f, 3, "MESSAGE_CREATE", "{\"id\":\"b\"}");
  closed(f, 1006);
  open_(f);
  hello(f, 40000);
  /* a server that replays from an older seq: the ones we had are not dispatched again */
  dispatch(f, 3, "MESSAGE_CREATE", "{\"id\":\"b\"}");
  dispatch(f, 4, "MESSAGE_CREATE", "{\"id\":\"c\"}");
  dispatch(f, 5, "RESUMED", "null");
  assert_int_equal(count(f, "DISPATCH MESSAGE_CREATE {\"id\":\"b\"}"), 1);
  assert_int_equal(count(f, "DISPATCH MESSAGE_CREATE {\"id\":\"c\"}"), 1);
  assert_int_equal(f->last_dispatch_seq, 5);
  assert_string_equal(f->last_dispatch_data, "null");
  fx_free(f);
}

static void dispatch_keeps_d_raw_and_snowflakes_as_text(void **state) {
  fx *f = fx_ready(40000);
  frame(f, "{\"t\":\"MESSAGE_CREATE\",\"s\":2,\"op\":0,\"d\":{\"id\":\"1234567890123456789\","
           "\"content\":\"hi \\u00e9\"}}");
  assert_string_equal(f->last_dispatch_data,
                      "{\"id\":\"1234567890123456789\",\"content\":\"hi \\u00e9\"}");
  assert_int_equal(f->last_dispatch_seq, 2);
  fx_free(f);
}

static void garbage_is_ignored(void **state) {
  fx *f = fx_ready(40000);
  const char *bad[] = {"", "{", "null", "[]", "{\"op\":\"x\"}", "{\"op\":0}",
                       "{\"op\":0,\"t\":5,\"s\":2}", "\xff\xfe", "{\"op\":10,\"d\":{}}",
                       "{\"op\":99,\"d\":1}", "{\"op\":1.5}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    gw_on_frame(f->g, f->now, bad[i], strlen(bad[i]));
  drain(f);
  expect_nothing(f);
  assert_int_equal(gw_get_state(f->g), GW_READY);
  fx_free(f);
}

static void shutdown_closes_with_1000_only_when_leaving(void **state) {
  fx *f = fx_ready(40000);
  assert_int_equal(gw_shutdown(f->g, f->now, false), 0);
  drain(f);
  expect(f, "CLOSE 1000");
  closed(f, 1000);
  expect(f, "STOPPED");
  const char *sid;
  gw_session(f->g, &sid, NULL, NULL);
  assert_null(sid);
  fx_free(f);

  f = fx_ready(40000);
  dispatch(f, 8, "X", "{}");
  assert_int_equal(gw_shutdown(f->g, f->now, true), 0);
  drain(f);
  expect(f, "DISPATCH X");
  expect(f, "CLOSE 4000");
  closed(f, 4000);
  expect(f, "STOPPED");
  const char *rurl;
  int64_t seq;
  gw_session(f->g, &sid, &rurl, &seq);
  assert_string_equal(sid, "sess1");
  assert_int_equal(seq, 8);

  /* a later process resumes that session */
  fx *n = fx_new();
  n->cfg.resume_session_id = sid;
  n->cfg.resume_url = rurl;
  n->cfg.resume_seq = seq;
  fx_start(n);
  expect(n, "CONNECT " RESUME);
  open_(n);
  hello(n, 40000);
  expect(n, "SEND {\"op\":6,\"d\":{\"token\":\"tok.en\",\"session_id\":\"sess1\",\"seq\":8}}");
  fx_free(n);
  fx_free(f);

  /* shutdown while backing off stops at once */
  f = fx_new();
  fx_start(f);
  gw_on_connect_failed(f->g, f->now, "x");
  gw_on_connect_failed(f->g, f->now, "x");
  drain(f);
  assert_int_equal(gw_get_state(f->g), GW_BACKOFF);
  gw_shutdown(f->g, f->now, false);
  drain(f);
  assert_int_equal(gw_get_state(f->g), GW_STOPPED);
  assert_string_equal(f->log[f->n - 1], "STOPPED");
  assert_int_equal(gw_next_deadline(f->g), UINT64_MAX);
  fx_free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(hello_and_jittered_first_heartbeat),
      cmocka_unit_test(heartbeat_carries_last_sequence),
      cmocka_unit_test(acked_heartbeats_keep_the_connection),
      cmocka_unit_test(zombie_is_closed_and_resumed),
      cmocka_unit_test(zombie_close_that_hangs_is_aborted),
      cmocka_unit_test(server_heartbeat_request_is_answered_at_once),
      cmocka_unit_test(identify_carries_intents_properties_and_shard),
      cmocka_unit_test(ready_session_is_kept_and_resume_url_keeps_the_query),
      cmocka_unit_test(op7_before_hello_reconnects),
      cmocka_unit_test(op7_after_ready_resumes),
      cmocka_unit_test(op9_true_resumes),
      cmocka_unit_test(op9_false_waits_then_identifies_on_the_original_url),
      cmocka_unit_test(fatal_close_codes_stop_with_the_fix),
      cmocka_unit_test(invalid_seq_and_session_timeout_start_a_new_session),
      cmocka_unit_test(other_codes_and_drops_resume),
      cmocka_unit_test(backoff_grows_with_jitter_and_resets_after_a_healthy_session),
      cmocka_unit_test(a_session_that_dies_at_once_still_backs_off),
      cmocka_unit_test(hello_timeout_reconnects),
      cmocka_unit_test(connect_that_never_completes_is_abandoned),
      cmocka_unit_test(ready_timeout_reidentifies),
      cmocka_unit_test(send_limit_keeps_room_for_heartbeats),
      cmocka_unit_test(send_rejects_what_discord_would),
      cmocka_unit_test(identify_spacing_follows_max_concurrency),
      cmocka_unit_test(replayed_duplicates_are_dispatched_once),
      cmocka_unit_test(dispatch_keeps_d_raw_and_snowflakes_as_text),
      cmocka_unit_test(garbage_is_ignored),
      cmocka_unit_test(shutdown_closes_with_1000_only_when_leaving),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
