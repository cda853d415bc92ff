/* herd.c: the thundering-herd simulator. Drives the real backoff engine (csrc/backoff.c) to
 * compare the jitter kinds on the one scenario that matters most when Genesys Cloud has a bad
 * minute: N clients lose their connection at the same instant, the server is down for D seconds,
 * then accepts at most C new connections per second, and every refused attempt feeds that
 * client's next backoff.
 *
 * Discrete-event simulation in simulated milliseconds (no wall time, no sleeping): one
 * gn_backoff_t per client, each seeded from (--seed, client index) so every run is reproducible;
 * a binary min-heap of pending attempts ordered by (time, client), so ties are broken the same way
 * on every machine.
 *
 * The server's admission limit is a per-1-second-window counter by default: at most C attempts
 * are accepted in each window [k s, (k+1) s) once the server is up; the rest are refused.
 * `--limiter bucket` uses a token bucket instead (capacity C, refilled continuously at C per
 * second, full when the server comes back), which smooths bursts within a second.
 *
 * Output: a Markdown table (one row per jitter kind) and the command line that reproduces it. */
#include "backoff.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  long clients;
  double down_s;
  double rate;         /* accepted connections per second once the server is up */
  int bucket;          /* 0: per-second window counter, 1: token bucket */
  uint64_t seed;
  gn_backoff_policy_t policy;
  int kinds[GN_JITTER_COUNT_]; /* which jitter kinds to run */
  int sweep;           /* also print tables for alternative base/max */
} herd_opts_t;

typedef struct {
  uint64_t peak_per_s;     /* most attempts the server saw in one 1-second window */
  double peak_at_s;        /* start of that window */
  uint64_t peak_up_per_s;  /* the same, counting only windows after the server is back */
  uint64_t attempts;       /* all attempts, refused or accepted */
  long back;               /* clients connected at the end */
  long gave_up;            /* clients whose policy gave up (only with max_retries/window) */
  double t50_s, t99_s, t100_s; /* time until 50/99/100% of the clients are back; <0: never */
} herd_result_t;

/* ---- binary min-heap of (time_ms, client) ---- */
typedef struct { uint64_t t; uint32_t c; } ev_t;
typedef struct { ev_t *a; size_t n, cap; } heap_t;

static int ev_less(ev_t x, ev_t y) { return x.t < y.t || (x.t == y.t && x.c < y.c); }

static int heap_push(heap_t *h, ev_t e) {
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 1024;
    ev_t *a = realloc(h->a, cap * sizeof *a);
    if (!a) return -1;
    h->a = a; h->cap = cap;
  }
  size_t i = h->n++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!ev_less(e, h->a[p])) break;
    h->a[i] = h->a[p];
    i = p;
  }
  h->a[i] = e;
  return 0;
}

static ev_t heap_pop(heap_t *h) {
  ev_t top = h->a[0], last = h->a[--h->n];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    ev_t best = last;
    if (l < h->n && ev_less(h->a[l], best)) { m = l; best = h->a[l]; }
    if (l + 1 < h->n && ev_less(h->a[l + 1], best)) m = l + 1;
    if (m == i) break;
    h->a[i] = h->a[m];
    i = m;
  }
  if (h->n) h->a[i] = last;
  return top;
}

/* ---- the simulation ---- */
static uint64_t client_seed(uint64_t seed, uint32_t c) {
  return seed * 0x9e3779b97f4a7c15ULL + c + 1; /* gn_backoff_seed() mixes it with splitmix64 */
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Schedules client c's next attempt after a failure at now; counts a give-up. */
static int fail(gn_backoff_t *b, heap_t *h, uint32_t c, uint64_t now, herd_result_t *r) {
  double d;
  if (gn_backoff_next(b, -1, now, &d) != GN_BACKOFF_OK) { r->gave_up++; return 0; }
  return heap_push(h, (ev_t){ now + (uint64_t)llround(d), c });
}

/* Folds one finished 1-second window into the peaks. */
static void note_window(herd_result_t *r, uint64_t window, uint64_t attempts, uint64_t up_at) {
  if (window == UINT64_MAX) return;
  if (attempts > r->peak_per_s) {
    r->peak_per_s = attempts;
    r->peak_at_s = (double)window;
  }
  if (window * 1000 >= up_at && attempts > r->peak_up_per_s) r->peak_up_per_s = attempts;
}

static int simulate(const herd_opts_t *o, const gn_backoff_policy_t *pol, herd_result_t *r) {
  char err[256];
  uint32_t n = (uint32_t)o->clients;
  gn_backoff_t *bs = malloc(n * sizeof *bs);
  uint64_t *back_at = malloc(n * sizeof *back_at);
  heap_t h = { 0 };
  int rc = -1;
  memset(r, 0, sizeof *r);
  if (!bs || !back_at) goto out;

  const uint64_t up_at = (uint64_t)llround(o->down_s * 1000);
  uint64_t window = UINT64_MAX, window_attempts = 0, window_accepted = 0;
  double tokens = o->rate, tokens_at = (double)up_at;

  for (uint32_t c = 0; c < n; c++) {
    if (gn_backoff_init(&bs[c], pol, err, sizeof err)) {
      fprintf(stderr, "herd: %s\n", err);
      goto out;
    }
    gn_backoff_seed(&bs[c], client_seed(o->seed, c));
    if (fail(&bs[c], &h, c, 0, r)) goto out; /* everyone drops at t = 0 */
  }

  while (h.n) {
    ev_t e = heap_pop(&h);
    uint64_t w = e.t / 1000;
    if (w != window) {
      note_window(r, window, window_attempts, up_at);
      window = w; window_attempts = 0; window_accepted = 0;
    }
    window_attempts++;
    r->attempts++;

    int accepted = 0;
    if (e.t >= up_at) {
      if (o->bucket) {
        tokens += ((double)e.t - tokens_at) * o->rate / 1000;
        if (tokens > o->rate) tokens = o->rate;
        tokens_at = (double)e.t;
        if (tokens >= 1) { tokens -= 1; accepted = 1; }
      } else if ((double)window_accepted < o->rate) {
        window_accepted++;
        accepted = 1;
      }
    }
    if (accepted) {
      gn_backoff_succeeded(&bs[e.c], e.t);
      back_at[r->back++] = e.t;
    } else if (fail(&bs[e.c], &h, e.c, e.t, r)) {
      goto out;
    }
  }
  note_window(r, window, window_attempts, up_at);

  /* back_at is already in time order (events pop in order), but sort to not depend on it. */
  qsort(back_at, (size_t)r->back, sizeof *back_at, cmp_u64);
  double *ts[3] = { &r->t50_s, &r->t99_s, &r->t100_s };
  const double fr[3] = { 0.50, 0.99, 1.00 };
  for (int i = 0; i < 3; i++) {
    long k = (long)ceil(fr[i] * (double)n); /* the k-th client back (1-based) */
    if (k < 1) k = 1;
    *ts[i] = k <= r->back ? (double)back_at[k - 1] / 1000 : -1;
  }
  rc = 0;
out:
  if (rc && !bs) fprintf(stderr, "herd: out of memory\n");
  free(h.a);
  free(bs);
  free(back_at);
  return rc;
}

/* ---- output ---- */
static void fmt_s(char *buf, size_t n, double s) {
  if (s < 0) snprintf(buf, n, "never");
  else snprintf(buf, n, "%.1f", s);
}

static void print_policy(const gn_backoff_policy_t *p) {
  printf("Policy: base %g ms, max %g ms, multiplier %g, jitter_pct %g, max_retries %u, "
         "max_window %g ms.\n\n", p->base_ms, p->max_ms, p->multiplier, p->jitter_pct,
         (unsigned)p->max_retries, p->max_window_ms);
}

static int print_table(const herd_opts_t *o, const gn_backoff_policy_t *base_pol) {
  printf("| jitter | peak attempts/s | peak/s once up | total attempts | attempts/client "
         "| 50%% back (s) | 99%% back (s) | 100%% back (s) |\n");
  printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int k = 0; k < GN_JITTER_COUNT_; k++) {
    if (!o->kinds[k]) continue;
    gn_backoff_policy_t p = *base_pol;
    p.jitter = (gn_jitter_t)k;
    herd_result_t r;
    if (simulate(o, &p, &r)) return -1;
    char a[32], b[32], c[32];
    fmt_s(a, sizeof a, r.t50_s); fmt_s(b, sizeof b, r.t99_s); fmt_s(c, sizeof c, r.t100_s);
    printf("| %s | %llu (t=%.0f s) | %llu | %llu | %.2f | %s | %s | %s |",
           gn_jitter_name((gn_jitter_t)k), (unsigned long long)r.peak_per_s, r.peak_at_s,
           (unsigned long long)r.peak_up_per_s, (unsigned long long)r.attempts,
           (double)r.attempts / (double)o->clients, a, b, c);
    if (r.gave_up) printf(" %ld gave up", r.gave_up);
    printf("\n");
    fflush(stdout);
  }
  return 0;
}

static void usage(FILE *f) {
  fprintf(f,
    "usage: herd [options]\n"
    "  --clients N        clients that lose their connection at t=0 (default 10000)\n"
    "  --down S           seconds the server is down (default 30)\n"
    "  --rate C           connections accepted per second afterwards (default 500)\n"
    "  --limiter KIND     window (per-1-second counter, default) or bucket (token bucket)\n"
    "  --base MS          base_ms (default 1000)\n"
    "  --max MS           max_ms (default 60000)\n"
    "  --multiplier X     multiplier (default 2)\n"
    "  --jitter-pct P     jitter_pct for proportional (default 20)\n"
    "  --max-retries N    give up after N attempts (default 0: never)\n"
    "  --max-window MS    give up after MS since the first failure (default 0: never)\n"
    "  --jitter LIST      comma-separated kinds to run (default: all six)\n"
    "  --seed N           base seed (default 1); client i uses a seed derived from (N, i)\n"
    "  --sweep            also print tables for alternative base/max values\n");
}

static int parse_num(const char *flag, const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = s ? strtod(s, &end) : NAN;
  if (!s || errno || end == s || *end || isnan(v) || v < lo || v > hi) {
    fprintf(stderr, "herd: %s: expected a number between %g and %g, got %s\n", flag, lo, hi,
            s ? s : "nothing");
    return -1;
  }
  *out = v;
  return 0;
}

static int parse_kinds(const char *s, int kinds[GN_JITTER_COUNT_]) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", s);
  memset(kinds, 0, GN_JITTER_COUNT_ * sizeof *kinds);
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    gn_jitter_t j;
    if (gn_jitter_parse(tok, &j)) {
      fprintf(stderr, "herd: --jitter: expected none, full, equal, decorrelated, proportional "
              "or seed, got %s\n", tok);
      return -1;
    }
    kinds[j] = 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  herd_opts_t o = { .clients = 10000, .down_s = 30, .rate = 500, .seed = 1 };
  gn_backoff_policy_default(&o.policy);
  /* The simulation's common policy is stated here, not inherited from the library's defaults,
   * so that changing the defaults does not silently change the published table. */
  o.policy.base_ms = 1000;
  o.policy.max_ms = 60000;
  o.policy.multiplier = 2;
  o.policy.jitter_pct = 20;
  o.policy.max_retries = 0;
  o.policy.max_window_ms = 0;
  for (int k = 0; k < GN_JITTER_COUNT_; k++) o.kinds[k] = 1;
  const char *kinds_arg = NULL;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    double x;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
    if (!strcmp(a, "--sweep")) { o.sweep = 1; continue; }
    i++;
    if (!strcmp(a, "--clients")) {
      if (parse_num(a, v, 1, 10000000, &x)) return 2;
      o.clients = (long)x;
    } else if (!strcmp(a, "--down")) {
      if (parse_num(a, v, 0, 86400, &o.down_s)) return 2;
    } else if (!strcmp(a, "--rate")) {
      if (parse_num(a, v, 1, 1e9, &o.rate)) return 2;
    } else if (!strcmp(a, "--limiter")) {
      if (v && !strcmp(v, "window")) o.bucket = 0;
      else if (v && !strcmp(v, "bucket")) o.bucket = 1;
      else { fprintf(stderr, "herd: --limiter: expected window or bucket\n"); return 2; }
    } else if (!strcmp(a, "--base")) {
      if (parse_num(a, v, 1, 1e9, &o.policy.base_ms)) return 2;
    } else if (!strcmp(a, "--max")) {
      if (parse_num(a, v, 1, 1e9, &o.policy.max_ms)) return 2;
    } else if (!strcmp(a, "--multiplier")) {
      if (parse_num(a, v, 1, 1000, &o.policy.multiplier)) return 2;
    } else if (!strcmp(a, "--jitter-pct")) {
      if (parse_num(a, v, 0, 100, &o.policy.jitter_pct)) return 2;
    } else if (!strcmp(a, "--max-retries")) {
      if (parse_num(a, v, 0, 1e9, &x)) return 2;
      o.policy.max_retries = (uint32_t)x;
    } else if (!strcmp(a, "--max-window")) {
      if (parse_num(a, v, 0, 1e12, &o.policy.max_window_ms)) return 2;
    } else if (!strcmp(a, "--jitter")) {
      if (!v || parse_kinds(v, o.kinds)) return 2;
      kinds_arg = v;
    } else if (!strcmp(a, "--seed")) {
      if (parse_num(a, v, 0, 9007199254740992.0, &x)) return 2;
      o.seed = (uint64_t)x;
    } else {
      fprintf(stderr, "herd: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  char err[256];
  o.policy.has_seed = 1; /* each client is re-seeded from (seed, index) anyway */
  if (gn_backoff_policy_check(&o.policy, err, sizeof err)) {
    fprintf(stderr, "herd: %s\n", err);
    return 2;
  }

  /* The exact command line, every parameter explicit, so the table can be reproduced. */
  printf("Command: `bench/herd --clients %ld --down %g --rate %g --limiter %s --base %g --max %g "
         "--multiplier %g --jitter-pct %g --seed %llu", o.clients, o.down_s, o.rate,
         o.bucket ? "bucket" : "window", o.policy.base_ms, o.policy.max_ms, o.policy.multiplier,
         o.policy.jitter_pct, (unsigned long long)o.seed);
  if (o.policy.max_retries) printf(" --max-retries %u", (unsigned)o.policy.max_retries);
  if (o.policy.max_window_ms > 0) printf(" --max-window %g", o.policy.max_window_ms);
  if (kinds_arg) printf(" --jitter %s", kinds_arg);
  if (o.sweep) printf(" --sweep");
  printf("`\n\n");
  printf("%ld clients drop at t=0; the server is down for %g s, then accepts %g connections/s "
         "(%s). Lower bound for 100%% back: %.0f s.\n", o.clients, o.down_s, o.rate,
         o.bucket ? "token bucket" : "per-1-second window counter",
         o.down_s + ceil((double)o.clients / o.rate) - 1);
  print_policy(&o.policy);
  if (print_table(&o, &o.policy)) return 1;

  if (o.sweep) {
    static const double alt[][2] = { { 500, 30000 }, { 1000, 30000 }, { 2000, 60000 },
                                      { 1000, 120000 } };
    for (size_t i = 0; i < sizeof alt / sizeof alt[0]; i++) {
      gn_backoff_policy_t p = o.policy;
      p.base_ms = alt[i][0];
      p.max_ms = alt[i][1];
      if (p.base_ms > p.max_ms) continue;
      printf("\nAlternative: ");
      print_policy(&p);
      if (print_table(&o, &p)) return 1;
    }
  }
  return 0;
}
