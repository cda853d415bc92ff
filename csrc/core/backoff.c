/* backoff.c: reconnection delay policy. Pure computation: no I/O apart from reading OS entropy
 * once at init and the monotonic clock when the caller asks for it.
 *
 * Every delay is clamped to [0, max_ms] after jitter, so "the cap holds" for every kind; a
 * server's Retry-After then acts as a floor (capped by retry_after_max_ms), which is the one way a
 * delay may exceed max_ms: the server asked for it, within our own bound. */
#include "backoff.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static const char *const jitter_names[GN_JITTER_COUNT_] = {
  "none", "full", "equal", "decorrelated", "proportional", "seed"
};

const char *gn_jitter_name(gn_jitter_t j) {
  return (unsigned)j < GN_JITTER_COUNT_ ? jitter_names[j] : "?";
}

int gn_jitter_parse(const char *name, gn_jitter_t *out) {
  for (int i = 0; i < GN_JITTER_COUNT_; i++)
    if (strcmp(name, jitter_names[i]) == 0) { *out = (gn_jitter_t)i; return 0; }
  return -1;
}

const char *gn_backoff_status_name(gn_backoff_status_t s) {
  switch (s) {
  case GN_BACKOFF_OK: return "ok";
  case GN_BACKOFF_GIVEUP_RETRIES: return "max_retries";
  case GN_BACKOFF_GIVEUP_WINDOW: return "max_window";
  }
  return "?";
}

void gn_backoff_policy_default(gn_backoff_policy_t *p) {
  /* Chosen from the herd simulation (docs/backoff.md, "The herd simulation"). */
  p->base_ms = 1000;
  p->max_ms = 60000;
  p->multiplier = 2;
  p->jitter = GN_JITTER_FULL;
  p->jitter_pct = 20;
  p->max_retries = 0;
  p->max_window_ms = 0;
  p->reset_after_ms = 30000;
  p->retry_after_max_ms = 300000;
  p->has_seed = 0;
  p->seed = 0;
}

/* A finite, non-negative number of milliseconds. */
static int check_ms(const char *field, double v, int allow_zero, char *err, size_t n) {
  if (isnan(v) || isinf(v)) {
    snprintf(err, n, "backoff.%s: expected a finite number of milliseconds, got %s", field,
             isnan(v) ? "NaN" : "infinity");
    return -1;
  }
  if (v < 0 || (!allow_zero && v == 0)) {
    snprintf(err, n, "backoff.%s: expected a number %s 0, got %g", field,
             allow_zero ? ">=" : ">", v);
    return -1;
  }
  if (v > 1e12) {
    snprintf(err, n, "backoff.%s: expected at most 1e12 ms, got %g", field, v);
    return -1;
  }
  return 0;
}

int gn_backoff_policy_check(const gn_backoff_policy_t *p, char *err, size_t n) {
  if (check_ms("base_ms", p->base_ms, 0, err, n) || check_ms("max_ms", p->max_ms, 0, err, n) ||
      check_ms("max_window_ms", p->max_window_ms, 1, err, n) ||
      check_ms("reset_after_ms", p->reset_after_ms, 1, err, n) ||
      check_ms("retry_after_max_ms", p->retry_after_max_ms, 1, err, n))
    return -1;
  if (p->base_ms > p->max_ms) {
    snprintf(err, n, "backoff.base_ms: expected at most max_ms (%g), got %g", p->max_ms,
             p->base_ms);
    return -1;
  }
  if (isnan(p->multiplier) || isinf(p->multiplier) || p->multiplier < 1 || p->multiplier > 1000) {
    snprintf(err, n, "backoff.multiplier: expected a finite number between 1 and 1000, got %g",
             p->multiplier);
    return -1;
  }
  if ((unsigned)p->jitter >= GN_JITTER_COUNT_) {
    snprintf(err, n, "backoff.jitter: expected one of none, full, equal, decorrelated, "
             "proportional, seed");
    return -1;
  }
  if (isnan(p->jitter_pct) || p->jitter_pct < 0 || p->jitter_pct > 100) {
    snprintf(err, n, "backoff.jitter_pct: expected a number between 0 and 100, got %g",
             p->jitter_pct);
    return -1;
  }
  return 0;
}

/* ---- randomness: xoshiro256**, seeded through splitmix64 ---- */
static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t s[4]) {
  uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
  s[2] ^= t; s[3] = rotl(s[3], 45);
  return r;
}

void gn_backoff_seed(gn_backoff_t *b, uint64_t seed) {
  for (int i = 0; i < 4; i++) b->rng[i] = splitmix64(&seed);
}

double gn_backoff_uniform(gn_backoff_t *b) {
  return (double)(next_u64(b->rng) >> 11) * 0x1.0p-53;
}

/* U(lo, hi) */
static double uniform(gn_backoff_t *b, double lo, double hi) {
  return lo + (hi - lo) * gn_backoff_uniform(b);
}

/* ---- clock ---- */
uint64_t gn_monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t system_clock(void *ud) { (void)ud; return gn_monotonic_ms(); }

void gn_backoff_set_clock(gn_backoff_t *b, gn_clock_fn fn, void *ud) {
  b->clock = fn ? fn : system_clock;
  b->clock_ud = fn ? ud : NULL;
}

uint64_t gn_backoff_now(const gn_backoff_t *b) { return b->clock(b->clock_ud); }

int gn_backoff_init(gn_backoff_t *b, const gn_backoff_policy_t *p, char *err, size_t n) {
  if (gn_backoff_policy_check(p, err, n)) return -1;
  memset(b, 0, sizeof *b);
  b->policy = *p;
  uint64_t seed = p->seed;
  if (!p->has_seed && getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
    seed = gn_monotonic_ms() ^ (uint64_t)(uintptr_t)b; /* entropy unavailable: still distinct */
  gn_backoff_seed(b, seed);
  gn_backoff_set_clock(b, NULL, NULL);
  gn_backoff_reset(b);
  return 0;
}

void gn_backoff_reset(gn_backoff_t *b) {
  b->attempt = 0;
  b->prev_ms = b->policy.base_ms;
  b->cycle_start_ms = 0;
  b->up = 0;
}

void gn_backoff_succeeded(gn_backoff_t *b, uint64_t now_ms) {
  b->up = 1;
  b->up_since_ms = now_ms;
}

/* The un-jittered delay of attempt n (1-based): base * multiplier^(n-1), capped. */
static double exponential(const gn_backoff_policy_t *p, uint32_t n) {
  double d = p->base_ms * pow(p->multiplier, (double)n - 1);
  return (isinf(d) || d > p->max_ms) ? p->max_ms : d;
}

gn_backoff_status_t gn_backoff_next(gn_backoff_t *b, double retry_after_ms, uint64_t now_ms,
                                    double *delay_ms) {
  const gn_backoff_policy_t *p = &b->policy;
  *delay_ms = 0;
  if (b->up) {
    /* The connection that just failed was up: only a stable one ends the failure cycle. */
    b->up = 0;
    if (now_ms - b->up_since_ms >= (uint64_t)p->reset_after_ms) gn_backoff_reset(b);
  }
  if (b->attempt == 0) b->cycle_start_ms = now_ms;
  if (p->max_retries && b->attempt >= p->max_retries) return GN_BACKOFF_GIVEUP_RETRIES;

  uint32_t n = b->attempt + 1;
  double d = exponential(p, n), out;
  switch (p->jitter) {
  case GN_JITTER_NONE: out = d; break;
  case GN_JITTER_FULL: out = uniform(b, 0, d); break;
  case GN_JITTER_EQUAL: out = d / 2 + uniform(b, 0, d / 2); break;
  case GN_JITTER_DECORRELATED: {
    double hi = b->prev_ms * 3;
    if (hi < p->base_ms) hi = p->base_ms;
    out = uniform(b, p->base_ms, hi);
    break;
  }
  case GN_JITTER_PROPORTIONAL: out = d * (1 + uniform(b, -1, 1) * p->jitter_pct / 100); break;
  case GN_JITTER_SEED: out = d + uniform(b, 0, d / 2); break;
  default: out = d; break;
  }
  if (out > p->max_ms) out = p->max_ms;
  if (out < 0) out = 0;

  if (retry_after_ms >= 0 && !isnan(retry_after_ms)) {
    double floor = retry_after_ms > p->retry_after_max_ms ? p->retry_after_max_ms : retry_after_ms;
    if (out < floor) out = floor;
  }
  if (p->max_window_ms > 0 &&
      (double)(now_ms - b->cycle_start_ms) + out > p->max_window_ms)
    return GN_BACKOFF_GIVEUP_WINDOW;

  b->prev_ms = out < p->base_ms ? p->base_ms : out;
  b->attempt = n;
  *delay_ms = out;
  return GN_BACKOFF_OK;
}
