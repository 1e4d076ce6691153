/* core.proc: child processes (the mechanism is core/proc.c).
 *
 *   local h, err = core.proc.spawn{argv = {...}, cwd =, env =, stdin =, timeout =,
 *                                  kill_grace =, max_output =, kill_on_max_output =,
 *                                  stop_signal =, on_line = function(stream, line) end}
 *   h.pid
 *   h:wait()  -> {code =, signal =, stdout =, stderr =, timed_out =, truncated =}
 *              | nil, "cancelled"
 *   h:kill([signal])  -> true | nil, "exited"   (no signal: the polite escalation)
 *   h:write(data) / h:close_stdin()             (with stdin = true)
 *   core.proc.run{...} = spawn, then wait
 *
 * - argv runs without a shell; env is the child's whole environment (a map
 *   {NAME = "value"} and/or a list of "NAME=value"; nothing is inherited); stdin is a
 *   string written then closed, or true for a pipe kept open for h:write().
 * - timeout, kill_grace (default 5) in seconds; stop_signal (default "INT") is the polite
 *   signal, then SIGTERM, then SIGKILL kill_grace apart, to the whole process group.
 * - code is the exit status (absent when killed by a signal), signal the signal number.
 * - on_line(stream, line), stream "stdout" or "stderr", runs in the task that calls
 *   wait(), in order, between the waits: it may yield (e.g. to edit a Discord message).
 *   While it is busy, lines queue; beyond 8 MiB queued, reading pauses (the child then
 *   blocks on a full pipe) until the queue drains. So with on_line, wait() for the
 *   handle. If on_line raises, the child is stopped (as h:kill()), its remaining lines
 *   are dropped, and wait() raises the error.
 * - Cancelling the task that waits stops the child (the polite escalation) and wait()
 *   returns nil, "cancelled". On shutdown every child is killed and reaped.
 * - A spawn failure is nil, "spawn: ENOENT: program not found: name" (or "... no such
 *   directory: cwd"). */
#include <errno.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "l_modules.h"
#include "l_task.h"
#include "log.h"
#include "proc.h"

#define HANDLE_MT "core.proc.handle"
#define QUEUE_HIGH ((size_t)8 << 20)
#define QUEUE_LOW ((size_t)1 << 20)

static const char PROCRT_KEY = 'p';

typedef struct procrt {
  proc_mgr mgr;
  int refs; /* the module and every live pstate */
  int closed;
} procrt;

/* The C side of a handle: outlives the Lua box while the child runs, and the child's
 * completion when the box is still referenced. */
typedef struct pstate {
  procrt *rt;
  proc *p;          /* NULL once completed */
  lua_State *L;     /* the main thread: callbacks reach the registry through it */
  int self_ref;     /* anchors the box while the child runs */
  int queue_ref;    /* lines waiting for on_line: {stream, line, stream, line, ...} */
  lua_Integer qhead, qtail;
  size_t qbytes;
  int paused;
  int discard;      /* nobody will consume lines any more: drop them */
  int result_ref;
  task *waiter;
  int box_alive;
  int done;
  pid_t pid;
} pstate;

typedef struct box {
  pstate *s;
} box;

static const struct {
  const char *name;
  int sig;
} signals[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
               {"TERM", SIGTERM}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"STOP", SIGSTOP},
               {"CONT", SIGCONT}};

static int check_signal(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, idx);
    luaL_argcheck(L, n > 0 && n < 65, idx, "not a signal number");
    return (int)n;
  }
  const char *name = luaL_checkstring(L, idx);
  if (strncmp(name, "SIG", 3) == 0)
    name += 3;
  for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
    if (strcmp(signals[i].name, name) == 0)
      return signals[i].sig;
  return luaL_argerror(L, idx, "unknown signal name");
}

static void rt_unref(procrt *rt) {
  if (--rt->refs == 0)
    free(rt);
}

static void pstate_free(pstate *s) {
  if (!s->rt->closed) { /* at shutdown the registry is left alone */
    luaL_unref(s->L, LUA_REGISTRYINDEX, s->queue_ref);
    luaL_unref(s->L, LUA_REGISTRYINDEX, s->result_ref);
  }
  rt_unref(s->rt);
  free(s);
}

/* ---- from the child ---- */

static void push_stream(lua_State *L, enum proc_stream st) {
  if (st == PROC_STDOUT)
    lua_pushliteral(L, "stdout");
  else
    lua_pushliteral(L, "stderr");
}

static void line_arrived(void *ud, enum proc_stream st, const char *line, size_t len) {
  pstate *s = ud;
  if (s->discard)
    return;
  if (s->waiter) {
    task *t = s->waiter;
    s->waiter = NULL;
    lua_State *co = task_thread(t);
    lua_checkstack(co, 3);
    lua_pushliteral(co, "line");
    push_stream(co, st);
    lua_pushlstring(co, line, len);
    task_wake(t, 3);
    return;
  }
  lua_State *L = s->L;
  lua_checkstack(L, 3);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->queue_ref);
  push_stream(L, st);
  lua_rawseti(L, -2, ++s->qtail);
  lua_pushlstring(L, line, len);
  lua_rawseti(L, -2, ++s->qtail);
  lua_pop(L, 1);
  s->qbytes += len + 1;
  if (!s->paused && s->qbytes > QUEUE_HIGH) {
    s->paused = 1;
    proc_pause(s->p);
  }
}

static void child_exited(void *ud, const proc_result *r) {
  pstate *s = ud;
  s->p = NULL;
  s->done = 1;
  if (r->shutdown) {
    if (!s->box_alive)
      pstate_free(s);
    return;
  }
  lua_State *L = s->L;
  lua_checkstack(L, 3);
  lua_createtable(L, 0, 6);
  if (r->signaled) {
    lua_pushinteger(L, r->term_signal);
    lua_setfield(L, -2, "signal");
  } else {
    lua_pushinteger(L, (lua_Integer)r->exit_status);
    lua_setfield(L, -2, "code");
  }
  lua_pushlstring(L, r->out, r->out_len);
  lua_setfield(L, -2, "stdout");
  lua_pushlstring(L, r->err, r->err_len);
  lua_setfield(L, -2, "stderr");
  lua_pushboolean(L, r->timed_out);
  lua_setfield(L, -2, "timed_out");
  lua_pushboolean(L, r->truncated);
  lua_setfield(L, -2, "truncated");
  s->result_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (s->waiter) { /* it waits only with no line queued */
    task *t = s->waiter;
    s->waiter = NULL;
    lua_State *co = task_thread(t);
    lua_checkstack(co, 2);
    lua_pushliteral(co, "done");
    lua_rawgeti(co, LUA_REGISTRYINDEX, s->result_ref);
    task_wake(t, 2);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, s->self_ref); /* the box may go now */
  s->self_ref = LUA_NOREF;
}

/* ---- handle ---- */

static pstate *check_handle(lua_State *L, int idx) {
  return ((box *)luaL_checkudata(L, idx, HANDLE_MT))->s;
}

/* The consumer gave up (its task was cancelled, or on_line raised): stop the child,
 * and drop queued and future lines so a paused pipe cannot keep it from completing. */
static void abandon(pstate *s) {
  s->waiter = NULL;
  s->discard = 1;
  if (s->queue_ref != LUA_NOREF) {
    luaL_unref(s->L, LUA_REGISTRYINDEX, s->queue_ref);
    lua_newtable(s->L);
    s->queue_ref = luaL_ref(s->L, LUA_REGISTRYINDEX);
  }
  s->qhead = s->qtail = 0;
  s->qbytes = 0;
  if (s->p) {
    proc_kill(s->p, 0);
    if (s->paused) {
      s->paused = 0;
      proc_resume(s->p);
    }
  }
}

static void next_cancel(void *op) { abandon(op); }

static int l_abandon(lua_State *L) {
  abandon(check_handle(L, 1));
  return 0;
}

/* _next(h) -> "line", stream, line | "done", result; yields while there is neither. */
static int l_next(lua_State *L) {
  pstate *s = check_handle(L, 1);
  task *t = task_check(L);
  if (s->qhead < s->qtail) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->queue_ref);
    lua_pushliteral(L, "line");
    for (int i = 0; i < 2; i++) {
      lua_rawgeti(L, -2 - i, ++s->qhead);
      lua_pushnil(L);
      lua_rawseti(L, -4 - i, s->qhead);
    }
    size_t len = lua_rawlen(L, -1);
    s->qbytes -= len + 1 < s->qbytes ? len + 1 : s->qbytes;
    if (s->qhead == s->qtail)
      s->qhead = s->qtail = 0;
    if (s->paused && s->qbytes < QUEUE_LOW && s->p) {
      s->paused = 0;
      proc_resume(s->p);
    }
    return 3;
  }
  if (s->done) {
    lua_pushliteral(L, "done");
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->result_ref);
    return 2;
  }
  if (s->waiter)
    return luaL_error(L, "this process is already waited for by another task");
  s->waiter = t;
  task_await(t, next_cancel, s);
  return lua_yield(L, 0);
}

static int l_on_line_of(lua_State *L) {
  luaL_checkudata(L, 1, HANDLE_MT);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int l_kill(lua_State *L) {
  pstate *s = check_handle(L, 1);
  int sig = lua_isnoneornil(L, 2) ? 0 : check_signal(L, 2);
  if (!s->p || proc_kill(s->p, sig) < 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "exited");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_write(lua_State *L) {
  pstate *s = check_handle(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int rc = s->p ? proc_write(s->p, data, len) : -EPIPE;
  if (rc < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "write: %s", uv_err_name(rc));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_close_stdin(lua_State *L) {
  pstate *s = check_handle(L, 1);
  if (s->p)
    proc_close_stdin(s->p);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_handle_index(lua_State *L) {
  pstate *s = check_handle(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "pid") == 0) {
    lua_pushinteger(L, s->pid);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int l_handle_gc(lua_State *L) {
  box *b = luaL_checkudata(L, 1, HANDLE_MT);
  pstate *s = b->s;
  if (!s)
    return 0;
  b->s = NULL;
  s->box_alive = 0;
  if (s->done)
    pstate_free(s);
  /* else: only at lua_close (the box is anchored while the child runs); the shutdown
   * completion frees s */
  return 0;
}

static int l_handle_tostring(lua_State *L) {
  pstate *s = check_handle(L, 1);
  lua_pushfstring(L, "process %d (%s)", (int)s->pid, s->done ? "done" : "running");
  return 1;
}

/* ---- spawn ---- */

static const char **string_list(lua_State *L, int tbl, const char *what, size_t *n_out) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, tbl);
  const char **v = lua_newuserdatauv(L, sizeof *v * (size_t)(n + 1), 0);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, tbl, i) != LUA_TSTRING)
      luaL_error(L, "core.proc.spawn: %s[%d] must be a string", what, (int)i);
    v[i - 1] = lua_tostring(L, -1); /* kept alive by the table */
    lua_pop(L, 1);
  }
  v[n] = NULL;
  if (n_out)
    *n_out = (size_t)n;
  return v;
}

/* env: {NAME = "value"} and/or {"NAME=value"}; leaves a scratch table holding the
 * strings and the array userdata on the stack. */
static const char **env_list(lua_State *L, int tbl) {
  lua_newtable(L);
  int scratch = lua_gettop(L);
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, tbl)) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "core.proc.spawn: env.%s must be a string", lua_tostring(L, -2));
      const char *k = lua_tostring(L, -2);
      if (!*k || strchr(k, '='))
        luaL_error(L, "core.proc.spawn: bad env name '%s'", k);
      lua_pushfstring(L, "%s=%s", k, lua_tostring(L, -1));
    } else if (lua_type(L, -2) == LUA_TNUMBER && lua_type(L, -1) == LUA_TSTRING) {
      if (!strchr(lua_tostring(L, -1), '='))
        luaL_error(L, "core.proc.spawn: env entry '%s' is not NAME=value", lua_tostring(L, -1));
      lua_pushvalue(L, -1);
    } else {
      luaL_error(L, "core.proc.spawn: env must map names to strings or list NAME=value");
    }
    lua_rawseti(L, scratch, ++n);
    lua_pop(L, 1);
  }
  return string_list(L, scratch, "env", NULL);
}

static double opt_seconds(lua_State *L, int tbl, const char *name) {
  double v = 0;
  if (lua_getfield(L, tbl, name) != LUA_TNIL) {
    if (!lua_isnumber(L, -1))
      luaL_error(L, "core.proc.spawn: %s must be a number of seconds", name);
    v = lua_tonumber(L, -1);
    if (!(v >= 0 && v <= 1e9))
      luaL_error(L, "core.proc.spawn: %s must be between 0 and 1e9 seconds", name);
  }
  lua_pop(L, 1);
  return v;
}

static int l_spawn(lua_State *L) {
  procrt *rt = lua_touserdata(L, lua_upvalueindex(1));
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  proc_opts o = {0};

  if (lua_getfield(L, 1, "argv") != LUA_TTABLE)
    return luaL_error(L, "core.proc.spawn: argv must be a list of strings");
  size_t argc;
  o.argv = string_list(L, lua_gettop(L), "argv", &argc);
  if (argc == 0)
    return luaL_error(L, "core.proc.spawn: argv is empty");

  int t = lua_getfield(L, 1, "cwd");
  if (t != LUA_TNIL && t != LUA_TSTRING)
    return luaL_error(L, "core.proc.spawn: cwd must be a string");
  o.cwd = lua_tostring(L, -1);

  t = lua_getfield(L, 1, "env");
  if (t == LUA_TTABLE)
    o.env = env_list(L, lua_gettop(L));
  else if (t != LUA_TNIL)
    return luaL_error(L, "core.proc.spawn: env must be a table");

  t = lua_getfield(L, 1, "stdin");
  if (t == LUA_TSTRING)
    o.stdin_data = lua_tolstring(L, -1, &o.stdin_len);
  else if (t == LUA_TBOOLEAN)
    o.keep_stdin = lua_toboolean(L, -1);
  else if (t != LUA_TNIL)
    return luaL_error(L, "core.proc.spawn: stdin must be a string or true");

  o.timeout_ms = (uint64_t)(opt_seconds(L, 1, "timeout") * 1000.0 + 0.5);
  o.kill_grace_ms = (uint64_t)(opt_seconds(L, 1, "kill_grace") * 1000.0 + 0.5);
  if (lua_getfield(L, 1, "max_output") != LUA_TNIL) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) <= 0)
      return luaL_error(L, "core.proc.spawn: max_output must be a positive integer");
    o.max_output = (size_t)lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "kill_on_max_output");
  o.kill_on_max_output = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "stop_signal") != LUA_TNIL)
    o.polite_signal = check_signal(L, lua_gettop(L));
  lua_pop(L, 1);
  t = lua_getfield(L, 1, "on_line");
  if (t != LUA_TNIL && t != LUA_TFUNCTION)
    return luaL_error(L, "core.proc.spawn: on_line must be a function");
  int on_line_idx = lua_gettop(L);
  if (rt->closed)
    return luaL_error(L, "core.proc: the runtime is shutting down");

  /* Every check is done: from here nothing raises before the box owns s. */
  box *b = lua_newuserdatauv(L, sizeof *b, 1);
  b->s = NULL;
  luaL_setmetatable(L, HANDLE_MT);
  lua_pushvalue(L, on_line_idx);
  lua_setiuservalue(L, -2, 1);
  pstate *s = calloc(1, sizeof *s);
  if (!s)
    return luaL_error(L, "out of memory");
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  s->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  s->rt = rt;
  s->self_ref = s->queue_ref = s->result_ref = LUA_NOREF;
  o.on_exit = child_exited;
  o.on_line = lua_isfunction(L, on_line_idx) ? line_arrived : NULL;
  o.ud = s;
  char err[512];
  int rc = proc_spawn(&rt->mgr, &o, &s->p, err, sizeof err);
  if (rc < 0) {
    free(s);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  rt->refs++;
  b->s = s;
  s->box_alive = 1;
  s->pid = proc_pid(s->p);
  lua_newtable(L);
  s->queue_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static void proc_at_close(void *ud) {
  procrt *rt = ud;
  rt->closed = 1;
  proc_mgr_shutdown(&rt->mgr);
  rt_unref(rt);
}

/* wait() and run() in Lua, so on_line can yield without C continuations. */
static const char WAIT_SRC[] =
    "local next_event, on_line_of, abandon, spawn = ...\n"
    "local setmetatable = setmetatable\n"
    "-- Whatever ends a wait early (on_line raising, the task cancelled while on_line\n"
    "-- waits for something else) stops the child and drops its remaining lines.\n"
    "local closer_mt = { __close = function(c) if not c.finished then abandon(c.h) end end }\n"
    "local function wait(h)\n"
    "  local on_line = on_line_of(h)\n"
    "  local closer <close> = setmetatable({ h = h }, closer_mt)\n"
    "  while true do\n"
    "    local kind, a, b = next_event(h)\n"
    "    if kind == 'line' then\n"
    "      if on_line then on_line(a, b) end\n"
    "    elseif kind == 'done' then\n"
    "      closer.finished = true\n"
    "      return a\n"
    "    else\n"
    "      return nil, a\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local function run(opts)\n"
    "  local h, err = spawn(opts)\n"
    "  if not h then return nil, err end\n"
    "  return wait(h)\n"
    "end\n"
    "return wait, run\n";

int l_proc_open(lua_State *L) {
  /* One set of children per Lua state, however often the module is opened. */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &PROCRT_KEY);
  procrt *rt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!rt) {
    rt = calloc(1, sizeof *rt);
    if (!rt)
      return luaL_error(L, "out of memory");
    proc_mgr_init(&rt->mgr, task_uvloop(L));
    rt->refs = 1;
    task_at_close(L, proc_at_close, rt);
    lua_pushlightuserdata(L, rt);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &PROCRT_KEY);
  }

  lua_newtable(L); /* the module */
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, l_spawn, 1);
  int spawn = lua_gettop(L);

  static const luaL_Reg methods[] = {{"kill", l_kill},
                                     {"write", l_write},
                                     {"close_stdin", l_close_stdin},
                                     {NULL, NULL}};
  luaL_newlib(L, methods);
  int mt_methods = lua_gettop(L);
  if (luaL_loadbuffer(L, WAIT_SRC, sizeof WAIT_SRC - 1, "=core.proc") != LUA_OK)
    return lua_error(L);
  lua_pushcfunction(L, l_next);
  lua_pushcfunction(L, l_on_line_of);
  lua_pushcfunction(L, l_abandon);
  lua_pushvalue(L, spawn);
  lua_call(L, 4, 2); /* wait, run */
  lua_setfield(L, spawn - 1, "run");
  lua_setfield(L, mt_methods, "wait");

  if (luaL_newmetatable(L, HANDLE_MT)) {
    lua_pushvalue(L, mt_methods);
    lua_pushcclosure(L, l_handle_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_handle_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_handle_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 2); /* metatable, methods */
  lua_setfield(L, -2, "spawn");
  return 1;
}
