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
  static const char *const reasons[] = GN_METRICS_REASON_NAMES;
#define L(...) do { snprintf(line, sizeof line, __VA_ARGS__); if (gn_buf_add(&b, line, strlen(line))) goto oom; } while (0)
#define COUNTER(name, v) do { L("# TYPE genesys_notify_" name "_total counter\n"); \
    L("genesys_notify_" name "_total{client=\"%s\"} %llu\n", cl, (unsigned long long)(v)); } while (0)
#define GAUGE(name, fmt, v) do { L("# TYPE genesys_notify_" name " gauge\n"); \
    L("genesys_notify_" name "{client=\"%s\"} " fmt "\n", cl, v); } while (0)
  COUNTER("attempts", s->attempts);
  COUNTER("successes", s->successes);
  COUNTER("failures", s->failures);
  GAUGE("success_rate", "%.6f", s->attempts ? (double)s->successes / (double)s->attempts : 0.0);
  COUNTER("events", s->events);
  COUNTER("events_dropped", s->dropped);
  COUNTER("health_dropped", s->health_dropped);
  COUNTER("heartbeats", s->heartbeats);
  COUNTER("malformed", s->malformed);
  COUNTER("disconnects", s->disconnects);
  COUNTER("health", s->health);
  COUNTER("duplicates", s->duplicates);
  COUNTER("rollovers", s->rollovers);
  GAUGE("queued_events", "%llu", (unsigned long long)s->queued_events);
  GAUGE("queued_bytes", "%llu", (unsigned long long)s->queued_bytes);
  L("# TYPE genesys_notify_reconnect_latency_ms summary\n");
  if (s->lat_count) {
    L("genesys_notify_reconnect_latency_ms{client=\"%s\",quantile=\"0.5\"} %.1f\n", cl, s->lat_p50);
    L("genesys_notify_reconnect_latency_ms{client=\"%s\",quantile=\"0.9\"} %.1f\n", cl, s->lat_p90);
    L("genesys_notify_reconnect_latency_ms{client=\"%s\",quantile=\"0.99\"} %.1f\n", cl, s->lat_p99);
  }
  L("genesys_notify_reconnect_latency_ms_count{client=\"%s\"} %llu\n", cl, (unsigned long long)s->lat_count);
  if (s->lat_count) GAUGE("reconnect_latency_max_ms", "%.1f", s->lat_max);
  L("# TYPE genesys_notify_up gauge\n");
  L("genesys_notify_up{client=\"%s\",state=\"%s\"} %d\n", cl, state, strcmp(state, "open") == 0);
  GAUGE("topics_wanted", "%llu", (unsigned long long)s->topics_wanted);
  GAUGE("topics_confirmed", "%llu", (unsigned long long)s->topics_confirmed);
  GAUGE("subscriptions_synced", "%d", s->subscriptions_synced);
  GAUGE("uptime_seconds", "%.3f", s->uptime_ms / 1000.0);
  GAUGE("connected_seconds", "%.3f", s->connected_ms / 1000.0);
  L("# TYPE genesys_notify_deaf_seconds_total counter\n");
  L("genesys_notify_deaf_seconds_total{client=\"%s\"} %.3f\n", cl, s->deaf_ms / 1000.0);
  COUNTER("scheduler_cycles", s->sched_cycles);
  COUNTER("scheduler_coalesced", s->sched_coalesced);
  COUNTER("scheduler_triggers", s->sched_triggers);
  L("# TYPE genesys_notify_scheduler_triggers_by_reason_total counter\n");
  for (int i = 0; i < GN_METRICS_REASONS; i++)
    L("genesys_notify_scheduler_triggers_by_reason_total{client=\"%s\",reason=\"%s\"} %llu\n", cl,
      reasons[i], (unsigned long long)s->sched_by_reason[i]);
  COUNTER("token_requests", s->token_requests);
  GAUGE("wake_peers", "%llu", (unsigned long long)s->wake_peers);
  COUNTER("wake_refused", s->wake_refused);
#undef COUNTER
#undef GAUGE
#undef L
  return b.p;
oom:
  gn_buf_free(&b);
  return NULL;
}
