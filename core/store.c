/* Thin SQLite access; see store.h for the durability choice. Statements are kept on a
 * list in their store, so store_close can finalize whatever is left without leaking and
 * a statement's failure can leave its message in the store. */
#include "store.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STORE_DEFAULT_BUSY_MS 5000

struct store {
  sqlite3 *db;
  store_stmt *stmts; /* every statement not yet finalized */
  char msg[512];
};

struct store_stmt {
  sqlite3_stmt *st;
  store *owner;
  store_stmt *prev, *next;
};

#define STMT(x) ((x)->st)

static int map_rc(int rc) {
  switch (rc & 0xff) {
  case SQLITE_OK: return 0;
  case SQLITE_ROW: return STORE_ROW;
  case SQLITE_DONE: return STORE_DONE;
  case SQLITE_ERROR: return STORE_ESQL;
  case SQLITE_CONSTRAINT: return STORE_ECONSTRAINT;
  case SQLITE_MISUSE:
  case SQLITE_RANGE:
  case SQLITE_MISMATCH:
  case SQLITE_TOOBIG: return STORE_EMISUSE;
  case SQLITE_BUSY:
  case SQLITE_LOCKED: return STORE_EBUSY;
  case SQLITE_IOERR:
  case SQLITE_PROTOCOL: return STORE_EIO;
  case SQLITE_FULL: return STORE_EFULL;
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB: return STORE_ECORRUPT;
  case SQLITE_CANTOPEN: return STORE_ECANTOPEN;
  case SQLITE_READONLY:
  case SQLITE_PERM:
  case SQLITE_AUTH: return STORE_EREADONLY;
  case SQLITE_NOMEM: return STORE_ENOMEM;
  default: return STORE_ERR;
  }
}

const char *store_strerror(int code) {
  switch (code) {
  case STORE_DONE: return "done";
  case STORE_ROW: return "row";
  case STORE_EINVAL: return "invalid";
  case STORE_ESQL: return "sql";
  case STORE_ECONSTRAINT: return "constraint";
  case STORE_EMISUSE: return "misuse";
  case STORE_EBUSY: return "busy";
  case STORE_EIO: return "io";
  case STORE_EFULL: return "full";
  case STORE_ECORRUPT: return "corrupt";
  case STORE_ECANTOPEN: return "open";
  case STORE_EREADONLY: return "readonly";
  case STORE_ENOMEM: return "nomem";
  default: return "error";
  }
}

static void set_msg(store *s, const char *m) {
  snprintf(s->msg, sizeof s->msg, "%s", m ? m : "unknown error");
}

/* Records SQLite's message for a failed call and maps its code. */
static int fail(store *s, int rc) {
  set_msg(s, sqlite3_errmsg(s->db));
  return map_rc(rc);
}

static int fail_msg(store *s, int code, const char *m) {
  set_msg(s, m);
  return code;
}

static void put_err(char *err, size_t errlen, const char *fmt, const char *a, const char *b) {
  if (err && errlen > 0)
    snprintf(err, errlen, fmt, a, b);
}

/* "directory does not exist: DIR" when path's directory is missing; 0 otherwise. */
static int missing_dir(const char *path, char *err, size_t errlen) {
  const char *slash = strrchr(path, '/');
  if (!slash || slash == path)
    return 0;
  size_t n = (size_t)(slash - path);
  char *dir = malloc(n + 1);
  if (!dir)
    return 0;
  memcpy(dir, path, n);
  dir[n] = '\0';
  struct stat sb;
  int missing = stat(dir, &sb) != 0 && errno == ENOENT;
  if (missing)
    put_err(err, errlen, "%s%s", "directory does not exist: ", dir);
  free(dir);
  return missing;
}

static int pragma_text(store *s, const char *sql, char *out, size_t outlen) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK)
    return fail(s, rc);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const unsigned char *t = sqlite3_column_text(st, 0);
    snprintf(out, outlen, "%s", t ? (const char *)t : "");
    rc = sqlite3_step(st);
  }
  if (rc != SQLITE_DONE) {
    int code = fail(s, rc);
    sqlite3_finalize(st);
    return code;
  }
  sqlite3_finalize(st);
  return 0;
}

int store_open(const char *path, const struct store_options *opts, store **out, char *err,
               size_t errlen) {
  if (out)
    *out = NULL;
  if (!path || !out) {
    put_err(err, errlen, "%s%s", "invalid argument", "");
    return STORE_EINVAL;
  }
  if (missing_dir(path, err, errlen))
    return STORE_ECANTOPEN;
  store *s = calloc(1, sizeof *s);
  if (!s) {
    put_err(err, errlen, "%s%s", "out of memory", "");
    return STORE_ENOMEM;
  }
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
  if (rc != SQLITE_OK) {
    int code = map_rc(rc);
    put_err(err, errlen, "%s: %s", s->db ? sqlite3_errmsg(s->db) : "out of memory", path);
    sqlite3_close(s->db);
    free(s);
    return code;
  }
  sqlite3_extended_result_codes(s->db, 1);
  int ms = opts && opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : STORE_DEFAULT_BUSY_MS;
  sqlite3_busy_timeout(s->db, ms);

  /* The first statement reads the file: a non-database fails here (SQLITE_NOTADB). */
  char mode[32];
  int code = pragma_text(s, "PRAGMA journal_mode=WAL", mode, sizeof mode);
  if (code == 0 && strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0)
    code = fail_msg(s, STORE_EIO, "could not switch the journal to WAL");
  if (code == 0 && sqlite3_exec(s->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON",
                                NULL, NULL, NULL) != SQLITE_OK)
    code = fail(s, sqlite3_errcode(s->db));
  if (code != 0) {
    put_err(err, errlen, "%s: %s", s->msg, path);
    sqlite3_close(s->db);
    free(s);
    return code;
  }
  *out = s;
  return 0;
}

void store_close(store *s) {
  if (!s)
    return;
  while (s->stmts)
    store_finalize(s->stmts);
  sqlite3_stmt *st; /* statements prepared behind this module's back, if any */
  while ((st = sqlite3_next_stmt(s->db, NULL)) != NULL)
    sqlite3_finalize(st);
  sqlite3_close(s->db);
  free(s);
}

const char *store_errmsg(const store *s) {
  return s ? s->msg : "no database";
}

int store_exec(store *s, const char *sql) {
  if (!s || !sql)
    return STORE_EINVAL;
  char *m = NULL;
  int rc = sqlite3_exec(s->db, sql, NULL, NULL, &m);
  if (rc != SQLITE_OK) {
    set_msg(s, m ? m : sqlite3_errmsg(s->db));
    sqlite3_free(m);
    return map_rc(rc);
  }
  return 0;
}

/* Whether the rest of the SQL is only whitespace, ';' and comments. */
static int only_trailer(const char *p, const char *end) {
  while (p < end) {
    if (*p == ';' || *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' ||
        *p == '\v') {
      p++;
    } else if (*p == '-' && p + 1 < end && p[1] == '-') {
      while (p < end && *p != '\n')
        p++;
    } else if (*p == '/' && p + 1 < end && p[1] == '*') {
      p += 2;
      while (p + 1 < end && !(p[0] == '*' && p[1] == '/'))
        p++;
      p = p + 1 < end ? p + 2 : end;
    } else {
      return 0;
    }
  }
  return 1;
}

int store_prepare(store *s, const char *sql, size_t len, store_stmt **out) {
  if (out)
    *out = NULL;
  if (!s || !sql || !out || len > (size_t)0x7fffffff)
    return s ? fail_msg(s, STORE_EINVAL, "invalid argument") : STORE_EINVAL;
  sqlite3_stmt *st = NULL;
  const char *tail = NULL;
  int rc = sqlite3_prepare_v2(s->db, sql, (int)len, &st, &tail);
  if (rc != SQLITE_OK)
    return fail(s, rc);
  if (!st)
    return fail_msg(s, STORE_EINVAL, "no SQL statement");
  if (tail && !only_trailer(tail, sql + len)) {
    sqlite3_finalize(st);
    return fail_msg(s, STORE_EINVAL, "more than one SQL statement (use exec)");
  }
  store_stmt *w = malloc(sizeof *w);
  if (!w) {
    sqlite3_finalize(st);
    return fail_msg(s, STORE_ENOMEM, "out of memory");
  }
  w->st = st;
  w->owner = s;
  w->prev = NULL;
  w->next = s->stmts;
  if (s->stmts)
    s->stmts->prev = w;
  s->stmts = w;
  *out = w;
  return 0;
}

void store_finalize(store_stmt *w) {
  if (!w)
    return;
  sqlite3_finalize(w->st);
  if (w->prev)
    w->prev->next = w->next;
  else
    w->owner->stmts = w->next;
  if (w->next)
    w->next->prev = w->prev;
  free(w);
}

/* Maps a statement call's result; a failure leaves its message in the store. */
static int stmt_rc(store_stmt *w, int rc) {
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE)
    return map_rc(rc);
  return fail(w->owner, rc);
}

int store_reset(store_stmt *st) {
  return st ? stmt_rc(st, sqlite3_reset(STMT(st))) : STORE_EINVAL;
}

int store_clear_bindings(store_stmt *st) {
  return st ? stmt_rc(st, sqlite3_clear_bindings(STMT(st))) : STORE_EINVAL;
}

int store_param_count(const store_stmt *st) {
  return st ? sqlite3_bind_parameter_count(st->st) : 0;
}

int store_bind_int(store_stmt *st, int idx, int64_t v) {
  return st ? stmt_rc(st, sqlite3_bind_int64(STMT(st), idx, v)) : STORE_EINVAL;
}

int store_bind_real(store_stmt *st, int idx, double v) {
  return st ? stmt_rc(st, sqlite3_bind_double(STMT(st), idx, v)) : STORE_EINVAL;
}

int store_bind_text(store_stmt *st, int idx, const char *s, size_t len) {
  if (!st || !s)
    return STORE_EINVAL;
  return stmt_rc(st, sqlite3_bind_text64(STMT(st), idx, s, len, SQLITE_TRANSIENT, SQLITE_UTF8));
}

int store_bind_null(store_stmt *st, int idx) {
  return st ? stmt_rc(st, sqlite3_bind_null(STMT(st), idx)) : STORE_EINVAL;
}

int store_step(store_stmt *st) {
  return st ? stmt_rc(st, sqlite3_step(STMT(st))) : STORE_EINVAL;
}

int store_column_count(const store_stmt *st) {
  return st ? sqlite3_column_count(st->st) : 0;
}

const char *store_column_name(const store_stmt *st, int col) {
  return sqlite3_column_name(st->st, col);
}

enum store_type store_column_type(const store_stmt *st, int col) {
  switch (sqlite3_column_type(st->st, col)) {
  case SQLITE_INTEGER: return STORE_INTEGER;
  case SQLITE_FLOAT: return STORE_REAL;
  case SQLITE_TEXT: return STORE_TEXT;
  case SQLITE_BLOB: return STORE_BLOB;
  default: return STORE_NULL;
  }
}

int64_t store_column_int(const store_stmt *st, int col) {
  return sqlite3_column_int64(st->st, col);
}

double store_column_real(const store_stmt *st, int col) {
  return sqlite3_column_double(st->st, col);
}

const char *store_column_text(const store_stmt *st, int col, size_t *len) {
  sqlite3_stmt *s = st->st;
  const char *p = sqlite3_column_type(s, col) == SQLITE_BLOB
                    ? (const char *)sqlite3_column_blob(s, col)
                    : (const char *)sqlite3_column_text(s, col);
  int n = sqlite3_column_bytes(s, col);
  if (len)
    *len = (size_t)(n > 0 ? n : 0);
  return p ? p : "";
}

int64_t store_changes(const store *s) {
  return s ? sqlite3_changes64(s->db) : 0;
}

int64_t store_last_insert_id(const store *s) {
  return s ? sqlite3_last_insert_rowid(s->db) : 0;
}

int store_begin(store *s) {
  return store_exec(s, "BEGIN IMMEDIATE");
}

int store_commit(store *s) {
  return store_exec(s, "COMMIT");
}

int store_rollback(store *s) {
  return store_exec(s, "ROLLBACK");
}

int store_in_transaction(const store *s) {
  return s ? !sqlite3_get_autocommit(s->db) : 0;
}
