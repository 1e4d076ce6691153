/* Per-key FIFO locks: a chained hash table of the keys in use, each entry with its
 * holders and a doubly linked queue of waiters (a request is in one list or the other, so
 * both use its next/prev links). Entries exist only while a key is held (a key with
 * waiters is always held, since release hands it straight on), and the bucket array
 * shrinks as keys go idle and is freed when none is left. */
#include "chanlock.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIN_BUCKETS 16

struct chanlock_entry {
  chanlock_entry *chain;
  uint64_t hash;
  chanlock_req *holders;     /* nheld of them, at most slots */
  size_t nheld, slots;
  chanlock_req *head, *tail; /* waiters, oldest first */
  size_t waiting;
  size_t keylen;
  char key[];
};

static uint64_t hash_key(const chanlock *cl, const char *key, size_t len) {
  uint64_t h = 1469598103934665603ULL ^ cl->seed; /* FNV-1a, seeded per table */
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)key[i];
    h *= 1099511628211ULL;
  }
  return h ^ (h >> 29);
}

void chanlock_init(chanlock *cl) {
  memset(cl, 0, sizeof *cl);
  cl->seed = (unsigned long long)(uintptr_t)cl * 0x9E3779B97F4A7C15ULL;
}

void chanlock_req_init(chanlock_req *r, const void *owner, void *data) {
  memset(r, 0, sizeof *r);
  r->owner = owner;
  r->data = data;
  r->state = CHANLOCK_IDLE;
}

static chanlock_entry *find(const chanlock *cl, const char *key, size_t len, uint64_t h) {
  if (cl->nbuckets == 0)
    return NULL;
  for (chanlock_entry *e = cl->buckets[h & (cl->nbuckets - 1)]; e; e = e->chain)
    if (e->hash == h && e->keylen == len && memcmp(e->key, key, len) == 0)
      return e;
  return NULL;
}

/* Rehashes into n buckets (n == 0 frees the array). Returns -ENOMEM, leaving the table
 * as it was. */
static int resize(chanlock *cl, size_t n) {
  chanlock_entry **nb = NULL;
  if (n > 0) {
    nb = calloc(n, sizeof *nb);
    if (!nb)
      return -ENOMEM;
  }
  for (size_t i = 0; i < cl->nbuckets; i++) {
    chanlock_entry *e = cl->buckets[i];
    while (e) {
      chanlock_entry *next = e->chain;
      size_t b = e->hash & (n - 1);
      e->chain = nb[b];
      nb[b] = e;
      e = next;
    }
  }
  free(cl->buckets);
  cl->buckets = nb;
  cl->nbuckets = n;
  return 0;
}

static void unlink_entry(chanlock *cl, chanlock_entry *e) {
  chanlock_entry **p = &cl->buckets[e->hash & (cl->nbuckets - 1)];
  while (*p != e)
    p = &(*p)->chain;
  *p = e->chain;
  free(e);
  cl->count--;
  if (cl->count == 0)
    resize(cl, 0); /* freeing cannot fail */
  else if (cl->nbuckets > MIN_BUCKETS && cl->count < cl->nbuckets / 8)
    (void)resize(cl, cl->nbuckets / 4); /* on -ENOMEM the larger array simply stays */
}

static void add_holder(chanlock_entry *e, chanlock_req *r) {
  r->prev = NULL;
  r->next = e->holders;
  if (e->holders)
    e->holders->prev = r;
  e->holders = r;
  e->nheld++;
  r->entry = e;
  r->state = CHANLOCK_HELD;
}

int chanlock_acquire(chanlock *cl, chanlock_req *r, const char *key, size_t keylen) {
  return chanlock_acquire_slots(cl, r, key, keylen, 1);
}

int chanlock_acquire_slots(chanlock *cl, chanlock_req *r, const char *key, size_t keylen,
                           size_t slots) {
  if (r->state != CHANLOCK_IDLE)
    return -EBUSY;
  if (slots == 0)
    return -EINVAL;
  uint64_t h = hash_key(cl, key, keylen);
  chanlock_entry *e = find(cl, key, keylen, h);
  if (e) {
    for (chanlock_req *hr = e->holders; hr; hr = hr->next)
      if (hr->owner == r->owner)
        return -EDEADLK;
    e->slots = slots; /* the latest request says how many may hold it */
    if (e->nheld < e->slots && !e->head) {
      add_holder(e, r);
      return CHANLOCK_GRANTED;
    }
    r->next = NULL;
    r->prev = e->tail;
    if (e->tail)
      e->tail->next = r;
    else
      e->head = r;
    e->tail = r;
    e->waiting++;
    r->entry = e;
    r->state = CHANLOCK_WAITING;
    return CHANLOCK_QUEUED;
  }
  if (cl->nbuckets == 0 || cl->count >= cl->nbuckets) { /* load factor <= 1 */
    int rc = resize(cl, cl->nbuckets ? cl->nbuckets * 2 : MIN_BUCKETS);
    if (rc < 0)
      return rc;
  }
  e = malloc(sizeof *e + keylen + 1);
  if (!e)
    return -ENOMEM;
  memset(e, 0, sizeof *e);
  e->hash = h;
  e->keylen = keylen;
  memcpy(e->key, key, keylen);
  e->key[keylen] = '\0';
  e->slots = slots;
  size_t b = h & (cl->nbuckets - 1);
  e->chain = cl->buckets[b];
  cl->buckets[b] = e;
  cl->count++;
  add_holder(e, r);
  return CHANLOCK_GRANTED;
}

chanlock_req *chanlock_release(chanlock *cl, chanlock_req *r) {
  if (r->state != CHANLOCK_HELD)
    return NULL;
  chanlock_entry *e = r->entry;
  if (r->prev)
    r->prev->next = r->next;
  else
    e->holders = r->next;
  if (r->next)
    r->next->prev = r->prev;
  e->nheld--;
  r->next = r->prev = NULL;
  r->state = CHANLOCK_IDLE;
  r->entry = NULL;
  chanlock_req *next = e->head;
  if (!next) {
    if (e->nheld == 0)
      unlink_entry(cl, e);
    return NULL;
  }
  if (e->nheld >= e->slots) /* the capacity was lowered meanwhile */
    return NULL;
  e->head = next->next;
  if (e->head)
    e->head->prev = NULL;
  else
    e->tail = NULL;
  e->waiting--;
  add_holder(e, next);
  return next;
}

int chanlock_remove(chanlock *cl, chanlock_req *r) {
  if (r->state != CHANLOCK_WAITING)
    return -EINVAL;
  chanlock_entry *e = r->entry;
  if (r->prev)
    r->prev->next = r->next;
  else
    e->head = r->next;
  if (r->next)
    r->next->prev = r->prev;
  else
    e->tail = r->prev;
  e->waiting--;
  r->next = r->prev = NULL;
  r->entry = NULL;
  r->state = CHANLOCK_IDLE;
  (void)cl; /* a waited-for key is always held: its entry stays */
  return 0;
}

void chanlock_state(const chanlock *cl, const char *key, size_t keylen, bool *held,
                    size_t *waiting) {
  const chanlock_entry *e = find(cl, key, keylen, hash_key(cl, key, keylen));
  if (held)
    *held = e != NULL;
  if (waiting)
    *waiting = e ? e->waiting : 0;
}

chanlock_req *chanlock_holder(const chanlock *cl, const char *key, size_t keylen) {
  const chanlock_entry *e = find(cl, key, keylen, hash_key(cl, key, keylen));
  return e ? e->holders : NULL;
}

size_t chanlock_holders(const chanlock *cl, const char *key, size_t keylen) {
  const chanlock_entry *e = find(cl, key, keylen, hash_key(cl, key, keylen));
  return e ? e->nheld : 0;
}

size_t chanlock_count(const chanlock *cl) { return cl->count; }

size_t chanlock_buckets(const chanlock *cl) { return cl->nbuckets; }

void chanlock_close(chanlock *cl) {
  for (size_t i = 0; i < cl->nbuckets; i++) {
    chanlock_entry *e = cl->buckets[i];
    while (e) {
      chanlock_entry *next = e->chain;
      for (chanlock_req *r = e->head; r;) {
        chanlock_req *rn = r->next;
        r->next = r->prev = NULL;
        r->entry = NULL;
        r->state = CHANLOCK_IDLE;
        r = rn;
      }
      for (chanlock_req *r = e->holders; r;) {
        chanlock_req *rn = r->next;
        r->next = r->prev = NULL;
        r->entry = NULL;
        r->state = CHANLOCK_IDLE;
        r = rn;
      }
      free(e);
      e = next;
    }
  }
  free(cl->buckets);
  cl->buckets = NULL;
  cl->nbuckets = 0;
  cl->count = 0;
}
