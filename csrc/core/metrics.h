/* metrics.h: per-client counters and reconnect-latency percentiles.
 *
 * Written by the service thread, read by the Lua thread: every access goes through the struct's
 * mutex (reads are rare and coarse: one snapshot per client:metrics() call), except `events`,
 * counted per event with an atomic add (and read with an atomic load).
 */
#ifndef GN_METRICS_H
#define GN_METRICS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define GN_LAT_SAMPLES 1024 /* latest reconnect latencies kept for percentiles */
#define GN_METRICS_REASONS 5 /* schedule.h's GN_REASON_COUNT_ (metrics.h sits below it) */

typedef struct {
  uint64_t attempts, successes, failures;
  uint64_t events, dropped, heartbeats, malformed, disconnects, health, duplicates, rollovers;
  uint64_t health_dropped;  /* health and policy items dropped (cap or memory) */
  uint64_t pauses;          /* overflow = "pause": times reading stopped for a full queue */
  double paused_ms;         /* total time reading was stopped (the current pause included) */
  uint64_t tls_resumed;     /* connections whose TLS session was resumed (no full handshake) */
  uint64_t renewals, renewal_rollovers, evictions; /* the renewal (stream/channel_int.h): resubscribed, moved, evicted */
  uint64_t queued_events, queued_bytes; /* events waiting for the owner, their estimated bytes */
  double lat_p50, lat_p90, lat_p99, lat_max; /* ms; -1 when no sample yet */
  uint64_t lat_count;
  double lat_sum;          /* ms, every latency recorded (the summary's _sum) */
  double uptime_ms;        /* since the client started */
  double connected_ms;     /* current connection's age, 0 when not open */
  double opened_wall_ms;   /* when the current connection opened (wall clock, not rounded), 0
                            * when not open: a deaf interval's end, exact to below a ms */
  double deaf_ms;          /* total time without a live connection since the first open */
  uint64_t topics_wanted, topics_confirmed; /* the client's topics; those the server holds */
  int subscriptions_synced;/* the server holds exactly the wanted topics, nothing in flight */
  /* filled by the client (gn_client_metrics), not by gn_metrics_snapshot: */
  uint64_t sched_cycles, sched_coalesced, sched_triggers;
  uint64_t sched_by_reason[GN_METRICS_REASONS]; /* triggers by reason, schedule.h's order */
  uint64_t token_requests;
  uint64_t wake_peers, wake_refused; /* the wake socket's peers now; connections it refused */
  /* resync (resync.h): runs started, entities delivered, requests made, snapshots dropped as
   * older than a delivered event, families refused (403), 429s, runs that failed */
  uint64_t resync_runs, resync_entities, resync_requests, resync_stale, resync_forbidden,
      resync_rate_limited, resync_failed;
} gn_metrics_snapshot_t;

/* The trigger reasons' names, in schedule.h's gn_reason_t order. */
#define GN_METRICS_REASON_NAMES {"close", "error", "timeout", "manual", "expired"}

typedef struct {
  pthread_mutex_t mu;
  uint64_t attempts, successes, failures;
  uint64_t events; /* atomic (__atomic builtins): counted per event without the lock */
  uint64_t dropped, heartbeats, malformed, disconnects, health, duplicates, rollovers;
  uint64_t health_dropped;
  uint64_t pauses, tls_resumed;
  uint64_t renewals, renewal_rollovers, evictions;
  double paused_ms;          /* finished pauses */
  uint64_t paused_since_ms;  /* monotonic start of the current pause, 0 when reading */
  double *lat;               /* the latest latencies: grown as they come, GN_LAT_SAMPLES at most
                              * (an idle client that connected once holds 8, not 1,024) */
  size_t lat_n, lat_pos, lat_cap;
  uint64_t lat_count;
  double lat_sum;
  double lat_max;
  uint64_t started_ms, open_since_ms;
  double open_since_wall_ms; /* the same moment on the wall clock, 0 while not open */
  double deaf_ms;
  uint64_t topics_wanted, topics_confirmed;
  uint64_t resync_runs, resync_entities, resync_requests, resync_stale, resync_forbidden,
      resync_rate_limited, resync_failed;
  int subscriptions_synced;
} gn_metrics_t;

/* Initialises m: counters at 0, no latency sample, and its mutex. Returns nothing. The owner of
 * m, before m is shared with another thread. */
void gn_metrics_init(gn_metrics_t *m);
/* Destroys m's mutex. Returns nothing. The owner of m, once no other thread can use it. */
void gn_metrics_destroy(gn_metrics_t *m);
/* Records one reconnect latency in ms (the latest GN_LAT_SAMPLES are kept for percentiles).
 * Returns nothing. Any thread: locks m's mutex. */
void gn_metrics_add_latency(gn_metrics_t *m, double ms);
/* Copies m's counters into *out and computes the latency percentiles. Returns nothing. Any
 * thread: locks m's mutex (the samples are sorted after it is released). */
void gn_metrics_snapshot(gn_metrics_t *m, gn_metrics_snapshot_t *out);
/* A client with a pool of channels (client.c): client holds what the queue counts (events,
 * dropped, health, health_dropped) and its first channel's counters, chans[0..n) each other
 * channel's own. Fills *out with the client's totals: queue counts from client, the rest
 * summed over client and chans (deaf time in
 * channel-seconds, uptime the longest, latency percentiles over every channel's samples).
 * topics_*, subscriptions_synced and connected_ms are left to the caller. Returns nothing. Any
 * thread: locks each mutex in turn. */
void gn_metrics_snapshot_pool(gn_metrics_t *client, gn_metrics_t *const *chans, size_t n,
                              gn_metrics_snapshot_t *out);
#endif
