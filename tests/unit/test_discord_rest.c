/* The pure helpers of the Discord request layer: audit-log reason encoding, multipart
 * bodies, nonces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "discord_rest.h"

static void test_urlencode(void **state) {
  (void)state;
  char *s = rest_urlencode("clean-up: café & co/100%~");
  assert_string_equal(s, "clean-up%3A%20caf%C3%A9%20%26%20co%2F100%25~");
  free(s);
  s = rest_urlencode("");
  assert_string_equal(s, "");
  free(s);
}

static const char *find(const char *hay, size_t n, const char *needle) {
  size_t k = strlen(needle);
  for (size_t i = 0; i + k <= n; i++)
    if (memcmp(hay + i, needle, k) == 0) return hay + i;
  return NULL;
}

static void test_multipart(void **state) {
  (void)state;
  const char bin[] = {'a', 0, 'b', '\r', '\n'};
  rest_file files[2] = {{"a \"quoted\".txt", "hello", 5, "text/plain"},
                        {"b.bin", bin, sizeof bin, NULL}};
  char *body;
  size_t len;
  char ct[128];
  const char *json = "{\"content\":\"x\"}";
  assert_int_equal(rest_multipart(json, strlen(json), files, 2, &body, &len, ct, sizeof ct), 0);
  assert_true(strncmp(ct, "multipart/form-data; boundary=", 30) == 0);
  const char *boundary = ct + 30;
  char delim[160];
  snprintf(delim, sizeof delim, "--%s\r\n", boundary);
  assert_true(strncmp(body, delim, strlen(delim)) == 0);
  assert_non_null(find(body, len, "Content-Disposition: form-data; name=\"payload_json\"\r\n"
                                  "Content-Type: application/json\r\n\r\n{\"content\":\"x\"}\r\n"));
  assert_non_null(find(body, len, "name=\"files[0]\"; filename=\"a %22quoted%22.txt\"\r\n"
                                  "Content-Type: text/plain\r\n\r\nhello\r\n"));
  const char *f1 = find(body, len, "name=\"files[1]\"; filename=\"b.bin\"\r\n"
                                   "Content-Type: application/octet-stream\r\n\r\n");
  assert_non_null(f1);
  const char *data = strstr(f1, "\r\n\r\n") + 4;
  assert_memory_equal(data, bin, sizeof bin);
  char end[160];
  snprintf(end, sizeof end, "--%s--\r\n", boundary);
  assert_int_equal(memcmp(body + len - strlen(end), end, strlen(end)), 0);
  free(body);
}

static void test_nonce(void **state) {
  (void)state;
  char a[26], b[26];
  rest_nonce(a);
  rest_nonce(b);
  assert_true(strlen(a) <= 25 && strlen(a) > 0);
  assert_string_not_equal(a, b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_urlencode),
    cmocka_unit_test(test_multipart),
    cmocka_unit_test(test_nonce),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
