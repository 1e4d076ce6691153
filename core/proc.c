/* Subprocesses on libuv. One proc owns a process handle, three pipes and two timers; it
 * completes when the exit status and EOF on both output pipes are in, then closes its
 * handles and frees itself in the last close callback. */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

typedef struct buf {
  char *data;
  size_t len, cap;
} buf;

typedef struct stream {
  uv_pipe_t pipe;
  proc *p;
  enum proc_stream id;
  buf keep;
  buf line;        /* the partial line, when on_line is set */
  bool line_cut;   /* the current line went past max_output: drop until '\n' */
  bool eof;
  bool reading;
} stream;

typedef struct write_req {
  uv_write_t req;
  proc *p;
  char data[];
} write_req;

struct proc {
  proc_mgr *mgr;
  proc *next, *prev;
  uv_process_t process;
  uv_pipe_t in;
  stream out, err;
  uv_timer_t kill_timer;  /* timeout, then the escalation steps */
  uv_timer_t drain_timer; /* after the exit: how long EOF may take */
  int open_handles;
  bool has_in, in_closing, in_close_after_writes;
  size_t writes_pending;
  bool exited, done, paused;
  int kill_stage;         /* 0 none, 1 polite sent, 2 SIGTERM sent, 3 SIGKILL sent */
  bool timed_out, truncated;
  int64_t exit_status;
  int term_signal;
  pid_t pid;
  uint64_t grace_ms;
  int polite;
  size_t max_output;
  bool kill_on_max;
  proc_line_fn on_line;
  proc_exit_fn on_exit;
  void *ud;
  char readbuf[64 * 1024];
};

/* ---- buffers ---- */

static int buf_append(buf *b, const char *data, size_t len) {
  if (len == 0)
    return 0;
  if (b->len + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + len + 1)
      cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d)
      return -ENOMEM;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}

static void buf_free(buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ---- lifecycle ---- */

static void handle_closed(uv_handle_t *h) {
  proc *p = h->data;
  if (--p->open_handles == 0) {
    buf_free(&p->out.keep);
    buf_free(&p->err.keep);
    buf_free(&p->out.line);
    buf_free(&p->err.line);
    free(p);
  }
}

static void close_handle(proc *p, uv_handle_t *h) {
  if (!uv_is_closing(h)) {
    h->data = p;
    uv_close(h, handle_closed);
  }
}

static void close_stdin_now(proc *p) {
  if (p->has_in && !p->in_closing) {
    p->in_closing = true;
    close_handle(p, (uv_handle_t *)&p->in);
  }
}

static void close_all(proc *p) {
  close_stdin_now(p);
  close_handle(p, (uv_handle_t *)&p->out.pipe);
  close_handle(p, (uv_handle_t *)&p->err.pipe);
  close_handle(p, (uv_handle_t *)&p->kill_timer);
  close_handle(p, (uv_handle_t *)&p->drain_timer);
  close_handle(p, (uv_handle_t *)&p->process);
}

static void unlink_live(proc *p) {
  proc_mgr *m = p->mgr;
  if (p->prev)
    p->prev->next = p->next;
  else
    m->live = p->next;
  if (p->next)
    p->next->prev = p->prev;
  p->next = p->prev = NULL;
  m->count--;
}

static void finish(proc *p, bool shutdown) {
  if (p->done)
    return;
  p->done = true;
  uv_timer_stop(&p->kill_timer);
  uv_timer_stop(&p->drain_timer);
  unlink_live(p);
  proc_result r = {
    .signaled = p->term_signal != 0,
    .exit_status = p->term_signal ? 0 : p->exit_status,
    .term_signal = p->term_signal,
    .out = p->out.keep.data ? p->out.keep.data : "",
    .out_len = p->out.keep.len,
    .err = p->err.keep.data ? p->err.keep.data : "",
    .err_len = p->err.keep.len,
    .timed_out = p->timed_out,
    .truncated = p->truncated,
    .shutdown = shutdown,
  };
  p->on_exit(p->ud, &r);
  close_all(p);
}

static void maybe_finish(proc *p) {
  if (p->exited && p->out.eof && p->err.eof)
    finish(p, false);
}

/* ---- signals ---- */

static void signal_group(proc *p, int sig) {
  if (kill(-p->pid, sig) < 0 && errno == ESRCH && !p->exited)
    kill(p->pid, sig); /* not yet its own group leader (between fork and setsid) */
}

static void escalate(proc *p);

static void kill_timer_cb(uv_timer_t *t) {
  proc *p = t->data;
  if (p->kill_stage == 0)
    p->timed_out = true;
  escalate(p);
}

/* Sends the next signal of polite -> SIGTERM -> SIGKILL and arms the timer for the one
 * after. */
static void escalate(proc *p) {
  if (p->exited || p->kill_stage >= 3)
    return;
  static const int next_sig[] = {0, SIGTERM, SIGKILL};
  int sig = p->kill_stage == 0 ? p->polite : next_sig[p->kill_stage];
  p->kill_stage++;
  log_debug("proc", "pid %d: signal %d to the group", (int)p->pid, sig);
  signal_group(p, sig);
  if (p->kill_stage < 3) {
    p->kill_timer.data = p;
    uv_timer_start(&p->kill_timer, kill_timer_cb, p->grace_ms, 0);
  }
}

/* ---- output ---- */

static void stop_reading(stream *s) {
  if (s->reading) {
    uv_read_stop((uv_stream_t *)&s->pipe);
    s->reading = false;
  }
}

static void mark_truncated(proc *p) {
  if (!p->truncated) {
    p->truncated = true;
    if (p->kill_on_max && p->kill_stage == 0 && !p->exited)
      escalate(p);
  }
}

static void keep(stream *s, const char *data, size_t len) {
  proc *p = s->p;
  size_t room = p->max_output - s->keep.len;
  if (len > room) {
    mark_truncated(p);
    len = room;
  }
  if (buf_append(&s->keep, data, len) < 0)
    mark_truncated(p);
}

static void deliver_line(stream *s, const char *line, size_t len) {
  s->p->on_line(s->p->ud, s->id, line, len);
}

/* Appends to the partial line, cutting it at max_output. */
static void line_append(stream *s, const char *data, size_t len) {
  proc *p = s->p;
  if (s->line_cut)
    return;
  size_t room = p->max_output - s->line.len;
  if (len > room) {
    len = room;
    s->line_cut = true;
    mark_truncated(p);
  }
  if (buf_append(&s->line, data, len) < 0) {
    s->line_cut = true;
    mark_truncated(p);
  }
}

static void split_lines(stream *s, const char *data, size_t len) {
  while (len > 0) {
    const char *nl = memchr(data, '\n', len);
    if (!nl) {
      line_append(s, data, len);
      return;
    }
    size_t n = (size_t)(nl - data);
    if (s->line.len == 0 && !s->line_cut) {
      if (n > s->p->max_output) {
        n = s->p->max_output;
        mark_truncated(s->p);
      }
      deliver_line(s, data, n); /* straight from the read buffer */
    } else {
      line_append(s, data, n);
      deliver_line(s, s->line.data ? s->line.data : "", s->line.len);
      s->line.len = 0;
      s->line_cut = false;
    }
    len -= (size_t)(nl - data) + 1;
    data = nl + 1;
  }
}

static void stream_eof(stream *s) {
  if (s->eof)
    return;
  stop_reading(s);
  s->eof = true;
  if (s->p->on_line && (s->line.len > 0 || s->line_cut)) {
    deliver_line(s, s->line.data ? s->line.data : "", s->line.len);
    s->line.len = 0;
    s->line_cut = false;
  }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  stream *s = h->data;
  b->base = s->p->readbuf;
  b->len = sizeof s->p->readbuf;
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  stream *s = st->data;
  proc *p = s->p;
  if (n > 0) {
    keep(s, b->base, (size_t)n);
    if (p->on_line)
      split_lines(s, b->base, (size_t)n);
  } else if (n < 0) {
    if (n != UV_EOF)
      log_warn("proc", "pid %d: read: %s", (int)p->pid, uv_strerror((int)n));
    stream_eof(s);
    maybe_finish(p);
  }
}

static void start_reading(stream *s) {
  if (!s->eof && !s->reading && !s->p->paused) {
    s->pipe.data = s;
    if (uv_read_start((uv_stream_t *)&s->pipe, alloc_cb, read_cb) == 0)
      s->reading = true;
    else
      stream_eof(s);
  }
}

/* ---- exit ---- */

static void drain_timer_cb(uv_timer_t *t) {
  proc *p = t->data;
  if (p->paused) { /* the consumer holds us back, not the child: wait for it */
    uv_timer_start(&p->drain_timer, drain_timer_cb, p->grace_ms, 0);
    return;
  }
  log_warn("proc", "pid %d exited but its output pipes stayed open: closing them",
           (int)p->pid);
  stream_eof(&p->out);
  stream_eof(&p->err);
  maybe_finish(p);
}

static void exit_cb(uv_process_t *h, int64_t status, int term_signal) {
  proc *p = h->data;
  p->exited = true;
  p->exit_status = status;
  p->term_signal = term_signal;
  uv_timer_stop(&p->kill_timer);
  /* What is left of the group must not outlive the command. */
  kill(-p->pid, SIGKILL);
  if (!(p->out.eof && p->err.eof)) {
    p->drain_timer.data = p;
    uv_timer_start(&p->drain_timer, drain_timer_cb, p->grace_ms, 0);
  }
  maybe_finish(p);
}

/* ---- stdin ---- */

static void write_cb(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  proc *p = w->p;
  free(w);
  p->writes_pending--;
  if (status < 0 && status != UV_ECANCELED)
    close_stdin_now(p); /* EPIPE: the child stopped reading */
  else if (p->writes_pending == 0 && p->in_close_after_writes)
    close_stdin_now(p);
}

int proc_write(proc *p, const char *data, size_t len) {
  if (!p->has_in || p->in_closing || p->in_close_after_writes || p->done)
    return -EPIPE;
  write_req *w = malloc(sizeof *w + (len ? len : 1));
  if (!w)
    return -ENOMEM;
  memcpy(w->data, data, len);
  w->p = p;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&p->in, &b, 1, write_cb);
  if (rc < 0) {
    free(w);
    return rc;
  }
  p->writes_pending++;
  return 0;
}

void proc_close_stdin(proc *p) {
  if (!p->has_in || p->in_closing)
    return;
  if (p->writes_pending == 0)
    close_stdin_now(p);
  else
    p->in_close_after_writes = true;
}

/* ---- spawn ---- */

int proc_resolve(const char *file, const char *path, char *out, size_t outlen) {
  if (!file || !*file)
    return -ENOENT;
  if (strchr(file, '/')) {
    if (strlen(file) + 1 > outlen)
      return -ENAMETOOLONG;
    strcpy(out, file);
    return access(file, X_OK) == 0 ? 0 : -errno;
  }
  if (!path || !*path)
    path = "/usr/local/bin:/usr/bin:/bin";
  int err = -ENOENT;
  const char *p = path;
  for (;;) {
    const char *colon = strchr(p, ':');
    size_t dlen = colon ? (size_t)(colon - p) : strlen(p);
    const char *dir = dlen ? p : ".";
    if (dlen == 0)
      dlen = 1;
    if (dlen + 1 + strlen(file) + 1 <= outlen) {
      memcpy(out, dir, dlen);
      out[dlen] = '/';
      strcpy(out + dlen + 1, file);
      struct stat st;
      if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
        if (access(out, X_OK) == 0)
          return 0;
        err = -EACCES;
      }
    }
    if (!colon)
      break;
    p = colon + 1;
  }
  return err;
}

static const char *env_get(const char *const *env, const char *name) {
  size_t n = strlen(name);
  for (; env && *env; env++)
    if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
      return *env + n + 1;
  return NULL;
}

static int init_pipe(proc *p, uv_pipe_t *pipe) {
  int rc = uv_pipe_init(p->mgr->loop, pipe, 0);
  if (rc == 0)
    p->open_handles++;
  return rc;
}

int proc_spawn(proc_mgr *m, const proc_opts *o, proc **out, char *errbuf, size_t errlen) {
  char dummy[1];
  if (!errbuf || errlen == 0) {
    errbuf = dummy;
    errlen = sizeof dummy;
  }
  errbuf[0] = '\0';
  if (!o->argv || !o->argv[0] || !o->on_exit) {
    snprintf(errbuf, errlen, "spawn: EINVAL: no program");
    return UV_EINVAL;
  }
  static const char *const empty_env[] = {NULL};
  const char *const *env = o->env ? o->env : empty_env;
  const char *path = env_get(env, "PATH");
  if (!path)
    path = getenv("PATH");
  char file[PATH_MAX];
  int rc = proc_resolve(o->argv[0], path, file, sizeof file);
  if (rc < 0) {
    snprintf(errbuf, errlen, "spawn: %s: program not found: %s", uv_err_name(rc), o->argv[0]);
    return rc;
  }
  if (o->cwd) {
    struct stat st;
    rc = stat(o->cwd, &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
    if (rc < 0) {
      snprintf(errbuf, errlen, "spawn: %s: no such directory: %s", uv_err_name(rc), o->cwd);
      return rc;
    }
  }

  proc *p = calloc(1, sizeof *p);
  if (!p) {
    snprintf(errbuf, errlen, "spawn: ENOMEM");
    return UV_ENOMEM;
  }
  p->mgr = m;
  p->grace_ms = o->kill_grace_ms ? o->kill_grace_ms : PROC_DEFAULT_KILL_GRACE_MS;
  p->polite = o->polite_signal ? o->polite_signal : SIGINT;
  p->max_output = o->max_output ? o->max_output : PROC_DEFAULT_MAX_OUTPUT;
  p->kill_on_max = o->kill_on_max_output;
  p->on_line = o->on_line;
  p->on_exit = o->on_exit;
  p->ud = o->ud;
  p->out.p = p->err.p = p;
  p->out.id = PROC_STDOUT;
  p->err.id = PROC_STDERR;
  p->has_in = o->stdin_data != NULL || o->keep_stdin;

  /* Handles: from here on, failure closes what was opened and frees p in the callback. */
  uv_timer_init(m->loop, &p->kill_timer);
  uv_timer_init(m->loop, &p->drain_timer);
  p->open_handles = 2;
  if ((p->has_in && (rc = init_pipe(p, &p->in)) < 0) ||
      (rc = init_pipe(p, &p->out.pipe)) < 0 || (rc = init_pipe(p, &p->err.pipe)) < 0) {
    /* uv_pipe_init cannot fail on Unix; keep the bookkeeping honest anyway */
    snprintf(errbuf, errlen, "spawn: %s", uv_err_name(rc));
    p->done = true;
    p->has_in = false;
    close_handle(p, (uv_handle_t *)&p->kill_timer);
    close_handle(p, (uv_handle_t *)&p->drain_timer);
    return rc;
  }

  uv_stdio_container_t stdio[3];
  if (p->has_in) {
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&p->in;
  } else {
    stdio[0].flags = UV_IGNORE; /* /dev/null */
  }
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&p->out.pipe;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&p->err.pipe;

  uv_process_options_t po = {
    .exit_cb = exit_cb,
    .file = file,
    .args = (char **)o->argv,
    .env = (char **)env,
    .cwd = o->cwd,
    .flags = UV_PROCESS_DETACHED,
    .stdio_count = 3,
    .stdio = stdio,
  };
  p->process.data = p;
  rc = uv_spawn(m->loop, &p->process, &po);
  p->open_handles++; /* the process handle must be closed even when spawn failed */
  if (rc < 0) {
    snprintf(errbuf, errlen, "spawn: %s: %s", uv_err_name(rc), o->argv[0]);
    p->done = true;
    close_all(p);
    return rc;
  }
  p->pid = p->process.pid;

  p->next = m->live;
  if (m->live)
    m->live->prev = p;
  m->live = p;
  m->count++;

  start_reading(&p->out);
  start_reading(&p->err);
  if (o->stdin_data) {
    if (o->stdin_len > 0 && proc_write(p, o->stdin_data, o->stdin_len) < 0)
      close_stdin_now(p);
    else if (!o->keep_stdin)
      proc_close_stdin(p);
  }
  if (o->timeout_ms > 0) {
    p->kill_timer.data = p;
    uv_timer_start(&p->kill_timer, kill_timer_cb, o->timeout_ms, 0);
  }
  if (out)
    *out = p;
  return 0;
}

pid_t proc_pid(const proc *p) { return p->pid; }

int proc_kill(proc *p, int sig) {
  if (p->exited || p->done)
    return -ESRCH;
  if (sig == 0) {
    if (p->kill_stage == 0)
      escalate(p);
  } else {
    signal_group(p, sig);
  }
  return 0;
}

void proc_pause(proc *p) {
  p->paused = true;
  stop_reading(&p->out);
  stop_reading(&p->err);
}

void proc_resume(proc *p) {
  if (!p->paused || p->done)
    return;
  p->paused = false;
  start_reading(&p->out);
  start_reading(&p->err);
}

/* ---- manager ---- */

void proc_mgr_init(proc_mgr *m, uv_loop_t *loop) {
  m->loop = loop;
  m->live = NULL;
  m->count = 0;
  signal(SIGPIPE, SIG_IGN);
}

size_t proc_mgr_count(const proc_mgr *m) { return m->count; }

void proc_mgr_shutdown(proc_mgr *m) {
  while (m->live) {
    proc *p = m->live;
    if (!p->exited) {
      kill(-p->pid, SIGKILL);
      kill(p->pid, SIGKILL);
      int st;
      pid_t r;
      do
        r = waitpid(p->pid, &st, 0);
      while (r < 0 && errno == EINTR);
      p->exited = true;
      if (r == p->pid) {
        p->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 0;
        p->term_signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
      } else {
        p->term_signal = SIGKILL;
      }
    }
    stop_reading(&p->out);
    stop_reading(&p->err);
    p->out.eof = p->err.eof = true;
    finish(p, true);
  }
}
