/* client.c: the owner-facing client (see client.h).
 *
 * Everything here runs on the owner's thread but the task_* functions, which the service thread
 * runs in posting order; they hand the owner's requests to the channel.
 */
#include "client.h"
#include "channel.h"
#include "oauth.h"
#include "service.h"
#include "gn_util.h"

#include <math.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

struct gn_client {
  gn_conf_t conf;
  gn_metrics_t metrics;
  gn_queue_t queue;
  gn_topics_t topics;   /* desired: the owner's until start(), the service thread's after */
  gn_env_t env;
  gn_channel_t *ch;
  _Atomic int started;
  _Atomic int closing;
  /* subscribe/unsubscribe calls posted and applied: until they agree the subscriptions do not
   * count as synced, whatever the service thread last said */
  _Atomic uint64_t changes_posted, changes_applied;
  int queue_ready;
  _Atomic(gn_bell_t *) wake; /* the wake socket, once asked for (set by the owner) */
  int unreached;        /* close() could not reach the service thread: it may still use it */
  pid_t pid;            /* the process that created it (see gn_client_forked) */
  gn_client_t *next_orphan;
};

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

static void task_start(gn_service_t *svc, void *arg) {
  gn_client_t *c = arg;
  gn_channel_start(c->ch);
}

static void task_close(gn_service_t *svc, void *arg) {
  gn_client_t *c = arg;
  gn_channel_stop(c->ch);
  gn_queue_detach(&c->queue);
}

static void task_reconnect(gn_service_t *svc, void *arg) {
  gn_client_t *c = arg;
  gn_channel_reconnect(c->ch);
}

static void free_sub_task(sub_task_t *t) {
  for (size_t i = 0; i < t->n; i++) free(t->topics[i]);
  free(t->topics);
  free(t);
}

/* Applies a subscribe/unsubscribe to the desired set. Returns 1 when it changed. */
static int apply_topics(gn_topics_t *set, const sub_task_t *t) {
  int changed = 0;
  for (size_t i = 0; i < t->n; i++)
    if ((t->add ? gn_topics_add(set, t->topics[i]) : gn_topics_del(set, t->topics[i])) > 0)
      changed = 1;
  return changed;
}

static void task_subscribe(gn_service_t *svc, void *arg) {
  sub_task_t *t = arg;
  gn_client_t *c = t->c;
  int changed = apply_topics(&c->topics, t);
  free_sub_task(t);
  if (changed) gn_channel_topics_changed(c->ch);
  atomic_fetch_add(&c->changes_applied, 1);
}

static void task_policy(gn_service_t *svc, void *arg) {
  policy_task_t *t = arg;
  gn_client_t *c = t->c;
  uint64_t seq = t->seq;
  double d = t->delay_ms;
  free(t);
  gn_channel_policy(c->ch, seq, d);
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
  if (svc && gn_service_forked(svc)) {
    snprintf(err, errlen, "context: created in process %d, before a fork(); its service thread "
             "is not in this process (%d): create contexts after the fork", (int)gn_service_pid(svc),
             (int)getpid());
    goto fail;
  }
  if (gn_conf_init(&c->conf, cfg, err, errlen) != 0) goto fail;
  for (size_t i = 0; i < cfg->ntopics; i++)
    if (gn_topics_add(&c->topics, cfg->topics[i]) < 0) {
      snprintf(err, errlen, "out of memory");
      goto fail;
    }
  if (gn_queue_init(&c->queue, c->conf.queue_limit, c->conf.queue_bytes, &c->metrics, err,
                    errlen) != 0) goto fail;
  c->queue_ready = 1;
  c->env.conf = &c->conf;
  c->env.queue = &c->queue;
  c->env.metrics = &c->metrics;
  c->env.topics = &c->topics;
  atomic_store(&c->env.state, GN_ST_IDLE);
  if (!(c->ch = gn_channel_new(&c->env, err, errlen))) goto fail;
  gn_token_cfg_t tc = {c->conf.token_url,  c->conf.client_id,       c->conf.client_secret,
                       c->conf.ca_file,    c->conf.verify,          c->conf.http_timeout_ms,
                       c->conf.connect_timeout_ms, &c->conf.proxy};
  if (!(c->env.tok = gn_token_entry_acquire(&tc))) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  if (svc) {
    gn_service_ref(svc);
    c->env.svc = svc;
  } else if (!(c->env.svc = gn_service_acquire_default(err, errlen))) {
    goto fail;
  }
  return c;
fail:
  gn_client_free(c);
  return NULL;
}

int gn_client_start(gn_client_t *c) {
  int expected = 0;
  if (gn_client_forked(c) || atomic_load(&c->closing) || !atomic_compare_exchange_strong(&c->started, &expected, 1))
    return -1;
  /* The first connection is the first cycle. */
  gn_sched_trigger(gn_channel_sched(c->ch), GN_REASON_MANUAL);
  if (gn_service_post(c->env.svc, task_start, c) != 0) return -1;
  return 0;
}

int gn_client_reconnect(gn_client_t *c) {
  if (gn_client_forked(c) || !atomic_load(&c->started) || atomic_load(&c->closing)) return -1;
  gn_sched_t *s = gn_channel_sched(c->ch);
  if (!gn_sched_trigger(s, GN_REASON_MANUAL)) return 0;
  if (gn_service_post(c->env.svc, task_reconnect, c) != 0) {
    gn_sched_complete(s, 0);
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
    apply_topics(&c->topics, t);
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
    /* The service thread owns the channel until task_close has run on it: the close must get
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
  gn_channel_free(c->ch);
  if (c->queue_ready) gn_queue_destroy(&c->queue);
  gn_topics_free(&c->topics);
  gn_conf_free(&c->conf);
  gn_metrics_destroy(&c->metrics);
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
  return gn_queue_pop(&c->queue, gn_state_name(atomic_load(&c->env.state)));
}

gn_item_t *gn_client_pop_batch(gn_client_t *c, size_t max) {
  return gn_queue_pop_batch(&c->queue, gn_state_name(atomic_load(&c->env.state)), max);
}

gn_state_t gn_client_state(gn_client_t *c) { return atomic_load(&c->env.state); }

void gn_client_metrics(gn_client_t *c, gn_metrics_snapshot_t *out) {
  uint64_t applied = atomic_load(&c->changes_applied);
  gn_metrics_snapshot(&c->metrics, out);
  size_t ev, bytes;
  gn_queue_usage(&c->queue, &ev, &bytes);
  out->queued_events = ev;
  out->queued_bytes = bytes;
  gn_sched_t *sc = gn_channel_sched(c->ch);
  out->sched_cycles = atomic_load(&sc->cycles);
  out->sched_coalesced = atomic_load(&sc->coalesced);
  out->sched_triggers = atomic_load(&sc->triggers);
  _Static_assert(GN_METRICS_REASONS == GN_REASON_COUNT_, "metrics.h's reason count");
  for (int i = 0; i < GN_METRICS_REASONS; i++)
    out->sched_by_reason[i] = atomic_load(&sc->by_reason[i]);
  out->token_requests = gn_client_token_requests(c);
  gn_bell_stats_t ws;
  gn_client_wake_stats(c, &ws);
  out->wake_peers = ws.peers;
  out->wake_refused = ws.refused;
  if (applied != atomic_load(&c->changes_posted)) out->subscriptions_synced = 0;
}

const char *gn_client_name(gn_client_t *c) { return c->conf.name; }

void gn_client_sched_counts(gn_client_t *c, uint64_t *cycles, uint64_t *coalesced,
                            uint64_t *triggers) {
  gn_sched_t *s = gn_channel_sched(c->ch);
  *cycles = atomic_load(&s->cycles);
  *coalesced = atomic_load(&s->coalesced);
  *triggers = atomic_load(&s->triggers);
}

unsigned long gn_client_token_requests(gn_client_t *c) {
  return c->env.tok ? gn_token_requests(c->env.tok) : 0;
}
