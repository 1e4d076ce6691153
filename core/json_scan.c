/* Strict JSON scanning: a recursive-descent validator with a depth bound, plus lookups
 * that walk an already validated span. See json_scan.h. */
#include "json_scan.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct scan {
  const char *p, *end;
} scan;

static void skip_ws(scan *s) {
  while (s->p < s->end &&
         (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

static bool lit(scan *s, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return false;
  s->p += n;
  return true;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static bool number(scan *s) {
  if (s->p < s->end && *s->p == '-') s->p++;
  if (s->p >= s->end) return false;
  if (*s->p == '0') {
    s->p++;
  } else if (is_digit(*s->p)) {
    while (s->p < s->end && is_digit(*s->p)) s->p++;
  } else {
    return false;
  }
  if (s->p < s->end && *s->p == '.') {
    s->p++;
    if (s->p >= s->end || !is_digit(*s->p)) return false;
    while (s->p < s->end && is_digit(*s->p)) s->p++;
  }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
    s->p++;
    if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
    if (s->p >= s->end || !is_digit(*s->p)) return false;
    while (s->p < s->end && is_digit(*s->p)) s->p++;
  }
  return true;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when invalid (overlong forms,
 * surrogates, code points above U+10FFFF and truncation are all invalid). */
static size_t utf8_len(const unsigned char *p, const unsigned char *end) {
  unsigned char c = p[0];
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; }
  else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; }
  else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; }
  else return 0;
  if ((size_t)(end - p) < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if (n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return 0;
  if (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
  return n;
}

static bool string(scan *s) {
  if (s->p >= s->end || *s->p != '"') return false;
  s->p++;
  while (s->p < s->end) {
    unsigned char c = (unsigned char)*s->p;
    if (c == '"') {
      s->p++;
      return true;
    }
    if (c < 0x20) return false;
    if (c == '\\') {
      s->p++;
      if (s->p >= s->end) return false;
      switch (*s->p) {
      case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        s->p++;
        break;
      case 'u':
        if (s->end - s->p < 5) return false;
        for (int i = 1; i <= 4; i++)
          if (hexval(s->p[i]) < 0) return false;
        s->p += 5;
        break;
      default:
        return false;
      }
      continue;
    }
    size_t n = utf8_len((const unsigned char *)s->p, (const unsigned char *)s->end);
    if (n == 0) return false;
    s->p += n;
  }
  return false;
}

static bool value(scan *s, int depth, enum json_type *type);

static bool array(scan *s, int depth) {
  enum json_type t;
  s->p++; /* '[' */
  skip_ws(s);
  if (s->p < s->end && *s->p == ']') {
    s->p++;
    return true;
  }
  for (;;) {
    if (!value(s, depth + 1, &t)) return false;
    skip_ws(s);
    if (s->p >= s->end) return false;
    if (*s->p == ']') {
      s->p++;
      return true;
    }
    if (*s->p != ',') return false;
    s->p++;
  }
}

static bool object(scan *s, int depth) {
  enum json_type t;
  s->p++; /* '{' */
  skip_ws(s);
  if (s->p < s->end && *s->p == '}') {
    s->p++;
    return true;
  }
  for (;;) {
    skip_ws(s);
    if (!string(s)) return false;
    skip_ws(s);
    if (s->p >= s->end || *s->p != ':') return false;
    s->p++;
    if (!value(s, depth + 1, &t)) return false;
    skip_ws(s);
    if (s->p >= s->end) return false;
    if (*s->p == '}') {
      s->p++;
      return true;
    }
    if (*s->p != ',') return false;
    s->p++;
  }
}

/* Scans one value (leading whitespace skipped) and leaves s->p just after it. */
static bool value(scan *s, int depth, enum json_type *type) {
  if (depth > JSON_MAX_DEPTH) return false;
  skip_ws(s);
  if (s->p >= s->end) return false;
  switch (*s->p) {
  case '{': *type = JSON_OBJECT; return object(s, depth);
  case '[': *type = JSON_ARRAY; return array(s, depth);
  case '"': *type = JSON_STRING; return string(s);
  case 't': *type = JSON_TRUE; return lit(s, "true");
  case 'f': *type = JSON_FALSE; return lit(s, "false");
  case 'n': *type = JSON_NULL; return lit(s, "null");
  default: *type = JSON_NUMBER; return number(s);
  }
}

int json_parse(const char *text, size_t len, json_span *out) {
  scan s = {text, text + len};
  enum json_type type = JSON_NONE;
  out->p = NULL;
  out->len = 0;
  out->type = JSON_NONE;
  if (!text) return -EINVAL;
  skip_ws(&s);
  const char *start = s.p;
  if (!value(&s, 1, &type)) return -EINVAL;
  const char *stop = s.p;
  skip_ws(&s);
  if (s.p != s.end) return -EINVAL;
  out->p = start;
  out->len = (size_t)(stop - start);
  out->type = type;
  return 0;
}

/* Decodes the string starting at p (a '"', already validated) into buf (may be NULL with
 * cap 0 to only measure). Returns the decoded length, or -EINVAL / -ENOSPC. */
static long decode_string(const char *p, const char *end, char *buf, size_t cap) {
  size_t n = 0;
  bool fits = true;
#define PUT(ch)                                   \
  do {                                            \
    if (buf && n + 1 < cap) buf[n] = (char)(ch); \
    else fits = false;                            \
    n++;                                          \
  } while (0)
  p++;
  while (p < end && *p != '"') {
    if (*p != '\\') {
      if (*p == '\0') return -EINVAL;
      PUT(*p);
      p++;
      continue;
    }
    p++;
    if (p >= end) return -EINVAL;
    char e = *p++;
    switch (e) {
    case '"': PUT('"'); break;
    case '\\': PUT('\\'); break;
    case '/': PUT('/'); break;
    case 'b': PUT('\b'); break;
    case 'f': PUT('\f'); break;
    case 'n': PUT('\n'); break;
    case 'r': PUT('\r'); break;
    case 't': PUT('\t'); break;
    case 'u': {
      uint32_t cp = 0;
      if (end - p < 4) return -EINVAL;
      for (int i = 0; i < 4; i++) cp = (cp << 4) | (uint32_t)hexval(p[i]);
      p += 4;
      if (cp >= 0xdc00 && cp <= 0xdfff) return -EINVAL;
      if (cp >= 0xd800 && cp <= 0xdbff) {
        uint32_t lo = 0;
        if (end - p < 6 || p[0] != '\\' || p[1] != 'u') return -EINVAL;
        for (int i = 0; i < 4; i++) {
          int h = hexval(p[2 + i]);
          if (h < 0) return -EINVAL;
          lo = (lo << 4) | (uint32_t)h;
        }
        if (lo < 0xdc00 || lo > 0xdfff) return -EINVAL;
        p += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      }
      if (cp == 0) return -EINVAL;
      if (cp < 0x80) {
        PUT(cp);
      } else if (cp < 0x800) {
        PUT(0xc0 | (cp >> 6));
        PUT(0x80 | (cp & 0x3f));
      } else if (cp < 0x10000) {
        PUT(0xe0 | (cp >> 12));
        PUT(0x80 | ((cp >> 6) & 0x3f));
        PUT(0x80 | (cp & 0x3f));
      } else {
        PUT(0xf0 | (cp >> 18));
        PUT(0x80 | ((cp >> 12) & 0x3f));
        PUT(0x80 | ((cp >> 6) & 0x3f));
        PUT(0x80 | (cp & 0x3f));
      }
      break;
    }
    default:
      return -EINVAL;
    }
  }
#undef PUT
  if (p >= end) return -EINVAL;
  if (buf && cap > 0) buf[fits ? n : cap - 1] = '\0';
  if (!buf || !fits) return buf ? -ENOSPC : (long)n;
  return (long)n;
}

int json_string(json_span v, char *buf, size_t cap, size_t *out_len) {
  if (v.type != JSON_STRING || !buf || cap == 0) return -EINVAL;
  long n = decode_string(v.p, v.p + v.len, buf, cap);
  if (n < 0) {
    buf[0] = '\0';
    return (int)n;
  }
  if (out_len) *out_len = (size_t)n;
  return 0;
}

bool json_string_eq(json_span v, const char *str) {
  if (v.type != JSON_STRING) return false;
  size_t want = strlen(str);
  /* Fast path: no escapes, compare the raw bytes. */
  if (v.len == want + 2 && memcmp(v.p + 1, str, want) == 0) return true;
  if (!memchr(v.p, '\\', v.len)) return false;
  char small[256];
  if (want + 1 > sizeof small) return false;
  long n = decode_string(v.p, v.p + v.len, small, sizeof small);
  return n >= 0 && (size_t)n == want && memcmp(small, str, want) == 0;
}

int json_get(json_span obj, const char *key, json_span *out) {
  out->p = NULL;
  out->len = 0;
  out->type = JSON_NONE;
  if (obj.type != JSON_OBJECT || obj.len < 2 || obj.p[0] != '{') return -EINVAL;
  /* The span was validated, but scan defensively anyway: a malformed span just ends
   * the walk. */
  scan s = {obj.p + 1, obj.p + obj.len};
  enum json_type t;
  skip_ws(&s);
  if (s.p < s.end && *s.p == '}') return -ENOENT;
  for (;;) {
    skip_ws(&s);
    const char *kstart = s.p;
    if (!string(&s)) return out->type ? 0 : -ENOENT;
    json_span k = {kstart, (size_t)(s.p - kstart), JSON_STRING};
    skip_ws(&s);
    if (s.p >= s.end || *s.p != ':') return out->type ? 0 : -ENOENT;
    s.p++;
    skip_ws(&s);
    const char *vstart = s.p;
    if (!value(&s, 1, &t)) return out->type ? 0 : -ENOENT;
    if (json_string_eq(k, key)) {
      out->p = vstart;
      out->len = (size_t)(s.p - vstart);
      out->type = t;
    }
    skip_ws(&s);
    if (s.p >= s.end || *s.p != ',') break;
    s.p++;
  }
  return out->type ? 0 : -ENOENT;
}

int json_int64(json_span v, int64_t *out) {
  if (v.type != JSON_NUMBER || v.len == 0 || v.len > 20) return -EINVAL;
  int64_t acc = 0;
  size_t i = 0;
  bool neg = false;
  if (v.p[0] == '-') {
    neg = true;
    i = 1;
  }
  if (i >= v.len) return -EINVAL;
  for (; i < v.len; i++) {
    char c = v.p[i];
    if (!is_digit(c)) return -EINVAL;
    int d = c - '0';
    if (neg) {
      if (acc < (INT64_MIN + d) / 10) return -EINVAL;
      acc = acc * 10 - d;
    } else {
      if (acc > (INT64_MAX - d) / 10) return -EINVAL;
      acc = acc * 10 + d;
    }
  }
  *out = acc;
  return 0;
}

int json_double(json_span v, double *out) {
  char buf[64];
  if (v.type != JSON_NUMBER || v.len == 0 || v.len >= sizeof buf) return -EINVAL;
  memcpy(buf, v.p, v.len);
  buf[v.len] = '\0';
  char *end = NULL;
  double d = strtod(buf, &end);
  if (end != buf + v.len) return -EINVAL;
  *out = d;
  return 0;
}
