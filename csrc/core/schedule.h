/* schedule.h: the single-flight reconnect scheduler.
 *
 * Any thread may call gn_sched_trigger() any number of times when it notices a failure (close
 * callback, error callback, watchdog timer, Lua's reconnect()). Exactly one caller per failure
 * cycle wins and must schedule the attempt; every other trigger during the cycle is coalesced and
 * counted. The cycle ends when the attempt's owner calls gn_sched_complete() with the outcome;
 * the next trigger after that opens a new cycle.
 *
 * Lock-free: one compare-and-swap on a packed state word (bit 0 = a cycle is open, the rest =
 * triggers coalesced into it), plus relaxed counters for reporting.
 */
#ifndef GN_SCHEDULE_H
#define GN_SCHEDULE_H

#include <stdatomic.h>
#include <stdint.h>

typedef enum {
  GN_REASON_CLOSE = 0,  /* the peer closed the socket */
  GN_REASON_ERROR,      /* connection or protocol error */
  GN_REASON_TIMEOUT,    /* watchdog: heartbeat missed, connect or handshake timeout */
  GN_REASON_MANUAL,     /* the application asked (client:reconnect()) */
  GN_REASON_EXPIRED,    /* the channel or token is gone */
  GN_REASON_COUNT_
} gn_reason_t;

typedef struct {
  _Atomic uint64_t state;        /* (coalesced << 1) | open */
  _Atomic uint32_t first_reason; /* reason of the winning trigger of the open cycle */
  _Atomic uint64_t triggers;     /* every trigger ever */
  _Atomic uint64_t cycles;       /* cycles opened (= attempts scheduled) */
  _Atomic uint64_t completed;    /* cycles closed */
  _Atomic uint64_t coalesced;    /* triggers folded into an open cycle */
  _Atomic uint64_t successes;    /* cycles that ended with a successful attempt */
  _Atomic uint64_t by_reason[GN_REASON_COUNT_];
} gn_sched_t;

/* Initialises s: no cycle open, every counter 0. Returns nothing. Any thread, before s is shared
 * with other threads: atomic_init() is not itself an atomic operation. */
void gn_sched_init(gn_sched_t *s);

/* Returns 1 if this caller opened a new cycle and must schedule its one attempt, 0 if the
 * trigger was folded into the cycle already open. Any thread. */
int gn_sched_trigger(gn_sched_t *s, gn_reason_t reason);

/* Ends the open cycle with its attempt's outcome (success != 0 for success). Returns how many
 * triggers were coalesced into it (0 when no cycle was open). Call only from the owner of the
 * cycle (the winner of gn_sched_trigger or the thread it handed the attempt to). */
uint64_t gn_sched_complete(gn_sched_t *s, int success);

/* Returns 1 while a cycle is open, else 0. Any thread (the answer may be stale as soon as it is
 * read: another thread can open or end a cycle). */
int gn_sched_open(const gn_sched_t *s);

/* Returns r's name, a static string ("close", "error", ...; "?" for a value out of range). Any
 * thread. */
const char *gn_reason_name(gn_reason_t r);

#endif
