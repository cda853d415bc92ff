/* pool.c: the topic index and the credential budgets (see pool.h). */
#include "pool.h"
#include "gn_util.h"

#include <pthread.h>
#include <stdint.h>

/* ------------------------------------------------------------------------------------------ */
/* topic index: chained hash, doubled when it holds as many names as buckets */

struct gn_tindex_entry {
  gn_tindex_entry_t *next;
  int slot;
  char name[];
};

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static gn_tindex_entry_t **find(const gn_tindex_t *x, const char *name) {
  if (!x->nb) return NULL;
  gn_tindex_entry_t **p = &x->b[hash(name) & (x->nb - 1)];
  while (*p && strcmp((*p)->name, name) != 0) p = &(*p)->next;
  return p;
}

int gn_tindex_get(const gn_tindex_t *x, const char *name) {
  gn_tindex_entry_t **p = find(x, name);
  return p && *p ? (*p)->slot : GN_TINDEX_ABSENT;
}

static int grow(gn_tindex_t *x) {
  size_t nb = x->nb ? x->nb * 2 : 64;
  gn_tindex_entry_t **b = calloc(nb, sizeof *b);
  if (!b) return -1;
  for (size_t i = 0; i < x->nb; i++)
    for (gn_tindex_entry_t *e = x->b[i], *next; e; e = next) {
      next = e->next;
      size_t k = hash(e->name) & (nb - 1);
      e->next = b[k];
      b[k] = e;
    }
  free(x->b);
  x->b = b;
  x->nb = nb;
  return 0;
}

int gn_tindex_set(gn_tindex_t *x, const char *name, int slot) {
  gn_tindex_entry_t **p = find(x, name);
  if (p && *p) {
    (*p)->slot = slot;
    return 0;
  }
  if (x->n >= x->nb && grow(x) != 0) return -1;
  size_t len = strlen(name);
  gn_tindex_entry_t *e = malloc(sizeof *e + len + 1);
  if (!e) return -1;
  memcpy(e->name, name, len + 1);
  e->slot = slot;
  size_t k = hash(name) & (x->nb - 1);
  e->next = x->b[k];
  x->b[k] = e;
  x->n++;
  return 0;
}

int gn_tindex_del(gn_tindex_t *x, const char *name) {
  gn_tindex_entry_t **p = find(x, name);
  if (!p || !*p) return 0;
  gn_tindex_entry_t *e = *p;
  *p = e->next;
  free(e);
  x->n--;
  return 1;
}

void gn_tindex_free(gn_tindex_t *x) {
  for (size_t i = 0; i < x->nb; i++)
    for (gn_tindex_entry_t *e = x->b[i], *next; e; e = next) {
      next = e->next;
      free(e);
    }
  free(x->b);
  memset(x, 0, sizeof *x);
}

/* ------------------------------------------------------------------------------------------ */
/* budgets: a list of entries under one lock (a process has a handful of credentials) */

struct gn_budget {
  gn_budget_t *next;
  char *key;           /* client_id NUL host */
  size_t keylen;
  int refs, used;
  int cap;              /* the server's limit as an eviction showed it (0: none seen) */
  uint64_t created_ms;  /* the last channel creation */
  gn_budget_waiter_t *waiters;
};

static pthread_mutex_t budgets_mu = PTHREAD_MUTEX_INITIALIZER;
static gn_budget_t *budgets;

/* "client_id\0host[:port]" of token_url (scheme and path left out). */
static char *make_key(const char *client_id, const char *token_url, size_t *len) {
  const char *h = strstr(token_url, "://");
  h = h ? h + 3 : token_url;
  size_t hl = strcspn(h, "/?#");
  size_t il = strlen(client_id);
  char *k = malloc(il + 1 + hl + 1);
  if (!k) return NULL;
  memcpy(k, client_id, il + 1);
  memcpy(k + il + 1, h, hl);
  k[il + 1 + hl] = 0;
  *len = il + 1 + hl;
  return k;
}

gn_budget_t *gn_budget_acquire(const char *client_id, const char *token_url) {
  size_t len;
  char *key = make_key(client_id, token_url, &len);
  if (!key) return NULL;
  pthread_mutex_lock(&budgets_mu);
  gn_budget_t *b = budgets;
  while (b && !(b->keylen == len && memcmp(b->key, key, len) == 0)) b = b->next;
  if (b) {
    b->refs++;
    free(key);
  } else if ((b = calloc(1, sizeof *b))) {
    b->key = key;
    b->keylen = len;
    b->refs = 1;
    b->next = budgets;
    budgets = b;
  } else {
    free(key);
  }
  pthread_mutex_unlock(&budgets_mu);
  return b;
}

void gn_budget_hold(gn_budget_t *b) {
  pthread_mutex_lock(&budgets_mu);
  b->refs++;
  pthread_mutex_unlock(&budgets_mu);
}

void gn_budget_release(gn_budget_t *b) {
  if (!b) return;
  pthread_mutex_lock(&budgets_mu);
  if (--b->refs == 0) {
    gn_budget_t **p = &budgets;
    while (*p != b) p = &(*p)->next;
    *p = b->next;
    free(b->key);
    free(b);
  }
  pthread_mutex_unlock(&budgets_mu);
}

int gn_budget_take(gn_budget_t *b, int limit, int spare) {
  pthread_mutex_lock(&budgets_mu);
  if (b->cap && b->cap < limit) limit = b->cap;
  int ok = b->used < limit - (spare ? 0 : 1);
  if (ok) b->used++;
  pthread_mutex_unlock(&budgets_mu);
  return ok;
}

void gn_budget_give(gn_budget_t *b, const gn_budget_waiter_t *self) {
  pthread_mutex_lock(&budgets_mu);
  if (b->used > 0) b->used--;
  for (gn_budget_waiter_t *w = b->waiters; w; w = w->next)
    if (w != self) w->poke(w->ud);
  pthread_mutex_unlock(&budgets_mu);
}

int gn_budget_used(gn_budget_t *b) {
  pthread_mutex_lock(&budgets_mu);
  int n = b->used;
  pthread_mutex_unlock(&budgets_mu);
  return n;
}

int gn_budget_shrink(gn_budget_t *b, int cap) {
  if (cap < 2) cap = 2;
  pthread_mutex_lock(&budgets_mu);
  if (!b->cap || cap < b->cap) b->cap = cap;
  int n = b->cap;
  pthread_mutex_unlock(&budgets_mu);
  return n;
}

int gn_budget_cap(gn_budget_t *b) {
  pthread_mutex_lock(&budgets_mu);
  int n = b->cap;
  pthread_mutex_unlock(&budgets_mu);
  return n;
}

void gn_budget_created(gn_budget_t *b, uint64_t now_ms) {
  pthread_mutex_lock(&budgets_mu);
  b->created_ms = now_ms;
  pthread_mutex_unlock(&budgets_mu);
}

uint64_t gn_budget_last_created(gn_budget_t *b) {
  pthread_mutex_lock(&budgets_mu);
  uint64_t t = b->created_ms;
  pthread_mutex_unlock(&budgets_mu);
  return t;
}

void gn_budget_wait(gn_budget_t *b, gn_budget_waiter_t *w) {
  pthread_mutex_lock(&budgets_mu);
  if (!w->listed) {
    w->next = b->waiters;
    b->waiters = w;
    w->listed = 1;
  }
  pthread_mutex_unlock(&budgets_mu);
}

void gn_budget_unwait(gn_budget_t *b, gn_budget_waiter_t *w) {
  pthread_mutex_lock(&budgets_mu);
  if (w->listed) {
    gn_budget_waiter_t **p = &b->waiters;
    while (*p && *p != w) p = &(*p)->next;
    if (*p) *p = w->next;
    w->listed = 0;
  }
  pthread_mutex_unlock(&budgets_mu);
}
