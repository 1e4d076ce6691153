/* Thin, generic SQLite access: open a database file, run SQL, prepared statements with
 * bound parameters, rows, transactions. No schema knowledge; the schema belongs to its
 * users (lua/coordinator/sessions.lua).
 *
 * Durability. Every database is opened in WAL mode with synchronous=FULL:
 *   - a COMMIT returns only after its WAL frames are written and fsync'ed, so a committed
 *     transaction survives kill -9 of the process, and also an OS crash or power loss;
 *   - a process killed at any moment leaves either the whole transaction or none of it
 *     (the WAL is replayed or ignored frame-wise on the next open), never a torn one.
 * synchronous=NORMAL would already be enough against kill -9 (in WAL mode the frames
 * reach the OS page cache before COMMIT returns); FULL additionally survives power loss
 * at the price of one fsync per commit, which for one commit per Claude turn is nothing.
 *
 * Calls are synchronous. Writers wait up to the busy timeout for another connection's
 * lock (STORE_EBUSY after that). Nothing here is thread-safe beyond what SQLite gives one
 * connection used from one thread.
 *
 * Errors: functions return 0 (or STORE_ROW/STORE_DONE for store_step) or a negative
 * STORE_E* code; store_errmsg() gives SQLite's message for the last failure on that
 * connection. */
#ifndef CC_STORE_H
#define CC_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct store store;
typedef struct store_stmt store_stmt;

enum {
  STORE_DONE = 0, /* store_step: the statement has finished */
  STORE_ROW = 1,  /* store_step: a row is available */

  STORE_EINVAL = -1,      /* bad argument to this API (NULL, bad index, trailing SQL) */
  STORE_ESQL = -2,        /* SQL error: syntax, unknown table or column, ... */
  STORE_ECONSTRAINT = -3, /* a constraint failed (UNIQUE, NOT NULL, CHECK, ...) */
  STORE_EMISUSE = -4,     /* misuse: nested BEGIN, type mismatch, value too big, ... */
  STORE_EBUSY = -5,       /* locked by another connection past the busy timeout */
  STORE_EIO = -6,         /* disk I/O error */
  STORE_EFULL = -7,       /* disk full */
  STORE_ECORRUPT = -8,    /* the file is not a database, or is damaged */
  STORE_ECANTOPEN = -9,   /* the file cannot be opened (missing directory, EACCES) */
  STORE_EREADONLY = -10,  /* the database (or its directory) is read-only */
  STORE_ENOMEM = -11,     /* out of memory */
  STORE_ERR = -12,        /* anything else SQLite reports */
};

enum store_type { STORE_INTEGER, STORE_REAL, STORE_TEXT, STORE_BLOB, STORE_NULL };

struct store_options {
  int busy_timeout_ms; /* 0 means the default, 5000 */
};

/* Opens (creating if missing) the database file at path. The directory must exist: a
 * missing one is STORE_ECANTOPEN with "directory does not exist: DIR" in err. ":memory:"
 * opens a private in-memory database. opts may be NULL. On failure *out is NULL and err
 * (if errlen > 0) holds a message. */
int store_open(const char *path, const struct store_options *opts, store **out, char *err,
               size_t errlen);
/* Finalizes any statements still open and closes the connection. NULL is a no-op. */
void store_close(store *db);

/* SQLite's message for the last failure on db (or a message of this module). */
const char *store_errmsg(const store *db);
/* A short stable name for a STORE_E* code: "sql", "busy", "io", ... */
const char *store_strerror(int code);

/* Runs one or more ;-separated statements without parameters, discarding rows. */
int store_exec(store *db, const char *sql);

/* Prepares exactly one statement (len bytes of sql; anything but whitespace, comments
 * or ';' after it is STORE_EINVAL). */
int store_prepare(store *db, const char *sql, size_t len, store_stmt **out);
void store_finalize(store_stmt *st);
/* Makes st ready to run again; bindings are kept. */
int store_reset(store_stmt *st);
int store_clear_bindings(store_stmt *st);

/* Parameters are numbered from 1. */
int store_param_count(const store_stmt *st);
int store_bind_int(store_stmt *st, int idx, int64_t v);
int store_bind_real(store_stmt *st, int idx, double v);
int store_bind_text(store_stmt *st, int idx, const char *s, size_t len); /* copied */
int store_bind_null(store_stmt *st, int idx);

/* STORE_ROW, STORE_DONE, or a negative code. */
int store_step(store_stmt *st);

/* Columns of the current row, numbered from 0. */
int store_column_count(const store_stmt *st);
const char *store_column_name(const store_stmt *st, int col);
enum store_type store_column_type(const store_stmt *st, int col);
int64_t store_column_int(const store_stmt *st, int col);
double store_column_real(const store_stmt *st, int col);
/* TEXT or BLOB bytes; valid until the next step/reset/finalize. */
const char *store_column_text(const store_stmt *st, int col, size_t *len);

/* Rows changed by the last INSERT/UPDATE/DELETE, and the last inserted rowid. */
int64_t store_changes(const store *db);
int64_t store_last_insert_id(const store *db);

/* BEGIN IMMEDIATE (takes the write lock now, so a transaction never fails half-way on a
 * lock upgrade), COMMIT, ROLLBACK. */
int store_begin(store *db);
int store_commit(store *db);
int store_rollback(store *db);
/* 1 while a transaction is open (also after SQLite rolled one back by itself: 0). */
int store_in_transaction(const store *db);

#endif
