/* conf.c: a client's settings (see conf.h). */
#include "conf.h"
#include "gn_util.h"

#include <stddef.h>
#include <stdio.h>

#define GN_CONF_ROW(...) GN_CONF_ROW_OF(gn_client_cfg_t, __VA_ARGS__)
const gn_conf_opt_t gn_conf_opts[] = {GN_CONF_OPTIONS(GN_CONF_ROW)};
#undef GN_CONF_ROW
#define GN_CONF_CHECK(...) GN_CONF_CHECK_OF(gn_client_cfg_t, __VA_ARGS__)
GN_CONF_OPTIONS(GN_CONF_CHECK)
#undef GN_CONF_CHECK
const size_t gn_conf_nopts = sizeof gn_conf_opts / sizeof *gn_conf_opts;

/* The members are read and written through memcpy: a byte pointer cast to a double pointer is
 * what cppcheck (rightly, for aliasing) refuses. */
double gn_conf_opt_get(const void *base, const gn_conf_opt_t *o) {
  const char *p = (const char *)base + o->offset;
  long l;
  size_t z;
  int i;
  double d;
  const char *s;
  switch (o->ctype) {
  case GN_OPT_T_LONG: memcpy(&l, p, sizeof l); return (double)l;
  case GN_OPT_T_SIZE: memcpy(&z, p, sizeof z); return (double)z;
  case GN_OPT_T_INT:
  case GN_OPT_T_BOOL:
  case GN_OPT_T_ENUM: memcpy(&i, p, sizeof i); return (double)i;
  case GN_OPT_T_STR: memcpy(&s, p, sizeof s); return s ? 1 : 0;
  default: memcpy(&d, p, sizeof d); return d;
  }
}

void gn_conf_opt_set(void *base, const gn_conf_opt_t *o, double v) {
  char *p = (char *)base + o->offset;
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
  case GN_OPT_T_INT:
  case GN_OPT_T_BOOL:
  case GN_OPT_T_ENUM: {
    int i = (int)v;
    memcpy(p, &i, sizeof i);
    break;
  }
  case GN_OPT_T_STR: break; /* gn_conf_opt_set_str */
  default: memcpy(p, &v, sizeof v); break;
  }
}

void gn_conf_opt_set_str(void *base, const gn_conf_opt_t *o, const char *s) {
  if (o->ctype == GN_OPT_T_STR) memcpy((char *)base + o->offset, &s, sizeof s);
}

int gn_conf_opt_choice(const gn_conf_opt_t *o, const char *s) {
  size_t n = strlen(s);
  int i = 0;
  for (const char *c = o->choices; *c; i++) {
    const char *bar = strchr(c, '|');
    size_t len = bar ? (size_t)(bar - c) : strlen(c);
    if (len == n && memcmp(c, s, n) == 0) return i;
    if (!bar) break;
    c = bar + 1;
  }
  return -1;
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
  /* the numeric options: a value outside its row's range (a zero from a C caller) is the
   * default; flags and choices are taken as they are (a zero is one of them) */
  gn_client_cfg_t n = *cfg;
  for (size_t i = 0; i < gn_conf_nopts; i++) {
    const gn_conf_opt_t *o = &gn_conf_opts[i];
    if (o->ctype == GN_OPT_T_STR || o->ctype == GN_OPT_T_BOOL || o->ctype == GN_OPT_T_ENUM)
      continue;
    double v = gn_conf_opt_get(cfg, o);
    gn_conf_opt_set(&n, o, v >= o->lo && v <= o->hi ? v : o->def);
  }
  /* gn_conf_t has each option under its gn_client_cfg_t name (strings: owned copies, above) */
#define GN_CONF_COPY_LONG(m) c->m = n.m;
#define GN_CONF_COPY_SIZE(m) c->m = n.m;
#define GN_CONF_COPY_INT(m) c->m = n.m;
#define GN_CONF_COPY_DOUBLE(m) c->m = n.m;
#define GN_CONF_COPY_BOOL(m) c->m = n.m;
#define GN_CONF_COPY_ENUM(m) c->m = n.m;
#define GN_CONF_COPY_STR(m)
#define GN_CONF_COPY(field, key, member, ctype, ...) GN_CONF_COPY_##ctype(member)
  GN_CONF_OPTIONS(GN_CONF_COPY)
#undef GN_CONF_COPY
  c->backoff = cfg->backoff;
  c->has_policy = cfg->policy;
  c->resync_families = cfg->resync_families;
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
