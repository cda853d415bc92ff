/* client_metrics.c: what the owner reads of a client's pool (see client.h): the metrics summed
 * over its channels, each channel's state and counters, the topics waiting for budget, the
 * scheduler's counts. Any thread: each read locks what it reads. */
#include "client_int.h"

#include <string.h>

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
    gn_slot_t *s = gn_cl_slot_at(c, i);
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
    gn_slot_t *s = gn_cl_slot_at(c, i);
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
    gn_slot_t *s = gn_cl_slot_at(c, i);
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
