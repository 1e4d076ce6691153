/* Subprocesses on a private libuv loop: exit codes, signals, timeouts that must reach
 * grandchildren, big output both ways, line splitting, spawn failures, environment
 * isolation, reaping and shutdown. Children are small shell one-liners and coreutils. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc.h"

typedef struct line {
  enum proc_stream stream;
  char *text;
  size_t len;
} line;

typedef struct run {
  int done;
  proc_result r;
  char *out, *err; /* copies of the kept output */
  line *lines;
  size_t nlines, cap;
  proc *p;
} run;

typedef struct fixture {
  uv_loop_t loop;
  proc_mgr mgr;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  proc_mgr_init(&f->mgr, &f->loop);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  proc_mgr_shutdown(&f->mgr);
  uv_run(&f->loop, UV_RUN_DEFAULT); /* the close callbacks */
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

static void on_exit_cb(void *ud, const proc_result *r) {
  run *x = ud;
  x->done++;
  x->r = *r;
  x->out = malloc(r->out_len + 1);
  memcpy(x->out, r->out, r->out_len + 1);
  x->err = malloc(r->err_len + 1);
  memcpy(x->err, r->err, r->err_len + 1);
  x->r.out = x->out;
  x->r.err = x->err;
}

static void on_line_cb(void *ud, enum proc_stream stream, const char *text, size_t len) {
  run *x = ud;
  if (x->nlines == x->cap) {
    x->cap = x->cap ? x->cap * 2 : 16;
    x->lines = realloc(x->lines, x->cap * sizeof *x->lines);
  }
  line *l = &x->lines[x->nlines++];
  l->stream = stream;
  l->text = malloc(len + 1);
  memcpy(l->text, text, len);
  l->text[len] = '\0';
  l->len = len;
}

static void run_free(run *x) {
  for (size_t i = 0; i < x->nlines; i++)
    free(x->lines[i].text);
  free(x->lines);
  free(x->out);
  free(x->err);
  memset(x, 0, sizeof *x);
}

static void wait_done(fixture *f, run *x) {
  while (!x->done)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(x->done, 1);
}

static int start(fixture *f, run *x, proc_opts *o) {
  char err[256];
  o->on_exit = on_exit_cb;
  o->ud = x;
  return proc_spawn(&f->mgr, o, &x->p, err, sizeof err);
}

static void sh(fixture *f, run *x, const char *script, proc_opts *o) {
  const char *argv[] = {"/bin/sh", "-c", script, NULL};
  proc_opts dflt = {0};
  if (!o)
    o = &dflt;
  o->argv = argv;
  assert_int_equal(start(f, x, o), 0);
  wait_done(f, x);
}

/* A process is gone once it is missing or a zombie (reparented, waiting for init). */
static int alive(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *fp = fopen(path, "r");
  if (!fp)
    return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  char *rp = strrchr(buf, ')');
  return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

static void test_exit_codes(void **state) {
  fixture *f = *state;
  run x = {0};
  sh(f, &x, "exit 0", NULL);
  assert_false(x.r.signaled);
  assert_int_equal(x.r.exit_status, 0);
  run_free(&x);
  sh(f, &x, "echo out; echo err >&2; exit 42", NULL);
  assert_int_equal(x.r.exit_status, 42);
  assert_string_equal(x.out, "out\n");
  assert_string_equal(x.err, "err\n");
  assert_false(x.r.timed_out);
  assert_false(x.r.truncated);
  run_free(&x);
  /* PATH lookup (the parent's PATH, env has none), argv passed verbatim, no shell */
  const char *argv[] = {"printf", "%s|", "a b", "$HOME", "*", NULL};
  proc_opts o = {.argv = argv};
  assert_int_equal(start(f, &x, &o), 0);
  wait_done(f, &x);
  assert_int_equal(x.r.exit_status, 0);
  assert_string_equal(x.out, "a b|$HOME|*|");
  run_free(&x);
}

static void test_signals(void **state) {
  fixture *f = *state;
  run x = {0};
  sh(f, &x, "kill -TERM $$", NULL);
  assert_true(x.r.signaled);
  assert_int_equal(x.r.term_signal, SIGTERM);
  run_free(&x);
  /* proc_kill with an explicit signal reaches the child */
  const char *argv[] = {"sleep", "30", NULL};
  proc_opts o = {.argv = argv};
  assert_int_equal(start(f, &x, &o), 0);
  assert_true(proc_pid(x.p) > 0);
  assert_int_equal(proc_kill(x.p, SIGUSR1), 0);
  wait_done(f, &x);
  assert_true(x.r.signaled);
  assert_int_equal(x.r.term_signal, SIGUSR1);
  assert_false(x.r.timed_out);
  run_free(&x);
  /* proc_kill(0): the polite signal first (SIGINT by default) */
  assert_int_equal(start(f, &x, &o), 0);
  assert_int_equal(proc_kill(x.p, 0), 0);
  wait_done(f, &x);
  assert_int_equal(x.r.term_signal, SIGINT);
  run_free(&x);
}

static pid_t first_pid(const char *out) { return (pid_t)strtol(out, NULL, 10); }

static void test_timeout_polite_first(void **state) {
  fixture *f = *state;
  run x = {0};
  /* The child handles SIGINT (like claude ending its turn) and exits on its own. */
  proc_opts o = {.timeout_ms = 100, .kill_grace_ms = 5000};
  uint64_t t0 = uv_hrtime();
  sh(f, &x, "trap 'echo interrupted; exit 0' INT; echo started; "
            "while :; do sleep 0.02; done", &o);
  assert_true(x.r.timed_out);
  assert_false(x.r.signaled);
  assert_int_equal(x.r.exit_status, 0);
  assert_string_equal(x.out, "started\ninterrupted\n");
  assert_true(uv_hrtime() - t0 < 3000000000ULL); /* did not need the grace period */
  run_free(&x);
}

static void test_timeout_kills_grandchildren(void **state) {
  fixture *f = *state;
  run x = {0};
  /* The child and its sleeping grandchild ignore SIGINT and SIGTERM (ignored signals are
   * inherited), and the grandchild holds stdout open: only SIGKILL to the whole group
   * ends it, and completion has to wait for the grandchild's end of the pipe. */
  proc_opts o = {.timeout_ms = 100, .kill_grace_ms = 100};
  uint64_t t0 = uv_hrtime();
  sh(f, &x, "trap '' INT TERM; sleep 30 & echo $!; while :; do sleep 0.02; done", &o);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  assert_true(x.r.timed_out);
  assert_true(x.r.signaled);
  assert_int_equal(x.r.term_signal, SIGKILL);
  assert_true(ms >= 300 && ms < 5000);
  pid_t gc = first_pid(x.out);
  assert_true(gc > 0);
  for (int i = 0; i < 100 && alive(gc); i++)
    usleep(10000);
  assert_false(alive(gc));
  run_free(&x);

  /* A grandchild that catches SIGINT dies with the SIGTERM step. */
  o = (proc_opts){.timeout_ms = 100, .kill_grace_ms = 100};
  sh(f, &x, "sleep 30 & echo $!; wait", &o);
  assert_true(x.r.timed_out);
  gc = first_pid(x.out);
  for (int i = 0; i < 100 && alive(gc); i++)
    usleep(10000);
  assert_false(alive(gc));
  run_free(&x);
}

static void test_leader_exit_kills_rest_of_group(void **state) {
  fixture *f = *state;
  run x = {0};
  /* The child exits at once, leaving a background grandchild holding stdout. */
  uint64_t t0 = uv_hrtime();
  sh(f, &x, "sleep 30 & echo $!", NULL);
  assert_true(uv_hrtime() - t0 < 3000000000ULL);
  assert_int_equal(x.r.exit_status, 0);
  pid_t gc = first_pid(x.out);
  for (int i = 0; i < 100 && alive(gc); i++)
    usleep(10000);
  assert_false(alive(gc));
  run_free(&x);
}

static void test_escaped_descendant_cannot_hold_completion(void **state) {
  fixture *f = *state;
  run x = {0};
  /* setsid puts the grandchild out of the group; it keeps the pipes. Completion comes
   * kill_grace after the exit anyway. */
  proc_opts o = {.kill_grace_ms = 200};
  const char *argv[] = {"/bin/sh", "-c", "setsid sleep 3 & echo $!", NULL};
  o.argv = argv;
  assert_int_equal(start(f, &x, &o), 0);
  uint64_t t0 = uv_hrtime();
  wait_done(f, &x);
  assert_true(uv_hrtime() - t0 < 2500000000ULL);
  assert_int_equal(x.r.exit_status, 0);
  pid_t gc = first_pid(x.out);
  if (gc > 0)
    kill(gc, SIGKILL);
  run_free(&x);
}

static char *pattern(size_t n) {
  char *s = malloc(n);
  for (size_t i = 0; i < n; i++)
    s[i] = (char)('a' + (i * 7 + i / 4099) % 26);
  s[n - 1] = '\n';
  return s;
}

static void test_big_io_both_ways(void **state) {
  fixture *f = *state;
  run x = {0};
  enum { N = 10 * 1000 * 1000 };
  char *in = pattern(N);
  /* cat echoes 10 MB while 10 MB more go to stderr: stdin must be written while both
   * pipes are read, or the three of them block. */
  proc_opts o = {.stdin_data = in, .stdin_len = N};
  sh(f, &x, "head -c 10000000 /dev/zero >&2 & cat; wait", &o);
  assert_int_equal(x.r.exit_status, 0);
  assert_int_equal(x.r.out_len, N);
  assert_memory_equal(x.out, in, N);
  assert_int_equal(x.r.err_len, 10000000);
  assert_false(x.r.truncated);
  run_free(&x);
  free(in);
}

static void test_max_output(void **state) {
  fixture *f = *state;
  run x = {0};
  proc_opts o = {.max_output = 1000};
  sh(f, &x, "head -c 100000 /dev/zero; echo e >&2", &o);
  assert_int_equal(x.r.exit_status, 0);
  assert_int_equal(x.r.out_len, 1000);
  assert_int_equal(x.r.err_len, 2); /* per stream */
  assert_true(x.r.truncated);
  run_free(&x);
  /* kill_on_max_output stops an endless writer */
  const char *argv[] = {"yes", NULL};
  o = (proc_opts){.argv = argv, .max_output = 1 << 20, .kill_on_max_output = true};
  assert_int_equal(start(f, &x, &o), 0);
  wait_done(f, &x);
  assert_true(x.r.truncated);
  assert_true(x.r.signaled);
  assert_int_equal(x.r.term_signal, SIGINT);
  assert_int_equal(x.r.out_len, 1 << 20);
  run_free(&x);
}

static void test_line_splitting(void **state) {
  fixture *f = *state;
  run x = {0};
  proc_opts o = {.on_line = on_line_cb};
  sh(f, &x, "printf 'a\\nbb\\n\\nccc'; printf 'e1\\ne2' >&2", &o);
  size_t nout = 0, nerr = 0;
  const char *want_out[] = {"a", "bb", "", "ccc"}, *want_err[] = {"e1", "e2"};
  for (size_t i = 0; i < x.nlines; i++) {
    if (x.lines[i].stream == PROC_STDOUT) {
      assert_true(nout < 4);
      assert_string_equal(x.lines[i].text, want_out[nout++]);
    } else {
      assert_int_equal(x.lines[i].stream, PROC_STDERR);
      assert_true(nerr < 2);
      assert_string_equal(x.lines[i].text, want_err[nerr++]);
    }
  }
  assert_int_equal(nout, 4);
  assert_int_equal(nerr, 2);
  assert_string_equal(x.out, "a\nbb\n\nccc"); /* kept output is untouched */
  run_free(&x);

  /* a line of 6 MB arrives whole, between ordinary lines */
  o = (proc_opts){.on_line = on_line_cb};
  sh(f, &x, "echo first; head -c 6000000 /dev/zero | tr '\\0' x; echo; echo last", &o);
  assert_int_equal(x.nlines, 3);
  assert_string_equal(x.lines[0].text, "first");
  assert_int_equal(x.lines[1].len, 6000000);
  assert_int_equal(x.lines[1].text[0], 'x');
  assert_int_equal(x.lines[1].text[5999999], 'x');
  assert_string_equal(x.lines[2].text, "last");
  run_free(&x);

  /* a line longer than max_output is cut to it; the next line is whole */
  o = (proc_opts){.on_line = on_line_cb, .max_output = 1000};
  sh(f, &x, "head -c 5000 /dev/zero | tr '\\0' y; echo; echo ok", &o);
  assert_int_equal(x.nlines, 2);
  assert_int_equal(x.lines[0].len, 1000);
  assert_string_equal(x.lines[1].text, "ok");
  assert_true(x.r.truncated);
  run_free(&x);
}

static void test_spawn_failures(void **state) {
  fixture *f = *state;
  run x = {0};
  char err[256];
  const char *argv[] = {"no-such-program-here", NULL};
  proc_opts o = {.argv = argv, .on_exit = on_exit_cb, .ud = &x};
  int rc = proc_spawn(&f->mgr, &o, &x.p, err, sizeof err);
  assert_int_equal(rc, UV_ENOENT);
  assert_non_null(strstr(err, "spawn: ENOENT"));
  assert_non_null(strstr(err, "no-such-program-here"));
  const char *argv2[] = {"/nonexistent/bin/tool", NULL};
  o.argv = argv2;
  assert_int_equal(proc_spawn(&f->mgr, &o, &x.p, err, sizeof err), UV_ENOENT);
  assert_non_null(strstr(err, "/nonexistent/bin/tool"));
  const char *argv3[] = {"true", NULL};
  o.argv = argv3;
  o.cwd = "/nonexistent/project/dir";
  assert_int_equal(proc_spawn(&f->mgr, &o, &x.p, err, sizeof err), UV_ENOENT);
  assert_non_null(strstr(err, "spawn: ENOENT"));
  assert_non_null(strstr(err, "/nonexistent/project/dir"));
  /* not a directory */
  o.cwd = "/bin/sh";
  assert_int_equal(proc_spawn(&f->mgr, &o, &x.p, err, sizeof err), UV_ENOTDIR);
  /* exec itself fails (a directory): uv_spawn's own error path, handles closed */
  const char *argv4[] = {"/tmp", NULL};
  o.argv = argv4;
  o.cwd = NULL;
  rc = proc_spawn(&f->mgr, &o, &x.p, err, sizeof err);
  assert_int_equal(rc, UV_EACCES);
  assert_non_null(strstr(err, "spawn: EACCES"));
  assert_non_null(strstr(err, "/tmp"));
  /* a failed spawn never completes */
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(x.done, 0);
  assert_int_equal(proc_mgr_count(&f->mgr), 0);
}

static void test_cwd(void **state) {
  fixture *f = *state;
  run x = {0};
  char dir[] = "/tmp/cc-proc-cwd-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char *real = realpath(dir, NULL);
  proc_opts o = {.cwd = dir};
  sh(f, &x, "pwd -P", &o);
  char want[PATH_MAX + 2];
  snprintf(want, sizeof want, "%s\n", real);
  assert_string_equal(x.out, want);
  run_free(&x);
  rmdir(dir);
  free(real);
}

static void test_environment_isolation(void **state) {
  fixture *f = *state;
  run x = {0};
  setenv("DISCORD_TOKEN", "parent-secret", 1);
  /* no env given: the child gets an empty environment */
  const char *argv[] = {"/usr/bin/env", NULL};
  proc_opts o = {.argv = argv};
  assert_int_equal(start(f, &x, &o), 0);
  wait_done(f, &x);
  assert_int_equal(x.r.exit_status, 0);
  assert_string_equal(x.out, "");
  run_free(&x);
  /* exactly what is given, nothing else */
  const char *env[] = {"A=1", "PATH=/usr/bin:/bin", NULL};
  o = (proc_opts){.argv = argv, .env = env};
  assert_int_equal(start(f, &x, &o), 0);
  wait_done(f, &x);
  assert_string_equal(x.out, "A=1\nPATH=/usr/bin:/bin\n");
  assert_null(strstr(x.out, "parent-secret"));
  run_free(&x);
  /* passed on purpose, it is seen */
  const char *env2[] = {"DISCORD_TOKEN=given", NULL};
  o = (proc_opts){.argv = argv, .env = env2};
  assert_int_equal(start(f, &x, &o), 0);
  wait_done(f, &x);
  assert_string_equal(x.out, "DISCORD_TOKEN=given\n");
  run_free(&x);
  unsetenv("DISCORD_TOKEN");
}

static void test_stdin_streaming(void **state) {
  fixture *f = *state;
  run x = {0};
  const char *argv[] = {"cat", NULL};
  proc_opts o = {.argv = argv, .keep_stdin = true, .on_line = on_line_cb};
  assert_int_equal(start(f, &x, &o), 0);
  assert_int_equal(proc_write(x.p, "one\n", 4), 0);
  while (x.nlines < 1)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_string_equal(x.lines[0].text, "one");
  assert_int_equal(proc_write(x.p, "two", 3), 0);
  proc_close_stdin(x.p);
  assert_int_equal(proc_write(x.p, "late", 4), -EPIPE);
  wait_done(f, &x);
  assert_string_equal(x.out, "one\ntwo");
  assert_int_equal(x.nlines, 2);
  run_free(&x);
  /* a child that never reads stdin: the write fails quietly (no SIGPIPE for us) */
  char *big = pattern(1 << 20);
  proc_opts o2 = {.stdin_data = big, .stdin_len = 1 << 20};
  sh(f, &x, "exit 5", &o2);
  assert_int_equal(x.r.exit_status, 5);
  run_free(&x);
  free(big);
}

static void on_line_pause(void *ud, enum proc_stream stream, const char *text, size_t len) {
  run *x = ud;
  on_line_cb(ud, stream, text, len);
  proc_pause(x->p);
}

static void test_pause_resume(void **state) {
  fixture *f = *state;
  run x = {0};
  const char *argv[] = {"/bin/sh", "-c", "echo a; sleep 0.05; echo b; echo c", NULL};
  proc_opts o = {.argv = argv, .on_line = on_line_pause, .kill_grace_ms = 50};
  assert_int_equal(start(f, &x, &o), 0);
  size_t seen = 0;
  while (!x.done) {
    uv_run(&f->loop, UV_RUN_ONCE);
    if (x.nlines > seen) {
      seen = x.nlines;
      proc_resume(x.p);
    }
  }
  /* the drain timer did not cut off output held back by the pause */
  assert_int_equal(x.nlines, 3);
  assert_string_equal(x.lines[2].text, "c");
  run_free(&x);
}

static int count_zombies(void) {
  int n = 0;
  DIR *d = opendir("/proc");
  struct dirent *e;
  while ((e = readdir(d))) {
    char path[300], buf[512];
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    FILE *fp = fopen(path, "r");
    if (!fp)
      continue;
    size_t len = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[len] = '\0';
    char *rp = strrchr(buf, ')');
    char st;
    int ppid;
    if (rp && sscanf(rp + 2, "%c %d", &st, &ppid) == 2 && st == 'Z' && ppid == getpid())
      n++;
  }
  closedir(d);
  return n;
}

static void test_no_zombie_after_1000_spawns(void **state) {
  fixture *f = *state;
  enum { N = 1000, PAR = 25 };
  static run xs[PAR];
  const char *argv[] = {"/bin/true", NULL};
  int done = 0;
  for (int base = 0; base < N; base += PAR) {
    for (int i = 0; i < PAR; i++) {
      memset(&xs[i], 0, sizeof xs[i]);
      proc_opts o = {.argv = argv};
      assert_int_equal(start(f, &xs[i], &o), 0);
    }
    for (int i = 0; i < PAR; i++) {
      wait_done(f, &xs[i]);
      assert_int_equal(xs[i].r.exit_status, 0);
      run_free(&xs[i]);
      done++;
    }
  }
  assert_int_equal(done, N);
  assert_int_equal(proc_mgr_count(&f->mgr), 0);
  assert_int_equal(count_zombies(), 0);
}

static void test_shutdown_kills_and_reaps(void **state) {
  fixture *f = *state;
  run x[3] = {{0}};
  pid_t pids[3];
  for (int i = 0; i < 3; i++) {
    const char *argv[] = {"/bin/sh", "-c", "trap '' INT TERM; sleep 30 & wait", NULL};
    proc_opts o = {.argv = argv, .timeout_ms = 60000};
    assert_int_equal(start(f, &x[i], &o), 0);
    pids[i] = proc_pid(x[i].p);
  }
  assert_int_equal(proc_mgr_count(&f->mgr), 3);
  proc_mgr_shutdown(&f->mgr);
  assert_int_equal(proc_mgr_count(&f->mgr), 0);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(x[i].done, 1); /* completed synchronously, flagged */
    assert_true(x[i].r.shutdown);
    assert_true(x[i].r.signaled);
    assert_int_equal(x[i].r.term_signal, SIGKILL);
    assert_false(alive(pids[i]));
    run_free(&x[i]);
  }
  assert_int_equal(count_zombies(), 0);
}

static void test_resolve(void **state) {
  char buf[PATH_MAX];
  assert_int_equal(proc_resolve("sh", "/nonexistent:/bin", buf, sizeof buf), 0);
  assert_string_equal(buf, "/bin/sh");
  assert_int_equal(proc_resolve("sh", "/nonexistent", buf, sizeof buf), -ENOENT);
  assert_int_equal(proc_resolve("", "/bin", buf, sizeof buf), -ENOENT);
  assert_int_equal(proc_resolve("/bin/sh", NULL, buf, sizeof buf), 0);
  /* a directory named like the program does not count */
  assert_int_equal(proc_resolve("bin", "/", buf, sizeof buf), -ENOENT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_exit_codes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_signals, setup, teardown),
    cmocka_unit_test_setup_teardown(test_timeout_polite_first, setup, teardown),
    cmocka_unit_test_setup_teardown(test_timeout_kills_grandchildren, setup, teardown),
    cmocka_unit_test_setup_teardown(test_leader_exit_kills_rest_of_group, setup, teardown),
    cmocka_unit_test_setup_teardown(test_escaped_descendant_cannot_hold_completion, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_big_io_both_ways, setup, teardown),
    cmocka_unit_test_setup_teardown(test_max_output, setup, teardown),
    cmocka_unit_test_setup_teardown(test_line_splitting, setup, teardown),
    cmocka_unit_test_setup_teardown(test_spawn_failures, setup, teardown),
    cmocka_unit_test_setup_teardown(test_cwd, setup, teardown),
    cmocka_unit_test_setup_teardown(test_environment_isolation, setup, teardown),
    cmocka_unit_test_setup_teardown(test_stdin_streaming, setup, teardown),
    cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
    cmocka_unit_test_setup_teardown(test_no_zombie_after_1000_spawns, setup, teardown),
    cmocka_unit_test_setup_teardown(test_shutdown_kills_and_reaps, setup, teardown),
    cmocka_unit_test(test_resolve),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
