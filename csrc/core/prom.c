/* prom.c: Prometheus text (see prom.h). */
#include "prom.h"

#include <stdio.h>
#include <string.h>

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

/* See prom.h. */
int gn_prom_samples(gn_buf_t *b, const char *name, const char *type, const char *help,
                    const char *const *labels, const char *const *values, size_t n) {
  if (gn_buf_add(b, "# HELP genesys_notify_", 22) || gn_buf_add(b, name, strlen(name)) ||
      gn_buf_add(b, " ", 1) || gn_buf_add(b, help, strlen(help)) ||
      gn_buf_add(b, "\n# TYPE genesys_notify_", 23) || gn_buf_add(b, name, strlen(name)) ||
      gn_buf_add(b, " ", 1) || gn_buf_add(b, type, strlen(type)) || gn_buf_add(b, "\n", 1))
    return -1;
  for (size_t i = 0; i < n; i++)
    if (gn_buf_add(b, "genesys_notify_", 15) || gn_buf_add(b, name, strlen(name)) ||
        gn_buf_add(b, labels[i], strlen(labels[i])) || gn_buf_add(b, " ", 1) ||
        gn_buf_add(b, values[i], strlen(values[i])) || gn_buf_add(b, "\n", 1))
      return -1;
  return 0;
}

/* See prom.h. */
int gn_prom_family(gn_buf_t *b, const char *name, const char *type, const char *help,
                   const char *client, const char *value) {
  gn_buf_t label = {0};
  const char *cl = client ? client : "";
  int rc = -1;
  if (!gn_buf_add(&label, "{client=\"", 9) && !gn_buf_add(&label, cl, strlen(cl)) &&
      !gn_buf_add(&label, "\"}", 2)) {
    const char *l = label.p;
    rc = gn_prom_samples(b, name, type, help, &l, &value, 1);
  }
  gn_buf_free(&label);
  return rc;
}

/* See prom.h. */
char *gn_prom_client(const gn_metrics_snapshot_t *s, const char *state, const char *client,
                     const gn_metrics_snapshot_t *per, const char *const *states,
                     const int *numbers, size_t n, size_t topics_waiting) {
  char *txt = gn_metrics_prometheus(s, state, client);
  char *pool = txt ? gn_metrics_prometheus_channels(per, states, numbers, n, client) : NULL;
  gn_buf_t b = {0};
  char v[32];
  snprintf(v, sizeof v, "%d", (int)topics_waiting);
  int bad = !pool || gn_buf_add(&b, txt, strlen(txt)) || gn_buf_add(&b, pool, strlen(pool)) ||
            gn_prom_family(&b, "topics_waiting", "gauge",
                           "Topics waiting for the credential's channel budget.", client, v);
  free(txt);
  free(pool);
  if (bad) {
    gn_buf_free(&b);
    return NULL;
  }
  return b.p;
}
