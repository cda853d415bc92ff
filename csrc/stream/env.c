/* env.c: the shared part of a client's pieces (see env.h). */
#include "env.h"
#include "service.h"
#include "oauth.h"
#include "scrub.h"

#include <string.h>

const char *gn_state_name(gn_state_t s) {
  static const char *n[] = {"idle", "auth",   "channel", "subscribe", "connect",
                            "open", "backoff", "failed", "closed",    "open",
                            "standby"};
  return (unsigned)s < GN_ST_COUNT_ ? n[s] : "?";
}

/* The longest string a health item carries (server text is cut to it). */
#define HEALTH_TEXT_MAX 1024

/* v (a string) as it may be shown: scrubbed of the credential's secrets and of any credential
 * value after Bearer/Basic, without control characters, valid UTF-8, at most HEALTH_TEXT_MAX
 * bytes. Returns a new string when that differs from v, else NULL. */
static json_t *scrubbed(gn_env_t *env, json_t *v) {
  const char *s = json_string_value(v);
  size_t len = json_string_length(v);
  char buf[HEALTH_TEXT_MAX + 1];
  size_t n;
  if (env->tok) {
    n = gn_token_scrub(env->tok, buf, sizeof buf, s, len);
  } else {
    gn_secrets_t sec = {0};
    gn_secrets_add(&sec, env->conf->client_secret);
    gn_secrets_add(&sec, env->conf->proxy.pass);
    n = gn_scrub(buf, sizeof buf, s, len, &sec);
  }
  if (n == len && memcmp(buf, s, len) == 0) return NULL;
  return json_stringn(buf, n);
}

/* Scrubs every string of v (an object or array), a few levels down. */
static void scrub_tree(gn_env_t *env, json_t *v, int depth) {
  if (depth > 3) return;
  if (json_is_object(v)) {
    const char *k;
    json_t *x;
    void *tmp;
    json_object_foreach_safe(v, tmp, k, x) {
      if (json_is_string(x)) {
        json_t *n = scrubbed(env, x);
        if (n) json_object_set_new(v, k, n);
      } else {
        scrub_tree(env, x, depth + 1);
      }
    }
  } else if (json_is_array(v)) {
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
      if (json_is_string(x)) {
        json_t *n = scrubbed(env, x);
        if (n) json_array_set_new(v, i, n);
      } else {
        scrub_tree(env, x, depth + 1);
      }
    }
  }
}

void gn_env_health(gn_env_t *env, const char *kind, json_t *fields) {
  /* Every health item passes here: whatever server text reached its fields (an error body, a
   * close reason, a 404 notice, a library's message quoting the server) is shown scrubbed. */
  if (fields) scrub_tree(env, fields, 0);
  /* a deaf interval ("restored", "gap") reaches the tap too: a fleet's consumers get it */
  json_t *jf = json_object_get(fields, "deaf_from_ms"), *jt = json_object_get(fields, "deaf_to_ms");
  if (env->tap && env->tap->deaf && json_is_number(jf) && json_is_number(jt))
    env->tap->deaf(env->tap->ud, kind, json_number_value(jf), json_number_value(jt));
  if (env->stamp && atomic_load(env->stamp)) {
    if (!fields) fields = json_object();
    if (fields) json_object_set_new(fields, "channel", json_integer(env->index + 1));
  }
  double from = -1, to = -1;
  if (env->deaf && json_is_number(jf) && json_is_number(jt) &&
      (!strcmp(kind, "restored") || !strcmp(kind, "gap"))) {
    from = json_number_value(jf);
    to = json_number_value(jt);
  }
  gn_queue_health(env->queue, kind, gn_state_name(atomic_load(&env->state)), fields);
  /* after the health item: the application reads the gap before what heals it */
  if (from >= 0 && to >= from) env->deaf(env->resync_ud, env, from, to);
}

gn_conn_t *gn_env_open_conn(gn_env_t *env, const char *url, const gn_conn_cbs_t *cbs, void *ud,
                            char *err, size_t errlen) {
  const gn_conf_t *c = env->conf;
  gn_conn_opts_t o = {0};
  o.url = url;
  o.ca_file = c->ca_file;
  o.verify = c->verify;
  o.proxy = &c->proxy;
  o.max_message = c->max_message;
  o.connect_timeout_ms = c->connect_timeout_ms;
  o.handshake_timeout_ms = c->handshake_timeout_ms;
  return gn_conn_open(gn_service_transport(env->svc), &o, cbs, ud, err, errlen);
}

int gn_env_deliver(gn_env_t *env, const gn_msg_t *m, const char *channel_id, const char *raw,
                   size_t len) {
  if (env->tap && !env->tap->event(env->tap->ud, m, channel_id, raw, len)) return 0;
  /* the channel's own count (the queue counts the client's), before the owner can see it */
  if (env->count_events) GN_COUNT(env, events);
  if (env->seen) env->seen(env->resync_ud, m); /* resync.h */
  gn_queue_event(env->queue, m, channel_id, raw, len);
  return 1;
}

void gn_env_note(gn_env_t *env, const gn_msg_t *m, size_t len) {
  if (m->kind == GN_MSG_HEARTBEAT) {
    GN_COUNT(env, heartbeats);
  } else if (m->kind == GN_MSG_MALFORMED) {
    GN_COUNT(env, malformed);
    gn_env_health(env, "malformed", json_pack("{s:s, s:s, s:I}", "reason", m->reason, "error",
                                              m->error, "size", (json_int_t)len));
  }
}
