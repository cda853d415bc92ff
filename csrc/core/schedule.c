/* schedule.c: single-flight scheduling of reconnect attempts (see schedule.h).
 *
 * The state word packs "a cycle is open" (bit 0) and the number of triggers coalesced into that
 * cycle (bits 1..63). A trigger either opens the cycle (0 -> 1) or adds 2; both are one CAS, so a
 * trigger is never lost between "seen open" and "counted". complete() swaps the word to 0 and
 * reads the cycle's coalesced count in the same atomic step. */
#include "schedule.h"

static const char *const reason_names[GN_REASON_COUNT_] = {
  "close", "error", "timeout", "manual", "expired"
};

const char *gn_reason_name(gn_reason_t r) {
  return (unsigned)r < GN_REASON_COUNT_ ? reason_names[r] : "?";
}

void gn_sched_init(gn_sched_t *s) {
  atomic_init(&s->state, 0);
  atomic_init(&s->first_reason, 0);
  atomic_init(&s->triggers, 0);
  atomic_init(&s->cycles, 0);
  atomic_init(&s->completed, 0);
  atomic_init(&s->coalesced, 0);
  atomic_init(&s->successes, 0);
  for (int i = 0; i < GN_REASON_COUNT_; i++) atomic_init(&s->by_reason[i], 0);
}

int gn_sched_trigger(gn_sched_t *s, gn_reason_t reason) {
  if ((unsigned)reason >= GN_REASON_COUNT_) reason = GN_REASON_ERROR;
  atomic_fetch_add_explicit(&s->triggers, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->by_reason[reason], 1, memory_order_relaxed);
  uint64_t cur = atomic_load_explicit(&s->state, memory_order_acquire);
  for (;;) {
    uint64_t want = (cur & 1) ? cur + 2 : 1;
    /* acq_rel: the winner must see everything the previous cycle's owner did before complete(),
     * and whoever completes must see every coalesced trigger's prior writes. */
    if (atomic_compare_exchange_weak_explicit(&s->state, &cur, want, memory_order_acq_rel,
                                              memory_order_acquire))
      break;
  }
  if (cur & 1) {
    atomic_fetch_add_explicit(&s->coalesced, 1, memory_order_relaxed);
    return 0;
  }
  atomic_store_explicit(&s->first_reason, (uint32_t)reason, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->cycles, 1, memory_order_relaxed);
  return 1;
}

uint64_t gn_sched_complete(gn_sched_t *s, int success) {
  uint64_t old = atomic_exchange_explicit(&s->state, 0, memory_order_acq_rel);
  if (!(old & 1)) return 0; /* no open cycle: nothing to end */
  atomic_fetch_add_explicit(&s->completed, 1, memory_order_relaxed);
  if (success) atomic_fetch_add_explicit(&s->successes, 1, memory_order_relaxed);
  return old >> 1;
}

int gn_sched_open(const gn_sched_t *s) {
  return (int)(atomic_load_explicit(&s->state, memory_order_acquire) & 1);
}
