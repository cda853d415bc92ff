/* lbind.h: what the Lua binding files share. Only lbind_*.c include this (and lua.h). */
#ifndef GN_LBIND_H
#define GN_LBIND_H

#include "backoff.h"
#include "compat.h"
#include "redis.h"

#include <stdint.h>

/* The module is built with -fvisibility=hidden: only the luaopen_* entry points are exported, so
 * the core's names never clash with another library loaded into the same process (nginx). */
#define GN_EXPORT __attribute__((visibility("default")))

#define LGN_BACKOFF_MT "genesys.notify.backoff"

/* Reads a backoff policy table at idx into *p, starting from the defaults. Raises a Lua error
 * naming the field ("backoff.base_ms: expected ...") on a wrong type, an out-of-range or
 * non-finite value, an unknown key, or an inconsistent policy. A nil/none idx gives the defaults.
 * The message always starts with "backoff" (the prefix is fixed, not chosen by the caller).
 * Returns nothing. The Lua thread (a lua_State is never used elsewhere). */
void lgn_backoff_policy_from_table(lua_State *L, int idx, gn_backoff_policy_t *p);

/* Pushes the policy as a table (every field, jitter by name; seed only when set). Returns
 * nothing. The Lua thread. */
void lgn_backoff_policy_push(lua_State *L, const gn_backoff_policy_t *p);

/* Pushes the Lua value of the jansson tree j (lbind_tree.c: objects as tables, null as the light
 * userdata NULL, whole-number reals as integers on 5.4); raises on nesting deeper than 1,000 or
 * out of memory. Returns nothing. The Lua thread. */
struct json_t;
void lgn_push_tree(lua_State *L, struct json_t *j);

/* A lua_CFunction: pushes the Lua value of the jansson tree (a json_t *) passed as a light
 * userdata, as events and health items are converted; raises on nesting deeper than 1,000 or out
 * of memory (call it with lua_pcall). Returns 1. The Lua thread. */
int lgn_push_json(lua_State *L);

/* Pushes the Lua value of the JSON text s (len bytes) as lgn_push_json would push jansson's tree
 * of it (csrc/lbind_json.c; the text was validated by the service thread, so anything it cannot
 * decode raises, as does nesting deeper than 1,000). Returns nothing. The Lua thread. */
void lgn_json_push(lua_State *L, const char *s, size_t len);

/* Pushes the event item as genesys.notify.resty's ring record text (lbind_ring.c) and returns
 * 1, or pushes nothing and returns 0 when a field cannot go in the record's header (a tab or a
 * newline in it). May raise (memory). The Lua thread. */
struct gn_item;
int lgn_push_ring_record(lua_State *L, const struct gn_item *it);

/* Fills *o with the Redis connection fields of the normalized table at idx (url, password_file,
 * tls_*, sentinel_*: see genesys.notify's redis_conn); the strings stay the table's. Returns
 * nothing. The Lua thread. */
void lgn_redis_opts(lua_State *L, int idx, gn_redis_opts_t *o);

/* t[k] = v at the stack top: a number; an integer (a float on LuaJIT/5.1). Return nothing. */
static inline void lgn_setnum(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}
static inline void lgn_setint(lua_State *L, const char *k, uint64_t v) {
#if LUA_VERSION_NUM >= 503
  lua_pushinteger(L, (lua_Integer)v);
#else
  lua_pushnumber(L, (lua_Number)v);
#endif
  lua_setfield(L, -2, k);
}

/* Pushes d: an integer when it is whole (Lua 5.4), else a number. Returns nothing. */
static inline void lgn_push_number(lua_State *L, double d) {
#if LUA_VERSION_NUM >= 503
  if (d == (double)(lua_Integer)d) {
    lua_pushinteger(L, (lua_Integer)d);
    return;
  }
#endif
  lua_pushnumber(L, d);
}

/* ---- items and callbacks (lbind_items.c), shared by the client and the consumer ---- */
struct gn_item;
/* Who runs callbacks: the callback of this object running now ("on_event", ...) or NULL (poll()
 * and run() refuse to run inside one), the state shown in a callback_error report (NULL: no
 * state field) and a prefix for stderr lines ("" or "consumer "). */
typedef struct lgn_caller {
  const char *in_callback;
  const char *(*state)(struct lgn_caller *self);
  const char *what;
} lgn_caller_t;

/* A lua_CFunction: [item (light userdata), raw_only] -> the client's table for the item (an
 * event's body decoded from the text the service thread validated, unless raw_only; a health or
 * policy item's fields). May raise (memory): call it with lua_pcall. Returns 1. */
int lgn_item_table(lua_State *L);
/* A lua_CFunction: [item (light userdata)] -> the fleet consumer's table for a stream entry (its
 * tree's fields, and an event's body and raw text). May raise (memory). Returns 1. */
int lgn_entry_table(lua_State *L);
/* A lua_CFunction: the message at 1 with a traceback. Returns 1. */
int lgn_traceback(lua_State *L);
/* lua_pcall of the function below its one argument, u marked as running which. Returns
 * lua_pcall's code. */
int lgn_pcall_callback(lua_State *L, lgn_caller_t *u, const char *which, int nresults, int msgh);
/* Calls [fn, arg] at the top (popped) in protected mode with a traceback. Returns 0, or 1 with
 * the error message left on the stack. */
int lgn_call_protected(lua_State *L, lgn_caller_t *u, const char *which);
/* Reports the failing callback which (message at the top, popped) as health "callback_error"
 * (kind, state, timestamp_ms, callback, error) through uv's on_health, once; if that fails too or
 * there is none, on stderr. Returns nothing. */
void lgn_report_callback_error(lua_State *L, lgn_caller_t *u, int uv, const char *which);
/* Calls uv[which] with the table push makes of it. Returns 2 when uv has no such callback, 1 when
 * it ran without raising, 0 when building the table or the callback raised (reported as
 * above). The item stays the caller's to free. */
int lgn_dispatch(lua_State *L, lgn_caller_t *u, int uv, const char *which, lua_CFunction push,
                 struct gn_item *it);
/* close(): marks the uservalue at idx as closed (a run of events in progress stops) and gives
 * the userdata a new empty one (the callbacks can be collected). */
void lgn_close_uservalue(lua_State *L, int idx);
/* Delivers the events at the head of *batch to uv.on_event (tables as lgn_item_table makes
 * them), each freed and *batch advanced past it, until an item that is not an event, max
 * callbacks, or *closed (a callback closed the client). A table that cannot be built or a
 * callback that raises is reported as lgn_dispatch does, and the run goes on. Without an
 * on_event the events are freed uncounted. Returns the callbacks run. */
int lgn_deliver_events(lua_State *L, lgn_caller_t *u, int uv, struct gn_item **batch, int max,
                       const int *closed);

/* Register each part's functions into the module table at the top of the stack. Return 0: they
 * push nothing and leave the module table at the top (the metatables go to the registry). The
 * Lua thread, while the module loads (luaopen_genesys_notify_core). */
int lgn_open_backoff(lua_State *L);
int lgn_open_client(lua_State *L);
int lgn_open_consumer(lua_State *L); /* lbind_consumer.c: notify.consumer */
int lgn_open_json(lua_State *L); /* lbind_json.c: core.json_decode_text */
int lgn_open_ring(lua_State *L); /* lbind_ring.c: core.ring_decode_entry */
/* lbind_resync.c: reads the normalized table at idx's resync_* fields into cfg (which must be a
 * gn_client_cfg_t). Returns 0, or -1 with the error message pushed. */
int lgn_resync_config(lua_State *L, int idx, void *cfg);
/* client:resync_gap(from_ms, to_ms) (lbind_resync.c). The Lua thread. */
int lgn_client_resync_gap(lua_State *L);
/* Sets the resync counters of snapshot s (a gn_metrics_snapshot_t) in the table on top. */
void lgn_resync_metrics(lua_State *L, const void *s);

#endif
