/* core.gateway: the Discord gateway for Lua.
 *
 *   local gw = core.gateway.start{
 *     url = "wss://gateway.discord.gg", token = "...", intents = 37377,
 *     compress = true, ca_file = nil, shard = {0, 1}, max_concurrency = 1,
 *     large_threshold = nil, presence = nil (a table or JSON text),
 *     properties = {os=, browser=, device=},
 *     resume = {session_id=, seq=, url=},            -- resume a previous process's session
 *     hello_timeout = 60, ready_timeout = 15, backoff_base = 1, backoff_max = 60, -- seconds
 *     on_event = function(name, data, seq) end,     -- each dispatch, in its own task
 *     on_fatal = function(code, message) end,       -- optional, in its own task
 *   }
 *   gw:send(payload)        -- a table (encoded) or JSON text -> true | nil, err
 *   gw:on_event(fn)         -- replaces the handler (a policy reload keeps the connection)
 *   gw:stop([keep_session]) -- leaves (close 1000, or 4000 to stay resumable); in a task it
 *                              waits until stopped
 *   gw:wait()               -- in a task: until stopped -> true | nil, operator_message, code
 *   gw:state(), gw:session() -> session_id, seq, resume_url; gw:latency() -> ms | nil
 *
 * `data` is d decoded once by lua-cjson: snowflakes are strings in Discord's JSON and stay
 * strings; JSON null is cjson.null. The session and sequence live in C, and the gateway
 * stays anchored while it runs, so dropping every Lua reference does not close it. */
#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "l_modules.h"
#include "l_task.h"
#include "log.h"

#define GATEWAY_MT "core.gateway"
#define MAX_WAITERS 16

typedef struct wait_slot {
  task *t; /* NULL: free */
} wait_slot;

typedef struct lgw {
  gateway *gw;
  lua_State *L;   /* the main thread */
  int self_ref, on_event_ref, on_fatal_ref, decode_ref, encode_ref;
  int fatal_code;
  char *fatal_msg;
  bool stopped;
  wait_slot waiters[MAX_WAITERS];
  unsigned long events, decode_errors;
  uint64_t rng;
} lgw;

static lgw *check_gw(lua_State *L) { return luaL_checkudata(L, 1, GATEWAY_MT); }

/* ---- callbacks from the gateway (loop context, main thread) ---------------------- */

static void on_dispatch(void *ud, const char *name, const char *data, size_t len, int64_t seq) {
  lgw *g = ud;
  lua_State *L = g->L;
  if (!lua_checkstack(L, 8)) return;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->decode_ref);
  lua_pushlstring(L, data, len);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    g->decode_errors++;
    log_warn("gateway", "%s: could not decode the event: %s", name, lua_tostring(L, -1));
    lua_settop(L, top);
    return;
  }
  int decoded = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->on_event_ref);
  lua_pushstring(L, name);
  lua_pushvalue(L, decoded);
  lua_pushinteger(L, (lua_Integer)seq);
  g->events++;
  task_spawn(L, 3);
  lua_settop(L, top);
}

static void on_fatal(void *ud, int code, const char *message) {
  lgw *g = ud;
  g->fatal_code = code;
  free(g->fatal_msg);
  g->fatal_msg = strdup(message);
  if (g->on_fatal_ref == LUA_NOREF) return;
  lua_State *L = g->L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->on_fatal_ref);
  lua_pushinteger(L, code);
  lua_pushstring(L, message);
  task_spawn(L, 2);
  lua_settop(L, top);
}

static int push_outcome(lua_State *co, lgw *g) {
  if (g->fatal_code) {
    lua_pushnil(co);
    lua_pushstring(co, g->fatal_msg ? g->fatal_msg : "Discord gateway closed with a fatal code");
    lua_pushinteger(co, g->fatal_code);
    return 3;
  }
  lua_pushboolean(co, 1);
  return 1;
}

static void on_stopped(void *ud) {
  lgw *g = ud;
  g->stopped = true;
  for (int i = 0; i < MAX_WAITERS; i++) {
    task *t = g->waiters[i].t;
    if (!t) continue;
    g->waiters[i].t = NULL;
    task_wake(t, push_outcome(task_thread(t), g));
  }
  /* No longer running: Lua's references alone keep it now. */
  luaL_unref(g->L, LUA_REGISTRYINDEX, g->self_ref);
  g->self_ref = LUA_NOREF;
}

/* ---- waiting ---------------------------------------------------------------------- */

static void slot_cancel(void *op) {
  wait_slot *s = op;
  s->t = NULL; /* the task left; the slot is free again */
}

static int await_stop(lua_State *L, lgw *g) {
  task *t = task_check(L);
  if (g->stopped) return push_outcome(L, g);
  for (int i = 0; i < MAX_WAITERS; i++) {
    if (g->waiters[i].t) continue;
    g->waiters[i].t = t;
    task_await(t, slot_cancel, &g->waiters[i]);
    return lua_yield(L, 0);
  }
  return luaL_error(L, "too many tasks waiting on the gateway");
}

/* ---- methods ---------------------------------------------------------------------- */

static int l_send(lua_State *L) {
  lgw *g = check_gw(L);
  size_t len;
  const char *json;
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->encode_ref);
    lua_pushvalue(L, 2);
    lua_call(L, 1, 1);
    json = lua_tolstring(L, -1, &len);
  } else {
    json = luaL_checklstring(L, 2, &len);
  }
  if (!g->gw || g->stopped) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  int rc = gateway_send(g->gw, json, len);
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (rc == -EINVAL) return luaL_argerror(L, 2, "expected a JSON object payload");
  lua_pushnil(L);
  switch (rc) {
  case -EMSGSIZE: lua_pushliteral(L, "too large: gateway payloads are limited to 4096 bytes"); break;
  case -ENOTCONN: lua_pushliteral(L, "not connected"); break;
  case -ENOBUFS: lua_pushliteral(L, "busy: send queue full"); break;
  default: lua_pushliteral(L, "out of memory"); break;
  }
  return 2;
}

static int l_on_event(lua_State *L) {
  lgw *g = check_gw(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  lua_rawseti(L, LUA_REGISTRYINDEX, g->on_event_ref);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_stop(lua_State *L) {
  lgw *g = check_gw(L);
  bool keep = lua_toboolean(L, 2);
  if (g->gw && !g->stopped) gateway_stop(g->gw, keep);
  if (task_current(L) && !g->stopped) return await_stop(L, g);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_wait(lua_State *L) {
  lgw *g = check_gw(L);
  return await_stop(L, g);
}

static int l_state(lua_State *L) {
  lgw *g = check_gw(L);
  lua_pushstring(L, g->gw ? gw_state_name(gateway_state(g->gw)) : "closed");
  return 1;
}

static int l_session(lua_State *L) {
  lgw *g = check_gw(L);
  const char *sid = NULL, *url = NULL;
  int64_t seq = -1;
  if (g->gw) gw_session(gateway_proto(g->gw), &sid, &url, &seq);
  if (!sid) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushstring(L, sid);
  lua_pushinteger(L, (lua_Integer)seq);
  if (url)
    lua_pushstring(L, url);
  else
    lua_pushnil(L);
  return 3;
}

static int l_latency(lua_State *L) {
  lgw *g = check_gw(L);
  int64_t ms = g->gw ? gw_latency(gateway_proto(g->gw)) : -1;
  if (ms < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, (lua_Integer)ms);
  return 1;
}

static int l_stats(lua_State *L) {
  lgw *g = check_gw(L);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)g->events);
  lua_setfield(L, -2, "events");
  lua_pushinteger(L, (lua_Integer)g->decode_errors);
  lua_setfield(L, -2, "decode_errors");
  lua_pushinteger(L, g->gw ? (lua_Integer)gw_connect_count(gateway_proto(g->gw)) : 0);
  lua_setfield(L, -2, "connects");
  return 1;
}

static int l_gc(lua_State *L) {
  lgw *g = check_gw(L);
  if (g->gw) {
    gateway_close(g->gw);
    g->gw = NULL;
  }
  free(g->fatal_msg);
  g->fatal_msg = NULL;
  int *refs[] = {&g->on_event_ref, &g->on_fatal_ref, &g->decode_ref, &g->encode_ref, &g->self_ref};
  for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
    luaL_unref(L, LUA_REGISTRYINDEX, *refs[i]);
    *refs[i] = LUA_NOREF;
  }
  return 0;
}

/* ---- core.gateway.start ----------------------------------------------------------- */

static const char *opt_string(lua_State *L, int t, const char *k, bool required) {
  lua_getfield(L, t, k);
  const char *s = NULL;
  if (lua_isstring(L, -1))
    s = lua_tostring(L, -1);
  else if (!lua_isnil(L, -1) || required)
    luaL_error(L, "core.gateway.start: '%s' must be a string", k);
  lua_pop(L, 1); /* the option table keeps it alive */
  return s;
}

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer def) {
  lua_getfield(L, t, k);
  lua_Integer v = def;
  if (!lua_isnil(L, -1)) {
    int ok;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "core.gateway.start: '%s' must be an integer", k);
  }
  lua_pop(L, 1);
  return v;
}

static uint64_t opt_ms(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  uint64_t v = 0;
  if (!lua_isnil(L, -1)) {
    int ok;
    lua_Number s = lua_tonumberx(L, -1, &ok);
    if (!ok || !(s > 0) || s > 86400) luaL_error(L, "core.gateway.start: '%s' must be seconds > 0", k);
    v = (uint64_t)(s * 1000.0);
    if (v == 0) v = 1;
  }
  lua_pop(L, 1);
  return v;
}

static int ref_field(lua_State *L, int t, const char *k, bool required) {
  lua_getfield(L, t, k);
  if (lua_isnil(L, -1) && !required) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  if (!lua_isfunction(L, -1)) luaL_error(L, "core.gateway.start: '%s' must be a function", k);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Jitter source: xorshift64*, seeded from the clock. */
static double uniform(void *ud) {
  uint64_t *s = ud;
  if (*s == 0) *s = uv_hrtime() | 1;
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return (double)((*s * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static int l_start(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  gateway_options o;
  memset(&o, 0, sizeof o);
  gw_config *c = &o.proto;
  c->url = opt_string(L, 1, "url", true);
  c->token = opt_string(L, 1, "token", true);
  lua_Integer intents = opt_int(L, 1, "intents", -1);
  if (intents < 0) return luaL_error(L, "core.gateway.start: 'intents' (an integer bitfield) is required");
  c->intents = (uint64_t)intents;
  lua_getfield(L, 1, "compress");
  c->compress = lua_toboolean(L, -1);
  lua_pop(L, 1);
  o.ca_file = opt_string(L, 1, "ca_file", false);
  lua_getfield(L, 1, "shard");
  if (lua_istable(L, -1)) {
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    int ok1, ok2;
    c->shard_id = (int)lua_tointegerx(L, -2, &ok1);
    c->shard_count = (int)lua_tointegerx(L, -1, &ok2);
    if (!ok1 || !ok2 || c->shard_count < 1 || c->shard_id < 0 || c->shard_id >= c->shard_count)
      return luaL_error(L, "core.gateway.start: 'shard' must be {shard_id, shard_count} with 0 <= id < count");
    lua_pop(L, 2);
  } else if (!lua_isnil(L, -1)) {
    return luaL_error(L, "core.gateway.start: 'shard' must be {shard_id, shard_count}");
  }
  lua_pop(L, 1);
  c->max_concurrency = (int)opt_int(L, 1, "max_concurrency", 1);
  c->large_threshold = (int)opt_int(L, 1, "large_threshold", 0);
  lua_getfield(L, 1, "properties");
  if (lua_istable(L, -1)) {
    int p = lua_gettop(L);
    c->os = opt_string(L, p, "os", false);
    c->browser = opt_string(L, p, "browser", false);
    c->device = opt_string(L, p, "device", false);
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "resume");
  if (lua_istable(L, -1)) {
    int r = lua_gettop(L);
    c->resume_session_id = opt_string(L, r, "session_id", true);
    c->resume_seq = opt_int(L, r, "seq", 0);
    c->resume_url = opt_string(L, r, "url", false);
  }
  lua_pop(L, 1);
  c->hello_timeout_ms = opt_ms(L, 1, "hello_timeout");
  c->ready_timeout_ms = opt_ms(L, 1, "ready_timeout");
  c->backoff_base_ms = opt_ms(L, 1, "backoff_base");
  c->backoff_max_ms = opt_ms(L, 1, "backoff_max");
  c->close_timeout_ms = opt_ms(L, 1, "close_timeout");
  c->random = uniform;
  o.max_message = (size_t)opt_int(L, 1, "max_message", 0);

  /* lua-cjson, for decoding each dispatch once and encoding payloads */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK)
    return luaL_error(L, "core.gateway needs lua-cjson: %s", lua_tostring(L, -1));
  int cjson = lua_gettop(L);

  lua_getfield(L, 1, "presence");
  if (lua_istable(L, -1)) {
    lua_getfield(L, cjson, "encode");
    lua_insert(L, -2);
    lua_call(L, 1, 1);
  }
  if (!lua_isnil(L, -1)) {
    if (!lua_isstring(L, -1)) return luaL_error(L, "core.gateway.start: 'presence' must be a table or JSON text");
    c->presence_json = lua_tostring(L, -1); /* stays on the stack until the end */
  }

  lgw *g = lua_newuserdatauv(L, sizeof *g, 0);
  memset(g, 0, sizeof *g);
  c->random_ud = &g->rng;
  g->self_ref = g->on_event_ref = g->on_fatal_ref = g->decode_ref = g->encode_ref = LUA_NOREF;
  luaL_setmetatable(L, GATEWAY_MT);
  int ud = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  g->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  g->on_event_ref = ref_field(L, 1, "on_event", true);
  g->on_fatal_ref = ref_field(L, 1, "on_fatal", false);
  lua_getfield(L, cjson, "decode");
  g->decode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, cjson, "encode");
  g->encode_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  static const gateway_callbacks cb = {on_dispatch, on_fatal, on_stopped};
  const char *msg = NULL;
  int rc = gateway_start(task_uvloop(L), &o, &cb, g, &g->gw, &msg);
  if (rc == -EINVAL) return luaL_error(L, "core.gateway.start: %s", msg && *msg ? msg : "invalid settings");
  if (rc == -EMSGSIZE) return luaL_error(L, "core.gateway.start: the Identify payload would exceed 4096 bytes");
  if (rc < 0) {
    g->gw = NULL;
    lua_pushnil(L);
    lua_pushfstring(L, "gateway: %s", msg && *msg ? msg : strerror(-rc));
    return 2;
  }
  lua_pushvalue(L, ud);
  g->self_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* anchored while it runs */
  lua_pushvalue(L, ud);
  return 1;
}

int l_gateway_open(lua_State *L) {
  if (luaL_newmetatable(L, GATEWAY_MT)) {
    static const luaL_Reg methods[] = {
        {"send", l_send},       {"on_event", l_on_event}, {"stop", l_stop},
        {"wait", l_wait},       {"state", l_state},       {"session", l_session},
        {"latency", l_latency}, {"stats", l_stats},       {NULL, NULL}};
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg funcs[] = {{"start", l_start}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
