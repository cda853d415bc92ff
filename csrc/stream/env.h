/* env.h: what the parts of one channel share with its client, and the states the owner sees.
 *
 * A client owns some things once (settings, the queue to the owner, the shared token cache
 * entry) and gives each channel of its pool a gn_env_t pointing at them and at what is that
 * channel's own (its state, counters and topics); the channel, its subscription changes and its
 * rollover report through it.
 */
#ifndef GN_ENV_H
#define GN_ENV_H

#include <jansson.h>
#include <stdatomic.h>

#include "conf.h"
#include "metrics.h"
#include "queue.h"
#include "topics.h"
#include "transport.h"

typedef struct gn_service gn_service_t;
typedef struct gn_token_entry gn_token_entry_t;

typedef enum {
  GN_ST_IDLE = 0,   /* created, not started */
  GN_ST_AUTH,       /* getting a token */
  GN_ST_CHANNEL,    /* creating the channel */
  GN_ST_SUBSCRIBE,  /* putting the topics */
  GN_ST_CONNECT,    /* WebSocket connect and handshake */
  GN_ST_OPEN,
  GN_ST_BACKOFF,    /* waiting before the next attempt */
  GN_ST_FAILED,     /* final failure (gave up, auth, forbidden); reconnect() starts over */
  GN_ST_CLOSED,
  GN_ST_ROLLOVER,   /* open, and moving to a new channel before the server closes this one;
                       the owner sees "open": the live socket still delivers */
  GN_ST_STANDBY,    /* a fleet member without the lease (lease.h): no channel, waiting */
  GN_ST_COUNT_
} gn_state_t;

/* The state's name as the owner sees it ("open" for GN_ST_ROLLOVER). Any thread. */
const char *gn_state_name(gn_state_t s);

/* What a layer above sees of a channel's stream (the fleet lease's stream append, lease.h).
 * Service thread. */
typedef struct {
  /* each event before it is queued to the owner; returns 0 to withhold it (counted by the tap) */
  int (*event)(void *ud, const gn_msg_t *m, const char *channel_id, const char *raw, size_t len);
  /* each deaf interval reported to the owner (health kind "restored" or "gap"), wall ms */
  void (*deaf)(void *ud, const char *kind, double from_ms, double to_ms);
  void *ud;
} gn_tap_t;

enum { GN_NOTE_CREATED = 0, GN_NOTE_MAY_CREATE, GN_NOTE_EVICTED };

typedef struct gn_env gn_env_t;
struct gn_env {
  const gn_conf_t *conf;
  gn_service_t *svc;
  gn_token_entry_t *tok;  /* shared per credential across the process */
  gn_queue_t *queue;
  gn_metrics_t *metrics;
  gn_topics_t *topics;    /* desired topics (service thread once started) */
  _Atomic int state;      /* gn_state_t the owner sees; written on the service thread */
  /* a channel of a client's pool (client.c): its number there (0-based), whether its health
   * items say it ("channel", 1-based: the client holds or held more than one), and the spare
   * unit of the credential's budget for a rollover (take 1: returns 1 when granted; take 0:
   * gives it back). spare NULL: a rollover needs no unit. */
  int index;
  _Atomic int *stamp;
  int (*spare)(void *ud, int take);
  void *spare_ud;
  int spare_waiting;      /* a rollover of this channel waits for the spare unit: the client
                           * tells only such channels when it comes back. Service thread. */
  /* conn, which we are closing or aborting (before that call), holds a unit of the budget: it
   * comes back once the transport says conn is over (gn_conn_set_gone), even after the channel
   * and its client are gone (the budget entry is held until then). With spare_ud. NULL: the
   * caller gives the unit back itself. Service thread. */
  void (*unit_on_gone)(void *ud, gn_conn_t *conn);
  /* the credential's budget told of a channel created (GN_NOTE_CREATED), asked whether one may
   * be created now (GN_NOTE_MAY_CREATE: 1 yes, 0 no: the server's limit is below what the
   * credential holds), told of a live channel the server removed before its end
   * (GN_NOTE_EVICTED); with spare_ud. NULL: none. Service thread. */
  int (*budget_note)(void *ud, int what, const char *channel_id);
  int count_events;       /* count events in metrics too (the queue counts them elsewhere) */
  const gn_tap_t *tap;    /* NULL: none */
  /* Resync (resync.h), NULL when off: deaf gets each deaf interval this env reports (health
   * "restored" or "gap", wall-clock ms), seen each event before it is queued. Service thread. */
  void (*deaf)(void *ud, gn_env_t *env, double from_ms, double to_ms);
  void (*seen)(void *ud, const gn_msg_t *m);
  void *resync_ud;
};

/* Queues health item kind with fields (stolen, may be NULL) stamped with the current state.
 * Returns nothing. Service thread. */
void gn_env_health(gn_env_t *env, const char *kind, json_t *fields);

/* An event read on one of a channel's sockets (the live one, or a rollover's), already known to
 * be no duplicate: shown to the tap, then queued to the owner as coming from channel_id.
 * Returns 1 when it was queued, 0 when the tap withheld it. Service thread. */
int gn_env_deliver(gn_env_t *env, const gn_msg_t *m, const char *channel_id, const char *raw,
                   size_t len);
/* A heartbeat (counted) or a malformed message of len bytes (counted and reported) read on any
 * of a channel's sockets; other kinds are ignored. Returns nothing. Service thread. */
void gn_env_note(gn_env_t *env, const gn_msg_t *m, size_t len);

/* Opens a WebSocket to url with the client's TLS, size and timeout settings (the live
 * connection and a rollover's replacement alike), reporting to cbs with ud. Returns the
 * connection, or NULL and err. Service thread. */
gn_conn_t *gn_env_open_conn(gn_env_t *env, const char *url, const gn_conn_cbs_t *cbs, void *ud,
                            char *err, size_t errlen);

/* Adds one to a counter of env's metrics under their lock. Service thread. */
#define GN_COUNT(env, field)                      \
  do {                                            \
    pthread_mutex_lock(&(env)->metrics->mu);      \
    (env)->metrics->field++;                      \
    pthread_mutex_unlock(&(env)->metrics->mu);    \
  } while (0)

#endif
