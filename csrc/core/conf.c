/* conf.c: a client's settings (see conf.h). */
#include "conf.h"
#include "gn_util.h"

#include <stdio.h>

int gn_conf_init(gn_conf_t *c, const gn_client_cfg_t *cfg, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  c->token_url = gn_strdup(cfg->token_url);
  c->api_base = gn_strdup(cfg->api_base);
  c->client_id = gn_strdup(cfg->client_id);
  c->client_secret = gn_strdup(cfg->client_secret);
  c->ca_file = cfg->ca_file ? gn_strdup(cfg->ca_file) : NULL;
  c->name = gn_strdup(cfg->name ? cfg->name : "");
  int proxy_oom = gn_proxy_copy(&c->proxy, &cfg->proxy) != 0;
  if (!c->token_url || !c->api_base || !c->client_id || !c->client_secret || !c->name ||
      (cfg->ca_file && !c->ca_file) || proxy_oom) {
    snprintf(err, errlen, "out of memory");
    gn_conf_free(c);
    return -1;
  }
  size_t bl = strlen(c->api_base);
  while (bl && c->api_base[bl - 1] == '/') c->api_base[--bl] = 0;
  c->verify = cfg->verify;
  c->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 10000;
  c->handshake_timeout_ms = cfg->handshake_timeout_ms > 0 ? cfg->handshake_timeout_ms : 10000;
  c->http_timeout_ms = cfg->http_timeout_ms > 0 ? cfg->http_timeout_ms : 30000;
  c->idle_ms = cfg->idle_ms > 0 ? cfg->idle_ms : 35000;
  c->ping_timeout_ms = cfg->ping_timeout_ms > 0 ? cfg->ping_timeout_ms : 10000;
  c->queue_limit = cfg->queue_limit ? cfg->queue_limit : 10000;
  c->queue_bytes = cfg->queue_bytes ? cfg->queue_bytes : GN_QUEUE_BYTES_DEFAULT;
  c->max_message = cfg->max_message ? cfg->max_message : (1u << 20);
  c->overflow_pause = cfg->overflow_pause;
  c->pause_max_ms = cfg->pause_max_ms >= 0 ? cfg->pause_max_ms : 30000;
  c->backoff = cfg->backoff;
  c->has_policy = cfg->policy;
  c->channel_budget = cfg->channel_budget >= 2 ? cfg->channel_budget : 20;
  c->renew.rule = cfg->renew.rule;
  c->renew.at = cfg->renew.at > 0 && cfg->renew.at < 1 ? cfg->renew.at : 0.8;
  c->renew.margin_ms = cfg->renew.margin_ms >= 0 ? cfg->renew.margin_ms : 60000;
  c->renew.drain_ms = cfg->renew.drain_ms > 0 ? cfg->renew.drain_ms : 10000;
  c->resync_families = cfg->resync_families;
  c->resync_budget = cfg->resync_budget > 0 ? cfg->resync_budget : 150;
  c->resync_window_ms = cfg->resync_window_ms > 0 ? cfg->resync_window_ms : 60000;
  /* a maintenance wave can cost every channel a rollover and a hard reconnect: 4 calls each */
  c->resync_reserve = cfg->resync_reserve > 0 ? cfg->resync_reserve : 4 * c->channel_budget;
  if (c->resync_reserve >= c->resync_budget) c->resync_reserve = c->resync_budget - 1;
  c->resync_spacing_ms = cfg->resync_spacing_ms > 0 ? cfg->resync_spacing_ms
                                                    : c->resync_window_ms / c->resync_budget;
  return 0;
}

void gn_conf_free(gn_conf_t *c) {
  free(c->token_url);
  free(c->api_base);
  free(c->client_id);
  gn_free_secret(c->client_secret);
  free(c->ca_file);
  free(c->name);
  gn_proxy_free(&c->proxy);
  memset(c, 0, sizeof *c);
}
