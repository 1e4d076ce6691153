/* core.log: debug/info/warn/error(component, message), level, add_secret. */
#include <lauxlib.h>

#include "l_modules.h"
#include "log.h"

static int log_at(lua_State *L, enum log_level level) {
  const char *component = luaL_checkstring(L, 1);
  const char *msg = luaL_checkstring(L, 2);
  log_msg(level, component, "%s", msg);
  return 0;
}

static int l_debug(lua_State *L) { return log_at(L, LOG_DEBUG); }
static int l_info(lua_State *L) { return log_at(L, LOG_INFO); }
static int l_warn(lua_State *L) { return log_at(L, LOG_WARN); }
static int l_error(lua_State *L) { return log_at(L, LOG_ERROR); }

/* core.log.level([name]) -> current level name; sets it when a name is given. */
static int l_level(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) {
    int lv = log_parse_level(luaL_checkstring(L, 1));
    luaL_argcheck(L, lv >= 0, 1, "expected debug, info, warn or error");
    log_set_level((enum log_level)lv);
  }
  lua_pushstring(L, log_level_name(log_get_level()));
  return 1;
}

/* Every later log line has this string replaced by "[redacted]". */
static int l_add_secret(lua_State *L) {
  if (log_add_secret(luaL_checkstring(L, 1)) < 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "could not register the secret");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

int l_log_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"debug", l_debug}, {"info", l_info},   {"warn", l_warn},
                                   {"error", l_error}, {"level", l_level}, {"add_secret", l_add_secret},
                                   {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
