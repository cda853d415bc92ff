/* renew.h: when a channel must be renewed, and how, so that it never ends under a running client.
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
#ifndef GN_RENEW_H
#define GN_RENEW_H

#include <stdint.h>
#include <uv.h>

#include "conf.h"

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

#endif
