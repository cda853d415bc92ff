/*
 * genesys-notify-emulator: the organisation's state a client reads back after a gap — users
 * (presence with modifiedDate, routing status with startTime, station, conversation summary)
 * and queues (members, observations) — changed through the admin API, each change published
 * as the event of its topic, and read through the REST endpoints Genesys offers for it, with
 * the official answer shapes (purecloud-platform-client-v2 models: UcUserPresence,
 * UserPresence, RoutingStatus, UserEntityListing, UserStations, QueueMemberEntityListing,
 * QueueObservationQueryResponse, ConversationActivityResponse).
 *
 * Also the per-OAuth-client permissions (a denied permission answers 403 with
 * missing.any.permissions) and the per-token rate limit (429 with Retry-After, counted in a
 * sliding window). Above publish.c and state.c, below http.c and admin.c. Runs on the
 * emulator's single lws service thread.
 */
#ifndef GN_EMU_DIRECTORY_H
#define GN_EMU_DIRECTORY_H

#include <jansson.h>
#include <stddef.h>

/* Serves a REST request that is not a notifications one: method ("GET", "POST"), path without
 * query, query ("a=b&c=d", may be empty), body (may be NULL), the OAuth client's index. Returns
 * -1 when the path is not one of the directory's (the caller answers 404), else the HTTP
 * status: 200 with *answer, or an error status with msg (and *code, a Genesys error code, or
 * NULL for the status's usual one). */
int dir_rest(int client, const char *method, const char *path, const char *query,
	     const char *body, size_t body_len, json_t **answer, const char **code, char *msg,
	     size_t ml);

/* Serves an admin request under /__emulator/ (r: the part after it; o: the body, an object).
 * Returns -1 when r is not the directory's, else the status with *answer or msg:
 *   POST users/{id}        {presence, message, routing_status, station, conversation_summary}
 *   GET  users/{id}
 *   POST queues/{id}       {members: [{id, joined}], remove: [id], observations: {metric: n}}
 *   POST conversations/{id} {user, queue, media, state: "active"|"ended"}
 *   (the permissions its REST reads check: permissions.h, its own admin endpoints)
 *   POST ratelimit         {per_window, window_ms}  (0: no limit)
 *   GET  ratelimit         per token: requests, peak in any window, limited */
int dir_admin(const char *method, const char *r, json_t *o, json_t **answer, char *msg,
	      size_t ml);

/* Counts one REST request of token (its value) against the rate limit. Returns 0 when it may
 * go on, or the Retry-After (seconds, >= 1) of a 429. */
int dir_rate_take(const char *token);

/* Frees everything (at exit); returns nothing. */
void dir_free(void);

#endif
