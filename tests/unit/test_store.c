/* core/store.c without Lua: open and its errors, statements with every parameter type,
 * rows, one-statement prepare, transactions, and close finalizing what was left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

static char *make_tmpdir(void) {
  char *dir = strdup("/tmp/store-test-XXXXXX");
  assert_non_null(mkdtemp(dir));
  return dir;
}

static void remove_tmpdir(char *dir) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
  free(dir);
}

static store *open_memory(void) {
  store *db = NULL;
  char err[256];
  assert_int_equal(store_open(":memory:", NULL, &db, err, sizeof err), 0);
  assert_non_null(db);
  return db;
}

static void test_types_round_trip(void **state) {
  (void)state;
  store *db = open_memory();
  assert_int_equal(store_exec(db, "CREATE TABLE t (i INTEGER, r REAL, s TEXT, n)"), 0);
  store_stmt *st;
  const char *ins = "INSERT INTO t VALUES (?, ?, ?, ?)";
  assert_int_equal(store_prepare(db, ins, strlen(ins), &st), 0);
  assert_int_equal(store_param_count(st), 4);
  assert_int_equal(store_bind_int(st, 1, INT64_MAX), 0);
  assert_int_equal(store_bind_real(st, 2, 0.5), 0);
  assert_int_equal(store_bind_text(st, 3, "a\0b", 3), 0);
  assert_int_equal(store_bind_null(st, 4), 0);
  assert_int_equal(store_bind_int(st, 5, 1), STORE_EMISUSE); /* no such parameter */
  assert_int_equal(store_step(st), STORE_DONE);
  store_finalize(st);
  assert_int_equal(store_changes(db), 1);
  assert_int_equal(store_last_insert_id(db), 1);

  const char *sel = "SELECT i, r, s AS text, n FROM t";
  assert_int_equal(store_prepare(db, sel, strlen(sel), &st), 0);
  assert_int_equal(store_step(st), STORE_ROW);
  assert_int_equal(store_column_count(st), 4);
  assert_string_equal(store_column_name(st, 2), "text");
  assert_int_equal(store_column_type(st, 0), STORE_INTEGER);
  assert_true(store_column_int(st, 0) == INT64_MAX);
  assert_int_equal(store_column_type(st, 1), STORE_REAL);
  assert_true(store_column_real(st, 1) == 0.5);
  size_t len;
  const char *s = store_column_text(st, 2, &len);
  assert_int_equal(len, 3);
  assert_memory_equal(s, "a\0b", 3);
  assert_int_equal(store_column_type(st, 3), STORE_NULL);
  assert_int_equal(store_step(st), STORE_DONE);
  /* reset keeps it usable */
  assert_int_equal(store_reset(st), 0);
  assert_int_equal(store_step(st), STORE_ROW);
  store_finalize(st);
  store_close(db);
}

static void test_errors(void **state) {
  (void)state;
  store *db = open_memory();
  store_stmt *st = (store_stmt *)1;
  const char *bad = "SELECT * FROM missing";
  assert_int_equal(store_prepare(db, bad, strlen(bad), &st), STORE_ESQL);
  assert_null(st);
  assert_string_equal(store_errmsg(db), "no such table: missing");
  const char *two = "SELECT 1; SELECT 2";
  assert_int_equal(store_prepare(db, two, strlen(two), &st), STORE_EINVAL);
  const char *trailer = "SELECT 1; -- fine\n /* also */ ;";
  assert_int_equal(store_prepare(db, trailer, strlen(trailer), &st), 0);
  store_finalize(st);
  assert_int_equal(store_prepare(db, "  ", 2, &st), STORE_EINVAL);

  assert_int_equal(store_exec(db, "CREATE TABLE u (k TEXT PRIMARY KEY)"), 0);
  assert_int_equal(store_exec(db, "INSERT INTO u VALUES ('a')"), 0);
  assert_int_equal(store_exec(db, "INSERT INTO u VALUES ('a')"), STORE_ECONSTRAINT);
  assert_string_equal(store_errmsg(db), "UNIQUE constraint failed: u.k");
  const char *ins = "INSERT INTO u VALUES (?)";
  assert_int_equal(store_prepare(db, ins, strlen(ins), &st), 0);
  assert_int_equal(store_bind_text(st, 1, "a", 1), 0);
  assert_int_equal(store_step(st), STORE_ECONSTRAINT);
  assert_string_equal(store_errmsg(db), "UNIQUE constraint failed: u.k");
  store_finalize(st);
  assert_string_equal(store_strerror(STORE_EBUSY), "busy");
  store_close(db);
}

static void test_open_errors(void **state) {
  (void)state;
  char *dir = make_tmpdir();
  char path[512], err[512];
  store *db = (store *)1;
  snprintf(path, sizeof path, "%s/missing/x.db", dir);
  assert_int_equal(store_open(path, NULL, &db, err, sizeof err), STORE_ECANTOPEN);
  assert_null(db);
  char want[600];
  snprintf(want, sizeof want, "directory does not exist: %s/missing", dir);
  assert_string_equal(err, want);

  snprintf(path, sizeof path, "%s/junk.db", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  for (int i = 0; i < 100; i++)
    fputs("not a database at all\n", f);
  fclose(f);
  assert_int_equal(store_open(path, NULL, &db, err, sizeof err), STORE_ECORRUPT);
  assert_non_null(strstr(err, "file is not a database"));
  remove_tmpdir(dir);
}

static void test_transactions_and_wal(void **state) {
  (void)state;
  char *dir = make_tmpdir();
  char path[512], err[512];
  snprintf(path, sizeof path, "%s/x.db", dir);
  store *a, *b;
  struct store_options quick = {.busy_timeout_ms = 20};
  assert_int_equal(store_open(path, NULL, &a, err, sizeof err), 0);
  assert_int_equal(store_open(path, &quick, &b, err, sizeof err), 0);
  store_stmt *st;
  const char *mode = "PRAGMA journal_mode";
  assert_int_equal(store_prepare(a, mode, strlen(mode), &st), 0);
  assert_int_equal(store_step(st), STORE_ROW);
  assert_string_equal(store_column_text(st, 0, NULL), "wal");
  store_finalize(st);

  assert_int_equal(store_exec(a, "CREATE TABLE k (v)"), 0);
  assert_int_equal(store_begin(a), 0);
  assert_true(store_in_transaction(a));
  assert_int_equal(store_begin(a), STORE_ESQL); /* no nesting */
  assert_int_equal(store_exec(a, "INSERT INTO k VALUES (1)"), 0);
  assert_int_equal(store_begin(b), STORE_EBUSY); /* the write lock is a's */
  assert_int_equal(store_rollback(a), 0);
  assert_false(store_in_transaction(a));
  assert_int_equal(store_begin(a), 0);
  assert_int_equal(store_exec(a, "INSERT INTO k VALUES (2)"), 0);
  assert_int_equal(store_commit(a), 0);

  const char *count = "SELECT count(*), max(v) FROM k";
  assert_int_equal(store_prepare(b, count, strlen(count), &st), 0);
  assert_int_equal(store_step(st), STORE_ROW);
  assert_int_equal(store_column_int(st, 0), 1);
  assert_int_equal(store_column_int(st, 1), 2);
  /* left unfinalized on purpose: close must finalize it (ASan checks the leak) */
  store_close(b);
  store_close(a);
  store_close(NULL);
  remove_tmpdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_types_round_trip),
    cmocka_unit_test(test_errors),
    cmocka_unit_test(test_open_errors),
    cmocka_unit_test(test_transactions_and_wal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
