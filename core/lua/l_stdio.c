/* core.stdio.read_line() -> line (without its newline) | nil at end of input.
 * Reads standard input on the loop (pipe, terminal or file), for the console transport.
 * One reader at a time. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "l_modules.h"
#include "l_task.h"

typedef struct stdin_reader {
  uv_loop_t *loop;
  uv_handle_type kind;
  union {
    uv_pipe_t pipe;
    uv_tty_t tty;
    uv_stream_t stream;
  } h;
  uv_fs_t fs;
  char fsbuf[65536];
  int opened, reading, eof, closed;
  char *buf;     /* bytes received, not yet returned */
  size_t len, cap;
  task *waiter;
} stdin_reader;

static const char READER_KEY = 's';

static int buf_append(stdin_reader *r, const char *p, size_t n) {
  if (r->len + n > r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 4096;
    while (cap < r->len + n) cap *= 2;
    char *nb = realloc(r->buf, cap);
    if (!nb) return -1;
    r->buf = nb;
    r->cap = cap;
  }
  memcpy(r->buf + r->len, p, n);
  r->len += n;
  return 0;
}

/* Pushes the next line (or nil at EOF) when one is available; returns 1 if pushed. */
static int take_line(stdin_reader *r, lua_State *co) {
  char *nl = r->len ? memchr(r->buf, '\n', r->len) : NULL;
  if (nl) {
    size_t n = (size_t)(nl - r->buf);
    size_t keep = n && r->buf[n - 1] == '\r' ? n - 1 : n;
    lua_pushlstring(co, r->buf, keep);
    memmove(r->buf, nl + 1, r->len - n - 1);
    r->len -= n + 1;
    return 1;
  }
  if (!r->eof) return 0;
  if (r->len) {
    lua_pushlstring(co, r->buf, r->len);
    r->len = 0;
  } else {
    lua_pushnil(co);
  }
  return 1;
}

static void pause_reading(stdin_reader *r);
static void resume_reading(stdin_reader *r);

static void deliver(stdin_reader *r) {
  if (!r->waiter) return;
  lua_State *co = task_thread(r->waiter);
  if (!take_line(r, co)) return;
  task *t = r->waiter;
  r->waiter = NULL;
  pause_reading(r);
  task_wake(t, 1);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(suggested);
  buf->len = buf->base ? suggested : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  stdin_reader *r = s->data;
  if (n > 0 && buf_append(r, buf->base, (size_t)n) < 0) n = UV_ENOMEM;
  if (n < 0) {
    r->eof = 1;
    uv_read_stop(s);
    r->reading = 0;
  }
  free(buf->base);
  deliver(r);
}

static void on_fs_read(uv_fs_t *req) {
  stdin_reader *r = req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  r->reading = 0;
  if (n > 0 && buf_append(r, r->fsbuf, (size_t)n) < 0) n = -1;
  if (n <= 0) r->eof = 1;
  deliver(r);
  if (r->waiter) resume_reading(r);
}

static void resume_reading(stdin_reader *r) {
  if (r->reading || r->eof || r->closed) return;
  r->reading = 1;
  if (r->kind == UV_FILE) {
    uv_buf_t b = uv_buf_init(r->fsbuf, sizeof r->fsbuf);
    r->fs.data = r;
    if (uv_fs_read(r->loop, &r->fs, 0, &b, 1, -1, on_fs_read) < 0) {
      r->reading = 0;
      r->eof = 1;
    }
  } else if (uv_read_start(&r->h.stream, on_alloc, on_read) < 0) {
    r->reading = 0;
    r->eof = 1;
  }
}

static void pause_reading(stdin_reader *r) {
  if (r->kind != UV_FILE && r->reading) {
    uv_read_stop(&r->h.stream);
    r->reading = 0;
  }
}

static void read_cancel(void *p) {
  stdin_reader *r = p;
  r->waiter = NULL;
  pause_reading(r);
}

static int open_stdin(stdin_reader *r) {
  r->kind = uv_guess_handle(STDIN_FILENO);
  int rc = 0;
  if (r->kind == UV_TTY) rc = uv_tty_init(r->loop, &r->h.tty, STDIN_FILENO, 1);
  else if (r->kind == UV_NAMED_PIPE || r->kind == UV_TCP) {
    rc = uv_pipe_init(r->loop, &r->h.pipe, 0);
    if (rc == 0) rc = uv_pipe_open(&r->h.pipe, STDIN_FILENO);
    r->kind = UV_NAMED_PIPE;
  } else r->kind = UV_FILE;
  if (rc == 0 && r->kind != UV_FILE) r->h.stream.data = r;
  r->opened = rc == 0;
  return rc;
}

static void reader_closed(uv_handle_t *h) { (void)h; }

static void close_reader(void *ud) {
  stdin_reader *r = ud;
  r->closed = 1;
  if (r->opened && r->kind != UV_FILE && !uv_is_closing((uv_handle_t *)&r->h.stream))
    uv_close((uv_handle_t *)&r->h.stream, reader_closed);
  if (r->kind == UV_FILE && r->reading) uv_cancel((uv_req_t *)&r->fs);
}

static int reader_gc(lua_State *L) {
  stdin_reader *r = lua_touserdata(L, 1);
  free(r->buf);
  r->buf = NULL;
  return 0;
}

static stdin_reader *get_reader(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &READER_KEY);
  stdin_reader *r = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (r) return r;
  r = lua_newuserdatauv(L, sizeof *r, 0);
  memset(r, 0, sizeof *r);
  lua_newtable(L);
  lua_pushcfunction(L, reader_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &READER_KEY);
  r->loop = task_uvloop(L);
  task_at_close(L, close_reader, r);
  int rc = open_stdin(r);
  if (rc < 0) luaL_error(L, "cannot read standard input: %s", uv_strerror(rc));
  return r;
}

static int l_read_line(lua_State *L) {
  task *t = task_check(L);
  stdin_reader *r = get_reader(L);
  if (r->waiter) return luaL_error(L, "another task is already reading standard input");
  if (take_line(r, L)) return 1;
  r->waiter = t;
  task_await(t, read_cancel, r);
  resume_reading(r);
  return lua_yield(L, 0);
}

int l_stdio_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"read_line", l_read_line}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
