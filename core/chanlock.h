/* Per-key FIFO mutual exclusion, pure logic (no loop, no Lua, no clock).
 *
 * A key (any byte string, e.g. a channel id) is held by at most one request at a time, or
 * by at most `slots` with chanlock_acquire_slots (a counting semaphore: at most N turns
 * at once); the others queue in arrival order, and a free slot is never taken past a
 * waiter. Release hands the key straight to the oldest waiter
 * (no barging) and returns it: the caller wakes that waiter later, from its ready queue,
 * never inline. A key that nobody holds or waits for has no entry: the table only keeps
 * memory for keys in use, so 10,000 keys used once leave nothing behind.
 *
 * The caller owns the chanlock_req storage (embedded in its guard object); a request is
 * IDLE, WAITING (queued) or HELD. `owner` identifies who asks (a task): the same owner
 * acquiring a key it already holds gets -EDEADLK instead of a deadlock. */
#ifndef CC_CHANLOCK_H
#define CC_CHANLOCK_H

#include <stdbool.h>
#include <stddef.h>

enum chanlock_req_state { CHANLOCK_IDLE, CHANLOCK_WAITING, CHANLOCK_HELD };

typedef struct chanlock_entry chanlock_entry;

typedef struct chanlock_req {
  struct chanlock_req *next, *prev; /* in the entry's wait queue while WAITING */
  chanlock_entry *entry;            /* the key's entry while WAITING or HELD */
  const void *owner;
  enum chanlock_req_state state;
  void *data;                       /* the caller's (e.g. the task to wake) */
} chanlock_req;

typedef struct chanlock {
  chanlock_entry **buckets;
  size_t nbuckets; /* 0 or a power of two */
  size_t count;    /* keys with an entry (held or waited for) */
  unsigned long long seed;
} chanlock;

/* acquire() results besides negative errors. */
#define CHANLOCK_GRANTED 0
#define CHANLOCK_QUEUED 1

void chanlock_init(chanlock *cl);
/* Frees every entry; requests still WAITING or HELD become IDLE. */
void chanlock_close(chanlock *cl);

void chanlock_req_init(chanlock_req *r, const void *owner, void *data);
/* Returns CHANLOCK_GRANTED (r now HELD), CHANLOCK_QUEUED (r WAITING, at the tail), or
 * -EDEADLK (owner already holds key), -EBUSY (r not IDLE), -ENOMEM. */
int chanlock_acquire(chanlock *cl, chanlock_req *r, const char *key, size_t keylen);
/* The same with up to `slots` holders at once (slots >= 1, else -EINVAL). Each request
 * sets the key's capacity, so a changed setting applies from the next acquire on. */
int chanlock_acquire_slots(chanlock *cl, chanlock_req *r, const char *key, size_t keylen,
                           size_t slots);
/* r must be HELD. Hands the freed slot to the oldest waiter, which becomes HELD and is
 * returned (the caller wakes it); when nobody holds or waits the key's entry is freed and
 * NULL returned. */
chanlock_req *chanlock_release(chanlock *cl, chanlock_req *r);
/* Takes a WAITING r out of the queue (timeout, cancel); r becomes IDLE. Returns 0, or
 * -EINVAL when r was not waiting. */
int chanlock_remove(chanlock *cl, chanlock_req *r);
/* What the key looks like now; a key without an entry is not held, 0 waiting. */
void chanlock_state(const chanlock *cl, const char *key, size_t keylen, bool *held,
                    size_t *waiting);
/* The request holding key (the latest granted, when it has several slots), or NULL. */
chanlock_req *chanlock_holder(const chanlock *cl, const char *key, size_t keylen);
/* How many requests hold key now. */
size_t chanlock_holders(const chanlock *cl, const char *key, size_t keylen);
/* Keys with an entry (for tests: 0 once everything is released). */
size_t chanlock_count(const chanlock *cl);
/* Allocated bucket slots (for tests: 0 once everything is released). */
size_t chanlock_buckets(const chanlock *cl);

#endif
