/* lbind_client.c: the Lua face of gn_client_t ("genesys.notify.client" objects).
 *
 * The userdata holds a pointer to the malloc'd core client: the service thread may still hold
 * the core for a moment while close() waits for it. Callbacks live in the userdata's user value
 * and run only inside poll()/run() on the caller's lua_State; nothing here is ever called from
 * the service thread. __gc closes (joining the service thread's work for this client) and frees,
 * without calling Lua. A client or context used in a child process forked after it was made
 * raises (its service thread stayed in the parent); close() and __gc return at once there.
 *
 * Event bodies are decoded in C on this thread, from the raw text the service thread validated,
 * straight into Lua tables (lbind_json.c); poll() takes the items waiting in batches (one lock
 * per POLL_BATCH items).
 */
#include "gn_util.h"
#include "lbind_client.h"
#include "topics.h"

#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POLL_MAX_ITEMS 4096 /* per poll() call, so a busy stream cannot starve the caller */
#define POLL_BATCH 64       /* items taken from the queue under one lock */

/* A client or context used in a child process forked after it was made: its service thread
 * stayed in the parent. Raises. */
int lgn_refuse_forked(lua_State *L, const char *what, pid_t pid) {
  return luaL_error(L, "genesys.notify: this %s was created in process %d, before a fork(); it "
                       "cannot be used in process %d (its service thread is not in this "
                       "process). Create clients and contexts after the fork, in the process "
                       "that uses them (nginx: in init_worker_by_lua*, not init_by_lua*)",
                    what, (int)pid, (int)getpid());
}

/* The client at i, whatever its state: for close(), __gc and __tostring, which work (and
 * return at once) in a forked child too. */
lclient_t *lgn_check_client(lua_State *L, int i) {
  return (lclient_t *)luaL_checkudata(L, i, LGN_CLIENT_MT);
}
/* The client at i, which must belong to this process. */
lclient_t *lgn_check_here(lua_State *L, int i) {
  lclient_t *u = lgn_check_client(L, i);
  if (u->pid != getpid()) lgn_refuse_forked(L, "client", u->pid);
  return u;
}
lclient_t *lgn_check_open(lua_State *L, int i) {
  lclient_t *u = lgn_check_here(L, i);
  if (u->closed || !u->c) luaL_error(L, "genesys.notify: the client is closed");
  return u;
}

/* The operator's policy hook: policy(record) -> delay_ms (number), false (give up) or nil (keep
 * the engine's delay). Anything else, or an error, is reported as callback_error and the
 * engine's delay stands. */
void lgn_run_policy(lua_State *L, lclient_t *u, int uv, gn_item_t *it) {
  lua_getfield(L, uv, "policy");
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_pushcfunction(L, lgn_item_table);
  lua_pushlightuserdata(L, it);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    lua_remove(L, -2);
    lgn_report_callback_error(L, &u->caller, uv, "policy");
    return;
  }
  lua_pushcfunction(L, lgn_traceback);
  lua_insert(L, -3);
  int base = lua_gettop(L) - 2;
  int rc = lgn_pcall_callback(L, &u->caller, "policy", 1, base);
  lua_remove(L, base);
  if (rc != 0) {
    lgn_report_callback_error(L, &u->caller, uv, "policy");
    return;
  }
  if (lua_type(L, -1) == LUA_TNUMBER) {
    gn_client_policy_answer(u->c, it->seq, lua_tonumber(L, -1));
  } else if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
    gn_client_policy_answer(u->c, it->seq, -1);
  } else if (!lua_isnil(L, -1)) {
    lua_pushfstring(L, "policy returned %s: expected a delay in milliseconds, false (give up) or "
                       "nil (keep the engine's delay)", luaL_typename(L, -1));
    lua_remove(L, -2);
    lgn_report_callback_error(L, &u->caller, uv, "policy");
    return;
  }
  lua_pop(L, 1);
}

/* Up to POLL_BATCH items per lock of the queue (and per read of its eventfd when it empties),
 * never more than poll() may still run. */
static gn_item_t *pop_batch(lclient_t *u, int n) {
  int room = POLL_MAX_ITEMS - n;
  return gn_client_pop_batch(u->c, (size_t)(room < POLL_BATCH ? room : POLL_BATCH));
}

static int poll_items(lua_State *L, lclient_t *u, int timeout_ms) {
  gn_item_t *batch = pop_batch(u, 0);
  if (!batch && timeout_ms != 0) {
    struct pollfd pfd = {gn_client_fd(u->c), POLLIN, 0};
    poll(&pfd, 1, timeout_ms < 0 ? -1 : timeout_ms);
    batch = pop_batch(u, 0);
  }
  lua_getuservalue(L, 1);
  int uv = lua_gettop(L);
  int n = 0;
  while (batch) {
    gn_item_t *it = batch;
    if (it->type == GN_ITEM_EVENT) { /* a run of events, in one protected call */
      n += lgn_deliver_events(L, &u->caller, uv, &batch, POLL_MAX_ITEMS - n, &u->closed);
    } else {
      batch = it->next;
      it->next = NULL;
      const char *which = GN_ITEM_IS_EVENTLIKE(it->type) ? "on_event" : "on_health";
      if (it->type == GN_ITEM_POLICY) lgn_run_policy(L, u, uv, it), n++;
      else if (lgn_dispatch(L, &u->caller, uv, which, lgn_item_table, it) != 2) n++;
      gn_item_free(it);
    }
    if (u->closed || n >= POLL_MAX_ITEMS) break;
    if (!batch) batch = pop_batch(u, n);
  }
  /* Left over only when a callback closed the client: close() discards what waits anyway. */
  while (batch) {
    gn_item_t *it = batch;
    batch = it->next;
    gn_item_free(it);
  }
  lua_pop(L, 1);
  return n;
}

/* ---- drain(): the pull API ----
 * The items waiting, as tables, without calling on_event/on_health: the caller runs its handlers
 * itself (in OpenResty, where a handler may yield; a C function like poll() cannot be yielded
 * across). Policy records are still answered here by calling the policy hook (a computation on
 * the record; it must not yield) and are not returned. Health items are written to the audit
 * sink, when one is configured, as poll() does through on_health. */
#define DRAIN_MAX_ITEMS POLL_MAX_ITEMS

static void refuse_reentry(lua_State *L, lclient_t *u, const char *fn);

/* Builds the array of drain() in protected mode: [it (light), array, n, raw_only] -> array with
 * the item's table appended (at n + 1). */
static int drain_append(lua_State *L) {
  gn_item_t *it = (gn_item_t *)lua_touserdata(L, 1);
  lua_Integer n = lua_tointeger(L, 3);
  int raw_only = (int)lua_tointeger(L, 4);
  lua_settop(L, 2);
  if (raw_only == 2 && it->type == GN_ITEM_EVENT && lgn_push_ring_record(L, it)) {
    lua_rawseti(L, 2, (int)n + 1);
    return 0;
  }
  lua_pushcfunction(L, lgn_item_table);
  lua_pushlightuserdata(L, it);
  lua_pushboolean(L, raw_only != 0);
  lua_call(L, 2, 1);
  if (it->type == GN_ITEM_EVENT) lua_pushliteral(L, "event");
  else if (it->type == GN_ITEM_RESYNC) lua_pushliteral(L, "resync");
  else lua_pushliteral(L, "health");
  lua_setfield(L, -2, "item");
  lua_rawseti(L, 2, (int)n + 1);
  return 0;
}

/* Writes a health item's audit line (the sink configured with audit=, stored as "audit" in the
 * user value at uv). Stack: [..., item table]; leaves it. A failing sink is reported on stderr
 * (the same last resort as a failing on_health report): drain() calls no on_health. */
static void drain_audit(lua_State *L, lclient_t *u, int uv) {
  lua_getfield(L, uv, "audit");
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, -2);
  if (lgn_call_protected(L, &u->caller, "audit")) {
    fprintf(stderr, "genesys.notify: the audit sink raised: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

gn_item_t *lgn_drain_pop(lua_State *L, lclient_t *u, int uv) {
  while (!u->closed) {
    gn_item_t *it = gn_client_pop(u->c);
    if (!it || it->type != GN_ITEM_POLICY) return it;
    /* Answered here, not returned: the engine waits for the answer, not for the caller. */
    lgn_run_policy(L, u, uv, it);
    gn_item_free(it);
  }
  return NULL;
}

void lgn_drain_put(lua_State *L, lclient_t *u, int uv, int arr, int k, int mode, gn_item_t *it) {
  lua_pushcfunction(L, drain_append);
  lua_pushlightuserdata(L, it);
  lua_pushvalue(L, arr);
  lua_pushinteger(L, k);
  lua_pushinteger(L, mode);
  int rc = lua_pcall(L, 4, 0, 0);
  int health = it->type == GN_ITEM_HEALTH;
  gn_item_free(it);
  if (rc != 0) lua_error(L); /* out of memory building a table */
  if (health) {
    lua_rawgeti(L, arr, k + 1);
    drain_audit(L, u, uv);
    lua_pop(L, 1);
  }
}

static int l_drain(lua_State *L) {
  lclient_t *u = lgn_check_here(L, 1);
  refuse_reentry(L, u, "drain()");
  lua_Number m = DRAIN_MAX_ITEMS;
  if (!lua_isnoneornil(L, 2)) {
    if (lua_type(L, 2) != LUA_TNUMBER)
      return luaL_error(L, "genesys.notify: drain(max): expected an integer from 1 to %d, got "
                           "a %s", DRAIN_MAX_ITEMS, luaL_typename(L, 2));
    m = lua_tonumber(L, 2);
    if (!(m >= 1) || m != floor(m))
      return luaL_error(L, "genesys.notify: drain(max): expected an integer from 1 to %d (more "
                           "counts as %d), got %s", DRAIN_MAX_ITEMS, DRAIN_MAX_ITEMS,
                        lua_tostring(L, 2));
  }
  int max = m > DRAIN_MAX_ITEMS ? DRAIN_MAX_ITEMS : (int)m;
  /* drain(max, "raw"): events without the decoded body; "record": events as resty's ring
   * record text (lbind_ring.c). For a caller that passes the text on (resty's holder). */
  int raw_only = 0;
  if (!lua_isnoneornil(L, 3)) {
    const char *mode = lua_tostring(L, 3);
    if (lua_type(L, 3) == LUA_TSTRING)
      raw_only = !strcmp(mode, "raw") ? 1 : !strcmp(mode, "record") ? 2 : 0;
    if (!raw_only)
      return luaL_error(L, "genesys.notify: drain(max, mode): mode: expected \"raw\", "
                           "\"record\" or nil, got %s",
                        lua_type(L, 3) == LUA_TSTRING ? mode : luaL_typename(L, 3));
  }
  lua_settop(L, 1);
  lua_newtable(L); /* 2: the result */
  if (u->closed || !u->c) return 1;
  lua_getuservalue(L, 1); /* 3 */
  gn_item_t *it;
  for (int n = 0; n < max && (it = lgn_drain_pop(L, u, 3)); n++)
    lgn_drain_put(L, u, 3, 2, n, raw_only, it);
  lua_settop(L, 2);
  return 1;
}

/* poll() or run() from inside one of this client's callbacks: raised there, so it is reported
 * like any error of that callback (health callback_error) and the outer poll() goes on with the
 * next item. */
static void refuse_reentry(lua_State *L, lclient_t *u, const char *fn) {
  if (u->caller.in_callback)
    luaL_error(L, "genesys.notify: %s called from inside a callback (%s); callbacks run inside "
                  "poll()/run(): return from the callback instead", fn, u->caller.in_callback);
}

static int l_poll(lua_State *L) {
  lclient_t *u = lgn_check_here(L, 1);
  lua_Number t = luaL_optnumber(L, 2, 0);
  refuse_reentry(L, u, "poll()");
  if (t != t)
    return luaL_error(L, "genesys.notify: poll(timeout_ms): expected a number of milliseconds "
                         "(negative or infinite: no limit), got nan");
  if (u->closed || !u->c) {
    lua_pushinteger(L, 0);
    return 1;
  }
  int timeout = t < 0 || t == HUGE_VAL ? -1 : t > 2147483647.0 ? 2147483647 : (int)t;
  lua_pushinteger(L, poll_items(L, u, timeout));
  return 1;
}

/* Runs callbacks until the client is closed (from a callback) or has failed for good. Returns the
 * final state's name. */
static int l_run(lua_State *L) {
  lclient_t *u = lgn_check_here(L, 1);
  refuse_reentry(L, u, "run()");
  lgn_check_open(L, 1);
  for (;;) {
    if (u->closed || !u->c) break;
    int n = poll_items(L, u, 1000);
    if (u->closed) break;
    if (n == 0 && gn_client_state(u->c) == GN_ST_FAILED) break;
  }
  lua_pushstring(L, u->c ? gn_state_name(gn_client_state(u->c)) : "closed");
  return 1;
}

static int l_start(lua_State *L) {
  lclient_t *u = lgn_check_open(L, 1);
  if (gn_client_start(u->c) != 0) return luaL_error(L, "genesys.notify: start(): already started");
  lua_settop(L, 1);
  return 1;
}

static int l_fd(lua_State *L) {
  lclient_t *u = lgn_check_open(L, 1);
  lua_pushinteger(L, gn_client_fd(u->c));
  return 1;
}

/* client:wake_socket() -> the path of a unix socket whose peers get a byte when items start
 * waiting (bell.h); made on first call, closed by close(). */
static int l_wake_socket(lua_State *L) {
  lclient_t *u = lgn_check_open(L, 1);
  char err[256] = "";
  const char *path = gn_client_wake_path(u->c, err, sizeof err);
  if (!path) return luaL_error(L, "genesys.notify: wake_socket(): %s", err);
  lua_pushstring(L, path);
  return 1;
}

static void do_close(lclient_t *u) {
  if (u->closed) return;
  u->closed = 1;
  if (u->c) gn_client_close(u->c);
}

static int l_close(lua_State *L) {
  lclient_t *u = lgn_check_client(L, 1);
  if (!u->closed) {
    do_close(u);
    lgn_close_uservalue(L, 1); /* the callbacks (and what they hold) can be collected */
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_gc(lua_State *L) {
  lclient_t *u = lgn_check_client(L, 1);
  do_close(u);
  gn_client_free(u->c);
  u->c = NULL;
  return 0;
}

static int l_reconnect(lua_State *L) {
  lclient_t *u = lgn_check_open(L, 1);
  int r = gn_client_reconnect(u->c);
  if (r < 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "the client is not running (call start() first)");
    lua_pushliteral(L, "not_running");
    return 3;
  }
  lua_pushboolean(L, r == 1);
  return 1;
}

/* ---- topic names ----
 * Checked before anything is sent, for new{topics=}, subscribe() and unsubscribe(): a bad name is
 * a programmer error and raises at once (the rules: gn_topic_complaint, csrc/core/topics.c). */

/* Checks the string at idx. Returns 0 for a valid topic name; else pushes the complaint and
 * returns 1. */
static int push_topic_complaint(lua_State *L, int idx) {
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  char why[GN_TOPIC_COMPLAINT_MAX];
  if (!gn_topic_complaint(s, n, why, sizeof why)) return 0;
  lua_pushstring(L, why);
  return 1;
}

/* core.topic_error(s): nil if s is a valid topic name, else "expected ..., got ..." for a
 * message that genesys.notify prefixes with the field. */
static int l_topic_error(lua_State *L) {
  luaL_checktype(L, 1, LUA_TSTRING);
  if (!push_topic_complaint(L, 1)) lua_pushnil(L);
  return 1;
}

/* topics: a string or an array of strings, every one a valid topic name. A wrong type anywhere
 * in the list is reported before a bad name (as genesys.notify's configuration check does). */
const char **lgn_read_topics(lua_State *L, int idx, size_t *n, const char *fn) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    if (push_topic_complaint(L, idx))
      luaL_error(L, "genesys.notify: %s(topics): %s", fn, lua_tostring(L, -1));
    const char **v = (const char **)lua_newuserdata(L, sizeof *v);
    v[0] = lua_tostring(L, idx);
    *n = 1;
    return v;
  }
  if (!lua_istable(L, idx))
    luaL_error(L, "genesys.notify: %s(topics): expected a topic string or an array of strings, "
               "got %s", fn, luaL_typename(L, idx));
  size_t len = lua_rawlen(L, idx);
  const char **v = (const char **)lua_newuserdata(L, (len ? len : 1) * sizeof *v);
  for (size_t i = 0; i < len; i++) {
    lua_rawgeti(L, idx, (int)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
      luaL_error(L, "genesys.notify: %s(topics): topics[%d]: expected a non-empty string, got %s",
                 fn, (int)i + 1, luaL_typename(L, -1));
    v[i] = lua_tostring(L, -1);
    lua_pop(L, 1); /* still referenced by the table */
  }
  for (size_t i = 0; i < len; i++) {
    lua_rawgeti(L, idx, (int)i + 1);
    if (push_topic_complaint(L, -1))
      luaL_error(L, "genesys.notify: %s(topics): topics[%d]: %s", fn, (int)i + 1,
                 lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  *n = len;
  return v;
}

static int subscribe_common(lua_State *L, int add) {
  lclient_t *u = lgn_check_open(L, 1);
  size_t n;
  const char **v = lgn_read_topics(L, 2, &n, add ? "subscribe" : "unsubscribe");
  if (gn_client_subscribe(u->c, v, n, add) != 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "out of memory");
    lua_pushliteral(L, "memory");
    return 3;
  }
  lua_pushboolean(L, 1);
  return 1;
}
static int l_subscribe(lua_State *L) { return subscribe_common(L, 1); }
static int l_unsubscribe(lua_State *L) { return subscribe_common(L, 0); }

static int l_state(lua_State *L) {
  lclient_t *u = lgn_check_here(L, 1);
  lua_pushstring(L, u->c ? gn_state_name(gn_client_state(u->c)) : "closed");
  return 1;
}

const char *lgn_client_state_of(lgn_caller_t *c) {
  lclient_t *u = (lclient_t *)c;
  return u->c ? gn_state_name(gn_client_state(u->c)) : "closed";
}

static int l_tostring(lua_State *L) {
  lclient_t *u = lgn_check_client(L, 1);
  lua_pushfstring(L, "genesys.notify.client (%s) %p",
                  u->c ? gn_state_name(gn_client_state(u->c)) : "closed", (void *)u);
  return 1;
}

static int l_now_ms(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec * 1000.0 + (lua_Number)ts.tv_nsec / 1e6);
  return 1;
}

/* The metatable name: methods as __index, gc as __gc, close as __close (Lua 5.4), tostring as
 * __tostring. Leaves the stack as it was. */
void lgn_register_class(lua_State *L, const char *name, const luaL_Reg *methods,
                           lua_CFunction gc, lua_CFunction close, lua_CFunction tostring) {
  if (luaL_newmetatable(L, name)) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
#if GN_HAVE_CLOSE
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__close");
#else
    (void)close;
#endif
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
}

int lgn_open_client(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"start", l_start},           {"poll", l_poll},         {"run", l_run},
      {"drain", l_drain},           {"drain_entries", lgn_client_drain_entries},
      {"wake_socket", l_wake_socket}, {"fd", l_fd}, {"close", l_close}, {"reconnect", l_reconnect},
      {"subscribe", l_subscribe},   {"unsubscribe", l_unsubscribe},
      {"state", l_state},           {"metrics", lgn_client_metrics},
      {"resync_gap", lgn_client_resync_gap}, {"lease_handover", lgn_client_lease_handover},
      {NULL, NULL}};
  lgn_register_class(L, LGN_CLIENT_MT, methods, l_gc, l_close, l_tostring);
  /* module table is at the top */
  lgn_open_context(L);
  lgn_open_metrics(L);
  lgn_push_options(L);
  lua_setfield(L, -2, "options");
  lua_pushcfunction(L, lgn_client_new);
  lua_setfield(L, -2, "client_new");
  lua_pushcfunction(L, l_now_ms);
  lua_setfield(L, -2, "now_ms");
  lua_pushcfunction(L, l_topic_error);
  lua_setfield(L, -2, "topic_error");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  return 0;
}

