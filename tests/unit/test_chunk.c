/* cmocka tests of the chunking formatter: every rule of chunk.h by hand-written cases,
 * each result also run through the full rule checker (tests/support/chunk_check.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../support/chunk_check.h"
#include "chunk.h"

/* Splits, checks every rule, and returns the assembled chunks (NULL-terminated). */
static char **split_n(const char *text, size_t n, size_t limit, size_t *count) {
  struct chunk_result r;
  assert_int_equal(chunk_split(text, n, limit, &r), 0);
  const char *err = chunk_check(text, n, limit, &r);
  if (err)
    fail_msg("rule broken: %s", err);
  char **out = calloc(r.count + 1, sizeof *out);
  for (size_t i = 0; i < r.count; i++) {
    size_t len = chunk_piece_len(&r, i);
    out[i] = malloc(len + 1);
    out[i][chunk_piece_copy(&r, i, out[i])] = '\0';
  }
  *count = r.count;
  chunk_result_free(&r);
  return out;
}

static char **split(const char *text, size_t limit, size_t *count) {
  return split_n(text, strlen(text), limit, count);
}

static void free_chunks(char **c) {
  for (size_t i = 0; c[i]; i++)
    free(c[i]);
  free(c);
}

/* Asserts the chunks of text are exactly the NULL-terminated list that follows. */
static void expect(const char *text, size_t limit, ...) {
  size_t n;
  char **c = split(text, limit, &n);
  va_list ap;
  va_start(ap, limit);
  size_t i = 0;
  for (const char *want; (want = va_arg(ap, const char *)); i++) {
    if (i >= n)
      fail_msg("chunk %zu missing, wanted \"%s\"", i, want);
    if (strcmp(c[i], want) != 0)
      fail_msg("chunk %zu:\n got  \"%s\"\n want \"%s\"", i, c[i], want);
  }
  va_end(ap);
  if (i != n)
    fail_msg("%zu chunks, wanted %zu (extra: \"%s\")", n, i, c[i]);
  free_chunks(c);
}

static void test_empty_and_blank(void **state) {
  (void)state;
  expect("", 10, NULL);
  expect("   \n\n\t \r\n", 10, NULL);
  expect("  hi  \n", 10, "hi", NULL);
  struct chunk_result r;
  assert_int_equal(chunk_split("x", 1, 0, &r), -EINVAL);
}

static void test_exactly_at_limit_and_one_over(void **state) {
  (void)state;
  expect("abcde", 5, "abcde", NULL);
  expect("abcdef", 5, "abcde", "f", NULL);
  expect("abc de", 6, "abc de", NULL);
  expect("abc def", 6, "abc", "def", NULL);
  /* code points, not bytes: five 3-byte characters fit in 5 */
  expect("\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 5,
         "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", NULL);
  /* a fenced block exactly at the limit with its fences, and one over */
  expect("```\nabcdefghi\n```", 17, "```\nabcdefghi\n```", NULL);
  expect("```\nabcdefghij\n```", 17, "```\nabcdefghi\n```", "```\nj\n```", NULL);
}

static void test_split_priorities(void **state) {
  (void)state;
  /* blank line beats a later line end once it is in the second half */
  expect("Para one.\n\nStill one two three\nfour five", 18, "Para one.",
         "Still one two", "three\nfour five", NULL);
  /* ... but not when it is in the first half: the late line end wins */
  expect("Para one.\n\nStill one two three\nfour five", 34,
         "Para one.\n\nStill one two three", "four five", NULL);
  /* line end beats a sentence end */
  expect("Alpha beta. Gamma\ndelta epsilon zeta", 24, "Alpha beta. Gamma",
         "delta epsilon zeta", NULL);
  /* sentence end beats plain whitespace */
  expect("Alpha beta gamma. Delta epsilon zeta", 25, "Alpha beta gamma.",
         "Delta epsilon zeta", NULL);
  /* whitespace beats a hard cut */
  expect("Alpha beta gamma delta", 20, "Alpha beta gamma", "delta", NULL);
}

static void test_inline_code_and_links(void **state) {
  (void)state;
  /* the space inside the code span is avoided when one outside is near */
  expect("aaaa bbbb `cc dd ee` ffff", 16, "aaaa bbbb", "`cc dd ee` ffff", NULL);
  expect("some words [a b](u) end", 16, "some words", "[a b](u) end", NULL);
  /* with nothing else near, inside a span is still better than a hard cut */
  expect("`aaaa bbbb cccc dddd`", 12, "`aaaa bbbb", "cccc dddd`", NULL);
  /* an unmatched backtick run is literal */
  expect("aaaa `bbbb cccc", 11, "aaaa `bbbb", "cccc", NULL);
}

static void test_fence_split_reopens(void **state) {
  (void)state;
  expect("```python\nline 1\nline 2\nline 3\nline 4\nline 5\nline 6\nline 7\nline 8\nline 9\n```",
         40, "```python\nline 1\nline 2\nline 3\n```", "```python\nline 4\nline 5\nline 6\n```",
         "```python\nline 7\nline 8\nline 9\n```", NULL);
  /* the text around a block: split before it rather than inside */
  expect("Intro text here, longer.\n\n```sh\nmake\nmake test\n```\n\nOutro.", 40,
         "Intro text here, longer.", "```sh\nmake\nmake test\n```\n\nOutro.", NULL);
  /* a code line end late in the window beats a blank line early in it */
  expect("Intro text here.\n\n```sh\nmake\nmake test\n```\n\nOutro.", 40,
         "Intro text here.\n\n```sh\nmake\n```", "```sh\nmake test\n```\n\nOutro.", NULL);
  /* indent and info string are reopened verbatim (the input's leading spaces go) */
  expect("  ~~~ lua title\naaa0\naaa1\naaa2\naaa3\naaa4\naaa5\naaa6\naaa7\naaa8\naaa9\n  ~~~", 60,
         "~~~ lua title\naaa0\naaa1\naaa2\naaa3\naaa4\naaa5\naaa6\naaa7\n~~~",
         "  ~~~ lua title\naaa8\naaa9\n  ~~~", NULL);
}

static void test_fence_unclosed_at_end(void **state) {
  (void)state;
  expect("text\n```py\nx = 1\n", 100, "text\n```py\nx = 1\n```", NULL);
  expect("text\n```py\nx = 1", 100, "text\n```py\nx = 1\n```", NULL);
  expect("```\n", 100, "```\n```", NULL);
}

static void test_fences_nested_lengths(void **state) {
  (void)state;
  /* ```` is closed only by ```` or longer; the inner ``` lines are code */
  expect("````md\n```js\nlet a;\n```\n````\nafter", 40,
         "````md\n```js\nlet a;\n```\n````\nafter", NULL);
  expect("````md\n```js\nlet a = 1;\nlet b = 2;\n```\n````", 30,
         "````md\n```js\nlet a = 1;\n````", "````md\nlet b = 2;\n```\n````", NULL);
  /* a tilde fence is not closed by backticks */
  expect("~~~\n```\ncode line\n~~~\nout", 30, "~~~\n```\ncode line\n~~~\nout", NULL);
  expect("~~~~\naaaa\n~~~\nbbbb\n~~~~~", 20, "~~~~\naaaa\n~~~\n~~~~", "~~~~\nbbbb\n~~~~~", NULL);
  /* a backtick info string with a backtick is not a fence */
  expect("``` a`b\ntext", 20, "``` a`b\ntext", NULL);
}

static void test_fence_line_longer_than_limit(void **state) {
  (void)state;
  size_t limit = 100, n;
  char text[400];
  memset(text, 0, sizeof text);
  strcpy(text, "```");
  memset(text + 3, 'p', 150); /* info string: the line is 153 > 100 */
  strcat(text, "\ncode\n```\n");
  char **c = split(text, limit, &n);
  assert_int_equal(n, 2);
  /* not a fence (it could not be reopened): hard cut, plain text */
  assert_int_equal(strlen(c[0]), 100);
  free_chunks(c);
  /* a line over limit/4 is not a fence either, one under is */
  c = split("```abcdefghijklmnopqrstuvw\nx\n```", 100, &n);
  assert_int_equal(n, 1);
  free_chunks(c);
}

static void test_crlf(void **state) {
  (void)state;
  expect("line one\r\nline two\r\n\r\npara two", 20, "line one\r\nline two", "para two", NULL);
  /* inside code only the CRLF at the split goes; reopened with "\n" */
  expect("```\r\naaaa\r\nbbbb\r\n```", 13, "```\r\naaaa\n```", "```\nbbbb\r\n```", NULL);
}

static void test_combining_and_emoji_straddling(void **state) {
  (void)state;
  /* e + U+0301 straddles the limit: the cut moves before the e */
  expect("abcde\xcc\x81" "f", 5, "abcd", "e\xcc\x81" "f", NULL);
  /* a 4-byte emoji at the limit stays whole */
  expect("abcd\xf0\x9f\x98\x80" "ef", 5, "abcd\xf0\x9f\x98\x80", "ef", NULL);
  expect("abcde\xf0\x9f\x98\x80", 5, "abcde", "\xf0\x9f\x98\x80", NULL);
  /* skin tone modifier stays with its emoji */
  expect("abcd\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", 5, "abcd", "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",
         NULL);
  /* ZWJ sequence: not cut on either side of the joiner when avoidable */
  expect("ab\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9", 4, "ab",
         "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9", NULL);
}

static void test_long_word(void **state) {
  (void)state;
  char *w = malloc(10001);
  memset(w, 'w', 10000);
  w[10000] = '\0';
  size_t n;
  char **c = split(w, CHUNK_DEFAULT_LIMIT, &n);
  assert_int_equal(n, 5);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(strlen(c[i]), 2000);
  free_chunks(c);
  free(w);
}

static void test_invalid_utf8(void **state) {
  (void)state;
  const char in[] = "a\xff" "b\xc3(\xe2\x82 \xed\xa0\x80!\xf0\x9f\x98";
  struct chunk_result r;
  assert_int_equal(chunk_split(in, sizeof in - 1, 100, &r), 0);
  assert_null(chunk_check(in, sizeof in - 1, 100, &r));
  /* ff, c3, e2 82, ed a0 80 (three: ED then A0 is ill-formed), f0 9f 98 */
  assert_int_equal(r.replaced, 7);
  const char want[] = "a\xef\xbf\xbd" "b\xef\xbf\xbd(\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd"
                      "\xef\xbf\xbd!\xef\xbf\xbd";
  assert_int_equal(r.len, sizeof want - 1);
  assert_memory_equal(r.text, want, sizeof want - 1);
  chunk_result_free(&r);
  /* a replacement counts as one code point */
  expect("\xff\xff\xff\xff", 2, "\xef\xbf\xbd\xef\xbf\xbd", "\xef\xbf\xbd\xef\xbf\xbd", NULL);
  /* NUL bytes are valid UTF-8 and pass through */
  size_t n;
  char **c = split_n("a\0b", 3, 10, &n);
  assert_int_equal(n, 1);
  free_chunks(c);
}

static void test_dropped_whitespace(void **state) {
  (void)state;
  const char *in = "a   \n\n  b";
  struct chunk_result r;
  assert_int_equal(chunk_split(in, strlen(in), 1, &r), 0);
  assert_null(chunk_check(in, strlen(in), 1, &r));
  assert_int_equal(r.count, 2);
  /* exactly the run between the chunks is dropped */
  assert_int_equal(r.pieces[0].end, 1);
  assert_int_equal(r.pieces[1].start, 8);
  chunk_result_free(&r);
  /* code indentation and blank code lines survive a split */
  expect("```\n    a\n\n    b\n```", 14, "```\n    a\n\n```", "```\n    b\n```", NULL);
}

/* Rule 6 inputs: each would take minutes if any step were quadratic. */
static void run_big(const char *text, size_t n, size_t limit) {
  struct chunk_result r;
  assert_int_equal(chunk_split(text, n, limit, &r), 0);
  const char *err = chunk_check(text, n, limit, &r);
  if (err)
    fail_msg("rule broken: %s", err);
  chunk_result_free(&r);
}

static void test_pathological_linear(void **state) {
  (void)state;
  size_t n = 16u << 20;
  char *s = malloc(n);
  memset(s, 'a', n); /* one 16 MB line */
  run_big(s, n, CHUNK_DEFAULT_LIMIT);
  memset(s, '\n', n); /* a million empty lines, then text at both ends */
  s[0] = 'x', s[n - 1] = 'y';
  run_big(s, n, CHUNK_DEFAULT_LIMIT);
  /* ten thousand backtick runs of different lengths on one line */
  size_t o = 0, m = 0;
  char *t = malloc(10000u * 10001u / 2 + 20000);
  for (size_t k = 1; k <= 10000; k++) {
    memset(t + o, '`', k);
    o += k;
    t[o++] = (k % 7) ? 'x' : ' ';
    m++;
  }
  run_big(t, o, CHUNK_DEFAULT_LIMIT);
  free(t);
  /* fence lines longer than the limit, many of them */
  o = 0;
  for (size_t k = 0; o + 3000 < n; k++) {
    memcpy(s + o, "```", 3);
    memset(s + o + 3, 'i', 2500);
    s[o + 2503] = '\n';
    memcpy(s + o + 2504, "code\n", 5);
    o += 2509;
  }
  run_big(s, o, CHUNK_DEFAULT_LIMIT);
  free(s);
  (void)m;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty_and_blank),
      cmocka_unit_test(test_exactly_at_limit_and_one_over),
      cmocka_unit_test(test_split_priorities),
      cmocka_unit_test(test_inline_code_and_links),
      cmocka_unit_test(test_fence_split_reopens),
      cmocka_unit_test(test_fence_unclosed_at_end),
      cmocka_unit_test(test_fences_nested_lengths),
      cmocka_unit_test(test_fence_line_longer_than_limit),
      cmocka_unit_test(test_crlf),
      cmocka_unit_test(test_combining_and_emoji_straddling),
      cmocka_unit_test(test_long_word),
      cmocka_unit_test(test_invalid_utf8),
      cmocka_unit_test(test_dropped_whitespace),
      cmocka_unit_test(test_pathological_linear),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
