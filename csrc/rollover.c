/* rollover.c: make-before-break hand-over to a new channel (see rollover.h). */
#include "rollover.h"
#include "oauth.h"
#include "rest.h"
#include "service.h"
#include "gn_util.h"

#include <stdio.h>

void gn_roll_init(gn_roll_t *r, gn_env_t *env, const gn_conn_cbs_t *conn_cbs, void *ud,
                  void (*failed)(void *ud, const char *msg), gn_topics_t *confirmed) {
  memset(r, 0, sizeof *r);
  r->env = env;
  r->conn_cbs = conn_cbs;
  r->ud = ud;
  r->failed = failed;
  r->confirmed = confirmed;
}

void gn_roll_begin(gn_roll_t *r) {
  r->active = 1;
  r->start_ms = gn_now_mono_ms();
}

void gn_roll_cancel(gn_roll_t *r) {
  if (r->req) gn_http_cancel(r->req);
  r->req = NULL;
  if (r->conn) gn_conn_abort(r->conn);
  r->conn = NULL;
  free(r->channel_id);
  free(r->connect_uri);
  r->channel_id = r->connect_uri = NULL;
  gn_free_secret(r->token);
  r->token = NULL;
  r->active = 0;
}

static void fail(gn_roll_t *r, const char *msg) {
  gn_roll_cancel(r);
  r->failed(r->ud, msg);
}

static void sub_done(void *ud, const gn_http_result_t *hr) {
  gn_roll_t *r = ud;
  r->req = NULL;
  if (!gn_rest_ok(hr)) {
    char msg[200];
    snprintf(msg, sizeof msg, "subscribing the new channel: %s%s", hr->error ? hr->error : "HTTP ",
             hr->error ? "" : (hr->status == 401 ? "401" : hr->status == 404 ? "404" : "error"));
    if (hr->status == 401) gn_token_invalidate(r->env->tok, r->token_gen);
    fail(r, msg);
    return;
  }
  gn_topics_copy(r->confirmed, r->env->topics);
  char err[256] = "";
  r->conn = gn_env_open_conn(r->env, r->connect_uri, r->conn_cbs, r->ud, err, sizeof err);
  if (!r->conn) fail(r, err);
}

static void channel_done(void *ud, const gn_http_result_t *hr) {
  gn_roll_t *r = ud;
  r->req = NULL;
  if (gn_rest_channel_answer(hr, &r->channel_id, &r->connect_uri) != 0) {
    char msg[200];
    if (hr->error) snprintf(msg, sizeof msg, "creating the new channel: %s", hr->error);
    else snprintf(msg, sizeof msg, "creating the new channel answered HTTP %ld", hr->status);
    if (hr->status == 401) gn_token_invalidate(r->env->tok, r->token_gen);
    fail(r, msg);
    return;
  }
  r->req = gn_rest_put_topics(gn_service_http(r->env->svc), r->env->conf, r->token,
                              r->channel_id, r->env->topics, sub_done, r);
  if (!r->req) fail(r, "cannot start the subscription request for the new channel");
}

void gn_roll_post(gn_roll_t *r, const char *token, uint64_t gen) {
  if (!r->active || r->req || r->conn) return;
  gn_free_secret(r->token);
  r->token = gn_strdup(token);
  r->token_gen = gen;
  if (r->token)
    r->req = gn_rest_create_channel(gn_service_http(r->env->svc), r->env->conf, r->token,
                                    channel_done, r);
  if (!r->req) fail(r, "cannot start the request for the new channel");
}

int gn_roll_owns(const gn_roll_t *r, const gn_conn_t *conn) { return conn && conn == r->conn; }

void gn_roll_lost_conn(gn_roll_t *r) { r->conn = NULL; }

void gn_roll_take(gn_roll_t *r, gn_conn_t **conn, char **channel_id, char **connect_uri) {
  *conn = r->conn;
  *channel_id = r->channel_id;
  *connect_uri = r->connect_uri;
  r->conn = NULL;
  r->channel_id = r->connect_uri = NULL;
  gn_roll_cancel(r);
  r->dedup_until_ms = gn_now_mono_ms() + 5000;
}

int gn_roll_seen(gn_roll_t *r, const char *id, uint64_t now_ms) {
  if (!id || strlen(id) >= sizeof r->recent[0]) return 0;
  if (r->active || now_ms < r->dedup_until_ms)
    for (size_t i = 0; i < GN_ROLL_RECENT; i++)
      if (strcmp(r->recent[i], id) == 0) return 1;
  strcpy(r->recent[r->recent_pos], id);
  r->recent_pos = (r->recent_pos + 1) % GN_ROLL_RECENT;
  return 0;
}
