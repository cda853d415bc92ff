/* client.c: the owner-facing client (see client.h).
 *
 * Everything here runs on the owner's thread but the task_* functions, which the service thread
 * runs in posting order; they hand the owner's requests to the channel.
 */
#include "client_int.h"

#include <math.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

/* Clients of the parent, "freed" in a forked child: kept (their memory is the parent's
 * copy-on-write pages, and their queue's mutex may be held by a thread that is not in the child)
 * and listed here so that they stay reachable for leak checkers. A client whose close() never
 * reached its service thread (out of memory) is kept here the same way. */
static gn_client_t *orphans;
static pthread_mutex_t orphans_mu = PTHREAD_MUTEX_INITIALIZER;

int gn_client_forked(const gn_client_t *c) { return c->pid != getpid(); }

/* ------------------------------------------------------------------------------------------ */
/* tasks: the service thread carries out what the owner asked */

typedef struct {
  gn_client_t *c;
  int add;
  size_t n;
  char **topics;
} sub_task_t;

typedef struct {
  gn_client_t *c;
  uint64_t seq;
  double delay_ms;
} policy_task_t;

typedef struct {
  gn_client_t *c;
  uint64_t gen[GN_POOL_MAX]; /* the channels whose cycle the owner opened (0: none) */
} reconnect_task_t;

/* Starts all channels: the wanted topics placed on as many channels as they need and the
 * budget allows (slot 0 even with none), each started. The one place where the pool starts.
 * Service thread. */
static void pool_start(gn_client_t *c) {
  int changed[GN_POOL_MAX] = {0};
  c->first_cycle = 1;
  gn_budget_wait(c->budget, &c->waiter); /* poked whenever a unit comes back, until close */
  gn_cl_pool_fill(c, changed, 1);
  gn_slot_t *s0 = gn_cl_slot_at(c, 0);
  /* No budget for a first channel: the cycle start() opened ends here. */
  if (c->first_cycle && s0 && s0->ch && gn_sched_open(gn_channel_sched(s0->ch)))
    gn_sched_complete(gn_channel_sched(s0->ch), 0);
  c->first_cycle = 0;
}

/* Stops all channels and gives their budget back (others waiting for it are poked); no poke
 * reaches this client afterwards. The one place where the pool stops. Service thread. */
static void pool_stop(gn_client_t *c) {
  gn_budget_unwait(c->budget, &c->waiter);
  for (int i = 0; i < GN_POOL_MAX; i++) gn_cl_slot_stop(c, i, "closed");
}

/* The gate (the fleet's lease): the first resume starts the pool (start() left slot 0's first
 * cycle to it); park stops every running channel (standby: its topics and budget kept), a later
 * resume starts them again. */
void gn_client_resume(gn_client_t *c) {
  c->gate_open = 1;
  if (!c->pool_started) {
    c->pool_started = 1;
    gn_sched_trigger(gn_channel_sched(gn_cl_slot_at(c, 0)->ch), GN_REASON_MANUAL);
    pool_start(c);
    return;
  }
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = gn_cl_slot_at(c, i);
    if (!s || !s->ch || !atomic_load(&s->running)) continue;
    gn_sched_trigger(gn_channel_sched(s->ch), GN_REASON_MANUAL);
    gn_channel_start(s->ch);
  }
}

void gn_client_park(gn_client_t *c) {
  c->gate_open = 0;
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = gn_cl_slot_at(c, i);
    if (s && s->ch && atomic_load(&s->running)) gn_channel_park(s->ch);
  }
}

static void task_start(gn_service_t *svc, void *arg) {
  gn_client_t *c = arg;
  gn_resync_start(c->resync);
  if (c->gate.start) { /* standby until the gate opens */
    gn_channel_park(gn_cl_slot_at(c, 0)->ch);
    c->gate.start(c->gate.ud);
    return;
  }
  c->pool_started = 1;
  pool_start(c);
}

void gn_cl_task_poke(gn_service_t *svc, void *arg) {
  gn_client_t *c = arg;
  atomic_store(&c->poke_posted, 0);
  if (atomic_load(&c->closing)) return;
  for (int i = 0; i < GN_POOL_MAX; i++) { /* rollovers waiting for the spare unit */
    gn_slot_t *s = gn_cl_slot_at(c, i);
    if (s && s->ch && atomic_load(&s->running) && s->env.spare_waiting)
      gn_channel_spare_freed(s->ch);
  }
  if (!c->pending.n) return;
  int changed[GN_POOL_MAX] = {0};
  gn_cl_pool_fill(c, changed, 0);
}

static void task_close(gn_service_t *svc, void *arg) {
  gn_client_t *c = arg;
  if (c->gate.stop) c->gate.stop(c->gate.ud);
  pool_stop(c);
  gn_resync_stop(c->resync);
  gn_queue_detach(&c->queue);
}

static void task_reconnect(gn_service_t *svc, void *arg) {
  reconnect_task_t *t = arg;
  gn_client_t *c = t->c;
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = gn_cl_slot_at(c, i);
    if (t->gen[i] && s && s->ch && s->gen == t->gen[i]) gn_channel_reconnect(s->ch);
  }
  free(t);
}

/* Every channel of the pool reads again: they share the one queue that now has room. */
static void task_room(gn_service_t *svc, void *arg) {
  gn_client_t *c = arg;
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = gn_cl_slot_at(c, i);
    if (s && s->ch) gn_channel_room(s->ch);
  }
}

/* The queue is half empty after a pause (owner thread, inside a pop): the service thread reads
 * again. Posted before any later close(), so it runs while the channels live. */
static void queue_room(void *ud) {
  gn_client_t *c = ud;
  if (atomic_load(&c->closing) || !c->env.svc) return;
  gn_service_post(c->env.svc, task_room, c); /* out of memory: pause_max_ms ends the pause */
}

static void free_sub_task(sub_task_t *t) {
  for (size_t i = 0; i < t->n; i++) free(t->topics[i]);
  free(t->topics);
  free(t);
}

/* Applies a subscribe/unsubscribe to the wanted topics (pending until pool_fill places them).
 * changed[slot]: a channel lost topics. Returns 1 when something changed. */
static int apply_topics(gn_client_t *c, const sub_task_t *t, int *changed) {
  int any = 0;
  for (size_t i = 0; i < t->n; i++) {
    if (t->add) {
      any |= gn_cl_pool_want(c, t->topics[i]);
    } else {
      size_t before = c->pending.n;
      int ch[GN_POOL_MAX] = {0};
      gn_cl_pool_unwant(c, t->topics[i], ch);
      for (int k = 0; k < GN_POOL_MAX; k++) changed[k] |= ch[k], any |= ch[k];
      any |= before != c->pending.n;
    }
  }
  atomic_store(&c->npending, c->pending.n);
  return any;
}

static void task_subscribe(gn_service_t *svc, void *arg) {
  sub_task_t *t = arg;
  gn_client_t *c = t->c;
  int changed[GN_POOL_MAX] = {0};
  if (apply_topics(c, t, changed)) gn_cl_pool_settle(c, changed, t->add);
  free_sub_task(t);
  atomic_fetch_add(&c->changes_applied, 1);
}

static void task_policy(gn_service_t *svc, void *arg) {
  policy_task_t *t = arg;
  gn_client_t *c = t->c;
  uint64_t seq = t->seq;
  double d = t->delay_ms;
  free(t);
  /* The item's seq names the pool's channel (channel.c): (attempt seq << 5) | slot. */
  gn_slot_t *s = gn_cl_slot_at(c, (int)(seq & 31) % GN_POOL_MAX);
  if (s && s->ch) gn_channel_policy(s->ch, seq >> 5, d);
}

/* ------------------------------------------------------------------------------------------ */
/* owner-thread API */

gn_client_t *gn_client_new(const gn_client_cfg_t *cfg, gn_service_t *svc, char *err,
                           size_t errlen) {
  gn_client_t *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->pid = getpid();
  gn_metrics_init(&c->metrics);
  pthread_mutex_init(&c->pool_mu, NULL);
  if (svc && gn_service_forked(svc)) {
    snprintf(err, errlen, "context: created in process %d, before a fork(); its service thread "
             "is not in this process (%d): create contexts after the fork", (int)gn_service_pid(svc),
             (int)getpid());
    goto fail;
  }
  if (gn_conf_init(&c->conf, cfg, err, errlen) != 0) goto fail;
  if (cfg->ntopics > (size_t)GN_POOL_MAX * GN_CHANNEL_TOPICS) {
    snprintf(err, errlen, "topics: expected at most %d topics (%d channels of %d), got %zu",
             GN_POOL_MAX * GN_CHANNEL_TOPICS, GN_POOL_MAX, GN_CHANNEL_TOPICS, cfg->ntopics);
    goto fail;
  }
  for (size_t i = 0; i < cfg->ntopics; i++) {
    if (gn_tindex_get(&c->index, cfg->topics[i]) != GN_TINDEX_ABSENT) continue;
    if (gn_topics_push(&c->pending, cfg->topics[i]) != 0 ||
        gn_tindex_set(&c->index, cfg->topics[i], -1) != 0) {
      snprintf(err, errlen, "out of memory");
      goto fail;
    }
  }
  if (gn_queue_init(&c->queue, c->conf.queue_limit, c->conf.queue_bytes, &c->metrics, err,
                    errlen) != 0) goto fail;
  c->queue_ready = 1;
  if (gn_resync_make(&c->resync, &c->conf, &c->env, err, errlen) != 0) goto fail;
  gn_queue_set_room_cb(&c->queue, queue_room, c);
  c->env.conf = &c->conf;
  c->env.queue = &c->queue;
  c->env.metrics = &c->metrics;
  atomic_store(&c->env.state, GN_ST_IDLE);
  c->waiter.poke = gn_cl_poke;
  c->waiter.ud = c;
  gn_token_cfg_t tc = {c->conf.token_url,  c->conf.client_id,       c->conf.client_secret,
                       c->conf.ca_file,    c->conf.verify,          c->conf.http_timeout_ms,
                       c->conf.connect_timeout_ms, &c->conf.proxy};
  if (!(c->env.tok = gn_token_entry_acquire(&tc)) ||
      !(c->budget = gn_budget_acquire(c->conf.client_id, c->conf.token_url))) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  if (svc) {
    gn_service_ref(svc);
    c->env.svc = svc;
  } else if (!(c->env.svc = gn_service_acquire_default(err, errlen))) {
    goto fail;
  }
  /* The first channel exists from the start (its scheduler is the client's first cycle). */
  gn_slot_t *s0 = gn_cl_slot_get(c, 0);
  if (!s0) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  if (gn_cl_slot_new_channel(c, s0, err, errlen) != 0) goto fail;
  return c;
fail:
  gn_client_free(c);
  return NULL;
}

int gn_client_set_gate(gn_client_t *c, const gn_client_gate_t *gate, const gn_tap_t *tap) {
  if (c->gate.start || atomic_load(&c->started)) return -1;
  c->gate = *gate;
  for (int i = 0; i < GN_POOL_MAX; i++) { /* later slots copy slot 0's (gn_cl_slot_get) */
    gn_slot_t *s = gn_cl_slot_at(c, i);
    if (s) s->env.tap = tap;
  }
  return 0;
}

gn_env_t *gn_client_env(gn_client_t *c) { return &gn_cl_slot_at(c, 0)->env; }
const gn_client_gate_t *gn_client_gate(const gn_client_t *c) {
  return c->gate.start ? &c->gate : NULL;
}

int gn_client_start(gn_client_t *c) {
  int expected = 0;
  if (gn_client_forked(c) || atomic_load(&c->closing) || !atomic_compare_exchange_strong(&c->started, &expected, 1))
    return -1;
  /* The first connection is the first cycle (gated: once the gate opens). */
  if (!c->gate.start) gn_sched_trigger(gn_channel_sched(gn_cl_slot_at(c, 0)->ch), GN_REASON_MANUAL);
  if (gn_service_post(c->env.svc, task_start, c) != 0) return -1;
  return 0;
}

int gn_client_reconnect(gn_client_t *c) {
  if (gn_client_forked(c) || !atomic_load(&c->started) || atomic_load(&c->closing)) return -1;
  reconnect_task_t *t = calloc(1, sizeof *t);
  if (!t) return -1;
  t->c = c;
  int opened = 0;
  pthread_mutex_lock(&c->pool_mu);
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = gn_cl_slot_at(c, i);
    /* every channel that runs; the first one before start() has gone through */
    if (!s || !s->ch || (i > 0 && !atomic_load(&s->running))) continue;
    if (gn_sched_trigger(gn_channel_sched(s->ch), GN_REASON_MANUAL)) {
      t->gen[i] = s->gen;
      opened = 1;
    }
  }
  pthread_mutex_unlock(&c->pool_mu);
  if (!opened) {
    free(t);
    return 0;
  }
  if (gn_service_post(c->env.svc, task_reconnect, t) != 0) {
    pthread_mutex_lock(&c->pool_mu);
    for (int i = 0; i < GN_POOL_MAX; i++) {
      gn_slot_t *s = gn_cl_slot_at(c, i);
      if (t->gen[i] && s && s->ch && s->gen == t->gen[i])
        gn_sched_complete(gn_channel_sched(s->ch), 0);
    }
    pthread_mutex_unlock(&c->pool_mu);
    free(t);
    return -1;
  }
  return 1;
}

int gn_client_subscribe(gn_client_t *c, const char *const *topics, size_t n, int add) {
  if (gn_client_forked(c) || atomic_load(&c->closing)) return -1;
  sub_task_t *t = calloc(1, sizeof *t);
  if (!t || !(t->topics = calloc(n ? n : 1, sizeof *t->topics))) {
    free(t);
    return -1;
  }
  t->c = c;
  t->add = add;
  for (; t->n < n; t->n++)
    if (!(t->topics[t->n] = gn_strdup(topics[t->n]))) {
      free_sub_task(t);
      return -1;
    }
  if (!atomic_load(&c->started)) {
    /* Not running yet: change the initial set directly (no other thread touches it). */
    int changed[GN_POOL_MAX] = {0};
    apply_topics(c, t, changed);
    free_sub_task(t);
    return 0;
  }
  atomic_fetch_add(&c->changes_posted, 1);
  if (gn_service_post(c->env.svc, task_subscribe, t) != 0) {
    atomic_fetch_sub(&c->changes_posted, 1);
    free_sub_task(t);
    return -1;
  }
  return 0;
}

void gn_client_policy_answer(gn_client_t *c, uint64_t seq, double delay_ms) {
  if (atomic_load(&c->closing) || !c->env.svc) return;
  policy_task_t *t = malloc(sizeof *t);
  if (!t) return;
  t->c = c;
  t->seq = seq;
  t->delay_ms = isfinite(delay_ms) ? delay_ms : 1e300; /* refused by the check */
  if (gn_service_post(c->env.svc, task_policy, t) != 0) free(t);
}

void gn_client_close(gn_client_t *c) {
  /* A forked child: the service thread that holds this client is in the parent. Nothing here
   * may wait for it, post to it or take a lock it may hold. */
  if (gn_client_forked(c)) return;
  int expected = 0;
  if (!atomic_compare_exchange_strong(&c->closing, &expected, 1)) return;
  if (atomic_load(&c->started)) {
    /* The service thread owns the channels until task_close has run on it: the close must get
     * there. Only memory can make the post fail while this client holds its reference, so it
     * is tried again for a while; if it never gets through, the client is left to the thread
     * (kept with the orphans, never freed) rather than freed under it. */
    int tries = 0;
    while (gn_service_post(c->env.svc, task_close, c) != 0) {
      if (++tries > 5000) {
        c->unreached = 1;
        atomic_store(&c->env.state, GN_ST_CLOSED);
        return;
      }
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
    gn_queue_wait_detached(&c->queue);
  } else {
    gn_queue_detach(&c->queue);
  }
  atomic_store(&c->env.state, GN_ST_CLOSED);
  /* Drop what was never read: the owner asked for no more callbacks. */
  gn_queue_discard(&c->queue);
  gn_bell_t *wake = atomic_exchange(&c->wake, NULL);
  if (wake) { /* its peers see EOF; the queue rings it no more (detached) */
    gn_queue_set_bell(&c->queue, NULL);
    gn_bell_free(wake);
  }
  gn_service_t *svc = c->env.svc;
  c->env.svc = NULL;
  gn_service_release(svc);
  /* The cached token lives while some client uses its credential, not until this object is
   * collected. */
  gn_token_entry_release(c->env.tok);
  c->env.tok = NULL;
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = gn_cl_slot_at(c, i);
    if (s) s->env.tok = NULL, s->env.svc = NULL;
  }
}

static void keep_orphan(gn_client_t *c) {
  pthread_mutex_lock(&orphans_mu);
  c->next_orphan = orphans;
  orphans = c;
  pthread_mutex_unlock(&orphans_mu);
}

void gn_client_free(gn_client_t *c) {
  if (!c) return;
  if (gn_client_forked(c) || c->unreached) {
    keep_orphan(c);
    return;
  }
  if (c->env.svc) gn_client_close(c);
  if (c->unreached) { /* never free what the service thread may still hold */
    keep_orphan(c);
    return;
  }
  gn_token_entry_release(c->env.tok);
  if (c->gate.free) c->gate.free(c->gate.ud);
  gn_resync_free(c->resync);
  gn_budget_release(c->budget);
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = gn_cl_slot_at(c, i);
    if (!s) continue;
    gn_channel_free(s->ch);
    gn_topics_free(&s->topics);
    if (i > 0) {
      gn_metrics_destroy(s->metrics);
      free(s->metrics);
    }
    free(s);
  }
  if (c->queue_ready) gn_queue_destroy(&c->queue);
  gn_tindex_free(&c->index);
  gn_topics_free(&c->pending);
  gn_conf_free(&c->conf);
  gn_metrics_destroy(&c->metrics);
  pthread_mutex_destroy(&c->pool_mu);
  free(c);
}

int gn_client_fd(gn_client_t *c) { return gn_queue_fd(&c->queue); }

const char *gn_client_wake_path(gn_client_t *c, char *err, size_t errlen) {
  if (gn_client_forked(c) || atomic_load(&c->closing) || !c->env.svc) {
    snprintf(err, errlen, "the client is closed");
    return NULL;
  }
  gn_bell_t *wake = atomic_load(&c->wake);
  if (!wake) {
    wake = gn_bell_new(c->env.svc, NULL, err, errlen);
    if (!wake) return NULL;
    gn_queue_set_bell(&c->queue, wake);
    atomic_store(&c->wake, wake);
  }
  return gn_bell_path(wake);
}

void gn_client_wake_stats(gn_client_t *c, gn_bell_stats_t *out) {
  gn_bell_t *wake = atomic_load(&c->wake);
  if (wake) gn_bell_stats(wake, out);
  else memset(out, 0, sizeof *out);
}

gn_item_t *gn_client_pop(gn_client_t *c) {
  return gn_queue_pop(&c->queue, gn_state_name(gn_cl_client_state(c)));
}

gn_item_t *gn_client_pop_batch(gn_client_t *c, size_t max) {
  return gn_queue_pop_batch(&c->queue, gn_state_name(gn_cl_client_state(c)), max);
}

gn_state_t gn_client_state(gn_client_t *c) { return gn_cl_client_state(c); }
