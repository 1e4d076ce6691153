/* chunk_check: checks a chunk_split() result against the rules of chunk.h, with its own
 * (whole-text) reading of the fence lines. Shared by the cmocka test and the fuzz target;
 * returns NULL when every rule holds, else a static description of the first broken one. */
#ifndef CC_CHUNK_CHECK_H
#define CC_CHUNK_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunk.h"

enum { CK_TEXT, CK_CODE, CK_OPEN, CK_CLOSE };

struct ck_line {
  size_t ls, ce, le; /* start, content end, end after the line ending */
  int type;
  size_t open;       /* CODE/CLOSE/OPEN: index of the opening line */
  size_t run_at, run_len;
};

static int ck_ws(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static size_t ck_cps(const unsigned char *s, size_t a, size_t b) {
  size_t n = 0;
  for (size_t i = a; i < b; i++)
    n += (s[i] & 0xC0) != 0x80;
  return n;
}

/* Lines of the text and their fence reading. Returns the count; *out is malloc'ed. */
static size_t ck_lines(const unsigned char *s, size_t n, size_t limit, struct ck_line **out) {
  size_t cap = 16, nl = 0, fmax = limit / 4;
  struct ck_line *L = malloc(cap * sizeof *L);
  size_t open = (size_t)-1; /* index of the open fence's line */
  for (size_t ls = 0; ls < n;) {
    const unsigned char *q = memchr(s + ls, '\n', n - ls);
    size_t le = q ? (size_t)(q - s) + 1 : n;
    size_t ce = q ? le - 1 : n;
    if (q && ce > ls && s[ce - 1] == '\r')
      ce--;
    if (nl == cap)
      L = realloc(L, (cap *= 2) * sizeof *L);
    struct ck_line l = {.ls = ls, .ce = ce, .le = le, .open = open};
    l.type = open != (size_t)-1 ? CK_CODE : CK_TEXT;
    size_t i = ls;
    while (i < ce && i - ls < 3 && s[i] == ' ')
      i++;
    if (i < ce && (s[i] == '`' || s[i] == '~') && ck_cps(s, ls, ce) <= fmax) {
      size_t j = i;
      while (j < ce && s[j] == s[i])
        j++;
      if (j - i >= 3) {
        int blank = 1, tick = 0;
        for (size_t m = j; m < ce; m++) {
          if (s[m] != ' ' && s[m] != '\t')
            blank = 0;
          if (s[m] == '`')
            tick = 1;
        }
        if (open != (size_t)-1) {
          struct ck_line *o = &L[open];
          if (s[i] == s[o->run_at] && j - i >= o->run_len && blank) {
            l.type = CK_CLOSE;
            l.run_at = i, l.run_len = j - i;
            open = (size_t)-1;
          }
        } else if (s[i] == '~' || !tick) {
          l.type = CK_OPEN;
          l.run_at = i, l.run_len = j - i;
          l.open = nl;
          open = nl;
        }
      }
    }
    L[nl++] = l;
    ls = le;
  }
  *out = L;
  return nl;
}

/* Index of the line holding byte position x (x < n), by binary search. */
static size_t ck_line_of(const struct ck_line *L, size_t nl, size_t x) {
  size_t lo = 0, hi = nl;
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if (L[mid].ls <= x)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

/* Is position x inside a block, i.e. would a chunk ending at x need a closing run? */
static int ck_inside(const struct ck_line *L, size_t nl, size_t n, size_t x, size_t *open) {
  if (nl == 0)
    return 0;
  if (x >= n) {
    const struct ck_line *l = &L[nl - 1];
    *open = l->open;
    return l->type == CK_CODE || l->type == CK_OPEN;
  }
  const struct ck_line *l = &L[ck_line_of(L, nl, x)];
  *open = l->open;
  return l->type == CK_CODE;
}

static const char *chunk_check(const char *input, size_t n, size_t limit,
                               const struct chunk_result *r) {
  static char msg[160];
  const char *err = NULL;
  size_t rep = 0, slen = chunk_sanitize(input, n, NULL, &rep);
  if (slen != r->len)
    return "text is not the sanitised input";
  char *san = malloc(slen + 1);
  chunk_sanitize(input, n, san, NULL);
  if (memcmp(san, r->text, slen) != 0) {
    free(san);
    return "text is not the sanitised input";
  }
  free(san);
  const unsigned char *s = (const unsigned char *)r->text;
  struct ck_line *L;
  size_t nl = ck_lines(s, slen, limit, &L);
  size_t prev_end = 0, buf_cap = 0;
  char *buf = NULL;
#define FAIL(...)                                                                          \
  do {                                                                                     \
    snprintf(msg, sizeof msg, __VA_ARGS__);                                                \
    err = msg;                                                                             \
    goto out;                                                                              \
  } while (0)
  for (size_t i = 0; i < r->count; i++) {
    const struct chunk_piece *pc = &r->pieces[i];
    size_t len = chunk_piece_len(r, i);
    if (len + 1 > buf_cap)
      buf = realloc(buf, buf_cap = len + 1);
    if (chunk_piece_copy(r, i, buf) != len)
      FAIL("chunk %zu: length", i);
    size_t cnt = 0;
    if (chunk_sanitize(buf, len, NULL, &cnt) != len || cnt)
      FAIL("chunk %zu: invalid UTF-8", i);
    if (chunk_cp_count(buf, len) > limit)
      FAIL("chunk %zu: %zu code points > %zu", i, chunk_cp_count(buf, len), limit);
    if (pc->end <= pc->start || pc->start < prev_end || pc->end > slen)
      FAIL("chunk %zu: bad span [%zu,%zu)", i, pc->start, pc->end);
    int blank = 1;
    for (size_t k = 0; k < len && blank; k++)
      blank = ck_ws((unsigned char)buf[k]);
    if (blank)
      FAIL("chunk %zu: only whitespace", i);
    /* the gap before it: whitespace; inside code, one line ending or nothing */
    for (size_t k = prev_end; k < pc->start; k++)
      if (!ck_ws(s[k]))
        FAIL("chunk %zu: non-whitespace dropped at %zu", i, k);
    size_t o1 = 0, o2 = 0;
    int in_start = ck_inside(L, nl, slen, pc->start, &o1);
    if (i > 0 && in_start) {
      size_t gap = pc->start - prev_end;
      int ok = gap == 0 || (gap == 1 && s[prev_end] == '\n') ||
               (gap == 2 && s[prev_end] == '\r' && s[prev_end + 1] == '\n');
      if (!ok)
        FAIL("chunk %zu: more than a line ending dropped inside code", i);
      if (!r->pieces[i - 1].close_len)
        FAIL("chunk %zu: previous chunk left a block open", i);
    }
    if (!in_start && ck_ws(s[pc->start]))
      FAIL("chunk %zu: starts with whitespace outside code", i);
    if (in_start != (pc->open_len > 0))
      FAIL("chunk %zu: reopening fence %s", i, in_start ? "missing" : "unexpected");
    if (in_start) {
      const struct ck_line *o = &L[o1];
      if (pc->open_at != o->ls || pc->open_len != o->ce - o->ls)
        FAIL("chunk %zu: reopened line is not the opening line", i);
      const struct ck_line *l = &L[ck_line_of(L, nl, pc->start)];
      if (l->type != CK_CODE)
        FAIL("chunk %zu: starts on a fence line", i);
    }
    int in_end = ck_inside(L, nl, slen, pc->end, &o2);
    if (in_end != (pc->close_len > 0))
      FAIL("chunk %zu: closing fence %s", i, in_end ? "missing" : "unexpected");
    if (in_end) {
      const struct ck_line *o = &L[o2];
      if (pc->close_at != o->run_at || pc->close_len != o->run_len)
        FAIL("chunk %zu: closing run differs from the opening one", i);
      int want_nl = !(pc->end == slen && s[slen - 1] == '\n');
      if (pc->close_nl != want_nl)
        FAIL("chunk %zu: closing fence line ending", i);
    }
    /* fence lines are never cut */
    if (pc->start < slen) {
      const struct ck_line *l = &L[ck_line_of(L, nl, pc->start)];
      if ((l->type == CK_OPEN && pc->start != l->ls && pc->start != l->run_at) ||
          (l->type == CK_CLOSE))
        FAIL("chunk %zu: starts inside a fence line", i);
    }
    if (pc->end < slen) {
      const struct ck_line *l = &L[ck_line_of(L, nl, pc->end)];
      if ((l->type == CK_OPEN && pc->end != l->ls) ||
          (l->type == CK_CLOSE && pc->end < l->run_at + l->run_len && pc->end != l->ls))
        FAIL("chunk %zu: ends inside a fence line", i);
      if (l->type == CK_OPEN || (l->type == CK_CLOSE && pc->end == l->ls))
        if (pc->close_len)
          FAIL("chunk %zu: block split at its fence line", i);
    }
    prev_end = pc->end;
  }
  for (size_t k = prev_end; k < slen; k++)
    if (!ck_ws(s[k]))
      FAIL("text after the last chunk is not whitespace (%zu)", k);
  if (r->count > 0 && r->pieces[r->count - 1].close_len == 0) {
    size_t o = 0;
    if (ck_inside(L, nl, slen, r->pieces[r->count - 1].end, &o))
      FAIL("last chunk leaves a block open");
  }
#undef FAIL
out:
  free(buf);
  free(L);
  return err;
}

#endif
