/* zlib-stream inflation; see inflate.h. */
#include "inflate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX ((size_t)64 << 20)

static const unsigned char suffix[4] = {0x00, 0x00, 0xff, 0xff};

static int start(zs_inflater *zi) {
  memset(&zi->z, 0, sizeof zi->z);
  if (inflateInit(&zi->z) != Z_OK) return -ENOMEM;
  zi->ready = 1;
  zi->len = 0;
  zi->tail_len = 0;
  zi->done = 0;
  return 0;
}

int zs_init(zs_inflater *zi, size_t max_message) {
  memset(zi, 0, sizeof *zi);
  zi->max = max_message ? max_message : DEFAULT_MAX;
  return start(zi);
}

int zs_reset(zs_inflater *zi) {
  if (zi->ready) inflateEnd(&zi->z);
  zi->ready = 0;
  return start(zi);
}

void zs_free(zs_inflater *zi) {
  if (zi->ready) inflateEnd(&zi->z);
  zi->ready = 0;
  free(zi->out);
  zi->out = NULL;
  zi->len = zi->cap = 0;
}

static void remember_tail(zs_inflater *zi, const unsigned char *p, size_t n) {
  if (n >= 4) {
    memcpy(zi->tail, p + n - 4, 4);
    zi->tail_len = 4;
    return;
  }
  size_t keep = zi->tail_len + n > 4 ? 4 - n : zi->tail_len;
  memmove(zi->tail, zi->tail + zi->tail_len - keep, keep);
  memcpy(zi->tail + keep, p, n);
  zi->tail_len = keep + n;
}

static int fail(zs_inflater *zi, int err) {
  if (zi->ready) inflateEnd(&zi->z);
  zi->ready = 0;
  return err;
}

int zs_feed(zs_inflater *zi, const void *data, size_t len, const char **msg,
            size_t *msg_len) {
  if (!zi->ready) return -EINVAL;
  if (zi->done) {
    zi->len = 0;
    zi->tail_len = 0;
    zi->done = 0;
  }
  const unsigned char *in = data;
  if (len == 0) return 0;
  remember_tail(zi, in, len);
  while (len > 0) {
    /* zlib counts in uInt: feed huge inputs in slices. */
    uInt slice = len > (1u << 30) ? (1u << 30) : (uInt)len;
    zi->z.next_in = (unsigned char *)(uintptr_t)in;
    zi->z.avail_in = slice;
    for (;;) {
      if (zi->cap - zi->len < 4096 + 1) {
        size_t cap = zi->cap ? zi->cap * 2 : 16384;
        if (cap > zi->max + 4096 + 1) cap = zi->max + 4096 + 1;
        if (cap <= zi->len + 1) return fail(zi, -EMSGSIZE);
        unsigned char *n = realloc(zi->out, cap);
        if (!n) return fail(zi, -ENOMEM);
        zi->out = n;
        zi->cap = cap;
      }
      size_t room = zi->cap - zi->len - 1; /* keep one byte for the NUL */
      zi->z.next_out = zi->out + zi->len;
      zi->z.avail_out = room > (1u << 30) ? (1u << 30) : (uInt)room;
      uInt before = zi->z.avail_out;
      int rc = inflate(&zi->z, Z_SYNC_FLUSH);
      zi->len += before - zi->z.avail_out;
      if (zi->len > zi->max) return fail(zi, -EMSGSIZE);
      if (rc == Z_STREAM_END) {
        /* Discord never ends the stream; anything after an end is corrupt. */
        if (zi->z.avail_in > 0) return fail(zi, -EINVAL);
        break;
      }
      if (rc == Z_BUF_ERROR) {
        if (zi->z.avail_in == 0) break; /* no input left: wait for more */
        if (zi->z.avail_out == 0) continue; /* needs room */
        return fail(zi, -EINVAL);
      }
      if (rc != Z_OK) return fail(zi, rc == Z_MEM_ERROR ? -ENOMEM : -EINVAL);
      if (zi->z.avail_in == 0 && zi->z.avail_out > 0) break;
    }
    in += slice;
    len -= slice;
  }
  if (zi->tail_len == 4 && memcmp(zi->tail, suffix, 4) == 0) {
    if (!zi->out) {
      zi->out = malloc(1);
      if (!zi->out) return fail(zi, -ENOMEM);
      zi->cap = 1;
    }
    zi->out[zi->len] = '\0';
    *msg = (const char *)zi->out;
    *msg_len = zi->len;
    zi->done = 1;
    return 1;
  }
  return 0;
}
