/* Benchmark driver for core/chunk.c.
 *   bench_chunk gen DIR            writes the inputs (mix-1m, mix-64m, pathological ones)
 *   bench_chunk run FILE [REPS]    splits FILE REPS times (default 7) at the default limit,
 *                                  prints "MBps_median chunks bytes"
 * MB is 10^6 bytes; the clock is CLOCK_MONOTONIC. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chunk.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state % n);
}

struct buf {
  char *p;
  size_t len, cap;
};
static void put(struct buf *b, const char *s, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    b->p = realloc(b->p, b->cap);
    if (!b->p)
      abort();
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}
static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

static const char *words[] = {
    "the", "function", "returns", "a", "value", "when", "called", "with", "an", "argument",
    "this", "is", "because", "of", "memory", "layout", "you", "can", "use", "instead",
    "error", "handling", "should", "be", "explicit", "here", "and", "then", "we", "check",
    "caf\xc3\xa9", "na\xc3\xafve", "r\xc3\xa9sum\xc3\xa9", "\xe2\x80\x94", "configuration",
    "`buffer`", "`len`", "`NULL`", "**important**", "[docs](https://example.com/docs)",
    "test", "file", "line", "state", "loop", "request", "response", "timeout", "retry"};
#define NWORDS (sizeof words / sizeof words[0])

static void sentence(struct buf *b) {
  int n = 8 + (int)rnd(18);
  for (int i = 0; i < n; i++) {
    const char *w = words[rnd(NWORDS)];
    if (i == 0 && w[0] >= 'a' && w[0] <= 'z') {
      char c = (char)(w[0] - 32);
      put(b, &c, 1);
      puts_(b, w + 1);
    } else {
      puts_(b, w);
    }
    puts_(b, i + 1 < n ? (rnd(12) == 0 ? ", " : " ") : (rnd(6) == 0 ? "?" : "."));
  }
}

static const char *code_lines[] = {
    "def handle(event, ctx):", "    if not event.get(\"id\"):", "        return None",
    "    result = compute(event[\"payload\"], retries=3)", "    log.info(\"done %s\", result)",
    "for (size_t i = 0; i < n; i++) {", "  total += values[i] * weight;", "}",
    "const res = await fetch(url, { method: \"POST\" });", "  if (!res.ok) throw new Error(res.status);",
    "make -j2 && ./build/app --config config.lua", "git commit -m \"fix the retry loop\"",
    "    # keep the old behaviour for callers", "", "return 0;"};
#define NCODE (sizeof code_lines / sizeof code_lines[0])
static const char *langs[] = {"python", "c", "js", "sh", "", "lua"};

/* A reply-shaped document: paragraphs, lists, headings and fenced blocks. */
static void reply(struct buf *b) {
  int blocks = 3 + (int)rnd(10);
  for (int k = 0; k < blocks; k++) {
    uint32_t kind = rnd(10);
    if (kind < 5) {
      int s = 1 + (int)rnd(5);
      for (int i = 0; i < s; i++) {
        sentence(b);
        puts_(b, i + 1 < s ? " " : "\n\n");
      }
    } else if (kind < 7) {
      int items = 2 + (int)rnd(5);
      for (int i = 0; i < items; i++) {
        puts_(b, rnd(2) ? "- " : "1. ");
        sentence(b);
        puts_(b, "\n");
      }
      puts_(b, "\n");
    } else if (kind == 7) {
      puts_(b, "## ");
      puts_(b, words[rnd(NWORDS)]);
      puts_(b, " ");
      puts_(b, words[rnd(NWORDS)]);
      puts_(b, "\n\n");
    } else {
      puts_(b, "```");
      puts_(b, langs[rnd(6)]);
      puts_(b, "\n");
      int lines = 3 + (int)rnd(40);
      for (int i = 0; i < lines; i++) {
        puts_(b, code_lines[rnd(NCODE)]);
        puts_(b, "\n");
      }
      puts_(b, "```\n\n");
    }
  }
}

static void write_file(const char *dir, const char *name, const struct buf *b) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(b->p, 1, b->len, f) != b->len || fclose(f) != 0) {
    perror(path);
    exit(1);
  }
}

static int gen(const char *dir) {
  struct buf b = {0};
  while (b.len < 1000000)
    reply(&b);
  b.len = 1000000;
  while (b.len > 0 && ((unsigned char)b.p[b.len] & 0xC0) == 0x80)
    b.len--; /* do not cut a character */
  write_file(dir, "mix-1m", &b);
  struct buf big = {0};
  for (int i = 0; i < 64; i++)
    put(&big, b.p, b.len);
  write_file(dir, "mix-64m", &big);
  free(big.p);

  b.len = 0; /* one 100 MB line */
  for (int i = 0; i < 100; i++) {
    char chunk[1000000];
    memset(chunk, 'a', sizeof chunk);
    put(&b, chunk, sizeof chunk);
  }
  write_file(dir, "one-line-100m", &b);

  b.len = 0; /* a million empty lines between words, then the same inside a block */
  for (int i = 0; i < 1000000; i++)
    puts_(&b, i % 1000 == 0 ? "word\n" : "\n");
  write_file(dir, "empty-lines-1m", &b);
  b.len = 0;
  puts_(&b, "```\n");
  for (int i = 0; i < 1000000; i++)
    puts_(&b, "\n");
  puts_(&b, "```\n");
  write_file(dir, "empty-code-lines-1m", &b);

  b.len = 0; /* ten thousand backtick runs of different lengths: 50 MB */
  for (int k = 1; k <= 10000; k++) {
    for (int i = 0; i < k; i++)
      put(&b, "`", 1);
    put(&b, " x ", 3);
  }
  write_file(dir, "backtick-runs-10k", &b);

  b.len = 0; /* fence lines longer than the limit, with code after each */
  while (b.len < 16000000) {
    puts_(&b, "```");
    for (int i = 0; i < 2500; i++)
      put(&b, "i", 1);
    puts_(&b, "\ncode line\nmore code\n```\n");
  }
  write_file(dir, "long-fence-lines", &b);
  free(b.p);
  return 0;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int run(const char *path, int reps) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return 1;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc(size > 0 ? (size_t)size : 1);
  if (!s || fread(s, 1, (size_t)size, f) != (size_t)size) {
    perror(path);
    return 1;
  }
  fclose(f);
  double *t = calloc((size_t)reps, sizeof *t);
  size_t chunks = 0;
  for (int i = 0; i < reps; i++) {
    struct chunk_result r;
    double t0 = now();
    if (chunk_split(s, (size_t)size, CHUNK_DEFAULT_LIMIT, &r) != 0)
      return 1;
    t[i] = now() - t0;
    chunks = r.count;
    chunk_result_free(&r);
  }
  qsort(t, (size_t)reps, sizeof *t, cmp);
  printf("%.1f %zu %ld\n", (double)size / 1e6 / t[reps / 2], chunks, size);
  free(t);
  free(s);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "gen") == 0)
    return gen(argv[2]);
  if (argc >= 3 && strcmp(argv[1], "run") == 0)
    return run(argv[2], argc >= 4 ? atoi(argv[3]) : 7);
  fprintf(stderr, "usage: bench_chunk gen DIR | run FILE [REPS]\n");
  return 2;
}
