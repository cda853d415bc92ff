/* lbind_resync.c: the resync part of a client: its families, as notify.lua normalized them
 * (resync_families: a comma-separated list of family names), checked here against the one
 * table of families (resync_families.c), naming the field (resync's numbers are rows of the
 * table of options: conf.h); its counters in metrics(); and client:resync_gap(). */
#include "client.h"
#include "conf.h"
#include "lbind.h"
#include "lbind_client.h"
#include "metrics.h"
#include "resync_families.h"

#include <lauxlib.h>

int lgn_resync_config(lua_State *L, int idx, void *cfgp) {
  gn_client_cfg_t *cfg = cfgp;
  idx = lua_absindex(L, idx);
  lua_getfield(L, idx, "resync_families");
  const char *list = lua_tostring(L, -1);
  if (list) {
    char bad[64];
    cfg->resync_families = gn_rs_parse_list(list, bad, sizeof bad);
    if (!cfg->resync_families) {
      lua_pop(L, 1);
      lua_pushfstring(L, "genesys.notify: resync: expected true or a list of families (%s), "
                         "got \"%s\"", gn_rs_names(), bad);
      return -1;
    }
  }
  lua_pop(L, 1);
  return 0;
}

void lgn_resync_metrics(lua_State *L, const void *sp) {
  const gn_metrics_snapshot_t *s = sp;
  lgn_setint(L, "resync_runs", s->resync_runs);
  lgn_setint(L, "resync_entities", s->resync_entities);
  lgn_setint(L, "resync_requests", s->resync_requests);
  lgn_setint(L, "resync_stale", s->resync_stale);
  lgn_setint(L, "resync_forbidden", s->resync_forbidden);
  lgn_setint(L, "resync_rate_limited", s->resync_rate_limited);
  lgn_setint(L, "resync_failed", s->resync_failed);
}

/* client:resync_gap(from_ms, to_ms): every topic was deaf over that interval, a gap known
 * above the client (a reader of nginx's ring that missed items): a resync heals it. Returns
 * true; nil, "resync is off" when the client has no resync (nothing heals it); nil and a
 * message when the client is not running. */
int lgn_client_resync_gap(lua_State *L) {
  lclient_t *u = lgn_check_open(L, 1);
  double from = luaL_checknumber(L, 2), to = luaL_checknumber(L, 3);
  luaL_argcheck(L, from <= to, 3, "expected to_ms >= from_ms");
  int rc = gn_client_heal(u->c, from, to);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushstring(L, rc == -2 ? "resync is off" : "the client is not running");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}
