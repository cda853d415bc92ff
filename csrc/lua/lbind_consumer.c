/* lbind_consumer.c: the Lua face of gn_consumer_t ("genesys.notify.consumer" objects): a
 * reader of a fleet's Redis Stream with start/poll/run/fd/close/metrics like a client.
 * Callbacks run only inside poll()/run() on the caller's lua_State. In group mode each event is
 * acknowledged (XACK) after on_event returned without raising; an event whose handler raised
 * stays pending and is claimed again after claim_idle_ms. */
#include "consumer.h"
#include "gn_util.h"
#include "lbind.h"

#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LGN_CONSUMER_MT "genesys.notify.consumer"
#define POLL_MAX 4096

typedef struct {
  lgn_caller_t caller; /* the callback running now, for poll()/run()'s re-entry check */
  gn_consumer_t *c;
  int closed;
  pid_t pid;
} lconsumer_t;

static lconsumer_t *check_any(lua_State *L) {
  return (lconsumer_t *)luaL_checkudata(L, 1, LGN_CONSUMER_MT);
}
static lconsumer_t *check_open(lua_State *L) {
  lconsumer_t *u = check_any(L);
  if (u->pid != getpid())
    luaL_error(L, "genesys.notify: this consumer was created in process %d, before a fork(); "
                  "create it in the process that uses it", (int)u->pid);
  if (u->closed || !u->c) luaL_error(L, "genesys.notify: the consumer is closed");
  return u;
}

static int poll_items(lua_State *L, lconsumer_t *u, int timeout_ms, int max) {
  gn_item_t *it = gn_consumer_pop(u->c);
  if (!it && timeout_ms != 0) {
    struct pollfd pfd = {gn_consumer_fd(u->c), POLLIN, 0};
    poll(&pfd, 1, timeout_ms < 0 ? -1 : timeout_ms);
    it = gn_consumer_pop(u->c);
  }
  lua_getuservalue(L, 1);
  int uv = lua_gettop(L);
  int n = 0;
  while (it) {
    int ev = it->type == GN_ITEM_EVENT;
    char id[64] = "";
    if (ev) {
      const char *s = json_string_value(json_object_get(it->data, "id"));
      if (s && strlen(s) < sizeof id) strcpy(id, s);
    }
    int ok = lgn_dispatch(L, &u->caller, uv, ev ? "on_event" : "on_health", lgn_entry_table, it) != 0;
    gn_item_free(it);
    if (ev && ok && id[0] && !u->closed) gn_consumer_ack(u->c, id);
    n++;
    if (u->closed || n >= max) break;
    it = gn_consumer_pop(u->c);
  }
  lua_pop(L, 1);
  return n;
}

static int l_poll(lua_State *L) {
  lconsumer_t *u = check_any(L);
  lua_Number t = luaL_optnumber(L, 2, 0);
  /* at most max items (the rest wait in the queue; reads pause when it is half full) */
  lua_Integer max = luaL_optinteger(L, 3, POLL_MAX);
  if (max < 1 || max > POLL_MAX) return luaL_argerror(L, 3, "expected an integer from 1 to 4096");
  if (u->caller.in_callback) return luaL_error(L, "genesys.notify: poll() called from inside a callback");
  if (u->closed || !u->c) {
    lua_pushinteger(L, 0);
    return 1;
  }
  check_open(L);
  int timeout = t < 0 || t == HUGE_VAL ? -1 : t > 2147483647.0 ? 2147483647 : (int)t;
  lua_pushinteger(L, poll_items(L, u, timeout, (int)max));
  return 1;
}

static int l_run(lua_State *L) {
  lconsumer_t *u = check_open(L);
  if (u->caller.in_callback) return luaL_error(L, "genesys.notify: run() called from inside a callback");
  while (!u->closed && u->c) poll_items(L, u, 1000, POLL_MAX);
  lua_pushliteral(L, "closed");
  return 1;
}

static int l_start(lua_State *L) {
  lconsumer_t *u = check_open(L);
  if (gn_consumer_start(u->c) != 0) return luaL_error(L, "genesys.notify: start(): already started");
  lua_settop(L, 1);
  return 1;
}

static int l_fd(lua_State *L) {
  lconsumer_t *u = check_open(L);
  lua_pushinteger(L, gn_consumer_fd(u->c));
  return 1;
}

static int l_close(lua_State *L) {
  lconsumer_t *u = check_any(L);
  if (!u->closed) {
    u->closed = 1;
    if (u->c) gn_consumer_close(u->c);
    lua_newtable(L);
    lua_setuservalue(L, 1);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_gc(lua_State *L) {
  lconsumer_t *u = check_any(L);
  u->closed = 1;
  gn_consumer_free(u->c);
  u->c = NULL;
  return 0;
}

static void setint(lua_State *L, const char *k, uint64_t v) {
  lua_pushnumber(L, (lua_Number)v);
  lua_setfield(L, -2, k);
}

static int l_metrics(lua_State *L) {
  lconsumer_t *u = check_any(L);
  if (!u->c) return luaL_error(L, "genesys.notify: the consumer is closed");
  gn_consumer_stats_t s;
  gn_consumer_stats(u->c, &s);
  lua_createtable(L, 0, 10);
  setint(L, "events", s.events);
  setint(L, "stale", s.stale);
  setint(L, "gaps", s.gaps);
  setint(L, "acked", s.acked);
  setint(L, "claimed", s.claimed);
  setint(L, "dropped", s.dropped);
  setint(L, "trimmed", s.trimmed);
  setint(L, "trimmed_entries", s.trimmed_entries);
  setint(L, "highest_fence", s.highest_fence);
  lua_pushboolean(L, s.redis_up);
  lua_setfield(L, -2, "redis_up");
  return 1;
}

static int l_tostring(lua_State *L) {
  lconsumer_t *u = check_any(L);
  lua_pushfstring(L, "genesys.notify.consumer (%s) %p", u->closed ? "closed" : "open", (void *)u);
  return 1;
}

static const char *str(lua_State *L, const char *k) {
  lua_getfield(L, 1, k);
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1); /* the table keeps it */
  return s;
}
static double num(lua_State *L, const char *k, double def) {
  lua_getfield(L, 1, k);
  double v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : def;
  lua_pop(L, 1);
  return v;
}

static const char *field_str(lua_State *L, int idx, const char *k) {
  lua_getfield(L, idx, k);
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1); /* the table keeps it */
  return s;
}

void lgn_redis_opts(lua_State *L, int idx, gn_redis_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->url = field_str(L, idx, "url");
  o->password_file = field_str(L, idx, "password_file");
  o->tls_ca_file = field_str(L, idx, "tls_ca_file");
  o->tls_cert_file = field_str(L, idx, "tls_cert_file");
  o->tls_key_file = field_str(L, idx, "tls_key_file");
  o->tls_server_name = field_str(L, idx, "tls_server_name");
  o->sentinel_master = field_str(L, idx, "sentinel_master");
  o->sentinel_addrs = field_str(L, idx, "sentinel_addrs");
  o->sentinel_user = field_str(L, idx, "sentinel_user");
  o->sentinel_password = field_str(L, idx, "sentinel_password");
  o->sentinel_password_file = field_str(L, idx, "sentinel_password_file");
  lua_getfield(L, idx, "sentinel_min_replicas");
  o->sentinel_min_replicas = lua_type(L, -1) == LUA_TNUMBER ? (int)lua_tointeger(L, -1) : -1;
  lua_pop(L, 1);
}

/* core.redis_check(t): checks a normalized Redis connection table as a client or consumer would
 * (the URL, the password files, the TLS files); raises the error naming the field. Returns
 * true, and whether this build has TLS. */
static int l_redis_check(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  gn_redis_opts_t o;
  lgn_redis_opts(L, 1, &o);
  gn_redis_conf_t conf;
  char err[320];
  if (gn_redis_conf_init(&conf, &o, err, sizeof err) != 0) return luaL_error(L, "%s", err);
  gn_redis_conf_clear(&conf);
  lua_pushboolean(L, 1);
  lua_pushboolean(L, GN_HIREDIS_SSL);
  return 2;
}

/* core.consumer_new(cfg): cfg validated by genesys.notify.consumer. */
static int l_consumer_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  gn_consumer_cfg_t cfg;
  memset(&cfg, 0, sizeof cfg);
  lgn_redis_opts(L, 1, &cfg.redis);
  cfg.key = str(L, "key");
  const char *mode = str(L, "mode");
  cfg.group = mode && strcmp(mode, "group") == 0;
  cfg.group_name = str(L, "group");
  cfg.consumer_name = str(L, "consumer");
  cfg.block_ms = num(L, "block_ms", 1000);
  cfg.claim_idle_ms = num(L, "claim_idle_ms", 30000);
  cfg.count = (size_t)num(L, "count", 100);
  cfg.queue_limit = (size_t)num(L, "queue_limit", 10000);
  cfg.after_id = str(L, "after_id");
  lconsumer_t *u = (lconsumer_t *)lua_newuserdata(L, sizeof *u);
  memset(u, 0, sizeof *u);
  u->caller.what = "consumer ";
  u->pid = getpid();
  luaL_setmetatable(L, LGN_CONSUMER_MT);
  lua_createtable(L, 0, 2);
  lua_getfield(L, 1, "on_event");
  lua_setfield(L, -2, "on_event");
  lua_getfield(L, 1, "on_health");
  lua_setfield(L, -2, "on_health");
  lua_setuservalue(L, -2);
  char err[256] = "";
  u->c = gn_consumer_new(&cfg, NULL, err, sizeof err);
  if (!u->c) {
    u->closed = 1;
    return luaL_error(L, "genesys.notify: %s", err);
  }
  return 1;
}

int lgn_open_consumer(lua_State *L) {
  static const luaL_Reg methods[] = {{"start", l_start}, {"poll", l_poll},   {"run", l_run},
                                     {"fd", l_fd},       {"close", l_close}, {"metrics", l_metrics},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, LGN_CONSUMER_MT)) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
#if GN_HAVE_CLOSE
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__close");
#endif
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_consumer_new);
  lua_setfield(L, -2, "consumer_new");
  lua_pushcfunction(L, l_redis_check);
  lua_setfield(L, -2, "redis_check");
  return 0;
}
