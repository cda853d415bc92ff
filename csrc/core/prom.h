/* prom.h: every Prometheus text the library writes (the client's, its pool's channels', the
 * fleet lease's through gn_prom_family), so the format and its escaping live in one place. Pure:
 * reads only its arguments; any thread. Each returns a malloc'd string the caller frees, or
 * NULL when out of memory, unless it says otherwise. */
#ifndef GN_PROM_H
#define GN_PROM_H

#include "gn_util.h"
#include "metrics.h"

/* Prometheus text exposition of a snapshot: every field client:metrics() has, each family with
 * # HELP and # TYPE (counters as NAME_total, the rest as gauges, the reconnect latency as a
 * summary in seconds with _sum and _count), every sample labelled client="NAME"; returns a malloc'd string the caller frees (NULL when
 * out of memory). Any thread: it reads only its arguments, not the live gn_metrics_t. */
char *gn_metrics_prometheus(const gn_metrics_snapshot_t *s, const char *state, const char *client);

/* Prometheus families of a pool's channels: genesys_notify_channel_* with the labels
 * client="NAME" and channel="N" (1-based), from per[0..n) (snapshots of the channels) and
 * states[0..n). Returns a malloc'd string (NULL when out of memory). Any thread. */
char *gn_metrics_prometheus_channels(const gn_metrics_snapshot_t *per, const char *const *states,
                                     const int *numbers, size_t n, const char *client);

/* Appends one family to b: "# HELP genesys_notify_NAME HELP", "# TYPE genesys_notify_NAME TYPE",
 * then a sample "genesys_notify_NAME<labels[i]> <values[i]>" for each of the n (labels written
 * as given: "" or "{k=\"v\",...}"; values already formatted). Returns 0, or -1 when out of
 * memory. */
int gn_prom_samples(gn_buf_t *b, const char *name, const char *type, const char *help,
                    const char *const *labels, const char *const *values, size_t n);

/* Appends one family with a single sample to b: "# HELP genesys_notify_NAME HELP", "# TYPE
 * genesys_notify_NAME TYPE" and "genesys_notify_NAME{client="CLIENT"} VALUE" (value already
 * formatted). Returns 0, or -1 when out of memory. */
int gn_prom_family(gn_buf_t *b, const char *name, const char *type, const char *help,
                   const char *client, const char *value);

/* The whole text of a client's metrics("prometheus"): gn_metrics_prometheus of s, the pool's
 * channels (per, states, numbers: n of them), and the topics waiting for the credential's
 * channel budget. */
char *gn_prom_client(const gn_metrics_snapshot_t *s, const char *state, const char *client,
                     const gn_metrics_snapshot_t *per, const char *const *states,
                     const int *numbers, size_t n, size_t topics_waiting);

#endif
