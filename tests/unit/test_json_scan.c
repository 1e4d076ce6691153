/* The strict JSON scanner: what it accepts, what it refuses, and the lookups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include "json_scan.h"

static int parse(const char *s) {
  json_span v;
  return json_parse(s, strlen(s), &v);
}

static void accepts_valid_documents(void **state) {
  const char *ok[] = {
      "{}", "[]", " {\"a\" : [1, -2.5e+3, true, false, null, \"x\"]}\n", "0", "-0",
      "\"\\u00e9\\ud83d\\ude00\\n\"", "\"caf\xc3\xa9\"", "\"\xf0\x9f\x98\x80\"",
      "{\"op\":0,\"d\":{\"a\":{\"b\":{\"c\":[[[]]]}}}}", "1E5", "\"\\/\"",
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    if (parse(ok[i]) != 0) fail_msg("refused valid %s", ok[i]);
  }
}

static void refuses_everything_else(void **state) {
  const char *bad[] = {
      "", " ", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "[1 2]", "01",
      "1.", ".5", "-", "1e", "+1", "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12\"",
      "\"a\nb\"", "{} {}", "{a:1}", "'x'", "NaN", "Infinity", "\"\xc0\xaf\"",
      "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xff\"", "\"\xe2\x82\"",
      "{\"a\":1}x", "[\"a\":1]",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (parse(bad[i]) != -EINVAL) fail_msg("accepted invalid %s", bad[i]);
  }
  /* an embedded NUL ends nothing: the length counts */
  json_span v;
  assert_int_equal(json_parse("{}\0", 3, &v), -EINVAL);
}

static void nesting_is_bounded(void **state) {
  char deep[2 * JSON_MAX_DEPTH + 8];
  size_t n = 0;
  for (int i = 0; i < JSON_MAX_DEPTH; i++) deep[n++] = '[';
  for (int i = 0; i < JSON_MAX_DEPTH; i++) deep[n++] = ']';
  json_span v;
  assert_int_equal(json_parse(deep, n, &v), 0);
  n = 0;
  for (int i = 0; i < JSON_MAX_DEPTH + 1; i++) deep[n++] = '[';
  for (int i = 0; i < JSON_MAX_DEPTH + 1; i++) deep[n++] = ']';
  assert_int_equal(json_parse(deep, n, &v), -EINVAL);
  /* a huge unclosed nest is refused without recursing into it */
  size_t big = 1 << 20;
  char *b = malloc(big);
  memset(b, '[', big);
  assert_int_equal(json_parse(b, big, &v), -EINVAL);
  free(b);
}

static void lookups_read_gateway_fields(void **state) {
  const char *s = "{\"t\":\"READY\",\"s\":42,\"op\":0,\"d\":{\"session_id\":\"ab\\\"c\","
                  "\"heartbeat_interval\":41250.0,\"nested\":{\"op\":7}},\"op\":0}";
  json_span root, v, d;
  assert_int_equal(json_parse(s, strlen(s), &root), 0);
  assert_int_equal(root.type, JSON_OBJECT);
  int64_t i;
  assert_int_equal(json_get(root, "op", &v), 0);
  assert_int_equal(json_int64(v, &i), 0);
  assert_int_equal(i, 0);
  assert_int_equal(json_get(root, "s", &v), 0);
  assert_int_equal(json_int64(v, &i), 0);
  assert_int_equal(i, 42);
  assert_int_equal(json_get(root, "t", &v), 0);
  assert_true(json_string_eq(v, "READY"));
  assert_false(json_string_eq(v, "READ"));
  assert_int_equal(json_get(root, "d", &d), 0);
  assert_int_equal(d.type, JSON_OBJECT);
  char buf[16];
  assert_int_equal(json_get(d, "session_id", &v), 0);
  assert_int_equal(json_string(v, buf, sizeof buf, NULL), 0);
  assert_string_equal(buf, "ab\"c");
  assert_int_equal(json_string(v, buf, 3, NULL), -ENOSPC);
  double x;
  assert_int_equal(json_get(d, "heartbeat_interval", &v), 0);
  assert_int_equal(json_int64(v, &i), -EINVAL); /* not an integer */
  assert_int_equal(json_double(v, &x), 0);
  assert_true(x == 41250.0);
  /* nested keys are not top-level keys */
  assert_int_equal(json_get(d, "op", &v), -ENOENT);
  assert_int_equal(v.type, JSON_NONE);
  assert_int_equal(json_get(v, "x", &v), -EINVAL);
}

static void duplicate_keys_last_wins_and_escaped_keys_match(void **state) {
  const char *s = "{\"op\":1,\"\\u006fp\":2}";
  json_span root, v;
  int64_t i;
  assert_int_equal(json_parse(s, strlen(s), &root), 0);
  assert_int_equal(json_get(root, "op", &v), 0);
  assert_int_equal(json_int64(v, &i), 0);
  assert_int_equal(i, 2);
}

static void integers_are_range_checked(void **state) {
  json_span v = {"9223372036854775807", 19, JSON_NUMBER};
  int64_t i;
  assert_int_equal(json_int64(v, &i), 0);
  assert_true(i == INT64_MAX);
  v.p = "9223372036854775808";
  assert_int_equal(json_int64(v, &i), -EINVAL);
  v.p = "-9223372036854775808";
  v.len = 20;
  assert_int_equal(json_int64(v, &i), 0);
  assert_true(i == INT64_MIN);
}

static void strings_refuse_nul_and_lone_surrogates(void **state) {
  char buf[16];
  json_span v = {"\"a\\u0000b\"", 10, JSON_STRING};
  assert_int_equal(json_string(v, buf, sizeof buf, NULL), -EINVAL);
  v.p = "\"\\ud800x\"";
  v.len = 9;
  assert_int_equal(json_string(v, buf, sizeof buf, NULL), -EINVAL);
  v.p = "\"\\ud83d\\ude00\"";
  v.len = 14;
  size_t n;
  assert_int_equal(json_string(v, buf, sizeof buf, &n), 0);
  assert_int_equal(n, 4);
  assert_memory_equal(buf, "\xf0\x9f\x98\x80", 4);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(accepts_valid_documents),
      cmocka_unit_test(refuses_everything_else),
      cmocka_unit_test(nesting_is_bounded),
      cmocka_unit_test(lookups_read_gateway_fields),
      cmocka_unit_test(duplicate_keys_last_wins_and_escaped_keys_match),
      cmocka_unit_test(integers_are_range_checked),
      cmocka_unit_test(strings_refuse_nul_and_lone_surrogates),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
