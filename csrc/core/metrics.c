/* metrics.c: counters and latency percentiles (see metrics.h). */
#include "metrics.h"
#include "gn_util.h"

#include <stdio.h>

void gn_metrics_init(gn_metrics_t *m) {
  memset(m, 0, sizeof *m);
  pthread_mutex_init(&m->mu, NULL);
  m->lat_max = -1;
}

void gn_metrics_destroy(gn_metrics_t *m) {
  pthread_mutex_destroy(&m->mu);
  free(m->lat);
  m->lat = NULL;
}

void gn_metrics_add_latency(gn_metrics_t *m, double ms) {
  pthread_mutex_lock(&m->mu);
  if (m->lat_n == m->lat_cap && m->lat_cap < GN_LAT_SAMPLES) {
    size_t cap = m->lat_cap ? m->lat_cap * 2 : 8;
    if (cap > GN_LAT_SAMPLES) cap = GN_LAT_SAMPLES;
    double *n = realloc(m->lat, cap * sizeof *n);
    if (n) {
      m->lat = n;
      m->lat_cap = cap;
    }
  }
  if (m->lat_n < m->lat_cap) { /* still filling (lat_pos == lat_n) */
    m->lat[m->lat_n++] = ms;
    m->lat_pos = m->lat_n % GN_LAT_SAMPLES;
  } else if (m->lat_cap == GN_LAT_SAMPLES) { /* full: the oldest goes */
    m->lat[m->lat_pos] = ms;
    m->lat_pos = (m->lat_pos + 1) % GN_LAT_SAMPLES;
  } /* else out of memory: counted below, not kept for the percentiles */
  m->lat_count++;
  m->lat_sum += ms;
  if (ms > m->lat_max) m->lat_max = ms;
  pthread_mutex_unlock(&m->mu);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *v, size_t n, double p) {
  if (!n) return -1;
  size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return v[rank - 1];
}

void gn_metrics_snapshot(gn_metrics_t *m, gn_metrics_snapshot_t *o) {
  double tmp[GN_LAT_SAMPLES];
  memset(o, 0, sizeof *o);
  pthread_mutex_lock(&m->mu);
  o->attempts = m->attempts;
  o->successes = m->successes;
  o->failures = m->failures;
  o->events = __atomic_load_n(&m->events, __ATOMIC_RELAXED); /* counted without the lock */
  o->dropped = m->dropped;
  o->heartbeats = m->heartbeats;
  o->malformed = m->malformed;
  o->disconnects = m->disconnects;
  o->health = m->health;
  o->duplicates = m->duplicates;
  o->rollovers = m->rollovers;
  o->health_dropped = m->health_dropped;
  o->pauses = m->pauses;
  o->tls_resumed = m->tls_resumed;
  o->renewals = m->renewals;
  o->renewal_rollovers = m->renewal_rollovers;
  o->evictions = m->evictions;
  o->resync_runs = m->resync_runs;
  o->resync_entities = m->resync_entities;
  o->resync_requests = m->resync_requests;
  o->resync_stale = m->resync_stale;
  o->resync_forbidden = m->resync_forbidden;
  o->resync_rate_limited = m->resync_rate_limited;
  o->resync_failed = m->resync_failed;
  o->lat_count = m->lat_count;
  o->lat_sum = m->lat_sum;
  o->lat_max = m->lat_max;
  size_t n = m->lat_n;
  if (n) memcpy(tmp, m->lat, n * sizeof *tmp);
  uint64_t now = gn_now_mono_ms();
  o->uptime_ms = m->started_ms ? (double)(now - m->started_ms) : 0;
  o->connected_ms = m->open_since_ms ? (double)(now - m->open_since_ms) : 0;
  o->opened_wall_ms = m->open_since_ms ? m->open_since_wall_ms : 0;
  o->deaf_ms = m->deaf_ms;
  o->paused_ms = m->paused_ms + (m->paused_since_ms ? (double)(now - m->paused_since_ms) : 0);
  o->topics_wanted = m->topics_wanted;
  o->topics_confirmed = m->topics_confirmed;
  o->subscriptions_synced = m->subscriptions_synced;
  pthread_mutex_unlock(&m->mu);
  qsort(tmp, n, sizeof *tmp, cmp_d);
  o->lat_p50 = pct(tmp, n, 50);
  o->lat_p90 = pct(tmp, n, 90);
  o->lat_p99 = pct(tmp, n, 99);
}

void gn_metrics_snapshot_pool(gn_metrics_t *client, gn_metrics_t *const *chans, size_t n,
                              gn_metrics_snapshot_t *o) {
  gn_metrics_snapshot(client, o);
  if (!n) return;
  double *all = malloc((n + 1) * GN_LAT_SAMPLES * sizeof *all);
  size_t na = 0;
  uint64_t now = gn_now_mono_ms();
  if (all) { /* the client's own samples (its first channel's) with the others' */
    pthread_mutex_lock(&client->mu);
    if (client->lat_n) memcpy(all, client->lat, client->lat_n * sizeof *all);
    na = client->lat_n;
    pthread_mutex_unlock(&client->mu);
  }
  for (size_t i = 0; i < n; i++) {
    gn_metrics_t *m = chans[i];
    pthread_mutex_lock(&m->mu);
    o->attempts += m->attempts;
    o->successes += m->successes;
    o->failures += m->failures;
    o->heartbeats += m->heartbeats;
    o->malformed += m->malformed;
    o->disconnects += m->disconnects;
    o->duplicates += m->duplicates;
    o->rollovers += m->rollovers;
    o->renewals += m->renewals;
    o->renewal_rollovers += m->renewal_rollovers;
    o->evictions += m->evictions;
    o->lat_count += m->lat_count;
    o->lat_sum += m->lat_sum;
    if (m->lat_max > o->lat_max) o->lat_max = m->lat_max;
    o->deaf_ms += m->deaf_ms;
    double up = m->started_ms ? (double)(now - m->started_ms) : 0;
    if (up > o->uptime_ms) o->uptime_ms = up;
    if (all) {
      if (m->lat_n) memcpy(all + na, m->lat, m->lat_n * sizeof *all);
      na += m->lat_n;
    }
    pthread_mutex_unlock(&m->mu);
  }
  if (all) {
    qsort(all, na, sizeof *all, cmp_d);
    o->lat_p50 = pct(all, na, 50);
    o->lat_p90 = pct(all, na, 90);
    o->lat_p99 = pct(all, na, 99);
    free(all);
  }
}
