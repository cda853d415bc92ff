/* oauth.h: OAuth client-credentials tokens (and, below, the bearer token one channel holds), one cache entry per (token URL, credential, TLS
 * settings), shared by every client of the process, whatever context it runs on.
 *
 * At most one token request is in flight per entry, however many clients need a token: the first
 * asker starts it on its own loop, the others register a waiter and are poked (gn_service_poke)
 * when the result is in. Tokens are handed out only while they have comfortably more than
 * a margin of life left (min(60 s, 10 % of expires_in)), so no REST call or handshake starts with
 * a token about to expire. A client that got a 401 with a token invalidates that token's
 * generation; the next asker fetches a new one (one fetch for all of them).
 *
 * The secret and the token never appear in messages produced here.
 *
 * Fork: a child process starts with an empty cache (its first client fetches its own token);
 * the parent's entries are never touched there (releasing one does nothing).
 */
#ifndef GN_OAUTH_H
#define GN_OAUTH_H

#include "env.h"
#include "proxy.h"
#include "service.h"
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gn_service gn_service_t;
typedef struct gn_token_entry gn_token_entry_t;

typedef enum {
  GN_TOK_OK = 0,
  GN_TOK_AUTH,      /* credentials refused (400/401): final without new input */
  GN_TOK_FORBIDDEN, /* 403: final */
  GN_TOK_RATE,      /* 429: retry_after_ms is the floor of the next delay */
  GN_TOK_RETRY,     /* 5xx, network, bad answer: back off and retry */
  GN_TOK_AGAIN      /* the fetch was abandoned by its context: ask again now */
} gn_token_kind_t;

typedef struct {
  gn_token_kind_t kind;
  char *token;          /* malloc'd copy (GN_TOK_OK), free with gn_token_result_clear */
  uint64_t gen;         /* generation of this token (for gn_token_invalidate) */
  double expires_in_s;  /* remaining lifetime when handed out */
  int fetched;          /* 1 when this result comes from a request made for this wait */
  long status;
  double retry_after_ms;
  int tls;
  int proxy;            /* the failure is the proxy's (unreachable, refused the tunnel) */
  long proxy_status;    /* the proxy's refusal status, else 0 */
  char error[256];
} gn_token_result_t;

typedef struct gn_token_waiter {
  struct gn_token_waiter *next, *prev;
  gn_service_t *svc;
  int registered;
  _Atomic int ready;
  gn_token_result_t res;
} gn_token_waiter_t;

typedef struct {
  const char *token_url;
  const char *client_id;
  const char *client_secret;
  const char *ca_file;
  int verify;
  long timeout_ms, connect_timeout_ms;
  const gn_proxy_t *proxy;  /* part of the key: tokens come through the client's own proxy */
} gn_token_cfg_t;

/* Returns the shared entry for cfg (created on first use), with one more reference; NULL when out
 * of memory. Any thread (the entry list has a global mutex). */
gn_token_entry_t *gn_token_entry_acquire(const gn_token_cfg_t *cfg);
/* Drops one reference (NULL, or an entry of the parent in a forked child, is a no-op); the last
 * one frees the entry, wiping the secret and the cached token. Returns nothing. Any thread, after the caller's waiter was cancelled
 * (gn_token_cancel): the last release assumes no fetch is in flight. */
void gn_token_entry_release(gn_token_entry_t *e);

/* Returns 1 with *res filled (a token, or the failure of the fetch this waiter waited for), or 0
 * when w is now waiting: svc's members will be poked when the fetch ends; call again then.
 * Loop thread of svc. */
int gn_token_get(gn_token_entry_t *e, gn_service_t *svc, gn_token_waiter_t *w,
                 gn_token_result_t *res);
/* Stops waiting (a closing client). Returns nothing. Loop thread of w->svc. */
void gn_token_cancel(gn_token_entry_t *e, gn_token_waiter_t *w);
/* The token of generation gen was refused (401): forget it unless a newer one is cached. Returns
 * nothing. Any thread (takes the entry's mutex). */
void gn_token_invalidate(gn_token_entry_t *e, uint64_t gen);
/* Frees r's token (wiped first) and zeroes *r. Returns nothing. Any thread, on a result it owns. */
void gn_token_result_clear(gn_token_result_t *r);

/* Copies server text src (len bytes) into dst as gn_scrub does (scrub.h), removing this
 * credential's secret, its base64(id:secret), and the current and previous tokens. Returns the
 * length written; e may be NULL (then only gn_scrub's own rules apply). Any thread (takes the
 * entry's mutex). */
size_t gn_token_scrub(gn_token_entry_t *e, char *dst, size_t dstlen, const char *src,
                      size_t len);
/* Reads the token endpoint's answer (status, body of body_len bytes) into *res: kind, error
 * (server text scrubbed of e's credentials, as gn_token_scrub does; e may be NULL), and
 * for a usable token (200) token (malloc'd) and expires_in_s; fetched, status, retry_after_ms
 * and gen are left 0 for the caller. A pure function of its input (fuzz/fuzz_token_answer.c).
 * Returns res->kind. Any thread. */
gn_token_kind_t gn_token_parse_answer(gn_token_entry_t *e, long status, const char *body,
                                      size_t body_len, gn_token_result_t *res);

/* Returns the number of token requests made for this entry (tests count them). Any thread. */
unsigned long gn_token_requests(gn_token_entry_t *e);

/* ------------------------------------------------------------------------------------------ */
/* The bearer token one channel holds, and its wait on the shared token cache.
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
