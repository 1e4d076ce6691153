/* Per-key FIFO locks, fed requests directly (no loop, no Lua). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "chanlock.h"

#define K(s) (s), strlen(s)

static int setup(void **state) {
  static chanlock cl;
  chanlock_init(&cl);
  *state = &cl;
  return 0;
}

static int teardown(void **state) {
  chanlock *cl = *state;
  assert_int_equal(chanlock_count(cl), 0);
  chanlock_close(cl);
  return 0;
}

static void test_free_key_granted_at_once(void **state) {
  chanlock *cl = *state;
  char a = 0, b = 0;
  chanlock_req ra, rb;
  chanlock_req_init(&ra, &a, NULL);
  chanlock_req_init(&rb, &b, NULL);
  assert_int_equal(chanlock_acquire(cl, &ra, K("chan-1")), CHANLOCK_GRANTED);
  assert_int_equal(ra.state, CHANLOCK_HELD);
  /* another key is independent */
  assert_int_equal(chanlock_acquire(cl, &rb, K("chan-2")), CHANLOCK_GRANTED);
  bool held;
  size_t waiting;
  chanlock_state(cl, K("chan-1"), &held, &waiting);
  assert_true(held);
  assert_int_equal(waiting, 0);
  assert_ptr_equal(chanlock_holder(cl, K("chan-2"))->owner, &b);
  assert_null(chanlock_release(cl, &ra));
  assert_null(chanlock_release(cl, &rb));
  chanlock_state(cl, K("chan-1"), &held, &waiting);
  assert_false(held);
  assert_int_equal(waiting, 0);
  /* a key is bytes, not a C string: "a\0b" and "a\0c" differ */
  chanlock_req_init(&ra, &a, NULL);
  chanlock_req_init(&rb, &b, NULL);
  assert_int_equal(chanlock_acquire(cl, &ra, "a\0b", 3), CHANLOCK_GRANTED);
  assert_int_equal(chanlock_acquire(cl, &rb, "a\0c", 3), CHANLOCK_GRANTED);
  chanlock_release(cl, &ra);
  chanlock_release(cl, &rb);
}

static void test_fifo_100_waiters(void **state) {
  chanlock *cl = *state;
  enum { N = 100 };
  char owners[N + 1] = {0};
  chanlock_req reqs[N + 1];
  for (int i = 0; i <= N; i++)
    chanlock_req_init(&reqs[i], &owners[i], &owners[i]);
  assert_int_equal(chanlock_acquire(cl, &reqs[0], K("c")), CHANLOCK_GRANTED);
  for (int i = 1; i <= N; i++) {
    assert_int_equal(chanlock_acquire(cl, &reqs[i], K("c")), CHANLOCK_QUEUED);
    assert_int_equal(reqs[i].state, CHANLOCK_WAITING);
  }
  size_t waiting;
  bool held;
  chanlock_state(cl, K("c"), &held, &waiting);
  assert_true(held);
  assert_int_equal(waiting, N);
  /* each release hands the key to the oldest waiter, in arrival order */
  chanlock_req *cur = &reqs[0];
  for (int i = 1; i <= N; i++) {
    chanlock_req *next = chanlock_release(cl, cur);
    assert_ptr_equal(next, &reqs[i]);
    assert_ptr_equal(next->data, &owners[i]);
    assert_int_equal(next->state, CHANLOCK_HELD);
    assert_int_equal(cur->state, CHANLOCK_IDLE);
    assert_ptr_equal(chanlock_holder(cl, K("c"))->owner, &owners[i]);
    chanlock_state(cl, K("c"), &held, &waiting);
    assert_true(held);
    assert_int_equal(waiting, (size_t)(N - i));
    cur = next;
  }
  assert_null(chanlock_release(cl, cur));
  assert_int_equal(chanlock_count(cl), 0);
}

static void test_timeout_and_cancel_while_waiting(void **state) {
  chanlock *cl = *state;
  char o[5] = {0};
  chanlock_req r[5];
  for (int i = 0; i < 5; i++)
    chanlock_req_init(&r[i], &o[i], NULL);
  assert_int_equal(chanlock_acquire(cl, &r[0], K("c")), CHANLOCK_GRANTED);
  for (int i = 1; i < 5; i++)
    assert_int_equal(chanlock_acquire(cl, &r[i], K("c")), CHANLOCK_QUEUED);
  /* r[2] times out (middle), r[4] is cancelled (tail), r[1] too (head) */
  assert_int_equal(chanlock_remove(cl, &r[2]), 0);
  assert_int_equal(r[2].state, CHANLOCK_IDLE);
  assert_int_equal(chanlock_remove(cl, &r[2]), -EINVAL); /* not waiting any more */
  assert_int_equal(chanlock_remove(cl, &r[4]), 0);
  assert_int_equal(chanlock_remove(cl, &r[1]), 0);
  size_t waiting;
  chanlock_state(cl, K("c"), NULL, &waiting);
  assert_int_equal(waiting, 1);
  /* only r[3] is left to get the key */
  chanlock_req *next = chanlock_release(cl, &r[0]);
  assert_ptr_equal(next, &r[3]);
  /* a removed request can queue again, at the tail */
  assert_int_equal(chanlock_acquire(cl, &r[2], K("c")), CHANLOCK_QUEUED);
  assert_ptr_equal(chanlock_release(cl, &r[3]), &r[2]);
  assert_null(chanlock_release(cl, &r[2]));
  /* removing the only waiter leaves the key held, with nobody waiting */
  assert_int_equal(chanlock_acquire(cl, &r[0], K("d")), CHANLOCK_GRANTED);
  assert_int_equal(chanlock_acquire(cl, &r[1], K("d")), CHANLOCK_QUEUED);
  assert_int_equal(chanlock_remove(cl, &r[1]), 0);
  bool held;
  chanlock_state(cl, K("d"), &held, &waiting);
  assert_true(held);
  assert_int_equal(waiting, 0);
  assert_null(chanlock_release(cl, &r[0]));
}

static void test_release_by_owner_that_errors(void **state) {
  /* The owner fails half-way: its cleanup path releases (guard close, task end); the
   * waiter behind it must get the key, and a second release is harmless. */
  chanlock *cl = *state;
  char a = 0, b = 0;
  chanlock_req ra, rb;
  chanlock_req_init(&ra, &a, NULL);
  chanlock_req_init(&rb, &b, NULL);
  assert_int_equal(chanlock_acquire(cl, &ra, K("c")), CHANLOCK_GRANTED);
  assert_int_equal(chanlock_acquire(cl, &rb, K("c")), CHANLOCK_QUEUED);
  assert_ptr_equal(chanlock_release(cl, &ra), &rb);
  assert_null(chanlock_release(cl, &ra)); /* double release: no effect */
  assert_ptr_equal(chanlock_holder(cl, K("c"))->owner, &b);
  assert_null(chanlock_release(cl, &rb));
}

static void test_same_owner_reacquire_is_error(void **state) {
  chanlock *cl = *state;
  char a = 0, b = 0;
  chanlock_req r1, r2, r3;
  chanlock_req_init(&r1, &a, NULL);
  chanlock_req_init(&r2, &a, NULL);
  chanlock_req_init(&r3, &b, NULL);
  assert_int_equal(chanlock_acquire(cl, &r1, K("c")), CHANLOCK_GRANTED);
  assert_int_equal(chanlock_acquire(cl, &r2, K("c")), -EDEADLK);
  assert_int_equal(r2.state, CHANLOCK_IDLE);
  assert_int_equal(chanlock_acquire(cl, &r1, K("c")), -EBUSY); /* a request in use */
  /* the same owner may hold other keys */
  assert_int_equal(chanlock_acquire(cl, &r2, K("other")), CHANLOCK_GRANTED);
  assert_int_equal(chanlock_acquire(cl, &r3, K("c")), CHANLOCK_QUEUED);
  assert_ptr_equal(chanlock_release(cl, &r1), &r3);
  assert_null(chanlock_release(cl, &r2));
  assert_null(chanlock_release(cl, &r3));
}

static void test_idle_cleanup_10000_keys(void **state) {
  chanlock *cl = *state;
  enum { N = 10000 };
  static chanlock_req reqs[N];
  char owner = 0;
  char key[32];
  for (int i = 0; i < N; i++) {
    chanlock_req_init(&reqs[i], &owner, NULL);
    int n = snprintf(key, sizeof key, "%d", 1000000 + i);
    assert_int_equal(chanlock_acquire(cl, &reqs[i], key, (size_t)n), CHANLOCK_GRANTED);
  }
  assert_int_equal(chanlock_count(cl), N);
  assert_true(chanlock_buckets(cl) >= N);
  for (int i = 0; i < N; i++) {
    assert_null(chanlock_release(cl, &reqs[i]));
    if (i == N / 2) /* shrinking keeps the rest findable */
      assert_ptr_equal(chanlock_holder(cl, K("1009999"))->owner, &owner);
  }
  assert_int_equal(chanlock_count(cl), 0);
  assert_int_equal(chanlock_buckets(cl), 0); /* nothing left allocated */
  /* and one key used once */
  chanlock_req r;
  chanlock_req_init(&r, &owner, NULL);
  assert_int_equal(chanlock_acquire(cl, &r, K("x")), CHANLOCK_GRANTED);
  assert_null(chanlock_release(cl, &r));
  assert_int_equal(chanlock_buckets(cl), 0);
}

static void test_close_with_keys_in_use(void **state) {
  chanlock cl;
  chanlock_init(&cl);
  char a = 0, b = 0;
  chanlock_req ra, rb;
  chanlock_req_init(&ra, &a, NULL);
  chanlock_req_init(&rb, &b, NULL);
  assert_int_equal(chanlock_acquire(&cl, &ra, K("c")), CHANLOCK_GRANTED);
  assert_int_equal(chanlock_acquire(&cl, &rb, K("c")), CHANLOCK_QUEUED);
  chanlock_close(&cl);
  assert_int_equal(ra.state, CHANLOCK_IDLE);
  assert_int_equal(rb.state, CHANLOCK_IDLE);
  assert_null(chanlock_release(&cl, &ra));
}

/* A key with slots is a FIFO counting semaphore: up to N holders, the rest queue, and
 * a freed slot goes to the oldest waiter, never to a newcomer. */
static void test_slots(void **state) {
  chanlock *cl = *state;
  char owners[5];
  chanlock_req r[5];
  for (int i = 0; i < 5; i++) chanlock_req_init(&r[i], &owners[i], NULL);
  assert_int_equal(chanlock_acquire_slots(cl, &r[0], K("runs"), 2), CHANLOCK_GRANTED);
  assert_int_equal(chanlock_acquire_slots(cl, &r[1], K("runs"), 2), CHANLOCK_GRANTED);
  assert_int_equal(chanlock_acquire_slots(cl, &r[2], K("runs"), 2), CHANLOCK_QUEUED);
  assert_int_equal(chanlock_acquire_slots(cl, &r[3], K("runs"), 2), CHANLOCK_QUEUED);
  assert_int_equal(chanlock_holders(cl, K("runs")), 2);
  /* the same owner twice is still an error, whichever slot it holds */
  chanlock_req again;
  chanlock_req_init(&again, &owners[0], NULL);
  assert_int_equal(chanlock_acquire_slots(cl, &again, K("runs"), 2), -EDEADLK);
  assert_int_equal(chanlock_acquire_slots(cl, &again, K("runs"), 0), -EINVAL);
  /* a release hands the slot to the oldest waiter */
  assert_ptr_equal(chanlock_release(cl, &r[1]), &r[2]);
  assert_int_equal(r[2].state, CHANLOCK_HELD);
  /* a newcomer does not pass r[3], even when a slot frees while r[3] is granted */
  assert_int_equal(chanlock_acquire_slots(cl, &r[4], K("runs"), 2), CHANLOCK_QUEUED);
  assert_ptr_equal(chanlock_release(cl, &r[0]), &r[3]);
  /* the capacity lowered to 1 by the latest request: a release frees without a grant */
  chanlock_remove(cl, &r[4]);
  chanlock_req_init(&r[4], &owners[4], NULL);
  assert_int_equal(chanlock_acquire_slots(cl, &r[4], K("runs"), 1), CHANLOCK_QUEUED);
  assert_null(chanlock_release(cl, &r[2]));
  assert_ptr_equal(chanlock_release(cl, &r[3]), &r[4]);
  assert_int_equal(chanlock_holders(cl, K("runs")), 1);
  assert_null(chanlock_release(cl, &r[4]));
  assert_int_equal(chanlock_holders(cl, K("runs")), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_free_key_granted_at_once, setup, teardown),
    cmocka_unit_test_setup_teardown(test_fifo_100_waiters, setup, teardown),
    cmocka_unit_test_setup_teardown(test_timeout_and_cancel_while_waiting, setup, teardown),
    cmocka_unit_test_setup_teardown(test_release_by_owner_that_errors, setup, teardown),
    cmocka_unit_test_setup_teardown(test_same_owner_reacquire_is_error, setup, teardown),
    cmocka_unit_test_setup_teardown(test_idle_cleanup_10000_keys, setup, teardown),
    cmocka_unit_test_setup_teardown(test_slots, setup, teardown),
    cmocka_unit_test(test_close_with_keys_in_use),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
