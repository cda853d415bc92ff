/* subs.h: a channel's subscriptions: the desired topics (the client's) against what the server
 * confirmed, the answers to a PUT, and live changes while the channel is open.
 *
 * Topics are put with ignoreErrors=true. A topic missing from the answer (an invalid name), or
 * in a list refused as a whole (400/413), is reported as health "subscription" "rejected" and
 * forgotten, so one bad topic cannot break every later channel; a topic the answer lists with a
 * refusing state (permissions) is reported and kept: a permission granted later makes it work
 * on the next channel.
 *
 * The channel decides when to put (it owns the token and the state); this file says what an
 * answer means (gn_subs_live_answer's verdict). Service thread only.
 */
#ifndef GN_SUBS_H
#define GN_SUBS_H

#include "env.h"
#include "http.h"
#include "topics.h"

typedef struct {
  gn_env_t *env;
  gn_topics_t confirmed;  /* topics the server last accepted as a whole list */
  int dirty;              /* the channel's subscriptions differ from env->topics */
  int retried_400;        /* a refused list was followed by one put of the confirmed list */
  int auth_retried;       /* a live change refused with 401 was retried once with a new token */
  gn_http_req_t *req;     /* live change in flight */
} gn_subs_t;

/* Prepares s for env. Returns nothing. */
void gn_subs_init(gn_subs_t *s, gn_env_t *env);
/* Cancels a live change in flight and frees the sets. Returns nothing. */
void gn_subs_free(gn_subs_t *s);
/* Cancels a live change in flight (no callback). Returns nothing. */
void gn_subs_cancel(gn_subs_t *s);

/* Reads a successful PUT answer for channel_id: reports refused and dropped topics (dropped
 * ones leave env->topics), reports the accepted list as event why ("subscribed", "updated"),
 * and records the desired set as confirmed. Returns nothing. */
void gn_subs_answer(gn_subs_t *s, const char *channel_id, const char *body, size_t len,
                    const char *why);
/* The server refused the whole list (400/413): the topics added since the last confirmed list
 * are reported and forgotten (env->topics goes back to the confirmed set). Returns 1 when the
 * confirmed list should be put once more (the first refusal in a row), else 0. */
int gn_subs_refused(gn_subs_t *s, const char *channel_id, const gn_http_result_t *hr);

/* Starts a live PUT of the desired topics on channel_id with token; cb(ud, result) hands the
 * answer to gn_subs_live_answer. Returns 0, or -1 when it could not start (reported, and the
 * change stays pending). */
int gn_subs_put(gn_subs_t *s, const char *channel_id, const char *token, gn_http_cb cb,
                void *ud);

typedef enum {
  GN_SUBS_DONE = 0,       /* nothing more to do now */
  GN_SUBS_PUT_AGAIN,      /* put again (topics changed meanwhile, or the confirmed list) */
  GN_SUBS_NEW_TOKEN,      /* 401: refresh the token, then put again */
  GN_SUBS_CHANNEL_GONE    /* 404: the channel is gone (reported); the next attempt makes one */
} gn_subs_next_t;

/* Reads the answer to a live PUT (reports what it says). Returns what the channel should do. */
gn_subs_next_t gn_subs_live_answer(gn_subs_t *s, const char *channel_id,
                                   const gn_http_result_t *hr);

#endif
