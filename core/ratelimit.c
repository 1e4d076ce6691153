/* Discord rate-limit scheduler: see ratelimit.h. Pure logic: no I/O, no clock. */
#include "ratelimit.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { ST_IDLE = 0, ST_QUEUED, ST_INFLIGHT };

#define INVALID_SLOTS 60
#define SWEEP_EVERY 60.0
#define IDLE_FOR 120.0

struct rate_bucket {
  char *key;   /* "hash|major", or "?route|major" while the hash is unknown */
  char *route; /* "METHOD /template" */
  char *major;
  rate_bucket *hnext;         /* hash chain */
  rate_bucket *anext, *aprev; /* list of buckets with a queue */
  bool active;
  bool temp;      /* the route's hash is unknown */
  bool learned;   /* rate-limit headers seen at least once (or none exist) */
  bool unlimited; /* the route answers without rate-limit headers */
  bool expired;   /* the window ran out locally; its stale responses are ignored */
  bool window_epoch;
  rate_req *qhead, *qtail;
  rate_req *ihead, *itail;
  int inflight;
  int limit, remaining;
  double reset_at;     /* monotonic */
  double window;       /* X-RateLimit-Reset of the current window (or an estimate) */
  double paused_until; /* bucket 429 */
  unsigned long seq;
  double last_used;
};

typedef struct map_ent {
  char *key;
  char *val;
  struct map_ent *next;
} map_ent;

struct rate_limiter {
  rate_config cfg;
  /* buckets, chained hash table */
  rate_bucket **tab;
  size_t tab_len, nbuckets;
  /* route -> hash */
  map_ent **routes;
  size_t routes_len, nroutes;
  rate_bucket *ahead, *atail;
  /* global limit: a sliding window over the last dispatch times (a ring) */
  double *gtimes;
  size_t gcap, ghead, glen;
  double global_paused_until;
  /* invalid requests */
  long inv_slot_id[INVALID_SLOTS];
  int inv_slot_count[INVALID_SLOTS];
  bool inv_warned, inv_slowed;
  unsigned events;
  double last_sweep;
};

/* ---- small helpers ---- */

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

static bool is_digits(const char *s, size_t n) {
  if (n == 0) return false;
  for (size_t i = 0; i < n; i++)
    if (!isdigit((unsigned char)s[i])) return false;
  return true;
}

/* ---- route -> hash map ---- */

static const char *route_hash(rate_limiter *rl, const char *route) {
  for (map_ent *e = rl->routes[hash_str(route) % rl->routes_len]; e; e = e->next)
    if (strcmp(e->key, route) == 0) return e->val;
  return NULL;
}

static int route_hash_set(rate_limiter *rl, const char *route, const char *hash) {
  size_t i = hash_str(route) % rl->routes_len;
  for (map_ent *e = rl->routes[i]; e; e = e->next) {
    if (strcmp(e->key, route) == 0) {
      if (strcmp(e->val, hash) == 0) return 0;
      char *v = dup_str(hash);
      if (!v) return -ENOMEM;
      free(e->val);
      e->val = v;
      return 0;
    }
  }
  map_ent *e = calloc(1, sizeof *e);
  if (!e) return -ENOMEM;
  e->key = dup_str(route);
  e->val = dup_str(hash);
  if (!e->key || !e->val) {
    free(e->key);
    free(e->val);
    free(e);
    return -ENOMEM;
  }
  e->next = rl->routes[i];
  rl->routes[i] = e;
  rl->nroutes++;
  return 0;
}

/* ---- bucket table ---- */

static rate_bucket *bucket_find(rate_limiter *rl, const char *key) {
  for (rate_bucket *b = rl->tab[hash_str(key) % rl->tab_len]; b; b = b->hnext)
    if (strcmp(b->key, key) == 0) return b;
  return NULL;
}

static void table_grow(rate_limiter *rl) {
  size_t n = rl->tab_len * 2;
  rate_bucket **t = calloc(n, sizeof *t);
  if (!t) return; /* keep the old table: longer chains, still correct */
  for (size_t i = 0; i < rl->tab_len; i++) {
    rate_bucket *b = rl->tab[i];
    while (b) {
      rate_bucket *next = b->hnext;
      size_t j = hash_str(b->key) % n;
      b->hnext = t[j];
      t[j] = b;
      b = next;
    }
  }
  free(rl->tab);
  rl->tab = t;
  rl->tab_len = n;
}

static void table_insert(rate_limiter *rl, rate_bucket *b) {
  if (rl->nbuckets >= rl->tab_len) table_grow(rl);
  size_t i = hash_str(b->key) % rl->tab_len;
  b->hnext = rl->tab[i];
  rl->tab[i] = b;
  rl->nbuckets++;
}

static void table_remove(rate_limiter *rl, rate_bucket *b) {
  rate_bucket **p = &rl->tab[hash_str(b->key) % rl->tab_len];
  while (*p && *p != b) p = &(*p)->hnext;
  if (*p) {
    *p = b->hnext;
    rl->nbuckets--;
  }
}

static rate_bucket *bucket_new(rate_limiter *rl, const char *key, const char *route,
                             const char *major, bool temp) {
  rate_bucket *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  b->key = dup_str(key);
  b->route = dup_str(route);
  b->major = dup_str(major);
  if (!b->key || !b->route || !b->major) {
    free(b->key);
    free(b->route);
    free(b->major);
    free(b);
    return NULL;
  }
  b->temp = temp;
  table_insert(rl, b);
  return b;
}

static void bucket_free(rate_bucket *b) {
  free(b->key);
  free(b->route);
  free(b->major);
  free(b);
}

static void active_add(rate_limiter *rl, rate_bucket *b) {
  if (b->active) return;
  b->active = true;
  b->anext = NULL;
  b->aprev = rl->atail;
  if (rl->atail) rl->atail->anext = b;
  else rl->ahead = b;
  rl->atail = b;
}

static void active_remove(rate_limiter *rl, rate_bucket *b) {
  if (!b->active) return;
  if (b->aprev) b->aprev->anext = b->anext;
  else rl->ahead = b->anext;
  if (b->anext) b->anext->aprev = b->aprev;
  else rl->atail = b->aprev;
  b->active = false;
  b->anext = b->aprev = NULL;
}

/* ---- request lists ---- */

static void list_append(rate_req **head, rate_req **tail, rate_req *r) {
  r->next = NULL;
  r->prev = *tail;
  if (*tail) (*tail)->next = r;
  else *head = r;
  *tail = r;
}

static void list_prepend(rate_req **head, rate_req **tail, rate_req *r) {
  r->prev = NULL;
  r->next = *head;
  if (*head) (*head)->prev = r;
  else *tail = r;
  *head = r;
}

static void list_unlink(rate_req **head, rate_req **tail, rate_req *r) {
  if (r->prev) r->prev->next = r->next;
  else *head = r->next;
  if (r->next) r->next->prev = r->prev;
  else *tail = r->prev;
  r->next = r->prev = NULL;
}

/* ---- public: config, lifetime ---- */

void rate_config_default(rate_config *cfg) {
  cfg->global_per_second = 50;
  cfg->invalid_warn = 2500;
  cfg->invalid_slow = 5000;
  cfg->invalid_window = 600;
  cfg->global_window = 1.05;
}

rate_limiter *rate_new(const rate_config *cfg) {
  rate_limiter *rl = calloc(1, sizeof *rl);
  if (!rl) return NULL;
  if (cfg) rl->cfg = *cfg;
  else rate_config_default(&rl->cfg);
  if (rl->cfg.invalid_window <= 0) rl->cfg.invalid_window = 600;
  rl->tab_len = 64;
  rl->tab = calloc(rl->tab_len, sizeof *rl->tab);
  rl->routes_len = 64;
  rl->routes = calloc(rl->routes_len, sizeof *rl->routes);
  if (!rl->tab || !rl->routes) {
    free(rl->tab);
    free(rl->routes);
    free(rl);
    return NULL;
  }
  for (int i = 0; i < INVALID_SLOTS; i++) rl->inv_slot_id[i] = -1;
  if (rl->cfg.global_window <= 0) rl->cfg.global_window = 1.05;
  return rl;
}

void rate_free(rate_limiter *rl) {
  if (!rl) return;
  for (size_t i = 0; i < rl->tab_len; i++) {
    rate_bucket *b = rl->tab[i];
    while (b) {
      rate_bucket *next = b->hnext;
      for (rate_req *r = b->qhead; r; r = r->next) r->bucket = NULL, r->state = ST_IDLE;
      for (rate_req *r = b->ihead; r; r = r->next) r->bucket = NULL, r->state = ST_IDLE;
      bucket_free(b);
      b = next;
    }
  }
  for (size_t i = 0; i < rl->routes_len; i++) {
    map_ent *e = rl->routes[i];
    while (e) {
      map_ent *next = e->next;
      free(e->key);
      free(e->val);
      free(e);
      e = next;
    }
  }
  free(rl->tab);
  free(rl->routes);
  free(rl->gtimes);
  free(rl);
}

void rate_set_global_per_second(rate_limiter *rl, double per_second) {
  rl->cfg.global_per_second = per_second < 0 ? 0 : per_second;
}

/* ---- routes ---- */

typedef struct {
  char *p;
  size_t len, cap;
  bool overflow;
} sbuf;

static void sb_add(sbuf *s, const char *str, size_t n) {
  if (s->len + n + 1 > s->cap) {
    s->overflow = true;
    return;
  }
  memcpy(s->p + s->len, str, n);
  s->len += n;
  s->p[s->len] = '\0';
}

static void sb_adds(sbuf *s, const char *str) { sb_add(s, str, strlen(str)); }

int rate_route(const char *method, const char *path, char *route, size_t route_len,
             char *major, size_t major_len) {
  if (route_len == 0 || major_len == 0) return -1;
  sbuf r = {route, 0, route_len, false}, m = {major, 0, major_len, false};
  route[0] = major[0] = '\0';
  sb_adds(&r, method);
  sb_add(&r, " ", 1);
  size_t plen = strcspn(path, "?#");
  const char *seg[64];
  size_t seglen[64];
  size_t n = 0;
  for (size_t i = 0; i < plen && n < 64;) {
    while (i < plen && path[i] == '/') i++;
    if (i >= plen) break;
    size_t j = i;
    while (j < plen && path[j] != '/') j++;
    seg[n] = path + i;
    seglen[n] = j - i;
    n++;
    i = j;
  }
  int flags = 0;
#define SEG_IS(k, lit) (seglen[k] == strlen(lit) && memcmp(seg[k], lit, seglen[k]) == 0)
  bool top_major = n >= 2 && (SEG_IS(0, "channels") || SEG_IS(0, "guilds") ||
                              SEG_IS(0, "webhooks")) && is_digits(seg[1], seglen[1]);
  bool interaction = n >= 3 && SEG_IS(0, "interactions");
  for (size_t k = 0; k < n; k++) {
    sb_add(&r, "/", 1);
    if (top_major && k == 1) {
      sb_add(&m, seg[0], seglen[0]);
      sb_add(&m, "/", 1);
      sb_add(&m, seg[1], seglen[1]);
      sb_adds(&r, ":id");
    } else if (top_major && k == 2 && SEG_IS(0, "webhooks")) {
      /* webhooks/ID/TOKEN: the token is part of the resource and exempts from global */
      sb_add(&m, "/", 1);
      sb_add(&m, seg[2], seglen[2]);
      sb_adds(&r, ":token");
      flags |= RL_EXEMPT;
    } else if (interaction && (k == 1 || k == 2)) {
      if (k == 1) sb_adds(&m, "interactions");
      sb_add(&m, "/", 1);
      sb_add(&m, seg[k], seglen[k]);
      sb_adds(&r, k == 1 ? ":id" : ":token");
    } else if (k > 0 && SEG_IS(k - 1, "reactions")) {
      sb_adds(&r, ":emoji");
    } else if (is_digits(seg[k], seglen[k])) {
      sb_adds(&r, ":id");
    } else {
      sb_add(&r, seg[k], seglen[k]);
    }
  }
  if (interaction && n >= 4 && SEG_IS(3, "callback")) flags |= RL_PRIORITY | RL_EXEMPT;
  else if (interaction) flags |= RL_EXEMPT;
#undef SEG_IS
  if (r.overflow || m.overflow) return -1;
  return flags;
}

/* ---- invalid-request accounting ---- */

static long inv_slot(const rate_limiter *rl, double now) {
  return (long)floor(now / (rl->cfg.invalid_window / INVALID_SLOTS));
}

int rate_invalid_count(rate_limiter *rl, double now) {
  long cur = inv_slot(rl, now);
  int sum = 0;
  for (int i = 0; i < INVALID_SLOTS; i++)
    if (rl->inv_slot_id[i] > cur - INVALID_SLOTS && rl->inv_slot_id[i] <= cur)
      sum += rl->inv_slot_count[i];
  return sum;
}

static void inv_add(rate_limiter *rl, double now) {
  long cur = inv_slot(rl, now);
  int i = (int)(((cur % INVALID_SLOTS) + INVALID_SLOTS) % INVALID_SLOTS);
  if (rl->inv_slot_id[i] != cur) {
    rl->inv_slot_id[i] = cur;
    rl->inv_slot_count[i] = 0;
  }
  rl->inv_slot_count[i]++;
  int count = rate_invalid_count(rl, now);
  if (count >= rl->cfg.invalid_warn && !rl->inv_warned) {
    rl->inv_warned = true;
    rl->events |= RL_EV_INVALID_WARN;
  }
  if (count >= rl->cfg.invalid_slow && !rl->inv_slowed) {
    rl->inv_slowed = true;
    rl->events |= RL_EV_INVALID_SLOW;
  }
}

static double global_limit(rate_limiter *rl, double now) {
  double g = rl->cfg.global_per_second;
  if (rl->inv_slowed || rl->inv_warned) {
    int count = rate_invalid_count(rl, now);
    if (count < rl->cfg.invalid_warn / 2) {
      rl->inv_warned = rl->inv_slowed = false; /* the window has cooled down */
    } else if (rl->inv_slowed && count >= rl->cfg.invalid_warn) {
      g = g > 0 ? g / 10 : 5;
      if (g < 1) g = 1;
    }
  }
  return g;
}

unsigned rate_events(rate_limiter *rl) {
  unsigned e = rl->events;
  rl->events = 0;
  return e;
}

double rate_global_paused_until(const rate_limiter *rl) { return rl->global_paused_until; }

size_t rate_bucket_count(const rate_limiter *rl) { return rl->nbuckets; }

bool rate_req_queued(const rate_req *req) { return req->state == ST_QUEUED; }
bool rate_req_inflight(const rate_req *req) { return req->state == ST_INFLIGHT; }
const char *rate_req_bucket(const rate_req *req) { return req->bucket ? req->bucket->key : ""; }

/* ---- enqueue ---- */

static rate_bucket *bucket_for(rate_limiter *rl, const char *method, const char *path,
                             unsigned *flags) {
  char route[512], major[512], key[1100];
  int f = rate_route(method, path, route, sizeof route, major, sizeof major);
  if (f < 0) return NULL;
  *flags |= (unsigned)f;
  /* while a bucket for this route and resource is still being learned, stay in it, so
   * requests for one resource never race each other before the limit is known */
  snprintf(key, sizeof key, "?%s|%s", route, major);
  rate_bucket *b = bucket_find(rl, key);
  if (b) return b;
  const char *hash = route_hash(rl, route);
  if (hash) {
    snprintf(key, sizeof key, "%s|%s", hash, major);
    b = bucket_find(rl, key);
    if (b) return b;
    return bucket_new(rl, key, route, major, false);
  }
  return bucket_new(rl, key, route, major, true);
}

static int enqueue(rate_limiter *rl, rate_req *req, const char *method, const char *path,
                   unsigned flags, bool head, double not_before) {
  if (!method || !path || req->state != ST_IDLE) return -EINVAL;
  rate_bucket *b = bucket_for(rl, method, path, &flags);
  if (!b) return -ENOMEM;
  req->bucket = b;
  req->flags = flags;
  req->not_before = not_before;
  req->state = ST_QUEUED;
  if (head) list_prepend(&b->qhead, &b->qtail, req);
  else list_append(&b->qhead, &b->qtail, req);
  active_add(rl, b);
  return 0;
}

int rate_enqueue(rate_limiter *rl, rate_req *req, const char *method, const char *path,
               unsigned flags) {
  return enqueue(rl, req, method, path, flags, false, 0);
}

int rate_requeue(rate_limiter *rl, rate_req *req, double not_before) {
  /* the bucket of a finished request is only guaranteed until the next rate_poll(),
   * which is when the caller is told to requeue it */
  rate_bucket *b = req->bucket;
  if (!b || req->state != ST_IDLE) return -EINVAL;
  req->state = ST_QUEUED;
  req->not_before = not_before;
  list_prepend(&b->qhead, &b->qtail, req);
  active_add(rl, b);
  return 0;
}

void rate_cancel(rate_limiter *rl, rate_req *req) {
  rate_bucket *b = req->bucket;
  if (!b) return;
  if (req->state == ST_QUEUED) {
    list_unlink(&b->qhead, &b->qtail, req);
    if (!b->qhead) active_remove(rl, b);
  } else if (req->state == ST_INFLIGHT) {
    /* the request may have reached Discord: its capacity stays spent */
    list_unlink(&b->ihead, &b->itail, req);
    b->inflight--;
  }
  req->state = ST_IDLE;
  req->bucket = NULL;
}

/* ---- poll ---- */

static void sweep(rate_limiter *rl, double now) {
  rl->last_sweep = now;
  for (size_t i = 0; i < rl->tab_len; i++) {
    rate_bucket **p = &rl->tab[i];
    while (*p) {
      rate_bucket *b = *p;
      bool idle = !b->active && b->inflight == 0 && now - b->last_used > IDLE_FOR &&
                  (!b->learned || b->unlimited || b->reset_at < now) &&
                  b->paused_until < now;
      if (idle) {
        *p = b->hnext;
        rl->nbuckets--;
        bucket_free(b);
      } else {
        p = &b->hnext;
      }
    }
  }
}

static void note_wait(double *again, double at) {
  if (at == RL_NEVER) return;
  if (*again == RL_NEVER || at < *again) *again = at;
}

/* May the head of b go now? If not, note when to ask again. */
static bool bucket_ready(rate_bucket *b, double now, bool global_ok, double global_next,
                         double *again) {
  rate_req *h = b->qhead;
  if (!h) return false;
  if (h->not_before > now) {
    note_wait(again, h->not_before);
    return false;
  }
  if (b->paused_until > now) {
    note_wait(again, b->paused_until);
    return false;
  }
  if (!b->learned && b->inflight > 0) return false; /* learning: one at a time */
  if ((h->flags & RL_ORDERED) && b->inflight > 0) return false;
  if (b->learned && !b->unlimited) {
    if (!b->expired && now >= b->reset_at) {
      /* the window ran out: refill, counting what is still in flight as spent */
      b->remaining = b->limit - b->inflight;
      b->expired = true;
    }
    if (b->remaining <= 0) {
      if (b->expired) {
        if (b->inflight > 0) return false; /* their responses tell the new window */
      } else {
        note_wait(again, b->reset_at);
        return false;
      }
    }
  }
  if (!(h->flags & RL_EXEMPT) && !global_ok) {
    note_wait(again, global_next);
    return false;
  }
  return true;
}

/* Drops dispatch times older than the window; returns how many remain. */
static size_t global_trim(rate_limiter *rl, double now) {
  while (rl->glen && rl->gtimes[rl->ghead] <= now - rl->cfg.global_window) {
    rl->ghead = (rl->ghead + 1) % rl->gcap;
    rl->glen--;
  }
  return rl->glen;
}

static void global_note(rate_limiter *rl, double now) {
  if (rl->glen == rl->gcap) {
    size_t cap = rl->gcap ? rl->gcap * 2 : 64;
    double *t = malloc(cap * sizeof *t);
    if (!t) return; /* forget this one: the server still has the last word */
    for (size_t i = 0; i < rl->glen; i++) t[i] = rl->gtimes[(rl->ghead + i) % rl->gcap];
    free(rl->gtimes);
    rl->gtimes = t;
    rl->gcap = cap;
    rl->ghead = 0;
  }
  rl->gtimes[(rl->ghead + rl->glen) % rl->gcap] = now;
  rl->glen++;
}

static void dispatch(rate_limiter *rl, rate_bucket *b, double now) {
  rate_req *r = b->qhead;
  list_unlink(&b->qhead, &b->qtail, r);
  r->seq = ++b->seq;
  r->state = ST_INFLIGHT;
  list_append(&b->ihead, &b->itail, r);
  b->inflight++;
  b->last_used = now;
  if (b->learned && !b->unlimited) b->remaining--;
  if (!(r->flags & RL_EXEMPT)) global_note(rl, now);
  active_remove(rl, b);
  if (b->qhead) active_add(rl, b); /* to the tail: round robin between buckets */
}

rate_req *rate_poll(rate_limiter *rl, double now, double *again) {
  *again = RL_NEVER;
  if (now - rl->last_sweep >= SWEEP_EVERY) sweep(rl, now);
  double g = global_limit(rl, now);
  bool global_ok = true;
  double global_next = RL_NEVER;
  if (rl->global_paused_until > now) {
    global_ok = false;
    global_next = rl->global_paused_until;
  } else if (g > 0) {
    size_t n = global_trim(rl, now);
    if ((double)n >= g) {
      /* the oldest of the last g leaves the window at: */
      size_t k = n - (size_t)g;
      global_ok = false;
      global_next = rl->gtimes[(rl->ghead + k) % rl->gcap] + rl->cfg.global_window;
    }
  } else {
    global_trim(rl, now);
  }
  /* interaction callbacks first, whatever else waits */
  for (int pass = 0; pass < 2; pass++) {
    for (rate_bucket *b = rl->ahead; b; b = b->anext) {
      bool prio = b->qhead && (b->qhead->flags & RL_PRIORITY);
      if (pass == 0 && !prio) continue;
      if (pass == 1 && prio) continue;
      if (bucket_ready(b, now, global_ok, global_next, again)) {
        rate_req *r = b->qhead;
        dispatch(rl, b, now);
        *again = now; /* more may be ready: the caller polls until NULL */
        return r;
      }
    }
  }
  return NULL;
}

/* ---- responses ---- */

static void merge_into(rate_limiter *rl, rate_bucket *from, rate_bucket *to) {
  while (from->qhead) {
    rate_req *r = from->qhead;
    list_unlink(&from->qhead, &from->qtail, r);
    r->bucket = to;
    list_append(&to->qhead, &to->qtail, r);
  }
  while (from->ihead) {
    rate_req *r = from->ihead;
    list_unlink(&from->ihead, &from->itail, r);
    r->bucket = to;
    r->seq = ++to->seq;
    list_append(&to->ihead, &to->itail, r);
    to->inflight++;
  }
  from->inflight = 0;
  if (to->qhead) active_add(rl, to);
  active_remove(rl, from);
  table_remove(rl, from);
  bucket_free(from);
}

/* The response says the route's hash: a learning bucket becomes "hash|major". */
static rate_bucket *learn_hash(rate_limiter *rl, rate_bucket *b, const char *hash) {
  if (route_hash_set(rl, b->route, hash) < 0) return b;
  if (!b->temp) return b;
  char key[1100];
  snprintf(key, sizeof key, "%s|%s", hash, b->major);
  rate_bucket *to = bucket_find(rl, key);
  if (to && to != b) {
    merge_into(rl, b, to);
    return to;
  }
  char *k = dup_str(key);
  if (!k) return b;
  table_remove(rl, b);
  free(b->key);
  b->key = k;
  b->temp = false;
  table_insert(rl, b);
  rl->events |= RL_EV_BUCKET_LEARNED;
  return b;
}

static void apply_limits(rate_bucket *b, double now, const rate_response *resp, int after) {
  double wid;
  double eps;
  bool epoch = resp->has_reset;
  double reset_after = resp->has_reset_after ? resp->reset_after : 0;
  if (!resp->has_reset_after && resp->has_reset) reset_after = 0; /* unknown offset */
  if (epoch) {
    wid = resp->reset;
    eps = 1e-3;
  } else {
    wid = now + reset_after;
    eps = 0.05;
  }
  int limit = resp->has_limit ? resp->limit : (b->limit > 0 ? b->limit : 1);
  int cand = resp->has_remaining ? resp->remaining - after : 0;
  if (cand < 0) cand = 0;
  if (!b->learned || b->unlimited || epoch != b->window_epoch || wid > b->window + eps) {
    /* first sight, or a newer window */
    b->learned = true;
    b->unlimited = false;
    b->expired = false;
    b->window_epoch = epoch;
    b->window = wid;
    b->limit = limit;
    b->remaining = cand;
    b->reset_at = now + reset_after;
  } else if (b->expired || wid < b->window - eps) {
    /* a response from a window that is over: it says nothing about the current one */
  } else {
    if (cand < b->remaining) b->remaining = cand;
    b->limit = limit;
  }
}

enum rate_result rate_done(rate_limiter *rl, rate_req *req, double now, const rate_response *resp) {
  rate_bucket *b = req->bucket;
  if (!b || req->state != ST_INFLIGHT) return RL_RESULT_DONE;
  int after = 0;
  for (rate_req *r = req->next; r; r = r->next) after++;
  list_unlink(&b->ihead, &b->itail, req);
  b->inflight--;
  req->state = ST_IDLE;
  b->last_used = now;

  int st = resp->status;
  if (st == 401 || st == 403 || (st == 429 && resp->scope != RL_SCOPE_SHARED))
    inv_add(rl, now);

  if (resp->has_bucket && resp->bucket[0]) b = learn_hash(rl, b, resp->bucket);
  req->bucket = b;

  bool has_limits = resp->has_remaining || resp->has_reset_after || resp->has_reset;
  if (has_limits) {
    apply_limits(b, now, resp, after);
  } else if (st != 0 && st != 429 && st < 500 && !resp->has_bucket) {
    /* a route without rate-limit headers: no per-route limit */
    b->learned = true;
    b->unlimited = true;
  }

  if (st == 429) {
    double ra = resp->has_retry_after ? resp->retry_after
                : resp->has_reset_after ? resp->reset_after : 1.0;
    if (!(ra >= 0) || ra > 3600) ra = ra > 3600 ? 3600 : 1.0;
    double until = now + ra;
    if (resp->global || resp->scope == RL_SCOPE_GLOBAL) {
      if (until > rl->global_paused_until) rl->global_paused_until = until;
      rl->events |= RL_EV_GLOBAL_PAUSE;
    } else {
      if (until > b->paused_until) b->paused_until = until;
      if (b->learned && !b->unlimited) {
        if (!resp->has_remaining) {
          /* no bucket headers: retry_after is all we know of when it opens again */
          b->remaining = 0;
          b->reset_at = until;
          b->expired = false;
        } else if (resp->has_reset_after) {
          /* the headers (applied above) say what is left and when the window ends: the
           * 429 only holds the bucket until retry_after */
          b->reset_at = now + resp->reset_after;
          b->expired = false;
        }
      }
    }
    req->state = ST_QUEUED;
    req->not_before = until;
    list_prepend(&b->qhead, &b->qtail, req);
    active_add(rl, b);
    return RL_RESULT_RETRY;
  }
  if (b->qhead) active_add(rl, b);
  return RL_RESULT_DONE;
}

/* ---- header parsing ---- */

void rate_response_init(rate_response *resp, int status) {
  memset(resp, 0, sizeof *resp);
  resp->status = status;
}

static bool parse_double(const char *v, size_t n, double *out) {
  char buf[64];
  while (n && isspace((unsigned char)*v)) v++, n--;
  while (n && isspace((unsigned char)v[n - 1])) n--;
  if (n == 0 || n >= sizeof buf) return false;
  memcpy(buf, v, n);
  buf[n] = '\0';
  char *end;
  double d = strtod(buf, &end);
  if (*end != '\0' || !isfinite(d)) return false;
  *out = d;
  return true;
}

static bool name_is(const char *name, size_t len, const char *lit) {
  return len == strlen(lit) && strncasecmp(name, lit, len) == 0;
}

void rate_parse_header(rate_response *resp, const char *name, size_t nlen, const char *value,
                     size_t vlen) {
  double d;
  while (vlen && isspace((unsigned char)*value)) value++, vlen--;
  while (vlen && isspace((unsigned char)value[vlen - 1])) vlen--;
  if (name_is(name, nlen, "x-ratelimit-bucket")) {
    if (vlen == 0 || vlen >= sizeof resp->bucket) return;
    memcpy(resp->bucket, value, vlen);
    resp->bucket[vlen] = '\0';
    resp->has_bucket = true;
  } else if (name_is(name, nlen, "x-ratelimit-limit")) {
    if (parse_double(value, vlen, &d) && d >= 0 && d < 1e9) {
      resp->limit = (int)d;
      resp->has_limit = true;
    }
  } else if (name_is(name, nlen, "x-ratelimit-remaining")) {
    if (parse_double(value, vlen, &d) && d >= 0 && d < 1e9) {
      resp->remaining = (int)d;
      resp->has_remaining = true;
    }
  } else if (name_is(name, nlen, "x-ratelimit-reset")) {
    if (parse_double(value, vlen, &d) && d >= 0) {
      resp->reset = d;
      resp->has_reset = true;
    }
  } else if (name_is(name, nlen, "x-ratelimit-reset-after")) {
    if (parse_double(value, vlen, &d) && d >= 0) {
      resp->reset_after = d;
      resp->has_reset_after = true;
    }
  } else if (name_is(name, nlen, "retry-after")) {
    /* whole seconds in the header; the body's float wins when present */
    if (!resp->has_retry_after && parse_double(value, vlen, &d) && d >= 0) {
      resp->retry_after = d;
      resp->has_retry_after = true;
    }
  } else if (name_is(name, nlen, "x-ratelimit-global")) {
    resp->global = vlen == 4 && strncasecmp(value, "true", 4) == 0;
  } else if (name_is(name, nlen, "x-ratelimit-scope")) {
    if (vlen == 4 && strncasecmp(value, "user", 4) == 0) resp->scope = RL_SCOPE_USER;
    else if (vlen == 6 && strncasecmp(value, "global", 6) == 0) resp->scope = RL_SCOPE_GLOBAL;
    else if (vlen == 6 && strncasecmp(value, "shared", 6) == 0) resp->scope = RL_SCOPE_SHARED;
  }
}

/* Finds "key" : value in a flat JSON object; returns a pointer to the value or NULL. */
static const char *json_field(const char *body, size_t len, const char *key) {
  size_t klen = strlen(key);
  for (size_t i = 0; i + klen + 2 <= len; i++) {
    if (body[i] != '"' || memcmp(body + i + 1, key, klen) != 0 || body[i + 1 + klen] != '"')
      continue;
    size_t j = i + klen + 2;
    while (j < len && isspace((unsigned char)body[j])) j++;
    if (j >= len || body[j] != ':') continue;
    j++;
    while (j < len && isspace((unsigned char)body[j])) j++;
    if (j < len) return body + j;
  }
  return NULL;
}

void rate_parse_429_body(rate_response *resp, const char *body, size_t len) {
  if (!body) return;
  const char *v = json_field(body, len, "retry_after");
  if (v) {
    size_t n = 0;
    while (v + n < body + len && n < 32 && (isdigit((unsigned char)v[n]) || v[n] == '.' ||
                                            v[n] == 'e' || v[n] == 'E' || v[n] == '-' ||
                                            v[n] == '+'))
      n++;
    double d;
    if (parse_double(v, n, &d) && d >= 0) {
      resp->retry_after = d;
      resp->has_retry_after = true;
    }
  }
  v = json_field(body, len, "global");
  if (v && (size_t)(body + len - v) >= 4 && memcmp(v, "true", 4) == 0) resp->global = true;
}
