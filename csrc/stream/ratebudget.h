/* ratebudget.h: the REST request budget of each bearer token, shared by every client of the
 * process that uses the token (Genesys limits requests per client-credentials token: 300 a
 * minute by the official limits page as quoted by third parties).
 *
 * The stream's own calls (channel creation, subscriptions) are only counted: they always go,
 * first. A resync (resync.h) takes a unit only while the window has room below its limit
 * after a reserve kept for the stream, and waits otherwise; a 429 blocks the token's resync
 * calls until its Retry-After has passed. Tokens are keyed by a 64-bit hash, never kept.
 * Any thread (one mutex).
 */
#ifndef GN_RATEBUDGET_H
#define GN_RATEBUDGET_H

#include <stdint.h>

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
