/* renew.c: when a channel must be renewed, and how (see renew.h). */
#include "renew.h"
#include "gn_util.h"
#include "uvtimer.h"

static void timer_cb(uv_timer_t *t);

void gn_renew_init(gn_renew_t *r, const gn_renew_conf_t *conf, void (*due)(void *ud, int how),
                   void *ud) {
  memset(r, 0, sizeof *r);
  r->conf = conf;
  r->due = due;
  r->ud = ud;
}

int gn_renew_start(gn_renew_t *r, uv_loop_t *loop) {
  return (r->timer = gn_timer_new(loop, r)) ? 0 : -1;
}

void gn_renew_close(gn_renew_t *r) {
  gn_renew_forget(r);
  gn_timer_close(&r->timer);
}

uint64_t gn_renew_end(const gn_renew_t *r) {
  if (!r->known) return 0;
  uint64_t end = r->start_ms + r->life_ms;
  if (r->conf->rule == GN_RENEW_BOTH && r->token_end_ms && r->token_end_ms < end)
    end = r->token_end_ms;
  return end;
}

/* Arms the timer for the moment the channel is due. */
static void arm(gn_renew_t *r) {
  if (!r->timer) return;
  uv_timer_stop(r->timer);
  if (!r->known || r->conf->rule == GN_RENEW_OFF) return;
  uint64_t end = gn_renew_end(r), now = gn_now_mono_ms();
  uint64_t span = end > r->start_ms ? end - r->start_ms : 0;
  uint64_t at = r->start_ms + (uint64_t)((double)span * r->conf->at);
  if (end > (uint64_t)r->conf->margin_ms && end - (uint64_t)r->conf->margin_ms < at)
    at = end - (uint64_t)r->conf->margin_ms;
  uint64_t floor = r->start_ms + span / 2; /* a margin larger than the life: no loop */
  if (r->conf->at < 0.5) floor = r->start_ms + (uint64_t)((double)span * r->conf->at);
  if (at < floor) at = floor;
  uv_timer_start(r->timer, timer_cb, at > now ? at - now : 0, 0);
}

static void timer_cb(uv_timer_t *t) {
  gn_renew_t *r = t->data;
  if (!r->known) return;
  /* A resubscribe moves the channel's own end to now + its lifetime; the token's end stays.
   * When the token ends before that, only a new channel (with a newer token) outlives it. */
  uint64_t now = gn_now_mono_ms();
  int roll = r->conf->rule == GN_RENEW_BOTH && r->token_end_ms &&
             r->token_end_ms <= now + r->life_ms;
  r->due(r->ud, roll ? GN_RENEW_ROLLOVER : GN_RENEW_RESUBSCRIBE);
}

void gn_renew_created(gn_renew_t *r, double expires_wall_ms, uint64_t token_end_ms,
                      uint64_t gen) {
  uint64_t now = gn_now_mono_ms();
  double left = expires_wall_ms > 0 ? expires_wall_ms - gn_now_wall_ms() : -1;
  r->known = 1;
  r->start_ms = now;
  /* An expires in the past (or a wildly skewed clock) says nothing useful: the documented 24 h. */
  r->life_ms = (uint64_t)(left > 1000 ? left : GN_RENEW_DEFAULT_LIFE_MS);
  r->token_end_ms = token_end_ms;
  r->token_gen = gen;
  r->pending_ms = 0;
  arm(r);
}

int gn_renew_subscribed(gn_renew_t *r, uint64_t sent_ms) {
  if (!r->known) return 0;
  int answered = r->pending_ms && sent_ms >= r->pending_ms;
  if (sent_ms > r->start_ms) r->start_ms = sent_ms;
  if (answered) r->pending_ms = 0;
  arm(r);
  return answered;
}

void gn_renew_asked(gn_renew_t *r) {
  uint64_t now = gn_now_mono_ms(), end = gn_renew_end(r);
  r->pending_ms = now;
  if (!r->timer) return;
  uv_timer_stop(r->timer); /* the answer re-arms it; without one, ask again halfway to the end
                            * (the subscription's own retries run meanwhile), down to 1 s */
  if (end > now + 2000) uv_timer_start(r->timer, timer_cb, (end - now) / 2, 0);
}

void gn_renew_forget(gn_renew_t *r) {
  r->known = 0;
  r->pending_ms = 0;
  if (r->timer) uv_timer_stop(r->timer);
}

int gn_renew_early_end(const gn_renew_t *r) {
  uint64_t end = gn_renew_end(r);
  if (!end) return 0;
  uint64_t span = end > r->start_ms ? end - r->start_ms : 0;
  uint64_t tol = span / 10 < GN_RENEW_EARLY_MS ? span / 10 : GN_RENEW_EARLY_MS;
  return gn_now_mono_ms() + tol < end;
}
