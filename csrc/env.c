/* env.c: the shared part of a client's pieces (see env.h). */
#include "env.h"
#include "service.h"

const char *gn_state_name(gn_state_t s) {
  static const char *n[] = {"idle", "auth",   "channel", "subscribe", "connect",
                            "open", "backoff", "failed", "closed",    "open"};
  return (unsigned)s < GN_ST_COUNT_ ? n[s] : "?";
}

void gn_env_health(gn_env_t *env, const char *kind, json_t *fields) {
  gn_queue_health(env->queue, kind, gn_state_name(atomic_load(&env->state)), fields);
}

gn_conn_t *gn_env_open_conn(gn_env_t *env, const char *url, const gn_conn_cbs_t *cbs, void *ud,
                            char *err, size_t errlen) {
  const gn_conf_t *c = env->conf;
  gn_conn_opts_t o = {0};
  o.url = url;
  o.ca_file = c->ca_file;
  o.verify = c->verify;
  o.max_message = c->max_message;
  o.connect_timeout_ms = c->connect_timeout_ms;
  o.handshake_timeout_ms = c->handshake_timeout_ms;
  return gn_conn_open(gn_service_transport(env->svc), &o, cbs, ud, err, errlen);
}
