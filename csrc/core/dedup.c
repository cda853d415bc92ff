/* dedup.c: the CorrelationIds of a rollover's overlap (see dedup.h). Open addressing with
 * linear probing; old ids leave when the table is rebuilt, so nothing is removed in place. */
#include "dedup.h"

#include <stdlib.h>
#include <string.h>

static size_t hash(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return (size_t)(h ^ (h >> 29));
}

void gn_dedup_init(gn_dedup_t *d, uint64_t max_age_ms) {
  memset(d, 0, sizeof *d);
  d->max_age_ms = max_age_ms;
}

void gn_dedup_clear(gn_dedup_t *d) {
  free(d->slots);
  d->slots = NULL;
  d->cap = d->used = 0;
}

size_t gn_dedup_size(const gn_dedup_t *d) { return d->used; }

static void put(gn_dedup_slot_t *slots, size_t cap, const gn_dedup_slot_t *e) {
  size_t i = hash(e->id) & (cap - 1);
  while (slots[i].id[0]) i = (i + 1) & (cap - 1);
  slots[i] = *e;
}

/* Rebuilds the table with cap slots, keeping the ids younger than the cut. */
static int rebuild(gn_dedup_t *d, size_t cap, uint64_t cut_ms) {
  gn_dedup_slot_t *n = calloc(cap, sizeof *n);
  if (!n) return -1;
  size_t used = 0;
  for (size_t i = 0; i < d->cap; i++)
    if (d->slots[i].id[0] && d->slots[i].t_ms >= cut_ms) {
      put(n, cap, &d->slots[i]);
      used++;
    }
  free(d->slots);
  d->slots = n;
  d->cap = cap;
  d->used = used;
  return 0;
}

/* Room for one more at a load of at most one half: old ids go first, then the table grows,
 * and at its largest it is emptied (counted). */
static int make_room(gn_dedup_t *d, uint64_t now_ms) {
  if (d->cap && (d->used + 1) * 2 <= d->cap) return 0;
  if (!d->cap) return rebuild(d, 1024, 0);
  uint64_t cut = now_ms > d->max_age_ms ? now_ms - d->max_age_ms : 0;
  if (rebuild(d, d->cap, cut) != 0) return -1;
  if ((d->used + 1) * 2 <= d->cap) return 0;
  if (d->cap < GN_DEDUP_MAX_SLOTS) return rebuild(d, d->cap * 2, 0);
  d->overflows++;
  return rebuild(d, d->cap, UINT64_MAX);
}

int gn_dedup_check(gn_dedup_t *d, const char *id, uint64_t now_ms) {
  uint32_t first;
  return gn_dedup_check_src(d, id, now_ms, 0, &first);
}

int gn_dedup_check_src(gn_dedup_t *d, const char *id, uint64_t now_ms, uint32_t src,
                       uint32_t *first_src) {
  if (!id || !*id || strlen(id) >= GN_DEDUP_ID) return -1;
  if (d->cap) {
    size_t mask = d->cap - 1;
    for (size_t i = hash(id) & mask; d->slots[i].id[0]; i = (i + 1) & mask)
      if (strcmp(d->slots[i].id, id) == 0) {
        if (now_ms >= d->slots[i].t_ms && now_ms - d->slots[i].t_ms <= d->max_age_ms) {
          *first_src = d->slots[i].src;
          return 1;
        }
        d->slots[i].t_ms = now_ms; /* seen long ago: a new event that reuses the id */
        d->slots[i].src = src;
        return 0;
      }
  }
  if (make_room(d, now_ms) != 0) return -1;
  gn_dedup_slot_t e;
  memset(&e, 0, sizeof e);
  strcpy(e.id, id);
  e.t_ms = now_ms;
  e.src = src;
  put(d->slots, d->cap, &e);
  d->used++;
  return 0;
}
