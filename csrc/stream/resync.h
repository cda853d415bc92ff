/* resync.h: gaps healed, not just reported. After each deaf interval a channel reported
 * (health "restored" or "gap"), the client reads back over REST the current state of every
 * subscribed topic of the families it was asked to resync (resync_families.h) and queues one
 * GN_ITEM_RESYNC per entity, through the same queue as events, carrying the interval it heals
 * and the time the state was read.
 *
 * One resync at a time per client: a gap during a resync adds its topics and widens the
 * interval. Requests go one at a time, spaced, within the token's budget (rest.h) after the
 * stream's own calls; a 429 waits its Retry-After; a 403 is reported once and its family
 * skipped from then on; other failures retry through the backoff engine, and end the resync
 * (health "resync" "failed") after a few. A snapshot older than an event already delivered for
 * its entity (modifiedDate, startTime) is dropped and counted.
 *
 * Everything runs on the client's service thread, never blocking (curl multi on the loop);
 * gn_resync_new/free run on the owner thread while the service thread does not use it.
 */
#ifndef GN_RESYNC_H
#define GN_RESYNC_H

#include "env.h"
#include "message.h"
#include "topics.h"

typedef struct gn_resync gn_resync_t;

/* A resync engine for the client whose shared env is given (conf->resync_families says which
 * families; env outlives it and is used from start on). Returns it, or NULL when out of
 * memory. Owner thread. */
gn_resync_t *gn_resync_new(const gn_conf_t *conf, gn_env_t *env);
/* *out = an engine when conf asks for resync, else NULL. Returns 0, or -1 and err (out of
 * memory). Owner thread. */
int gn_resync_make(gn_resync_t **out, const gn_conf_t *conf, gn_env_t *env, char *err,
                   size_t errlen);
/* Makes env (a channel's) report its deaf intervals and events to r (NULL: nothing). Returns
 * nothing. Whichever thread creates env, before its channel starts. */
void gn_resync_wire(gn_resync_t *r, gn_env_t *env);
/* Frees it (stopped or never started); NULL allowed. Owner thread. */
void gn_resync_free(gn_resync_t *r);
/* Starts (timer, token membership) and stops (request cancelled, nothing queued after); NULL
 * allowed. Service thread. */
int gn_resync_start(gn_resync_t *r);
void gn_resync_stop(gn_resync_t *r);
/* A channel holding topics was deaf from from_ms to to_ms (wall clock). Service thread. */
void gn_resync_deaf(gn_resync_t *r, const gn_topics_t *topics, double from_ms, double to_ms);
/* The same for env's topics, its health and tap stamping the items (r may be NULL: off). */
void gn_resync_env_deaf(gn_resync_t *r, gn_env_t *env, double from_ms, double to_ms);
/* An event about to be queued to the owner (its newer-than field is noted while a resync is
 * under way). Service thread. */
void gn_resync_seen(gn_resync_t *r, const gn_msg_t *m);

#endif
