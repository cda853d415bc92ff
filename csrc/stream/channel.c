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
 * The token (bearer.c): what it is wanted for (the attempt, a live subscription change, a
 * rollover) decides where the answer goes (token_ready).
 *
 * Service thread only, but for gn_channel_new/free/sched.
 */
#include "channel.h"
#include "bearer.h"
#include "flow.h"
#include "gap.h"
#include "heartbeat.h"
#include "message.h"
#include "oauth.h"
#include "renew.h"
#include "rest.h"
#include "retry.h"
#include "rollover.h"
#include "service.h"
#include "subs.h"
#include "gn_util.h"

#include <stdio.h>

enum { TOKP_ATTEMPT = 0, TOKP_LIVE, TOKP_ROLL };

struct gn_channel {
  gn_env_t *env;
  gn_sched_t sched;            /* shared with the owner (atomics) */

  gn_bearer_t bearer;          /* the token, and the wait for one */
  int auth_retried;            /* one token refresh per chain of 401s */

  char *channel_id, *connect_uri;
  int hard_next;               /* the channel is gone: the next attempt creates one */
  int connect_failures;        /* in a row on this channel's connectUri */
  gn_subs_t subs;
  gn_roll_t roll;
  gn_http_req_t *req;          /* the attempt's REST call */
  gn_conn_t *conn;             /* the live (or connecting) socket */
  gn_heartbeat_t hb;           /* the live socket's watchdog */
  gn_flow_t flow;              /* overflow = "pause": reading stops while the queue is full */

  gn_retry_t retry;             /* BACKOFF: delay, record, timer, policy hook */
  int in_attempt;
  uint64_t attempt_start_ms;
  int attempt_hard;
  uint64_t connection_id;
  gn_gap_t gap;                /* the deaf interval */
  gn_renew_t renew;            /* the channel's end and its renewal (renew.h) */
  int renew_roll;              /* the rollover under way (or waiting) is a renewal */
  int roll_waiting;            /* a socket_closing notice waits for that unit */
};

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

static gn_state_t state(const gn_channel_t *ch) { return atomic_load(&ch->env->state); }

/* Every change of state goes through here. A change the table does not list is a bug: with
 * GN_STRICT_MACHINE set (the specs set it) the process aborts so a test fails loudly; otherwise
 * it is written to stderr and the machine goes on. */
static void enter(gn_channel_t *ch, gn_state_t to) {
  gn_state_t from = state(ch);
  if (from != to && !(machine[from] & TO(to))) {
    fprintf(stderr, "genesys-notify: internal error: state change %s(%d) -> %s(%d) is not in "
            "the machine's table\n", gn_state_name(from), from, gn_state_name(to), to);
    if (getenv("GN_STRICT_MACHINE")) abort();
  }
  atomic_store(&ch->env->state, to);
}

static int is_live(gn_state_t s) { return s == GN_ST_OPEN || s == GN_ST_ROLLOVER; }

static void health(gn_channel_t *ch, const char *kind, json_t *fields) {
  gn_env_health(ch->env, kind, fields);
}

static const char *chan_id(const gn_channel_t *ch) { return ch->channel_id ? ch->channel_id : ""; }

/* ------------------------------------------------------------------------------------------ */
/* forward declarations: the steps call each other in the machine's order */

static void run_attempt(gn_channel_t *ch);
static void step_token(gn_channel_t *ch);
static void step_channel(gn_channel_t *ch);
static void step_subscribe(gn_channel_t *ch);
static void step_connect(gn_channel_t *ch);
static void attempt_failed(gn_channel_t *ch, const char *reason, gn_reason_t why,
                           double retry_after_ms, json_t *fields);
static void fail_and_schedule(gn_channel_t *ch, gn_reason_t why, double retry_after_ms,
                              const char *reason);
static void schedule_attempt(gn_channel_t *ch, gn_reason_t why, double retry_after_ms,
                             const char *reason);
static void final_failure(gn_channel_t *ch, const char *code, const char *msg);
static void proxy_fields(json_t *fields, long status);
static void put_live(gn_channel_t *ch);
static void roll_failed(void *ud, const char *msg);
static void conn_open_cb(void *ud, gn_conn_t *conn);
static void conn_message_cb(void *ud, gn_conn_t *conn, const char *data, size_t len, int binary);
static void conn_close_cb(void *ud, gn_conn_t *conn, const gn_close_info_t *info);
static const gn_conn_cbs_t conn_cbs = {conn_open_cb, conn_message_cb, conn_close_cb};

/* Gives the rollovers' units back once none is needed: an old channel counts at the server
 * while its socket lives, so the units come back when the last draining socket is gone (and
 * our close had time to reach the server), not when B takes over (rollover.c gives those back
 * itself when its own sockets end). */
static void spare_check(gn_channel_t *ch) { gn_roll_give_units(&ch->roll, 0); }

static void drop_channel(gn_channel_t *ch) {
  free(ch->channel_id);
  free(ch->connect_uri);
  ch->channel_id = ch->connect_uri = NULL;
}

/* The live connection is gone (whatever the cause): deaf since its last message. */
static void went_deaf(gn_channel_t *ch) {
  double wall;
  uint64_t heard = gn_heartbeat_last_heard(&ch->hb, &wall);
  gn_heartbeat_stop(&ch->hb);
  gn_gap_deaf(&ch->gap, ch->env->metrics, heard, wall);
}

/* ------------------------------------------------------------------------------------------ */
/* the token */

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
    health(ch, "subscription", json_pack("{s:s, s:s}", "event", "failed", "error", r.error));
  else if (ch->roll.active)
    roll_failed(ch, r.error);
  gn_token_result_clear(&r);
  return ok;
}

/* The token a live subscription change waited for. */
static void live_token(gn_channel_t *ch, gn_token_result_t *r) {
  if (r->kind == GN_TOK_AGAIN) {
    if (fresh_token(ch, TOKP_LIVE)) put_live(ch);
  } else if (r->kind != GN_TOK_OK) {
    health(ch, "subscription", json_pack("{s:s, s:s}", "event", "failed", "error", r->error));
  } else {
    gn_bearer_adopt(&ch->bearer, r);
    put_live(ch);
  }
}

/* The token a rollover waited for. */
static void roll_token(gn_channel_t *ch, gn_token_result_t *r) {
  if (r->kind == GN_TOK_AGAIN) {
    if (fresh_token(ch, TOKP_ROLL)) gn_roll_post(&ch->roll, ch->bearer.token, ch->bearer.gen, ch->bearer.expires_ms);
  } else if (r->kind == GN_TOK_OK) {
    gn_bearer_adopt(&ch->bearer, r);
    gn_roll_post(&ch->roll, ch->bearer.token, ch->bearer.gen, ch->bearer.expires_ms);
  } else if (ch->roll.active) {
    roll_failed(ch, r->error);
  }
}

/* The token the attempt waited for: the AUTH step's outcome. */
static void attempt_token(gn_channel_t *ch, gn_token_result_t *r) {
  switch (r->kind) {
  case GN_TOK_OK:
    gn_bearer_adopt(&ch->bearer, r);
    if (!ch->channel_id) step_channel(ch);
    else step_subscribe(ch);
    break;
  case GN_TOK_AUTH:
    health(ch, "token", json_pack("{s:s, s:s, s:i}", "event", "refused", "error", r->error,
                                  "status", (int)r->status));
    final_failure(ch, "auth", r->error);
    break;
  case GN_TOK_FORBIDDEN:
    final_failure(ch, "forbidden", r->error);
    break;
  case GN_TOK_RATE:
  case GN_TOK_RETRY: {
    json_t *f = json_pack("{s:s, s:i}", "error", r->error, "status", (int)r->status);
    if (f && r->proxy) proxy_fields(f, r->proxy_status);
    if (f && r->retry_after_ms >= 0)
      json_object_set_new(f, "retry_after_ms", json_real(r->retry_after_ms));
    if (f && r->tls) json_object_set_new(f, "tls", json_true());
    json_t *t = json_pack("{s:s, s:s, s:i}", "event", "failed", "error", r->error, "status",
                          (int)r->status);
    if (t && r->proxy) proxy_fields(t, r->proxy_status);
    health(ch, "token", t);
    attempt_failed(ch, r->kind == GN_TOK_RATE ? "rate_limited" : r->proxy ? "proxy"
                       : r->tls ? "tls" : "token",
                   GN_REASON_ERROR, r->retry_after_ms, f);
    break;
  }
  case GN_TOK_AGAIN:
    step_token(ch);
    break;
  }
}

/* A token result, sent where its purpose says (the caller clears it). */
static void token_ready(void *ud, int purpose, gn_token_result_t *r) {
  gn_channel_t *ch = ud;
  if (purpose == TOKP_LIVE) live_token(ch, r);
  else if (purpose == TOKP_ROLL) roll_token(ch, r);
  else attempt_token(ch, r);
}

/* ------------------------------------------------------------------------------------------ */
/* the attempt: AUTH -> CHANNEL -> SUBSCRIBE -> CONNECT */

static void run_attempt(gn_channel_t *ch) {
  ch->in_attempt = 1;
  ch->attempt_start_ms = gn_now_mono_ms();
  ch->attempt_hard = ch->hard_next || !ch->channel_id;
  GN_COUNT(ch->env, attempts);
  if (ch->attempt_hard) {
    drop_channel(ch);
    gn_subs_new_channel(&ch->subs);
    step_token(ch);
  } else {
    step_connect(ch);
  }
}

static void step_token(gn_channel_t *ch) {
  enter(ch, GN_ST_AUTH);
  gn_token_result_t r;
  /* The attempt takes over a wait of a live change or a rollover: its result is used here. */
  if (gn_bearer_ask(&ch->bearer, TOKP_ATTEMPT, &r)) {
    attempt_token(ch, &r);
    gn_token_result_clear(&r);
  }
}

/* Marks a failure as the proxy's: stage "proxy" and the proxy's refusal status when known. */
static void proxy_fields(json_t *fields, long status) {
  json_object_set_new(fields, "stage", json_string("proxy"));
  if (status) json_object_set_new(fields, "status", json_integer(status));
}

/* A REST answer of the attempt that is not a success. */
static void rest_failure(gn_channel_t *ch, const char *what, const gn_http_result_t *hr) {
  gn_rest_failure_t f;
  gn_rest_failure(hr, what, &f);
  if (hr->error) {
    json_t *fields = json_pack("{s:s}", "error", f.error);
    if (fields && hr->proxy) proxy_fields(fields, hr->proxy_status);
    attempt_failed(ch, f.reason, f.why, -1, fields);
    return;
  }
  if (f.verdict == GN_REST_AUTH) {
    if (!ch->auth_retried) {
      /* The token was refused: one refresh, then the attempt goes on. */
      ch->auth_retried = 1;
      gn_bearer_refuse(&ch->bearer);
      health(ch, "token", json_pack("{s:s, s:s}", "event", "rejected", "error", f.error));
      step_token(ch);
      return;
    }
    final_failure(ch, "auth", "the API refused a freshly issued token (401 twice); check the "
                              "OAuth client's permissions");
    return;
  }
  if (f.verdict == GN_REST_FORBIDDEN) {
    final_failure(ch, "forbidden", f.error);
    return;
  }
  json_t *fields = json_pack("{s:s, s:i}", "error", f.error, "status", (int)f.status);
  if (fields && f.header_retry_after_ms >= 0)
    json_object_set_new(fields, "retry_after_ms", json_real(f.header_retry_after_ms));
  if (f.gone) ch->hard_next = 1;
  attempt_failed(ch, f.reason, f.why, f.retry_after_ms, fields);
}

static void channel_done(void *ud, const gn_http_result_t *hr) {
  gn_channel_t *ch = ud;
  ch->req = NULL;
  if (hr->error || (hr->status != 200 && hr->status != 201)) {
    rest_failure(ch, "channel creation", hr);
    return;
  }
  char *id, *uri;
  int rc = gn_rest_channel_answer(hr, &id, &uri);
  if (rc != 0) {
    attempt_failed(ch, rc == -2 ? "memory" : "protocol", GN_REASON_ERROR, -1,
                   rc == -2   ? NULL
                   : rc == -3 ? json_pack("{s:s}", "error", GN_BAD_CHANNEL_ID)
                              : json_pack("{s:s}", "error", "channel creation answered "
                                                            "without id and connectUri"));
    return;
  }
  drop_channel(ch);
  ch->channel_id = id;
  ch->connect_uri = uri;
  ch->hard_next = ch->connect_failures = 0;
  gn_renew_created(&ch->renew, gn_rest_channel_expires(hr), ch->bearer.expires_ms, ch->bearer.gen);
  if (ch->env->budget_note) ch->env->budget_note(ch->env->spare_ud, GN_NOTE_CREATED, id);
  gn_subs_new_channel(&ch->subs);
  step_subscribe(ch);
}

static void step_channel(gn_channel_t *ch) {
  enter(ch, GN_ST_CHANNEL);
  if (ch->env->budget_note && !ch->env->budget_note(ch->env->spare_ud, GN_NOTE_MAY_CREATE, NULL)) {
    /* The server evicted a live channel below the budget: no new one until we hold fewer. */
    attempt_failed(ch, "channel_budget", GN_REASON_ERROR, -1,
                   json_pack("{s:s}", "error", "the server's channel limit is below the channels "
                             "this credential holds (a live channel was evicted): waiting for one "
                             "to close"));
    return;
  }
  ch->req = gn_rest_create_channel(gn_service_http(ch->env->svc), ch->env->conf, ch->bearer.token,
                                   channel_done, ch);
  if (!ch->req)
    attempt_failed(ch, "http", GN_REASON_ERROR, -1,
                   json_pack("{s:s}", "error", "cannot start the channel request"));
}

/* A subscription request succeeded: the channel lives its lifetime from when it was sent. */
static void renewed(gn_channel_t *ch, const gn_http_result_t *hr) {
  if (!gn_rest_ok(hr) || !gn_renew_subscribed(&ch->renew, ch->subs.sent_ms)) return;
  GN_COUNT(ch->env, renewals);
  health(ch, "renewal", json_pack("{s:s, s:s, s:f}", "event", "resubscribed", "channel_id",
                                  chan_id(ch), "expires_in_ms",
                                  (double)(gn_renew_end(&ch->renew) - gn_now_mono_ms())));
}

static void subscribe_done(void *ud, const gn_http_result_t *hr) {
  gn_channel_t *ch = ud;
  renewed(ch, hr);
  /* A refused list (400/413) blames the topics new in it and the attempt connects anyway; a
   * topic added meanwhile is put once the socket is open. */
  if (gn_subs_answer(&ch->subs, ch->channel_id, hr, "subscribed", 1) == GN_SUBS_FAILED)
    rest_failure(ch, "topic subscription", hr);
  else
    step_connect(ch);
}

static void step_subscribe(gn_channel_t *ch) {
  if (!gn_subs_needed(&ch->subs)) {
    step_connect(ch);
    return;
  }
  enter(ch, GN_ST_SUBSCRIBE);
  if (gn_subs_put(&ch->subs, ch->channel_id, ch->bearer.token, subscribe_done, ch) != 0)
    attempt_failed(ch, "http", GN_REASON_ERROR, -1,
                   json_pack("{s:s}", "error", "cannot start the subscription request"));
}

static void step_connect(gn_channel_t *ch) {
  enter(ch, GN_ST_CONNECT);
  char err[256] = "";
  ch->conn = gn_env_open_conn(ch->env, ch->connect_uri, &conn_cbs, ch, err, sizeof err);
  if (!ch->conn) {
    ch->hard_next = 1;
    attempt_failed(ch, "connect", GN_REASON_ERROR, -1, json_pack("{s:s}", "error", err));
  }
}

/* ------------------------------------------------------------------------------------------ */
/* OPEN: the socket delivers */

/* The attempt's socket is open (or a rollover's, when the old socket went first). */
static void opened(gn_channel_t *ch) {
  uint64_t now = gn_now_mono_ms();
  double latency = (double)(now - ch->attempt_start_ms);
  enter(ch, GN_ST_OPEN);
  ch->in_attempt = ch->auth_retried = ch->connect_failures = ch->roll_waiting = 0;
  ch->connection_id++;
  uint32_t attempt_no = ch->retry.bo.attempt;
  gn_gap_opened(&ch->gap, ch->env->metrics, now);
  gn_metrics_add_latency(ch->env->metrics, latency);
  if (gn_conn_tls_resumed(ch->conn)) GN_COUNT(ch->env, tls_resumed);
  /* Close the cycle before anyone can read "connected": a reconnect() asked after that must
   * open a new cycle, not fold into this finished one. */
  if (gn_sched_open(&ch->sched)) gn_sched_complete(&ch->sched, 1);
  gn_backoff_succeeded(&ch->retry.bo, now);
  health(ch, "connected",
         json_pack("{s:f, s:s, s:I, s:i, s:b}", "latency_ms", latency, "channel_id", chan_id(ch),
                   "connection_id", (json_int_t)ch->connection_id, "attempt", (int)attempt_no,
                   "new_channel", ch->attempt_hard));
  gn_gap_restored(&ch->gap, ch->env, now, ch->attempt_hard, chan_id(ch));
  gn_heartbeat_watch(&ch->hb, ch->conn);
  /* A subscription change that arrived while we were connecting. */
  put_live(ch);
}

void gn_channel_spare_wanted(gn_channel_t *ch);

static void start_rollover(gn_channel_t *ch) {
  if (ch->env->spare) {
    /* B is one more channel of the credential while the old one lives: a unit within the
     * whole budget (the spare). When none is left, this one waits for one
     * (gn_channel_spare_freed), and rollovers that hold one close their old sockets as soon as
     * that loses nothing; if the server closes the socket first, the ordinary reconnect takes
     * over. */
    if (!ch->env->spare(ch->env->spare_ud, 1)) {
      if (!ch->roll_waiting)
        health(ch, "rollover", json_pack("{s:s, s:s, s:s, s:s}", "event", "deferred", "reason",
                                         "channel_budget", "from", chan_id(ch), "error",
                                         "the credential's spare channel is in use (by another "
                                         "rollover, or the budget shrank after an eviction): "
                                         "this one starts when it is given back"));
      ch->roll_waiting = 1;
      gn_channel_spare_wanted(ch); /* its own old socket too */
      return;
    }
    ch->roll.unit = 1;
  }
  ch->roll_waiting = 0;
  gn_roll_begin(&ch->roll);
  ch->roll.renewal = ch->renew_roll;
  enter(ch, GN_ST_ROLLOVER);
  health(ch, "rollover", json_pack("{s:s, s:s, s:s}", "event", "started", "from", chan_id(ch),
                                   "reason", ch->renew_roll ? "renewal" : "socket_closing"));
  if (ch->bearer.waiting) {
    roll_failed(ch, "a token refresh is under way");
    return;
  }
  /* B would end with a token past half its life (where channels end with their token): a new
   * token for it (one fetch for every holder of the credential). */
  if (ch->env->conf->renew.rule == GN_RENEW_BOTH && gn_bearer_half_spent(&ch->bearer))
    gn_token_invalidate(ch->env->tok, ch->bearer.gen);
  if (fresh_token(ch, TOKP_ROLL)) gn_roll_post(&ch->roll, ch->bearer.token, ch->bearer.gen, ch->bearer.expires_ms);
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
  gn_conn_set_cbs(ch->conn, &conn_cbs, ch);
  gn_subs_adopt(&ch->subs, &confirmed);
  ch->hard_next = 0;
  gn_renew_created(&ch->renew, expires, tok_end, tok_gen);
  if (renewal) {
    GN_COUNT(ch->env, renewal_rollovers);
    health(ch, "renewal", json_pack("{s:s, s:s, s:s, s:f}", "event", "rollover", "from",
                                    old_id ? old_id : "", "channel_id", chan_id(ch),
                                    "expires_in_ms",
                                    (double)(gn_renew_end(&ch->renew) - gn_now_mono_ms())));
  }
  health(ch, "rollover", json_pack("{s:s, s:s, s:s, s:f, s:b}", "event", "completed", "from",
                                   old_id ? old_id : "", "to", chan_id(ch), "elapsed_ms",
                                   (double)(now - started), "gap", old == NULL));
  free(old_id);
  spare_check(ch);
  if (old) {
    gn_heartbeat_watch(&ch->hb, ch->conn);
    GN_COUNT(ch->env, rollovers);
    enter(ch, GN_ST_OPEN);
    put_live(ch); /* a change that came during the rollover */
    return;
  }
  /* The old socket had already gone: this is a reconnect like any other. */
  ch->attempt_start_ms = started;
  ch->attempt_hard = 1;
  GN_COUNT(ch->env, attempts);
  GN_COUNT(ch->env, rollovers);
  opened(ch); /* connected + restored, as after any reconnect */
}

/* The rollover could not finish (rollover.c's failure callback, or a token it could not get). */
static void roll_failed(void *ud, const char *msg) {
  gn_channel_t *ch = ud;
  gn_roll_cancel(&ch->roll);
  ch->renew_roll = 0;
  spare_check(ch);
  ch->hard_next = 1; /* the old channel is going away: the next attempt makes a new one */
  health(ch, "rollover", json_pack("{s:s, s:s, s:s}", "event", "failed", "error", msg ? msg : "",
                                   "channel_id", chan_id(ch)));
  if (ch->conn) {
    enter(ch, GN_ST_OPEN); /* the old socket still delivers */
    return;
  }
  /* The old socket is already gone: the ordinary reconnect takes over. */
  enter(ch, GN_ST_BACKOFF);
  fail_and_schedule(ch, GN_REASON_CLOSE, -1, "socket_closing");
}

static const gn_roll_hooks_t roll_hooks = {roll_take_over, roll_failed};

/* The live socket's callbacks (a rollover's sockets have their own: rollover.c). */
static void conn_open_cb(void *ud, gn_conn_t *conn) { opened(ud); }

static void conn_message_cb(void *ud, gn_conn_t *conn, const char *data, size_t len,
                            int binary) {
  gn_channel_t *ch = ud;
  const char *chan = chan_id(ch);
  gn_heartbeat_heard(&ch->hb);
  gn_msg_t m;
  switch (gn_msg_classify(data, len, binary, &m)) {
  case GN_MSG_MALFORMED:
  case GN_MSG_HEARTBEAT:
    gn_env_note(ch->env, &m, len); /* counted (malformed ones reported too) */
    break;
  case GN_MSG_CHANNEL_GONE: /* the close follows */
    ch->hard_next = 1;
    health(ch, "channel_gone", json_pack("{s:s, s:s}", "channel_id", chan_id(ch), "reason",
                                         m.reason));
    /* Gone well before its end, and not said to have expired: evicted (or deleted). */
    if (gn_renew_early_end(&ch->renew) && !strcasestr(m.reason, "expire")) {
      GN_COUNT(ch->env, evictions);
      if (ch->env->budget_note) ch->env->budget_note(ch->env->spare_ud, GN_NOTE_EVICTED, chan_id(ch));
    }
    gn_renew_forget(&ch->renew);
    break;
  case GN_MSG_SOCKET_CLOSING:
    /* The server will close this socket soon: open the replacement before it does. */
    health(ch, "socket_closing", json_pack("{s:s}", "channel_id", chan));
    if (state(ch) == GN_ST_OPEN) start_rollover(ch);
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
  if (state(ch) == GN_ST_ROLLOVER) {
    /* The old socket went before the replacement was ready: deaf until it is. */
    went_deaf(ch);
    GN_COUNT(ch->env, disconnects);
    enter(ch, GN_ST_CONNECT);
    health(ch, "disconnected",
           json_pack("{s:s, s:i, s:s, s:s, s:I}", "reason", "socket_closing", "code", info->code,
                     "error", info->error, "channel_id", chan_id(ch), "connection_id",
                     (json_int_t)ch->connection_id));
    return;
  }
  if (state(ch) == GN_ST_OPEN) {
    went_deaf(ch);
    const char *reason = info->oversize ? "oversize" : info->code != 1006 ? "closed" : "lost";
    json_t *f = json_pack("{s:s, s:i, s:s, s:s, s:I}", "reason", reason, "code", info->code,
                          "error", info->error, "channel_id", chan_id(ch), "connection_id",
                          (json_int_t)ch->connection_id);
    if (f && info->reason[0]) json_object_set_new(f, "close_reason", json_string(info->reason));
    if (info->oversize)
      health(ch, "oversize", json_pack("{s:s, s:I}", "error", info->error, "limit",
                                       (json_int_t)ch->env->conf->max_message));
    GN_COUNT(ch->env, disconnects);
    enter(ch, GN_ST_BACKOFF);
    health(ch, "disconnected", f);
    fail_and_schedule(ch, info->code == 1006 ? GN_REASON_ERROR : GN_REASON_CLOSE, -1, reason);
    return;
  }
  /* The attempt's connect or handshake failed. */
  gn_rest_failure_t f;
  gn_rest_handshake_failure(info, &f);
  if (f.verdict == GN_REST_AUTH && ch->auth_retried) {
    final_failure(ch, "auth", "the stream refused the handshake with 401 after a token refresh");
    return;
  }
  if (f.verdict == GN_REST_FORBIDDEN) {
    final_failure(ch, "forbidden", "the stream refused the handshake with 403");
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
  if (fields && info->proxy_status) proxy_fields(fields, info->proxy_status);
  attempt_failed(ch, f.reason, f.why, -1, fields);
}

/* The heartbeat watchdog found the live link dead. */
static void link_dead(void *ud) {
  gn_channel_t *ch = ud;
  const gn_conf_t *conf = ch->env->conf;
  if (!is_live(state(ch)) || !ch->conn) return;
  /* Dead link: nothing came back, not even the pong. */
  gn_roll_abort_all(&ch->roll);
  spare_check(ch);
  gn_conn_abort(ch->conn);
  ch->conn = NULL;
  went_deaf(ch);
  GN_COUNT(ch->env, disconnects);
  enter(ch, GN_ST_BACKOFF);
  char msg[128];
  snprintf(msg, sizeof msg, "no message for %ld ms and no answer to a ping within %ld ms",
           conf->idle_ms, conf->ping_timeout_ms);
  health(ch, "disconnected", json_pack("{s:s, s:i, s:s, s:s}", "reason", "heartbeat_timeout",
                                       "code", 1006, "error", msg, "channel_id", chan_id(ch)));
  fail_and_schedule(ch, GN_REASON_TIMEOUT, -1, "heartbeat_timeout");
}

/* ------------------------------------------------------------------------------------------ */
/* live subscription changes (subs.c says what an answer means) */

static void live_put_done(void *ud, const gn_http_result_t *hr) {
  gn_channel_t *ch = ud;
  renewed(ch, hr);
  switch (gn_subs_answer(&ch->subs, ch->channel_id, hr, "updated", 0)) {
  case GN_SUBS_PUT_AGAIN:
    put_live(ch);
    break;
  case GN_SUBS_NEW_TOKEN:
    gn_bearer_refuse(&ch->bearer);
    if (!ch->bearer.waiting && fresh_token(ch, TOKP_LIVE)) put_live(ch);
    break;
  case GN_SUBS_CHANNEL_GONE:
    ch->hard_next = 1;
    break;
  case GN_SUBS_RETRY:  /* subs_retry() comes after the delay */
  case GN_SUBS_FAILED: /* not in a live change */
  case GN_SUBS_DONE:
    break;
  }
}

/* Puts the wanted topics on the live channel when the server does not hold them. */
static void put_live(gn_channel_t *ch) {
  if (!ch->channel_id || !is_live(state(ch))) return; /* the attempt will put them */
  if (!gn_subs_needed(&ch->subs)) return;
  if (!fresh_token(ch, TOKP_LIVE)) return; /* put_live runs again when the token is in */
  if (gn_subs_put(&ch->subs, ch->channel_id, ch->bearer.token, live_put_done, ch) != 0)
    gn_subs_retry_later(&ch->subs, "cannot start the subscription request");
}

static void subs_retry(void *ud) { put_live(ud); }

/* The channel is due for renewal (renew.h): resubscribe, or move to a new channel made with a
 * newer token. A rollover already under way renews it anyway. */
static void renew_due(void *ud, int how) {
  gn_channel_t *ch = ud;
  if (state(ch) != GN_ST_OPEN || !ch->conn) return; /* an attempt or a rollover makes a new one */
  if (how == GN_RENEW_ROLLOVER) {
    /* The channel ends with its token: B needs a newer one than the one that made it. */
    if (ch->bearer.token && ch->bearer.gen == ch->renew.token_gen)
      gn_token_invalidate(ch->env->tok, ch->bearer.gen);
    ch->renew_roll = 1;
    start_rollover(ch);
    if (!ch->roll_waiting) return;
    /* No unit for B yet: resubscribe meanwhile, which is enough where channels do not end with
     * their token (the rollover follows when a unit comes back). */
  }
  gn_renew_asked(&ch->renew);
  ch->subs.fresh = 1; /* put even when the server holds the wanted set */
  put_live(ch);
}

/* ------------------------------------------------------------------------------------------ */
/* BACKOFF: failures, the attempt record, the timer, the policy hook */

static void backoff_done(void *ud) { run_attempt(ud); }

static void schedule_attempt(gn_channel_t *ch, gn_reason_t why, double retry_after_ms,
                             const char *reason) {
  double delay;
  const char *code;
  char msg[200];
  if (gn_retry_next(&ch->retry, retry_after_ms, reason, &delay, &code, msg, sizeof msg) != 0) {
    final_failure(ch, code, msg);
    return;
  }
  json_t *rec = gn_retry_record(ch->connection_id, ch->retry.bo.attempt, delay, reason, why,
                                ch->hard_next || !ch->channel_id, retry_after_ms);
  enter(ch, GN_ST_BACKOFF);
  json_t *copy = ch->env->conf->has_policy && rec ? json_deep_copy(rec) : NULL;
  health(ch, "attempt", rec);
  uint64_t seq = gn_retry_arm(&ch->retry, delay, retry_after_ms);
  /* The hook sees the same record; the engine's delay runs until it answers. */
  /* The item names the pool's channel too (the answer comes back to the client). */
  if (copy) gn_queue_add(ch->env->queue, GN_ITEM_POLICY, copy, (seq << 5) | (uint64_t)ch->env->index);
}

void gn_channel_policy(gn_channel_t *ch, uint64_t seq, double d) {
  char msg[160];
  switch (gn_retry_answer(&ch->retry, seq, d, msg, sizeof msg)) {
  case GN_RETRY_GIVE_UP:
    final_failure(ch, "policy", "the policy hook gave up");
    break;
  case GN_RETRY_REFUSED:
    health(ch, "policy", json_pack("{s:s, s:s, s:f}", "event", "rejected", "error", msg,
                                   "delay_ms", d));
    break;
  case GN_RETRY_APPLIED:
    health(ch, "policy", json_pack("{s:s, s:f, s:i}", "event", "applied", "delay_ms", d,
                                   "attempt", (int)ch->retry.bo.attempt));
    break;
  case GN_RETRY_STALE:
    break;
  }
}

static void fail_and_schedule(gn_channel_t *ch, gn_reason_t why, double retry_after_ms,
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

static void attempt_failed(gn_channel_t *ch, const char *reason, gn_reason_t why,
                           double retry_after_ms, json_t *fields) {
  cancel_attempt_io(ch);
  ch->in_attempt = 0;
  gn_gap_attempt_failed(&ch->gap, ch->attempt_start_ms);
  if (!fields) fields = json_object();
  if (fields) {
    json_object_set_new(fields, "reason", json_string(reason));
    json_object_set_new(fields, "attempt", json_integer(ch->retry.bo.attempt));
    json_object_set_new(fields, "new_channel", json_boolean(ch->attempt_hard));
  }
  GN_COUNT(ch->env, failures);
  enter(ch, GN_ST_BACKOFF);
  health(ch, "failed", fields);
  if (gn_sched_open(&ch->sched)) gn_sched_complete(&ch->sched, 0);
  fail_and_schedule(ch, why, retry_after_ms, reason);
}

static void final_failure(gn_channel_t *ch, const char *code, const char *msg) {
  gn_roll_abort_all(&ch->roll);
  spare_check(ch);
  cancel_attempt_io(ch);
  gn_heartbeat_stop(&ch->hb);
  gn_gap_not_open(&ch->gap, ch->env->metrics);
  gn_retry_disarm(&ch->retry);
  ch->in_attempt = 0;
  enter(ch, GN_ST_FAILED);
  health(ch, "gave_up", json_pack("{s:s, s:s, s:i}", "reason", code, "error", msg, "attempts",
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
  gn_bearer_init(&ch->bearer, env, token_ready, ch);
  gn_roll_init(&ch->roll, env, &roll_hooks, ch);
  ch->roll.drain_ms = env->conf->renew.drain_ms;
  gn_renew_init(&ch->renew, &env->conf->renew, renew_due, ch);
  if (gn_retry_init(&ch->retry, &env->conf->backoff, err, errlen) != 0 ||
      gn_subs_init(&ch->subs, env, subs_retry, ch, err, errlen) != 0) {
    free(ch);
    return NULL;
  }
  return ch;
}

void gn_channel_free(gn_channel_t *ch) {
  if (!ch) return;
  gn_subs_free(&ch->subs);
  gn_roll_cancel(&ch->roll);
  drop_channel(ch);
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
      gn_heartbeat_init(&ch->hb, loop, conf->idle_ms, conf->ping_timeout_ms, link_dead, ch) != 0 ||
      gn_flow_start(&ch->flow, ch->env, loop, &ch->hb, &ch->conn) != 0) {
    final_failure(ch, "memory", "out of memory");
    return;
  }
  gn_bearer_start(&ch->bearer);
  pthread_mutex_lock(&ch->env->metrics->mu);
  ch->env->metrics->started_ms = gn_now_mono_ms();
  pthread_mutex_unlock(&ch->env->metrics->mu);
  run_attempt(ch);
}

/* Everything of gn_channel_stop but the final state. */
static void halt(gn_channel_t *ch) {
  gn_roll_close(&ch->roll);
  gn_renew_close(&ch->renew);
  gn_roll_give_units(&ch->roll, 1);
  /* The live socket ends with a close frame (the server sees it at once; an abort waits for
   * the loop's next event on that socket, which an idle one may not have for a while). */
  if (ch->conn && is_live(state(ch))) gn_conn_close(ch->conn, 1000, "client closed");
  else if (ch->conn) gn_conn_abort(ch->conn);
  ch->conn = NULL;
  cancel_attempt_io(ch);
  gn_subs_close(&ch->subs);
  gn_retry_close(&ch->retry);
  gn_heartbeat_close(&ch->hb);
  gn_flow_close(&ch->flow);
  gn_bearer_stop(&ch->bearer);
}

void gn_channel_stop(gn_channel_t *ch) {
  halt(ch);
  enter(ch, GN_ST_CLOSED);
  if (gn_sched_open(&ch->sched)) gn_sched_complete(&ch->sched, 0);
}

void gn_channel_park(gn_channel_t *ch) {
  gn_state_t st = state(ch);
  if (st == GN_ST_CLOSED) return;
  if (st != GN_ST_IDLE && st != GN_ST_STANDBY) {
    if (is_live(st)) went_deaf(ch);
    halt(ch);
    ch->in_attempt = 0;
  }
  enter(ch, GN_ST_STANDBY);
  if (gn_sched_open(&ch->sched)) gn_sched_complete(&ch->sched, 0);
}

void gn_channel_reconnect(gn_channel_t *ch) {
  gn_state_t st = state(ch);
  if (ch->roll.active && !ch->conn) {
    /* A rollover with the old socket gone is the attempt already under way. */
    gn_sched_complete(&ch->sched, 0);
    return;
  }
  gn_roll_abort_all(&ch->roll);
  spare_check(ch);
  if (is_live(st)) {
    if (ch->conn) gn_conn_close(ch->conn, 1000, "reconnect requested");
    ch->conn = NULL;
    went_deaf(ch);
    enter(ch, GN_ST_BACKOFF);
    health(ch, "disconnected", json_pack("{s:s, s:i, s:s, s:s}", "reason", "manual", "code",
                                         1000, "error", "client:reconnect() was called",
                                         "channel_id", chan_id(ch)));
    schedule_attempt(ch, GN_REASON_MANUAL, -1, "manual");
  } else if (st == GN_ST_FAILED) {
    /* A final failure: the application asks to start over with a fresh history. */
    gn_backoff_reset(&ch->retry.bo);
    ch->auth_retried = 0;
    run_attempt(ch);
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
  if (ch->roll_waiting && ch->conn && state(ch) == GN_ST_OPEN) start_rollover(ch);
}

void gn_channel_spare_wanted(gn_channel_t *ch) {
  if (gn_roll_release(&ch->roll)) spare_check(ch);
}

void gn_channel_topics_changed(gn_channel_t *ch) {
  gn_subs_changed(&ch->subs);
  put_live(ch);
}
