/* subs.h: a channel's subscriptions: the wanted topics (the client's, env->topics) reconciled
 * against what the server confirmed on this channel.
 *
 * Each PUT carries a snapshot of the wanted set (sent) and its answer is read against that
 * snapshot, never against the wanted set of the moment: a topic added or removed while the
 * request was in flight is simply put again. An answer is read as Genesys means it (its own
 * streaming client, src/notifications.ts; GENESYS.md):
 * - names are matched in any case (a composite's members in any order), and what the client
 *   reports and keeps is the user's spelling;
 * - a sent topic the answer refuses (Rejected: permissions, or an invalid name) is reported
 *   "rejected" and leaves the wanted set: final until the user subscribes it again; so does a
 *   topic new in a list the server refused as a whole (400/413);
 * - a composite a.b?c&d answered Permitted with a member a.b.d Rejected on its own entry is
 *   confirmed; the member is reported "rejected" once (with its missing permissions) and is
 *   no reason to ask again;
 * - a sent topic the answer does not mention is *unknown*: reported ("unknown"), kept wanted,
 *   and put again after the backoff delay (or at the user's next change), never forgotten.
 *
 * No request loop: every request that repeats without a change of the wanted set waits for
 * the backoff engine, whose cap is raised to GN_SUBS_MAX_DELAY_MS for this path.
 *
 * A request that fails (5xx, 429, network, timeout, a second 401) is retried with the backoff
 * engine (the client's policy without its give-up limits: a subscription is never abandoned
 * while the channel lives); until the server holds the wanted set, metrics say so
 * (topics_wanted, topics_confirmed, subscriptions_synced) and each failure's health item
 * carries the number of topics pending and when the next try is.
 *
 * A request whose outcome is unknown (a timeout or a network error after it may have been
 * sent) can still be applied by the server after a later one: an answer that follows it is not
 * trusted until one more PUT, sent at least the HTTP timeout later, has been answered
 * (until then the subscriptions do not count as synced).
 *
 * The channel decides when to put (it owns the token and the state); this file says what an
 * answer means (gn_subs_answer's verdict). Service thread only.
 */
#ifndef GN_SUBS_H
#define GN_SUBS_H

#include <uv.h>

#include "backoff.h"
#include "env.h"
#include "http.h"
#include "topics.h"

/* The longest delay between subscription requests is at least this (ms), whatever the client's
 * backoff policy says: about one a minute once an answer repeats. */
#define GN_SUBS_MAX_DELAY_MS 60000

typedef enum {
  GN_SUBS_HOLD_NONE = 0,
  GN_SUBS_HOLD_FAILED,    /* a request failed: the next waits for the retry timer */
  GN_SUBS_HOLD_UNKNOWN    /* an answer left topics out: put again on the timer or a change */
} gn_subs_hold_t;

typedef struct {
  gn_env_t *env;
  gn_topics_t confirmed;  /* what the server holds on this channel (its last answer) */
  gn_topics_t sent;       /* what the request in flight asks for */
  int fresh;              /* a new channel: put even an empty list */
  int stuck;              /* a list refused with nothing to blame: wait for the next change */
  int auth_retried;       /* a PUT refused with 401 was retried once with a new token */
  int uncertain;          /* a request's outcome is unknown: it may land after a later one */
  gn_subs_hold_t hold;    /* why the next request waits for the retry timer */
  int changed;            /* the wanted set changed since the last request */
  gn_topics_t noted;      /* composite members reported refused (said once) */
  uint64_t confirm_at_ms; /* monotonic: a PUT sent from then on confirms the server's state */
  uint64_t sent_ms;       /* when the request in flight was sent */
  gn_http_req_t *req;     /* the PUT in flight */
  gn_backoff_policy_t policy;
  gn_backoff_t bo;        /* delays between retries of failed requests */
  uv_timer_t *timer;      /* the next retry */
  void (*retry)(void *ud);/* the retry timer ran out: the channel puts again */
  void *ud;
} gn_subs_t;

/* Prepares s for env; retry(ud) is called when a failed request's delay has run out. Returns
 * 0, or -1 and err. Owner thread (before the channel runs). */
int gn_subs_init(gn_subs_t *s, gn_env_t *env, void (*retry)(void *ud), void *ud, char *err,
                 size_t errlen);
/* Creates the retry timer on loop. Returns 0, or -1 when out of memory. */
int gn_subs_start(gn_subs_t *s, uv_loop_t *loop);
/* Cancels the request in flight and the retry timer (released on the loop). Returns nothing. */
void gn_subs_close(gn_subs_t *s);
/* Frees the sets. Returns nothing. Any thread, once the channel no longer runs. */
void gn_subs_free(gn_subs_t *s);
/* Cancels the request in flight (no callback) and a pending retry. Returns nothing. */
void gn_subs_cancel(gn_subs_t *s);

/* The channel is new: the server holds nothing on it yet. Returns nothing. */
void gn_subs_new_channel(gn_subs_t *s);
/* The wanted set changed. Returns nothing. */
void gn_subs_changed(gn_subs_t *s);
/* Returns 1 when a PUT is due (the server does not hold the wanted set, or the channel is new,
 * and no request is in flight or refused for good), else 0. */
int gn_subs_needed(const gn_subs_t *s);

/* Starts a PUT of the wanted set on channel_id with token; cb(ud, result) hands the answer to
 * gn_subs_answer. Returns 0, or -1 when it could not start (nothing reported). */
int gn_subs_put(gn_subs_t *s, const char *channel_id, const char *token, gn_http_cb cb,
                void *ud);

typedef enum {
  GN_SUBS_DONE = 0,       /* nothing more to do now */
  GN_SUBS_PUT_AGAIN,      /* put again now (the wanted set moved on, or topics were dropped) */
  GN_SUBS_NEW_TOKEN,      /* 401: refresh the token, then put again */
  GN_SUBS_RETRY,          /* failed: retry(ud) comes after the backoff delay (reported) */
  GN_SUBS_CHANNEL_GONE,   /* 404: the channel is gone (reported); the next attempt makes one */
  GN_SUBS_FAILED          /* in an attempt: the request failed; not reported, the attempt
                             fails (a "connected" channel is a subscribed one) */
} gn_subs_next_t;

/* Reads the answer to the PUT in flight on channel_id (reports what it says; why names a
 * success: "subscribed" or "updated"). in_attempt: the PUT is a step of a connection attempt,
 * whose failure (but a refused list) is the attempt's to handle. Returns what the channel
 * should do. */
gn_subs_next_t gn_subs_answer(gn_subs_t *s, const char *channel_id, const gn_http_result_t *hr,
                              const char *why, int in_attempt);
/* A live PUT could not even start (what): reported, retried after the backoff delay. Returns
 * nothing. */
void gn_subs_retry_later(gn_subs_t *s, const char *what);

/* Reads a successful answer to a PUT of sent on channel_id (a rollover's new channel; the
 * channel's own answers go through gn_subs_answer): reports refused topics (they leave
 * env->topics), refused composite members, and the accepted list as event why; *confirmed
 * becomes the sent topics the server holds. Topics it leaves out are put again once the
 * channel adopts it (gn_subs_adopt). Returns nothing. */
void gn_subs_read(gn_env_t *env, const gn_topics_t *sent, const char *channel_id,
                  const char *body, size_t len, const char *why, gn_topics_t *confirmed);
/* The channel moved to a rollover's channel, which holds confirmed (taken): the request in
 * flight concerned the old channel and is dropped; wanted topics it does not hold are
 * reported unknown and put after the backoff delay. Returns nothing. */
void gn_subs_adopt(gn_subs_t *s, gn_topics_t *confirmed);

#endif
