/* core.sqlite: SQLite databases for Lua, over core/store.c.
 *
 *   core.sqlite.open(path [, {create_dir = bool, busy_timeout_ms = n}]) -> db | nil, err
 *   db:exec(sql)                     -> true          several statements, no parameters
 *   db:query(sql, ...)               -> {row, ...}    row = {column name = value}
 *   db:run(sql, ...)                 -> changes, last_insert_id
 *   db:transaction(fn)               -> fn's results (or true)
 *   db:close()                       -> true          also __gc and __close; idempotent
 *
 * Parameters are positional (`?`): integers bind as INTEGER, other numbers as REAL,
 * strings as TEXT, nil as NULL; the count must match the statement's. Values come back as
 * Lua integers, floats and strings (BLOBs as strings); a NULL column is absent from the
 * row. Store large ids (Discord snowflakes) as TEXT.
 *
 * Errors (STYLE.md's table): misuse raises (bad arguments, a closed db, a parameter count
 * mismatch, more than one statement in query/run, nesting transactions), and so does an
 * SQL error, with SQLite's message ("no such table: x", "UNIQUE constraint failed: t.k").
 * Environmental failures return nil, "kind: detail" with kind one of open, busy, io, full,
 * corrupt, readonly: open() for a file that cannot be opened or is not a database, and
 * any call that hits a lock held past the busy timeout, a full disk or an I/O error.
 *
 * transaction(fn) runs fn(db) between BEGIN IMMEDIATE and COMMIT. If fn raises, the
 * transaction is rolled back and the error re-raised unchanged; if COMMIT fails, it is
 * rolled back and the failure reported like any other. fn must not yield (it runs under
 * lua_pcall; a yield raises, which rolls back): a transaction should be short anyway.
 * Calls block the loop for as long as SQLite takes (one small write per turn). */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "l_modules.h"
#include "store.h"

#define DB_MT "core.sqlite.db"

typedef struct {
  store *db;
  store_stmt *cur; /* the statement of a call a Lua error may have interrupted */
} ldb;

static ldb *check_db(lua_State *L) {
  ldb *d = luaL_checkudata(L, 1, DB_MT);
  if (!d->db)
    luaL_error(L, "attempt to use a closed database");
  if (d->cur) { /* left over by a memory error in an earlier call */
    store_finalize(d->cur);
    d->cur = NULL;
  }
  return d;
}

static int is_environmental(int code) {
  switch (code) {
  case STORE_EBUSY:
  case STORE_EIO:
  case STORE_EFULL:
  case STORE_ECORRUPT:
  case STORE_ECANTOPEN:
  case STORE_EREADONLY: return 1;
  default: return 0;
  }
}

/* Finalizes the call's statement, then returns nil, "kind: msg" or raises. */
static int fail(lua_State *L, ldb *d, int code) {
  luaL_Buffer b;
  if (is_environmental(code)) {
    lua_pushnil(L);
    luaL_buffinit(L, &b);
    luaL_addstring(&b, store_strerror(code));
    luaL_addstring(&b, ": ");
    luaL_addstring(&b, store_errmsg(d->db));
    luaL_pushresult(&b);
  } else {
    lua_pushstring(L, store_errmsg(d->db));
  }
  if (d->cur) {
    store_finalize(d->cur);
    d->cur = NULL;
  }
  if (!is_environmental(code))
    return lua_error(L);
  return 2;
}

/* mkdir -p for the database's directory, mode 0700 (session ids are private). */
static int make_parent_dirs(const char *path, char *err, size_t errlen) {
  char *dir = strdup(path);
  if (!dir)
    return -ENOMEM;
  char *slash = strrchr(dir, '/');
  int rc = 0;
  if (slash && slash != dir) {
    *slash = '\0';
    for (char *p = dir + 1;; p++) {
      if (*p == '/' || *p == '\0') {
        char c = *p;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
          rc = -errno;
          snprintf(err, errlen, "could not create directory %s: %s", dir, strerror(errno));
          break;
        }
        *p = c;
        if (c == '\0')
          break;
      }
    }
  }
  free(dir);
  return rc;
}

static int l_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int create_dir = 0;
  struct store_options opts = {0};
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "create_dir");
    create_dir = lua_toboolean(L, -1);
    lua_getfield(L, 2, "busy_timeout_ms");
    if (!lua_isnil(L, -1)) {
      lua_Integer ms = luaL_checkinteger(L, -1);
      luaL_argcheck(L, ms > 0 && ms <= 3600000, 2, "busy_timeout_ms out of range");
      opts.busy_timeout_ms = (int)ms;
    }
    lua_pop(L, 2);
  }
  ldb *d = lua_newuserdatauv(L, sizeof *d, 0);
  d->db = NULL;
  d->cur = NULL;
  luaL_setmetatable(L, DB_MT);
  char err[600];
  if (create_dir && strcmp(path, ":memory:") != 0 && make_parent_dirs(path, err, sizeof err)) {
    lua_pushnil(L);
    lua_pushfstring(L, "open: %s", err);
    return 2;
  }
  int code = store_open(path, &opts, &d->db, err, sizeof err);
  if (code != 0) {
    if (code == STORE_ENOMEM)
      return luaL_error(L, "not enough memory");
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", store_strerror(code), err);
    return 2;
  }
  return 1;
}

static int l_exec(lua_State *L) {
  ldb *d = check_db(L);
  const char *sql = luaL_checkstring(L, 2);
  int code = store_exec(d->db, sql);
  if (code != 0)
    return fail(L, d, code);
  lua_pushboolean(L, 1);
  return 1;
}

/* Prepares the statement at index 2 and binds arguments 3..top. Returns 0, or the result
 * count of a failure already pushed. */
static int prepare_bind(lua_State *L, ldb *d, const char *fname) {
  size_t len;
  const char *sql = luaL_checklstring(L, 2, &len);
  int nargs = lua_gettop(L) - 2;
  int code = store_prepare(d->db, sql, len, &d->cur);
  if (code != 0)
    return fail(L, d, code);
  int want = store_param_count(d->cur);
  if (want != nargs) {
    store_finalize(d->cur);
    d->cur = NULL;
    return luaL_error(L, "bad arguments to '%s' (the statement takes %d parameter%s, got %d)",
                      fname, want, want == 1 ? "" : "s", nargs);
  }
  for (int i = 1; i <= nargs; i++) {
    int arg = i + 2;
    switch (lua_type(L, arg)) {
    case LUA_TNIL: code = store_bind_null(d->cur, i); break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, arg))
        code = store_bind_int(d->cur, i, (int64_t)lua_tointeger(L, arg));
      else
        code = store_bind_real(d->cur, i, (double)lua_tonumber(L, arg));
      break;
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, arg, &n);
      code = store_bind_text(d->cur, i, s, n);
      break;
    }
    default:
      store_finalize(d->cur);
      d->cur = NULL;
      return luaL_error(L, "bad argument #%d to '%s' (string, number or nil expected, got %s)",
                        i + 1, fname, luaL_typename(L, arg));
    }
    if (code != 0)
      return fail(L, d, code);
  }
  return 0;
}

static void push_column(lua_State *L, store_stmt *st, int col) {
  switch (store_column_type(st, col)) {
  case STORE_INTEGER: lua_pushinteger(L, (lua_Integer)store_column_int(st, col)); break;
  case STORE_REAL: lua_pushnumber(L, (lua_Number)store_column_real(st, col)); break;
  case STORE_TEXT:
  case STORE_BLOB: {
    size_t n;
    const char *s = store_column_text(st, col, &n);
    lua_pushlstring(L, s, n);
    break;
  }
  default: lua_pushnil(L); break;
  }
}

static int l_query(lua_State *L) {
  ldb *d = check_db(L);
  int r = prepare_bind(L, d, "query");
  if (r)
    return r;
  lua_settop(L, 2);
  lua_newtable(L); /* 3: rows */
  int ncols = store_column_count(d->cur);
  lua_Integer nrows = 0;
  int code;
  while ((code = store_step(d->cur)) == STORE_ROW) {
    lua_createtable(L, 0, ncols);
    for (int c = 0; c < ncols; c++) {
      if (store_column_type(d->cur, c) == STORE_NULL)
        continue;
      push_column(L, d->cur, c);
      lua_setfield(L, -2, store_column_name(d->cur, c));
    }
    lua_rawseti(L, 3, ++nrows);
  }
  if (code != STORE_DONE)
    return fail(L, d, code);
  store_finalize(d->cur);
  d->cur = NULL;
  return 1;
}

static int l_run(lua_State *L) {
  ldb *d = check_db(L);
  int r = prepare_bind(L, d, "run");
  if (r)
    return r;
  int code;
  while ((code = store_step(d->cur)) == STORE_ROW) {
  }
  if (code != STORE_DONE)
    return fail(L, d, code);
  store_finalize(d->cur);
  d->cur = NULL;
  lua_pushinteger(L, (lua_Integer)store_changes(d->db));
  lua_pushinteger(L, (lua_Integer)store_last_insert_id(d->db));
  return 2;
}

static int l_transaction(lua_State *L) {
  ldb *d = check_db(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  int code = store_begin(d->db);
  if (code != 0)
    return fail(L, d, code);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 1);
  int status = lua_pcall(L, 1, LUA_MULTRET, 0);
  if (!d->db)
    return luaL_error(L, "database closed inside its transaction");
  if (status != LUA_OK) {
    if (store_in_transaction(d->db))
      store_rollback(d->db);
    return lua_error(L);
  }
  code = store_commit(d->db);
  if (code != 0) {
    lua_pushstring(L, store_errmsg(d->db)); /* COMMIT's message, before ROLLBACK's */
    if (store_in_transaction(d->db))
      store_rollback(d->db);
    if (!is_environmental(code))
      return lua_error(L);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", store_strerror(code), lua_tostring(L, -2));
    return 2;
  }
  int nres = lua_gettop(L) - 2;
  if (nres == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return nres;
}

static int l_close(lua_State *L) {
  ldb *d = luaL_checkudata(L, 1, DB_MT);
  if (d->db) {
    store_close(d->db); /* also finalizes d->cur */
    d->db = NULL;
    d->cur = NULL;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_tostring(lua_State *L) {
  ldb *d = luaL_checkudata(L, 1, DB_MT);
  if (d->db)
    lua_pushfstring(L, "sqlite.db (%p)", (void *)d);
  else
    lua_pushliteral(L, "sqlite.db (closed)");
  return 1;
}

static const luaL_Reg db_methods[] = {
  {"exec", l_exec},
  {"query", l_query},
  {"run", l_run},
  {"transaction", l_transaction},
  {"close", l_close},
  {NULL, NULL},
};

static const luaL_Reg db_meta[] = {
  {"__gc", l_close},
  {"__close", l_close},
  {"__tostring", l_tostring},
  {"__index", NULL},
  {NULL, NULL},
};

static const luaL_Reg funcs[] = {
  {"open", l_open},
  {NULL, NULL},
};

int l_sqlite_open(lua_State *L) {
  if (luaL_newmetatable(L, DB_MT)) {
    luaL_setfuncs(L, db_meta, 0);
    luaL_newlib(L, db_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
