/* core.chunk(text[, opts]) -> { "chunk 1", "chunk 2", ... }: Discord-sized messages.
 * opts.limit: code points per chunk (default 2000). The rules are in chunk.h. */
#include <errno.h>
#include <lauxlib.h>

#include "chunk.h"
#include "l_modules.h"

#define RESULT_MT "core.chunk.result"

/* The C result lives in a userdata so that a Lua memory error cannot leak it. */
static int result_gc(lua_State *L) {
  chunk_result_free(luaL_checkudata(L, 1, RESULT_MT));
  return 0;
}

static int l_chunk(lua_State *L) {
  size_t n;
  const char *text = luaL_checklstring(L, 1, &n);
  lua_Integer limit = CHUNK_DEFAULT_LIMIT;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "limit") != LUA_TNIL) {
      int ok;
      limit = lua_tointegerx(L, -1, &ok);
      luaL_argcheck(L, ok && limit >= 1, 2, "opts.limit must be an integer >= 1");
    }
    lua_pop(L, 1);
  }
  struct chunk_result *r = lua_newuserdatauv(L, sizeof *r, 0);
  *r = (struct chunk_result){0};
  if (luaL_newmetatable(L, RESULT_MT)) {
    lua_pushcfunction(L, result_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  int rc = chunk_split(text, n, (size_t)limit, r);
  if (rc == -ENOMEM)
    return luaL_error(L, "not enough memory");
  lua_createtable(L, (int)r->count, 0);
  luaL_Buffer b;
  for (size_t i = 0; i < r->count; i++) {
    char *dst = luaL_buffinitsize(L, &b, chunk_piece_len(r, i));
    luaL_pushresultsize(&b, chunk_piece_copy(r, i, dst));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  chunk_result_free(r);
  return 1;
}

int l_chunk_open(lua_State *L) {
  lua_pushcfunction(L, l_chunk);
  return 1;
}
