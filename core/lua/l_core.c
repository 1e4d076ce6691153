/* luaopen_core: the `core` module, assembled from its parts. */
#include <lauxlib.h>

#include "l_modules.h"

static const struct {
  const char *name;
  lua_CFunction open;
} parts[] = {
    {"log", l_log_open},
    {"signal", l_signal_open},
    {"stdio", l_stdio_open},
    {"http", l_http_open},
    {"discord", l_discord_open},
    {"sqlite", l_sqlite_open},
    {"lock", l_lock_open},
    {"proc", l_proc_open},
    {"chunk", l_chunk_open},
    {"gateway", l_gateway_open},
};

int luaopen_core(lua_State *L) {
  l_task_open(L); /* the task functions live at the top level: core.spawn, core.sleep... */
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    parts[i].open(L);
    lua_setfield(L, -2, parts[i].name);
  }
  lua_pushliteral(L, CC_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
