/* JSON encoding of Lua values for request bodies. lua-cjson 2.1.0 cannot tell an empty
 * array from an object, so a table marked by json_l_array() (core.discord.array) is
 * always an array, and an empty unmarked table an object. */
#include "l_json.h"

#include <lauxlib.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char ARRAY_MT_KEY = 'a';

void json_init(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ARRAY_MT_KEY);
  if (lua_isnil(L, -1)) {
    lua_newtable(L);
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__jsontype");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ARRAY_MT_KEY);
  }
  lua_pop(L, 1);
}



void jb_add(jbuf *b, const char *s, size_t n) {
  if (b->err) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->err = "out of memory";
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void jb_adds(jbuf *b, const char *s) { jb_add(b, s, strlen(s)); }

static void jb_string(jbuf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  jb_add(b, "\"", 1);
  size_t start = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
    jb_add(b, s + start, i - start);
    start = i + 1;
    char esc[7] = "\\";
    switch (ch) {
    case '"': esc[1] = '"'; esc[2] = 0; break;
    case '\\': esc[1] = '\\'; esc[2] = 0; break;
    case '\n': esc[1] = 'n'; esc[2] = 0; break;
    case '\r': esc[1] = 'r'; esc[2] = 0; break;
    case '\t': esc[1] = 't'; esc[2] = 0; break;
    case '\b': esc[1] = 'b'; esc[2] = 0; break;
    case '\f': esc[1] = 'f'; esc[2] = 0; break;
    default:
      esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hex[ch >> 4], esc[5] = hex[ch & 15];
      esc[6] = 0;
    }
    jb_adds(b, esc);
  }
  jb_add(b, s + start, n - start);
  jb_add(b, "\"", 1);
}

/* 1: array, 0: object, -1: neither */
static int table_kind(lua_State *L, int idx, lua_Integer *len) {
  if (lua_getmetatable(L, idx)) {
    lua_getfield(L, -1, "__jsontype");
    const char *t = lua_tostring(L, -1);
    int kind = t && strcmp(t, "array") == 0 ? 1 : t && strcmp(t, "object") == 0 ? 0 : 2;
    lua_pop(L, 2);
    if (kind == 1) {
      *len = (lua_Integer)lua_rawlen(L, idx);
      return 1;
    }
    if (kind == 0) return 0;
  }
  lua_Integer count = 0, max = 0;
  bool strings = false, ints = false;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    count++;
    if (lua_type(L, -1) == LUA_TSTRING) {
      strings = true;
    } else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
      ints = true;
      if (lua_tointeger(L, -1) > max) max = lua_tointeger(L, -1);
    } else {
      lua_pop(L, 1);
      return -1;
    }
  }
  if (strings && ints) return -1;
  if (ints) {
    if (max != count) return -1; /* sparse */
    *len = max;
    return 1;
  }
  return 0;
}

void json_encode_value(lua_State *L, int idx, jbuf *b, int depth) {
  if (b->err) return;
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TNIL: jb_adds(b, "null"); break;
  case LUA_TBOOLEAN: jb_adds(b, lua_toboolean(L, idx) ? "true" : "false"); break;
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) jb_adds(b, "null");
    else b->err = "cannot encode a light userdata";
    break;
  case LUA_TNUMBER: {
    char num[64];
    if (lua_isinteger(L, idx)) {
      snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, idx));
    } else {
      double d = lua_tonumber(L, idx);
      if (!isfinite(d)) {
        b->err = "cannot encode NaN or infinity";
        return;
      }
      snprintf(num, sizeof num, "%.17g", d);
    }
    jb_adds(b, num);
    break;
  }
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    jb_string(b, s, n);
    break;
  }
  case LUA_TTABLE: {
    if (depth > 64) {
      b->err = "nesting too deep (a cycle?)";
      return;
    }
    luaL_checkstack(L, 4, "json");
    lua_Integer len = 0;
    int kind = table_kind(L, idx, &len);
    if (kind < 0) {
      b->err = "a table mixes array and object keys (or has sparse or non-string keys)";
      return;
    }
    if (kind == 1) {
      jb_add(b, "[", 1);
      for (lua_Integer i = 1; i <= len && !b->err; i++) {
        if (i > 1) jb_add(b, ",", 1);
        lua_rawgeti(L, idx, i);
        json_encode_value(L, -1, b, depth + 1);
        lua_pop(L, 1);
      }
      jb_add(b, "]", 1);
    } else {
      jb_add(b, "{", 1);
      bool first = true;
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        if (b->err) {
          lua_pop(L, 2);
          return;
        }
        if (!first) jb_add(b, ",", 1);
        first = false;
        size_t kn;
        const char *k = lua_tolstring(L, -2, &kn); /* a string: checked by table_kind */
        jb_string(b, k, kn);
        jb_add(b, ":", 1);
        json_encode_value(L, -1, b, depth + 1);
        lua_pop(L, 1);
      }
      jb_add(b, "}", 1);
    }
    break;
  }
  default: b->err = "cannot encode a function, thread or userdata"; break;
  }
}

/* Encodes the value at idx; raises on values JSON cannot express. Returns malloc'd. */
char *json_encode_or_raise(lua_State *L, int idx, size_t *len) {
  jbuf b = {0};
  json_encode_value(L, idx, &b, 0);
  if (b.err) {
    free(b.p);
    luaL_error(L, "json: %s", b.err);
  }
  *len = b.len;
  return b.p;
}

int json_l_encode(lua_State *L) {
  luaL_checkany(L, 1);
  size_t len;
  char *s = json_encode_or_raise(L, 1, &len);
  lua_pushlstring(L, s, len);
  free(s);
  return 1;
}

int json_l_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ARRAY_MT_KEY);
  lua_setmetatable(L, 1);
  return 1;
}
