/* backoff.h: the reconnection backoff policy engine (pure maths, no I/O, no Lua).
 *
 * A gn_backoff_t turns a failure history into the next delay: exponential growth from base_ms by
 * multiplier, capped at max_ms, one of six jitter kinds, give-up by retry count or by time window,
 * Retry-After as a floor (itself capped), and an attempt counter that resets only after a
 * connection has stayed up for reset_after_ms.
 *
 * An engine is owned by one thread at a time (the service thread, or whoever holds the
 * single-flight cycle of schedule.h); it does no locking of its own. Time is passed in by the
 * caller or read from an injectable monotonic clock; randomness comes from a per-engine generator
 * seeded from OS entropy unless gn_backoff_seed() is called.
 */
#ifndef GN_BACKOFF_H
#define GN_BACKOFF_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  GN_JITTER_NONE = 0,     /* d */
  GN_JITTER_FULL,         /* U(0, d) */
  GN_JITTER_EQUAL,        /* d/2 + U(0, d/2) */
  GN_JITTER_DECORRELATED, /* min(max, U(base, 3 * previous)) */
  GN_JITTER_PROPORTIONAL, /* d * (1 +- U(0, jitter_pct/100)), as gRPC does */
  GN_JITTER_SEED,         /* d + U(0, d/2): the original design's formula */
  GN_JITTER_COUNT_
} gn_jitter_t;

typedef struct {
  double base_ms;            /* first delay before jitter (> 0) */
  double max_ms;             /* cap on every delay (>= base_ms) */
  double multiplier;         /* growth per attempt (>= 1) */
  gn_jitter_t jitter;
  double jitter_pct;         /* proportional jitter spread, 0..100 */
  uint32_t max_retries;      /* give up after this many attempts in a cycle; 0 = never */
  double max_window_ms;      /* give up when an attempt would start later than this after the
                                cycle's first failure; 0 = never */
  double reset_after_ms;     /* a connection must stay up this long to reset the counter */
  double retry_after_max_ms; /* cap on a server's Retry-After floor */
  int has_seed;              /* 1: seed the generator with `seed` (reproducible runs) */
  uint64_t seed;             /* 0 with has_seed = 0: OS entropy */
} gn_backoff_policy_t;

/* Why next() gave up (or did not). */
typedef enum {
  GN_BACKOFF_OK = 0,
  GN_BACKOFF_GIVEUP_RETRIES,
  GN_BACKOFF_GIVEUP_WINDOW
} gn_backoff_status_t;

typedef uint64_t (*gn_clock_fn)(void *ud); /* monotonic milliseconds */

typedef struct {
  gn_backoff_policy_t policy;
  uint64_t rng[4];          /* xoshiro256** state */
  gn_clock_fn clock;
  void *clock_ud;
  uint32_t attempt;         /* attempts made in the current failure cycle */
  double prev_ms;           /* previous delay (decorrelated jitter) */
  uint64_t cycle_start_ms;  /* first failure of the cycle */
  uint64_t up_since_ms;     /* when the last connection came up */
  int up;                   /* 1 between succeeded() and the next failure */
} gn_backoff_t;

/* Fills *p with the library's defaults (see docs/backoff.md). Returns nothing. Any
 * thread. */
void gn_backoff_policy_default(gn_backoff_policy_t *p);

/* Returns 0 if *p is valid, else -1 with a message naming the field and what was expected. Any
 * thread. */
int gn_backoff_policy_check(const gn_backoff_policy_t *p, char *err, size_t errlen);

/* Jitter kind by name ("none", "full", ...): returns 0 and sets *out, or -1 for an unknown name.
 * Any thread. */
int gn_jitter_parse(const char *name, gn_jitter_t *out);
/* Returns j's name, a static string ("?" for a value out of range). Any thread. */
const char *gn_jitter_name(gn_jitter_t j);

/* Initialises b with a copy of *p (validated: -1 and err on a bad policy), the system monotonic
 * clock, and a generator seeded from p->seed if p->has_seed, else from OS entropy. Returns 0 on
 * success. Any thread, on a gn_backoff_t it owns. */
int gn_backoff_init(gn_backoff_t *b, const gn_backoff_policy_t *p, char *err, size_t errlen);

/* Reproducible randomness for tests and simulations: reseeds b's generator. Returns nothing. Any
 * thread, on a gn_backoff_t it owns. */
void gn_backoff_seed(gn_backoff_t *b, uint64_t seed);
/* Replaces the clock (NULL restores the system monotonic clock). Returns nothing. Any thread, on a
 * gn_backoff_t it owns; fn then runs on whichever thread calls gn_backoff_now(). */
void gn_backoff_set_clock(gn_backoff_t *b, gn_clock_fn fn, void *ud);
/* Returns the time of b's clock, in milliseconds. Any thread, on a gn_backoff_t it owns. */
uint64_t gn_backoff_now(const gn_backoff_t *b);
/* Returns CLOCK_MONOTONIC in milliseconds (the default clock of every engine). Any thread. */
uint64_t gn_monotonic_ms(void);

/* A connection attempt failed (or a live connection dropped) at now_ms: computes the delay before
 * the next attempt into *delay_ms. retry_after_ms < 0 means the server gave none. Returns
 * GN_BACKOFF_OK, or a give-up status (then *delay_ms is 0 and the cycle is left as it is; call
 * gn_backoff_reset() to start over). Any thread, on a gn_backoff_t it owns. */
gn_backoff_status_t gn_backoff_next(gn_backoff_t *b, double retry_after_ms, uint64_t now_ms,
                                    double *delay_ms);

/* A connection came up at now_ms. The counter is reset at the next failure only if the connection
 * stayed up at least reset_after_ms. Returns nothing. Any thread, on a gn_backoff_t it owns. */
void gn_backoff_succeeded(gn_backoff_t *b, uint64_t now_ms);

/* Forgets the failure history. Returns nothing. Any thread, on a gn_backoff_t it owns. */
void gn_backoff_reset(gn_backoff_t *b);

/* Returns a uniform double in [0, 1) from b's generator, advancing it (the herd simulator shares
 * it). Any thread, on a gn_backoff_t it owns. */
double gn_backoff_uniform(gn_backoff_t *b);

/* Returns s's name, a static string ("ok", "max_retries", "max_window"; "?" for a value out of
 * range). Any thread. */
const char *gn_backoff_status_name(gn_backoff_status_t s);

#endif
