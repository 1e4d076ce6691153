/* core.discord: Discord REST for tasks, over core/discord_rest.c.
 *
 * core.discord.configure{token = "...", api_url = "https://discord.com/api/v10",
 *   user_agent_url = "...", version = "...", ca_file = nil, global_per_second = 50,
 *   max_retries = 3, retry_base = 0.5, retry_max = 10, timeout = 15,
 *   invalid_warn = 2500, invalid_slow = 5000} -> true
 *
 * core.discord.request{method = "POST", path = "/channels/1/messages",
 *   json = table | body = string [, content_type = "..."],
 *   files = {{name = "a.txt", data = "...", content_type = "text/plain"}, ...},
 *   reason = "audit log text", headers = {...}, timeout = s, ordered = bool}
 *   -> res | nil, err [, res]
 * Waits (yields the task), queued by rate-limit bucket and retried as discord_rest.h
 * says. res = {status = 200, ok = true (2xx), json = decoded body or nil, body = raw,
 *   headers = {lowercase = value}, error = readable error for a non-2xx or nil,
 *   errors = {"content: Must be 2000 or fewer in length.", ...} or nil,
 *   attempts = n, route = "POST /channels/:id/messages", nonce = "..." or nil}.
 * Any status is a result except 401: nil, "unauthorized: ...", res (the token is wrong
 * or revoked; every later request fails the same way until configure() again).
 * Transport failures after the retries: nil, "timeout" | "connect: ..." | "tls: ...".
 * A message create (POST /channels/{id}/messages) given as `json` gets a nonce and
 * enforce_nonce = true unless it has one, so a retry never posts twice; creates and
 * webhook executions are `ordered` by default (one in flight per bucket, so messages
 * arrive in the order they were sent).
 *
 * core.discord.array(t?) marks a table as a JSON array (so {} encodes as []);
 * core.discord.encode(v) -> json string; core.discord.null is JSON null (cjson.null);
 * core.discord.stats() -> {sent, responses, retries_429, retries_other, invalid,
 *   queue_seconds}. */
#include <lauxlib.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "discord_rest.h"
#include "l_http.h"
#include "l_json.h"
#include "l_modules.h"
#include "l_task.h"

static const char CLIENT_KEY = 'd';
static const char DECODE_KEY = 'j';

/* ---- the client ---- */

static void close_client(void *ud) {
  rest_client **pc = ud;
  if (*pc) rest_client_close(*pc);
  *pc = NULL;
}

static rest_client **client_slot(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &CLIENT_KEY);
  rest_client **pc = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!pc) {
    pc = lua_newuserdatauv(L, sizeof *pc, 0);
    *pc = NULL;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &CLIENT_KEY);
  }
  return pc;
}

static const char *opt_string_field(lua_State *L, int t, const char *k, const char *def) {
  lua_getfield(L, t, k);
  const char *s = lua_isnil(L, -1) ? def : lua_tostring(L, -1);
  if (!lua_isnil(L, -1) && !lua_isstring(L, -1)) luaL_error(L, "%s must be a string", k);
  lua_pop(L, 1); /* the string stays alive: it is in the table */
  return s;
}

static double opt_number_field(lua_State *L, int t, const char *k, double def) {
  lua_getfield(L, t, k);
  double d = def;
  if (!lua_isnil(L, -1)) {
    if (!lua_isnumber(L, -1)) luaL_error(L, "%s must be a number", k);
    d = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return d;
}

static int l_configure(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  rest_config cfg;
  rest_config_default(&cfg);
  cfg.token = opt_string_field(L, 1, "token", NULL);
  if (!cfg.token || !cfg.token[0]) return luaL_error(L, "core.discord.configure: token is required");
  cfg.api_url = opt_string_field(L, 1, "api_url", cfg.api_url);
  cfg.user_agent_url = opt_string_field(L, 1, "user_agent_url", cfg.user_agent_url);
  cfg.version = opt_string_field(L, 1, "version", CC_VERSION);
  cfg.ca_file = opt_string_field(L, 1, "ca_file", NULL);
  cfg.global_per_second = opt_number_field(L, 1, "global_per_second", 50);
  cfg.max_retries = (int)opt_number_field(L, 1, "max_retries", 3);
  cfg.retry_base = opt_number_field(L, 1, "retry_base", 0.5);
  cfg.retry_max = opt_number_field(L, 1, "retry_max", 10);
  cfg.max_429_retries = (int)opt_number_field(L, 1, "max_429_retries", 30);
  cfg.timeout = opt_number_field(L, 1, "timeout", 15);
  cfg.invalid_warn = (int)opt_number_field(L, 1, "invalid_warn", 0);
  cfg.invalid_slow = (int)opt_number_field(L, 1, "invalid_slow", 0);
  if (cfg.global_per_second < 0) return luaL_error(L, "global_per_second must be >= 0");
  rest_client **pc = client_slot(L);
  if (!*pc) {
    http_client *http = l_http_client(L);
    if (rest_client_new(task_uvloop(L), http, pc) < 0) return luaL_error(L, "out of memory");
    task_at_close(L, close_client, pc);
  }
  int rc = rest_configure(*pc, &cfg);
  if (rc < 0) return luaL_error(L, "core.discord.configure failed (%d)", rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_stats(lua_State *L) {
  rest_client **pc = client_slot(L);
  rest_stats s = {0};
  if (*pc) rest_get_stats(*pc, &s);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)s.sent), lua_setfield(L, -2, "sent");
  lua_pushinteger(L, (lua_Integer)s.responses), lua_setfield(L, -2, "responses");
  lua_pushinteger(L, (lua_Integer)s.retries_429), lua_setfield(L, -2, "retries_429");
  lua_pushinteger(L, (lua_Integer)s.retries_other), lua_setfield(L, -2, "retries_other");
  lua_pushinteger(L, (lua_Integer)s.invalid), lua_setfield(L, -2, "invalid");
  lua_pushnumber(L, s.queue_seconds), lua_setfield(L, -2, "queue_seconds");
  return 1;
}

/* ---- readable errors: {"errors": {"content": {"_errors": [{"message": ...}]}}} ---- */

typedef struct lines {
  char **v;
  size_t n, cap;
} lines;

static void lines_add(lines *ls, const char *path, const char *msg) {
  if (ls->n == ls->cap) {
    size_t cap = ls->cap ? ls->cap * 2 : 8;
    char **v = realloc(ls->v, cap * sizeof *v);
    if (!v) return;
    ls->v = v;
    ls->cap = cap;
  }
  size_t n = strlen(path) + strlen(msg) + 3;
  char *s = malloc(n);
  if (!s) return;
  if (path[0]) snprintf(s, n, "%s: %s", path, msg);
  else snprintf(s, n, "%s", msg);
  ls->v[ls->n++] = s;
}

static void flatten(lua_State *L, int idx, char *path, size_t plen, size_t cap, lines *ls,
                    int depth) {
  if (depth > 32 || !lua_istable(L, idx)) return;
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 6, "errors");
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    char kbuf[32];
    if (!k && lua_isinteger(L, -2)) {
      snprintf(kbuf, sizeof kbuf, "%lld", (long long)lua_tointeger(L, -2));
      k = kbuf;
    }
    if (k && strcmp(k, "_errors") == 0 && lua_istable(L, -1)) {
      path[plen] = '\0';
      for (lua_Integer i = 1;; i++) {
        if (lua_rawgeti(L, -1, i) != LUA_TTABLE) {
          lua_pop(L, 1);
          break;
        }
        lua_getfield(L, -1, "message");
        const char *m = lua_tostring(L, -1);
        if (m) lines_add(ls, path, m);
        lua_pop(L, 2);
      }
    } else if (k && lua_istable(L, -1)) {
      size_t kl = strlen(k);
      if (plen + kl + 2 < cap) {
        size_t np = plen;
        if (np) path[np++] = '.';
        memcpy(path + np, k, kl);
        np += kl;
        path[np] = '\0';
        flatten(L, -1, path, np, cap, ls, depth + 1);
        path[plen] = '\0';
      }
    }
    lua_pop(L, 1);
  }
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* With the decoded body at json_idx and the result table at res_idx: sets res.error
 * ("Invalid Form Body (50035): content: Must be 2000 or fewer in length.") and
 * res.errors (the lines). */
static void set_readable_error(lua_State *L, int res_idx, int json_idx, int status,
                               const char *body) {
  luaL_Buffer b;
  const char *message = NULL;
  lua_Integer code = 0;
  lines ls = {0};
  if (json_idx && lua_istable(L, json_idx)) {
    lua_getfield(L, json_idx, "message");
    message = lua_tostring(L, -1);
    lua_getfield(L, json_idx, "code");
    /* lua-cjson decodes every number as a float */
    int isnum = 0;
    lua_Number cn = lua_tonumberx(L, -1, &isnum);
    code = isnum && cn == floor(cn) && fabs(cn) < 1e15 ? (lua_Integer)cn : 0;
    lua_getfield(L, json_idx, "errors");
    char path[512];
    path[0] = '\0';
    flatten(L, -1, path, 0, sizeof path, &ls, 0);
    lua_pop(L, 1);
  } else {
    lua_pushnil(L);
    lua_pushnil(L);
  }
  if (ls.n) qsort(ls.v, ls.n, sizeof *ls.v, cmp_str);
  lua_createtable(L, (int)ls.n, 0);
  for (size_t i = 0; i < ls.n; i++) {
    lua_pushstring(L, ls.v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, res_idx, "errors");
  luaL_buffinit(L, &b);
  char head[64];
  snprintf(head, sizeof head, "%d", status);
  luaL_addstring(&b, head);
  if (message) {
    luaL_addchar(&b, ' ');
    luaL_addstring(&b, message);
  } else if (body && body[0] && !json_idx) {
    luaL_addchar(&b, ' ');
    luaL_addlstring(&b, body, strlen(body) > 200 ? 200 : strlen(body));
  }
  if (code) {
    snprintf(head, sizeof head, " (%lld)", (long long)code);
    luaL_addstring(&b, head);
  }
  for (size_t i = 0; i < ls.n; i++) {
    luaL_addstring(&b, i == 0 ? ": " : "; ");
    luaL_addstring(&b, ls.v[i]);
    free(ls.v[i]);
  }
  free(ls.v);
  luaL_pushresult(&b);
  lua_setfield(L, res_idx, "error");
  lua_pop(L, 2); /* message, code */
}

/* ---- request ---- */

typedef struct op {
  rest_call *call;
  task *t;
  char nonce[26];
  bool has_nonce;
} op;

static void op_done(rest_call *call, void *ud) {
  op *o = ud;
  o->call = call;
  lua_pushlightuserdata(task_thread(o->t), o);
  task_wake(o->t, 1);
}

static void op_cancel(void *p) {
  op *o = p;
  rest_cancel(o->call);
  free(o);
}

static int request_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int base = (int)ctx;
  if (lua_gettop(L) != base + 1 || !lua_islightuserdata(L, -1))
    return lua_gettop(L) - base; /* nil, "cancelled" */
  op *o = lua_touserdata(L, -1);
  lua_pop(L, 1);
  rest_call *call = o->call;
  const char *err = rest_call_error(call);
  const http_req *r = rest_call_response(call);
  if (err || !r) {
    lua_pushnil(L);
    lua_pushstring(L, err ? err : "http: no response");
    rest_call_free(call);
    free(o);
    return 2;
  }
  int st = rest_call_status(call);
  size_t len;
  const char *body = http_req_body(r, &len);
  lua_createtable(L, 0, 10);
  int res = lua_gettop(L);
  lua_pushinteger(L, st), lua_setfield(L, res, "status");
  lua_pushboolean(L, st >= 200 && st < 300), lua_setfield(L, res, "ok");
  lua_pushlstring(L, body, len), lua_setfield(L, res, "body");
  lua_pushinteger(L, rest_call_attempts(call)), lua_setfield(L, res, "attempts");
  lua_pushstring(L, rest_call_route(call)), lua_setfield(L, res, "route");
  if (o->has_nonce) lua_pushstring(L, o->nonce), lua_setfield(L, res, "nonce");
  lua_createtable(L, 0, (int)http_req_header_count(r));
  for (size_t i = 0; i < http_req_header_count(r); i++) {
    http_header h = http_req_header(r, i);
    lua_pushstring(L, h.value);
    lua_setfield(L, -2, h.name);
  }
  lua_setfield(L, res, "headers");
  const char *ct = http_req_find_header(r, "content-type");
  int json_idx = 0;
  if (len && ct && strstr(ct, "json")) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &DECODE_KEY);
    if (lua_isfunction(L, -1)) {
      lua_pushlstring(L, body, len);
      if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
        lua_pushvalue(L, -1);
        lua_setfield(L, res, "json");
        json_idx = lua_gettop(L);
      }
    }
    if (!json_idx) lua_pop(L, 1);
  }
  if (st < 200 || st >= 300) set_readable_error(L, res, json_idx, st, body);
  lua_settop(L, res);
  rest_call_free(call);
  free(o);
  if (st == 401) {
    lua_getfield(L, res, "error");
    lua_pushfstring(L, "unauthorized: %s", lua_tostring(L, -1));
    lua_remove(L, -2);     /* res, msg */
    lua_pushnil(L);
    lua_insert(L, res);    /* nil, res, msg */
    lua_rotate(L, -2, 1);  /* nil, msg, res */
    return 3;
  }
  return 1;
}

static bool is_message_create(const char *method, const char *route) {
  return strcmp(method, "POST") == 0 && strcmp(route, "POST /channels/:id/messages") == 0;
}

static int l_request(lua_State *L) {
  task *t = task_check(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  rest_client *rc = *client_slot(L);
  if (!rc || !rest_configured(rc)) return luaL_error(L, "call core.discord.configure first");
  const char *method = opt_string_field(L, 1, "method", "GET");
  const char *path = opt_string_field(L, 1, "path", NULL);
  if (!path || path[0] != '/') return luaL_argerror(L, 1, "path must start with /");
  for (const char *m = method; *m; m++)
    if (*m < 'A' || *m > 'Z') return luaL_argerror(L, 1, "method must be an upper-case word");
  const char *reason = opt_string_field(L, 1, "reason", NULL);
  const char *ctype = opt_string_field(L, 1, "content_type", NULL);
  double timeout = opt_number_field(L, 1, "timeout", 0);
  lua_getfield(L, 1, "headers");
  l_http_collect_headers(L, -1); /* index 3 */
  char route[256], major[256];
  if (rate_route(method, path, route, sizeof route, major, sizeof major) < 0)
    return luaL_argerror(L, 1, "path too long");
  unsigned flags = 0;
  lua_getfield(L, 1, "ordered"); /* 4 */
  if (lua_isnil(L, -1)) {
    if (is_message_create(method, route) ||
        (strcmp(method, "POST") == 0 && strncmp(route, "POST /webhooks/:id/:token", 25) == 0))
      flags |= RL_ORDERED;
  } else if (lua_toboolean(L, -1)) {
    flags |= RL_ORDERED;
  }
  lua_getfield(L, 1, "files"); /* 5 */
  int has_files = !lua_isnil(L, 5);
  if (has_files) luaL_checktype(L, 5, LUA_TTABLE);
  lua_getfield(L, 1, "body"); /* 6 */
  lua_getfield(L, 1, "json"); /* 7 */
  if (!lua_isnil(L, 6) && !lua_isnil(L, 7)) return luaL_argerror(L, 1, "json or body, not both");
  if (!lua_isnil(L, 6) && !lua_isstring(L, 6)) return luaL_argerror(L, 1, "body must be a string");
  /* every check that can raise is above, or in the encoder (which cleans up) */
  op *o = calloc(1, sizeof *o);
  if (!o) return luaL_error(L, "out of memory");
  o->t = t;
  char *json = NULL;
  size_t json_len = 0;
  if (!lua_isnil(L, 7)) {
    jbuf b = {0};
    json_encode_value(L, 7, &b, 0);
    if (!b.err && is_message_create(method, route) && lua_istable(L, 7) && b.len > 1 &&
        b.p[b.len - 1] == '}') {
      lua_getfield(L, 7, "nonce");
      bool has = !lua_isnil(L, -1);
      lua_pop(L, 1);
      if (!has) {
        rest_nonce(o->nonce);
        o->has_nonce = true;
        char extra[80];
        snprintf(extra, sizeof extra, "%s\"nonce\":\"%s\",\"enforce_nonce\":true}",
                 b.len > 2 ? "," : "", o->nonce);
        b.len--;
        jb_adds(&b, extra);
      }
    }
    if (b.err) {
      free(b.p);
      free(o);
      return luaL_error(L, "json: %s", b.err);
    }
    json = b.p;
    json_len = b.len;
  }
  const char *body = NULL;
  size_t body_len = 0;
  char *owned = NULL;
  char mct[128];
  if (has_files) {
    int nf = (int)lua_rawlen(L, 5);
    rest_file *files = calloc((size_t)nf + 1, sizeof *files);
    if (!files) {
      free(json), free(o);
      return luaL_error(L, "out of memory");
    }
    const char *bad = NULL;
    for (int i = 0; i < nf && !bad; i++) {
      if (lua_rawgeti(L, 5, i + 1) != LUA_TTABLE) {
        bad = "files: each file is a table {name =, data =}";
        lua_pop(L, 1);
        break;
      }
      lua_getfield(L, -1, "name");
      lua_getfield(L, -2, "data");
      lua_getfield(L, -3, "content_type");
      if (!lua_isstring(L, -3) || !lua_isstring(L, -2)) bad = "files: name and data must be strings";
      files[i].name = lua_tostring(L, -3);
      files[i].data = lua_tolstring(L, -2, &files[i].len);
      files[i].content_type = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
      lua_pop(L, 3);
      /* the strings live in the file table, which lives in `files` */
      lua_pop(L, 1);
    }
    int rcm = bad ? 0 : rest_multipart(json ? json : "{}", json ? json_len : 2, files,
                                       (size_t)nf, &owned, &body_len, mct, sizeof mct);
    free(files);
    free(json);
    json = NULL;
    if (bad || rcm < 0) {
      free(o);
      return bad ? luaL_argerror(L, 1, bad) : luaL_error(L, "out of memory");
    }
    body = owned;
    ctype = mct;
  } else if (json) {
    body = json;
    body_len = json_len;
    owned = json;
    if (!ctype) ctype = "application/json";
  } else if (!lua_isnil(L, 6)) {
    body = lua_tolstring(L, 6, &body_len);
  }
  int nh = (int)lua_rawlen(L, 3);
  const char **hv = calloc((size_t)nh + 1, sizeof *hv);
  if (!hv) {
    free(owned), free(o);
    return luaL_error(L, "out of memory");
  }
  for (int i = 0; i < nh; i++) {
    lua_rawgeti(L, 3, i + 1);
    hv[i] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  rest_opts ro = {.method = method, .path = path, .body = body, .body_len = body_len,
                  .content_type = ctype, .reason = reason, .headers = hv, .flags = flags,
                  .timeout = timeout};
  int rc2 = rest_start(rc, &ro, op_done, o, &o->call);
  free(hv);
  free(owned);
  if (rc2 < 0) {
    free(o);
    lua_pushnil(L);
    if (rc2 == -13 /* EACCES */)
      lua_pushliteral(L, "unauthorized: the token was refused (401) earlier");
    else
      lua_pushfstring(L, "could not start the request (%d)", rc2);
    return 2;
  }
  task_await(t, op_cancel, o);
  lua_settop(L, 1);
  return lua_yieldk(L, 0, 1, request_k);
}

int l_discord_open(lua_State *L) {
  json_init(L);
  /* cjson.decode for response bodies, when lua-cjson is installed */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  if (lua_isfunction(L, -2) && lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
    lua_getfield(L, -1, "decode");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &DECODE_KEY);
  }
  lua_pop(L, 1);
  static const luaL_Reg funcs[] = {{"configure", l_configure}, {"request", l_request},
                                   {"encode", json_l_encode},  {"array", json_l_array},
                                   {"stats", l_stats},         {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  return 1;
}
