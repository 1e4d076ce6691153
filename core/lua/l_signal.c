/* core.signal.on(name, fn): each delivery of the signal runs fn(name) in a new task.
 * core.signal.off(name) stops listening. Names: "INT", "TERM", "HUP". */
#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "l_modules.h"
#include "l_task.h"

typedef struct watcher {
  uv_signal_t handle;
  lua_State *L;
  int fn_ref;
  struct watcher *next;
} watcher;

static const struct {
  const char *name;
  int signum;
} known[] = {{"INT", SIGINT}, {"TERM", SIGTERM}, {"HUP", SIGHUP}};

static const char WATCHERS_KEY = 'w';

static watcher **watchers(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &WATCHERS_KEY);
  watcher **head = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return head;
}

static int signum_of(lua_State *L, int arg) {
  const char *name = luaL_checkstring(L, arg);
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strcmp(known[i].name, name) == 0) return known[i].signum;
  return luaL_argerror(L, arg, "expected INT, TERM or HUP");
}

static void on_signal(uv_signal_t *h, int signum) {
  watcher *w = h->data;
  lua_State *L = w->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->fn_ref);
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (known[i].signum == signum) lua_pushstring(L, known[i].name);
  task_spawn(L, 1);
}

static void watcher_closed(uv_handle_t *h) { free(h->data); }

static void stop_watcher(lua_State *L, watcher **head, int signum) {
  for (watcher **p = head; *p; p = &(*p)->next) {
    watcher *w = *p;
    if (w->handle.signum != signum) continue;
    *p = w->next;
    luaL_unref(L, LUA_REGISTRYINDEX, w->fn_ref);
    uv_close((uv_handle_t *)&w->handle, watcher_closed);
    return;
  }
}

static int l_on(lua_State *L) {
  int signum = signum_of(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  watcher **head = watchers(L);
  stop_watcher(L, head, signum);
  watcher *w = calloc(1, sizeof *w);
  if (!w) return luaL_error(L, "out of memory");
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  w->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  lua_pushvalue(L, 2);
  w->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_signal_init(task_uvloop(L), &w->handle);
  w->handle.data = w;
  int rc = uv_signal_start(&w->handle, on_signal, signum);
  if (rc < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, w->fn_ref);
    uv_close((uv_handle_t *)&w->handle, watcher_closed);
    lua_pushnil(L);
    lua_pushfstring(L, "signal: %s", uv_err_name(rc));
    return 2;
  }
  /* A signal watcher alone does not keep the bot running. */
  uv_unref((uv_handle_t *)&w->handle);
  w->next = *head;
  *head = w;
  lua_pushboolean(L, 1);
  return 1;
}

static int l_off(lua_State *L) {
  stop_watcher(L, watchers(L), signum_of(L, 1));
  lua_pushboolean(L, 1);
  return 1;
}

static void close_all(void *ud) {
  watcher **head = ud;
  while (*head) {
    watcher *w = *head;
    *head = w->next;
    uv_close((uv_handle_t *)&w->handle, watcher_closed);
  }
}

int l_signal_open(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &WATCHERS_KEY);
  if (lua_isnil(L, -1)) {
    watcher **head = lua_newuserdatauv(L, sizeof *head, 0);
    *head = NULL;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &WATCHERS_KEY);
    task_at_close(L, close_all, head);
  }
  lua_pop(L, 1);
  static const luaL_Reg funcs[] = {{"on", l_on}, {"off", l_off}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
