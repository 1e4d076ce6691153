/* Tasks: each is a Lua coroutine run by the loop. The recipe for a yielding binding:
 *
 *   static int l_thing(lua_State *L) {
 *     task *t = task_check(L);              // raises unless called inside a task
 *     ...check every argument first...
 *     op *o = start_the_operation(...);     // on failure: return luaL_fileresult-style nil, msg
 *     task_await(t, op_cancel, o);          // how to undo it if the task is cancelled
 *     return lua_yield(L, 0);
 *   }
 *   // completion, from a libuv callback:
 *   lua_State *co = task_thread(t); lua_pushboolean(co, 1); task_wake(t, 1);
 *
 * task_wake() never resumes inline: the task runs from the loop's ready queue. The values
 * pushed on task_thread(t) become the results of the binding call in Lua. A cancel
 * function undoes what the operation started (stops the timer, kills the child, leaves
 * the queue) and must not wake the task: the scheduler then resumes it with
 * nil, "cancelled". */
#ifndef CC_L_TASK_H
#define CC_L_TASK_H

#include <lua.h>
#include <uv.h>

typedef struct task task;
typedef void (*task_cancel_fn)(void *op);

task *task_check(lua_State *L);
task *task_current(lua_State *L); /* NULL outside a task */
void task_await(task *t, task_cancel_fn cancel, void *op);
void task_wake(task *t, int nresults);
lua_State *task_thread(task *t);
/* Cancels t: undoes its pending operation and resumes it with nil, "cancelled". A
 * cancelled task that tries to wait again gets an error, so it unwinds. */
void task_cancel(task *t);
int task_is_cancelled(const task *t);
/* Runs fn(ud) once when t ends: it returned, failed (after its <close> variables ran)
 * or was ended by shutdown. task_off_end() removes it again (e.g. when a lock guard is
 * released normally). Returns 0, or -ENOMEM. */
int task_on_end(task *t, void (*fn)(void *ud), void *ud);
void task_off_end(task *t, void (*fn)(void *ud), void *ud);
/* The libuv loop of this Lua state's runtime. */
uv_loop_t *task_uvloop(lua_State *L);
/* Runs fn(ud) when the runtime shuts down, before its handles are closed (for example to
 * kill every child process). */
void task_at_close(lua_State *L, void (*fn)(void *ud), void *ud);

/* Starts a task running the function below the nargs values on top of L's stack; pops
 * the function and the values. Used by C event sources (signals, gateway events). */
void task_spawn(lua_State *L, int nargs);

/* Runs the loop until core.stop(); returns the exit code given to it (the executable). */
int task_runtime_run(lua_State *L);

/* Lua 5.4.4 (Debian 12) names it lua_resetthread; 5.4.6 renamed it. */
#if LUA_VERSION_RELEASE_NUM < 50406
#define cc_closethread(L, from) lua_resetthread(L)
#else
#define cc_closethread(L, from) lua_closethread(L, from)
#endif

#endif
