/* channel.h: one notification channel's connection state machine.
 *
 * A channel gets a token, creates a Genesys channel, puts the desired topics, holds its
 * WebSocket open, notices when it dies (or is about to), and reconnects through the backoff
 * engine and the single-flight scheduler, one failure cycle at a time. What it shares with the
 * other parts of its client (settings, queue to the owner, metrics, token cache entry, desired
 * topics) comes through a gn_env_t, so a client may hold several channels.
 *
 * The machine runs on the service thread of env->svc; only gn_channel_new/free (owner thread,
 * when the channel is not running) and gn_channel_sched (any thread) are called elsewhere.
 */
#ifndef GN_CHANNEL_H
#define GN_CHANNEL_H

#include <stdint.h>

#include "env.h"
#include "schedule.h"

typedef struct gn_channel gn_channel_t;

/* A stopped channel on env (which must outlive it). Returns it, or NULL and err (a backoff
 * policy the engine refuses, out of memory). Owner thread. */
gn_channel_t *gn_channel_new(gn_env_t *env, char *err, size_t errlen);
/* Frees a channel that is stopped or never started. Returns nothing. Owner thread. */
void gn_channel_free(gn_channel_t *ch);
/* The channel's single-flight scheduler: the owner opens a cycle with gn_sched_trigger before
 * it posts gn_channel_reconnect. Returns a pointer valid for the channel's life. Any thread. */
gn_sched_t *gn_channel_sched(gn_channel_t *ch);

/* Starts the first attempt (the scheduler's first cycle must be open). Returns nothing.
 * Service thread. */
void gn_channel_start(gn_channel_t *ch);
/* Stops everything (sockets, requests, timers, token wait): state closed, no more items.
 * Returns nothing. Service thread. */
void gn_channel_stop(gn_channel_t *ch);
/* gn_channel_stop for a channel that holds a unit of the budget (unit 1): when a socket of its
 * own is still there, the unit goes with it to env->unit_on_gone (it comes back once the server
 * has seen that socket's end, not when our close is sent). Returns 1 when the unit went so,
 * else 0 (the caller gives it back). Service thread. */
int gn_channel_stop_unit(gn_channel_t *ch, int unit);
/* Parks the channel (state standby): like gn_channel_stop, but gn_channel_start may start it
 * again (the scheduler's first cycle open again first). The lease (lease.h) parks it when this
 * process stops holding the stream. Returns nothing. Service thread. */
void gn_channel_park(gn_channel_t *ch);
/* The last proof that its socket was live: the wall ms of the last message (data, heartbeat or
 * pong) its live socket delivered (or it or an earlier one went deaf at), its open if none yet;
 * -1 when it never had one. Service thread. */
double gn_channel_heard(gn_channel_t *ch);
/* Carries out a reconnect the owner asked for; the cycle it opened is taken over or closed.
 * Returns nothing. Service thread. */
void gn_channel_reconnect(gn_channel_t *ch);
/* The owner made room in the queue (overflow = "pause"): reading resumes. Returns nothing. */
void gn_channel_room(gn_channel_t *ch);
/* env->topics changed: puts them on the live channel (later channels get them anyway).
 * Returns nothing. Service thread. */
void gn_channel_topics_changed(gn_channel_t *ch);
/* The budget's spare unit came back: a rollover that waited for it starts. Returns nothing.
 * Service thread. */
void gn_channel_spare_freed(gn_channel_t *ch);
/* Another rollover of the credential waits for the spare unit: this channel's old sockets are
 * closed as soon as nothing is lost by it (rollover.h, gn_roll_release). Returns nothing.
 * Service thread. */
void gn_channel_spare_wanted(gn_channel_t *ch);
/* The policy hook's answer for attempt seq (see gn_client_policy_answer). Returns nothing.
 * Service thread. */
void gn_channel_policy(gn_channel_t *ch, uint64_t seq, double delay_ms);

#endif
