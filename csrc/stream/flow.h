/* flow.h: overflow = "pause": a full queue stops the reading of the live socket instead of
 * dropping events.
 *
 * After an event from the live socket is queued, a full queue (queue_limit or queue_bytes)
 * pauses reading (lws_rx_flow_control: the kernel's buffer fills and TCP pushes back on the
 * server, which keeps the events), tells the heartbeat watchdog (silence is then ours, not the
 * link's), and reports a "backpressure" health item. The owner's pops tell the service thread
 * when the queue is half empty (gn_queue_want_room's callback, posted as a task): reading
 * resumes. After pause_max_ms (0: never) of one pause, reading resumes anyway and events over
 * the limits are dropped, counted and reported ("overflow") until there is room again.
 * Metrics: pauses, paused_ms.
 *
 * Service thread only.
 */
#ifndef GN_FLOW_H
#define GN_FLOW_H

#include <stdint.h>
#include <uv.h>

#include "env.h"
#include "heartbeat.h"

typedef struct {
  gn_env_t *env;
  gn_heartbeat_t *hb;  /* the live socket's watchdog */
  gn_conn_t **live;    /* where the channel keeps its live socket (NULL when none) */
  uv_timer_t *timer;   /* pause_max_ms */
  gn_conn_t *conn;     /* the socket paused (compared, never used after it is gone) */
  int on;              /* overflow = "pause" and started */
  int paused, dropping;
  uint64_t since_ms;   /* monotonic start of the pause */
} gn_flow_t;

/* Starts flow control for a channel (nothing happens with overflow = "drop"). Returns 0, or -1
 * when out of memory. */
int gn_flow_start(gn_flow_t *f, gn_env_t *env, uv_loop_t *loop, gn_heartbeat_t *hb,
                  gn_conn_t **live);
/* An event from conn (the live socket) was queued: pauses reading when the queue is full.
 * Returns nothing. */
void gn_flow_event(gn_flow_t *f, gn_conn_t *conn);
/* The owner made room: reading resumes (or drop mode ends). Returns nothing. */
void gn_flow_room(gn_flow_t *f);
/* Stops (the channel closes). Returns nothing. */
void gn_flow_close(gn_flow_t *f);

#endif
