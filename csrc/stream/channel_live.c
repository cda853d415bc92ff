/* channel_live.c: what a channel does while a socket delivers: the live socket's callbacks
 * (a rollover's sockets have their own, rollover.c), the rollover's start and its two hooks
 * (take over, failed), the watchdog's verdict, live subscription changes and the renewal
 * (the machine's table is in channel.c; channel_int.h). Service thread.
 */
#include "channel_int.h"
#include "message.h"
#include "oauth.h"
#include "rest.h"
#include "gn_util.h"
#include "uvtimer.h"

#include <math.h>
#include <stdio.h>

static void conn_open_cb(void *ud, gn_conn_t *conn);
static void conn_message_cb(void *ud, gn_conn_t *conn, const char *data, size_t len, int binary);
static void conn_close_cb(void *ud, gn_conn_t *conn, const gn_close_info_t *info);
const gn_conn_cbs_t gn_ch_conn_cbs = {conn_open_cb, conn_message_cb, conn_close_cb};

/* ------------------------------------------------------------------------------------------ */
/* the token of a live change or a rollover (the attempt's: channel_attempt.c) */

/* Makes the held token one with comfortable life left, from the shared cache (the token of the
 * last attempt may be near its end by the time of a subscription change or a rollover).
 * Returns 1 when it is ready; 0 when a fetch is under way (its end continues the purpose) or the
 * token could not be had (reported). */
static int fresh_token(gn_channel_t *ch, int purpose) {
  if (ch->bearer.waiting) return 0;
  gn_token_result_t r;
  if (!gn_bearer_ask(&ch->bearer, purpose, &r)) return 0;
  int ok = r.kind == GN_TOK_OK;
  if (ok) gn_bearer_adopt(&ch->bearer, &r);
  else if (purpose == TOKP_LIVE)
    gn_ch_health(ch, "subscription", json_pack("{s:s, s:s}", "event", "failed", "error", r.error));
  else if (ch->roll.active)
    gn_ch_roll_failed(ch, r.error);
  gn_token_result_clear(&r);
  return ok;
}

/* The token a live subscription change waited for. */
void gn_ch_live_token(gn_channel_t *ch, gn_token_result_t *r) {
  if (r->kind == GN_TOK_AGAIN) {
    if (fresh_token(ch, TOKP_LIVE)) gn_ch_put_live(ch);
  } else if (r->kind != GN_TOK_OK) {
    gn_ch_health(ch, "subscription", json_pack("{s:s, s:s}", "event", "failed", "error", r->error));
  } else {
    gn_bearer_adopt(&ch->bearer, r);
    gn_ch_put_live(ch);
  }
}

/* The token a rollover waited for. */
void gn_ch_roll_token(gn_channel_t *ch, gn_token_result_t *r) {
  if (r->kind == GN_TOK_AGAIN) {
    if (fresh_token(ch, TOKP_ROLL))
      gn_roll_post(&ch->roll, ch->bearer.token, ch->bearer.gen, ch->bearer.expires_ms);
  } else if (r->kind == GN_TOK_OK) {
    gn_bearer_adopt(&ch->bearer, r);
    gn_roll_post(&ch->roll, ch->bearer.token, ch->bearer.gen, ch->bearer.expires_ms);
  } else if (ch->roll.active) {
    gn_ch_roll_failed(ch, r->error);
  }
}

/* ------------------------------------------------------------------------------------------ */
/* OPEN: the socket delivers */

/* The attempt's socket is open (or a rollover's, when the old socket went first). */
static void opened(gn_channel_t *ch) {
  uint64_t now = gn_now_mono_ms();
  /* to the µs: a reconnect on a LAN takes a few ms, which whole ms cannot tell apart; rounded
   * there, so the item's JSON says 2.137, not the clock's 2.136999874 */
  double latency = round((gn_now_mono_msf() - ch->attempt_start_ms) * 1000.0) / 1000.0;
  gn_ch_enter(ch, GN_ST_OPEN);
  ch->in_attempt = ch->auth_retried = ch->connect_failures = ch->env->spare_waiting = 0;
  ch->connection_id++;
  uint32_t attempt_no = ch->retry.bo.attempt;
  gn_gap_opened(&ch->gap, ch->env->metrics, now);
  gn_metrics_add_latency(ch->env->metrics, latency);
  if (gn_conn_tls_resumed(ch->conn)) GN_COUNT(ch->env, tls_resumed);
  /* Close the cycle before anyone can read "connected": a reconnect() asked after that must
   * open a new cycle, not fold into this finished one. */
  if (gn_sched_open(&ch->sched)) gn_sched_complete(&ch->sched, 1);
  gn_backoff_succeeded(&ch->retry.bo, now);
  gn_ch_health(ch, "connected",
               json_pack("{s:f, s:s, s:I, s:i, s:b}", "latency_ms", latency, "channel_id",
                         gn_ch_chan_id(ch), "connection_id", (json_int_t)ch->connection_id,
                         "attempt", (int)attempt_no, "new_channel", ch->attempt_hard));
  gn_gap_restored(&ch->gap, ch->env, now, ch->attempt_hard, gn_ch_chan_id(ch));
  gn_heartbeat_watch(&ch->hb, ch->conn);
  /* A subscription change that arrived while we were connecting. */
  gn_ch_put_live(ch);
}


void gn_ch_start_rollover(gn_channel_t *ch) {
  if (ch->env->spare) {
    /* B is one more channel of the credential while the old one lives: a unit within the
     * whole budget (the spare). When none is left, this one waits for one
     * (gn_channel_spare_freed), and rollovers that hold one close their old sockets as soon as
     * that loses nothing; if the server closes the socket first, the ordinary reconnect takes
     * over. */
    if (!ch->env->spare(ch->env->spare_ud, 1)) {
      if (!ch->env->spare_waiting)
        gn_ch_health(ch, "rollover",
                     json_pack("{s:s, s:s, s:s, s:s}", "event", "deferred", "reason",
                               "channel_budget", "from", gn_ch_chan_id(ch), "error",
                               "the credential's spare channel is in use (by another "
                               "rollover, or the budget shrank after an eviction): "
                               "this one starts when it is given back"));
      ch->env->spare_waiting = 1;
      gn_channel_spare_wanted(ch); /* its own old socket too */
      return;
    }
    ch->roll.unit = 1;
  }
  ch->env->spare_waiting = 0;
  gn_roll_begin(&ch->roll);
  ch->roll.renewal = ch->renew_roll;
  gn_ch_enter(ch, GN_ST_ROLLOVER);
  gn_ch_health(ch, "rollover",
               json_pack("{s:s, s:s, s:s}", "event", "started", "from", gn_ch_chan_id(ch), "reason",
                         ch->renew_roll ? "renewal" : "socket_closing"));
  if (ch->bearer.waiting) {
    gn_ch_roll_failed(ch, "a token refresh is under way");
    return;
  }
  /* B would end with a token past half its life (where channels end with their token): a new
   * token for it (one fetch for every holder of the credential). */
  if (ch->env->conf->renew.rule == GN_RENEW_BOTH && gn_bearer_half_spent(&ch->bearer))
    gn_token_invalidate(ch->env->tok, ch->bearer.gen);
  if (fresh_token(ch, TOKP_ROLL))
    gn_roll_post(&ch->roll, ch->bearer.token, ch->bearer.gen, ch->bearer.expires_ms);
}

/* Channel B is open (the rollover's take_over hook): it becomes the channel's live socket, and
 * the old socket (if still there) drains, the rollover's. */
static void roll_take_over(void *ud) {
  gn_channel_t *ch = ud;
  gn_conn_t *old = ch->conn;
  char *old_id = ch->channel_id;
  uint64_t now = gn_now_mono_ms(), started = ch->roll.start_ms;
  double heard_wall;
  gn_heartbeat_last_heard(&ch->hb, &heard_wall);
  gn_topics_t confirmed = {0};
  double expires = ch->roll.expires_wall_ms;
  uint64_t tok_end = ch->roll.token_end_ms, tok_gen = ch->roll.token_gen;
  int renewal = ch->roll.renewal;
  ch->renew_roll = 0;
  free(ch->connect_uri);
  /* The old socket is read until the server closes it (rollover.c): what it was already sent
   * still arrives; what both deliver arrives once. */
  gn_roll_take(&ch->roll, &ch->conn, &ch->channel_id, &ch->connect_uri, &confirmed, old, old_id,
               heard_wall);
  gn_conn_set_cbs(ch->conn, &gn_ch_conn_cbs, ch);
  gn_subs_adopt(&ch->subs, &confirmed);
  ch->hard_next = 0;
  gn_renew_created(&ch->renew, expires, tok_end, tok_gen);
  if (renewal) {
    GN_COUNT(ch->env, renewal_rollovers);
    gn_ch_health(ch, "renewal",
                 json_pack("{s:s, s:s, s:s, s:f}", "event", "rollover", "from",
                           old_id ? old_id : "", "channel_id", gn_ch_chan_id(ch), "expires_in_ms",
                           (double)(gn_renew_end(&ch->renew) - gn_now_mono_ms())));
  }
  gn_ch_health(ch, "rollover",
               json_pack("{s:s, s:s, s:s, s:f, s:b}", "event", "completed", "from",
                         old_id ? old_id : "", "to", gn_ch_chan_id(ch), "elapsed_ms",
                         (double)(now - started), "gap", old == NULL));
  free(old_id);
  gn_ch_spare_check(ch);
  if (old) {
    gn_heartbeat_watch(&ch->hb, ch->conn);
    GN_COUNT(ch->env, rollovers);
    gn_ch_enter(ch, GN_ST_OPEN);
    gn_ch_put_live(ch); /* a change that came during the rollover */
    return;
  }
  /* The old socket had already gone: this is a reconnect like any other. */
  ch->attempt_start_ms = (double)started;
  ch->attempt_hard = 1;
  GN_COUNT(ch->env, attempts);
  GN_COUNT(ch->env, rollovers);
  opened(ch); /* connected + restored, as after any reconnect */
}

/* The rollover could not finish (rollover.c's failure callback, or a token it could not get). */
void gn_ch_roll_failed(void *ud, const char *msg) {
  gn_channel_t *ch = ud;
  gn_roll_cancel(&ch->roll);
  ch->renew_roll = 0;
  gn_ch_spare_check(ch);
  ch->hard_next = 1; /* the old channel is going away: the next attempt makes a new one */
  gn_ch_health(ch, "rollover",
               json_pack("{s:s, s:s, s:s}", "event", "failed", "error", msg ? msg : "",
                         "channel_id", gn_ch_chan_id(ch)));
  if (ch->conn) {
    gn_ch_enter(ch, GN_ST_OPEN); /* the old socket still delivers */
    return;
  }
  /* The old socket is already gone: the ordinary reconnect takes over. */
  gn_ch_enter(ch, GN_ST_BACKOFF);
  gn_ch_fail_and_schedule(ch, GN_REASON_CLOSE, -1, "socket_closing");
}

const gn_roll_hooks_t gn_ch_roll_hooks = {roll_take_over, gn_ch_roll_failed};

/* The live socket's callbacks (a rollover's sockets have their own: rollover.c). */
static void conn_open_cb(void *ud, gn_conn_t *conn) { opened(ud); }

static void conn_message_cb(void *ud, gn_conn_t *conn, const char *data, size_t len,
                            int binary) {
  gn_channel_t *ch = ud;
  const char *chan = gn_ch_chan_id(ch);
  gn_heartbeat_heard(&ch->hb);
  gn_msg_t m;
  switch (gn_msg_classify(data, len, binary, &m)) {
  case GN_MSG_MALFORMED:
  case GN_MSG_HEARTBEAT:
    gn_env_note(ch->env, &m, len); /* counted (malformed ones reported too) */
    break;
  case GN_MSG_CHANNEL_GONE: /* the close follows */
    ch->hard_next = 1;
    gn_ch_health(ch, "channel_gone",
                 json_pack("{s:s, s:s}", "channel_id", gn_ch_chan_id(ch), "reason", m.reason));
    /* Gone well before its end, and not said to have expired: evicted (or deleted). */
    if (gn_renew_early_end(&ch->renew) && !strcasestr(m.reason, "expire")) {
      GN_COUNT(ch->env, evictions);
      if (ch->env->budget_note)
        ch->env->budget_note(ch->env->spare_ud, GN_NOTE_EVICTED, gn_ch_chan_id(ch));
    }
    gn_renew_forget(&ch->renew);
    break;
  case GN_MSG_SOCKET_CLOSING:
    /* The server will close this socket soon: open the replacement before it does. */
    gn_ch_health(ch, "socket_closing", json_pack("{s:s}", "channel_id", chan));
    if (gn_ch_state(ch) == GN_ST_OPEN) gn_ch_start_rollover(ch);
    break;
  case GN_MSG_EVENT:
    /* Once, even when both sockets of a rollover deliver it. */
    if (gn_roll_seen(&ch->roll, m.correlation_id, gn_now_mono_ms(), conn))
      GN_COUNT(ch->env, duplicates);
    else if (gn_env_deliver(ch->env, &m, chan, data, len))
      gn_flow_event(&ch->flow, conn);
    break;
  }
  gn_msg_clear(&m);
}

static void conn_close_cb(void *ud, gn_conn_t *conn, const gn_close_info_t *info) {
  gn_channel_t *ch = ud;
  ch->conn = NULL;
  if (gn_ch_state(ch) == GN_ST_ROLLOVER) {
    /* The old socket went before the replacement was ready: deaf until it is. */
    gn_ch_went_deaf(ch);
    GN_COUNT(ch->env, disconnects);
    gn_ch_enter(ch, GN_ST_CONNECT);
    gn_ch_health(ch, "disconnected",
                 json_pack("{s:s, s:i, s:s, s:s, s:I}", "reason", "socket_closing", "code",
                           info->code, "error", info->error, "channel_id", gn_ch_chan_id(ch),
                           "connection_id", (json_int_t)ch->connection_id));
    return;
  }
  if (gn_ch_state(ch) == GN_ST_OPEN) {
    gn_ch_went_deaf(ch);
    const char *reason = info->oversize ? "oversize" : info->code != 1006 ? "closed" : "lost";
    json_t *f = json_pack("{s:s, s:i, s:s, s:s, s:I}", "reason", reason, "code", info->code,
                          "error", info->error, "channel_id", gn_ch_chan_id(ch), "connection_id",
                          (json_int_t)ch->connection_id);
    if (f && info->reason[0]) json_object_set_new(f, "close_reason", json_string(info->reason));
    if (info->oversize)
      gn_ch_health(ch, "oversize",
                   json_pack("{s:s, s:I}", "error", info->error, "limit",
                             (json_int_t)ch->env->conf->max_message));
    GN_COUNT(ch->env, disconnects);
    gn_ch_enter(ch, GN_ST_BACKOFF);
    gn_ch_health(ch, "disconnected", f);
    gn_ch_fail_and_schedule(ch, info->code == 1006 ? GN_REASON_ERROR : GN_REASON_CLOSE, -1, reason);
    return;
  }
  /* The attempt's connect or handshake failed. */
  gn_rest_failure_t f;
  gn_rest_handshake_failure(info, &f);
  if (f.verdict == GN_REST_AUTH && ch->auth_retried) {
    gn_ch_final_failure(ch, "auth",
                        "the stream refused the handshake with 401 after a token refresh");
    return;
  }
  if (f.verdict == GN_REST_FORBIDDEN) {
    gn_ch_final_failure(ch, "forbidden", "the stream refused the handshake with 403");
    return;
  }
  if (f.verdict == GN_REST_AUTH) {
    /* One refresh: the next attempt makes a new channel with a new token. */
    ch->auth_retried = 1;
    gn_token_invalidate(ch->env->tok, ch->bearer.gen);
  }
  if (f.gone) ch->hard_next = 1;
  /* A connectUri can go bad: one that keeps failing is left for a new channel. */
  if (!f.status && ++ch->connect_failures >= 3) ch->hard_next = 1;
  json_t *fields = json_pack("{s:s, s:s}", "error", info->error, "stage", info->stage);
  if (fields && f.status) json_object_set_new(fields, "status", json_integer(f.status));
  if (fields && info->proxy_status) gn_ch_proxy_fields(fields, info->proxy_status);
  gn_ch_attempt_failed(ch, f.reason, f.why, -1, fields);
}

/* The heartbeat watchdog found the live link dead. */
void gn_ch_link_dead(void *ud) {
  gn_channel_t *ch = ud;
  const gn_conf_t *conf = ch->env->conf;
  if (!gn_ch_is_live(gn_ch_state(ch)) || !ch->conn) return;
  /* Dead link: nothing came back, not even the pong. */
  gn_roll_abort_all(&ch->roll);
  gn_ch_spare_check(ch);
  gn_conn_abort(ch->conn);
  ch->conn = NULL;
  gn_ch_went_deaf(ch);
  GN_COUNT(ch->env, disconnects);
  gn_ch_enter(ch, GN_ST_BACKOFF);
  char msg[128];
  snprintf(msg, sizeof msg, "no message for %ld ms and no answer to a ping within %ld ms",
           conf->idle_ms, conf->ping_timeout_ms);
  gn_ch_health(ch, "disconnected",
               json_pack("{s:s, s:i, s:s, s:s}", "reason", "heartbeat_timeout", "code", 1006,
                         "error", msg, "channel_id", gn_ch_chan_id(ch)));
  gn_ch_fail_and_schedule(ch, GN_REASON_TIMEOUT, -1, "heartbeat_timeout");
}

/* ------------------------------------------------------------------------------------------ */
/* live subscription changes (subs.c says what an answer means) */

static void live_put_done(void *ud, const gn_http_result_t *hr) {
  gn_channel_t *ch = ud;
  gn_ch_renewed(ch, hr);
  switch (gn_subs_answer(&ch->subs, ch->channel_id, hr, "updated", 0)) {
  case GN_SUBS_PUT_AGAIN:
    gn_ch_put_live(ch);
    break;
  case GN_SUBS_NEW_TOKEN:
    gn_bearer_refuse(&ch->bearer);
    if (!ch->bearer.waiting && fresh_token(ch, TOKP_LIVE)) gn_ch_put_live(ch);
    break;
  case GN_SUBS_CHANNEL_GONE:
    ch->hard_next = 1;
    break;
  case GN_SUBS_RETRY:  /* gn_ch_subs_retry() comes after the delay */
  case GN_SUBS_FAILED: /* not in a live change */
  case GN_SUBS_DONE:
    break;
  }
}

/* Puts the wanted topics on the live channel when the server does not hold them. */
void gn_ch_put_live(gn_channel_t *ch) {
  if (!ch->channel_id || !gn_ch_is_live(gn_ch_state(ch))) return; /* the attempt will put them */
  if (!gn_subs_needed(&ch->subs)) return;
  if (!fresh_token(ch, TOKP_LIVE)) return; /* put_live runs again when the token is in */
  if (gn_subs_put(&ch->subs, ch->channel_id, ch->bearer.token, live_put_done, ch) != 0)
    gn_subs_retry_later(&ch->subs, "cannot start the subscription request");
}

void gn_ch_subs_retry(void *ud) { gn_ch_put_live(ud); }

/* The channel is due for renewal (channel_int.h): resubscribe, or move to a new channel made with a
 * newer token. A rollover already under way renews it anyway. */
void gn_ch_renew_due(void *ud, int how) {
  gn_channel_t *ch = ud;
  if (gn_ch_state(ch) != GN_ST_OPEN || !ch->conn)
    return; /* an attempt or a rollover makes a new one */
  if (how == GN_RENEW_ROLLOVER) {
    /* The channel ends with its token: B needs a newer one than the one that made it. */
    if (ch->bearer.token && ch->bearer.gen == ch->renew.token_gen)
      gn_token_invalidate(ch->env->tok, ch->bearer.gen);
    ch->renew_roll = 1;
    gn_ch_start_rollover(ch);
    if (!ch->env->spare_waiting) return;
    /* No unit for B yet: resubscribe meanwhile, which is enough where channels do not end with
     * their token (the rollover follows when a unit comes back). */
  }
  gn_renew_asked(&ch->renew);
  ch->subs.fresh = 1; /* put even when the server holds the wanted set */
  gn_ch_put_live(ch);
}

/* ------------------------------------------------------------------------------------------ */
/* the channel's end and its renewal (channel_int.h) */

static void renew_timer_cb(uv_timer_t *t);

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
  uv_timer_start(r->timer, renew_timer_cb, at > now ? at - now : 0, 0);
}

static void renew_timer_cb(uv_timer_t *t) {
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
  if (end > now + 2000) uv_timer_start(r->timer, renew_timer_cb, (end - now) / 2, 0);
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
