/* retry.c: the attempt after a failure (see retry.h). */
#include "retry.h"
#include "gn_util.h"
#include "uvtimer.h"

#include <math.h>
#include <stdio.h>

const char *gn_retry_check(const gn_backoff_t *bo, const gn_backoff_policy_t *p, uint32_t attempt,
                           double delay_ms, double retry_after_ms, uint64_t now_ms) {
  if (attempt < 1) return "attempt number below 1";
  if (!isfinite(delay_ms) || delay_ms < 0) return "delay is not a finite non-negative number";
  double cap = p->max_ms;
  if (retry_after_ms > cap) cap = retry_after_ms;
  if (p->retry_after_max_ms > cap && retry_after_ms >= 0) cap = p->retry_after_max_ms;
  if (delay_ms > cap + 1e-6) return "delay above the policy's maximum";
  if (p->max_retries && attempt > p->max_retries) return "max_retries";
  if (p->max_window_ms > 0 && bo->cycle_start_ms &&
      (double)(now_ms + (uint64_t)delay_ms - bo->cycle_start_ms) > p->max_window_ms)
    return "max_window_ms";
  return NULL;
}

int gn_retry_init(gn_retry_t *r, const gn_backoff_policy_t *policy, char *err, size_t errlen) {
  memset(r, 0, sizeof *r);
  r->policy = policy;
  return gn_backoff_init(&r->bo, policy, err, errlen);
}

static void timer_cb(uv_timer_t *t) {
  gn_retry_t *r = t->data;
  r->armed = 0;
  r->fire(r->ud);
}

int gn_retry_start(gn_retry_t *r, uv_loop_t *loop, void (*fire)(void *ud), void *ud) {
  r->fire = fire;
  r->ud = ud;
  return (r->timer = gn_timer_new(loop, r)) ? 0 : -1;
}

void gn_retry_close(gn_retry_t *r) {
  r->armed = 0;
  gn_timer_close(&r->timer);
}

int gn_retry_next(gn_retry_t *r, double retry_after_ms, const char *reason, double *delay_ms,
                  const char **code, char *msg, size_t msglen) {
  uint64_t now = gn_now_mono_ms();
  *delay_ms = 0;
  gn_backoff_status_t st = gn_backoff_next(&r->bo, retry_after_ms, now, delay_ms);
  if (st != GN_BACKOFF_OK) {
    snprintf(msg, msglen, "gave up after %u attempts (%s) following: %s", r->bo.attempt,
             gn_backoff_status_name(st), reason);
    *code = st == GN_BACKOFF_GIVEUP_RETRIES ? "max_retries" : "max_window";
    return -1;
  }
  const char *bad = gn_retry_check(&r->bo, r->policy, r->bo.attempt, *delay_ms, retry_after_ms,
                                   now);
  if (!bad) return 0;
  snprintf(msg, msglen, "attempt record rejected (%s) following: %s", bad, reason);
  *code = strcmp(bad, "max_retries") == 0     ? "max_retries"
          : strcmp(bad, "max_window_ms") == 0 ? "max_window"
                                              : "invalid_record";
  return -1;
}

uint64_t gn_retry_arm(gn_retry_t *r, double delay_ms, double retry_after_ms) {
  r->armed = 1;
  r->armed_at_ms = gn_now_mono_ms();
  r->retry_after_ms = retry_after_ms;
  uv_timer_start(r->timer, timer_cb, (uint64_t)(delay_ms + 0.5), 0);
  return ++r->seq;
}

void gn_retry_disarm(gn_retry_t *r) {
  if (r->timer) uv_timer_stop(r->timer);
  r->armed = 0;
}

gn_retry_answer_t gn_retry_answer(gn_retry_t *r, uint64_t seq, double d, char *msg,
                                  size_t msglen) {
  if (seq != r->seq || !r->armed) return GN_RETRY_STALE; /* too late: the attempt started */
  if (d < 0) return GN_RETRY_GIVE_UP;
  uint64_t now = gn_now_mono_ms();
  const char *bad = gn_retry_check(&r->bo, r->policy, r->bo.attempt, d, r->retry_after_ms, now);
  if (bad) {
    snprintf(msg, msglen, "the policy hook's delay %.1f ms was refused (%s); the engine's "
             "delay stands", d, bad);
    return GN_RETRY_REFUSED;
  }
  uint64_t elapsed = now - r->armed_at_ms;
  uint64_t left = (uint64_t)(d + 0.5) > elapsed ? (uint64_t)(d + 0.5) - elapsed : 0;
  uv_timer_start(r->timer, timer_cb, left, 0);
  return GN_RETRY_APPLIED;
}

json_t *gn_retry_record(uint64_t connection_id, uint32_t attempt, double delay_ms,
                        const char *reason, gn_reason_t trigger, int new_channel,
                        double retry_after_ms) {
  json_t *rec = json_pack("{s:s, s:I, s:i, s:f, s:f, s:s, s:s, s:b}", "type", "reconnect",
                          "connection_id", (json_int_t)connection_id, "attempt", (int)attempt,
                          "timestamp_ms", gn_now_wall_ms(), "delay_ms", delay_ms, "reason",
                          reason, "trigger", gn_reason_name(trigger), "new_channel", new_channel);
  if (rec && retry_after_ms >= 0)
    json_object_set_new(rec, "retry_after_ms", json_real(retry_after_ms));
  return rec;
}
