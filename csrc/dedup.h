/* dedup.h: the CorrelationIds of a rollover's overlap, so that an event both sockets deliver
 * reaches the owner once.
 *
 * During a make-before-break hand-over both channels receive every event published after the
 * new one was subscribed, each copy with the same CorrelationId, and each socket delivers in
 * order. An id is remembered when its first copy arrives and forgotten when its second does, so
 * the set holds only what one socket has delivered and the other has not (yet): about the skew
 * between the two sockets times the event rate, plus the events only one of them ever gets
 * (published before the new channel was subscribed). Those are forgotten after max_age_ms.
 * Memory is allocated only while a rollover runs and is bounded (GN_DEDUP_MAX_SLOTS); if it
 * ever fills with ids younger than max_age_ms it is emptied and the overflow counted, so a
 * duplicate may then pass: never a loss.
 *
 * Not locked: one thread (the service thread) owns a set.
 */
#ifndef GN_DEDUP_H
#define GN_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#define GN_DEDUP_ID 40               /* longest id tracked, NUL included (a UUID is 36) */
#define GN_DEDUP_MAX_SLOTS (1u << 18) /* 12 MB at most */

typedef struct {
  char id[GN_DEDUP_ID]; /* "" when the slot is free */
  uint64_t t_ms;
} gn_dedup_slot_t;

typedef struct {
  gn_dedup_slot_t *slots;
  size_t cap, used;
  uint64_t max_age_ms;
  uint64_t overflows;   /* times the set was emptied because it was full of young ids */
} gn_dedup_t;

/* An empty set that forgets unmatched ids after max_age_ms. Returns nothing. */
void gn_dedup_init(gn_dedup_t *d, uint64_t max_age_ms);
/* Returns 1 when id's other copy was seen (this one is the duplicate; the id is forgotten), 0
 * when it is the first copy (remembered at now_ms), -1 when id cannot be tracked (NULL, too
 * long, or out of memory): deliver it. */
int gn_dedup_check(gn_dedup_t *d, const char *id, uint64_t now_ms);
/* Ids remembered now. */
size_t gn_dedup_size(const gn_dedup_t *d);
/* Forgets everything and frees the memory. Returns nothing. */
void gn_dedup_clear(gn_dedup_t *d);

#endif
