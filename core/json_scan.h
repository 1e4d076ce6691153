/* A small, strict JSON scanner (RFC 8259) for the few fields the core must read itself,
 * e.g. a gateway payload's op, s, t and d. It never allocates and never reads outside
 * [text, text + len): any byte sequence is safe input. Full decoding into Lua tables is
 * lua-cjson's job; this only validates and locates.
 *
 * A span is a slice of the input holding one complete JSON value. */
#ifndef CC_JSON_SCAN_H
#define CC_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum json_type {
  JSON_NONE = 0, /* absent (lookup missed) */
  JSON_NULL,
  JSON_FALSE,
  JSON_TRUE,
  JSON_NUMBER,
  JSON_STRING,
  JSON_ARRAY,
  JSON_OBJECT,
};

typedef struct json_span {
  const char *p;
  size_t len;
  enum json_type type;
} json_span;

/* Deepest nesting accepted; deeper documents are rejected, not recursed into. */
#define JSON_MAX_DEPTH 64

/* Validates that text is exactly one JSON value (surrounding whitespace allowed) and
 * fills *out with it. Returns 0 or -EINVAL. */
int json_parse(const char *text, size_t len, json_span *out);

/* In an object span (from json_parse or a lookup), finds member key (plain ASCII, no
 * escapes needed in the argument; escaped keys in the document are decoded before the
 * comparison). The last duplicate wins, as in lua-cjson. Returns 0 and fills *out, or
 * -ENOENT (out->type = JSON_NONE), or -EINVAL when obj is not an object. */
int json_get(json_span obj, const char *key, json_span *out);

/* A number span that is an integer within int64 (no fraction, no exponent). 0/-EINVAL. */
int json_int64(json_span v, int64_t *out);
/* Any number span as a double. 0 or -EINVAL. */
int json_double(json_span v, double *out);
/* A string span decoded (escapes, \u surrogate pairs -> UTF-8) into buf, NUL-terminated.
 * Returns 0, -EINVAL (not a string) or -ENOSPC (does not fit in cap bytes incl. NUL).
 * *out_len (optional) gets the decoded length; a decoded NUL byte yields -EINVAL, so the
 * result is always a proper C string. */
int json_string(json_span v, char *buf, size_t cap, size_t *out_len);
/* True when v is the string s exactly (after decoding). */
bool json_string_eq(json_span v, const char *s);

#endif
