/* Ready queue of the task scheduler: an intrusive FIFO, pure logic (no loop, no Lua). */
#ifndef CC_SCHED_QUEUE_H
#define CC_SCHED_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sched_node {
  struct sched_node *next;
  bool queued;
} sched_node;

typedef struct sched_queue {
  sched_node *head, *tail;
  size_t len;
} sched_queue;

void sched_init(sched_queue *q);
/* Appends n; a node already queued stays where it is (returns false). */
bool sched_push(sched_queue *q, sched_node *n);
sched_node *sched_pop(sched_queue *q);
/* Unlinks n if it is queued (O(n); used only on cancellation). */
bool sched_remove(sched_queue *q, sched_node *n);

#endif
