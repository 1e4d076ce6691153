#include "sched_queue.h"

void sched_init(sched_queue *q) {
  q->head = q->tail = NULL;
  q->len = 0;
}

bool sched_push(sched_queue *q, sched_node *n) {
  if (n->queued) return false;
  n->next = NULL;
  n->queued = true;
  if (q->tail) q->tail->next = n;
  else q->head = n;
  q->tail = n;
  q->len++;
  return true;
}

sched_node *sched_pop(sched_queue *q) {
  sched_node *n = q->head;
  if (!n) return NULL;
  q->head = n->next;
  if (!q->head) q->tail = NULL;
  n->next = NULL;
  n->queued = false;
  q->len--;
  return n;
}

bool sched_remove(sched_queue *q, sched_node *n) {
  if (!n->queued) return false;
  sched_node *prev = NULL;
  for (sched_node *it = q->head; it; prev = it, it = it->next) {
    if (it != n) continue;
    if (prev) prev->next = n->next;
    else q->head = n->next;
    if (q->tail == n) q->tail = prev;
    n->next = NULL;
    n->queued = false;
    q->len--;
    return true;
  }
  return false;
}
