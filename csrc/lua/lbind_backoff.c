/* lbind_backoff.c: the Lua face of the backoff engine (genesys.notify.core.backoff_new and the
 * "genesys.notify.backoff" object). A Lua policy object owns one gn_backoff_t; it is driven from
 * one Lua state, so no locking. Errors in configuration raise with the field's name. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lbind.h"

typedef struct {
  gn_backoff_t b;
} lbackoff_t;

static const char *const policy_keys[] = {
  "base_ms", "max_ms", "multiplier", "jitter", "jitter_pct", "max_retries", "max_window_ms",
  "reset_after_ms", "retry_after_max_ms", "seed", NULL
};

static lua_Number field_number(lua_State *L, int t, const char *k, lua_Number def) {
  lua_getfield(L, t, k);
  lua_Number v = def;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "backoff.%s: expected a number, got %s", k, luaL_typename(L, -1));
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* A non-negative integer below 2^32 (max_retries) or 2^53 (seed). */
static int field_uint(lua_State *L, int t, const char *k, double limit, uint64_t *out) {
  lua_getfield(L, t, k);
  int present = !lua_isnil(L, -1);
  if (present) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "backoff.%s: expected a non-negative integer, got %s", k,
                 luaL_typename(L, -1));
    lua_Number n = lua_tonumber(L, -1);
    if (!gn_isinteger(L, -1) || n < 0 || n >= limit) {
      char msg[160]; /* lua_pushfstring has no %.0f */
      snprintf(msg, sizeof msg, "backoff.%s: expected a non-negative integer below %.0f, got %.17g",
               k, limit, (double)n);
      luaL_error(L, "%s", msg);
    }
    *out = (uint64_t)n;
  }
  lua_pop(L, 1);
  return present;
}

void lgn_backoff_policy_from_table(lua_State *L, int idx, gn_backoff_policy_t *p) {
  gn_backoff_policy_default(p);
  if (lua_isnoneornil(L, idx)) return;
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx))
    luaL_error(L, "backoff: expected a table, got %s", luaL_typename(L, idx));

  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int known = 0;
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -2);
      for (const char *const *q = policy_keys; *q; q++)
        if (strcmp(*q, k) == 0) { known = 1; break; }
      if (!known) luaL_error(L, "backoff.%s: unknown field (expected one of base_ms, max_ms, "
                             "multiplier, jitter, jitter_pct, max_retries, max_window_ms, "
                             "reset_after_ms, retry_after_max_ms, seed)", k);
    } else {
      luaL_error(L, "backoff: expected string keys, got a %s key", luaL_typename(L, -2));
    }
    lua_pop(L, 1);
  }

  p->base_ms = field_number(L, idx, "base_ms", p->base_ms);
  p->max_ms = field_number(L, idx, "max_ms", p->max_ms);
  p->multiplier = field_number(L, idx, "multiplier", p->multiplier);
  p->jitter_pct = field_number(L, idx, "jitter_pct", p->jitter_pct);
  p->max_window_ms = field_number(L, idx, "max_window_ms", p->max_window_ms);
  p->reset_after_ms = field_number(L, idx, "reset_after_ms", p->reset_after_ms);
  p->retry_after_max_ms = field_number(L, idx, "retry_after_max_ms", p->retry_after_max_ms);
  uint64_t u;
  if (field_uint(L, idx, "max_retries", 4294967296.0, &u)) p->max_retries = (uint32_t)u;
  if (field_uint(L, idx, "seed", 9007199254740992.0, &u)) { p->has_seed = 1; p->seed = u; }

  lua_getfield(L, idx, "jitter");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "backoff.jitter: expected a string, got %s", luaL_typename(L, -1));
    if (gn_jitter_parse(lua_tostring(L, -1), &p->jitter))
      luaL_error(L, "backoff.jitter: expected one of none, full, equal, decorrelated, "
                 "proportional, seed; got '%s'", lua_tostring(L, -1));
  }
  lua_pop(L, 1);

  char err[256];
  if (gn_backoff_policy_check(p, err, sizeof err)) luaL_error(L, "%s", err);
}

void lgn_backoff_policy_push(lua_State *L, const gn_backoff_policy_t *p) {
  lua_createtable(L, 0, 10);
  lua_pushnumber(L, p->base_ms); lua_setfield(L, -2, "base_ms");
  lua_pushnumber(L, p->max_ms); lua_setfield(L, -2, "max_ms");
  lua_pushnumber(L, p->multiplier); lua_setfield(L, -2, "multiplier");
  lua_pushstring(L, gn_jitter_name(p->jitter)); lua_setfield(L, -2, "jitter");
  lua_pushnumber(L, p->jitter_pct); lua_setfield(L, -2, "jitter_pct");
  lua_pushnumber(L, (lua_Number)p->max_retries); lua_setfield(L, -2, "max_retries");
  lua_pushnumber(L, p->max_window_ms); lua_setfield(L, -2, "max_window_ms");
  lua_pushnumber(L, p->reset_after_ms); lua_setfield(L, -2, "reset_after_ms");
  lua_pushnumber(L, p->retry_after_max_ms); lua_setfield(L, -2, "retry_after_max_ms");
  if (p->has_seed) { lua_pushnumber(L, (lua_Number)p->seed); lua_setfield(L, -2, "seed"); }
}

static lbackoff_t *check(lua_State *L) {
  return (lbackoff_t *)luaL_checkudata(L, 1, LGN_BACKOFF_MT);
}

/* backoff_new(policy_table) -> object; raises on a bad policy. */
static int l_new(lua_State *L) {
  gn_backoff_policy_t p;
  lgn_backoff_policy_from_table(L, 1, &p);
  lbackoff_t *o = (lbackoff_t *)lua_newuserdata(L, sizeof *o);
  char err[256];
  if (gn_backoff_init(&o->b, &p, err, sizeof err)) return luaL_error(L, "%s", err);
  luaL_setmetatable(L, LGN_BACKOFF_MT);
  return 1;
}

/* ctx.retry_after_ms and ctx.now_ms, both optional. */
static void read_ctx(lua_State *L, int idx, gn_backoff_t *b, double *retry_after, uint64_t *now) {
  *retry_after = -1;
  *now = gn_backoff_now(b);
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "retry_after_ms");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER || isnan(lua_tonumber(L, -1)) || lua_tonumber(L, -1) < 0)
      luaL_error(L, "ctx.retry_after_ms: expected a non-negative number, got %s",
                 lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
    *retry_after = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "now_ms");
  if (!lua_isnil(L, -1)) {
    lua_Number n = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(n >= 0 && n < 9007199254740992.0))
      luaL_error(L, "ctx.now_ms: expected a non-negative number of milliseconds, got %s",
                 lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
    *now = (uint64_t)n;
  }
  lua_pop(L, 1);
}

/* p:next(ctx) -> delay_ms | nil, reason */
static int l_next(lua_State *L) {
  lbackoff_t *o = check(L);
  double ra, d;
  uint64_t now;
  read_ctx(L, 2, &o->b, &ra, &now);
  gn_backoff_status_t st = gn_backoff_next(&o->b, ra, now, &d);
  if (st != GN_BACKOFF_OK) {
    lua_pushnil(L);
    lua_pushstring(L, gn_backoff_status_name(st));
    return 2;
  }
  lua_pushnumber(L, d);
  return 1;
}

/* p:delays(n) -> {d1, ..., dk}[, give_up_reason]: the delays a fresh copy of this policy would
 * produce for n consecutive failures, each attempt failing at once when its delay ends. The
 * object's own state and generator are untouched. */
static int l_delays(lua_State *L) {
  lbackoff_t *o = check(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0 && n <= 1000000, 2, "expected a count between 0 and 1000000");
  gn_backoff_t copy = o->b;
  gn_backoff_reset(&copy);
  uint64_t now = 0;
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    double d;
    gn_backoff_status_t st = gn_backoff_next(&copy, -1, now, &d);
    if (st != GN_BACKOFF_OK) {
      lua_pushstring(L, gn_backoff_status_name(st));
      return 2;
    }
    lua_pushnumber(L, d);
    lua_rawseti(L, -2, (int)i);
    now += (uint64_t)d;
  }
  return 1;
}

static int l_reset(lua_State *L) {
  gn_backoff_reset(&check(L)->b);
  return 0;
}

/* p:succeeded(ctx): a connection came up (ctx.now_ms optional). */
static int l_succeeded(lua_State *L) {
  lbackoff_t *o = check(L);
  double ra;
  uint64_t now;
  read_ctx(L, 2, &o->b, &ra, &now);
  gn_backoff_succeeded(&o->b, now);
  return 0;
}

static int l_attempt(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check(L)->b.attempt);
  return 1;
}

static int l_policy(lua_State *L) {
  lgn_backoff_policy_push(L, &check(L)->b.policy);
  return 1;
}

static int l_seed(lua_State *L) {
  lbackoff_t *o = check(L);
  luaL_argcheck(L, gn_isinteger(L, 2) && lua_tonumber(L, 2) >= 0, 2,
                "expected a non-negative integer seed");
  gn_backoff_seed(&o->b, (uint64_t)lua_tonumber(L, 2));
  return 0;
}

static int l_tostring(lua_State *L) {
  lbackoff_t *o = check(L);
  const gn_backoff_policy_t *p = &o->b.policy;
  lua_pushfstring(L, "genesys.notify.backoff(%s, base %d ms, max %d ms, x%f, attempt %d)",
                  gn_jitter_name(p->jitter), (int)p->base_ms, (int)p->max_ms,
                  (lua_Number)p->multiplier, (int)o->b.attempt);
  return 1;
}

/* backoff_default() -> the default policy as a table */
static int l_default(lua_State *L) {
  gn_backoff_policy_t p;
  gn_backoff_policy_default(&p);
  lgn_backoff_policy_push(L, &p);
  return 1;
}

int lgn_open_backoff(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"next", l_next}, {"delays", l_delays}, {"reset", l_reset}, {"succeeded", l_succeeded},
    {"attempt", l_attempt}, {"policy", l_policy}, {"seed", l_seed}, {NULL, NULL}
  };
  if (luaL_newmetatable(L, LGN_BACKOFF_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  /* module table is at the top */
  lua_pushcfunction(L, l_new);
  lua_setfield(L, -2, "backoff_new");
  lua_pushcfunction(L, l_default);
  lua_setfield(L, -2, "backoff_default");
  return 0;
}
