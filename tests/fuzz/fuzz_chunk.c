// fuzz-sources: core/chunk.c
/* libFuzzer target: the chunking rules (tests/support/chunk_check.h) on arbitrary bytes.
 * The first two bytes choose the limit (1..512, or the default 2000 when both are 0xFF),
 * the rest is the text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../support/chunk_check.h"
#include "chunk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  size_t limit = ((size_t)data[0] << 8 | data[1]);
  limit = limit == 0xFFFF ? CHUNK_DEFAULT_LIMIT : 1 + limit % 512;
  const char *text = (const char *)data + 2;
  size_t n = size - 2;
  struct chunk_result r;
  if (chunk_split(text, n, limit, &r) != 0)
    abort();
  const char *err = chunk_check(text, n, limit, &r);
  if (err) {
    fprintf(stderr, "limit %zu: %s\n", limit, err);
    abort();
  }
  chunk_result_free(&r);
  return 0;
}
