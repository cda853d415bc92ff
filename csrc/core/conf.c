/* conf.c: a client's settings (see conf.h). */
#include "conf.h"
#include "gn_util.h"

#include <stddef.h>
#include <stdio.h>

#define GN_CONF_ROW(field, key, member, ctype, kind, def, lo, hi)                                  \
  {field, key, offsetof(gn_client_cfg_t, member), GN_OPT_T_##ctype, GN_OPT_##kind, (double)(def), \
   lo, hi},
const gn_conf_opt_t gn_conf_opts[] = {GN_CONF_OPTIONS(GN_CONF_ROW)};
#undef GN_CONF_ROW
const size_t gn_conf_nopts = sizeof gn_conf_opts / sizeof *gn_conf_opts;

/* The members are read and written through memcpy: a byte pointer cast to a double pointer is
 * what cppcheck (rightly, for aliasing) refuses. */
double gn_conf_opt_get(const gn_client_cfg_t *cfg, const gn_conf_opt_t *o) {
  const char *p = (const char *)cfg + o->offset;
  long l;
  size_t z;
  int i;
  double d;
  switch (o->ctype) {
  case GN_OPT_T_LONG: memcpy(&l, p, sizeof l); return (double)l;
  case GN_OPT_T_SIZE: memcpy(&z, p, sizeof z); return (double)z;
  case GN_OPT_T_INT: memcpy(&i, p, sizeof i); return (double)i;
  default: memcpy(&d, p, sizeof d); return d;
  }
}

void gn_conf_opt_set(gn_client_cfg_t *cfg, const gn_conf_opt_t *o, double v) {
  char *p = (char *)cfg + o->offset;
  switch (o->ctype) {
  case GN_OPT_T_LONG: {
    long l = (long)v;
    memcpy(p, &l, sizeof l);
    break;
  }
  case GN_OPT_T_SIZE: {
    size_t z = (size_t)v;
    memcpy(p, &z, sizeof z);
    break;
  }
  case GN_OPT_T_INT: {
    int i = (int)v;
    memcpy(p, &i, sizeof i);
    break;
  }
  default: memcpy(p, &v, sizeof v); break;
  }
}

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
  /* the numeric options: a value outside its row's range (a zero from a C caller) is the
   * default */
  gn_client_cfg_t n = *cfg;
  for (size_t i = 0; i < gn_conf_nopts; i++) {
    const gn_conf_opt_t *o = &gn_conf_opts[i];
    double v = gn_conf_opt_get(cfg, o);
    gn_conf_opt_set(&n, o, v >= o->lo && v <= o->hi ? v : o->def);
  }
#define GN_CONF_COPY(field, key, member, ctype, kind, def, lo, hi) c->member = n.member;
  GN_CONF_OPTIONS(GN_CONF_COPY) /* gn_conf_t has each option under its gn_client_cfg_t name */
#undef GN_CONF_COPY
  c->renew.rule = cfg->renew.rule;
  c->overflow_pause = cfg->overflow_pause;
  c->backoff = cfg->backoff;
  c->has_policy = cfg->policy;
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
