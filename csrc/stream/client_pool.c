/* client_pool.c: the client's pool (see client_int.h): topics spread over the fewest channels
 * of GN_CHANNEL_TOPICS, within the credential's budget; slots made, started and stopped. The
 * service thread, but for what says otherwise. */
#include "client_int.h"

#include <stdio.h>

/* ------------------------------------------------------------------------------------------ */
/* the pool: topics spread over the fewest channels of GN_CHANNEL_TOPICS, within the budget */

/* The client's state: "open" when every running channel is, else the least advanced one's
 * (a final failure first, then a backoff, then the earliest step of an attempt); idle while no
 * channel runs (not started, or waiting for budget). Any thread. */
gn_state_t gn_cl_client_state(gn_client_t *c) {
  static const int rank[GN_ST_COUNT_] = {
      [GN_ST_OPEN] = 0,    [GN_ST_ROLLOVER] = 0, [GN_ST_CONNECT] = 1, [GN_ST_SUBSCRIBE] = 2,
      [GN_ST_CHANNEL] = 3, [GN_ST_AUTH] = 4,     [GN_ST_IDLE] = 5,    [GN_ST_BACKOFF] = 6,
      [GN_ST_FAILED] = 7,  [GN_ST_CLOSED] = 8,    [GN_ST_STANDBY] = 5};
  gn_state_t cs = atomic_load(&c->env.state);
  if (cs == GN_ST_CLOSED || !atomic_load(&c->started)) return cs;
  int found = 0;
  gn_state_t worst = GN_ST_IDLE;
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = gn_cl_slot_at(c, i);
    if (!s || !atomic_load(&s->running)) continue;
    gn_state_t st = atomic_load(&s->env.state);
    if (!found || rank[st] > rank[worst]) worst = st;
    found = 1;
  }
  return found ? worst : c->gate.start ? GN_ST_STANDBY : GN_ST_IDLE;
}

/* A health item of the client as a whole (not of one channel). Service thread. */
static void client_health(gn_client_t *c, const char *kind, json_t *fields) {
  gn_queue_health(&c->queue, kind, gn_state_name(gn_cl_client_state(c)), fields);
}

/* A rollover asks for the credential's spare unit (take 1) or gives it back (take 0). */
static int spare_cb(void *ud, int take) {
  gn_client_t *c = ud;
  if (take) {
    if (gn_budget_take(c->budget, c->conf.channel_budget, 1)) return 1;
    /* In use: this client's rollovers that hold it close their old sockets as soon as that
     * loses nothing (the unit comes back, and the waiter is poked). */
    for (int i = 0; i < GN_POOL_MAX; i++) {
      gn_slot_t *s = gn_cl_slot_at(c, i);
      if (s && s->ch && atomic_load(&s->running)) gn_channel_spare_wanted(s->ch);
    }
    return 0;
  }
  gn_budget_give(c->budget, NULL); /* this client's other rollovers may wait for it too */
  return 1;
}

/* The socket holding a unit (unit_on_gone_cb) is over: the unit is free. The budget entry, not
 * the client, is ud: the client may be gone by now. Service thread. */
static void unit_gone_cb(void *ud, gn_conn_t *conn) {
  gn_budget_t *b = ud;
  (void)conn;
  gn_budget_give(b, NULL);
  gn_budget_release(b);
}

/* conn, about to be closed by us, holds a unit of the budget (a channel stopped, a rollover's
 * socket when its channel stops): the server counts it as connected until it has seen the
 * close, so the unit comes back then (env.h). Service thread. */
static void unit_on_gone_cb(void *ud, gn_conn_t *conn) {
  gn_client_t *c = ud;
  gn_budget_hold(c->budget);
  gn_conn_set_gone(conn, unit_gone_cb, c->budget);
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
      gn_slot_t *s = gn_cl_slot_at(c, i);
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
gn_slot_t *gn_cl_slot_get(gn_client_t *c, int i) {
  gn_slot_t *s = gn_cl_slot_at(c, i);
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
  s->env.unit_on_gone = unit_on_gone_cb;
  s->env.spare_ud = c;
  gn_slot_t *s0 = gn_cl_slot_at(c, 0);
  if (s0) s->env.tap = s0->env.tap; /* the gate's (gn_client_set_gate) */
  gn_resync_wire(c->resync, &s->env);
  atomic_store(&s->env.state, GN_ST_IDLE);
  atomic_store(&c->slots[i], s);
  return s;
}

/* A new channel in slot i (free). Returns 0, or -1 and err. */
int gn_cl_slot_new_channel(gn_client_t *c, gn_slot_t *s, char *err, size_t errlen) {
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
    gn_slot_t *s = gn_cl_slot_at(c, i);
    if (s && s->ch && s->unit && s->topics.n < GN_CHANNEL_TOPICS) return i;
  }
  return -1;
}

/* One more channel: a unit of the budget and a free slot (its channel created, not started).
 * Returns the slot, or -1 when the budget or the pool is full (or memory ran out). */
static int slot_claim(gn_client_t *c) {
  int i = 0;
  for (; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = gn_cl_slot_at(c, i);
    if (!s || !s->unit) break;
  }
  if (i == GN_POOL_MAX || !gn_budget_take(c->budget, c->conf.channel_budget, 0)) return -1;
  char err[128];
  gn_slot_t *s = gn_cl_slot_get(c, i);
  if (!s || (!s->ch && gn_cl_slot_new_channel(c, s, err, sizeof err) != 0)) {
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
  gn_slot_t *s = gn_cl_slot_at(c, i);
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
void gn_cl_slot_stop(gn_client_t *c, int i, const char *why) {
  gn_slot_t *s = gn_cl_slot_at(c, i);
  if (!s || !s->ch) return;
  int was_running = atomic_exchange(&s->running, 0);
  /* The unit comes back once the server has seen the socket's close (handed), else now. */
  int handed = was_running && gn_channel_stop_unit(s->ch, s->unit);
  if (strcmp(why, "closed") == 0) { /* the client's close: kept until free(), as always */
    if (s->unit && !handed) gn_budget_give(c->budget, &c->waiter);
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
  s->metrics->open_since_wall_ms = 0;
  pthread_mutex_unlock(&s->metrics->mu);
  client_health(c, "pool", json_pack("{s:s, s:i, s:s}", "event", "closed", "channel", i + 1,
                                     "reason", why));
  if (s->unit && !handed) gn_budget_give(c->budget, &c->waiter);
  s->unit = 0;
}

/* Wants t: a topic not wanted yet waits in pending for pool_fill. Returns 1 when it is new. */
int gn_cl_pool_want(gn_client_t *c, const char *t) {
  int i = gn_tindex_get(&c->index, t);
  if (i >= 0 && !gn_topics_has(&gn_cl_slot_at(c, i)->topics, t)) i = GN_TINDEX_ABSENT; /* dropped */
  if (i != GN_TINDEX_ABSENT) return 0;
  if (gn_topics_push(&c->pending, t) != 0 || gn_tindex_set(&c->index, t, -1) != 0) return 0;
  return 1;
}

/* No longer wants t. Returns the slot it left (changed[slot] set), or -1. */
void gn_cl_pool_unwant(gn_client_t *c, const char *t, int *changed) {
  int i = gn_tindex_get(&c->index, t);
  if (i == GN_TINDEX_ABSENT) return;
  gn_tindex_del(&c->index, t);
  if (i < 0) gn_topics_del(&c->pending, t);
  else if (gn_topics_del(&gn_cl_slot_at(c, i)->topics, t) > 0) changed[i] = 1;
}

/* A unit came back somewhere (under the budget's lock: only post). */
void gn_cl_poke(void *ud) {
  gn_client_t *c = ud;
  if (atomic_exchange(&c->poke_posted, 1)) return;
  if (gn_service_post(c->env.svc, gn_cl_task_poke, c) != 0) atomic_store(&c->poke_posted, 0);
}

/* Places the waiting topics in order: on a channel with room first, else on a new channel
 * while the budget allows; what does not fit keeps waiting. Reported: after start() or new
 * topics (wanted), what waits as rejected; after budget came back (a poke, or topics removed
 * here), what got in as admitted. Then starts the new channels and puts the topics on the
 * changed ones. Service thread, once started. */
void gn_cl_pool_fill(gn_client_t *c, int *changed, int wanted) {
  int after_poke = !wanted;
  int fresh[GN_POOL_MAX] = {0};
  size_t placed = 0, k = 0;
  for (size_t j = 0; j < c->pending.n; j++) {
    char *t = c->pending.v[j];
    int i = slot_with_room(c);
    if (i < 0 && (i = slot_claim(c)) >= 0) fresh[i] = !atomic_load(&gn_cl_slot_at(c, i)->running);
    if (i < 0 || gn_topics_add(&gn_cl_slot_at(c, i)->topics, t) < 0) {
      c->pending.v[k++] = t;
      continue;
    }
    gn_tindex_set(&c->index, t, i); /* an existing entry: no memory needed */
    free(t);
    changed[i] = 1;
    placed++;
  }
  c->pending.n = k;
  gn_topics_reindex(&c->pending); /* what was placed left it */
  atomic_store(&c->npending, k);
  /* Slot 0 runs even without topics (a client that subscribes later), as a lone channel did. */
  gn_slot_t *s0 = gn_cl_slot_at(c, 0);
  if (s0 && s0->ch && !s0->unit && !atomic_load(&s0->running) && slot_claim(c) == 0) fresh[0] = 1;
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = gn_cl_slot_at(c, i);
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
      for (int i = 0; i < GN_POOL_MAX; i++) units += gn_cl_slot_at(c, i) && gn_cl_slot_at(c, i)->unit;
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
void gn_cl_pool_settle(gn_client_t *c, int *changed, int wanted) {
  gn_cl_pool_fill(c, changed, wanted);
  int units = 0;
  for (int i = 0; i < GN_POOL_MAX; i++) units += gn_cl_slot_at(c, i) && gn_cl_slot_at(c, i)->unit;
  for (int i = 0; i < GN_POOL_MAX && units > 1; i++) {
    gn_slot_t *s = gn_cl_slot_at(c, i);
    if (s && s->unit && changed[i] && s->topics.n == 0) {
      gn_cl_slot_stop(c, i, "empty");
      units--;
    }
  }
}
