/* chunk: the splitting rules are stated in chunk.h; spec/chunk_reference.lua implements
 * the same rules plainly and the property test holds the two to identical output.
 *
 * One pass per chunk over a window of at most `budget` code points from the chunk start
 * (plus bounded look-ahead for the line after the window and the end of a whitespace
 * run). Every chunk advances by at least half its window unless the text forces a
 * shorter one, and the scratch arrays are sized by the window, so the whole split is
 * linear in the input. */
#include "chunk.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NONE SIZE_MAX

enum { T_TEXT, T_CODE, T_OPEN, T_CLOSE };

struct fence {
  size_t os, olen, ocp; /* the opening line's content: start, bytes, code points */
  size_t run_at, k;     /* the marker run */
};

struct line {
  size_t ls; /* where the line starts */
  int type;
  struct fence f; /* CODE, CLOSE: the open block; OPEN: the block it opens */
};

struct cand {
  int valid;
  int cls; /* 0..4 split classes, -1 hard cut, 5 end of input */
  size_t a, cp; /* the chunk ends at a, with cp code points of content */
  int inside;   /* a closing run is needed */
  int close_nl;
  struct fence cf;
  /* where the next chunk resumes */
  size_t b;
  int skip;
  struct line line;
};

struct ctx {
  const unsigned char *s;
  size_t n, limit, fmax;
  size_t cap; /* scratch entries */
  unsigned char *prot;
  size_t *run_at, *run_len, *next_same, *last_len;
};

/* ---- UTF-8 ---------------------------------------------------------------------- */

/* Length of the well-formed sequence at s[i], or of the maximal ill-formed subpart
 * (setting *bad). */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t i, int *bad) {
  unsigned c = s[i], lo = 0x80, hi = 0xBF;
  size_t need;
  *bad = 0;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    need = 1;
  else if (c == 0xE0)
    need = 2, lo = 0xA0;
  else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
    need = 2;
  else if (c == 0xED)
    need = 2, hi = 0x9F;
  else if (c == 0xF0)
    need = 3, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3)
    need = 3;
  else if (c == 0xF4)
    need = 3, hi = 0x8F;
  else {
    *bad = 1;
    return 1;
  }
  for (size_t j = 1; j <= need; j++) {
    if (i + j >= n || s[i + j] < lo || s[i + j] > hi) {
      *bad = 1;
      return j;
    }
    lo = 0x80, hi = 0xBF;
  }
  return need + 1;
}

size_t chunk_sanitize(const char *src, size_t n, char *dst, size_t *replaced) {
  const unsigned char *s = (const unsigned char *)src;
  size_t i = 0, o = 0, count = 0;
  while (i < n) {
    /* ASCII eight bytes at a time, then straight to the first non-ASCII byte */
    while (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      uint64_t hi = w & 0x8080808080808080ull;
      if (hi) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        size_t k = (size_t)__builtin_ctzll(hi) >> 3; /* the first byte is the lowest */
#else
        size_t k = 0;
#endif
        if (dst)
          memcpy(dst + o, s + i, k);
        i += k, o += k;
        break;
      }
      if (dst)
        memcpy(dst + o, s + i, 8);
      i += 8, o += 8;
    }
    if (i >= n)
      break;
    if (s[i] < 0x80) {
      if (dst)
        dst[o] = (char)s[i];
      i++, o++;
      continue;
    }
    int bad;
    size_t len = utf8_seq(s, n, i, &bad);
    if (bad) {
      if (dst)
        memcpy(dst + o, "\xEF\xBF\xBD", 3);
      o += 3, count++;
    } else {
      if (dst)
        memcpy(dst + o, s + i, len);
      o += len;
    }
    i += len;
  }
  if (replaced)
    *replaced = count;
  return o;
}

static int is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

static size_t cont_in_word(uint64_t w);
/* Continuation bytes among 32 bytes: four words' flags summed before one multiply. */
static size_t cont_in_32(const unsigned char *p) {
  uint64_t w[4], m = 0;
  memcpy(w, p, 32);
  for (int i = 0; i < 4; i++)
    m += (w[i] & ~(w[i] << 1) & 0x8080808080808080ull) >> 7;
  return (size_t)((m * 0x0101010101010101ull) >> 56);
}

/* How many of the eight bytes of w are UTF-8 continuation bytes (10xxxxxx); a multiply
 * sums the per-byte flags, so no popcount instruction is needed. */
static size_t cont_in_word(uint64_t w) {
  uint64_t m = (w & ~(w << 1) & 0x8080808080808080ull) >> 7;
  return (size_t)((m * 0x0101010101010101ull) >> 56);
}

size_t chunk_cp_count(const char *src, size_t n) {
  const unsigned char *s = (const unsigned char *)src;
  size_t i = 0, cont = 0;
  for (; i + 32 <= n; i += 32)
    cont += cont_in_32(s + i);
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    /* continuation bytes are 10xxxxxx: bit 7 set, bit 6 clear */
    cont += cont_in_word(w);
  }
  for (; i < n; i++)
    cont += is_cont(s[i]);
  return n - cont;
}

static uint32_t decode_at(const unsigned char *s, size_t n, size_t i) {
  unsigned c = s[i];
  if (c < 0x80)
    return c;
  if (c < 0xE0)
    return i + 1 < n ? ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu) : 0xFFFD;
  if (c < 0xF0)
    return i + 2 < n ? ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu)
                     : 0xFFFD;
  return i + 3 < n ? ((c & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) |
                         ((s[i + 2] & 0x3Fu) << 6) | (s[i + 3] & 0x3Fu)
                   : 0xFFFD;
}

/* A code point that must not start a chunk: it extends the one before it. */
static int is_extend(uint32_t c) {
  return (c >= 0x300 && c <= 0x36F) || (c >= 0x1AB0 && c <= 0x1AFF) ||
         (c >= 0x1DC0 && c <= 0x1DFF) || (c >= 0x20D0 && c <= 0x20FF) ||
         (c >= 0xFE00 && c <= 0xFE0F) || (c >= 0xFE20 && c <= 0xFE2F) || c == 0x200D ||
         (c >= 0x1F3FB && c <= 0x1F3FF) || (c >= 0xE0020 && c <= 0xE007F) ||
         (c >= 0xE0100 && c <= 0xE01EF);
}

static size_t prev_cp(const unsigned char *s, size_t x) {
  do
    x--;
  while (x > 0 && is_cont(s[x]));
  return x;
}

/* A cut at x would separate a code point from what extends it. */
static int bad_cut(const struct ctx *c, size_t x) {
  if (is_extend(decode_at(c->s, c->n, x)))
    return 1;
  return x > 0 && decode_at(c->s, c->n, prev_cp(c->s, x)) == 0x200D;
}

/* ---- lines ---------------------------------------------------------------------- */

static int is_ws(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* The type of the line starting at ls, given the block open before it (or NULL). */
/* The type of the line starting at ls, given the block open before it (or NULL); for an
 * opening line, *opened gets its fence. */
static int line_type_full(const struct ctx *c, size_t ls, const struct fence *open,
                          struct fence *opened) {
  const unsigned char *s = c->s;
  size_t n = c->n, i = ls, cp = 0;
  int none = open ? T_CODE : T_TEXT;
  while (i < n && s[i] == ' ' && cp < 3)
    i++, cp++;
  if (i >= n || (s[i] != '`' && s[i] != '~'))
    return none;
  unsigned char ch = s[i];
  size_t run_at = i, k = 0;
  while (i < n && s[i] == ch) {
    i++, k++;
    if (++cp > c->fmax)
      return none;
  }
  if (k < 3)
    return none;
  int blank = 1, tick = 0;
  while (i < n && s[i] != '\n' && !(s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')) {
    if (!is_cont(s[i]) && ++cp > c->fmax)
      return none;
    if (s[i] != ' ' && s[i] != '\t')
      blank = 0;
    if (s[i] == '`')
      tick = 1;
    i++;
  }
  if (open) {
    if (s[run_at] == s[open->run_at] && k >= open->k && blank)
      return T_CLOSE;
  } else if (ch == '~' || !tick) {
    opened->os = ls, opened->olen = i - ls, opened->ocp = cp;
    opened->run_at = run_at, opened->k = k;
    return T_OPEN;
  }
  return none;
}

/* Most lines start with neither a space nor a fence character: decided inline. */
static inline int line_type(const struct ctx *c, size_t ls, const struct fence *open,
                            struct fence *opened) {
  if (ls < c->n) {
    unsigned char ch = c->s[ls];
    if (ch != ' ' && ch != '`' && ch != '~')
      return open ? T_CODE : T_TEXT;
  }
  return line_type_full(c, ls, open, opened);
}

static void classify(const struct ctx *c, size_t ls, const struct fence *open,
                     struct line *out) {
  struct fence nf;
  out->ls = ls;
  out->type = line_type(c, ls, open, &nf);
  if (out->type == T_OPEN)
    out->f = nf;
  else if (open)
    out->f = *open;
}

static const struct fence *fence_after(const struct line *l) {
  return l->type == T_CODE || l->type == T_OPEN ? &l->f : NULL;
}

/* ---- inline code spans and links (protection of whitespace inside them) ---------- */

static void mark(struct ctx *c, size_t base, size_t from, size_t to, size_t E) {
  if (to > E + 1)
    to = E + 1;
  if (to > from)
    memset(c->prot + (from - base), 1, to - from);
}

/* Marks bytes strictly inside code spans and links of s[from, to) (one line's part of
 * the window and as far again past it); prot is indexed from base, marked up to E. */
static void protect(struct ctx *c, size_t base, size_t from, size_t to, size_t E) {
  const unsigned char *s = c->s;
  size_t nr = 0;
  for (size_t i = from; i < to;) {
    if (s[i] != '`') {
      const void *q = memchr(s + i, '`', to - i);
      if (!q)
        break;
      i = (size_t)((const unsigned char *)q - s);
    }
    size_t j = i;
    while (j < to && s[j] == '`')
      j++;
    c->run_at[nr] = i, c->run_len[nr] = j - i, nr++;
    i = j;
  }
  if (nr > 1) {
    for (size_t r = nr; r-- > 0;) {
      c->next_same[r] = c->last_len[c->run_len[r]];
      c->last_len[c->run_len[r]] = r;
    }
    for (size_t r = 0; r < nr; r++)
      c->last_len[c->run_len[r]] = NONE;
    for (size_t r = 0; r < nr;) {
      size_t m = c->next_same[r];
      if (m == NONE) {
        r++;
        continue;
      }
      mark(c, base, c->run_at[r] + 1, c->run_at[m] + c->run_len[m], E);
      r = m + 1;
    }
  }
  for (size_t i = from; i < to;) {
    if (s[i] != '[') {
      const void *q = memchr(s + i, '[', to - i);
      if (!q)
        break;
      i = (size_t)((const unsigned char *)q - s);
    }
    size_t j = i + 1;
    while (j < to && s[j] != '[' && s[j] != ']')
      j++;
    if (j + 1 < to && s[j] == ']' && s[j + 1] == '(') {
      size_t m = j + 2;
      while (m < to && s[m] != '(' && s[m] != ')')
        m++;
      if (m < to && s[m] == ')')
        mark(c, base, i + 1, m + 1, E);
    }
    i = j;
  }
}

/* ---- output --------------------------------------------------------------------- */

static int push_piece(struct chunk_result *r, const struct chunk_piece *pc) {
  if (r->count == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 16;
    struct chunk_piece *np = realloc(r->pieces, cap * sizeof *np);
    if (!np)
      return -ENOMEM;
    r->pieces = np, r->cap = cap;
  }
  r->pieces[r->count++] = *pc;
  return 0;
}

static int emit(struct chunk_result *r, size_t p, const struct line *start,
                const struct cand *c) {
  struct chunk_piece pc = {.start = p, .end = c->a};
  if (start->type == T_CODE)
    pc.open_at = start->f.os, pc.open_len = start->f.olen;
  if (c->inside)
    pc.close_at = c->cf.run_at, pc.close_len = c->cf.k, pc.close_nl = c->close_nl;
  return push_piece(r, &pc);
}

size_t chunk_piece_len(const struct chunk_result *r, size_t i) {
  const struct chunk_piece *pc = &r->pieces[i];
  size_t len = pc->end - pc->start;
  if (pc->open_len)
    len += pc->open_len + 1;
  if (pc->close_len)
    len += pc->close_len + (pc->close_nl ? 1 : 0);
  return len;
}

size_t chunk_piece_copy(const struct chunk_result *r, size_t i, char *dst) {
  const struct chunk_piece *pc = &r->pieces[i];
  char *o = dst;
  if (pc->open_len) {
    memcpy(o, r->text + pc->open_at, pc->open_len);
    o += pc->open_len;
    *o++ = '\n';
  }
  memcpy(o, r->text + pc->start, pc->end - pc->start);
  o += pc->end - pc->start;
  if (pc->close_len) {
    if (pc->close_nl)
      *o++ = '\n';
    memcpy(o, r->text + pc->close_at, pc->close_len);
    o += pc->close_len;
  }
  return (size_t)(o - dst);
}

/* ---- one chunk ------------------------------------------------------------------ */

struct pick {
  struct cand best[5]; /* per class, latest with cp >= half */
  struct cand latest;  /* latest valid of any class */
  struct cand hard;    /* latest valid hard cut */
  size_t half;
};

static void consider(struct pick *pk, const struct cand *c) {
  if (c->cls >= 0 && c->cp >= pk->half)
    pk->best[c->cls] = *c;
  if (c->cls < 0)
    pk->hard = *c;
  if (!pk->latest.valid || c->a > pk->latest.a ||
      (c->a == pk->latest.a && c->cls > pk->latest.cls))
    pk->latest = *c;
}

/* The whitespace run starting at a (outside code): its class, or 5 if it reaches the end. */
static int run_class(const struct ctx *c, size_t a, size_t *b) {
  const unsigned char *s = c->s;
  size_t i = a, nl = 0;
  while (i < c->n && is_ws(s[i])) {
    nl += s[i] == '\n';
    i++;
  }
  *b = i;
  if (i >= c->n)
    return 5;
  return nl >= 2 ? 4 : nl == 1 ? 3 : -2; /* -2: decided by the caller */
}

/* From pos, where cnt code points have been counted, to the start of code point
 * number target + 1 (or n); *cnt gets how many were counted. */
static size_t advance(const unsigned char *s, size_t n, size_t pos, size_t *cnt,
                      size_t target) {
  size_t k = *cnt;
  while (pos + 32 <= n && k + 32 <= target) {
    k += 32 - cont_in_32(s + pos);
    pos += 32;
  }
  while (pos < n && is_cont(s[pos]))
    pos++; /* the rest of a code point counted above */
  while (pos < n) {
    if (!is_cont(s[pos])) {
      if (k == target)
        break;
      k++;
    }
    pos++;
  }
  *cnt = k;
  return pos;
}

/* The common case without looking at every byte: walks the window line by line and
 * decides when the chunk is the last one or when a blank line or line end candidate lies
 * in the second half (those classes beat everything found inside lines). Gives exactly
 * the slow scan's answer in those cases and returns 0 in all others. Code point counts
 * become positions: H is where the second half starts (NONE when the text ends before
 * it), E where the window ends, with cntE code points before it. */

/* The end of the line that starts at or before pos (its first byte at ls), looked for up
 * to the window end E: returns 1 with ce (content end, before "\r\n" or "\n") and le
 * (after the newline) when the line ends inside the window, 0 otherwise, with
 * ce = le = n when the input ends there and NONE when the line goes on past E. */
static int window_line_end(const unsigned char *s, size_t n, size_t pos, size_t E, size_t ls,
                           size_t *ce, size_t *le) {
  size_t lim = E < n ? E + 1 : n;
  const unsigned char *q = pos < lim ? memchr(s + pos, '\n', lim - pos) : NULL;
  if (q) {
    size_t qi = (size_t)(q - s);
    *ce = (qi > ls && s[qi - 1] == '\r') ? qi - 1 : qi;
    *le = qi + 1;
    return 1;
  }
  *ce = *le = E == n ? n : NONE;
  return 0;
}

static int fast_pick(const struct ctx *c, size_t p, const struct line *start, size_t budget,
                     size_t H, size_t E, size_t cntE, struct cand *out, int *final) {
  const unsigned char *s = c->s;
  size_t n = c->n;
  /* the current line: its start, type and fence (the open block, or the one it opens) */
  size_t ls = start->ls;
  int type = start->type;
  struct fence f = start->f;
  /* the latest blank-line / line-end candidates: where they end and resume */
  size_t a4 = NONE, l4 = 0, a3 = NONE, l3 = 0, b3 = 0, f3 = 0;
  int t4 = 0, t3 = 0, code3 = 0;
  size_t pos = p;
  size_t room_k = NONE, room_at = 0; /* cache: the last position fitting a closing run of k */
  int tail = E == n; /* the window reaches the end: every line may hold the final run */
  *final = 0;
#define FINAL(A, INSIDE, NL)                                                               \
  do {                                                                                     \
    *out = (struct cand){.valid = 1, .cls = 5, .a = (A), .inside = (INSIDE),              \
                         .close_nl = (NL)};                                                \
    if (INSIDE)                                                                            \
      out->cf = f;                                                                         \
    *final = 1;                                                                            \
    return 1;                                                                              \
  } while (0)
#define RECORD(CLS, A)                                                                     \
  do {                                                                                     \
    if ((CLS) == 4)                                                                        \
      a4 = (A), l4 = ls, t4 = type;                                                        \
    else                                                                                   \
      a3 = (A), l3 = ls, t3 = type, code3 = 0;                                             \
  } while (0)
  for (;;) {
    size_t ce, le;
    int ends = window_line_end(s, n, pos, E, ls, &ce, &le);

    if (type == T_TEXT || type == T_CLOSE) {
      if (ce > E) {
        /* a whitespace run holding E may reach the line end past the window */
        if (E < n && is_ws(s[E])) {
          size_t t = E;
          while (t > pos && is_ws(s[t - 1]))
            t--;
          if (t > pos) {
            size_t b;
            int cls = run_class(c, t, &b);
            if (cls == 5)
              FINAL(t, 0, 0);
            if (cls >= 3 && H != NONE && t >= H)
              RECORD(cls, t);
          }
        }
        break;
      }
      if (tail || (H != NONE && ce >= H)) {
        size_t t = ce;
        while (t > pos && is_ws(s[t - 1]))
          t--;
        if (t == ce && ce == n)
          FINAL(n, 0, 0);
        if (t > pos) {
          size_t b;
          int cls = run_class(c, t, &b);
          if (cls == 5)
            FINAL(t, 0, 0);
          if (H != NONE && t >= H)
            RECORD(cls, t);
        } else if (ce == n) {
          FINAL(n, 0, 0);
        }
      }
      if (le > E || le >= n)
        break;
      pos = ls = le;
      type = line_type(c, le, NULL, &f);
      continue;
    }

    if (type == T_OPEN) {
      if (ce > E)
        break;
      if (ce == n || le == n) {
        if (cntE + f.k + (ends ? 0 : 1) <= budget)
          FINAL(n, 1, !ends);
        break;
      }
      if (le > E)
        break;
      pos = ls = le;
      type = line_type(c, le, &f, NULL);
      continue;
    }

    /* T_CODE */
    if (ce > E)
      break;
    if (ce == n || le == n) {
      if (cntE + f.k + (ends ? 0 : 1) <= budget)
        FINAL(n, 1, !ends);
      break;
    }
    int next = line_type(c, le, &f, NULL);
    if (next == T_CODE && ce > p && H != NONE && ce >= H) {
      if (room_k != f.k) {
        /* the last position with at most budget - 1 - k code points before it */
        size_t room = budget >= 1 + f.k ? budget - 1 - f.k : 0, x = E;
        if (cntE > room) {
          for (size_t back = cntE - room; back > 0 && x > p; back--)
            x = prev_cp(s, x);
        }
        room_k = f.k, room_at = x;
      }
      if (ce <= room_at)
        a3 = ce, b3 = le, f3 = f.os, code3 = 1;
    }
    if (le > E)
      break;
    pos = ls = le;
    type = next;
  }
#undef FINAL
#undef RECORD
  *out = (struct cand){.valid = 1};
  if (a4 != NONE) {
    out->cls = 4, out->a = out->b = a4, out->skip = 1;
    out->line.ls = l4, out->line.type = t4;
  } else if (a3 != NONE && !code3) {
    out->cls = 3, out->a = out->b = a3, out->skip = 1;
    out->line.ls = l3, out->line.type = t3;
  } else if (a3 != NONE) {
    /* a code line end: resume on the next code line of the same block */
    struct fence cf;
    line_type_full(c, f3, NULL, &cf);
    out->cls = 3, out->a = a3, out->b = b3, out->skip = 0, out->inside = 1, out->close_nl = 1;
    out->cf = cf;
    out->line.ls = b3, out->line.type = T_CODE, out->line.f = cf;
  } else {
    return 0;
  }
  return 1;
}

/* Works out one chunk starting at cur (a non-whitespace byte outside code, or a position
 * inside a block), pushes it and moves cur to where the next one starts. */
static int one_chunk(struct ctx *c, struct chunk_result *r, struct cand *cur) {
  const unsigned char *s = c->s;
  size_t n = c->n;
  size_t p = cur->b;
  struct line start = cur->line;
  size_t prefix = start.type == T_CODE ? start.f.ocp + 1 : 0;
  size_t budget = c->limit - prefix;
  struct pick pk;
  size_t half = budget / 2;

  /* H: where the second half of the room starts; E: where the room ends */
  size_t cnt = 0;
  size_t H = advance(s, n, p, &cnt, half);
  if (cnt < half)
    H = NONE;
  size_t E = H == NONE ? n : advance(s, n, H, &cnt, budget);

  {
    struct cand fast;
    int final = 0;
    if (fast_pick(c, p, &start, budget, H, E, cnt, &fast, &final)) {
      int rc = emit(r, p, &start, &fast);
      if (rc)
        return rc;
      if (final)
        cur->b = n, cur->skip = 0;
      else
        *cur = fast;
      return 0;
    }
  }
  memset(c->prot, 0, E - p + 1);
  memset(&pk, 0, sizeof pk);
  pk.half = half;

  struct line ln = start;
  size_t pos = p, cp = 0;
  struct cand fin = {0};
  for (;;) {
    size_t ce, le;
    int ends = window_line_end(s, n, pos, E, ln.ls, &ce, &le);

    if (ln.type == T_TEXT || ln.type == T_CLOSE) {
      int text = ln.type == T_TEXT;
      if (text) {
        /* spans and links may close past the window: look as far again */
        size_t pend = E + (E - p);
        if (pend > n)
          pend = n;
        if (ce < pend)
          pend = ce;
        protect(c, p, pos, pend, E);
      }
      size_t hx = NONE, hcp = 0;
      size_t x = pos;
      size_t stop = ce <= E ? ce : E; /* runs may start at the line ending */
      for (; x <= stop && x < n; x++) {
        unsigned char ch = s[x];
        if (is_cont(ch))
          continue;
        if (is_ws(ch)) {
          if (x > p && !is_ws(s[x - 1])) {
            size_t b;
            int cls = run_class(c, x, &b);
            if (cls == 5) {
              fin = (struct cand){.valid = 1, .cls = 5, .a = x, .cp = cp};
              goto done;
            }
            if (cls == -2)
              cls = (text && c->prot[x - p]) ? 0
                    : (s[x - 1] == '.' || s[x - 1] == '!' || s[x - 1] == '?') ? 2
                                                                              : 1;
            struct cand cd = {.valid = 1, .cls = cls, .a = x, .cp = cp, .b = x,
                              .skip = 1, .line = ln};
            consider(&pk, &cd);
          }
        } else if (text && x > ln.ls && x > p && x < ce) {
          hx = x, hcp = cp;
        }
        if (x < ce && x < E)
          cp++;
      }
      if (hx != NONE) {
        struct cand cd = {.valid = 1, .cls = -1, .a = hx, .cp = hcp, .b = hx, .skip = 1,
                          .line = ln};
        consider(&pk, &cd);
      }
      if (ce > E)
        break; /* the window ends inside this line */
      if (ce == n) {
        fin = (struct cand){.valid = 1, .cls = 5, .a = n, .cp = cp};
        goto done;
      }
      /* over the line ending; runs there were seen above */
      cp += le - ce;
      if (le > E)
        break;
      pos = le;
      classify(c, le, NULL, &ln);
      if (le == n) { /* unreachable: a run reaching the end was taken */
        fin = (struct cand){.valid = 1, .cls = 5, .a = n, .cp = cp};
        goto done;
      }
      continue;
    }

    if (ln.type == T_OPEN) {
      if (ce > E)
        break;
      cp += chunk_cp_count((const char *)s + pos, ce - pos);
      if (ce == n || le == n) {
        cp += le - ce;
        size_t need = cp + ln.f.k + (ends ? 0 : 1);
        if (need <= budget) {
          fin = (struct cand){.valid = 1, .cls = 5, .a = n, .cp = cp, .inside = 1,
                              .close_nl = !ends, .cf = ln.f};
          goto done;
        }
        break;
      }
      cp += le - ce;
      if (le > E)
        break;
      struct fence f = ln.f;
      pos = le;
      classify(c, le, &f, &ln);
      continue;
    }

    /* T_CODE */
    {
      size_t room = budget >= 1 + ln.f.k ? budget - 1 - ln.f.k : 0; /* content room */
      size_t hx = NONE, hcp = 0;
      size_t stop = ce < E ? ce : E;
      for (size_t x = pos; x < stop; x++) {
        if (is_cont(s[x]))
          continue;
        if (x > ln.ls && x > p && cp <= room)
          hx = x, hcp = cp;
        cp++;
      }
      /* cp is now cp(p..stop) */
      if (hx != NONE) {
        struct cand cd = {.valid = 1, .cls = -1, .a = hx, .cp = hcp, .inside = 1,
                          .close_nl = 1, .cf = ln.f, .b = hx, .skip = 0, .line = ln};
        consider(&pk, &cd);
      }
      if (ce > E)
        break;
      if (ce == n || le == n) {
        size_t all = cp + (le - ce);
        if (all + ln.f.k + (ends ? 0 : 1) <= budget) {
          fin = (struct cand){.valid = 1, .cls = 5, .a = n, .cp = all, .inside = 1,
                              .close_nl = !ends, .cf = ln.f};
          goto done;
        }
        break;
      }
      struct line next;
      classify(c, le, &ln.f, &next);
      if (next.type == T_CODE && ce > p && cp <= room) {
        struct cand cd = {.valid = 1, .cls = 3, .a = ce, .cp = cp, .inside = 1,
                          .close_nl = 1, .cf = ln.f, .b = le, .skip = 0, .line = next};
        consider(&pk, &cd);
      }
      cp += le - ce;
      if (le > E)
        break;
      pos = le;
      ln = next;
    }
  }

  /* choose */
  {
    const struct cand *ch = NULL;
    for (int k = 4; k >= 0 && !ch; k--)
      if (pk.best[k].valid)
        ch = &pk.best[k];
    if (!ch && pk.hard.valid && pk.hard.cp >= pk.half) {
      struct cand *h = &pk.hard;
      size_t x = h->a, xcp = h->cp, floor = pk.half > 1 ? pk.half : 1;
      while (bad_cut(c, x) && xcp > floor) {
        size_t px = prev_cp(s, x);
        if (px <= h->line.ls)
          break;
        x = px, xcp--;
      }
      if (!bad_cut(c, x))
        h->a = h->b = x, h->cp = xcp;
      ch = h;
    }
    if (!ch && pk.latest.valid)
      ch = &pk.latest;
    if (!ch) {
      /* Not reachable by the rules above (fence lines fit in a quarter of the limit);
       * kept so that no input can stall the loop: cut after one code point. */
      size_t x = p + 1;
      while (x < n && is_cont(s[x]))
        x++;
      pk.latest = (struct cand){.valid = 1, .cls = -1, .a = x, .b = x, .skip = 1,
                                .line = start};
      pk.latest.inside = start.type == T_CODE;
      pk.latest.close_nl = 1;
      pk.latest.cf = start.f;
      pk.latest.skip = start.type != T_CODE;
      ch = &pk.latest;
    }
    int rc = emit(r, p, &start, ch);
    if (rc)
      return rc;
    *cur = *ch;
    return 0;
  }
done: {
  int rc = emit(r, p, &start, &fin);
  if (rc)
    return rc;
  cur->b = n;
  cur->skip = 0;
  return 0;
}
}

/* Skips whitespace outside code from cur->b, following lines. */
static void skip_ws(const struct ctx *c, struct cand *cur) {
  const unsigned char *s = c->s;
  size_t i = cur->b;
  while (i < c->n && is_ws(s[i])) {
    i++;
    if (s[i - 1] == '\n' && i < c->n) {
      struct line prev = cur->line;
      classify(c, i, fence_after(&prev), &cur->line);
    }
  }
  cur->b = i;
}

void chunk_result_free(struct chunk_result *r) {
  free(r->owned);
  free(r->pieces);
  memset(r, 0, sizeof *r);
}

int chunk_split(const char *src, size_t n, size_t limit, struct chunk_result *out) {
  memset(out, 0, sizeof *out);
  if (limit == 0)
    return -EINVAL;
  size_t replaced = 0;
  size_t len = chunk_sanitize(src, n, NULL, &replaced);
  out->text = src, out->len = n;
  if (replaced) {
    out->owned = malloc(len ? len : 1);
    if (!out->owned)
      return -ENOMEM;
    chunk_sanitize(src, n, out->owned, NULL);
    out->text = out->owned, out->len = len;
    out->replaced = replaced;
  }
  struct ctx c = {.s = (const unsigned char *)out->text, .n = out->len, .limit = limit,
                  .fmax = limit / 4};
  /* the window is at most 4 bytes per code point, the span look-ahead as much again */
  size_t cap = limit <= (SIZE_MAX - 8) / 16 ? 8 * limit + 4 : SIZE_MAX / 64;
  if (cap > out->len + 2)
    cap = out->len + 2;
  int rc = 0;
  c.cap = cap;
  c.prot = malloc(cap);
  c.run_at = malloc(cap * sizeof(size_t));
  c.run_len = malloc(cap * sizeof(size_t));
  c.next_same = malloc(cap * sizeof(size_t));
  c.last_len = malloc(cap * sizeof(size_t));
  if (!c.prot || !c.run_at || !c.run_len || !c.next_same || !c.last_len) {
    rc = -ENOMEM;
    goto out;
  }
  memset(c.last_len, 0xFF, cap * sizeof(size_t));

  struct cand cur = {.b = 0, .skip = 1};
  if (c.n > 0)
    classify(&c, 0, NULL, &cur.line);
  for (;;) {
    if (cur.skip)
      skip_ws(&c, &cur);
    if (cur.b >= c.n)
      break;
    rc = one_chunk(&c, out, &cur);
    if (rc)
      break;
  }
out:
  free(c.prot);
  free(c.run_at);
  free(c.run_len);
  free(c.next_same);
  free(c.last_len);
  if (rc)
    chunk_result_free(out);
  return rc;
}
