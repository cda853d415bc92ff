/* metrics.c: counters and latency percentiles (see metrics.h). */
#include "metrics.h"
#include "gn_util.h"

#include <stdio.h>

void gn_metrics_init(gn_metrics_t *m) {
  memset(m, 0, sizeof *m);
  pthread_mutex_init(&m->mu, NULL);
  m->lat_max = -1;
}

void gn_metrics_destroy(gn_metrics_t *m) { pthread_mutex_destroy(&m->mu); }

void gn_metrics_add_latency(gn_metrics_t *m, double ms) {
  pthread_mutex_lock(&m->mu);
  m->lat[m->lat_pos] = ms;
  m->lat_pos = (m->lat_pos + 1) % GN_LAT_SAMPLES;
  if (m->lat_n < GN_LAT_SAMPLES) m->lat_n++;
  m->lat_count++;
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
  o->events = m->events;
  o->dropped = m->dropped;
  o->heartbeats = m->heartbeats;
  o->malformed = m->malformed;
  o->disconnects = m->disconnects;
  o->health = m->health;
  o->duplicates = m->duplicates;
  o->rollovers = m->rollovers;
  o->health_dropped = m->health_dropped;
  o->lat_count = m->lat_count;
  o->lat_max = m->lat_max;
  size_t n = m->lat_n;
  memcpy(tmp, m->lat, n * sizeof *tmp);
  uint64_t now = gn_now_mono_ms();
  o->uptime_ms = m->started_ms ? (double)(now - m->started_ms) : 0;
  o->connected_ms = m->open_since_ms ? (double)(now - m->open_since_ms) : 0;
  o->deaf_ms = m->deaf_ms;
  o->topics_wanted = m->topics_wanted;
  o->topics_confirmed = m->topics_confirmed;
  o->subscriptions_synced = m->subscriptions_synced;
  pthread_mutex_unlock(&m->mu);
  qsort(tmp, n, sizeof *tmp, cmp_d);
  o->lat_p50 = pct(tmp, n, 50);
  o->lat_p90 = pct(tmp, n, 90);
  o->lat_p99 = pct(tmp, n, 99);
}

char *gn_metrics_prometheus(const gn_metrics_snapshot_t *s, const char *state, const char *client) {
  gn_buf_t b = {0};
  char line[512];
  const char *cl = client ? client : "";
#define L(...) do { snprintf(line, sizeof line, __VA_ARGS__); if (gn_buf_add(&b, line, strlen(line))) goto oom; } while (0)
  L("# TYPE genesys_notify_attempts_total counter\n");
  L("genesys_notify_attempts_total{client=\"%s\"} %llu\n", cl, (unsigned long long)s->attempts);
  L("# TYPE genesys_notify_successes_total counter\n");
  L("genesys_notify_successes_total{client=\"%s\"} %llu\n", cl, (unsigned long long)s->successes);
  L("# TYPE genesys_notify_failures_total counter\n");
  L("genesys_notify_failures_total{client=\"%s\"} %llu\n", cl, (unsigned long long)s->failures);
  L("# TYPE genesys_notify_events_total counter\n");
  L("genesys_notify_events_total{client=\"%s\"} %llu\n", cl, (unsigned long long)s->events);
  L("# TYPE genesys_notify_events_dropped_total counter\n");
  L("genesys_notify_events_dropped_total{client=\"%s\"} %llu\n", cl, (unsigned long long)s->dropped);
  L("# TYPE genesys_notify_reconnect_latency_ms summary\n");
  if (s->lat_count) {
    L("genesys_notify_reconnect_latency_ms{client=\"%s\",quantile=\"0.5\"} %.1f\n", cl, s->lat_p50);
    L("genesys_notify_reconnect_latency_ms{client=\"%s\",quantile=\"0.9\"} %.1f\n", cl, s->lat_p90);
    L("genesys_notify_reconnect_latency_ms{client=\"%s\",quantile=\"0.99\"} %.1f\n", cl, s->lat_p99);
  }
  L("genesys_notify_reconnect_latency_ms_count{client=\"%s\"} %llu\n", cl, (unsigned long long)s->lat_count);
  L("# TYPE genesys_notify_up gauge\n");
  L("genesys_notify_up{client=\"%s\",state=\"%s\"} %d\n", cl, state, strcmp(state, "open") == 0);
  L("# TYPE genesys_notify_topics_wanted gauge\n");
  L("genesys_notify_topics_wanted{client=\"%s\"} %llu\n", cl, (unsigned long long)s->topics_wanted);
  L("# TYPE genesys_notify_topics_confirmed gauge\n");
  L("genesys_notify_topics_confirmed{client=\"%s\"} %llu\n", cl,
    (unsigned long long)s->topics_confirmed);
  L("# TYPE genesys_notify_subscriptions_synced gauge\n");
  L("genesys_notify_subscriptions_synced{client=\"%s\"} %d\n", cl, s->subscriptions_synced);
  L("# TYPE genesys_notify_uptime_seconds gauge\n");
  L("genesys_notify_uptime_seconds{client=\"%s\"} %.3f\n", cl, s->uptime_ms / 1000.0);
#undef L
  return b.p;
oom:
  gn_buf_free(&b);
  return NULL;
}
