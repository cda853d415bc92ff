/* bearer.h: the bearer token one channel holds, and its wait on the shared token cache.
 *
 * The cache (oauth.h) is shared per credential by the whole process; a holder asks it for a
 * token with comfortable life left, waits when a fetch is under way (the cache pokes the
 * service's members; the holder then hands the result to ready()), adopts a token it got (the
 * one place a token changes hands, with a health "token" "refreshed" item when it was fetched
 * for this ask), and forgets a token the API refused (401) so the next ask fetches a new one.
 *
 * What the token is for (purpose: the holder's owner numbers them) travels with the wait, so
 * its result goes where it was wanted. Service thread only.
 */
#ifndef GN_BEARER_H
#define GN_BEARER_H

#include <stdint.h>

#include "env.h"
#include "oauth.h"
#include "service.h"

typedef struct {
  gn_env_t *env;
  gn_member_t member;
  gn_token_waiter_t waiter;
  int waiting;       /* a fetch is under way for this holder */
  int purpose;       /* what the awaited token is for */
  char *token;       /* the adopted token, or NULL */
  uint64_t gen;      /* its generation in the cache */
  uint64_t expires_ms; /* monotonic: its end as the token answer said (0: unknown) */
  uint64_t life_ms;    /* the longest lifetime seen for this credential's tokens */
  void (*ready)(void *ud, int purpose, gn_token_result_t *r); /* the awaited result (cleared
                                                                 after it returns) */
  void *ud;
} gn_bearer_t;

/* Prepares b. Returns nothing. */
void gn_bearer_init(gn_bearer_t *b, gn_env_t *env,
                    void (*ready)(void *ud, int purpose, gn_token_result_t *r), void *ud);
/* Joins the service's members (the cache's pokes arrive from now on). Returns nothing. */
void gn_bearer_start(gn_bearer_t *b);
/* Cancels a wait and leaves the members. Returns nothing. */
void gn_bearer_stop(gn_bearer_t *b);
/* Frees the token (wiped) and any result left in the waiter. Returns nothing. */
void gn_bearer_free(gn_bearer_t *b);

/* Asks the cache for a token for purpose. Returns 1 with *r filled (clear it with
 * gn_token_result_clear), or 0 while a fetch runs (ready() gets the result). */
int gn_bearer_ask(gn_bearer_t *b, int purpose, gn_token_result_t *r);
/* Takes r's token as the held one. Returns nothing. */
void gn_bearer_adopt(gn_bearer_t *b, gn_token_result_t *r);
/* Returns 1 when the held token has less than half its lifetime left (a channel made with it
 * would soon end with it, where channels end with their token), else 0. */
int gn_bearer_half_spent(const gn_bearer_t *b);
/* The held token was refused (401): the cache forgets it, the holder too. Returns nothing. */
void gn_bearer_refuse(gn_bearer_t *b);
/* Stops waiting for a fetch (no ready() for it). Returns nothing. */
void gn_bearer_cancel_wait(gn_bearer_t *b);

#endif
