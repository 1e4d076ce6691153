/* The parts of the `core` Lua module. Each opener pushes one value (a function or a
 * table) that luaopen_core stores under its name; add a line here and in l_core.c. */
#ifndef CC_L_MODULES_H
#define CC_L_MODULES_H

#include <lua.h>

int luaopen_core(lua_State *L);

int l_task_open(lua_State *L);   /* merged into core itself: spawn, run, sleep, now... */
int l_log_open(lua_State *L);
int l_signal_open(lua_State *L);
int l_stdio_open(lua_State *L);
int l_http_open(lua_State *L);
int l_discord_open(lua_State *L);
int l_sqlite_open(lua_State *L);
int l_lock_open(lua_State *L);
int l_proc_open(lua_State *L);
int l_chunk_open(lua_State *L);
int l_gateway_open(lua_State *L);

#endif
