/* The HTTP client shared by the bindings of one Lua state (core.http, core.discord), so
 * they reuse one connection cache. */
#ifndef CC_L_HTTP_H
#define CC_L_HTTP_H

#include <lua.h>

#include "http.h"

/* The state's client, created on first use and closed when the runtime shuts down.
 * Raises on failure. */
http_client *l_http_client(lua_State *L);

/* Reads a "headers" table (name -> value, or an array of "Name: value" lines) at index
 * idx into a new table of "Name: value" strings left on the stack; raises on misuse. */
void l_http_collect_headers(lua_State *L, int idx);

#endif
