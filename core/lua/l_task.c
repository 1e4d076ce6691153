/* Tasks: Lua coroutines scheduled by the loop (see l_task.h for the binding recipe).
 *
 * A task is a full userdata (its C state) whose user value is its coroutine. While the
 * task lives it is anchored in the registry; when it ends it is unanchored, so a Lua
 * handle to it stays valid for as long as Lua holds it. */
#include "l_task.h"

#include <lauxlib.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l_modules.h"
#include "log.h"
#include "loop.h"

#define TASK_MT "core.task"
#define CPU_HOOK_COUNT 1000
#define CANCELLED_ERROR "cancelled"

typedef struct group {
  size_t live;      /* tasks of this group not yet finished */
  task *root;
  int results_ref;  /* table of the root's results, or LUA_NOREF */
  int error_ref;    /* the root's error (with traceback), or LUA_NOREF */
} group;

typedef struct closer {
  void (*fn)(void *ud);
  void *ud;
} closer;

typedef struct runtime {
  loop loop;
  lua_State *L;        /* the main state */
  task *tasks;         /* every live task, newest first */
  size_t ntasks;
  uint64_t cpu_budget_ns; /* 0: no budget */
  closer *closers;
  int nclosers;
  int threads_ref;     /* weak table: coroutine -> task (light userdata) */
  int exit_code;
  int in_run;          /* inside core.run */
  int closed;
} runtime;

typedef struct end_hook {
  void (*fn)(void *ud);
  void *ud;
} end_hook;

struct task {
  sched_node node;
  end_hook *end_hooks; /* malloc'd, run by task_finish */
  int nend_hooks;
  runtime *rt;
  lua_State *co;
  int ref;             /* registry anchor while alive */
  int nargs;           /* values waiting on co for the next resume */
  task_cancel_fn cancel;
  void *op;
  group *group;
  task *prev, *next;
  uint64_t resumed_at;
  char name[64];
  unsigned started : 1, waiting : 1, cancelled : 1, cancel_seen : 1, done : 1;
};

static const char RUNTIME_KEY = 'r';

/* ---- runtime lookup ------------------------------------------------------------ */

static runtime *rt_get(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &RUNTIME_KEY);
  runtime *rt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!rt) luaL_error(L, "core runtime not initialised");
  return rt;
}

uv_loop_t *task_uvloop(lua_State *L) { return &rt_get(L)->loop.uv; }

void task_at_close(lua_State *L, void (*fn)(void *ud), void *ud) {
  runtime *rt = rt_get(L);
  closer *c = realloc(rt->closers, sizeof *c * (size_t)(rt->nclosers + 1));
  if (!c) luaL_error(L, "out of memory");
  rt->closers = c;
  c[rt->nclosers++] = (closer){fn, ud};
}

task *task_current(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &RUNTIME_KEY);
  runtime *rt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!rt) return NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->threads_ref);
  lua_pushthread(L);
  lua_rawget(L, -2);
  task *t = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return t;
}

task *task_check(lua_State *L) {
  task *t = task_current(L);
  if (!t) luaL_error(L, "this operation waits, so it must run inside a task (core.spawn or core.run)");
  if (t->cancelled && t->cancel_seen) luaL_error(L, CANCELLED_ERROR);
  return t;
}

lua_State *task_thread(task *t) { return t->co; }
int task_is_cancelled(const task *t) { return t->cancelled; }

/* ---- scheduling ---------------------------------------------------------------- */

void task_await(task *t, task_cancel_fn cancel, void *op) {
  t->waiting = 1;
  t->cancel = cancel;
  t->op = op;
  /* Cancelled while it was running: the wait it starts now ends at once. */
  if (t->cancelled && !t->cancel_seen) {
    t->cancelled = 0;
    task_cancel(t);
  }
}

void task_wake(task *t, int nresults) {
  t->waiting = 0;
  t->cancel = NULL;
  t->op = NULL;
  t->nargs = nresults;
  loop_ready(&t->rt->loop, &t->node);
}

void task_cancel(task *t) {
  if (t->done || t->cancelled) return;
  t->cancelled = 1;
  if (!t->waiting) return; /* ready or running: it sees the flag at its next wait */
  if (t->cancel) t->cancel(t->op);
  lua_State *co = t->co;
  lua_pushnil(co);
  lua_pushliteral(co, CANCELLED_ERROR);
  t->cancel_seen = 1;
  task_wake(t, 2);
}

static void cpu_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  task *t = task_current(L);
  if (!t || !t->rt->cpu_budget_ns) return;
  uint64_t spent = uv_hrtime() - t->resumed_at;
  if (spent > t->rt->cpu_budget_ns) {
    char msg[96];
    snprintf(msg, sizeof msg, "cpu budget exceeded: ran %.1f s without yielding", (double)spent / 1e9);
    luaL_error(L, "%s", msg);
  }
}

int task_on_end(task *t, void (*fn)(void *ud), void *ud) {
  end_hook *h = realloc(t->end_hooks, sizeof *h * (size_t)(t->nend_hooks + 1));
  if (!h) return -ENOMEM;
  t->end_hooks = h;
  h[t->nend_hooks++] = (end_hook){fn, ud};
  return 0;
}

void task_off_end(task *t, void (*fn)(void *ud), void *ud) {
  for (int i = 0; i < t->nend_hooks; i++)
    if (t->end_hooks[i].fn == fn && t->end_hooks[i].ud == ud) {
      t->end_hooks[i] = t->end_hooks[--t->nend_hooks];
      return;
    }
}

static void run_end_hooks(task *t) {
  end_hook *h = t->end_hooks;
  int n = t->nend_hooks;
  t->end_hooks = NULL;
  t->nend_hooks = 0;
  for (int i = 0; i < n; i++) h[i].fn(h[i].ud);
  free(h);
}

static void task_finish(task *t) {
  runtime *rt = t->rt;
  lua_State *L = t->co; /* still usable after it ended; keeps other stacks untouched */
  t->done = 1;
  run_end_hooks(t);
  if (t->prev) t->prev->next = t->next;
  else rt->tasks = t->next;
  if (t->next) t->next->prev = t->prev;
  rt->ntasks--;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->threads_ref);
  lua_pushthread(L);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  if (t->group) t->group->live--;
  luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
  t->ref = LUA_NOREF;
}

static void task_failed(task *t) {
  lua_State *co = t->co;
  lua_pushvalue(co, -1);
  int original = luaL_ref(co, LUA_REGISTRYINDEX);
  const char *msg = lua_tostring(co, -1);
  int cancelled = msg && strstr(msg, CANCELLED_ERROR) && t->cancelled;
  if (!msg) msg = lua_typename(co, lua_type(co, -1));
  luaL_traceback(co, co, msg, 0);
  const char *trace = lua_tostring(co, -1);
  if (cancelled) log_debug("task", "task %s ended: cancelled", t->name);
  else log_error("task", "task %s failed: %s", t->name, trace);
  if (t->group && t->group->root == t) {
    lua_pushvalue(co, -1);
    t->group->error_ref = luaL_ref(co, LUA_REGISTRYINDEX);
  }
  lua_pop(co, 1); /* the traceback: leave the error itself on top */
  /* Close the coroutine so its pending <close> variables run (locks are released). It
   * reports the original error again unless a __close handler raised another one. */
  if (cc_closethread(co, t->rt->L) != LUA_OK) {
    lua_rawgeti(co, LUA_REGISTRYINDEX, original);
    if (!lua_rawequal(co, -1, -2))
      log_error("task", "task %s: error while closing: %s", t->name, lua_tostring(co, -2));
  }
  luaL_unref(co, LUA_REGISTRYINDEX, original);
}

static void task_resume(loop *l, sched_node *n) {
  (void)l;
  task *t = (task *)((char *)n - offsetof(task, node));
  if (t->done) return;
  lua_State *co = t->co;
  int nres = 0;
  t->started = 1;
  t->resumed_at = uv_hrtime();
  int status = lua_resume(co, t->rt->L, t->nargs, &nres);
  t->nargs = 0;
  if (status == LUA_YIELD) {
    lua_pop(co, nres);
    /* A bare coroutine.yield() from the task body gives way: run again next turn. */
    if (!t->waiting) loop_ready(&t->rt->loop, &t->node);
    return;
  }
  if (status == LUA_OK) {
    if (t->group && t->group->root == t) {
      lua_createtable(co, nres, 1);
      lua_insert(co, -(nres + 1));
      for (int i = nres; i >= 1; i--) lua_rawseti(co, -(i + 1), i);
      lua_pushinteger(co, nres);
      lua_setfield(co, -2, "n");
      t->group->results_ref = luaL_ref(co, LUA_REGISTRYINDEX);
    }
  } else {
    task_failed(t);
  }
  task_finish(t);
}

/* Creates a task running the function at index `fn` with the `nargs` values on top of
 * L's stack (which it pops), and leaves the task handle on the stack. */
static task *task_new(lua_State *L, runtime *rt, int fn, int nargs, group *g) {
  fn = lua_absindex(L, fn);
  task *t = lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, TASK_MT);
  lua_State *co = lua_newthread(L);
  lua_setiuservalue(L, -2, 1);
  t->rt = rt;
  t->co = co;
  t->group = g;
  if (g) g->live++;

  lua_Debug ar;
  lua_pushvalue(L, fn);
  lua_getinfo(L, ">S", &ar);
  snprintf(t->name, sizeof t->name, "%s:%d", ar.short_src, ar.linedefined);

  lua_pushvalue(L, fn);
  lua_xmove(L, co, 1);
  lua_rotate(L, -(nargs + 1), 1); /* the handle below the arguments */
  lua_xmove(L, co, nargs);
  t->nargs = nargs;
  if (rt->cpu_budget_ns) lua_sethook(co, cpu_hook, LUA_MASKCOUNT, CPU_HOOK_COUNT);

  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->threads_ref);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_pushlightuserdata(L, t);
  lua_rawset(L, -3);
  lua_pop(L, 1);

  lua_pushvalue(L, -1);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  t->next = rt->tasks;
  if (rt->tasks) rt->tasks->prev = t;
  rt->tasks = t;
  rt->ntasks++;
  loop_ready(&rt->loop, &t->node);
  return t;
}

/* ---- core.spawn / core.run ----------------------------------------------------- */

static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  runtime *rt = rt_get(L);
  task *parent = task_current(L);
  task_new(L, rt, 1, lua_gettop(L) - 1, parent ? parent->group : NULL);
  return 1;
}

void task_spawn(lua_State *L, int nargs) {
  runtime *rt = rt_get(L);
  task *parent = task_current(L);
  task_new(L, rt, -(nargs + 1), nargs, parent ? parent->group : NULL);
  lua_pop(L, 2); /* the handle and the function */
}

static void cancel_group(runtime *rt, group *g) {
  for (task *t = rt->tasks; t; t = t->next)
    if (t->group == g) task_cancel(t);
}

static int l_run(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  runtime *rt = rt_get(L);
  if (rt->in_run || task_current(L)) return luaL_error(L, "core.run cannot be called inside a task");
  group g = {0, NULL, LUA_NOREF, LUA_NOREF};
  task_new(L, rt, 1, lua_gettop(L) - 1, &g);
  g.root = lua_touserdata(L, -1);
  rt->in_run = 1;
  int deadlock = 0;
  while (g.live > 0) {
    int alive = uv_run(&rt->loop.uv, UV_RUN_ONCE);
    if (!alive && rt->loop.ready.len == 0 && g.live > 0) {
      /* Nothing can wake the remaining tasks (e.g. waiting for a lock never released). */
      deadlock = 1;
      cancel_group(rt, &g);
      while (rt->loop.ready.len) loop_run_ready(&rt->loop);
      break;
    }
  }
  rt->in_run = 0;
  /* Detach stragglers so the stack-allocated group is not touched again. */
  for (task *t = rt->tasks; t; t = t->next)
    if (t->group == &g) t->group = NULL;
  if (g.error_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, g.error_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, g.error_ref);
    if (g.results_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, g.results_ref);
    return lua_error(L);
  }
  if (deadlock && g.results_ref == LUA_NOREF)
    return luaL_error(L, "core.run: the task is waiting for something that can never happen");
  lua_rawgeti(L, LUA_REGISTRYINDEX, g.results_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, g.results_ref);
  lua_getfield(L, -1, "n");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n, "too many results");
  int tbl = lua_gettop(L);
  for (int i = 1; i <= n; i++) lua_rawgeti(L, tbl, i);
  return n;
}

/* ---- core.sleep / core.now ----------------------------------------------------- */

typedef struct sleep_op {
  uv_timer_t timer;
  task *t;
} sleep_op;

static void sleep_closed(uv_handle_t *h) { free(h->data); }

static void sleep_fired(uv_timer_t *h) {
  sleep_op *op = h->data;
  lua_pushboolean(task_thread(op->t), 1);
  task_wake(op->t, 1);
  uv_close((uv_handle_t *)h, sleep_closed);
}

static void sleep_cancel(void *p) {
  sleep_op *op = p;
  uv_timer_stop(&op->timer);
  uv_close((uv_handle_t *)&op->timer, sleep_closed);
}

static int l_sleep(lua_State *L) {
  task *t = task_check(L);
  lua_Number s = luaL_checknumber(L, 1);
  luaL_argcheck(L, s >= 0, 1, "must be a non-negative number of seconds");
  sleep_op *op = malloc(sizeof *op);
  if (!op) return luaL_error(L, "out of memory");
  op->t = t;
  uv_timer_init(&t->rt->loop.uv, &op->timer);
  op->timer.data = op;
  uv_timer_start(&op->timer, sleep_fired, (uint64_t)(s * 1000.0 + 0.5), 0);
  task_await(t, sleep_cancel, op);
  return lua_yield(L, 0);
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

/* ---- task handles -------------------------------------------------------------- */

static task *check_task(lua_State *L) { return luaL_checkudata(L, 1, TASK_MT); }

static int l_task_cancel(lua_State *L) {
  task_cancel(check_task(L));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_task_status(lua_State *L) {
  task *t = check_task(L);
  lua_pushstring(L, t->done ? "done" : t->waiting ? "waiting" : t->started ? "ready" : "new");
  return 1;
}

static int l_task_tostring(lua_State *L) {
  task *t = check_task(L);
  lua_pushfstring(L, "task (%s)", t->name);
  return 1;
}

/* ---- runtime control ----------------------------------------------------------- */

static int l_tasks(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)rt_get(L)->ntasks);
  return 1;
}

/* Ends a task that is not running: undoes its pending operation and closes its
 * coroutine, so its <close> variables run; it never resumes. */
static void task_kill(task *t) {
  if (t->done) return;
  if (t->waiting && t->cancel) t->cancel(t->op);
  t->waiting = 0;
  t->cancel = NULL;
  sched_remove(&t->rt->loop.ready, &t->node);
  if (cc_closethread(t->co, t->rt->L) != LUA_OK)
    log_error("task", "task %s: error while closing: %s", t->name, lua_tostring(t->co, -1));
  log_debug("task", "task %s ended by shutdown", t->name);
  task_finish(t);
}

/* Ends every task but the caller (the last step of a shutdown). */
static int l_kill_all(lua_State *L) {
  runtime *rt = rt_get(L);
  task *self = task_current(L);
  task *t = rt->tasks;
  while (t) {
    task *next = t->next;
    if (t != self) task_kill(t);
    t = next;
  }
  return 0;
}

static int l_set_cpu_budget(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  luaL_argcheck(L, s >= 0, 1, "must be >= 0 (0 turns the budget off)");
  rt_get(L)->cpu_budget_ns = (uint64_t)(s * 1e9);
  return 0;
}

/* Ends the loop of the executable with an exit code (core.run is unaffected). */
static int l_stop(lua_State *L) {
  runtime *rt = rt_get(L);
  rt->exit_code = (int)luaL_optinteger(L, 1, 0);
  uv_stop(&rt->loop.uv);
  return 0;
}

static void run_closers(runtime *rt) {
  closer *c = rt->closers;
  int n = rt->nclosers;
  rt->closers = NULL;
  rt->nclosers = 0;
  for (int i = n - 1; i >= 0; i--) c[i].fn(c[i].ud);
  free(c);
}

/* Leaves at once: shutdown hooks (children killed), then _exit. */
static int l_exit(lua_State *L) {
  int code = (int)luaL_optinteger(L, 1, 1);
  run_closers(rt_get(L));
  fflush(stderr);
  fflush(stdout);
  _Exit(code);
}

/* ---- runtime life cycle -------------------------------------------------------- */

int task_runtime_run(lua_State *L) {
  runtime *rt = rt_get(L);
  uv_run(&rt->loop.uv, UV_RUN_DEFAULT);
  return rt->exit_code;
}

static int runtime_gc(lua_State *L) {
  runtime *rt = lua_touserdata(L, 1);
  if (rt->closed) return 0;
  rt->closed = 1;
  /* Undo every pending operation so each frees its memory, then close the loop. */
  for (task *t = rt->tasks; t; t = t->next) {
    if (t->waiting && t->cancel) {
      t->cancel(t->op);
      t->cancel = NULL;
    }
    free(t->end_hooks);
    t->end_hooks = NULL;
    t->nend_hooks = 0;
  }
  run_closers(rt);
  int rc = loop_close(&rt->loop);
  if (rc != 0) log_warn("task", "event loop closed with handles still open (%s)", uv_strerror(rc));
  return 0;
}

int l_task_open(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &RUNTIME_KEY);
  int have = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (!have) {
    runtime *rt = lua_newuserdatauv(L, sizeof *rt, 0);
    memset(rt, 0, sizeof *rt);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    rt->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    int rc = loop_init(&rt->loop, task_resume, rt);
    if (rc < 0) return luaL_error(L, "could not create the event loop: %s", uv_strerror(rc));
    rt->cpu_budget_ns = 2000000000ull;
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    rt->threads_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    lua_pushcfunction(L, runtime_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &RUNTIME_KEY);

    static const luaL_Reg methods[] = {{"cancel", l_task_cancel},
                                       {"status", l_task_status},
                                       {NULL, NULL}};
    luaL_newmetatable(L, TASK_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_task_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
  }
  static const luaL_Reg funcs[] = {{"spawn", l_spawn},         {"run", l_run},
                                   {"sleep", l_sleep},         {"now", l_now},
                                   {"tasks", l_tasks},         {"kill_all", l_kill_all},
                                   {"set_cpu_budget", l_set_cpu_budget},
                                   {"stop", l_stop},           {"exit", l_exit},
                                   {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
