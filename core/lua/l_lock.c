/* core.lock: per-key FIFO locks between tasks (the mechanism is core/chanlock.c).
 *
 *   local guard <close> = core.lock.acquire(key, {timeout = s, slots = n})
 *       -> guard | nil, "timeout" | nil, "cancelled"
 *       (slots: up to n tasks hold the key at once, a FIFO counting semaphore; default 1)
 *   guard:release()            -- idempotent; also on <close>, on __gc
 *   guard:held()               -> bool
 *   core.lock.with(key, fn, opts) -> true, ...fn's results | nil, "timeout" | nil, "cancelled"
 *                                 (fn runs under pcall; the lock is released, then fn's
 *                                 error, if any, is raised again)
 *   core.lock.state(key)       -> {held = bool, holders = n, waiting = n}
 *   core.lock.count()          -> keys in use (held or waited for)
 *
 * A free key is taken without yielding. A release hands the key to the oldest waiter at
 * once (no barging) and wakes it through the ready queue, never inline. timeout = 0 is a
 * try-lock. The same task acquiring a key it holds raises an error.
 *
 * Owners are the tasks' coroutines; a guard keeps its coroutine alive (user value), so an
 * owner is never confused with a later task. A guard its task forgot to release (no
 * <close>, no release()) is released when that task ends, or by __gc. */
#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "chanlock.h"
#include "l_modules.h"
#include "l_task.h"
#include "log.h"

#define GUARD_MT "core.lock.guard"

static const char LOCKRT_KEY = 'l';

typedef struct lockrt {
  chanlock cl;
  uv_loop_t *loop;
  int refs;   /* the module and every guard */
  int closed; /* the runtime shut down: nothing is woken any more */
} lockrt;

typedef struct waitop {
  uv_timer_t timer;
  struct guard *g;
} waitop;

/* The C side of a guard, malloc'd: a waiting task's cancel hook points here, and that
 * must stay valid even if the Lua box is finalized first (at lua_close). */
typedef struct guard {
  chanlock_req req;
  lockrt *rt;
  task *t;        /* the waiting task */
  task *holder;   /* the task holding the key, while it does */
  waitop *w;      /* its timeout, while waiting */
  int self_ref;   /* anchors the box while it waits */
  lua_State *L;   /* a state to reach the registry from callbacks */
  int boxed;      /* the Lua box still refers to it */
} guard;

typedef struct box {
  guard *g;
} box;

static void rt_unref(lockrt *rt) {
  if (--rt->refs == 0) {
    chanlock_close(&rt->cl);
    free(rt);
  }
}

static void guard_free(guard *g) {
  lockrt *rt = g->rt;
  free(g);
  rt_unref(rt);
}

static void waitop_closed(uv_handle_t *h) { free(h->data); }

static void stop_timeout(guard *g) {
  if (g->w) {
    g->w->g = NULL;
    uv_timer_stop(&g->w->timer);
    uv_close((uv_handle_t *)&g->w->timer, waitop_closed);
    g->w = NULL;
  }
}

static void guard_release(guard *g);

/* The holder ended without releasing (no <close>, no release()): free the key now, so
 * the tasks waiting for it go on. */
static void holder_ended(void *ud) {
  guard *g = ud;
  g->holder = NULL;
  log_warn("lock", "a task ended holding a lock without releasing it; released");
  guard_release(g);
}

static void hold(guard *g, task *t) {
  if (task_on_end(t, holder_ended, g) == 0) g->holder = t;
}

/* The waiter got the key: resume its task with the guard. */
static void grant(guard *g) {
  stop_timeout(g);
  task *t = g->t;
  g->t = NULL;
  hold(g, t);
  lua_State *co = task_thread(t);
  lua_checkstack(co, 1);
  lua_rawgeti(co, LUA_REGISTRYINDEX, g->self_ref);
  luaL_unref(co, LUA_REGISTRYINDEX, g->self_ref);
  g->self_ref = LUA_NOREF;
  task_wake(t, 1);
}

static void guard_release(guard *g) {
  if (g->holder) {
    task_off_end(g->holder, holder_ended, g);
    g->holder = NULL;
  }
  if (g->req.state != CHANLOCK_HELD || g->rt->closed)
    return;
  chanlock_req *next = chanlock_release(&g->rt->cl, &g->req);
  if (next)
    grant(next->data);
}

/* Leaves the queue without waking the task (the caller wakes it, or the scheduler does). */
static void leave_queue(guard *g) {
  stop_timeout(g);
  if (g->req.state == CHANLOCK_WAITING && !g->rt->closed)
    chanlock_remove(&g->rt->cl, &g->req);
  g->t = NULL;
  if (g->self_ref != LUA_NOREF) {
    luaL_unref(g->L, LUA_REGISTRYINDEX, g->self_ref);
    g->self_ref = LUA_NOREF;
  }
}

static void timeout_fired(uv_timer_t *h) {
  waitop *w = h->data;
  guard *g = w->g;
  if (!g)
    return;
  task *t = g->t;
  leave_queue(g);
  lua_State *co = task_thread(t);
  lua_checkstack(co, 2);
  lua_pushnil(co);
  lua_pushliteral(co, "timeout");
  task_wake(t, 2);
}

static void wait_cancel(void *op) {
  guard *g = op;
  leave_queue(g);
  if (!g->boxed) /* the box was finalized while this task waited (lua_close) */
    guard_free(g);
}

static lockrt *rt_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

static guard *check_guard(lua_State *L) {
  return ((box *)luaL_checkudata(L, 1, GUARD_MT))->g;
}

static int l_acquire(lua_State *L) {
  lockrt *rt = rt_of(L);
  size_t len;
  const char *key = luaL_checklstring(L, 1, &len);
  double timeout = -1;
  lua_Integer slots = 1;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "timeout") != LUA_TNIL) {
      luaL_argcheck(L, lua_isnumber(L, -1), 2, "timeout must be a number of seconds");
      timeout = lua_tonumber(L, -1);
      luaL_argcheck(L, timeout >= 0 && timeout <= 1e9, 2, "timeout must be 0 to 1e9 seconds");
    }
    if (lua_getfield(L, 2, "slots") != LUA_TNIL) {
      luaL_argcheck(L, lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1, 2,
                    "slots must be an integer >= 1");
      slots = lua_tointeger(L, -1);
    }
    lua_pop(L, 2);
  }
  task *t = task_check(L);
  if (rt->closed)
    return luaL_error(L, "core.lock: the runtime is shutting down");
  for (chanlock_req *h = chanlock_holder(&rt->cl, key, len); h; h = h->next)
    if (h->owner == L)
      return luaL_error(L, "core.lock.acquire: this task already holds lock '%s'", key);

  box *b = lua_newuserdatauv(L, sizeof *b, 2);
  b->g = NULL;
  lua_pushthread(L); /* the owner stays alive as long as the guard */
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 2);
  luaL_setmetatable(L, GUARD_MT);
  guard *g = calloc(1, sizeof *g);
  waitop *w = timeout > 0 ? malloc(sizeof *w) : NULL;
  if (!g || (timeout > 0 && !w)) {
    free(g);
    free(w);
    return luaL_error(L, "out of memory");
  }
  g->self_ref = LUA_NOREF;
  g->L = L;
  g->rt = rt;
  chanlock_req_init(&g->req, L, g);
  int rc = chanlock_acquire_slots(&rt->cl, &g->req, key, len, (size_t)slots);
  if (rc < 0) { /* -ENOMEM: -EDEADLK was ruled out above */
    free(g);
    free(w);
    return luaL_error(L, "core.lock.acquire: %s", rc == -ENOMEM ? "out of memory" : "failed");
  }
  rt->refs++;
  g->boxed = 1;
  b->g = g;
  if (rc == CHANLOCK_GRANTED) {
    free(w);
    hold(g, t);
    return 1;
  }
  if (timeout == 0) {
    chanlock_remove(&rt->cl, &g->req);
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  if (w) {
    w->g = g;
    uv_timer_init(rt->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, timeout_fired, (uint64_t)(timeout * 1000.0 + 0.5), 0);
    g->w = w;
  }
  g->t = t;
  g->self_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the box */
  task_await(t, wait_cancel, g);
  return lua_yield(L, 0);
}

static int l_guard_release(lua_State *L) {
  guard *g = check_guard(L);
  if (g)
    guard_release(g);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_guard_held(lua_State *L) {
  guard *g = check_guard(L);
  lua_pushboolean(L, g && g->req.state == CHANLOCK_HELD && !g->rt->closed);
  return 1;
}

static int l_guard_gc(lua_State *L) {
  box *b = luaL_checkudata(L, 1, GUARD_MT);
  guard *g = b->g;
  if (!g)
    return 0;
  b->g = NULL;
  g->boxed = 0;
  if (g->req.state == CHANLOCK_HELD && !g->rt->closed) {
    lua_getiuservalue(L, 1, 2);
    const char *key = lua_tostring(L, -1);
    log_warn("lock", "lock '%s' released by the garbage collector: use <close> or with()",
             key ? key : "?");
    guard_release(g);
  }
  if (g->t) {
    /* Still waiting: only at lua_close, when every finalizer runs. Leave the queue now;
     * the task's cancel hook frees g when the runtime cancels it. */
    stop_timeout(g);
    if (g->req.state == CHANLOCK_WAITING && !g->rt->closed)
      chanlock_remove(&g->rt->cl, &g->req);
    return 0;
  }
  guard_free(g);
  return 0;
}

static int l_guard_tostring(lua_State *L) {
  guard *g = check_guard(L);
  lua_getiuservalue(L, 1, 2);
  lua_pushfstring(L, "lock guard (%s, %s)", lua_tostring(L, -1),
                  g && g->req.state == CHANLOCK_HELD ? "held" : "released");
  return 1;
}

static int l_state(lua_State *L) {
  lockrt *rt = rt_of(L);
  size_t len;
  const char *key = luaL_checklstring(L, 1, &len);
  bool held;
  size_t waiting;
  chanlock_state(&rt->cl, key, len, &held, &waiting);
  lua_createtable(L, 0, 3);
  lua_pushboolean(L, held);
  lua_setfield(L, -2, "held");
  lua_pushinteger(L, (lua_Integer)chanlock_holders(&rt->cl, key, len));
  lua_setfield(L, -2, "holders");
  lua_pushinteger(L, (lua_Integer)waiting);
  lua_setfield(L, -2, "waiting");
  return 1;
}

static int l_count(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)chanlock_count(&rt_of(L)->cl));
  return 1;
}

static void lock_at_close(void *ud) {
  lockrt *rt = ud;
  rt->closed = 1;
  rt_unref(rt);
}

/* with() in Lua: pcall across yields is native in 5.4. */
static const char WITH_SRC[] =
    "local acquire = ...\n"
    "local pack, unpack = table.pack, table.unpack\n"
    "return function(key, fn, opts)\n"
    "  if type(fn) ~= 'function' then\n"
    "    error(\"bad argument #2 to 'with' (function expected, got \" .. type(fn) .. ')', 2)\n"
    "  end\n"
    "  local guard, err = acquire(key, opts)\n"
    "  if not guard then return nil, err end\n"
    "  local r = pack(pcall(fn))\n"
    "  guard:release()\n"
    "  if not r[1] then error(r[2], 0) end\n"
    "  return true, unpack(r, 2, r.n)\n"
    "end\n";

int l_lock_open(lua_State *L) {
  if (luaL_newmetatable(L, GUARD_MT)) {
    static const luaL_Reg methods[] = {{"release", l_guard_release},
                                       {"held", l_guard_held},
                                       {NULL, NULL}};
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_guard_release);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_guard_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_guard_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);

  /* One lock table per Lua state, however often the module is opened. */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &LOCKRT_KEY);
  lockrt *rt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!rt) {
    rt = calloc(1, sizeof *rt);
    if (!rt)
      return luaL_error(L, "out of memory");
    chanlock_init(&rt->cl);
    rt->loop = task_uvloop(L);
    rt->refs = 1;
    task_at_close(L, lock_at_close, rt);
    lua_pushlightuserdata(L, rt);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LOCKRT_KEY);
  }

  static const luaL_Reg funcs[] = {
      {"acquire", l_acquire}, {"state", l_state}, {"count", l_count}, {NULL, NULL}};
  luaL_newlibtable(L, funcs);
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, funcs, 1);
  if (luaL_loadbuffer(L, WITH_SRC, sizeof WITH_SRC - 1, "=core.lock.with") != LUA_OK)
    return lua_error(L);
  lua_getfield(L, -2, "acquire");
  lua_call(L, 1, 1);
  lua_setfield(L, -2, "with");
  return 1;
}
