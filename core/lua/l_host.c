#include "host.h"

#include <lauxlib.h>
#include <lualib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "l_modules.h"
#include "l_task.h"
#include "log.h"

/* The Lua library directory: $CLAUDE_COORDINATOR_LUA_DIR, else next to the executable
 * (<bin>/../lua in a build tree, <prefix>/share/claude-coordinator/lua when installed). */
static void lua_dir(char *out, size_t cap) {
  const char *env = getenv("CLAUDE_COORDINATOR_LUA_DIR");
  if (env && *env) {
    snprintf(out, cap, "%s", env);
    return;
  }
  char exe[PATH_MAX];
  size_t len = sizeof exe;
  if (uv_exepath(exe, &len) != 0) {
    snprintf(out, cap, "lua");
    return;
  }
  char *slash = strrchr(exe, '/');
  if (slash) *slash = '\0';
  static const char *const candidates[] = {"%s/../lua", "%s/../share/claude-coordinator/lua"};
  for (size_t i = 0; i < 2; i++) {
    char probe[PATH_MAX + 64];
    if (snprintf(out, cap, candidates[i], exe) >= (int)cap) continue;
    if (snprintf(probe, sizeof probe, "%s/coordinator/host.lua", out) >= (int)sizeof probe) continue;
    if (access(probe, R_OK) == 0) return;
  }
  if (snprintf(out, cap, "%s/../lua", exe) >= (int)cap) snprintf(out, cap, "lua");
}

static int traceback(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

static int start(lua_State *L) {
  const host_options *o = lua_touserdata(L, 1);
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_core);
  lua_setfield(L, -2, "core");
  lua_pop(L, 1);

  char dir[PATH_MAX];
  lua_dir(dir, sizeof dir);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);

  lua_getglobal(L, "require");
  lua_pushliteral(L, "coordinator.host");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "main");
  lua_createtable(L, 0, 4);
  lua_pushstring(L, o->config_path);
  lua_setfield(L, -2, "config_path");
  if (o->log_level) {
    lua_pushstring(L, o->log_level);
    lua_setfield(L, -2, "log_level");
  }
  lua_pushboolean(L, o->console);
  lua_setfield(L, -2, "console");
  lua_pushboolean(L, o->check);
  lua_setfield(L, -2, "check");
  lua_call(L, 1, 1);
  return 1; /* nil: keep running; an integer: exit now with it */
}

int host_run(const host_options *opts) {
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "claude-coordinator: out of memory\n");
    return 1;
  }
  lua_pushcfunction(L, traceback);
  lua_pushcfunction(L, start);
  lua_pushlightuserdata(L, (void *)opts);
  int code;
  if (lua_pcall(L, 1, 1, 1) != LUA_OK) {
    log_error("host", "start-up failed: %s", lua_tostring(L, -1));
    code = 1;
  } else if (lua_isinteger(L, -1)) {
    code = (int)lua_tointeger(L, -1);
  } else {
    code = task_runtime_run(L);
  }
  lua_close(L);
  log_clear_secrets();
  return code;
}
