/* retry.h: the BACKOFF state's machinery: after a failure, the engine's delay, the attempt
 * record and its checks against the policy's limits (the original design's payload validation:
 * a record that breaks the policy ends the cycle instead of looping), the timer that starts the
 * attempt, and the operator policy hook's answer, which may replace the delay while the timer
 * runs (the engine's delay stands until it does, so a slow or absent hook cannot stall a
 * reconnect).
 *
 * The check and the record are pure functions (any thread); a gn_retry_t lives on the service
 * thread.
 */
#ifndef GN_RETRY_H
#define GN_RETRY_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "backoff.h"
#include "schedule.h"

typedef struct {
  const gn_backoff_policy_t *policy;
  gn_backoff_t bo;            /* the engine: attempt number, delays, stability reset */
  uv_timer_t *timer;
  int armed;                  /* the timer runs: the attempt has not started */
  uint64_t armed_at_ms;
  double retry_after_ms;      /* the floor the armed delay obeyed (-1: none) */
  uint64_t seq;               /* the armed attempt, as the policy hook knows it */
  void (*fire)(void *ud);     /* the timer ran out: start the attempt */
  void *ud;
} gn_retry_t;

/* Prepares r for policy (kept by pointer). Returns 0, or -1 and err (a policy the engine
 * refuses). */
int gn_retry_init(gn_retry_t *r, const gn_backoff_policy_t *policy, char *err, size_t errlen);
/* Creates the timer on loop; fire(ud) starts each attempt. Returns 0, or -1 when out of
 * memory. Service thread. */
int gn_retry_start(gn_retry_t *r, uv_loop_t *loop, void (*fire)(void *ud), void *ud);
/* Stops and releases the timer (freed on the loop). Returns nothing. Service thread. */
void gn_retry_close(gn_retry_t *r);

/* Asks the engine for the next attempt's delay after a failure (reason, for messages) and checks
 * the record. Returns 0 with *delay_ms, or -1 when the cycle must end: *code is the gave_up
 * reason ("max_retries", "max_window", "invalid_record") and msg says why. */
int gn_retry_next(gn_retry_t *r, double retry_after_ms, const char *reason, double *delay_ms,
                  const char **code, char *msg, size_t msglen);
/* Starts the timer for delay_ms. Returns the attempt's sequence number for the policy hook.
 * Service thread. */
uint64_t gn_retry_arm(gn_retry_t *r, double delay_ms, double retry_after_ms);
/* Stops the timer. Returns nothing. Service thread. */
void gn_retry_disarm(gn_retry_t *r);

typedef enum {
  GN_RETRY_STALE = 0, /* not the armed attempt any more: ignored */
  GN_RETRY_APPLIED,   /* the timer now runs out at the hook's delay */
  GN_RETRY_REFUSED,   /* the delay breaks the policy (msg): the engine's delay stands */
  GN_RETRY_GIVE_UP    /* the hook gave up */
} gn_retry_answer_t;

/* Applies the policy hook's answer delay_ms (< 0: give up) for attempt seq. Returns what became
 * of it. Service thread. */
gn_retry_answer_t gn_retry_answer(gn_retry_t *r, uint64_t seq, double delay_ms, char *msg,
                                  size_t msglen);

/* Checks a delay for attempt number attempt against the policy (caps, limits, Retry-After).
 * Returns NULL when it may be scheduled, else what is wrong ("max_retries", "max_window_ms",
 * or a sentence). Any thread. */
const char *gn_retry_check(const gn_backoff_t *bo, const gn_backoff_policy_t *p, uint32_t attempt,
                           double delay_ms, double retry_after_ms, uint64_t now_ms);
/* The attempt record the health item "attempt", the audit line and the policy hook carry:
 * {type="reconnect", connection_id, attempt, timestamp_ms, delay_ms, reason, trigger,
 * new_channel[, retry_after_ms]}. Returns a new object, or NULL when out of memory. Any
 * thread. */
json_t *gn_retry_record(uint64_t connection_id, uint32_t attempt, double delay_ms,
                        const char *reason, gn_reason_t trigger, int new_channel,
                        double retry_after_ms);

#endif
