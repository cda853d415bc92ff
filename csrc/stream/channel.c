/* channel.c: one channel's connection state machine (see channel.h).
 *
 *   state      what runs                              leaves for
 *   ---------  -------------------------------------  ---------------------------------------
 *   IDLE       nothing yet                            AUTH (start)
 *   AUTH       a token from the shared cache          CHANNEL, or SUBSCRIBE / CONNECT when the
 *                                                     channel lives (a 401 was retried)
 *   CHANNEL    POST channels                          SUBSCRIBE, AUTH (401: one refresh)
 *   SUBSCRIBE  PUT subscriptions (every topic)        CONNECT (after a 400 too), AUTH (401)
 *   CONNECT    DNS, TCP, TLS, WebSocket upgrade       OPEN
 *   OPEN       events; heartbeat watchdog             ROLLOVER (socket_closing), BACKOFF (close,
 *                                                     error, heartbeat missed, reconnect())
 *   ROLLOVER   open, and channel B being made         OPEN (B took over, or B failed while the
 *              (rollover.c)                           old socket lives), CONNECT (the old
 *                                                     socket went first: B is the attempt)
 *   BACKOFF    the backoff timer                      AUTH (hard: the channel is gone) or
 *                                                     CONNECT (soft: same channel)
 *   FAILED     nothing: final                         AUTH / CONNECT (reconnect() starts over)
 *   CLOSED     nothing, for ever
 *   Any attempt state (AUTH..CONNECT) goes to BACKOFF when it fails; any state but CLOSED goes
 *   to FAILED on a final failure (403, bad credentials, 401 after a refresh, give-up) and to
 *   CLOSED on close(). enter() holds every change against this table (the `machine` array).
 *
 * Single flight: every failure goes through gn_sched_trigger(); only the trigger that opens a
 * cycle schedules the attempt; the attempt's outcome closes the cycle (gn_sched_complete). The
 * initial connection is the first cycle, so a reconnect() during it is folded into it.
 *
 * The token (the bearer: oauth.c): what it is wanted for (the attempt, a live subscription change, a
 * rollover) decides where the answer goes (gn_ch_token_ready).
 *
 * The machine is in three files: this one (the table and enter(), BACKOFF and the failures,
 * what the owner asks), channel_attempt.c (the token and the attempt's steps, AUTH to
 * CONNECT) and channel_live.c (the live socket's events, the rollover's start and take-over,
 * live subscription changes, renewal); channel_int.h is what they share.
 *
 * Service thread only, but for gn_channel_new/free/sched.
 */
#include "channel_int.h"
#include "service.h"
#include "gn_util.h"

#include <stdio.h>

/* ------------------------------------------------------------------------------------------ */
/* the machine's table */

#define TO(s) (1u << (s))
/* STANDBY: parked by the lease (lease.h) from wherever the channel was */
#define ATTEMPT_END (TO(GN_ST_BACKOFF) | TO(GN_ST_FAILED) | TO(GN_ST_CLOSED) | TO(GN_ST_STANDBY))
static const unsigned machine[GN_ST_COUNT_] = {
    [GN_ST_IDLE] = TO(GN_ST_AUTH) | TO(GN_ST_FAILED) | TO(GN_ST_CLOSED) | TO(GN_ST_STANDBY),
    [GN_ST_AUTH] = TO(GN_ST_CHANNEL) | TO(GN_ST_SUBSCRIBE) | TO(GN_ST_CONNECT) | ATTEMPT_END,
    [GN_ST_CHANNEL] = TO(GN_ST_SUBSCRIBE) | TO(GN_ST_AUTH) | ATTEMPT_END,
    [GN_ST_SUBSCRIBE] = TO(GN_ST_CONNECT) | TO(GN_ST_AUTH) | ATTEMPT_END,
    [GN_ST_CONNECT] = TO(GN_ST_OPEN) | ATTEMPT_END,
    [GN_ST_OPEN] = TO(GN_ST_ROLLOVER) | ATTEMPT_END,
    [GN_ST_ROLLOVER] = TO(GN_ST_OPEN) | TO(GN_ST_CONNECT) | ATTEMPT_END,
    [GN_ST_BACKOFF] = TO(GN_ST_AUTH) | TO(GN_ST_CONNECT) | ATTEMPT_END,
    [GN_ST_FAILED] = TO(GN_ST_AUTH) | TO(GN_ST_CONNECT) | TO(GN_ST_CLOSED) | TO(GN_ST_STANDBY),
    [GN_ST_CLOSED] = 0,
    [GN_ST_STANDBY] = TO(GN_ST_AUTH) | TO(GN_ST_CONNECT) | TO(GN_ST_FAILED) | TO(GN_ST_CLOSED),
};

gn_state_t gn_ch_state(const gn_channel_t *ch) { return atomic_load(&ch->env->state); }

/* Every change of state goes through here. A change the table does not list is a bug: with
 * GN_STRICT_MACHINE set (the specs set it) the process aborts so a test fails loudly; otherwise
 * it is written to stderr and the machine goes on. */
void gn_ch_enter(gn_channel_t *ch, gn_state_t to) {
  gn_state_t from = gn_ch_state(ch);
  if (from != to && !(machine[from] & TO(to))) {
    fprintf(stderr, "genesys-notify: internal error: state change %s(%d) -> %s(%d) is not in "
            "the machine's table\n", gn_state_name(from), from, gn_state_name(to), to);
    if (getenv("GN_STRICT_MACHINE")) abort();
  }
  atomic_store(&ch->env->state, to);
}

int gn_ch_is_live(gn_state_t s) { return s == GN_ST_OPEN || s == GN_ST_ROLLOVER; }

void gn_ch_health(gn_channel_t *ch, const char *kind, json_t *fields) {
  gn_env_health(ch->env, kind, fields);
}

const char *gn_ch_chan_id(const gn_channel_t *ch) { return ch->channel_id ? ch->channel_id : ""; }

/* Gives the rollovers' units back once none is needed: an old channel counts at the server
 * while its socket lives, so the units come back when the last draining socket is gone (and
 * our close had time to reach the server), not when B takes over (rollover.c gives those back
 * itself when its own sockets end). */
void gn_ch_spare_check(gn_channel_t *ch) { gn_roll_give_units(&ch->roll, 0); }

void gn_ch_drop_channel(gn_channel_t *ch) {
  free(ch->channel_id);
  free(ch->connect_uri);
  ch->channel_id = ch->connect_uri = NULL;
}

double gn_channel_heard(gn_channel_t *ch) {
  if (!ch->hb.heard_ms) return -1;
  double wall;
  gn_heartbeat_last_heard(&ch->hb, &wall);
  return wall;
}

/* The live connection is gone (whatever the cause): deaf since its last message. */
void gn_ch_went_deaf(gn_channel_t *ch) {
  double wall;
  uint64_t heard = gn_heartbeat_last_heard(&ch->hb, &wall);
  gn_heartbeat_stop(&ch->hb);
  gn_gap_deaf(&ch->gap, ch->env->metrics, heard, wall);
}

static void schedule_attempt(gn_channel_t *ch, gn_reason_t why, double retry_after_ms,
                             const char *reason);

/* ------------------------------------------------------------------------------------------ */
/* BACKOFF: failures, the attempt record, the timer, the policy hook */

static void backoff_done(void *ud) { gn_ch_run_attempt(ud); }

static void schedule_attempt(gn_channel_t *ch, gn_reason_t why, double retry_after_ms,
                             const char *reason) {
  double delay;
  const char *code;
  char msg[200];
  if (gn_retry_next(&ch->retry, retry_after_ms, reason, &delay, &code, msg, sizeof msg) != 0) {
    gn_ch_final_failure(ch, code, msg);
    return;
  }
  json_t *rec = gn_retry_record(ch->connection_id, ch->retry.bo.attempt, delay, reason, why,
                                ch->hard_next || !ch->channel_id, retry_after_ms);
  gn_ch_enter(ch, GN_ST_BACKOFF);
  json_t *copy = ch->env->conf->has_policy && rec ? json_deep_copy(rec) : NULL;
  gn_ch_health(ch, "attempt", rec);
  uint64_t seq = gn_retry_arm(&ch->retry, delay, retry_after_ms);
  /* The hook sees the same record; the engine's delay runs until it answers. */
  /* The item names the pool's channel too (the answer comes back to the client). */
  if (copy)
    gn_queue_add(ch->env->queue, GN_ITEM_POLICY, copy, (seq << 5) | (uint64_t)ch->env->index);
}

void gn_channel_policy(gn_channel_t *ch, uint64_t seq, double d) {
  char msg[160];
  switch (gn_retry_answer(&ch->retry, seq, d, msg, sizeof msg)) {
  case GN_RETRY_GIVE_UP:
    gn_ch_final_failure(ch, "policy", "the policy hook gave up");
    break;
  case GN_RETRY_REFUSED:
    gn_ch_health(ch, "policy",
                 json_pack("{s:s, s:s, s:f}", "event", "rejected", "error", msg, "delay_ms", d));
    break;
  case GN_RETRY_APPLIED:
    gn_ch_health(ch, "policy",
                 json_pack("{s:s, s:f, s:i}", "event", "applied", "delay_ms", d, "attempt",
                           (int)ch->retry.bo.attempt));
    break;
  case GN_RETRY_STALE:
    break;
  }
}

void gn_ch_fail_and_schedule(gn_channel_t *ch, gn_reason_t why, double retry_after_ms,
                              const char *reason) {
  if (!gn_sched_trigger(&ch->sched, why)) return; /* folded into the cycle already open */
  schedule_attempt(ch, why, retry_after_ms, reason);
}

static void cancel_attempt_io(gn_channel_t *ch) {
  if (ch->req) gn_http_cancel(ch->req);
  ch->req = NULL;
  if (ch->conn) gn_conn_abort(ch->conn);
  ch->conn = NULL;
  gn_bearer_cancel_wait(&ch->bearer);
}

void gn_ch_attempt_failed(gn_channel_t *ch, const char *reason, gn_reason_t why,
                           double retry_after_ms, json_t *fields) {
  cancel_attempt_io(ch);
  ch->in_attempt = 0;
  gn_gap_attempt_failed(&ch->gap, (uint64_t)ch->attempt_start_ms);
  if (!fields) fields = json_object();
  if (fields) {
    json_object_set_new(fields, "reason", json_string(reason));
    json_object_set_new(fields, "attempt", json_integer(ch->retry.bo.attempt));
    json_object_set_new(fields, "new_channel", json_boolean(ch->attempt_hard));
  }
  GN_COUNT(ch->env, failures);
  gn_ch_enter(ch, GN_ST_BACKOFF);
  gn_ch_health(ch, "failed", fields);
  if (gn_sched_open(&ch->sched)) gn_sched_complete(&ch->sched, 0);
  gn_ch_fail_and_schedule(ch, why, retry_after_ms, reason);
}

void gn_ch_final_failure(gn_channel_t *ch, const char *code, const char *msg) {
  gn_roll_abort_all(&ch->roll);
  gn_ch_spare_check(ch);
  cancel_attempt_io(ch);
  gn_heartbeat_stop(&ch->hb);
  gn_gap_not_open(&ch->gap, ch->env->metrics);
  gn_retry_disarm(&ch->retry);
  ch->in_attempt = 0;
  gn_ch_enter(ch, GN_ST_FAILED);
  gn_ch_health(ch, "gave_up",
               json_pack("{s:s, s:s, s:i}", "reason", code, "error", msg, "attempts",
                         (int)ch->retry.bo.attempt));
  if (gn_sched_open(&ch->sched)) gn_sched_complete(&ch->sched, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* what the owner asks (through tasks of the client) */

gn_channel_t *gn_channel_new(gn_env_t *env, char *err, size_t errlen) {
  gn_channel_t *ch = calloc(1, sizeof *ch);
  if (!ch) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  ch->env = env;
  gn_sched_init(&ch->sched);
  gn_bearer_init(&ch->bearer, env, gn_ch_token_ready, ch);
  gn_roll_init(&ch->roll, env, &gn_ch_roll_hooks, ch);
  ch->roll.drain_ms = env->conf->renew.drain_ms;
  gn_renew_init(&ch->renew, &env->conf->renew, gn_ch_renew_due, ch);
  if (gn_retry_init(&ch->retry, &env->conf->backoff, err, errlen) != 0 ||
      gn_subs_init(&ch->subs, env, gn_ch_subs_retry, ch, err, errlen) != 0) {
    free(ch);
    return NULL;
  }
  return ch;
}

void gn_channel_free(gn_channel_t *ch) {
  if (!ch) return;
  gn_subs_free(&ch->subs);
  gn_roll_cancel(&ch->roll);
  gn_ch_drop_channel(ch);
  gn_bearer_free(&ch->bearer);
  free(ch);
}

gn_sched_t *gn_channel_sched(gn_channel_t *ch) { return &ch->sched; }

void gn_channel_start(gn_channel_t *ch) {
  uv_loop_t *loop = gn_service_loop(ch->env->svc);
  const gn_conf_t *conf = ch->env->conf;
  if (gn_retry_start(&ch->retry, loop, backoff_done, ch) != 0 ||
      gn_subs_start(&ch->subs, loop) != 0 || gn_roll_start(&ch->roll, loop) != 0 ||
      gn_renew_start(&ch->renew, loop) != 0 ||
      gn_heartbeat_init(&ch->hb, loop, conf->idle_ms, conf->ping_timeout_ms, gn_ch_link_dead, ch) !=
          0 ||
      gn_flow_start(&ch->flow, ch->env, loop, &ch->hb, &ch->conn) != 0) {
    gn_ch_final_failure(ch, "memory", "out of memory");
    return;
  }
  gn_bearer_start(&ch->bearer);
  pthread_mutex_lock(&ch->env->metrics->mu);
  ch->env->metrics->started_ms = gn_now_mono_ms();
  pthread_mutex_unlock(&ch->env->metrics->mu);
  gn_ch_run_attempt(ch);
}

/* Everything of gn_channel_stop but the final state. unit: the channel's own unit of the
 * budget goes with its socket, if any, to env->unit_on_gone. Returns 1 when it went. */
static int halt(gn_channel_t *ch, int unit) {
  gn_roll_close(&ch->roll);
  gn_renew_close(&ch->renew);
  gn_roll_give_units(&ch->roll, 1);
  /* The server counts the socket as connected until it has seen our close or abort. */
  int handed = unit && ch->conn && ch->env->unit_on_gone;
  if (handed) ch->env->unit_on_gone(ch->env->spare_ud, ch->conn);
  /* The live socket ends with a close frame (the server sees it at once; an abort waits for
   * the loop's next event on that socket, which an idle one may not have for a while). */
  if (ch->conn && gn_ch_is_live(gn_ch_state(ch)))
    gn_conn_close(ch->conn, 1000, "client closed");
  else if (ch->conn) gn_conn_abort(ch->conn);
  ch->conn = NULL;
  cancel_attempt_io(ch);
  gn_subs_close(&ch->subs);
  gn_retry_close(&ch->retry);
  gn_heartbeat_close(&ch->hb);
  gn_flow_close(&ch->flow);
  gn_bearer_stop(&ch->bearer);
  return handed;
}

int gn_channel_stop_unit(gn_channel_t *ch, int unit) {
  int handed = halt(ch, unit);
  gn_ch_enter(ch, GN_ST_CLOSED);
  if (gn_sched_open(&ch->sched)) gn_sched_complete(&ch->sched, 0);
  return handed;
}

void gn_channel_stop(gn_channel_t *ch) { gn_channel_stop_unit(ch, 0); }

void gn_channel_park(gn_channel_t *ch) {
  gn_state_t st = gn_ch_state(ch);
  if (st == GN_ST_CLOSED) return;
  if (st != GN_ST_IDLE && st != GN_ST_STANDBY) {
    if (gn_ch_is_live(st)) gn_ch_went_deaf(ch);
    halt(ch, 0);
    ch->in_attempt = 0;
  }
  gn_ch_enter(ch, GN_ST_STANDBY);
  if (gn_sched_open(&ch->sched)) gn_sched_complete(&ch->sched, 0);
}

void gn_channel_reconnect(gn_channel_t *ch) {
  gn_state_t st = gn_ch_state(ch);
  if (ch->roll.active && !ch->conn) {
    /* A rollover with the old socket gone is the attempt already under way. */
    gn_sched_complete(&ch->sched, 0);
    return;
  }
  gn_roll_abort_all(&ch->roll);
  gn_ch_spare_check(ch);
  if (gn_ch_is_live(st)) {
    if (ch->conn) gn_conn_close(ch->conn, 1000, "reconnect requested");
    ch->conn = NULL;
    gn_ch_went_deaf(ch);
    gn_ch_enter(ch, GN_ST_BACKOFF);
    gn_ch_health(ch, "disconnected",
                 json_pack("{s:s, s:i, s:s, s:s}", "reason", "manual", "code", 1000, "error",
                           "client:reconnect() was called", "channel_id", gn_ch_chan_id(ch)));
    schedule_attempt(ch, GN_REASON_MANUAL, -1, "manual");
  } else if (st == GN_ST_FAILED) {
    /* A final failure: the application asks to start over with a fresh history. */
    gn_backoff_reset(&ch->retry.bo);
    ch->auth_retried = 0;
    gn_ch_run_attempt(ch);
  } else if (st == GN_ST_CLOSED || st == GN_ST_IDLE || st == GN_ST_STANDBY) {
    gn_sched_complete(&ch->sched, 0);
  } else if (!ch->in_attempt && !ch->retry.armed) {
    schedule_attempt(ch, GN_REASON_MANUAL, -1, "manual");
  } else {
    /* Something already runs for this failure: nothing to add. */
    gn_sched_complete(&ch->sched, 0);
  }
}

void gn_channel_room(gn_channel_t *ch) { gn_flow_room(&ch->flow); }

void gn_channel_spare_freed(gn_channel_t *ch) {
  if (ch->env->spare_waiting && ch->conn && gn_ch_state(ch) == GN_ST_OPEN) gn_ch_start_rollover(ch);
}

void gn_channel_spare_wanted(gn_channel_t *ch) {
  if (gn_roll_release(&ch->roll)) gn_ch_spare_check(ch);
}

void gn_channel_topics_changed(gn_channel_t *ch) {
  gn_subs_changed(&ch->subs);
  gn_ch_put_live(ch);
}
