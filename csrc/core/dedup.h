/* dedup.h: the CorrelationIds of a rollover's overlap, so that an event both sockets deliver
 * reaches the owner once.
 *
 * During a make-before-break hand-over every socket still subscribed receives each event
 * published after the new channel was subscribed, each copy with the same CorrelationId; with
 * rollovers back to back that is more than two sockets, so an id is kept after its second copy
 * too, until it is max_age_ms old (the skew between sockets is far smaller). The set holds
 * about the event rate times max_age_ms ids; memory is allocated only while a rollover runs and
 * is bounded (GN_DEDUP_MAX_SLOTS); if it ever fills with ids younger than max_age_ms it is
 * emptied and the overflow counted, so a duplicate may then pass: never a loss.
 *
 * Not locked: one thread (the service thread) owns a set.
 */
#ifndef GN_DEDUP_H
#define GN_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#define GN_DEDUP_ID 40               /* longest id tracked, NUL included (a UUID is 36) */
#define GN_DEDUP_MAX_SLOTS (1u << 19) /* 24 MB at most: 5 s of 50,000 events/s */

typedef struct {
  char id[GN_DEDUP_ID]; /* "" when the slot is free */
  uint64_t t_ms;
  uint32_t src;         /* which socket delivered the first copy (the caller's numbering) */
} gn_dedup_slot_t;

typedef struct {
  gn_dedup_slot_t *slots;
  size_t cap, used;
  uint64_t max_age_ms;
  uint64_t overflows;   /* times the set was emptied because it was full of young ids */
} gn_dedup_t;

/* An empty set that forgets unmatched ids after max_age_ms. Returns nothing. */
void gn_dedup_init(gn_dedup_t *d, uint64_t max_age_ms);
/* Returns 1 when a copy of id was seen in the last max_age_ms (this one is a duplicate), 0 when
 * it is the first copy (remembered at now_ms), -1 when id cannot be tracked (NULL, too long, or
 * out of memory): deliver it. */
int gn_dedup_check(gn_dedup_t *d, const char *id, uint64_t now_ms);
/* The same, for copies from numbered sockets: the first copy is remembered with src; on a
 * duplicate (1) *first_src is the number of the socket that delivered the first copy. */
int gn_dedup_check_src(gn_dedup_t *d, const char *id, uint64_t now_ms, uint32_t src,
                       uint32_t *first_src);
/* Ids remembered now. */
size_t gn_dedup_size(const gn_dedup_t *d);
/* Forgets everything and frees the memory. Returns nothing. */
void gn_dedup_clear(gn_dedup_t *d);

#endif
