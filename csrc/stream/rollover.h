/* rollover.h: make-before-break hand-over to a new channel (Genesys's socket_closing notice, or
 * a renewal before a channel's or its token's end: the renewal: channel_int.h).
 *
 * While the old socket still delivers, the rollover creates channel B, puts every wanted topic
 * on it and opens its WebSocket. The rollover owns its sockets: B's until it opens, and each old
 * socket while it drains; their connection callbacks are the rollover's, and the channel is
 * told through two hooks only: take_over (B is open: the channel takes it with gn_roll_take,
 * which hands the old live socket to the rollover) and failed (B could not be made). The old
 * socket is kept *draining*: read until the server closes it (Genesys closes it about a minute
 * after the notice) or GN_ROLL_DRAIN_MS pass, so what the server had already written to it is
 * not thrown away; its events reach the owner through env (gn_env_deliver) like the live
 * socket's. From the notice until the draining ends (and a few seconds after), every event's
 * CorrelationId goes through a dedup set (dedup.h): the copy that arrives second, on either
 * socket, is dropped. The budget units a rollover holds go back to env->spare by the rollover
 * itself, once the old channel's socket is gone: a socket we close is gone when the transport
 * says so (the server answered our close frame, or the TCP connection ended), not when our
 * close is sent; until then the server counts it as connected, and a channel created meanwhile
 * past the server's limit would evict a live one. gn_roll_close takes the transport's callbacks
 * back (no callback reaches a rollover that is gone): a unit still waiting goes to the client
 * (env->unit_on_gone), which gives it back when its socket ends.
 *
 * A failure while B is prepared calls failed(ud, message) once; the rollover is then idle.
 * A draining socket that ends without the server's close frame (lost, or cut short by us) may
 * have lost what only it carried (events published before B was open and after the last
 * message it delivered): that interval is reported as health "gap". So is a socket the server
 * closed cleanly but, as far as the client can tell, before B was open: events flowed and none
 * came on both (a client that read the notice late, after the server's grace, behind a backlog;
 * or B took longer than the grace): what the server published between its close and B's open
 * went nowhere. Service thread only.
 */
#ifndef GN_ROLLOVER_H
#define GN_ROLLOVER_H

#include <stdint.h>

#include "dedup.h"
#include "env.h"
#include "http.h"
#include "topics.h"
#include "transport.h"

#define GN_ROLL_DRAIN_MS 90000  /* an old socket is read at most this long after the hand-over */
#define GN_ROLL_DRAIN_MAX 4     /* old sockets draining at once (back-to-back rollovers) */
#define GN_ROLL_DEDUP_TAIL_MS 5000 /* de-duplication goes on this long after the last drain */
#define GN_ROLL_CLOSE_SETTLE_MS 250  /* a socket we closed counts at the server this long after
                                      its end is confirmed (the server's close answer, or the
                                      TCP connection's end): its bookkeeping may lag */
#define GN_ROLL_CLOSE_WAIT_MS 10000  /* a unit whose socket's end is never confirmed comes back
                                      then (the transport ends a closed socket within ~2 s) */
#define GN_ROLL_UNITS (4 * GN_ROLL_DRAIN_MAX) /* units waiting to come back at once */

/* A unit of the budget on its way back: while conn is set, that socket (closed or aborted by
 * us) is not known to be over at the server (its gone callback will say so, or due, the bound,
 * passes); then the unit is free at due. */
typedef struct {
  uint64_t due;               /* monotonic */
  gn_conn_t *conn;
} gn_roll_unit_t;

typedef struct {
  gn_conn_t *conn;
  char *channel_id;
  uint64_t until_ms;          /* monotonic: closed by us then */
  double last_heard_wall_ms;  /* its last message */
  double notice_wall_ms;      /* when its socket_closing notice was read */
  double successor_open_wall_ms; /* its successor's socket opened */
  uint64_t events;            /* events it delivered after the hand-over (first copies) */
  uint32_t serial;            /* its number among the rollover's sockets (later: higher) */
  int overlapped;             /* an event came on it and on a later socket: no gap between */
  int pinged;                 /* a ping went out on it once its topics were off: its pong
                                 proves that everything the server wrote to it is in */
  int proven;                 /* the pong came: closing it now loses nothing */
  int ours;                   /* a renewal's: the server will not close it, we do */
  int unit;                   /* holds a unit of the budget (its rollover's) */
  gn_http_req_t *req;         /* taking its topics off (DELETE subscriptions) */
  void *roll;                 /* its gn_roll_t */
  uint64_t flow;              /* events seen since its notice, on it or (first copies) later */
} gn_roll_old_t;

/* What the rollover tells its channel (with ud). Service thread. */
typedef struct {
  /* B is open: the channel takes it (gn_roll_take) and gives it its own callbacks */
  void (*take_over)(void *ud);
  /* B could not be made (msg says why); the rollover is idle again */
  void (*failed)(void *ud, const char *msg);
} gn_roll_hooks_t;

typedef struct {
  gn_env_t *env;
  const gn_roll_hooks_t *hooks;
  void *ud;

  int active;                    /* B is being prepared */
  uint64_t start_ms;
  char *token;                   /* a copy for B's two requests */
  uint64_t token_gen;
  gn_http_req_t *req;
  gn_conn_t *conn;
  char *channel_id, *connect_uri;
  gn_topics_t sent, confirmed;   /* B's subscriptions: asked for, then held */
  int renewal;                   /* a renewal (the renewal: channel_int.h), not a socket_closing notice: nobody
                                    closes the old socket but us, after drain_ms at most */
  long drain_ms;
  int release_wanted;            /* the spare unit is wanted: close old sockets once proven */
  int unit;                      /* B's unit of the budget (the caller took it): it passes to
                                    the old socket at the hand-over and comes back (units)
                                    once that socket is gone: when we closed it, once the
                                    transport confirms its end (gn_conn_close_then) and
                                    GN_ROLL_CLOSE_SETTLE_MS more; at once when B fails before
                                    its socket exists */
  gn_roll_unit_t units[GN_ROLL_UNITS]; /* units on their way back */
  int nunits;
  int unit_overflow;             /* units back with no room in units: free at the next give */
  double expires_wall_ms;        /* B's creation answer's expires (-1: none) */
  uint64_t token_end_ms;         /* B's token's end (monotonic, 0 unknown) */

  double notice_wall_ms;         /* the live socket's socket_closing notice was read */
  uint32_t next_serial;          /* sockets are numbered in the order they open */
  uint32_t live_serial, b_serial;
  uint64_t live_after_notice;    /* events on the live socket since its notice */

  gn_roll_old_t old[GN_ROLL_DRAIN_MAX];
  uv_timer_t *drain_timer;
  gn_dedup_t dedup;
  uint64_t dedup_until_ms;       /* monotonic: de-duplication ends then (0: while busy) */
} gn_roll_t;

/* Prepares r; hooks (which must outlive r) are called with ud. Returns nothing. */
void gn_roll_init(gn_roll_t *r, gn_env_t *env, const gn_roll_hooks_t *hooks, void *ud);
/* Creates the drain timer on loop. Returns 0, or -1 when out of memory. */
int gn_roll_start(gn_roll_t *r, uv_loop_t *loop);
/* Ends everything: B, the draining sockets, the timer (released on the loop), the dedup set.
 * A unit whose socket's end is still awaited goes to env->unit_on_gone (without it, it waits no
 * more); gn_roll_give_units(r, 1) gives back the others. Returns nothing. */
void gn_roll_close(gn_roll_t *r);
/* Marks a rollover as started (the token comes next); de-duplication starts now. Returns
 * nothing. */
void gn_roll_begin(gn_roll_t *r);
/* Creates channel B with token (generation gen, invalidated on a 401; its end token_end_ms,
 * monotonic, 0 unknown). Returns nothing; failures go to failed(). A no-op when no rollover is
 * active or B is already under way. */
void gn_roll_post(gn_roll_t *r, const char *token, uint64_t gen, uint64_t token_end_ms);
/* Gives the budget units that came back to env->spare (all: every unit r holds, at once: the
 * channel stops or reconnects). The rollover does so itself when its own sockets end or its
 * drain timer finds units due. Returns nothing. */
void gn_roll_give_units(gn_roll_t *r, int all);
/* Another rollover waits for the spare unit: old sockets are closed as soon as they are proven
 * (their pong came: see unsub_done in rollover.c), at once for those already proven. Returns the
 * number closed now. */
int gn_roll_release(gn_roll_t *r);
/* Abandons B (no callback); draining sockets go on. Returns nothing. */
void gn_roll_cancel(gn_roll_t *r);
/* Abandons B and closes the draining sockets (a reconnect or a final failure). Returns
 * nothing. */
void gn_roll_abort_all(gn_roll_t *r);
/* Hands B over (its connection, channel id, connectUri and confirmed topics, now the
 * caller's, who gives the connection its own callbacks: gn_conn_set_cbs) and ends the
 * preparation; old (the previous live socket, may be NULL) with its channel id old_id (copied)
 * and last message time starts draining, now the rollover's (its callbacks too). Called from
 * the take_over hook. Returns nothing. */
void gn_roll_take(gn_roll_t *r, gn_conn_t **conn, char **channel_id, char **connect_uri,
                  gn_topics_t *confirmed, gn_conn_t *old, const char *old_id,
                  double old_last_heard_wall_ms);

/* Returns 1 when an event with this CorrelationId was already delivered by another socket of
 * a rollover (drop it), else 0 (deliver it). conn: the socket it came on (the live one, when the
 * channel asks). A copy on two sockets
 * proves that they overlapped (the server wrote to both at once); a draining socket that ends
 * cleanly without such proof while events flowed is reported as a gap (see report_drained). */
int gn_roll_seen(gn_roll_t *r, const char *correlation_id, uint64_t now_ms,
                 const gn_conn_t *conn);

#endif
