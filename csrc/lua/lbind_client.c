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
#include "bell.h"
#include "fleet.h" /* and client.h */
#include "gn_util.h"
#include "lbind.h"
#include "pool.h"
#include "service.h"

#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LGN_CLIENT_MT "genesys.notify.client"
#define POLL_MAX_ITEMS 4096 /* per poll() call, so a busy stream cannot starve the caller */
#define POLL_BATCH 64       /* items taken from the queue under one lock */

typedef struct {
  gn_client_t *c;
  int closed;
  /* The callback of this client running now ("on_event", ...), or NULL: poll() and run() refuse
   * to run inside one. They would recurse in C with the outer item half-handled, and deep enough
   * that recursion overflows the C stack and loses items. Another client's poll() is fine. */
  const char *in_callback;
  pid_t pid; /* the process that created it */
} lclient_t;

/* A client or context used in a child process forked after it was made: its service thread
 * stayed in the parent. Raises. */
static int refuse_forked(lua_State *L, const char *what, pid_t pid) {
  return luaL_error(L, "genesys.notify: this %s was created in process %d, before a fork(); it "
                       "cannot be used in process %d (its service thread is not in this "
                       "process). Create clients and contexts after the fork, in the process "
                       "that uses them (nginx: in init_worker_by_lua*, not init_by_lua*)",
                    what, (int)pid, (int)getpid());
}

/* The client at i, whatever its state: for close(), __gc and __tostring, which work (and
 * return at once) in a forked child too. */
static lclient_t *check_client(lua_State *L, int i) {
  return (lclient_t *)luaL_checkudata(L, i, LGN_CLIENT_MT);
}
/* The client at i, which must belong to this process. */
static lclient_t *check_here(lua_State *L, int i) {
  lclient_t *u = check_client(L, i);
  if (u->pid != getpid()) refuse_forked(L, "client", u->pid);
  return u;
}
static lclient_t *check_open(lua_State *L, int i) {
  lclient_t *u = check_here(L, i);
  if (u->closed || !u->c) luaL_error(L, "genesys.notify: the client is closed");
  return u;
}

/* ---- json_t -> Lua ---- */
static void push_json(lua_State *L, json_t *j, int depth) {
  if (depth > 1000 || !lua_checkstack(L, 4)) luaL_error(L, "genesys.notify: JSON nested too deeply");
  switch (json_typeof(j)) {
  case JSON_OBJECT: {
    const char *k;
    json_t *v;
    lua_createtable(L, 0, (int)json_object_size(j));
    json_object_foreach(j, k, v) {
      lua_pushstring(L, k);
      push_json(L, v, depth + 1);
      lua_rawset(L, -3);
    }
    break;
  }
  case JSON_ARRAY: {
    size_t i, n = json_array_size(j);
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
      push_json(L, json_array_get(j, i), depth + 1);
      lua_rawseti(L, -2, (int)i + 1);
    }
    break;
  }
  case JSON_STRING:
    lua_pushlstring(L, json_string_value(j), json_string_length(j));
    break;
  case JSON_INTEGER:
#if LUA_VERSION_NUM >= 503
    lua_pushinteger(L, (lua_Integer)json_integer_value(j));
#else
    lua_pushnumber(L, (lua_Number)json_integer_value(j));
#endif
    break;
  case JSON_REAL: {
    double d = json_real_value(j);
#if LUA_VERSION_NUM >= 503
    /* Whole-number reals (timestamps, latencies) read better as integers on 5.4. */
    if (d == floor(d) && fabs(d) < 9007199254740992.0) lua_pushinteger(L, (lua_Integer)d);
    else
#endif
      lua_pushnumber(L, d);
    break;
  }
  case JSON_TRUE:
    lua_pushboolean(L, 1);
    break;
  case JSON_FALSE:
    lua_pushboolean(L, 0);
    break;
  default:
    lua_pushlightuserdata(L, NULL); /* the same value as cjson.null */
    break;
  }
}

/* Pushes received_ms as push_json pushes a real (whole numbers as integers on 5.4). */
static void push_ms(lua_State *L, double d) {
#if LUA_VERSION_NUM >= 503
  if (d == floor(d) && fabs(d) < 9007199254740992.0) {
    lua_pushinteger(L, (lua_Integer)d);
    return;
  }
#endif
  lua_pushnumber(L, d);
}

/* Pushes the Lua table for an item (protected: may raise on memory errors). An event's body is
 * decoded here, from the text the service thread validated (lbind_json.c). */
static int push_item_table(lua_State *L) {
  gn_item_t *it = (gn_item_t *)lua_touserdata(L, 1);
  int raw_only = lua_toboolean(L, 2); /* drain(max, "raw"): no body decoded */
  if (it->type == GN_ITEM_EVENT) {
    lua_createtable(L, 0, 6);
    lua_pushstring(L, it->topic);
    lua_setfield(L, -2, "topic");
    lua_pushstring(L, it->channel_id);
    lua_setfield(L, -2, "channel_id");
    push_ms(L, it->received_ms);
    lua_setfield(L, -2, "received_ms");
    if (it->correlation_id) {
      lua_pushstring(L, it->correlation_id);
      lua_setfield(L, -2, "correlation_id");
    }
    if (!raw_only) {
      if (it->body_len) lgn_json_push(L, it->raw + it->body_off, it->body_len);
      else lua_newtable(L);
      lua_setfield(L, -2, "body");
    }
    lua_pushlstring(L, it->raw, it->rawlen);
    lua_setfield(L, -2, "raw");
    return 1;
  }
  if (it->data) push_json(L, it->data, 0);
  else lua_newtable(L);
  return 1;
}

static int push_json_protected(lua_State *L) {
  push_json(L, (json_t *)lua_touserdata(L, 1), 0);
  return 1;
}

/* See lbind.h (for fuzz/fuzz_json_lua.c). */
int lgn_push_json(lua_State *L) { return push_json_protected(L); }

/* core.json_decode(text): jansson parse + conversion on the caller's thread (the decode
 * benchmark's C side). Returns the value, or nil and the parser's message. */
static int l_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  json_error_t je;
  json_t *j = json_loadb(s, len, JSON_DECODE_ANY, &je);
  if (!j) {
    lua_pushnil(L);
    lua_pushstring(L, je.text);
    return 2;
  }
  lua_pushcfunction(L, push_json_protected);
  lua_pushlightuserdata(L, j);
  int rc = lua_pcall(L, 1, 1, 0);
  json_decref(j);
  if (rc != 0) return lua_error(L);
  return 1;
}

/* core.json_bench(text, n, mode): the C side of bench/decode_bench.lua, timed in C so the loop
 * costs nothing. mode "text": lbind_json.c's decoder, n times (what poll() pays now); "parse+convert": jansson parse and Lua table, n times (what decoding on the
 * Lua thread would cost); "convert": parse once, build the table n times (what the client's Lua
 * thread really pays: the service thread has already parsed the message to read its topic).
 * Returns the elapsed milliseconds. */
static int l_json_bench(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  long n = (long)luaL_checkinteger(L, 2);
  const char *mode = luaL_checkstring(L, 3);
  int convert_only = strcmp(mode, "convert") == 0;
  if (strcmp(mode, "text") == 0) { /* lbind_json.c's decoder on the text: what poll() does now */
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
      lgn_json_push(L, s, len);
      lua_pop(L, 1);
      if ((i & 255) == 0) lua_gc(L, LUA_GCSTEP, 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    lua_pushnumber(L, (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6);
    return 1;
  }
  json_t *pre = convert_only ? json_loadb(s, len, 0, NULL) : NULL;
  if (convert_only && !pre) return luaL_error(L, "json_bench: invalid JSON");
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (long i = 0; i < n; i++) {
    json_t *j = convert_only ? pre : json_loadb(s, len, 0, NULL);
    if (!j) return luaL_error(L, "json_bench: invalid JSON");
    push_json(L, j, 0);
    lua_pop(L, 1);
    if (!convert_only) json_decref(j);
    if ((i & 255) == 0) lua_gc(L, LUA_GCSTEP, 0);
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  json_decref(pre);
  lua_pushnumber(L, (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6);
  return 1;
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* lua_pcall of the callback `which` with one argument, marked as running on u (the guard
 * against re-entering poll()/run() from it). The mark is set only around lua_pcall, which never
 * raises, so no error can leave it set. */
static int pcall_callback(lua_State *L, lclient_t *u, const char *which, int nresults, int msgh) {
  const char *outer = u->in_callback;
  u->in_callback = which;
  int rc = lua_pcall(L, 1, nresults, msgh);
  u->in_callback = outer;
  return rc;
}

/* Calls the callback at the stack top with the value below it... in protected mode. Expects
 * [fn, arg] on the stack; pops them. Returns 0 or the error message left on the stack (1). */
static int call_protected(lua_State *L, lclient_t *u, const char *which) {
  lua_pushcfunction(L, traceback);
  lua_insert(L, -3);
  int base = lua_gettop(L) - 2;
  int rc = pcall_callback(L, u, which, 0, base);
  if (rc != 0) {
    lua_remove(L, base); /* the handler; message stays */
    return 1;
  }
  lua_remove(L, base);
  return 0;
}

/* Reports a failing callback as health "callback_error" (kind, state, timestamp_ms, callback,
 * error) through on_health, an error of on_health itself included: on_health is called once
 * with the report. If that call fails too (or there is no on_health), the message goes to
 * stderr: never silently dropped, and never a loop (a failing report is not reported again).
 * Stack: [..., msg]; pops msg. */
static void report_callback_error(lua_State *L, lclient_t *u, int uv, const char *which) {
  const char *msg = lua_tostring(L, -1);
  lua_getfield(L, uv, "on_health");
  if (lua_isfunction(L, -1)) {
    lua_createtable(L, 0, 5);
    lua_pushliteral(L, "callback_error");
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, u->c ? gn_state_name(gn_client_state(u->c)) : "closed");
    lua_setfield(L, -2, "state");
    lua_pushnumber(L, gn_now_wall_ms());
    lua_setfield(L, -2, "timestamp_ms");
    lua_pushstring(L, which);
    lua_setfield(L, -2, "callback");
    lua_pushstring(L, msg ? msg : "?");
    lua_setfield(L, -2, "error");
    if (call_protected(L, u, "on_health") == 0) {
      lua_pop(L, 1); /* msg */
      return;
    }
    fprintf(stderr, "genesys.notify: on_health failed while reporting an error: %s\n",
            lua_tostring(L, -1));
    lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
  }
  fprintf(stderr, "genesys.notify: %s raised: %s\n", which, msg ? msg : "?");
  lua_pop(L, 1);
}

/* The operator's policy hook: policy(record) -> delay_ms (number), false (give up) or nil (keep
 * the engine's delay). Anything else, or an error, is reported as callback_error and the
 * engine's delay stands. */
static void run_policy(lua_State *L, lclient_t *u, int uv, gn_item_t *it) {
  lua_getfield(L, uv, "policy");
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_pushcfunction(L, push_item_table);
  lua_pushlightuserdata(L, it);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    lua_remove(L, -2);
    report_callback_error(L, u, uv, "policy");
    return;
  }
  lua_pushcfunction(L, traceback);
  lua_insert(L, -3);
  int base = lua_gettop(L) - 2;
  int rc = pcall_callback(L, u, "policy", 1, base);
  lua_remove(L, base);
  if (rc != 0) {
    report_callback_error(L, u, uv, "policy");
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
    report_callback_error(L, u, uv, "policy");
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
    batch = it->next;
    it->next = NULL;
    if (it->type == GN_ITEM_POLICY) {
      run_policy(L, u, uv, it);
      gn_item_free(it);
      n++;
    } else {
      const char *which = GN_ITEM_IS_EVENTLIKE(it->type) ? "on_event" : "on_health";
      lua_getfield(L, uv, which);
      if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        gn_item_free(it);
      } else {
        /* Build the table in protected mode so the item is freed even on a memory error. */
        lua_pushcfunction(L, push_item_table);
        lua_pushlightuserdata(L, it);
        int rc = lua_pcall(L, 1, 1, 0);
        gn_item_free(it);
        if (rc != 0) {
          lua_remove(L, -2); /* the callback */
          report_callback_error(L, u, uv, which);
        } else if (call_protected(L, u, which)) {
          report_callback_error(L, u, uv, which);
        }
        n++;
      }
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
  lua_pushcfunction(L, push_item_table);
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
  if (call_protected(L, u, "audit")) {
    fprintf(stderr, "genesys.notify: the audit sink raised: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

static int l_drain(lua_State *L) {
  lclient_t *u = check_here(L, 1);
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
  int uv = 3;
  int n = 0;
  while (n < max && !u->closed) {
    gn_item_t *it = gn_client_pop(u->c);
    if (!it) break;
    if (it->type == GN_ITEM_POLICY) {
      /* Answered here, not returned: the engine waits for the answer, not for the caller. */
      run_policy(L, u, uv, it);
      gn_item_free(it);
      continue;
    }
    lua_pushcfunction(L, drain_append);
    lua_pushlightuserdata(L, it);
    lua_pushvalue(L, 2);
    lua_pushinteger(L, n);
    lua_pushinteger(L, raw_only);
    int rc = lua_pcall(L, 4, 0, 0);
    int health = it->type == GN_ITEM_HEALTH;
    gn_item_free(it);
    if (rc != 0) return lua_error(L); /* out of memory building a table */
    n++;
    if (health) {
      lua_rawgeti(L, 2, n);
      drain_audit(L, u, uv);
      lua_pop(L, 1);
    }
  }
  lua_settop(L, 2);
  return 1;
}

/* poll() or run() from inside one of this client's callbacks: raised there, so it is reported
 * like any error of that callback (health callback_error) and the outer poll() goes on with the
 * next item. */
static void refuse_reentry(lua_State *L, lclient_t *u, const char *fn) {
  if (u->in_callback)
    luaL_error(L, "genesys.notify: %s called from inside a callback (%s); callbacks run inside "
                  "poll()/run(): return from the callback instead", fn, u->in_callback);
}

static int l_poll(lua_State *L) {
  lclient_t *u = check_here(L, 1);
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
  lclient_t *u = check_here(L, 1);
  refuse_reentry(L, u, "run()");
  check_open(L, 1);
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
  lclient_t *u = check_open(L, 1);
  if (gn_client_start(u->c) != 0) return luaL_error(L, "genesys.notify: start(): already started");
  lua_settop(L, 1);
  return 1;
}

static int l_fd(lua_State *L) {
  lclient_t *u = check_open(L, 1);
  lua_pushinteger(L, gn_client_fd(u->c));
  return 1;
}

/* client:wake_socket() -> the path of a unix socket whose peers get a byte when items start
 * waiting (bell.h); made on first call, closed by close(). */
static int l_wake_socket(lua_State *L) {
  lclient_t *u = check_open(L, 1);
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
  lclient_t *u = check_client(L, 1);
  if (!u->closed) {
    do_close(u);
    /* Let the callbacks (and what they hold) be collected. */
    lua_newtable(L);
    lua_setuservalue(L, 1);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_gc(lua_State *L) {
  lclient_t *u = check_client(L, 1);
  do_close(u);
  gn_client_free(u->c);
  u->c = NULL;
  return 0;
}

/* client:resync_gap(from_ms, to_ms): every topic was deaf over that interval, a gap known
 * above the client (a reader of nginx's ring that missed items): a resync heals it when resync
 * is on (else nothing). Returns true, or nil and a message when the client is not running. */
static int l_resync_gap(lua_State *L) {
  lclient_t *u = check_open(L, 1);
  double from = luaL_checknumber(L, 2), to = luaL_checknumber(L, 3);
  luaL_argcheck(L, from <= to, 3, "expected to_ms >= from_ms");
  if (gn_client_heal(u->c, from, to) != 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "the client is not running");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_reconnect(lua_State *L) {
  lclient_t *u = check_open(L, 1);
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
 * a programmer error and raises at once. The rules are Genesys's as the emulator enforces them
 * (emulator/http.c topic_valid). UTF-8 is checked first, in C so that LuaJIT (no utf8 library)
 * checks the same: a name with invalid bytes made the server refuse every later subscription
 * request, and the message must say so without printing the bytes. */
#define TOPIC_MAX 200
#define TOPIC_SHOW 48 /* bytes of a bad name shown in a message */
#define TOPIC_EXPECTED                                                                             \
  "a Genesys topic name (\"v2.\" then letters, digits and . _ - ? & :, at most 200 bytes)"

/* Length of the longest valid UTF-8 prefix of s[0..n): n when all of it is valid. Unicode's table
 * 3-7 of well-formed sequences: no overlong form, no surrogate, nothing above U+10FFFF, no stray
 * continuation byte, no sequence cut short. */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t k; /* continuation bytes */
    unsigned lo = 0x80, hi = 0xBF; /* range of the first continuation byte */
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      k = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      k = 2;
      if (c == 0xE0) lo = 0xA0;      /* overlong */
      else if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
      k = 3;
      if (c == 0xF0) lo = 0x90;      /* overlong */
      else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
      return i; /* continuation byte, C0/C1 (overlong), F5..FF */
    }
    if (n - i - 1 < k || s[i + 1] < lo || s[i + 1] > hi) return i;
    for (size_t j = 2; j <= k; j++)
      if ((s[i + j] & 0xC0) != 0x80) return i;
    i += k + 1;
  }
  return n;
}

static int topic_char_ok(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != 0 && strchr("._-?&:", c) != NULL);
}

/* Adds s[0..n) to b as the inside of a double-quoted string: printable ASCII as is (\" and \\
 * escaped), every other byte as \xHH, so no raw invalid or control byte reaches a message. */
static void add_escaped(luaL_Buffer *b, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char hex[5];
    if (c == '"' || c == '\\') {
      luaL_addchar(b, '\\');
      luaL_addchar(b, (char)c);
    } else if (c >= 0x20 && c < 0x7F) {
      luaL_addchar(b, (char)c);
    } else {
      snprintf(hex, sizeof hex, "\\x%02x", c);
      luaL_addlstring(b, hex, 4);
    }
  }
}

/* Checks the string at idx. Returns 0 for a valid topic name; else pushes the complaint
 * ("expected a Genesys topic name (...), got \"v2.x\\xff\" (not valid UTF-8 at byte 5)") and
 * returns 1. */
static int push_topic_complaint(lua_State *L, int idx) {
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  char why[80];
  size_t bad = utf8_valid_prefix((const unsigned char *)s, n);
  why[0] = 0;
  if (bad < n) {
    snprintf(why, sizeof why, "not valid UTF-8 at byte %zu", bad + 1);
  } else if (n < 3 || memcmp(s, "v2.", 3) != 0) {
    snprintf(why, sizeof why, "does not start with \"v2.\"");
  } else if (n < 4 || n > TOPIC_MAX) {
    snprintf(why, sizeof why, "%zu bytes", n);
  } else {
    for (size_t i = 0; i < n && !why[0]; i++)
      if (!topic_char_ok((unsigned char)s[i])) {
        char c = s[i];
        int esc = (unsigned char)c < 0x20 || (unsigned char)c >= 0x7F || c == '"' || c == '\\';
        if (esc)
          snprintf(why, sizeof why, "byte %zu is \\x%02x, not allowed", i + 1, (unsigned char)c);
        else
          snprintf(why, sizeof why, "'%c' at byte %zu is not allowed", c, i + 1);
      }
  }
  if (!why[0]) return 0;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "expected " TOPIC_EXPECTED ", got \"");
  add_escaped(&b, s, n > TOPIC_SHOW ? TOPIC_SHOW : n);
  if (n > TOPIC_SHOW) luaL_addstring(&b, "...");
  luaL_addstring(&b, "\" (");
  luaL_addstring(&b, why);
  luaL_addchar(&b, ')');
  luaL_pushresult(&b);
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
static const char **read_topics(lua_State *L, int idx, size_t *n, const char *fn) {
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
  lclient_t *u = check_open(L, 1);
  size_t n;
  const char **v = read_topics(L, 2, &n, add ? "subscribe" : "unsubscribe");
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
  lclient_t *u = check_here(L, 1);
  lua_pushstring(L, u->c ? gn_state_name(gn_client_state(u->c)) : "closed");
  return 1;
}

static void setnum(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}
static void setint(lua_State *L, const char *k, uint64_t v) {
#if LUA_VERSION_NUM >= 503
  lua_pushinteger(L, (lua_Integer)v);
#else
  lua_pushnumber(L, (lua_Number)v);
#endif
  lua_setfield(L, -2, k);
}

/* Appends the lease's families to the Prometheus text at the stack top (replacing it). */
static void push_lease_prometheus(lua_State *L, const gn_lease_stats_t *ls, const char *name) {
  static const struct { const char *fam, *help; } c[] = {
      {"acquired", "Times this client took the fleet lease"},
      {"lost", "Times a renewal found the lease held by another or expired"},
      {"stepped_down", "Times this client parked its stream for want of a timely renewal"},
      {"renewals", "Lease renewals confirmed"},
      {"appended", "Stream entries appended to redis"},
      {"append_failed", "Stream appends refused or unanswered"},
      {"discarded", "Events withheld because the lease was not (validly) held"}};
  uint64_t v[] = {ls->acquired, ls->lost, ls->stepped_down, ls->renewals, ls->appended,
                  ls->append_failed, ls->discarded};
  char line[512];
  const char *nm = name ? name : "";
  snprintf(line, sizeof line,
           "# HELP genesys_notify_lease_holder 1 while this client holds the fleet lease\n"
           "# TYPE genesys_notify_lease_holder gauge\ngenesys_notify_lease_holder{client=\"%s\"} %d\n"
           "# HELP genesys_notify_lease_fence Fencing token of the current or last tenure\n"
           "# TYPE genesys_notify_lease_fence gauge\ngenesys_notify_lease_fence{client=\"%s\"} %llu\n",
           nm, ls->state == GN_LEASE_HOLDER, nm, (unsigned long long)ls->fence);
  lua_pushstring(L, line);
  for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
    snprintf(line, sizeof line,
             "# HELP genesys_notify_lease_%s_total %s\n# TYPE genesys_notify_lease_%s_total "
             "counter\ngenesys_notify_lease_%s_total{client=\"%s\"} %llu\n",
             c[i].fam, c[i].help, c[i].fam, c[i].fam, nm, (unsigned long long)v[i]);
    lua_pushstring(L, line);
  }
  lua_concat(L, 2 + (int)(sizeof v / sizeof *v));
}

static int l_metrics(lua_State *L) {
  lclient_t *u = check_here(L, 1);
  if (!u->c) return luaL_error(L, "genesys.notify: the client is closed");
  const char *fmt = luaL_optstring(L, 2, "table");
  gn_metrics_snapshot_t s;
  gn_client_metrics(u->c, &s);
  const char *state = gn_state_name(gn_client_state(u->c));
  gn_client_channel_t chs[GN_POOL_MAX];
  size_t nch = gn_client_channels(u->c, chs, GN_POOL_MAX);
  size_t waiting = gn_client_topics_waiting(u->c);
  gn_lease_stats_t ls;
  int has_lease = gn_fleet_lease(u->c) && (gn_lease_stats(gn_fleet_lease(u->c), &ls), 1);
  if (strcmp(fmt, "prometheus") == 0) {
    char *txt = gn_metrics_prometheus(&s, state, gn_client_name(u->c));
    if (!txt) return luaL_error(L, "genesys.notify: out of memory");
    /* the pool: each channel labelled channel="N", and the topics waiting for budget */
    gn_metrics_snapshot_t per[GN_POOL_MAX];
    const char *states[GN_POOL_MAX];
    int numbers[GN_POOL_MAX];
    for (size_t i = 0; i < nch; i++) {
      per[i] = chs[i].m;
      states[i] = gn_state_name(chs[i].state);
      numbers[i] = chs[i].number;
    }
    char *pool = gn_metrics_prometheus_channels(per, states, numbers, nch, gn_client_name(u->c));
    if (!pool) {
      free(txt);
      return luaL_error(L, "genesys.notify: out of memory");
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, txt);
    luaL_addstring(&b, pool);
    lua_pushfstring(L, "# HELP genesys_notify_topics_waiting Topics waiting for the credential's "
                    "channel budget.\n# TYPE genesys_notify_topics_waiting gauge\n"
                    "genesys_notify_topics_waiting{client=\"%s\"} %d\n",
                    gn_client_name(u->c), (int)waiting);
    luaL_addvalue(&b);
    free(txt);
    free(pool);
    luaL_pushresult(&b);
    if (has_lease) push_lease_prometheus(L, &ls, gn_client_name(u->c));
    return 1;
  }
  if (strcmp(fmt, "table") != 0)
    return luaL_argerror(L, 2, "expected \"table\" or \"prometheus\"");
  lua_createtable(L, 0, 16);
  setint(L, "attempts", s.attempts);
  setint(L, "successes", s.successes);
  setint(L, "failures", s.failures);
  setnum(L, "success_rate", s.attempts ? (double)s.successes / (double)s.attempts : 0);
  setint(L, "events", s.events);
  setint(L, "dropped", s.dropped);
  setint(L, "heartbeats", s.heartbeats);
  setint(L, "malformed", s.malformed);
  setint(L, "disconnects", s.disconnects);
  setint(L, "health", s.health);
  setint(L, "duplicates", s.duplicates);
  setint(L, "rollovers", s.rollovers);
  setint(L, "renewals", s.renewals);
  setint(L, "renewal_rollovers", s.renewal_rollovers);
  setint(L, "evictions", s.evictions);
  setint(L, "health_dropped", s.health_dropped);
  setint(L, "pauses", s.pauses);
  setnum(L, "paused_ms", s.paused_ms);
  setint(L, "tls_resumed", s.tls_resumed);
  lgn_resync_metrics(L, &s); /* lbind_resync.c */
  setint(L, "queued_events", s.queued_events);
  setint(L, "queued_bytes", s.queued_bytes);
  setint(L, "topics_wanted", s.topics_wanted);
  setint(L, "topics_confirmed", s.topics_confirmed);
  lua_pushboolean(L, s.subscriptions_synced);
  lua_setfield(L, -2, "subscriptions_synced");
  setnum(L, "uptime_ms", s.uptime_ms);
  setnum(L, "connected_ms", s.connected_ms);
  setnum(L, "deaf_ms", s.deaf_ms);
  lua_pushstring(L, state);
  lua_setfield(L, -2, "state");
  lua_createtable(L, 0, 5);
  setint(L, "count", s.lat_count);
  if (s.lat_count) {
    setnum(L, "p50", s.lat_p50);
    setnum(L, "p90", s.lat_p90);
    setnum(L, "p99", s.lat_p99);
    setnum(L, "max", s.lat_max);
  }
  setnum(L, "sum", s.lat_sum);
  lua_setfield(L, -2, "latency_ms");
  lua_createtable(L, 0, 4);
  setint(L, "cycles", s.sched_cycles);
  setint(L, "coalesced", s.sched_coalesced);
  setint(L, "triggers", s.sched_triggers);
  static const char *const reasons[] = GN_METRICS_REASON_NAMES;
  lua_createtable(L, 0, GN_METRICS_REASONS);
  for (int i = 0; i < GN_METRICS_REASONS; i++) setint(L, reasons[i], s.sched_by_reason[i]);
  lua_setfield(L, -2, "by_reason");
  lua_setfield(L, -2, "scheduler");
  setint(L, "token_requests", s.token_requests);
  setint(L, "wake_peers", s.wake_peers);
  setint(L, "wake_refused", s.wake_refused);
  setint(L, "topics_waiting", waiting);
  lua_createtable(L, (int)nch, 0);
  for (size_t i = 0; i < nch; i++) {
    const gn_metrics_snapshot_t *m = &chs[i].m;
    lua_createtable(L, 0, 12);
    setint(L, "channel", (uint64_t)chs[i].number);
    lua_pushstring(L, gn_state_name(chs[i].state));
    lua_setfield(L, -2, "state");
    setint(L, "events", m->events);
    setint(L, "attempts", m->attempts);
    setint(L, "successes", m->successes);
    setint(L, "failures", m->failures);
    setint(L, "disconnects", m->disconnects);
    setint(L, "rollovers", m->rollovers);
    setint(L, "duplicates", m->duplicates);
    setint(L, "topics_wanted", m->topics_wanted);
    setint(L, "topics_confirmed", m->topics_confirmed);
    lua_pushboolean(L, m->subscriptions_synced);
    lua_setfield(L, -2, "subscriptions_synced");
    setnum(L, "connected_ms", m->connected_ms);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "channels");
  if (has_lease) {
    lua_createtable(L, 0, 12);
    lua_pushstring(L, gn_lease_state_name(ls.state));
    lua_setfield(L, -2, "state");
    setint(L, "fence", ls.fence);
    setint(L, "acquired", ls.acquired);
    setint(L, "lost", ls.lost);
    setint(L, "stepped_down", ls.stepped_down);
    setint(L, "renewals", ls.renewals);
    setint(L, "attempts", ls.attempts);
    setint(L, "appended", ls.appended);
    setint(L, "append_failed", ls.append_failed);
    setint(L, "discarded", ls.discarded);
    setint(L, "gaps", ls.gaps);
    lua_pushboolean(L, ls.redis_up);
    lua_setfield(L, -2, "redis_up");
    lua_setfield(L, -2, "lease");
  }
  return 1;
}

static int l_tostring(lua_State *L) {
  lclient_t *u = check_client(L, 1);
  lua_pushfstring(L, "genesys.notify.client (%s) %p",
                  u->c ? gn_state_name(gn_client_state(u->c)) : "closed", (void *)u);
  return 1;
}

/* ---- contexts ---- */

#define LGN_CONTEXT_MT "genesys.notify.context"

typedef struct {
  gn_service_t *svc;
  pid_t pid;
} lcontext_t;

/* core.context_new(): a context of its own (one service thread for the clients given it). */
static int l_context_new(lua_State *L) {
  lcontext_t *x = (lcontext_t *)lua_newuserdata(L, sizeof *x);
  x->svc = NULL;
  x->pid = getpid();
  luaL_setmetatable(L, LGN_CONTEXT_MT);
  char err[256] = "";
  x->svc = gn_service_new(err, sizeof err);
  if (!x->svc) return luaL_error(L, "genesys.notify: %s", err);
  return 1;
}

/* ctx:close(): drops the application's reference; the thread stops when its last client closes.
 * In a child forked after the context was made it returns at once (the thread is in the
 * parent; gn_service_release leaves such a context alone). */
static int l_context_close(lua_State *L) {
  lcontext_t *x = (lcontext_t *)luaL_checkudata(L, 1, LGN_CONTEXT_MT);
  if (x->svc) gn_service_release(x->svc);
  x->svc = NULL;
  return 0;
}

static int l_context_tostring(lua_State *L) {
  lcontext_t *x = (lcontext_t *)luaL_checkudata(L, 1, LGN_CONTEXT_MT);
  lua_pushfstring(L, "genesys.notify.context (%s) %p", x->svc ? "open" : "closed", (void *)x);
  return 1;
}

static int l_is_context(lua_State *L) {
  lua_pushboolean(L, luaL_testudata(L, 1, LGN_CONTEXT_MT) != NULL);
  return 1;
}

/* ---- bells (notify.bell(path)) ---- */

#define LGN_BELL_MT "genesys.notify.bell"

typedef struct {
  gn_bell_t *b;
  pid_t pid;
} lbell_t;

static lbell_t *check_bell(lua_State *L, int i) {
  return (lbell_t *)luaL_checkudata(L, i, LGN_BELL_MT);
}
static lbell_t *check_bell_here(lua_State *L, int i) {
  lbell_t *x = check_bell(L, i);
  if (x->pid != getpid()) refuse_forked(L, "bell", x->pid);
  return x;
}

/* core.bell_new(path): a bell listening at path on the default context's service thread. */
static int l_bell_new(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lbell_t *x = (lbell_t *)lua_newuserdata(L, sizeof *x);
  x->b = NULL;
  x->pid = getpid();
  luaL_setmetatable(L, LGN_BELL_MT);
  char err[256] = "";
  gn_service_t *svc = gn_service_acquire_default(err, sizeof err);
  if (!svc) return luaL_error(L, "genesys.notify: %s", err);
  x->b = gn_bell_new(svc, path, err, sizeof err);
  gn_service_release(svc); /* the bell holds its own reference */
  if (!x->b) return luaL_error(L, "genesys.notify: %s", err);
  return 1;
}

static int l_bell_ring(lua_State *L) {
  lbell_t *x = check_bell_here(L, 1);
  if (!x->b) return luaL_error(L, "genesys.notify: ring(): the bell is closed");
  gn_bell_ring(x->b);
  return 0;
}

static int l_bell_path(lua_State *L) {
  lbell_t *x = check_bell_here(L, 1);
  if (!x->b) return luaL_error(L, "genesys.notify: path(): the bell is closed");
  lua_pushstring(L, gn_bell_path(x->b));
  return 1;
}

static int l_bell_stats(lua_State *L) {
  lbell_t *x = check_bell_here(L, 1);
  if (!x->b) return luaL_error(L, "genesys.notify: stats(): the bell is closed");
  gn_bell_stats_t st;
  gn_bell_stats(x->b, &st);
  lua_createtable(L, 0, 5);
  setint(L, "peers", st.peers);
  setint(L, "accepted", st.accepted);
  setint(L, "refused", st.refused);
  setint(L, "rings", st.rings);
  setint(L, "skipped", st.skipped);
  return 1;
}

/* close() and __gc: idempotent; in a child forked after the bell was made they return at once
 * (its descriptors there were closed at the fork). */
static int l_bell_close(lua_State *L) {
  lbell_t *x = check_bell(L, 1);
  gn_bell_t *b = x->b;
  x->b = NULL;
  gn_bell_free(b);
  return 0;
}

static int l_bell_tostring(lua_State *L) {
  lbell_t *x = check_bell(L, 1);
  lua_pushfstring(L, "genesys.notify.bell (%s) %p", x->b ? "open" : "closed", (void *)x);
  return 1;
}

/* ---- construction ---- */

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
static int l_client_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  gn_client_cfg_t cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.token_url = opt_string(L, 1, "token_url", 1);
  cfg.api_base = opt_string(L, 1, "api_base", 1);
  cfg.client_id = opt_string(L, 1, "client_id", 1);
  cfg.client_secret = opt_string(L, 1, "client_secret", 1);
  cfg.ca_file = opt_string(L, 1, "ca_file", 0);
  cfg.name = opt_string(L, 1, "name", 0);
  lua_getfield(L, 1, "verify");
  cfg.verify = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
  lua_pop(L, 1);
  /* the proxy, taken apart by genesys.notify (proxy_host NULL: none) */
  cfg.proxy.host = (char *)opt_string(L, 1, "proxy_host", 0);
  cfg.proxy.port = (int)opt_number(L, 1, "proxy_port", 0, 0, 65535);
  cfg.proxy.user = (char *)opt_string(L, 1, "proxy_user", 0);
  cfg.proxy.pass = (char *)opt_string(L, 1, "proxy_pass", 0);
  cfg.proxy.no_proxy = (char *)opt_string(L, 1, "no_proxy", 0);
  cfg.connect_timeout_ms = (long)opt_number(L, 1, "connect_timeout_ms", 10000, 1, 3600e3);
  cfg.handshake_timeout_ms = (long)opt_number(L, 1, "handshake_timeout_ms", 10000, 1, 3600e3);
  cfg.http_timeout_ms = (long)opt_number(L, 1, "http_timeout_ms", 30000, 1, 3600e3);
  cfg.queue_limit = (size_t)opt_number(L, 1, "queue_limit", 10000, 1, 1e9);
  cfg.queue_bytes = (size_t)opt_number(L, 1, "queue_bytes", (double)GN_QUEUE_BYTES_DEFAULT,
                                       65536, 1099511627776.0);
  cfg.max_message = (size_t)opt_number(L, 1, "max_message_size", 1048576, 256, 1 << 30);
  lua_getfield(L, 1, "overflow");
  cfg.overflow_pause = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "pause") == 0;
  lua_pop(L, 1);
  cfg.pause_max_ms = (long)opt_number(L, 1, "pause_max_ms", 30000, 0, 86400e3);
  cfg.idle_ms = (long)opt_number(L, 1, "idle_ms", 35000, 10, 86400e3);
  cfg.ping_timeout_ms = (long)opt_number(L, 1, "ping_timeout_ms", 10000, 10, 86400e3);
  cfg.channel_budget = (int)opt_number(L, 1, "channel_budget", 20, 2, 1000);
  lua_getfield(L, 1, "renew_rule");
  const char *rule = lua_tostring(L, -1);
  cfg.renew.rule = !rule || !strcmp(rule, "both") ? GN_RENEW_BOTH
                   : !strcmp(rule, "channel")    ? GN_RENEW_CHANNEL
                                                 : GN_RENEW_OFF;
  lua_pop(L, 1);
  cfg.renew.at = opt_number(L, 1, "renew_at", 0.8, 0.1, 0.95);
  cfg.renew.margin_ms = (long)opt_number(L, 1, "renew_margin_ms", 60000, 0, 86400e3);
  cfg.renew.drain_ms = (long)opt_number(L, 1, "renew_drain_ms", 10000, 100, 600e3);
  if (lgn_resync_config(L, 1, &cfg) != 0) return lua_error(L); /* lbind_resync.c */
  lua_getfield(L, 1, "backoff");
  read_backoff(L, lua_gettop(L), &cfg.backoff);
  lua_pop(L, 1);
  size_t nt = 0;
  const char **topics = NULL;
  lua_getfield(L, 1, "topics");
  int tidx = lua_gettop(L);
  if (!lua_isnil(L, tidx)) topics = read_topics(L, tidx, &nt, "new");
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
    if (x->pid != getpid()) refuse_forked(L, "context", x->pid);
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
    lc.key = opt_string(L, r, "key", 0);
    lc.lease_ms = opt_number(L, r, "lease_ms", 10000, 100, 3600e3);
    lc.margin_ms = opt_number(L, r, "margin_ms", 0, 0, 3600e3);
    lc.maxlen = (size_t)opt_number(L, r, "maxlen", 100000, 1, 1e12);
    if (!gn_fleet_join(u->c, &lc, err, sizeof err))
      return luaL_error(L, "genesys.notify: %s", err);
  }
  lua_pop(L, 1);
  return 1;
}

/* core.now_ms(): monotonic milliseconds (tests and benchmarks time with it). */
static int l_now_ms(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec * 1000.0 + (lua_Number)ts.tv_nsec / 1e6);
  return 1;
}

/* The metatable name: methods as __index, gc as __gc, close as __close (Lua 5.4), tostring as
 * __tostring. Leaves the stack as it was. */
static void register_class(lua_State *L, const char *name, const luaL_Reg *methods,
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
      {"drain", l_drain},           {"wake_socket", l_wake_socket},
      {"fd", l_fd},                 {"close", l_close},       {"reconnect", l_reconnect},
      {"subscribe", l_subscribe},   {"unsubscribe", l_unsubscribe},
      {"state", l_state},           {"metrics", l_metrics},   {"resync_gap", l_resync_gap},
      {NULL, NULL}};
  static const luaL_Reg context_methods[] = {{"close", l_context_close}, {NULL, NULL}};
  static const luaL_Reg bell_methods[] = {{"ring", l_bell_ring},   {"path", l_bell_path},
                                          {"stats", l_bell_stats}, {"close", l_bell_close},
                                          {NULL, NULL}};
  register_class(L, LGN_CLIENT_MT, methods, l_gc, l_close, l_tostring);
  register_class(L, LGN_CONTEXT_MT, context_methods, l_context_close, l_context_close,
                 l_context_tostring);
  register_class(L, LGN_BELL_MT, bell_methods, l_bell_close, l_bell_close, l_bell_tostring);
  lua_pushcfunction(L, l_bell_new);
  lua_setfield(L, -2, "bell_new");
  /* module table is at the top */
  lua_pushcfunction(L, l_context_new);
  lua_setfield(L, -2, "context_new");
  lua_pushcfunction(L, l_is_context);
  lua_setfield(L, -2, "is_context");
  lua_pushcfunction(L, l_client_new);
  lua_setfield(L, -2, "client_new");
  lua_pushcfunction(L, l_now_ms);
  lua_setfield(L, -2, "now_ms");
  lua_pushcfunction(L, l_topic_error);
  lua_setfield(L, -2, "topic_error");
  lua_pushcfunction(L, l_json_bench);
  lua_setfield(L, -2, "json_bench");
  lua_pushcfunction(L, l_decode);
  lua_setfield(L, -2, "json_decode");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  return 0;
}
