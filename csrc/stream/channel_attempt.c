/* channel_attempt.c: the token a channel holds and the attempt's steps, AUTH -> CHANNEL ->
 * SUBSCRIBE -> CONNECT (the machine's table is in channel.c; channel_int.h). Service thread.
 */
#include "channel_int.h"
#include "oauth.h"
#include "rest.h"
#include "service.h"
#include "gn_util.h"

#include <stdio.h>

static void step_token(gn_channel_t *ch);
static void step_channel(gn_channel_t *ch);
static void step_subscribe(gn_channel_t *ch);
static void step_connect(gn_channel_t *ch);

/* ------------------------------------------------------------------------------------------ */
/* the token the attempt waits for (a live change's and a rollover's: channel_live.c) */

/* The token the attempt waited for: the AUTH step's outcome. */
static void attempt_token(gn_channel_t *ch, gn_token_result_t *r) {
  switch (r->kind) {
  case GN_TOK_OK:
    gn_bearer_adopt(&ch->bearer, r);
    if (!ch->channel_id) step_channel(ch);
    else step_subscribe(ch);
    break;
  case GN_TOK_AUTH:
    gn_ch_health(ch, "token",
                 json_pack("{s:s, s:s, s:i}", "event", "refused", "error", r->error, "status",
                           (int)r->status));
    gn_ch_final_failure(ch, "auth", r->error);
    break;
  case GN_TOK_FORBIDDEN:
    gn_ch_final_failure(ch, "forbidden", r->error);
    break;
  case GN_TOK_RATE:
  case GN_TOK_RETRY: {
    json_t *f = json_pack("{s:s, s:i}", "error", r->error, "status", (int)r->status);
    if (f && r->proxy) gn_ch_proxy_fields(f, r->proxy_status);
    if (f && r->retry_after_ms >= 0)
      json_object_set_new(f, "retry_after_ms", json_real(r->retry_after_ms));
    if (f && r->tls) json_object_set_new(f, "tls", json_true());
    json_t *t = json_pack("{s:s, s:s, s:i}", "event", "failed", "error", r->error, "status",
                          (int)r->status);
    if (t && r->proxy) gn_ch_proxy_fields(t, r->proxy_status);
    gn_ch_health(ch, "token", t);
    gn_ch_attempt_failed(ch,
                         r->kind == GN_TOK_RATE ? "rate_limited"
                         : r->proxy             ? "proxy"
                         : r->tls               ? "tls"
                                                : "token",
                         GN_REASON_ERROR, r->retry_after_ms, f);
    break;
  }
  case GN_TOK_AGAIN:
    step_token(ch);
    break;
  }
}

/* A token result, sent where its purpose says (the caller clears it). */
void gn_ch_token_ready(void *ud, int purpose, gn_token_result_t *r) {
  gn_channel_t *ch = ud;
  if (purpose == TOKP_LIVE) gn_ch_live_token(ch, r);
  else if (purpose == TOKP_ROLL) gn_ch_roll_token(ch, r);
  else attempt_token(ch, r);
}

/* ------------------------------------------------------------------------------------------ */
/* the attempt: AUTH -> CHANNEL -> SUBSCRIBE -> CONNECT */

void gn_ch_run_attempt(gn_channel_t *ch) {
  ch->in_attempt = 1;
  ch->attempt_start_ms = gn_now_mono_msf();
  ch->attempt_hard = ch->hard_next || !ch->channel_id;
  GN_COUNT(ch->env, attempts);
  if (ch->attempt_hard) {
    gn_ch_drop_channel(ch);
    gn_subs_new_channel(&ch->subs);
    step_token(ch);
  } else {
    step_connect(ch);
  }
}

static void step_token(gn_channel_t *ch) {
  gn_ch_enter(ch, GN_ST_AUTH);
  gn_token_result_t r;
  /* The attempt takes over a wait of a live change or a rollover: its result is used here. */
  if (gn_bearer_ask(&ch->bearer, TOKP_ATTEMPT, &r)) {
    attempt_token(ch, &r);
    gn_token_result_clear(&r);
  }
}

/* Marks a failure as the proxy's: stage "proxy" and the proxy's refusal status when known. */
void gn_ch_proxy_fields(json_t *fields, long status) {
  json_object_set_new(fields, "stage", json_string("proxy"));
  if (status) json_object_set_new(fields, "status", json_integer(status));
}

/* A REST answer of the attempt that is not a success. */
static void rest_failure(gn_channel_t *ch, const char *what, const gn_http_result_t *hr) {
  gn_rest_failure_t f;
  gn_rest_failure(hr, what, &f);
  if (hr->error) {
    json_t *fields = json_pack("{s:s}", "error", f.error);
    if (fields && hr->proxy) gn_ch_proxy_fields(fields, hr->proxy_status);
    gn_ch_attempt_failed(ch, f.reason, f.why, -1, fields);
    return;
  }
  if (f.verdict == GN_REST_AUTH) {
    if (!ch->auth_retried) {
      /* The token was refused: one refresh, then the attempt goes on. */
      ch->auth_retried = 1;
      gn_bearer_refuse(&ch->bearer);
      gn_ch_health(ch, "token", json_pack("{s:s, s:s}", "event", "rejected", "error", f.error));
      step_token(ch);
      return;
    }
    gn_ch_final_failure(ch, "auth",
                        "the API refused a freshly issued token (401 twice); check the "
                        "OAuth client's permissions");
    return;
  }
  if (f.verdict == GN_REST_FORBIDDEN) {
    gn_ch_final_failure(ch, "forbidden", f.error);
    return;
  }
  json_t *fields = json_pack("{s:s, s:i}", "error", f.error, "status", (int)f.status);
  if (fields && f.header_retry_after_ms >= 0)
    json_object_set_new(fields, "retry_after_ms", json_real(f.header_retry_after_ms));
  if (f.gone) ch->hard_next = 1;
  gn_ch_attempt_failed(ch, f.reason, f.why, f.retry_after_ms, fields);
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
    gn_ch_attempt_failed(ch, rc == -2 ? "memory" : "protocol", GN_REASON_ERROR, -1,
                         rc == -2   ? NULL
                         : rc == -3 ? json_pack("{s:s}", "error", GN_BAD_CHANNEL_ID)
                                    : json_pack("{s:s}", "error",
                                                "channel creation answered "
                                                "without id and connectUri"));
    return;
  }
  gn_ch_drop_channel(ch);
  ch->channel_id = id;
  ch->connect_uri = uri;
  ch->hard_next = ch->connect_failures = 0;
  gn_renew_created(&ch->renew, gn_rest_channel_expires(hr), ch->bearer.expires_ms, ch->bearer.gen);
  if (ch->env->budget_note) ch->env->budget_note(ch->env->spare_ud, GN_NOTE_CREATED, id);
  gn_subs_new_channel(&ch->subs);
  step_subscribe(ch);
}

static void step_channel(gn_channel_t *ch) {
  gn_ch_enter(ch, GN_ST_CHANNEL);
  if (ch->env->budget_note && !ch->env->budget_note(ch->env->spare_ud, GN_NOTE_MAY_CREATE, NULL)) {
    /* The server evicted a live channel below the budget: no new one until we hold fewer. */
    gn_ch_attempt_failed(
        ch, "channel_budget", GN_REASON_ERROR, -1,
        json_pack("{s:s}", "error",
                  "the server's channel limit is below the channels "
                  "this credential holds (a live channel was evicted): waiting for one "
                  "to close"));
    return;
  }
  ch->req = gn_rest_create_channel(gn_service_http(ch->env->svc), ch->env->conf, ch->bearer.token,
                                   channel_done, ch);
  if (!ch->req)
    gn_ch_attempt_failed(ch, "http", GN_REASON_ERROR, -1,
                         json_pack("{s:s}", "error", "cannot start the channel request"));
}

/* A subscription request succeeded: the channel lives its lifetime from when it was sent. */
void gn_ch_renewed(gn_channel_t *ch, const gn_http_result_t *hr) {
  if (!gn_rest_ok(hr) || !gn_renew_subscribed(&ch->renew, ch->subs.sent_ms)) return;
  GN_COUNT(ch->env, renewals);
  gn_ch_health(
      ch, "renewal",
      json_pack("{s:s, s:s, s:f}", "event", "resubscribed", "channel_id", gn_ch_chan_id(ch),
                "expires_in_ms", (double)(gn_renew_end(&ch->renew) - gn_now_mono_ms())));
}

static void subscribe_done(void *ud, const gn_http_result_t *hr) {
  gn_channel_t *ch = ud;
  gn_ch_renewed(ch, hr);
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
  gn_ch_enter(ch, GN_ST_SUBSCRIBE);
  if (gn_subs_put(&ch->subs, ch->channel_id, ch->bearer.token, subscribe_done, ch) != 0)
    gn_ch_attempt_failed(ch, "http", GN_REASON_ERROR, -1,
                         json_pack("{s:s}", "error", "cannot start the subscription request"));
}

static void step_connect(gn_channel_t *ch) {
  gn_ch_enter(ch, GN_ST_CONNECT);
  char err[256] = "";
  ch->conn = gn_env_open_conn(ch->env, ch->connect_uri, &gn_ch_conn_cbs, ch, err, sizeof err);
  if (!ch->conn) {
    ch->hard_next = 1;
    gn_ch_attempt_failed(ch, "connect", GN_REASON_ERROR, -1, json_pack("{s:s}", "error", err));
  }
}
