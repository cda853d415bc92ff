/* lbind_new.c: core.client_new(cfg), a client from the table genesys.notify builds after
 * validating the user's configuration. The Lua thread. */
#include "lbind_client.h"
#include "queue.h"

#include <string.h>


static const char *opt_string(lua_State *L, int t, const char *k, int required) {
  lua_getfield(L, t, k);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    if (required) luaL_error(L, "genesys.notify: %s: expected a string, got nil", k);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "genesys.notify: %s: expected a string, got %s", k, luaL_typename(L, -1));
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1); /* the table keeps it alive */
  return s;
}
static double opt_number(lua_State *L, int t, const char *k, double def, double lo, double hi) {
  lua_getfield(L, t, k);
  double v = def;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "genesys.notify: %s: expected a number, got %s", k, luaL_typename(L, -1));
    v = lua_tonumber(L, -1);
    if (!(v >= lo && v <= hi))
      luaL_error(L, "genesys.notify: %s: expected a number from %g to %g, got %g", k, lo, hi, v);
  }
  lua_pop(L, 1);
  return v;
}

/* Reads the rows of a table of options (conf.h) from the normalized table at t, by key, into
 * the struct at base: an absent key is the row's default (a string: NULL). */
static void read_rows(lua_State *L, int t, const gn_conf_opt_t *rows, size_t n, void *base) {
  for (size_t i = 0; i < n; i++) {
    const gn_conf_opt_t *o = &rows[i];
    switch (o->ctype) {
    case GN_OPT_T_STR: gn_conf_opt_set_str(base, o, opt_string(L, t, o->key, 0)); break;
    case GN_OPT_T_BOOL:
      lua_getfield(L, t, o->key);
      gn_conf_opt_set(base, o, lua_isnil(L, -1) ? o->def : lua_toboolean(L, -1));
      lua_pop(L, 1);
      break;
    case GN_OPT_T_ENUM: {
      const char *v = opt_string(L, t, o->key, 0);
      int c = v ? gn_conf_opt_choice(o, v) : (int)o->def;
      if (c < 0) luaL_error(L, "genesys.notify: %s: expected one of %s, got %s", o->field, o->choices, v);
      gn_conf_opt_set(base, o, c);
      break;
    }
    default: gn_conf_opt_set(base, o, opt_number(L, t, o->key, o->def, o->lo, o->hi)); break;
    }
  }
}

static int backoff_protected(lua_State *L) {
  lgn_backoff_policy_from_table(L, 1, (gn_backoff_policy_t *)lua_touserdata(L, 2));
  return 0;
}

/* The backoff policy at idx (nil: the defaults), checked by the backoff module's rules. A bad
 * one raises like every configuration error ("genesys.notify: backoff.FIELD: expected ..."),
 * without the position the Lua error machinery would put first. */
static void read_backoff(lua_State *L, int idx, gn_backoff_policy_t *p) {
  lua_pushcfunction(L, backoff_protected);
  lua_pushvalue(L, idx);
  lua_pushlightuserdata(L, p);
  if (lua_pcall(L, 2, 0, 0) == 0) return;
  const char *msg = lua_tostring(L, -1);
  if (!msg) msg = "backoff: invalid";
  const char *colon = strstr(msg, ": backoff");
  if (colon && strncmp(msg, "backoff", 7) != 0) msg = colon + 2; /* "file:line: backoff..." */
  lua_pushfstring(L, "genesys.notify: %s", msg);
  lua_error(L);
}

/* core.client_new(cfg): cfg is the table genesys.notify builds after validating the user's
 * configuration (field names there are the user's; here they are the normalized ones). */
int lgn_client_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  gn_client_cfg_t cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.token_url = opt_string(L, 1, "token_url", 1);
  cfg.api_base = opt_string(L, 1, "api_base", 1);
  cfg.client_id = opt_string(L, 1, "client_id", 1);
  cfg.client_secret = opt_string(L, 1, "client_secret", 1);
  /* the proxy, taken apart by genesys.notify (proxy_host NULL: none) */
  cfg.proxy.host = (char *)opt_string(L, 1, "proxy_host", 0);
  cfg.proxy.port = (int)opt_number(L, 1, "proxy_port", 0, 0, 65535);
  cfg.proxy.user = (char *)opt_string(L, 1, "proxy_user", 0);
  cfg.proxy.pass = (char *)opt_string(L, 1, "proxy_pass", 0);
  cfg.proxy.no_proxy = (char *)opt_string(L, 1, "no_proxy", 0);
  read_rows(L, 1, gn_conf_opts, gn_conf_nopts, &cfg); /* the table of options (conf.h) */
  if (lgn_resync_config(L, 1, &cfg) != 0) return lua_error(L); /* lbind_resync.c: families */
  lua_getfield(L, 1, "backoff");
  read_backoff(L, lua_gettop(L), &cfg.backoff);
  lua_pop(L, 1);
  size_t nt = 0;
  const char **topics = NULL;
  lua_getfield(L, 1, "topics");
  int tidx = lua_gettop(L);
  if (!lua_isnil(L, tidx)) topics = lgn_read_topics(L, tidx, &nt, "new");
  cfg.topics = topics;
  cfg.ntopics = nt;
  /* on_event / on_health go to the user value. */
  lua_getfield(L, 1, "on_event");
  lua_getfield(L, 1, "on_health");
  lua_getfield(L, 1, "policy");
  static const char *const cbname[] = {"on_event", "on_health", "policy"};
  for (int i = -3; i <= -1; i++)
    if (!lua_isnil(L, i) && !lua_isfunction(L, i))
      luaL_error(L, "genesys.notify: %s: expected a function, got %s", cbname[i + 3],
                 luaL_typename(L, i));
  cfg.policy = lua_isfunction(L, -1);
  lclient_t *u = (lclient_t *)lua_newuserdata(L, sizeof *u);
  memset(u, 0, sizeof *u);
  u->caller.state = lgn_client_state_of;
  u->caller.what = "";
  u->pid = getpid();
  luaL_setmetatable(L, LGN_CLIENT_MT);
  lua_createtable(L, 0, 3);
  lua_pushvalue(L, -5); /* [on_event, on_health, policy, ud, uv] */
  lua_setfield(L, -2, "on_event");
  lua_pushvalue(L, -4);
  lua_setfield(L, -2, "on_health");
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "policy");
  lua_getfield(L, 1, "audit_sink"); /* the audit line writer, for drain() (poll: in on_health) */
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    luaL_error(L, "genesys.notify: audit: expected a sink function, got %s", luaL_typename(L, -1));
  lua_setfield(L, -2, "audit");
  lua_setuservalue(L, -2);
  gn_service_t *svc = NULL;
  lua_getfield(L, 1, "context");
  if (!lua_isnil(L, -1)) {
    lcontext_t *x = (lcontext_t *)luaL_testudata(L, -1, LGN_CONTEXT_MT);
    if (!x)
      return luaL_error(L, "genesys.notify: context: expected a context from notify.context(), got %s",
                        luaL_typename(L, -1));
    if (x->pid != getpid()) lgn_refuse_forked(L, "context", x->pid);
    if (!x->svc) luaL_error(L, "genesys.notify: context: expected an open context, got a closed one");
    svc = x->svc;
  }
  lua_pop(L, 1);
  char err[256] = "";
  u->c = gn_client_new(&cfg, svc, err, sizeof err);
  if (!u->c) {
    u->closed = 1;
    return luaL_error(L, "genesys.notify: %s", err);
  }
  lua_getfield(L, 1, "redis"); /* a fleet member: see lease.h */
  if (!lua_isnil(L, -1)) {
    if (!lua_istable(L, -1))
      return luaL_error(L, "genesys.notify: redis: expected a table, got %s", luaL_typename(L, -1));
    int r = lua_gettop(L);
    gn_lease_cfg_t lc;
    memset(&lc, 0, sizeof lc);
    lgn_redis_opts(L, r, &lc.redis);
    read_rows(L, r, gn_lease_opts, gn_lease_nopts, &lc); /* the fleet's rows (lease.h) */
    if (!gn_fleet_join(u->c, &lc, err, sizeof err))
      return luaL_error(L, "genesys.notify: %s", err);
  }
  lua_pop(L, 1);
  return 1;
}

/* core.now_ms(): monotonic milliseconds (tests and benchmarks time with it). */

/* See lbind_client.h. */
static void push_rows(lua_State *L, const gn_conf_opt_t *rows, size_t n, const char *docfile,
                      int *index) {
  static const char *const kinds[] = {"ms",     "int",    "bytes",   "fraction", "flag",
                                      "choice", "string", "pemfile", "label"};
  static const char *const types[] = {"long", "size", "int", "double", "bool", "string", "enum"};
  for (size_t i = 0; i < n; i++) {
    const gn_conf_opt_t *o = &rows[i];
    lua_createtable(L, 0, 10);
    lua_pushstring(L, o->key);
    lua_setfield(L, -2, "key");
    lua_pushstring(L, kinds[o->kind]);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, types[o->ctype]);
    lua_setfield(L, -2, "type");
    if (o->ctype == GN_OPT_T_ENUM) {
      /* the default as the user writes it */
      const char *c = o->choices;
      for (int k = 0; k < (int)o->def && strchr(c, '|'); k++) c = strchr(c, '|') + 1;
      const char *bar = strchr(c, '|');
      lua_pushlstring(L, c, bar ? (size_t)(bar - c) : strlen(c));
    } else if (o->ctype == GN_OPT_T_BOOL) {
      lua_pushboolean(L, o->def != 0);
    } else if (o->ctype == GN_OPT_T_STR) {
      lua_pushnil(L);
    } else {
      lgn_push_number(L, o->def);
    }
    lua_setfield(L, -2, "default");
    lgn_push_number(L, o->lo);
    lua_setfield(L, -2, "lo");
    lgn_push_number(L, o->hi);
    lua_setfield(L, -2, "hi");
    lua_pushstring(L, o->choices);
    lua_setfield(L, -2, "choices");
    lua_pushstring(L, o->doc);
    lua_setfield(L, -2, "doc");
    lua_pushstring(L, docfile);
    lua_setfield(L, -2, "docfile");
    lua_pushinteger(L, ++*index);
    lua_setfield(L, -2, "index");
    lua_setfield(L, -2, o->field);
  }
}

void lgn_push_options(lua_State *L) {
  int index = 0;
  lua_createtable(L, 0, (int)(gn_conf_nopts + gn_lease_nopts));
  push_rows(L, gn_conf_opts, gn_conf_nopts, "client", &index);
  push_rows(L, gn_lease_opts, gn_lease_nopts, "fleet", &index);
}
