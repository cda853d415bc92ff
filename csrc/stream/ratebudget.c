/* ratebudget.c: per-token request windows (see ratebudget.h). */
#include "ratebudget.h"
#include "backoff.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The longest window a token's times are kept for, and the most times kept (a window never
 * needs more than the largest limit; the stream's own calls beyond that are still counted by
 * pushing the oldest out). */
#define KEEP_MS (10 * 60 * 1000)
#define MAX_TIMES 4096

typedef struct tok {
  struct tok *next;
  uint64_t key;
  uint64_t *t; /* monotonic ms of its requests, oldest first */
  size_t n, cap;
  uint64_t blocked_until;
  uint64_t last;
} tok_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static tok_t *toks;

static uint64_t key_of(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* The token's record, created when missing (NULL when out of memory); forgets records idle
 * for KEEP_MS. Under mu. */
static tok_t *find(const char *token, uint64_t now) {
  uint64_t k = key_of(token);
  tok_t **pp = &toks, *hit = NULL;
  while (*pp) {
    tok_t *t = *pp;
    if (t->key == k) hit = t;
    if (t != hit && now - t->last > KEEP_MS && t->last < now) {
      *pp = t->next;
      free(t->t);
      free(t);
      continue;
    }
    pp = &t->next;
  }
  if (!hit && (hit = calloc(1, sizeof *hit))) {
    hit->key = k;
    hit->next = toks;
    toks = hit;
  }
  if (hit) hit->last = now;
  return hit;
}

static void prune(tok_t *t, uint64_t now) {
  size_t d = 0;
  while (d < t->n && t->t[d] + KEEP_MS <= now) d++;
  if (d) memmove(t->t, t->t + d, (t->n - d) * sizeof *t->t);
  t->n -= d;
}

static void add(tok_t *t, uint64_t now) {
  if (t->n == t->cap) {
    if (t->cap >= MAX_TIMES) {
      memmove(t->t, t->t + 1, (t->n - 1) * sizeof *t->t);
      t->n--;
    } else {
      size_t c = t->cap ? t->cap * 2 : 32;
      uint64_t *n = realloc(t->t, c * sizeof *n);
      if (!n) return;
      t->t = n;
      t->cap = c;
    }
  }
  t->t[t->n++] = now;
}

/* Requests within window_ms before now, and the time the oldest of them leaves it. */
static size_t in_window(const tok_t *t, uint64_t now, long window_ms, uint64_t *first) {
  size_t i = t->n;
  while (i > 0 && t->t[i - 1] + (uint64_t)window_ms > now) i--;
  *first = i < t->n ? t->t[i] : now;
  return t->n - i;
}

void gn_rate_note(const char *token) {
  uint64_t now = gn_monotonic_ms();
  pthread_mutex_lock(&mu);
  tok_t *t = find(token, now);
  if (t) {
    prune(t, now);
    add(t, now);
  }
  pthread_mutex_unlock(&mu);
}

double gn_rate_take(const char *token, int limit, long window_ms, int reserve) {
  uint64_t now = gn_monotonic_ms();
  /* the server counts a request when it arrives, later than it left: a margin keeps a
   * request that left the window here from still being inside it there */
  window_ms += window_ms / 20 < 1000 ? window_ms / 20 : 1000;
  double wait = 0;
  pthread_mutex_lock(&mu);
  tok_t *t = find(token, now);
  if (!t) {
    wait = 1000; /* out of memory: later */
  } else if (t->blocked_until > now) {
    wait = (double)(t->blocked_until - now);
  } else {
    prune(t, now);
    uint64_t first;
    size_t n = in_window(t, now, window_ms, &first);
    int room = limit - reserve;
    if (room < 1) room = 1;
    if (n >= (size_t)room) {
      /* the oldest requests must leave the window until one more fits */
      size_t i = t->n - n + (n - (size_t)room);
      wait = (double)(t->t[i] + (uint64_t)window_ms - now) + 1;
    } else {
      add(t, now);
    }
  }
  pthread_mutex_unlock(&mu);
  return wait;
}

void gn_rate_block(const char *token, double delay_ms) {
  uint64_t now = gn_monotonic_ms();
  pthread_mutex_lock(&mu);
  tok_t *t = find(token, now);
  if (t && delay_ms > 0 && now + (uint64_t)delay_ms > t->blocked_until)
    t->blocked_until = now + (uint64_t)delay_ms;
  pthread_mutex_unlock(&mu);
}

int gn_rate_count(const char *token, long window_ms) {
  uint64_t now = gn_monotonic_ms(), first;
  pthread_mutex_lock(&mu);
  tok_t *t = find(token, now);
  int n = t ? (int)in_window(t, now, window_ms, &first) : 0;
  pthread_mutex_unlock(&mu);
  return n;
}

/* The records live as long as the module: freed when it is unloaded (Lua's lua_close dlcloses
 * core.so, after which nothing would reach them any more: LeakSanitizer says so). No client is
 * running by then. */
__attribute__((destructor)) static void free_all(void) {
  pthread_mutex_lock(&mu);
  for (tok_t *t = toks, *n; t; t = n) {
    n = t->next;
    free(t->t);
    free(t);
  }
  toks = NULL;
  pthread_mutex_unlock(&mu);
}
