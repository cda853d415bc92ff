/* rollover.h: make-before-break hand-over to a new channel (Genesys's socket_closing notice).
 *
 * While the old socket still delivers, the rollover creates channel B, puts every desired topic
 * on it and opens its WebSocket with the channel's own connection callbacks; when B opens, the
 * channel takes it (gn_roll_take) and closes the old socket. Events seen on both sockets during
 * the overlap are delivered once: the CorrelationIds of recent events are remembered and
 * checked while a rollover runs and for a few seconds after it.
 *
 * A failure at any step calls failed(ud, message) once; the rollover is then idle again.
 * Service thread only.
 */
#ifndef GN_ROLLOVER_H
#define GN_ROLLOVER_H

#include <stdint.h>

#include "env.h"
#include "http.h"
#include "transport.h"

#define GN_ROLL_RECENT 128  /* CorrelationIds remembered for the overlap */

typedef struct {
  gn_env_t *env;
  const gn_conn_cbs_t *conn_cbs; /* B's connection reports to the channel like the live one */
  void *ud;
  void (*failed)(void *ud, const char *msg);
  gn_topics_t *confirmed;        /* where a successful PUT on B is recorded */

  int active;
  uint64_t start_ms;
  char *token;                   /* a copy for B's two requests */
  uint64_t token_gen;
  gn_http_req_t *req;
  gn_conn_t *conn;
  char *channel_id, *connect_uri;

  char recent[GN_ROLL_RECENT][40];
  unsigned recent_pos;
  uint64_t dedup_until_ms;
} gn_roll_t;

/* Prepares r. Returns nothing. */
void gn_roll_init(gn_roll_t *r, gn_env_t *env, const gn_conn_cbs_t *conn_cbs, void *ud,
                  void (*failed)(void *ud, const char *msg), gn_topics_t *confirmed);
/* Marks a rollover as started (the token comes next). Returns nothing. */
void gn_roll_begin(gn_roll_t *r);
/* Creates channel B with token (generation gen, invalidated on a 401). Returns nothing;
 * failures go to failed(). A no-op when no rollover is active or B is already under way. */
void gn_roll_post(gn_roll_t *r, const char *token, uint64_t gen);
/* Abandons a rollover in progress (no callback). Returns nothing. */
void gn_roll_cancel(gn_roll_t *r);
/* Returns 1 when conn is B's connection, else 0. */
int gn_roll_owns(const gn_roll_t *r, const gn_conn_t *conn);
/* B's connection ended before it was taken: forget it (the caller reports the failure).
 * Returns nothing. */
void gn_roll_lost_conn(gn_roll_t *r);
/* Hands B over (its connection, channel id and connectUri, now the caller's) and ends the
 * rollover; de-duplication stays on for a few seconds. Returns nothing. */
void gn_roll_take(gn_roll_t *r, gn_conn_t **conn, char **channel_id, char **connect_uri);

/* Remembers an event's CorrelationId (NULL allowed); while a rollover runs or just ran, first
 * looks whether it was already seen (the scan is not free, so only then). Returns 1 for a
 * duplicate, else 0. */
int gn_roll_seen(gn_roll_t *r, const char *correlation_id, uint64_t now_ms);

#endif
