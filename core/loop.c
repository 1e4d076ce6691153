#include "loop.h"

static void on_prepare(uv_prepare_t *h) { loop_run_ready(h->data); }
static void on_idle(uv_idle_t *h) { (void)h; /* its only job is to keep the poll from blocking */ }

int loop_init(loop *l, loop_run_fn run, void *data) {
  int rc = uv_loop_init(&l->uv);
  if (rc < 0) return rc;
  sched_init(&l->ready);
  l->run = run;
  l->data = data;
  uv_prepare_init(&l->uv, &l->prepare);
  uv_idle_init(&l->uv, &l->idle);
  l->prepare.data = l->idle.data = l;
  uv_prepare_start(&l->prepare, on_prepare);
  /* The prepare handle alone must not keep the loop alive. */
  uv_unref((uv_handle_t *)&l->prepare);
  return 0;
}

void loop_ready(loop *l, sched_node *n) {
  if (sched_push(&l->ready, n) && !uv_is_active((uv_handle_t *)&l->idle))
    uv_idle_start(&l->idle, on_idle);
}

size_t loop_run_ready(loop *l) {
  /* Only what was ready when the batch began: work readied now runs next turn. */
  size_t batch = l->ready.len, done = 0;
  while (done < batch) {
    sched_node *n = sched_pop(&l->ready);
    if (!n) break;
    done++;
    l->run(l, n);
  }
  if (l->ready.len == 0) uv_idle_stop(&l->idle);
  return done;
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int loop_close(loop *l) {
  /* Handles owned by other modules should be closed by them first (their close
   * callbacks free memory); whatever is left is closed here without a callback. */
  uv_walk(&l->uv, close_any, NULL);
  uv_run(&l->uv, UV_RUN_DEFAULT);
  return uv_loop_close(&l->uv);
}
