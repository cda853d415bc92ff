/* rest.h: Genesys's notifications REST calls and what their answers mean.
 *
 * Requests carry the bearer token in a header (never in the URL) and run on the service loop's
 * HTTP engine; the callback runs there. The answer helpers are pure functions of the result, so
 * every caller (an attempt, a live subscription change, a rollover) reads an answer the same
 * way. Loop thread for the requests; any thread for the pure helpers.
 */
#ifndef GN_REST_H
#define GN_REST_H

#include "conf.h"
#include "http.h"
#include "schedule.h"
#include "topics.h"
#include "transport.h"

/* POST /api/v2/notifications/channels. Returns the request (its callback runs once), or NULL
 * when it could not start (no or oversized token, out of memory). Loop thread. */
gn_http_req_t *gn_rest_create_channel(gn_http_t *h, const gn_conf_t *conf, const char *token,
                                      gn_http_cb cb, void *ud);
/* PUT .../channels/{id}/subscriptions?ignoreErrors=true with every topic of topics. Returns the
 * request, or NULL when it could not start (id not plain, no token, out of memory). Loop
 * thread. */
gn_http_req_t *gn_rest_put_topics(gn_http_t *h, const gn_conf_t *conf, const char *token,
                                  const char *channel_id, const gn_topics_t *topics,
                                  gn_http_cb cb, void *ud);

/* DELETE .../channels/{id}/subscriptions (every topic off the channel). Returns the request, or
 * NULL when it could not start. Loop thread. */
gn_http_req_t *gn_rest_delete_topics(gn_http_t *h, const gn_conf_t *conf, const char *token,
                                     const char *channel_id, gn_http_cb cb, void *ud);

/* The longest channel id taken (Genesys's are about 30 characters). */
#define GN_CHANNEL_ID_MAX 128
/* Returns 1 when id is a plain channel id: 1 to GN_CHANNEL_ID_MAX letters, digits, '-' or '_'
 * (it goes into request paths: "../" or "?" would send the token elsewhere), else 0. Any
 * thread. */
int gn_rest_channel_id_ok(const char *id);
/* What a refused channel id is called in health items. */
#define GN_BAD_CHANNEL_ID "channel creation answered an unusable channel id (expected 1 to 128 " \
                          "letters, digits, '-' or '_')"

/* Returns 1 when the answer is a success (200, 201, 204), else 0. */
int gn_rest_ok(const gn_http_result_t *hr);
/* Reads a channel creation answer (200 or 201 with id and connectUri). Returns 0 with *id and
 * *uri malloc'd, -1 when it is not a success or the fields are missing, -2 when out of
 * memory, -3 when the id is not a plain channel id (gn_rest_channel_id_ok). */
int gn_rest_channel_answer(const gn_http_result_t *hr, char **id, char **uri);

/* The "expires" of a successful channel creation answer (ISO-8601: "2026-01-02T03:04:05.678Z",
 * or with an offset "+01:00"). Returns it in wall-clock ms since 1970, or -1 when the answer has
 * none or it cannot be read. */
double gn_rest_channel_expires(const gn_http_result_t *hr);

typedef enum {
  GN_REST_RETRY = 0, /* back off and try again (reason, why, retry_after_ms say how) */
  GN_REST_AUTH,      /* 401: the token was refused */
  GN_REST_FORBIDDEN  /* 403: final */
} gn_rest_verdict_t;

typedef struct {
  gn_rest_verdict_t verdict;
  const char *reason;     /* tls, timeout, network, rate_limited, channel_gone, http */
  gn_reason_t why;        /* the scheduler's trigger kind */
  double retry_after_ms;  /* 429: the floor of the next delay; else -1 */
  int gone;               /* 404: the channel no longer exists */
  long status;            /* 0 when no answer came */
  double header_retry_after_ms; /* Retry-After as sent (any status), or -1 */
  char error[300];        /* "<what> failed: ..." or "<what> answered HTTP n" */
} gn_rest_failure_t;

/* What a failed answer to request what ("channel creation") means. Returns nothing; fills f. */
void gn_rest_failure(const gn_http_result_t *hr, const char *what, gn_rest_failure_t *f);

/* What a failed WebSocket connect or upgrade means (the stream's own answer): 401 AUTH, 403
 * FORBIDDEN, otherwise RETRY with reason tls, timeout, handshake or connect; a refused upgrade
 * (4xx but 429) means the channel is gone. Returns nothing; fills f (error stays empty: the
 * transport's text is in info). */
void gn_rest_handshake_failure(const gn_close_info_t *info, gn_rest_failure_t *f);

/* ------------------------------------------------------------------------------------------ */
/* The REST request budget of each bearer token, shared by every client of the
 * process that uses the token (Genesys limits requests per client-credentials token: 300 a
 * minute by the official limits page as quoted by third parties).
 *
 * The stream's own calls (channel creation, subscriptions) are only counted: they always go,
 * first. A resync (resync.h) takes a unit only while the window has room below its limit
 * after a reserve kept for the stream, and waits otherwise; a 429 blocks the token's resync
 * calls until its Retry-After has passed. Tokens are keyed by a 64-bit hash, never kept.
 * Any thread (one mutex).
 */
/* Counts one request made with token now (the stream's). Returns nothing. */
void gn_rate_note(const char *token);
/* Asks for one resync request with token: at most limit requests in any window_ms, reserve
 * of them kept for the stream. Returns 0 when granted (and counted), else the ms to wait. */
double gn_rate_take(const char *token, int limit, long window_ms, int reserve);
/* A 429 answered a request of token: resync requests wait delay_ms. Returns nothing. */
void gn_rate_block(const char *token, double delay_ms);
/* The requests counted for token within the last window_ms (tests, metrics). */
int gn_rate_count(const char *token, long window_ms);

#endif
