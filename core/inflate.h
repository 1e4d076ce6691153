/* zlib-stream decompression for the gateway: one context per connection, shared by all
 * its messages. Each websocket message (possibly in several fragments) is one or more
 * zlib chunks ending with a sync flush, i.e. with the bytes 00 00 ff ff; a message is
 * complete when the bytes fed so far end with that suffix. Pure: no I/O. */
#ifndef CC_INFLATE_H
#define CC_INFLATE_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

typedef struct zs_inflater {
  z_stream z;
  int ready;           /* z initialised */
  unsigned char *out;  /* the decompressed message being assembled */
  size_t len, cap, max;
  unsigned char tail[4]; /* the last bytes fed, to spot the suffix across fragments */
  size_t tail_len;
  int done;            /* the last feed completed a message: the next one starts over */
} zs_inflater;

/* max_message: largest decompressed message accepted (0: 64 MiB). 0 or -ENOMEM. */
int zs_init(zs_inflater *zi, size_t max_message);
/* Feeds received bytes (one fragment). Returns 1 when a message is complete (then
 * *msg / *msg_len hold it, NUL-terminated, valid until the next feed or reset), 0 when
 * more bytes are needed, -EINVAL for a corrupt stream, -EMSGSIZE when the message is too
 * large, -ENOMEM. After an error the context is unusable until zs_reset. */
int zs_feed(zs_inflater *zi, const void *data, size_t len, const char **msg,
            size_t *msg_len);
/* A new connection: a fresh zlib context. 0 or -ENOMEM. */
int zs_reset(zs_inflater *zi);
void zs_free(zs_inflater *zi);

#endif
