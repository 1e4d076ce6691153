/* chunk: split a reply into Discord-sized messages. A pure function: no Lua, no loop.
 *
 * The limit is in Unicode code points (what Discord counts), fence lines added by the
 * formatter included. The rules, in the order they decide:
 *
 * Input. Invalid UTF-8 is replaced before anything else: every maximal ill-formed
 * subsequence (Unicode's "maximal subpart" practice, as Python's errors="replace") becomes
 * U+FFFD. Chunks are slices of that sanitised text (chunk_result.text), which is the input
 * itself when it was valid. Output is therefore always valid UTF-8.
 *
 * Lines end at "\n"; a "\r" just before it belongs to the line ending.
 *
 * Fences (CommonMark, top level only): a line of at most 3 spaces, then 3 or more "`" or
 * "~", then an info string (which may not contain "`" for a backtick fence) opens a fenced
 * block; inside, a line of at most 3 spaces, at least as many of the same character and
 * only spaces or tabs closes it. A fence line is recognised only when it has at most
 * limit/4 code points: longer ones could not be reopened and closed inside a message, so
 * they are ordinary text (and with a limit under 12 no fence is recognised at all).
 *
 * Chunks. Each chunk is at most `limit` code points. Outside code it starts and ends on
 * non-whitespace. A chunk that starts inside a block begins with the opening fence line
 * (verbatim, indent and info string included) and "\n"; a chunk that ends inside a block
 * ends with "\n" and the fence's marker run (no "\n" when the chunk already ends with one,
 * which happens only for a block left open at the end of the input).
 *
 * Split points, best first: a whitespace run holding two or more line endings (blank
 * line), a run holding one (line end) or the end of a code line followed by another code
 * line, a run after ".", "!" or "?" (sentence end), any other whitespace run, a
 * whitespace run inside an inline code span or a markdown link `[text](url)` (both
 * recognised within one line and within the window), then a hard cut between two code
 * points inside a text or code line (moved back, when it can, off combining marks,
 * variation selectors, skin tones and the sides of a zero-width joiner). The best class
 * with a candidate in the second half of the available room wins, the latest one in it;
 * otherwise the latest candidate of any class. Fence lines are never cut, no code
 * block is split right after its opening line or right before its closing line.
 *
 * Dropped at a split, and nothing else: outside code the whitespace run at the split point
 * (and leading/trailing whitespace of the whole input); inside a code block exactly the
 * one line ending at the split ("\n" or "\r\n"). A hard cut drops nothing, except that a
 * chunk outside code never starts with whitespace. So joining the chunks, after removing
 * the added fence lines and putting back the dropped whitespace, gives back the
 * (sanitised) input byte for byte.
 *
 * Known limits (all need unusual input): fences are read at the top level only, not
 * inside list items or block quotes; a fence line over limit/4 code points is text to the
 * formatter but still a fence to Discord; a chunk that starts after a hard cut, or after
 * dropped indentation of four or more spaces, may begin with text that reads as a fence
 * line on its own; backslash escapes are not read, so an escaped backtick still counts
 * for inline code spans.
 *
 * Time is linear in the input; memory is the pieces array (plus a sanitised copy when
 * the input was not valid UTF-8) and scratch proportional to the limit. */
#ifndef CC_CHUNK_H
#define CC_CHUNK_H

#include <stddef.h>

#define CHUNK_DEFAULT_LIMIT 2000

/* One chunk: [open line "\n"] text[start, end) [("\n") closing run]. */
struct chunk_piece {
  size_t start, end;
  size_t open_at, open_len;   /* reopened fence line, a slice of text; open_len 0: none */
  size_t close_at, close_len; /* added closing run, a slice of text; close_len 0: none */
  int close_nl;               /* the closing run is preceded by "\n" */
};

struct chunk_result {
  const char *text; /* what the pieces slice: the input, or `owned` */
  size_t len;
  char *owned;      /* sanitised copy when the input had invalid UTF-8, else NULL */
  size_t replaced;  /* how many ill-formed subsequences became U+FFFD */
  struct chunk_piece *pieces;
  size_t count, cap;
};

/* Splits s[0, n) into chunks of at most `limit` code points (limit >= 1). Returns 0, or
 * -EINVAL (limit 0), -ENOMEM (out is then freed). Free with chunk_result_free(). */
int chunk_split(const char *s, size_t n, size_t limit, struct chunk_result *out);
void chunk_result_free(struct chunk_result *r);

/* Bytes of piece i once assembled, and the assembling itself (returns the length). */
size_t chunk_piece_len(const struct chunk_result *r, size_t i);
size_t chunk_piece_copy(const struct chunk_result *r, size_t i, char *dst);

/* Sanitising alone: returns the length of s with each ill-formed subsequence replaced by
 * U+FFFD; writes it to dst when dst is not NULL (dst needs that many bytes). *replaced,
 * when not NULL, gets the number of replacements. */
size_t chunk_sanitize(const char *s, size_t n, char *dst, size_t *replaced);

/* Number of code points of valid UTF-8 s[0, n). */
size_t chunk_cp_count(const char *s, size_t n);

#endif
