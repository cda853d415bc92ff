/* pool.h: what a client needs to hold several channels: an index of its topics (which channel
 * holds each, or none yet) and the process-wide channel budget of each credential.
 *
 * Genesys caps a channel at GN_CHANNEL_TOPICS topics and an OAuth client at 20 channels (a 21st
 * evicts the oldest). The budget belongs to the credential (client id and login host), so every
 * client of the process that uses it, on any context, takes its channels from one entry here,
 * under that entry's lock. One unit of the limit stays spare for make-before-break rollovers:
 * a channel takes a unit within limit - 1, a rollover's temporary second channel within limit.
 * A client whose topics did not fit waits on the entry; a unit given back pokes every waiter
 * (the poke runs under the entry's lock and must only post work, never call back here).
 */
#ifndef GN_POOL_H
#define GN_POOL_H

#include <stddef.h>
#include <stdint.h>

#define GN_CHANNEL_TOPICS 1000 /* topics per channel (Genesys's limit) */
#define GN_POOL_MAX 20         /* channels per client: 20,000 topics */
#define GN_BUDGET_DEFAULT 20   /* channels per credential (Genesys's limit) */

/* ---- topic index: name -> slot (-1: not placed yet). Not locked: one thread at a time. ---- */

typedef struct gn_tindex_entry gn_tindex_entry_t;
typedef struct {
  gn_tindex_entry_t **b;
  size_t nb, n;
} gn_tindex_t;

#define GN_TINDEX_ABSENT (-2)
/* Returns the slot of name, or GN_TINDEX_ABSENT. */
int gn_tindex_get(const gn_tindex_t *x, const char *name);
/* Sets name's slot (adding it). Returns 0, or -1 when out of memory. */
int gn_tindex_set(gn_tindex_t *x, const char *name, int slot);
/* Removes name. Returns 1 when it was there, else 0. */
int gn_tindex_del(gn_tindex_t *x, const char *name);
/* Frees everything; x is empty and reusable. Returns nothing. */
void gn_tindex_free(gn_tindex_t *x);

/* ---- the budget of a credential ---------------------------------------------------------- */

typedef struct gn_budget gn_budget_t;
typedef struct gn_budget_waiter {
  struct gn_budget_waiter *next;
  void (*poke)(void *ud); /* a unit came back (under the entry's lock: post, do not call in) */
  void *ud;
  int listed;
} gn_budget_waiter_t;

/* The entry of (client_id, the host of token_url), created on first use; a reference is
 * taken. Returns it, or NULL when out of memory. Any thread. */
gn_budget_t *gn_budget_acquire(const char *client_id, const char *token_url);
/* Takes one more reference on b (an entry already held). Returns nothing. Any thread. */
void gn_budget_hold(gn_budget_t *b);
/* Drops a reference (the last one frees the entry). NULL allowed. Returns nothing. */
void gn_budget_release(gn_budget_t *b);
/* Takes one unit: a channel (spare = 0: within limit - 1) or a rollover's second channel
 * (spare = 1: within limit). Returns 1 when taken, else 0. Any thread. */
int gn_budget_take(gn_budget_t *b, int limit, int spare);
/* Gives one unit back and pokes every waiter but self (may be NULL). Returns nothing. */
void gn_budget_give(gn_budget_t *b, const gn_budget_waiter_t *self);
/* Returns the units in use. Any thread. */
int gn_budget_used(gn_budget_t *b);
/* The server evicts below the budget: channels created or taken from now on stay within cap
 * (only ever lowered; at least 2). Returns the cap now in force. Any thread. */
int gn_budget_shrink(gn_budget_t *b, int cap);
/* Returns the cap (0: none). Any thread. */
int gn_budget_cap(gn_budget_t *b);
/* A channel of the credential was created at now_ms (monotonic). Returns nothing. */
void gn_budget_created(gn_budget_t *b, uint64_t now_ms);
/* Returns the time of the last creation (monotonic ms, 0: none). Any thread. */
uint64_t gn_budget_last_created(gn_budget_t *b);
/* Lists w to be poked when a unit comes back (once; a listed waiter stays listed). Returns
 * nothing. */
void gn_budget_wait(gn_budget_t *b, gn_budget_waiter_t *w);
/* Unlists w: no poke starts after this returns. Returns nothing. */
void gn_budget_unwait(gn_budget_t *b, gn_budget_waiter_t *w);

#endif
