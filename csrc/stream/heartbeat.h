/* heartbeat.h: the watchdog of a live socket.
 *
 * Genesys sends a heartbeat about every 30 s, but a half-open TCP link looks alive to the socket
 * for much longer. After idle_ms without any message the watchdog sends Genesys's
 * {"message":"ping"}; if nothing at all comes within ping_timeout_ms after it, the link is dead
 * and dead(ud) is called once (the socket itself is the caller's to end). "Comes" includes what
 * already waits unread in the socket: once the deadline has passed the loop gets one more turn
 * of I/O (a 1 ms timer; libuv runs timers before it polls) before the link is called dead, so a
 * thread kept off the CPU past the deadline reads a pong that arrived in time.
 *
 * Service thread only.
 */
#ifndef GN_HEARTBEAT_H
#define GN_HEARTBEAT_H

#include <stdint.h>
#include <uv.h>

#include "transport.h"

typedef struct {
  uv_timer_t *timer;
  long idle_ms, ping_timeout_ms;
  gn_conn_t *conn;       /* the socket watched, or NULL */
  uint64_t last_rx_ms;   /* monotonic: the last message (or the ping) */
  uint64_t heard_ms;     /* monotonic: the last message (or the open), pings aside */
  int ping_sent;
  int last_turn;         /* the deadline passed: one loop turn of I/O given before calling dead */
  int paused;            /* reading is stopped on purpose (a full queue): silence is not death */
  void (*dead)(void *ud);
  void *ud;
} gn_heartbeat_t;

/* Prepares hb on loop. Returns 0, or -1 when out of memory. */
int gn_heartbeat_init(gn_heartbeat_t *hb, uv_loop_t *loop, long idle_ms, long ping_timeout_ms,
                      void (*dead)(void *ud), void *ud);
/* Watches conn from now on (a new live socket). Returns nothing. */
void gn_heartbeat_watch(gn_heartbeat_t *hb, gn_conn_t *conn);
/* A message arrived on the watched socket. Returns nothing. */
void gn_heartbeat_heard(gn_heartbeat_t *hb);
/* Returns when the watched socket last delivered a message (its open time if none yet), on the
 * monotonic clock (*wall_ms: the same moment on the wall clock). */
uint64_t gn_heartbeat_last_heard(const gn_heartbeat_t *hb, double *wall_ms);
/* The socket's reading was stopped (paused = 1: no ping, never dead while so) or resumed (0:
 * the idle time counts again from now). Returns nothing. */
void gn_heartbeat_pause(gn_heartbeat_t *hb, int paused);
/* Stops watching (the socket is gone). Returns nothing. */
void gn_heartbeat_stop(gn_heartbeat_t *hb);
/* Stops and releases the timer (freed on the loop). Returns nothing. */
void gn_heartbeat_close(gn_heartbeat_t *hb);

#endif
