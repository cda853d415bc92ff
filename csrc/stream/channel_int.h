/* channel_int.h: what the three files of one channel's state machine share (channel.c,
 * channel_attempt.c, channel_live.c; see channel.c for the table). Nothing outside them includes
 * it. Service thread only, but for gn_channel_new/free/sched.
 */
#ifndef GN_CHANNEL_INT_H
#define GN_CHANNEL_INT_H

#include "channel.h"
#include "oauth.h"
#include "flow.h"
#include "gap.h"
#include "heartbeat.h"
#include "retry.h"
#include "rollover.h"
#include "subs.h"

/* ------------------------------------------------------------------------------------------ */
/* The renewal (channel_live.c): when a channel must be renewed, and how, so that it never ends under a running client.
 *
 * Genesys (official): "Channels remain active for 24 hours. To maintain a channel for longer
 * than 24 hours, resubscribe to topics"; the creation answer's "expires" says when. Weaker
 * sources add that a channel also ends when the token that created it expires. The client plans
 * for both (rule "both", the default): a channel's end is the earlier of its expires (moved on
 * by every successful subscription request, by the lifetime the creation answer showed) and its
 * creating token's end. When at (0.8) of the time from the channel's last start to that end has
 * passed, or margin_ms before the end if that is earlier (never before half the lifetime, so a
 * large margin cannot make a request loop), the channel is due:
 *   - resubscribe (a PUT of its topics with a current token) when that moves its end on: the
 *     token's end lies beyond the new end, or the rule is "channel";
 *   - otherwise roll over to a new channel made with a newer token (rollover.c, make-before-
 *     break, the budget's spare unit).
 * A channel whose expires is missing or unreadable is taken to live 24 h (the documented value).
 * The server's expires is read against this host's clock: a skew of seconds is covered by the
 * margin; a skew of hours is not (keep the clock in time).
 *
 * A channel the server ends before its known end (a "result":"404" notice well before it) was
 * evicted or deleted: gn_renew_early_end says so.
 *
 * Service thread only.
 */
#define GN_RENEW_DEFAULT_LIFE_MS (24.0 * 3600 * 1000) /* "Channels remain active for 24 hours" */
#define GN_RENEW_EARLY_MS 5000 /* an end this much (at most a tenth of the lifetime) before the
                                  known one is not an expiry */

enum { GN_RENEW_RESUBSCRIBE = 0, GN_RENEW_ROLLOVER };

typedef struct {
  const gn_renew_conf_t *conf;
  uv_timer_t *timer;
  void (*due)(void *ud, int how); /* GN_RENEW_RESUBSCRIBE or GN_RENEW_ROLLOVER */
  void *ud;
  int known;                /* a channel is held and its lifetime known */
  uint64_t start_ms;        /* monotonic: its lifetime last started (creation, a resubscribe) */
  uint64_t life_ms;         /* its own lifetime as the creation answer showed */
  uint64_t token_end_ms;    /* monotonic: its creating token's end (0: unknown) */
  uint64_t token_gen;       /* that token's generation in the cache */
  uint64_t pending_ms;      /* a resubscribe was asked then (0: none) */
} gn_renew_t;

/* Prepares r; due(ud, how) runs when the held channel is due. Returns nothing. */
void gn_renew_init(gn_renew_t *r, const gn_renew_conf_t *conf, void (*due)(void *ud, int how),
                   void *ud);
/* Creates the timer on loop. Returns 0, or -1 when out of memory. */
int gn_renew_start(gn_renew_t *r, uv_loop_t *loop);
/* Releases the timer (on the loop). Returns nothing. */
void gn_renew_close(gn_renew_t *r);
/* A channel was created now (its answer said expires_wall_ms, -1 when it did not) with a token
 * of generation gen ending at token_end_ms (monotonic, 0 unknown). Returns nothing. */
void gn_renew_created(gn_renew_t *r, double expires_wall_ms, uint64_t token_end_ms,
                      uint64_t gen);
/* A subscription request sent at sent_ms (monotonic) succeeded: the channel lives its lifetime
 * from then. Returns 1 when it answered a renewal (gn_renew_asked), else 0. */
int gn_renew_subscribed(gn_renew_t *r, uint64_t sent_ms);
/* A resubscribe was asked for a renewal now. Returns nothing. */
void gn_renew_asked(gn_renew_t *r);
/* No channel is held any more (it ended, or the client stops). Returns nothing. */
void gn_renew_forget(gn_renew_t *r);
/* Returns 1 when the held channel ended now well before its known end (evicted or deleted),
 * else 0. */
int gn_renew_early_end(const gn_renew_t *r);
/* Returns the held channel's known end (monotonic ms; 0 when unknown). */
uint64_t gn_renew_end(const gn_renew_t *r);

struct gn_channel {
  gn_env_t *env;
  gn_sched_t sched;            /* shared with the owner (atomics) */

  gn_bearer_t bearer;          /* the token, and the wait for one */
  int auth_retried;            /* one token refresh per chain of 401s */

  char *channel_id, *connect_uri;
  int hard_next;               /* the channel is gone: the next attempt creates one */
  int connect_failures;        /* in a row on this channel's connectUri */
  gn_subs_t subs;
  gn_roll_t roll;
  gn_http_req_t *req;          /* the attempt's REST call */
  gn_conn_t *conn;             /* the live (or connecting) socket */
  gn_heartbeat_t hb;           /* the live socket's watchdog */
  gn_flow_t flow;              /* overflow = "pause": reading stops while the queue is full */

  gn_retry_t retry;             /* BACKOFF: delay, record, timer, policy hook */
  int in_attempt;
  double attempt_start_ms;      /* monotonic, to the ns: connected's latency_ms is a few ms */
  int attempt_hard;
  uint64_t connection_id;
  gn_gap_t gap;                /* the deaf interval */
  gn_renew_t renew;            /* the channel's end and its renewal (above) */
  int renew_roll;              /* the rollover under way (or waiting) is a renewal */
};

/* channel.c: the machine */

/* Returns the state the owner sees. */
gn_state_t gn_ch_state(const gn_channel_t *ch);
/* Every change of state goes through here, held against the machine's table. */
void gn_ch_enter(gn_channel_t *ch, gn_state_t to);
/* Returns 1 for OPEN and ROLLOVER (a socket delivers), else 0. */
int gn_ch_is_live(gn_state_t s);
/* Queues a health item of the channel (fields stolen). */
void gn_ch_health(gn_channel_t *ch, const char *kind, json_t *fields);
/* Returns the channel's id, or "" before it has one. */
const char *gn_ch_chan_id(const gn_channel_t *ch);
/* Gives the rollovers' units that came back to the budget. */
void gn_ch_spare_check(gn_channel_t *ch);
/* Forgets the channel's id and connectUri (the next attempt makes a new channel). */
void gn_ch_drop_channel(gn_channel_t *ch);
/* The live connection is gone: deaf since its last message (gap.c), the watchdog stopped. */
void gn_ch_went_deaf(gn_channel_t *ch);
/* An attempt step failed: BACKOFF, health "failed", the cycle closed, the next scheduled. */
void gn_ch_attempt_failed(gn_channel_t *ch, const char *reason, gn_reason_t why,
                          double retry_after_ms, json_t *fields);
/* A failure of the live channel: the first trigger of a cycle schedules the next attempt. */
void gn_ch_fail_and_schedule(gn_channel_t *ch, gn_reason_t why, double retry_after_ms,
                             const char *reason);
/* A final failure (FAILED, health "gave_up"): everything stopped. */
void gn_ch_final_failure(gn_channel_t *ch, const char *code, const char *msg);

/* channel_attempt.c: the token and the attempt's steps */

enum { TOKP_ATTEMPT = 0, TOKP_LIVE, TOKP_ROLL }; /* what a token is wanted for */
/* Starts an attempt: hard (a new channel: AUTH) or soft (the same channel: CONNECT). */
void gn_ch_run_attempt(gn_channel_t *ch);
/* A token result, sent where its purpose says (the bearer's callback, oauth.c; the caller clears it). */
void gn_ch_token_ready(void *ud, int purpose, gn_token_result_t *r);
/* Marks a failure's fields as the proxy's (stage "proxy", its refusal status when known). */
void gn_ch_proxy_fields(json_t *fields, long status);
/* A subscription request's answer: a success renews the channel's lifetime (above). */
void gn_ch_renewed(gn_channel_t *ch, const gn_http_result_t *hr);

/* channel_live.c: the live socket, the rollover's hooks, live changes, renewal */

extern const gn_conn_cbs_t gn_ch_conn_cbs;   /* the live socket's callbacks */
extern const gn_roll_hooks_t gn_ch_roll_hooks; /* what the rollover tells the channel */
/* The token a live subscription change waited for (gn_ch_token_ready passes it on). */
void gn_ch_live_token(gn_channel_t *ch, gn_token_result_t *r);
/* The token a rollover waited for (gn_ch_token_ready passes it on). */
void gn_ch_roll_token(gn_channel_t *ch, gn_token_result_t *r);
/* Puts the wanted topics on the live channel when the server does not hold them. */
void gn_ch_put_live(gn_channel_t *ch);
/* The subscription retry timer (subs.c) fired. */
void gn_ch_subs_retry(void *ud);
/* A socket_closing notice or a renewal: a rollover starts (or waits for the spare unit). */
void gn_ch_start_rollover(gn_channel_t *ch);
/* The rollover could not finish (its failed hook, or a token it could not get). */
void gn_ch_roll_failed(void *ud, const char *msg);
/* The heartbeat watchdog found the live link dead. */
void gn_ch_link_dead(void *ud);
/* The channel is due for renewal (the renewal's callback, above). */
void gn_ch_renew_due(void *ud, int how);

#endif
