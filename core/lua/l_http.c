/* core.http.request{method, url, headers, body, timeout, ca_file}
 *   -> {status = int, headers = {lowercase name = value}, body = string} | nil, err
 * Waits (yields the task). Any HTTP status is a result; err is for transport failures
 * only: "timeout", "connect: ...", "tls: ...", "http: ...". A repeated response header
 * is joined with ", ". */
#include "l_http.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "l_modules.h"
#include "l_task.h"

static const char CLIENT_KEY = 'h';

static void close_client(void *ud) {
  http_client **pc = ud;
  if (*pc) http_client_close(*pc);
  *pc = NULL;
}

http_client *l_http_client(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &CLIENT_KEY);
  http_client **pc = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (pc && *pc) return *pc;
  if (!pc) {
    pc = lua_newuserdatauv(L, sizeof *pc, 0);
    *pc = NULL;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &CLIENT_KEY);
  }
  int rc = http_client_new(task_uvloop(L), pc);
  if (rc < 0) luaL_error(L, "could not create the HTTP client (%d)", rc);
  task_at_close(L, close_client, pc);
  return *pc;
}

void l_http_collect_headers(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_newtable(L);
  int out = lua_gettop(L);
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -2);
      const char *v = luaL_tolstring(L, -1, NULL);
      if (strpbrk(k, "\r\n:") || strpbrk(v, "\r\n")) luaL_error(L, "invalid header %s", k);
      lua_pushfstring(L, "%s: %s", k, v);
      lua_rawseti(L, out, ++n);
      lua_pop(L, 1); /* tolstring */
    } else if (lua_type(L, -1) == LUA_TSTRING) {
      const char *line = lua_tostring(L, -1);
      if (strpbrk(line, "\r\n") || !strchr(line, ':')) luaL_error(L, "invalid header line");
      lua_pushvalue(L, -1);
      lua_rawseti(L, out, ++n);
    } else {
      luaL_error(L, "headers: expected name = value or \"Name: value\" lines");
    }
    lua_pop(L, 1);
  }
}

typedef struct op {
  http_req *req;
  task *t;
} op;

static void op_done(http_req *r, void *ud) {
  op *o = ud;
  o->req = r;
  lua_pushlightuserdata(task_thread(o->t), o);
  task_wake(o->t, 1);
}

static void op_cancel(void *p) {
  op *o = p;
  http_cancel(o->req);
  free(o);
}

static void push_headers(lua_State *L, http_req *r) {
  size_t n = http_req_header_count(r);
  lua_createtable(L, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    http_header h = http_req_header(r, i);
    if (lua_getfield(L, -1, h.name) == LUA_TSTRING) {
      lua_pushliteral(L, ", ");
      lua_pushstring(L, h.value);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushstring(L, h.value);
    }
    lua_setfield(L, -2, h.name);
  }
}

static int request_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int base = (int)ctx;
  if (lua_gettop(L) != base + 1 || !lua_islightuserdata(L, -1))
    return lua_gettop(L) - base; /* nil, "cancelled" */
  op *o = lua_touserdata(L, -1);
  lua_pop(L, 1);
  http_req *r = o->req;
  free(o);
  const char *err = http_req_error(r);
  if (err) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    http_req_free(r);
    return 2;
  }
  size_t len;
  const char *body = http_req_body(r, &len);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, http_req_status(r));
  lua_setfield(L, -2, "status");
  lua_pushlstring(L, body, len);
  lua_setfield(L, -2, "body");
  push_headers(L, r);
  lua_setfield(L, -2, "headers");
  http_req_free(r);
  return 1;
}

static int l_request(lua_State *L) {
  task *t = task_check(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_getfield(L, 1, "url");
  const char *url = luaL_checkstring(L, -1); /* index 2 */
  lua_getfield(L, 1, "method");
  const char *method = luaL_optstring(L, -1, "GET"); /* 3 */
  lua_getfield(L, 1, "body");
  size_t body_len = 0;
  const char *body = luaL_optlstring(L, -1, NULL, &body_len); /* 4 */
  lua_getfield(L, 1, "timeout");
  double timeout = luaL_optnumber(L, -1, 30); /* 5 */
  luaL_argcheck(L, timeout > 0, 1, "timeout must be a positive number of seconds");
  lua_getfield(L, 1, "ca_file");
  const char *ca_file = luaL_optstring(L, -1, NULL); /* 6 */
  lua_getfield(L, 1, "headers");
  l_http_collect_headers(L, -1); /* 8 */
  for (const char *m = method; *m; m++)
    if (*m < 'A' || *m > 'Z') luaL_argerror(L, 1, "method must be an upper-case word");
  http_client *c = l_http_client(L);
  int nh = (int)lua_rawlen(L, 8);
  const char **hv = calloc((size_t)nh + 1, sizeof *hv);
  op *o = malloc(sizeof *o);
  if (!hv || !o) {
    free(hv);
    free(o);
    return luaL_error(L, "out of memory");
  }
  for (int i = 0; i < nh; i++) {
    lua_rawgeti(L, 8, i + 1);
    hv[i] = lua_tostring(L, -1); /* anchored by the table */
    lua_pop(L, 1);
  }
  http_opts opts = {.method = method, .url = url, .headers = hv, .body = body,
                    .body_len = body_len, .timeout = timeout, .ca_file = ca_file};
  o->t = t;
  int rc = http_start(c, &opts, op_done, o, &o->req);
  free(hv);
  if (rc < 0) {
    free(o);
    lua_pushnil(L);
    lua_pushfstring(L, "http: could not start the request (%d)", rc);
    return 2;
  }
  task_await(t, op_cancel, o);
  lua_settop(L, 1);
  return lua_yieldk(L, 0, 1, request_k);
}

int l_http_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"request", l_request}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
