/* zlib-stream: one context per connection, messages split into fragments, megabytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>
#include <zlib.h>

#include "inflate.h"

/* The server side: one deflate stream, each message ends with a sync flush. */
typedef struct deflater {
  z_stream z;
} deflater;

static void def_init(deflater *d) {
  memset(d, 0, sizeof *d);
  assert_int_equal(deflateInit(&d->z, Z_DEFAULT_COMPRESSION), Z_OK);
}

static unsigned char *def_msg(deflater *d, const char *msg, size_t len, size_t *out_len) {
  size_t cap = deflateBound(&d->z, len) + 64;
  unsigned char *out = malloc(cap);
  d->z.next_in = (unsigned char *)msg;
  d->z.avail_in = (uInt)len;
  d->z.next_out = out;
  d->z.avail_out = (uInt)cap;
  assert_int_equal(deflate(&d->z, Z_SYNC_FLUSH), Z_OK);
  assert_int_equal(d->z.avail_in, 0);
  *out_len = cap - d->z.avail_out;
  assert_memory_equal(out + *out_len - 4, "\x00\x00\xff\xff", 4);
  return out;
}

static void messages_share_one_context(void **state) {
  deflater d;
  zs_inflater zi;
  def_init(&d);
  assert_int_equal(zs_init(&zi, 0), 0);
  for (int i = 0; i < 50; i++) {
    char msg[128];
    int n = snprintf(msg, sizeof msg, "{\"op\":0,\"s\":%d,\"t\":\"MESSAGE_CREATE\",\"d\":{}}", i);
    size_t clen;
    unsigned char *c = def_msg(&d, msg, (size_t)n, &clen);
    const char *out;
    size_t olen;
    assert_int_equal(zs_feed(&zi, c, clen, &out, &olen), 1);
    assert_int_equal(olen, n);
    assert_string_equal(out, msg);
    free(c);
  }
  /* later messages are much smaller: the dictionary is shared */
  zs_free(&zi);
  deflateEnd(&d.z);
}

static void fragments_are_collected_until_the_suffix(void **state) {
  deflater d;
  zs_inflater zi;
  def_init(&d);
  assert_int_equal(zs_init(&zi, 0), 0);
  srand(7);
  for (int m = 0; m < 20; m++) {
    char msg[2048];
    int n = snprintf(msg, sizeof msg, "{\"op\":0,\"s\":%d,\"d\":{\"content\":\"", m);
    for (int i = 0; i < 1500; i++) msg[n++] = (char)('a' + rand() % 26);
    n += snprintf(msg + n, sizeof msg - (size_t)n, "\"}}");
    size_t clen;
    unsigned char *c = def_msg(&d, msg, (size_t)n, &clen);
    size_t off = 0;
    int rc = 0;
    const char *out = NULL;
    size_t olen = 0;
    while (off < clen) {
      size_t frag = 1 + (size_t)(rand() % 7);
      if (frag > clen - off) frag = clen - off;
      rc = zs_feed(&zi, c + off, frag, &out, &olen);
      off += frag;
      if (off < clen) assert_int_equal(rc, 0);
    }
    assert_int_equal(rc, 1);
    assert_int_equal(olen, n);
    assert_memory_equal(out, msg, (size_t)n);
    free(c);
  }
  zs_free(&zi);
  deflateEnd(&d.z);
}

static void a_multi_megabyte_ready_inflates(void **state) {
  size_t n = 6 << 20;
  char *big = malloc(n + 1);
  size_t k = (size_t)snprintf(big, n, "{\"op\":0,\"t\":\"READY\",\"s\":1,\"d\":{\"guilds\":[");
  while (k < n - 64) k += (size_t)snprintf(big + k, n - k, "{\"id\":\"%zu\",\"unavailable\":true},", k);
  k += (size_t)snprintf(big + k, n - k, "{}]}}");
  deflater d;
  zs_inflater zi;
  def_init(&d);
  assert_int_equal(zs_init(&zi, 0), 0);
  size_t clen;
  unsigned char *c = def_msg(&d, big, k, &clen);
  const char *out;
  size_t olen;
  /* in 64 KiB fragments, as a websocket library would deliver them */
  int rc = 0;
  for (size_t off = 0; off < clen; off += 65536) {
    size_t frag = clen - off < 65536 ? clen - off : 65536;
    rc = zs_feed(&zi, c + off, frag, &out, &olen);
  }
  assert_int_equal(rc, 1);
  assert_int_equal(olen, k);
  assert_memory_equal(out, big, k);
  free(c);
  free(big);
  zs_free(&zi);
  deflateEnd(&d.z);
}

static void corrupt_and_oversized_input_fail(void **state) {
  zs_inflater zi;
  const char *out;
  size_t olen;
  assert_int_equal(zs_init(&zi, 0), 0);
  assert_int_equal(zs_feed(&zi, "not zlib at all\x00\x00\xff\xff", 19, &out, &olen), -EINVAL);
  /* unusable until reset, then works */
  assert_int_equal(zs_feed(&zi, "x", 1, &out, &olen), -EINVAL);
  assert_int_equal(zs_reset(&zi), 0);
  deflater d;
  def_init(&d);
  size_t clen;
  unsigned char *c = def_msg(&d, "{\"op\":11}", 9, &clen);
  assert_int_equal(zs_feed(&zi, c, clen, &out, &olen), 1);
  assert_string_equal(out, "{\"op\":11}");
  free(c);
  deflateEnd(&d.z);
  zs_free(&zi);

  /* a bomb stops at the limit */
  assert_int_equal(zs_init(&zi, 100000), 0);
  def_init(&d);
  char *zeros = calloc(1, 1 << 20);
  memset(zeros, 'a', 1 << 20);
  c = def_msg(&d, zeros, 1 << 20, &clen);
  assert_int_equal(zs_feed(&zi, c, clen, &out, &olen), -EMSGSIZE);
  free(c);
  free(zeros);
  deflateEnd(&d.z);
  zs_free(&zi);
}

static void a_new_connection_needs_a_new_context(void **state) {
  deflater d1, d2;
  zs_inflater zi;
  const char *out;
  size_t olen, clen;
  def_init(&d1);
  assert_int_equal(zs_init(&zi, 0), 0);
  unsigned char *c = def_msg(&d1, "{\"op\":10}", 9, &clen);
  assert_int_equal(zs_feed(&zi, c, clen, &out, &olen), 1);
  free(c);
  assert_int_equal(zs_reset(&zi), 0);
  def_init(&d2); /* the new connection's stream starts with a zlib header again */
  c = def_msg(&d2, "{\"op\":10,\"d\":2}", 15, &clen);
  assert_int_equal(zs_feed(&zi, c, clen, &out, &olen), 1);
  assert_string_equal(out, "{\"op\":10,\"d\":2}");
  free(c);
  deflateEnd(&d1.z);
  deflateEnd(&d2.z);
  zs_free(&zi);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(messages_share_one_context),
      cmocka_unit_test(fragments_are_collected_until_the_suffix),
      cmocka_unit_test(a_multi_megabyte_ready_inflates),
      cmocka_unit_test(corrupt_and_oversized_input_fail),
      cmocka_unit_test(a_new_connection_needs_a_new_context),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
