/* Subprocesses on libuv: no shell, an exact environment, an own process group, streamed
 * output, timeouts that escalate, and every child reaped.
 *
 * - argv runs directly (uv_spawn). A program name without '/' is looked up in the PATH of
 *   the child's env, or the parent's PATH when env has none.
 * - env is exactly what the child gets: NULL means an EMPTY environment, never ours.
 * - The child leads a new session and process group (UV_PROCESS_DETACHED = setsid), so
 *   signals go to the whole group with kill(-pid, sig). When the leader exits, what is
 *   left of its group is killed (SIGKILL): no grandchild outlives the command.
 * - stdin: the given bytes are written while stdout and stderr are read, then stdin is
 *   closed; without stdin data the child reads /dev/null (unless keep_stdin is set).
 * - Output is kept up to max_output bytes PER STREAM (default 64 MiB); beyond that it is
 *   dropped and `truncated` set, and with kill_on_max_output the child is stopped.
 *   on_line, when given, gets every complete line of either stream as it arrives (without
 *   its '\n'), the last unterminated line at EOF, and lines longer than max_output cut
 *   to max_output bytes.
 * - A timeout (or proc_kill with sig 0) sends the polite signal (SIGINT by default) to the
 *   group, SIGTERM kill_grace later, SIGKILL kill_grace after that.
 * - Completion (on_exit) fires exactly once, when the exit status AND end-of-file on both
 *   stdout and stderr have arrived. A descendant that left the group and keeps the pipes
 *   open cannot hold it back more than kill_grace after the exit (the pipes are closed).
 * - proc_spawn either fails synchronously (a negative uv error code and a message such
 *   as "spawn: ENOENT: program not found: foo"; no callback fires) or succeeds and
 *   on_exit fires exactly once, later. After on_exit the proc frees itself: do not touch
 *   it again.
 * - proc_mgr_shutdown kills (SIGKILL, to the group) and reaps every live child at once,
 *   fires their on_exit with `shutdown` set, and closes their handles. */
#ifndef CC_PROC_H
#define CC_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#define PROC_DEFAULT_MAX_OUTPUT ((size_t)64 << 20)
#define PROC_DEFAULT_KILL_GRACE_MS 5000

enum proc_stream { PROC_STDOUT = 1, PROC_STDERR = 2 };

typedef struct proc proc;

typedef struct proc_mgr {
  uv_loop_t *loop;
  proc *live; /* doubly linked list of children not yet completed */
  size_t count;
} proc_mgr;

typedef struct proc_result {
  bool signaled;          /* killed by a signal: term_signal is set, exit_status is not */
  int64_t exit_status;
  int term_signal;
  const char *out, *err;  /* kept output (NUL-terminated too), valid during on_exit only */
  size_t out_len, err_len;
  bool timed_out;
  bool truncated;         /* some output of either stream was dropped */
  bool shutdown;          /* completed by proc_mgr_shutdown */
} proc_result;

typedef void (*proc_line_fn)(void *ud, enum proc_stream stream, const char *line, size_t len);
typedef void (*proc_exit_fn)(void *ud, const proc_result *r);

typedef struct proc_opts {
  const char *const *argv; /* NULL-terminated, argv[0] required */
  const char *cwd;         /* NULL: the parent's */
  const char *const *env;  /* NULL-terminated "NAME=value"; NULL: empty environment */
  const char *stdin_data;  /* written, then stdin closed */
  size_t stdin_len;
  bool keep_stdin;         /* leave stdin open for proc_write / proc_close_stdin */
  uint64_t timeout_ms;     /* 0: none */
  uint64_t kill_grace_ms;  /* 0: PROC_DEFAULT_KILL_GRACE_MS */
  int polite_signal;       /* 0: SIGINT */
  size_t max_output;       /* 0: PROC_DEFAULT_MAX_OUTPUT */
  bool kill_on_max_output;
  proc_line_fn on_line;    /* optional */
  proc_exit_fn on_exit;    /* required */
  void *ud;
} proc_opts;

/* Also ignores SIGPIPE process-wide (a child closing its stdin must not kill us). */
void proc_mgr_init(proc_mgr *m, uv_loop_t *loop);
void proc_mgr_shutdown(proc_mgr *m);
size_t proc_mgr_count(const proc_mgr *m);

int proc_spawn(proc_mgr *m, const proc_opts *o, proc **out, char *errbuf, size_t errlen);
pid_t proc_pid(const proc *p);
/* sig 0: the polite escalation (as on timeout); otherwise that signal to the group once.
 * Returns 0, or -ESRCH once the child has exited. */
int proc_kill(proc *p, int sig);
/* Writes to the child's stdin (copied); 0 or a negative error (-EPIPE once closed). */
int proc_write(proc *p, const char *data, size_t len);
/* Closes stdin once what was written is flushed. */
void proc_close_stdin(proc *p);
/* Stops / restarts reading stdout and stderr (backpressure for a slow line consumer). */
void proc_pause(proc *p);
void proc_resume(proc *p);
/* Looks up file in the PATH entries of path (colon-separated); a name with '/' is taken
 * as is. Fills buf; returns 0 or -ENOENT / -EACCES / -ENAMETOOLONG. */
int proc_resolve(const char *file, const char *path, char *buf, size_t buflen);

#endif
