/* The scheduler: ready-queue order, resumption only after completion, a failing task
 * closed with its <close> guards run, and the loop closing with no handle left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

#include "l_modules.h"
#include "loop.h"
#include "sched_queue.h"

/* ---- the pure ready queue ---- */

static void test_sched_fifo(void **state) {
  (void)state;
  sched_queue q;
  sched_node n[5] = {0};
  sched_init(&q);
  for (int i = 0; i < 5; i++) assert_true(sched_push(&q, &n[i]));
  assert_false(sched_push(&q, &n[2])); /* already queued: stays in place */
  assert_int_equal(q.len, 5);
  assert_true(sched_remove(&q, &n[3]));
  assert_false(sched_remove(&q, &n[3]));
  int expect[] = {0, 1, 2, 4};
  for (int i = 0; i < 4; i++) assert_ptr_equal(sched_pop(&q), &n[expect[i]]);
  assert_null(sched_pop(&q));
  assert_int_equal(q.len, 0);
}

/* ---- the loop ---- */

typedef struct item {
  sched_node node;
  int id;
} item;

static int ran[64];
static int nran;
static loop *the_loop;
static item later;

static void record(loop *l, sched_node *n) {
  (void)l;
  item *it = (item *)n;
  ran[nran++] = it->id;
  /* Readied while a batch runs: must wait for the next turn. */
  if (it->id == 1) loop_ready(the_loop, &later.node);
}

static void test_loop_order_and_next_turn(void **state) {
  (void)state;
  loop l;
  the_loop = &l;
  nran = 0;
  assert_int_equal(loop_init(&l, record, NULL), 0);
  item a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
  later = (item){.id = 4};
  loop_ready(&l, &a.node);
  loop_ready(&l, &b.node);
  loop_ready(&l, &c.node);
  assert_int_equal(nran, 0); /* nothing runs inline */
  assert_int_equal(loop_run_ready(&l), 3);
  assert_int_equal(nran, 3);
  assert_int_equal(ran[0], 1);
  assert_int_equal(ran[1], 2);
  assert_int_equal(ran[2], 3);
  uv_run(&l.uv, UV_RUN_ONCE);
  assert_int_equal(nran, 4);
  assert_int_equal(ran[3], 4);
  assert_int_equal(loop_close(&l), 0);
}

typedef struct timed {
  uv_timer_t timer;
  loop *l;
  item it;
  int fired;
} timed;

static void on_timer(uv_timer_t *h) {
  timed *t = h->data;
  t->fired = nran + 1;
  loop_ready(t->l, &t->it.node);
  uv_close((uv_handle_t *)h, NULL);
}

static void test_resumed_only_after_completion(void **state) {
  (void)state;
  loop l;
  nran = 0;
  assert_int_equal(loop_init(&l, record, NULL), 0);
  timed t = {.l = &l, .it = {.id = 7}};
  uv_timer_init(&l.uv, &t.timer);
  t.timer.data = &t;
  uv_timer_start(&t.timer, on_timer, 5, 0);
  uv_run(&l.uv, UV_RUN_DEFAULT);
  assert_int_equal(t.fired, 1);
  assert_int_equal(nran, 1);
  assert_int_equal(ran[0], 7);
  assert_int_equal(loop_close(&l), 0);
}

/* ---- tasks, through the real Lua module ---- */

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "core", luaopen_core, 0);
  lua_pop(L, 1);
  return L;
}

static void run_lua(lua_State *L, const char *code) {
  if (luaL_dostring(L, code) != LUA_OK) fail_msg("lua: %s", lua_tostring(L, -1));
}

static void test_task_error_runs_close_guards(void **state) {
  (void)state;
  lua_State *L = new_state();
  run_lua(L,
          "local core = require 'core'\n"
          "closed, other = false, false\n"
          "local ok, err = pcall(core.run, function()\n"
          "  core.spawn(function() core.sleep(0.01); other = true end)\n"
          "  local guard <close> = setmetatable({}, {__close = function() closed = true end})\n"
          "  core.sleep(0.001)\n"
          "  error('boom')\n"
          "end)\n"
          "failed_ok, failed_err = ok, err\n");
  lua_getglobal(L, "closed");
  assert_true(lua_toboolean(L, -1));
  lua_getglobal(L, "other"); /* the sibling still ran to completion */
  assert_true(lua_toboolean(L, -1));
  lua_getglobal(L, "failed_ok");
  assert_false(lua_toboolean(L, -1));
  lua_getglobal(L, "failed_err");
  assert_non_null(strstr(lua_tostring(L, -1), "boom"));
  assert_non_null(strstr(lua_tostring(L, -1), "stack traceback"));
  lua_close(L);
}

static void test_task_results_and_order(void **state) {
  (void)state;
  lua_State *L = new_state();
  run_lua(L,
          "local core = require 'core'\n"
          "order = {}\n"
          "a, b = core.run(function(x)\n"
          "  for i = 1, 3 do core.spawn(function() order[#order + 1] = i end) end\n"
          "  order[#order + 1] = 0\n" /* the spawner runs on before the spawned start */
          "  return x * 2, 'done'\n"
          "end, 21)\n"
          "seq = table.concat(order, ',')\n");
  lua_getglobal(L, "a");
  assert_int_equal(lua_tointeger(L, -1), 42);
  lua_getglobal(L, "seq");
  assert_string_equal(lua_tostring(L, -1), "0,1,2,3");
  lua_close(L);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sched_fifo),
      cmocka_unit_test(test_loop_order_and_next_turn),
      cmocka_unit_test(test_resumed_only_after_completion),
      cmocka_unit_test(test_task_error_runs_close_guards),
      cmocka_unit_test(test_task_results_and_order),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
