/* The one libuv loop and its ready queue.
 *
 * Completions never resume work inline: they call loop_ready(), and the loop runs the
 * ready nodes from a prepare handle, i.e. after the callbacks of this iteration and
 * before it polls again. Nodes readied while a batch runs wait for the next turn, so a
 * release that wakes a waiter never runs the waiter inside the releaser. */
#ifndef CC_LOOP_H
#define CC_LOOP_H

#include <uv.h>
#include "sched_queue.h"

typedef struct loop loop;
typedef void (*loop_run_fn)(loop *l, sched_node *n);

struct loop {
  uv_loop_t uv;
  uv_prepare_t prepare; /* drains the ready queue before each poll */
  uv_idle_t idle;       /* running while work is ready: makes the poll not block */
  sched_queue ready;
  loop_run_fn run;
  void *data;           /* the owner's */
};

int loop_init(loop *l, loop_run_fn run, void *data);
void loop_ready(loop *l, sched_node *n);
/* Runs one batch of ready nodes now (what the prepare handle does). Returns the count. */
size_t loop_run_ready(loop *l);
/* Closes every handle still open on the loop, runs it until they are closed and
 * returns uv_loop_close()'s result (0 when nothing was left). */
int loop_close(loop *l);

#endif
