/* client.c: the owner-facing client (see client.h).
 *
 * Everything here runs on the owner's thread but the task_* functions, which the service thread
 * runs in posting order; they hand the owner's requests to the channel.
 */
#include "client.h"
#include "channel.h"
#include "resync.h"
#include "oauth.h"
#include "pool.h"
#include "service.h"
#include "gn_util.h"

#include <math.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define GN_EVICT_WINDOW_MS 2000 /* an eviction this soon after a creation was caused by it */

/* One channel of the pool, with what it does not share with the others (its state, counters
 * and topics). Allocated on first use and kept until the client is freed (at most
 * GN_POOL_MAX), so the owner may read it at any time; the channel in it comes and goes. */
typedef struct {
  gn_env_t env;          /* the client's, but for state, metrics, topics and index */
  gn_metrics_t *metrics; /* the channel's own counters, kept across the channels it held:
                            the first slot's are the client's own (which the queue counts
                            in too: a lone channel costs no second set), the others' own */
  gn_topics_t topics;    /* placed on this channel (service thread once started) */
  gn_channel_t *ch;      /* NULL: free (an emptied channel was closed); under pool_mu */
  int unit;              /* holds a unit of the credential's budget (service thread) */
  _Atomic int running;   /* started on the service thread */
  uint64_t gen;          /* channels it held: a reconnect asked of an earlier one is dropped */
  uint64_t sched_base[3 + GN_METRICS_REASONS]; /* scheduler counts of its earlier channels */
} gn_slot_t;

struct gn_client {
  gn_conf_t conf;
  gn_metrics_t metrics; /* what the queue counts (events, drops, health) */
  gn_queue_t queue;
  gn_env_t env;         /* shared parts; state: idle until started, closed at the end */
  _Atomic(gn_slot_t *) slots[GN_POOL_MAX];
  pthread_mutex_t pool_mu;  /* slots[i]->ch changes (service thread) and the owner's reads */
  /* desired topics: every one in index (its slot, or -1 while it waits for budget in
   * pending); the owner's until start(), the service thread's after */
  gn_tindex_t index;
  gn_topics_t pending;
  _Atomic size_t npending;
  _Atomic int pooled;       /* held more than one channel once: health items name the channel */
  gn_budget_t *budget;      /* the credential's channels, shared by the process */
  gn_budget_waiter_t waiter;/* poked when a unit comes back (start to close) */
  _Atomic int poke_posted;
  int first_cycle;          /* start() opened slot 0's first cycle, not yet used (service) */
  int pool_started;         /* pool_start ran (service thread) */
  int gate_open;            /* gated: the layer above lets the pool run now (service thread) */
  gn_client_gate_t gate;    /* a layer above (the fleet) decides when the pool runs */
  gn_resync_t *resync;      /* resync = ...: gaps healed over REST (resync.h), or NULL */
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
/* the pool: topics spread over the fewest channels of GN_CHANNEL_TOPICS, within the budget */

static gn_slot_t *slot_at(gn_client_t *c, int i) { return atomic_load(&c->slots[i]); }

/* The client's state: "open" when every running channel is, else the least advanced one's
 * (a final failure first, then a backoff, then the earliest step of an attempt); idle while no
 * channel runs (not started, or waiting for budget). Any thread. */
static gn_state_t client_state(gn_client_t *c) {
  static const int rank[GN_ST_COUNT_] = {
      [GN_ST_OPEN] = 0,    [GN_ST_ROLLOVER] = 0, [GN_ST_CONNECT] = 1, [GN_ST_SUBSCRIBE] = 2,
      [GN_ST_CHANNEL] = 3, [GN_ST_AUTH] = 4,     [GN_ST_IDLE] = 5,    [GN_ST_BACKOFF] = 6,
      [GN_ST_FAILED] = 7,  [GN_ST_CLOSED] = 8,    [GN_ST_STANDBY] = 5};
  gn_state_t cs = atomic_load(&c->env.state);
  if (cs == GN_ST_CLOSED || !atomic_load(&c->started)) return cs;
  int found = 0;
  gn_state_t worst = GN_ST_IDLE;
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = slot_at(c, i);
    if (!s || !atomic_load(&s->running)) continue;
    gn_state_t st = atomic_load(&s->env.state);
    if (!found || rank[st] > rank[worst]) worst = st;
    found = 1;
  }
  return found ? worst : c->gate.start ? GN_ST_STANDBY : GN_ST_IDLE;
}

/* A health item of the client as a whole (not of one channel). Service thread. */
static void client_health(gn_client_t *c, const char *kind, json_t *fields) {
  gn_queue_health(&c->queue, kind, gn_state_name(client_state(c)), fields);
}

/* A rollover asks for the credential's spare unit (take 1) or gives it back (take 0). */
static int spare_cb(void *ud, int take) {
  gn_client_t *c = ud;
  if (take) {
    if (gn_budget_take(c->budget, c->conf.channel_budget, 1)) return 1;
    /* In use: this client's rollovers that hold it close their old sockets as soon as that
     * loses nothing (the unit comes back, and the waiter is poked). */
    for (int i = 0; i < GN_POOL_MAX; i++) {
      gn_slot_t *s = slot_at(c, i);
      if (s && s->ch && atomic_load(&s->running)) gn_channel_spare_wanted(s->ch);
    }
    return 0;
  }
  gn_budget_give(c->budget, NULL); /* this client's other rollovers may wait for it too */
  return 1;
}

/* What the budget hears from a channel (env.h's GN_NOTE_*). An eviction of a live channel
 * right after one of the credential's creations means the server allows fewer channels than
 * the credential holds: the budget shrinks below what was held (no more churn: a channel is
 * created only once the credential holds fewer than the server's limit). Service thread. */
static int budget_note_cb(void *ud, int what, const char *channel_id) {
  gn_client_t *c = ud;
  uint64_t now = gn_now_mono_ms();
  if (what == GN_NOTE_CREATED) {
    gn_budget_created(c->budget, now);
    return 1;
  }
  int cap = gn_budget_cap(c->budget), used = gn_budget_used(c->budget);
  if (what == GN_NOTE_MAY_CREATE) return !cap || used <= cap;
  uint64_t last = gn_budget_last_created(c->budget);
  if (last && now - last < GN_EVICT_WINDOW_MS && used >= 2) {
    /* First the rollovers' extra channels go: the budget becomes the regular channels this
     * client holds (no spare: renewals resubscribe, channels that end are replaced, reported).
     * An eviction while no extra channel is held means the server cannot even hold those: one
     * fewer (a channel of the pool waits, reported, rather than evicting another for ever). */
    int regular = 0;
    for (int i = 0; i < GN_POOL_MAX; i++) {
      gn_slot_t *s = slot_at(c, i);
      regular += s && s->unit;
    }
    int was = cap ? cap : c->conf.channel_budget;
    cap = gn_budget_shrink(c->budget, used > regular ? regular : regular - 1);
    char msg[300];
    snprintf(msg, sizeof msg, "the server removed live channel %s when this credential created "
             "its channel number %d: the server allows fewer channels than the budget (%d); the "
             "budget is now %d (one kept spare for rollovers)", channel_id, used, was, cap);
    client_health(c, "budget", json_pack("{s:s, s:s, s:i, s:i, s:i, s:s}", "event", "shrunk",
                                         "channel_id", channel_id, "channels", used, "was", was,
                                         "budget", cap, "error", msg));
  } else {
    client_health(c, "budget", json_pack("{s:s, s:s, s:i, s:s}", "event", "evicted",
                                         "channel_id", channel_id, "channels", used, "error",
                                         "the server removed a live channel before its end, not "
                                         "after a creation of this process: another process or "
                                         "integration with the same OAuth client creates "
                                         "channels, or the channel was deleted"));
  }
  return 1;
}

/* Slot i, allocated on first use with its env. Returns it, or NULL when out of memory. */
static gn_slot_t *slot_get(gn_client_t *c, int i) {
  gn_slot_t *s = slot_at(c, i);
  if (s) return s;
  if (!(s = calloc(1, sizeof *s))) return NULL;
  if (i == 0) {
    s->metrics = &c->metrics;
  } else if ((s->metrics = malloc(sizeof *s->metrics))) {
    gn_metrics_init(s->metrics);
    s->env.count_events = 1; /* the queue counts the client's (and the first channel's) */
  } else {
    free(s);
    return NULL;
  }
  s->env.conf = c->env.conf;
  s->env.svc = c->env.svc;
  s->env.tok = c->env.tok;
  s->env.queue = c->env.queue;
  s->env.metrics = s->metrics;
  s->env.topics = &s->topics;
  s->env.index = i;
  s->env.stamp = &c->pooled;
  s->env.spare = spare_cb;
  s->env.budget_note = budget_note_cb;
  s->env.spare_ud = c;
  gn_slot_t *s0 = slot_at(c, 0);
  if (s0) s->env.tap = s0->env.tap; /* the gate's (gn_client_set_gate) */
  gn_resync_wire(c->resync, &s->env);
  atomic_store(&s->env.state, GN_ST_IDLE);
  atomic_store(&c->slots[i], s);
  return s;
}

/* A new channel in slot i (free). Returns 0, or -1 and err. */
static int slot_new_channel(gn_client_t *c, gn_slot_t *s, char *err, size_t errlen) {
  atomic_store(&s->env.state, GN_ST_IDLE);
  gn_channel_t *ch = gn_channel_new(&s->env, err, errlen);
  if (!ch) return -1;
  pthread_mutex_lock(&c->pool_mu);
  s->ch = ch;
  s->gen++;
  pthread_mutex_unlock(&c->pool_mu);
  return 0;
}

/* The first channel holding a unit with room for one more topic, or -1. */
static int slot_with_room(gn_client_t *c) {
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = slot_at(c, i);
    if (s && s->ch && s->unit && s->topics.n < GN_CHANNEL_TOPICS) return i;
  }
  return -1;
}

/* One more channel: a unit of the budget and a free slot (its channel created, not started).
 * Returns the slot, or -1 when the budget or the pool is full (or memory ran out). */
static int slot_claim(gn_client_t *c) {
  int i = 0;
  for (; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = slot_at(c, i);
    if (!s || !s->unit) break;
  }
  if (i == GN_POOL_MAX || !gn_budget_take(c->budget, c->conf.channel_budget, 0)) return -1;
  char err[128];
  gn_slot_t *s = slot_get(c, i);
  if (!s || (!s->ch && slot_new_channel(c, s, err, sizeof err) != 0)) {
    gn_budget_give(c->budget, &c->waiter);
    return -1;
  }
  s->unit = 1;
  if (i > 0) atomic_store(&c->pooled, 1);
  return i;
}

/* Starts slot i's channel; its first cycle is opened here unless the owner opened it
 * (slot 0 at start()). The one place where a channel of the pool starts. */
static void slot_start(gn_client_t *c, int i, int cycle_open) {
  gn_slot_t *s = slot_at(c, i);
  if (!cycle_open) gn_sched_trigger(gn_channel_sched(s->ch), GN_REASON_MANUAL);
  atomic_store(&s->running, 1);
  if (atomic_load(&c->pooled))
    client_health(c, "pool", json_pack("{s:s, s:i, s:I}", "event", "opened", "channel", i + 1,
                                       "topics", (json_int_t)s->topics.n));
  if (c->gate.start && !c->gate_open) gn_channel_park(s->ch); /* standby: gated */
  else gn_channel_start(s->ch);
}

/* Stops slot i's channel and gives its unit back (why: "empty", "closed"); the slot is free.
 * The one place where a channel of the pool stops. */
static void slot_stop(gn_client_t *c, int i, const char *why) {
  gn_slot_t *s = slot_at(c, i);
  if (!s || !s->ch) return;
  int was_running = atomic_exchange(&s->running, 0);
  if (was_running) gn_channel_stop(s->ch);
  if (strcmp(why, "closed") == 0) { /* the client's close: kept until free(), as always */
    if (s->unit) gn_budget_give(c->budget, &c->waiter);
    s->unit = 0;
    return;
  }
  gn_sched_t *sc = gn_channel_sched(s->ch);
  pthread_mutex_lock(&c->pool_mu);
  s->sched_base[0] += atomic_load(&sc->cycles);
  s->sched_base[1] += atomic_load(&sc->coalesced);
  s->sched_base[2] += atomic_load(&sc->triggers);
  for (int k = 0; k < GN_METRICS_REASONS; k++) s->sched_base[3 + k] += atomic_load(&sc->by_reason[k]);
  gn_channel_t *ch = s->ch;
  s->ch = NULL;
  pthread_mutex_unlock(&c->pool_mu);
  gn_channel_free(ch);
  gn_topics_free(&s->topics);
  pthread_mutex_lock(&s->metrics->mu);
  s->metrics->topics_wanted = s->metrics->topics_confirmed = 0;
  s->metrics->open_since_ms = 0;
  pthread_mutex_unlock(&s->metrics->mu);
  client_health(c, "pool", json_pack("{s:s, s:i, s:s}", "event", "closed", "channel", i + 1,
                                     "reason", why));
  s->unit = 0;
  gn_budget_give(c->budget, &c->waiter);
}

/* Appends t to a set the caller knows it is not in (the index says so). Returns 0 or -1. */
static int push_topic(gn_topics_t *set, const char *t) {
  if (set->n == set->cap) {
    size_t cap = set->cap ? set->cap * 2 : 8;
    char **nv = realloc(set->v, cap * sizeof *nv);
    if (!nv) return -1;
    set->v = nv;
    set->cap = cap;
  }
  if (!(set->v[set->n] = gn_strdup(t))) return -1;
  set->n++;
  return 0;
}

/* Wants t: a topic not wanted yet waits in pending for pool_fill. Returns 1 when it is new. */
static int pool_want(gn_client_t *c, const char *t) {
  int i = gn_tindex_get(&c->index, t);
  if (i >= 0 && !gn_topics_has(&slot_at(c, i)->topics, t)) i = GN_TINDEX_ABSENT; /* dropped */
  if (i != GN_TINDEX_ABSENT) return 0;
  if (push_topic(&c->pending, t) != 0 || gn_tindex_set(&c->index, t, -1) != 0) return 0;
  return 1;
}

/* No longer wants t. Returns the slot it left (changed[slot] set), or -1. */
static void pool_unwant(gn_client_t *c, const char *t, int *changed) {
  int i = gn_tindex_get(&c->index, t);
  if (i == GN_TINDEX_ABSENT) return;
  gn_tindex_del(&c->index, t);
  if (i < 0) gn_topics_del(&c->pending, t);
  else if (gn_topics_del(&slot_at(c, i)->topics, t) > 0) changed[i] = 1;
}

static void task_poke(gn_service_t *svc, void *arg);

/* A unit came back somewhere (under the budget's lock: only post). */
static void poke(void *ud) {
  gn_client_t *c = ud;
  if (atomic_exchange(&c->poke_posted, 1)) return;
  if (gn_service_post(c->env.svc, task_poke, c) != 0) atomic_store(&c->poke_posted, 0);
}

/* Places the waiting topics in order: on a channel with room first, else on a new channel
 * while the budget allows; what does not fit keeps waiting. Reported: after start() or new
 * topics (wanted), what waits as rejected; after budget came back (a poke, or topics removed
 * here), what got in as admitted. Then starts the new channels and puts the topics on the
 * changed ones. Service thread, once started. */
static void pool_fill(gn_client_t *c, int *changed, int wanted) {
  int after_poke = !wanted;
  int fresh[GN_POOL_MAX] = {0};
  size_t placed = 0, k = 0;
  for (size_t j = 0; j < c->pending.n; j++) {
    char *t = c->pending.v[j];
    int i = slot_with_room(c);
    if (i < 0 && (i = slot_claim(c)) >= 0) fresh[i] = !atomic_load(&slot_at(c, i)->running);
    if (i < 0 || gn_topics_add(&slot_at(c, i)->topics, t) < 0) {
      c->pending.v[k++] = t;
      continue;
    }
    gn_tindex_set(&c->index, t, i); /* an existing entry: no memory needed */
    free(t);
    changed[i] = 1;
    placed++;
  }
  c->pending.n = k;
  atomic_store(&c->npending, k);
  /* Slot 0 runs even without topics (a client that subscribes later), as a lone channel did. */
  gn_slot_t *s0 = slot_at(c, 0);
  if (s0 && s0->ch && !s0->unit && !atomic_load(&s0->running) && slot_claim(c) == 0) fresh[0] = 1;
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = slot_at(c, i);
    if (fresh[i]) {
      slot_start(c, i, i == 0 && c->first_cycle);
      if (i == 0) c->first_cycle = 0;
    }
    else if (changed[i] && s && s->ch && atomic_load(&s->running))
      gn_channel_topics_changed(s->ch);
  }
  if (k) {
    if (!after_poke) {
      json_t *names = json_array();
      for (size_t j = 0; names && j < k && j < 100; j++)
        json_array_append_new(names, json_string(c->pending.v[j]));
      int units = 0;
      for (int i = 0; i < GN_POOL_MAX; i++) units += slot_at(c, i) && slot_at(c, i)->unit;
      char msg[200];
      snprintf(msg, sizeof msg, "%zu topics do not fit: the credential's channel budget (%d, one "
               "kept spare for rollovers) is in use (%d channels of this client); they are "
               "subscribed when channels free up", k, c->conf.channel_budget, units);
      client_health(c, "subscription",
                    json_pack("{s:s, s:s, s:I, s:o*, s:i, s:i, s:s}", "event", "rejected",
                              "reason", "channel_budget", "count", (json_int_t)k, "topics",
                              names, "channel_budget", c->conf.channel_budget, "channels", units,
                              "error", msg));
    }
  }
  if (after_poke && placed)
    client_health(c, "subscription", json_pack("{s:s, s:s, s:I, s:I}", "event", "admitted",
                                               "reason", "channel_budget", "count",
                                               (json_int_t)placed, "waiting", (json_int_t)k));
}

/* After topics left: a channel left empty is closed (its unit back to the budget) unless it
 * is the last one or waiting topics fill it. Service thread. */
static void pool_settle(gn_client_t *c, int *changed, int wanted) {
  pool_fill(c, changed, wanted);
  int units = 0;
  for (int i = 0; i < GN_POOL_MAX; i++) units += slot_at(c, i) && slot_at(c, i)->unit;
  for (int i = 0; i < GN_POOL_MAX && units > 1; i++) {
    gn_slot_t *s = slot_at(c, i);
    if (s && s->unit && changed[i] && s->topics.n == 0) {
      slot_stop(c, i, "empty");
      units--;
    }
  }
}

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
  pool_fill(c, changed, 1);
  gn_slot_t *s0 = slot_at(c, 0);
  /* No budget for a first channel: the cycle start() opened ends here. */
  if (c->first_cycle && s0 && s0->ch && gn_sched_open(gn_channel_sched(s0->ch)))
    gn_sched_complete(gn_channel_sched(s0->ch), 0);
  c->first_cycle = 0;
}

/* Stops all channels and gives their budget back (others waiting for it are poked); no poke
 * reaches this client afterwards. The one place where the pool stops. Service thread. */
static void pool_stop(gn_client_t *c) {
  gn_budget_unwait(c->budget, &c->waiter);
  for (int i = 0; i < GN_POOL_MAX; i++) slot_stop(c, i, "closed");
}

/* The gate (the fleet's lease): the first resume starts the pool (start() left slot 0's first
 * cycle to it); park stops every running channel (standby: its topics and budget kept), a later
 * resume starts them again. */
void gn_client_resume(gn_client_t *c) {
  c->gate_open = 1;
  if (!c->pool_started) {
    c->pool_started = 1;
    gn_sched_trigger(gn_channel_sched(slot_at(c, 0)->ch), GN_REASON_MANUAL);
    pool_start(c);
    return;
  }
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = slot_at(c, i);
    if (!s || !s->ch || !atomic_load(&s->running)) continue;
    gn_sched_trigger(gn_channel_sched(s->ch), GN_REASON_MANUAL);
    gn_channel_start(s->ch);
  }
}

void gn_client_resync_gap(gn_client_t *c, double from_ms, double to_ms) {
  for (int i = 0; c->resync && i < GN_POOL_MAX; i++) {
    gn_slot_t *s = slot_at(c, i);
    if (s && atomic_load(&s->running)) gn_resync_env_deaf(c->resync, &s->env, from_ms, to_ms);
  }
}

void gn_client_park(gn_client_t *c) {
  c->gate_open = 0;
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = slot_at(c, i);
    if (s && s->ch && atomic_load(&s->running)) gn_channel_park(s->ch);
  }
}

static void task_start(gn_service_t *svc, void *arg) {
  gn_client_t *c = arg;
  gn_resync_start(c->resync);
  if (c->gate.start) { /* standby until the gate opens */
    gn_channel_park(slot_at(c, 0)->ch);
    c->gate.start(c->gate.ud);
    return;
  }
  c->pool_started = 1;
  pool_start(c);
}

static void task_poke(gn_service_t *svc, void *arg) {
  gn_client_t *c = arg;
  atomic_store(&c->poke_posted, 0);
  if (atomic_load(&c->closing)) return;
  for (int i = 0; i < GN_POOL_MAX; i++) { /* rollovers waiting for the spare unit */
    gn_slot_t *s = slot_at(c, i);
    if (s && s->ch && atomic_load(&s->running)) gn_channel_spare_freed(s->ch);
  }
  if (!c->pending.n) return;
  int changed[GN_POOL_MAX] = {0};
  pool_fill(c, changed, 0);
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
    gn_slot_t *s = slot_at(c, i);
    if (t->gen[i] && s && s->ch && s->gen == t->gen[i]) gn_channel_reconnect(s->ch);
  }
  free(t);
}

/* Every channel of the pool reads again: they share the one queue that now has room. */
static void task_room(gn_service_t *svc, void *arg) {
  gn_client_t *c = arg;
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = slot_at(c, i);
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
      any |= pool_want(c, t->topics[i]);
    } else {
      size_t before = c->pending.n;
      int ch[GN_POOL_MAX] = {0};
      pool_unwant(c, t->topics[i], ch);
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
  if (apply_topics(c, t, changed)) pool_settle(c, changed, t->add);
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
  gn_slot_t *s = slot_at(c, (int)(seq & 31) % GN_POOL_MAX);
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
    if (push_topic(&c->pending, cfg->topics[i]) != 0 ||
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
  c->waiter.poke = poke;
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
  gn_slot_t *s0 = slot_get(c, 0);
  if (!s0) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  if (slot_new_channel(c, s0, err, errlen) != 0) goto fail;
  return c;
fail:
  gn_client_free(c);
  return NULL;
}

int gn_client_set_gate(gn_client_t *c, const gn_client_gate_t *gate, const gn_tap_t *tap) {
  if (c->gate.start || atomic_load(&c->started)) return -1;
  c->gate = *gate;
  for (int i = 0; i < GN_POOL_MAX; i++) { /* later slots copy slot 0's (slot_get) */
    gn_slot_t *s = slot_at(c, i);
    if (s) s->env.tap = tap;
  }
  return 0;
}

gn_env_t *gn_client_env(gn_client_t *c) { return &slot_at(c, 0)->env; }
const gn_client_gate_t *gn_client_gate(const gn_client_t *c) {
  return c->gate.start ? &c->gate : NULL;
}

int gn_client_start(gn_client_t *c) {
  int expected = 0;
  if (gn_client_forked(c) || atomic_load(&c->closing) || !atomic_compare_exchange_strong(&c->started, &expected, 1))
    return -1;
  /* The first connection is the first cycle (gated: once the gate opens). */
  if (!c->gate.start) gn_sched_trigger(gn_channel_sched(slot_at(c, 0)->ch), GN_REASON_MANUAL);
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
    gn_slot_t *s = slot_at(c, i);
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
      gn_slot_t *s = slot_at(c, i);
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
    gn_slot_t *s = slot_at(c, i);
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
    gn_slot_t *s = slot_at(c, i);
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
  return gn_queue_pop(&c->queue, gn_state_name(client_state(c)));
}

gn_item_t *gn_client_pop_batch(gn_client_t *c, size_t max) {
  return gn_queue_pop_batch(&c->queue, gn_state_name(client_state(c)), max);
}

gn_state_t gn_client_state(gn_client_t *c) { return client_state(c); }

/* Adds slot s's scheduler counts (its earlier channels' and its channel's) to v. Under pool_mu. */
static void slot_sched(gn_slot_t *s, uint64_t *v) {
  for (int k = 0; k < 3 + GN_METRICS_REASONS; k++) v[k] += s->sched_base[k];
  if (!s->ch) return;
  gn_sched_t *sc = gn_channel_sched(s->ch);
  v[0] += atomic_load(&sc->cycles);
  v[1] += atomic_load(&sc->coalesced);
  v[2] += atomic_load(&sc->triggers);
  for (int k = 0; k < GN_METRICS_REASONS; k++) v[3 + k] += atomic_load(&sc->by_reason[k]);
}

void gn_client_metrics(gn_client_t *c, gn_metrics_snapshot_t *out) {
  uint64_t applied = atomic_load(&c->changes_applied);
  gn_metrics_t *ms[GN_POOL_MAX];
  size_t n = 0;
  uint64_t sched[3 + GN_METRICS_REASONS] = {0};
  uint64_t wanted = 0, confirmed = 0;
  int synced = 1, any = 0;
  double connected = -1;
  pthread_mutex_lock(&c->pool_mu);
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = slot_at(c, i);
    if (!s) continue;
    if (i > 0) ms[n++] = s->metrics; /* the first slot's are the client's */
    slot_sched(s, sched);
    if (!atomic_load(&s->running)) continue;
    gn_metrics_snapshot_t one;
    gn_metrics_snapshot(s->metrics, &one);
    any = 1;
    wanted += one.topics_wanted;
    confirmed += one.topics_confirmed;
    synced &= one.subscriptions_synced;
    if (connected < 0 || one.connected_ms < connected) connected = one.connected_ms;
  }
  pthread_mutex_unlock(&c->pool_mu);
  gn_metrics_snapshot_pool(&c->metrics, ms, n, out);
  size_t pending = atomic_load(&c->npending);
  out->topics_wanted = wanted + pending;
  out->topics_confirmed = confirmed;
  out->subscriptions_synced = any && synced && !pending;
  out->connected_ms = connected > 0 ? connected : 0;
  size_t ev, bytes;
  gn_queue_usage(&c->queue, &ev, &bytes);
  out->queued_events = ev;
  out->queued_bytes = bytes;
  out->sched_cycles = sched[0];
  out->sched_coalesced = sched[1];
  out->sched_triggers = sched[2];
  _Static_assert(GN_METRICS_REASONS == GN_REASON_COUNT_, "metrics.h's reason count");
  for (int i = 0; i < GN_METRICS_REASONS; i++) out->sched_by_reason[i] = sched[3 + i];
  out->token_requests = gn_client_token_requests(c);
  gn_bell_stats_t ws;
  gn_client_wake_stats(c, &ws);
  out->wake_peers = ws.peers;
  out->wake_refused = ws.refused;
  if (applied != atomic_load(&c->changes_posted)) out->subscriptions_synced = 0;
}

size_t gn_client_channels(gn_client_t *c, gn_client_channel_t *out, size_t max) {
  size_t n = 0;
  uint64_t others = 0; /* events the other channels counted */
  int first = -1;
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = slot_at(c, i);
    if (!s) continue;
    gn_metrics_snapshot_t m;
    gn_metrics_snapshot(s->metrics, &m);
    if (i > 0) others += m.events;
    if (!atomic_load(&s->running) || n >= max) continue;
    if (i == 0) first = (int)n;
    out[n].number = i + 1;
    out[n].state = atomic_load(&s->env.state);
    out[n].m = m;
    n++;
  }
  /* The first channel's events: the client's (counted by the queue) but the others'. */
  if (first >= 0) {
    uint64_t all = out[first].m.events;
    out[first].m.events = all > others ? all - others : 0;
  }
  return n;
}

size_t gn_client_topics_waiting(gn_client_t *c) { return atomic_load(&c->npending); }

const char *gn_client_name(gn_client_t *c) { return c->conf.name; }

void gn_client_sched_counts(gn_client_t *c, uint64_t *cycles, uint64_t *coalesced,
                            uint64_t *triggers) {
  uint64_t v[3 + GN_METRICS_REASONS] = {0};
  pthread_mutex_lock(&c->pool_mu);
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = slot_at(c, i);
    if (s) slot_sched(s, v);
  }
  pthread_mutex_unlock(&c->pool_mu);
  *cycles = v[0];
  *coalesced = v[1];
  *triggers = v[2];
}

unsigned long gn_client_token_requests(gn_client_t *c) {
  return c->env.tok ? gn_token_requests(c->env.tok) : 0;
}
