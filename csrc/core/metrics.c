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

char *gn_metrics_prometheus(const gn_metrics_snapshot_t *s, const char *state, const char *client) {
  gn_buf_t b = {0};
  char line[512];
  const char *cl = client ? client : "";
  static const char *const reasons[] = GN_METRICS_REASON_NAMES;
#define L(...) do { snprintf(line, sizeof line, __VA_ARGS__); if (gn_buf_add(&b, line, strlen(line))) goto oom; } while (0)
#define HEAD(name, type, help) do { L("# HELP genesys_notify_" name " " help "\n"); \
    L("# TYPE genesys_notify_" name " " type "\n"); } while (0)
#define COUNTER(name, v, help) do { HEAD(name "_total", "counter", help); \
    L("genesys_notify_" name "_total{client=\"%s\"} %llu\n", cl, (unsigned long long)(v)); } while (0)
#define GAUGE(name, fmt, v, help) do { HEAD(name, "gauge", help); \
    L("genesys_notify_" name "{client=\"%s\"} " fmt "\n", cl, v); } while (0)
  COUNTER("attempts", s->attempts, "Connection attempts (the first connection and every reconnect).");
  COUNTER("successes", s->successes, "Attempts that ended open and subscribed.");
  COUNTER("failures", s->failures, "Attempts that failed.");
  GAUGE("success_rate", "%.6f", s->attempts ? (double)s->successes / (double)s->attempts : 0.0,
        "Successes divided by attempts (0 before the first attempt).");
  COUNTER("events", s->events, "Events received from the stream.");
  COUNTER("events_dropped", s->dropped, "Events dropped because the queue was full or memory ran out.");
  COUNTER("health_dropped", s->health_dropped, "Health and policy items dropped (cap or memory).");
  COUNTER("pauses", s->pauses, "Times reading stopped because the queue was full (overflow = pause).");
  HEAD("paused_seconds_total", "counter", "Seconds reading was stopped for a full queue.");
  L("genesys_notify_paused_seconds_total{client=\"%s\"} %.3f\n", cl, s->paused_ms / 1000.0);
  COUNTER("tls_resumed", s->tls_resumed, "Connections whose TLS session was resumed.");
  COUNTER("resync_runs", s->resync_runs, "Resyncs started after deaf intervals.");
  COUNTER("resync_entities", s->resync_entities, "Resync items delivered (one per entity).");
  COUNTER("resync_requests", s->resync_requests, "REST requests made by resyncs.");
  COUNTER("resync_stale", s->resync_stale, "Snapshots dropped: a newer event was delivered first.");
  COUNTER("resync_forbidden", s->resync_forbidden, "Resync families skipped after a 403.");
  COUNTER("resync_rate_limited", s->resync_rate_limited, "Resync requests answered 429.");
  COUNTER("resync_failed", s->resync_failed, "Resyncs that gave up after repeated failures.");
  COUNTER("heartbeats", s->heartbeats, "Heartbeat messages received on the stream.");
  COUNTER("malformed", s->malformed, "Frames that were not a JSON object.");
  COUNTER("disconnects", s->disconnects, "Live connections that ended.");
  COUNTER("health", s->health, "Health items produced.");
  COUNTER("duplicates", s->duplicates, "Second copies of events dropped during rollovers.");
  COUNTER("rollovers", s->rollovers, "Make-before-break moves to a new channel (socket_closing or renewal).");
  COUNTER("renewals", s->renewals, "Channels renewed by resubscribing before their end.");
  COUNTER("renewal_rollovers", s->renewal_rollovers,
          "Channels renewed by moving to a new channel before their token's end.");
  COUNTER("evictions", s->evictions, "Live channels the server removed before their end.");
  GAUGE("queued_events", "%llu", (unsigned long long)s->queued_events, "Events waiting for poll().");
  GAUGE("queued_bytes", "%llu", (unsigned long long)s->queued_bytes,
        "Estimated bytes held by the events waiting for poll().");
  HEAD("reconnect_latency_seconds", "summary",
       "Attempt start to open and subscribed; quantiles over the latest 1024 attempts.");
  if (s->lat_count) {
    L("genesys_notify_reconnect_latency_seconds{client=\"%s\",quantile=\"0.5\"} %.4f\n", cl, s->lat_p50 / 1000.0);
    L("genesys_notify_reconnect_latency_seconds{client=\"%s\",quantile=\"0.9\"} %.4f\n", cl, s->lat_p90 / 1000.0);
    L("genesys_notify_reconnect_latency_seconds{client=\"%s\",quantile=\"0.99\"} %.4f\n", cl, s->lat_p99 / 1000.0);
  }
  L("genesys_notify_reconnect_latency_seconds_sum{client=\"%s\"} %.4f\n", cl, s->lat_sum / 1000.0);
  L("genesys_notify_reconnect_latency_seconds_count{client=\"%s\"} %llu\n", cl, (unsigned long long)s->lat_count);
  if (s->lat_count)
    GAUGE("reconnect_latency_max_seconds", "%.4f", s->lat_max / 1000.0,
          "Longest reconnect latency among the latest 1024 attempts.");
  HEAD("up", "gauge", "1 while the stream is open; the state label names the client's state.");
  L("genesys_notify_up{client=\"%s\",state=\"%s\"} %d\n", cl, state, strcmp(state, "open") == 0);
  GAUGE("topics_wanted", "%llu", (unsigned long long)s->topics_wanted, "Topics the client wants.");
  GAUGE("topics_confirmed", "%llu", (unsigned long long)s->topics_confirmed,
        "Topics the server holds on the live channel.");
  GAUGE("subscriptions_synced", "%d", s->subscriptions_synced,
        "1 when the server holds exactly the wanted topics and nothing is in flight.");
  GAUGE("uptime_seconds", "%.3f", s->uptime_ms / 1000.0, "Seconds since the client started.");
  GAUGE("connected_seconds", "%.3f", s->connected_ms / 1000.0,
        "Age of the current connection in seconds (0 when not open).");
  HEAD("deaf_seconds_total", "counter", "Seconds without a live connection since the first open.");
  L("genesys_notify_deaf_seconds_total{client=\"%s\"} %.3f\n", cl, s->deaf_ms / 1000.0);
  COUNTER("scheduler_cycles", s->sched_cycles, "Reconnect cycles the single-flight scheduler opened.");
  COUNTER("scheduler_coalesced", s->sched_coalesced, "Reconnect triggers folded into a cycle already open.");
  COUNTER("scheduler_triggers", s->sched_triggers, "Reconnect triggers (close, error, timeout, manual, expired).");
  HEAD("scheduler_triggers_by_reason_total", "counter", "Reconnect triggers by reason.");
  for (int i = 0; i < GN_METRICS_REASONS; i++)
    L("genesys_notify_scheduler_triggers_by_reason_total{client=\"%s\",reason=\"%s\"} %llu\n", cl,
      reasons[i], (unsigned long long)s->sched_by_reason[i]);
  COUNTER("token_requests", s->token_requests, "Token requests for the client's shared credential.");
  GAUGE("wake_peers", "%llu", (unsigned long long)s->wake_peers,
        "Peers connected to the client's wake socket.");
  COUNTER("wake_refused", s->wake_refused,
          "Connections to the wake socket closed at once (1024 peers reached, or no memory).");
#undef COUNTER
#undef GAUGE
#undef HEAD
#undef L
  return b.p;
oom:
  gn_buf_free(&b);
  return NULL;
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

char *gn_metrics_prometheus_channels(const gn_metrics_snapshot_t *per, const char *const *states,
                                     const int *numbers, size_t n, const char *client) {
  gn_buf_t b = {0};
  char line[512];
  const char *cl = client ? client : "";
  if (gn_buf_add(&b, "", 0)) goto oom;
#define L(...) do { snprintf(line, sizeof line, __VA_ARGS__); if (gn_buf_add(&b, line, strlen(line))) goto oom; } while (0)
#define FAMILY(name, type, help, fmt, expr) do { \
    L("# HELP genesys_notify_channel_" name " " help "\n"); \
    L("# TYPE genesys_notify_channel_" name " " type "\n"); \
    for (size_t i = 0; i < n; i++) { const gn_metrics_snapshot_t *s = &per[i]; (void)s; \
      L("genesys_notify_channel_" name "{client=\"%s\",channel=\"%d\"} " fmt "\n", cl, numbers[i], expr); } \
  } while (0)
  L("# HELP genesys_notify_channel_up 1 while the channel's stream is open; the state label names its state.\n");
  L("# TYPE genesys_notify_channel_up gauge\n");
  for (size_t i = 0; i < n; i++)
    L("genesys_notify_channel_up{client=\"%s\",channel=\"%d\",state=\"%s\"} %d\n", cl, numbers[i],
      states[i], strcmp(states[i], "open") == 0);
  FAMILY("events_total", "counter", "Events the channel received.", "%llu", (unsigned long long)s->events);
  FAMILY("attempts_total", "counter", "Connection attempts of the channel.", "%llu", (unsigned long long)s->attempts);
  FAMILY("successes_total", "counter", "Attempts of the channel that ended open and subscribed.", "%llu",
         (unsigned long long)s->successes);
  FAMILY("failures_total", "counter", "Attempts of the channel that failed.", "%llu",
         (unsigned long long)s->failures);
  FAMILY("duplicates_total", "counter", "Second copies of events the channel's rollovers dropped.", "%llu",
         (unsigned long long)s->duplicates);
  FAMILY("disconnects_total", "counter", "Live connections of the channel that ended.", "%llu",
         (unsigned long long)s->disconnects);
  FAMILY("rollovers_total", "counter", "Rollovers of the channel.", "%llu", (unsigned long long)s->rollovers);
  FAMILY("topics_wanted", "gauge", "Topics placed on the channel.", "%llu", (unsigned long long)s->topics_wanted);
  FAMILY("topics_confirmed", "gauge", "Topics the server holds on the channel.", "%llu",
         (unsigned long long)s->topics_confirmed);
  FAMILY("subscriptions_synced", "gauge", "1 when the server holds exactly the channel's topics.", "%d",
         s->subscriptions_synced);
  FAMILY("connected_seconds", "gauge", "Age of the channel's connection in seconds (0 when not open).",
         "%.3f", s->connected_ms / 1000.0);
#undef FAMILY
#undef L
  return b.p;
oom:
  gn_buf_free(&b);
  return NULL;
}
