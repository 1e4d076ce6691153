/* JSON encoding of Lua values (see l_json.c), shared by the bindings that send JSON. */
#ifndef CC_L_JSON_H
#define CC_L_JSON_H

#include <lua.h>
#include <stddef.h>

typedef struct jbuf {
  char *p;
  size_t len, cap;
  const char *err;
} jbuf;

void jb_add(jbuf *b, const char *s, size_t n);
void jb_adds(jbuf *b, const char *s);
/* Appends the value at idx; on a value JSON cannot express, b->err is set. */
void json_encode_value(lua_State *L, int idx, jbuf *b, int depth);
/* Encodes the value at idx; raises on values JSON cannot express. Returns malloc'd. */
char *json_encode_or_raise(lua_State *L, int idx, size_t *len);
/* Creates the array marker metatable once per state. */
void json_init(lua_State *L);
/* Lua: encode(v) -> string; array([t]) -> t marked as an array. */
int json_l_encode(lua_State *L);
int json_l_array(lua_State *L);

#endif
