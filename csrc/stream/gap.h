/* gap.h: a channel's deaf interval: from the moment its live socket is gone (or, before the
 * first connection, from the first attempt) until a socket is open again, when the health item
 * "restored" reports it (deaf_from_ms..deaf_to_ms, wall clock) so the application can resync
 * what it could not hear. Also keeps the metrics of the open time and the total deaf time.
 *
 * Service thread only.
 */
#ifndef GN_GAP_H
#define GN_GAP_H

#include <stdint.h>

#include "env.h"

/* How long before the client read a message the server may have written it (network, TCP
 * retransmission, scheduling on both ends): what the server wrote after the last message a dead
 * link delivered may be lost, and some of that was written before the client read that message.
 * Reported intervals start this much earlier than the last message heard. */
#define GN_GAP_LATENCY_MS 1000.0

typedef struct {
  uint64_t down_since_ms;     /* monotonic; 0 while connected or before the first attempt */
  double down_since_wall_ms;
  int ever_open;
  uint64_t open_since_ms;     /* monotonic; 0 while not open */
} gn_gap_t;

/* The live socket is gone: deaf since it last delivered a message, at heard_ms (monotonic) and
 * heard_wall_ms (wall clock), unless already deaf; the interval reported starts
 * GN_GAP_LATENCY_MS before heard_wall_ms. Returns nothing. */
void gn_gap_deaf(gn_gap_t *g, gn_metrics_t *m, uint64_t heard_ms, double heard_wall_ms);
/* The socket is no longer open (for the metrics' connected time). Returns nothing. */
void gn_gap_not_open(gn_gap_t *g, gn_metrics_t *m);
/* An attempt that started at attempt_start_ms failed before any connection was ever open: deaf
 * since it started. Returns nothing. */
void gn_gap_attempt_failed(gn_gap_t *g, uint64_t attempt_start_ms);
/* A socket is open at now: counts the success and the deaf time. Returns nothing. */
void gn_gap_opened(gn_gap_t *g, gn_metrics_t *m, uint64_t now);
/* After "connected": reports "restored" with the interval when a gap just ended, and closes the
 * gap. Returns nothing. */
void gn_gap_restored(gn_gap_t *g, gn_env_t *env, uint64_t now, int new_channel,
                     const char *channel_id);

#endif
