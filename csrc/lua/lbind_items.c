/* lbind_items.c: items as Lua tables and the callbacks that receive them, one dispatch for the
 * client (lbind_client.c) and the fleet's consumer (lbind_consumer.c): a callback runs in
 * protected mode with a traceback, marked as running (poll()/run() refuse to re-enter), and one
 * that raises is reported as health "callback_error" through on_health (or stderr). The Lua
 * thread only. */
#include "lbind.h"
#include "gn_util.h"
#include "queue.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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

/* An event's body (decoded from the text the service thread validated, lbind_json.c; not with
 * raw_only) and raw text into the table at the top. */
static void set_body_raw(lua_State *L, const gn_item_t *it, int raw_only) {
  if (!raw_only) {
    if (it->body_len) lgn_json_push(L, it->raw + it->body_off, it->body_len);
    else lua_newtable(L);
    lua_setfield(L, -2, "body");
  }
  lua_pushlstring(L, it->raw, it->rawlen);
  lua_setfield(L, -2, "raw");
}

/* See lbind.h. */
int lgn_entry_table(lua_State *L) {
  gn_item_t *it = (gn_item_t *)lua_touserdata(L, 1);
  if (it->data) lgn_push_tree(L, it->data);
  else lua_newtable(L);
  if (it->type == GN_ITEM_EVENT) set_body_raw(L, it, 0);
  return 1;
}

/* See lbind.h. */
int lgn_item_table(lua_State *L) {
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
    set_body_raw(L, it, raw_only);
    return 1;
  }
  if (it->data) lgn_push_tree(L, it->data);
  else lua_newtable(L);
  return 1;
}

int lgn_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* lua_pcall of the callback `which` with one argument, marked as running on u (the guard
 * against re-entering poll()/run() from it). The mark is set only around lua_pcall, which never
 * raises, so no error can leave it set. */
int lgn_pcall_callback(lua_State *L, lgn_caller_t *u, const char *which, int nresults, int msgh) {
  const char *outer = u->in_callback;
  u->in_callback = which;
  int rc = lua_pcall(L, 1, nresults, msgh);
  u->in_callback = outer;
  return rc;
}

/* Calls the callback at the stack top with the value below it... in protected mode. Expects
 * [fn, arg] on the stack; pops them. Returns 0 or the error message left on the stack (1). */
int lgn_call_protected(lua_State *L, lgn_caller_t *u, const char *which) {
  lua_pushcfunction(L, lgn_traceback);
  lua_insert(L, -3);
  int base = lua_gettop(L) - 2;
  int rc = lgn_pcall_callback(L, u, which, 0, base);
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
void lgn_report_callback_error(lua_State *L, lgn_caller_t *u, int uv, const char *which) {
  const char *msg = lua_tostring(L, -1);
  lua_getfield(L, uv, "on_health");
  if (lua_isfunction(L, -1)) {
    lua_createtable(L, 0, 5);
    lua_pushliteral(L, "callback_error");
    lua_setfield(L, -2, "kind");
    if (u->state) {
      lua_pushstring(L, u->state(u));
      lua_setfield(L, -2, "state");
    }
    lua_pushnumber(L, gn_now_wall_ms());
    lua_setfield(L, -2, "timestamp_ms");
    lua_pushstring(L, which);
    lua_setfield(L, -2, "callback");
    lua_pushstring(L, msg ? msg : "?");
    lua_setfield(L, -2, "error");
    if (lgn_call_protected(L, u, "on_health") == 0) {
      lua_pop(L, 1); /* msg */
      return;
    }
    fprintf(stderr, "genesys.notify: %son_health failed while reporting an error: %s\n", u->what,
            lua_tostring(L, -1));
    lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
  }
  fprintf(stderr, "genesys.notify: %s%s raised: %s\n", u->what, which, msg ? msg : "?");
  lua_pop(L, 1);
}

/* See lbind.h. */
int lgn_dispatch(lua_State *L, lgn_caller_t *u, int uv, const char *which, lua_CFunction push,
                 gn_item_t *it) {
  lua_getfield(L, uv, which);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return 2;
  }
  /* Build the table in protected mode so the caller frees the item even on a memory error. */
  lua_pushcfunction(L, push);
  lua_pushlightuserdata(L, it);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    lua_remove(L, -2); /* the callback */
    lgn_report_callback_error(L, u, uv, which);
    return 0;
  }
  if (lgn_call_protected(L, u, which)) {
    lgn_report_callback_error(L, u, uv, which);
    return 0;
  }
  return 1;
}

/* ---- A run of events through on_event (lgn_deliver_events) ----
 * One protected call for the whole run instead of two per event (the table's, then the
 * callback's): the traceback handler, the table's field names and the last topic and channel id
 * (the same for most events) stay on the stack, so an event's table costs no field-name lookup,
 * and a topic already seen is not hashed again. Each callback still runs in its own lua_pcall. */
enum { R_RUN = 1, R_UV, R_ARR, R_LOOP, R_REPORT, R_MSGH, R_ONEV, R_TOPIC, R_CHAN, R_CORR, R_MS,
       R_BODY, R_RAW, R_LTOPIC, R_LCHAN, R_TOP = R_LCHAN };

/* On LuaJIT a C-to-Lua lua_pcall per event is slow and ends the trace: the run's tables go into
 * an array (R_ARR), RUN_CHUNK at a time, and one compiled Lua loop (LOOP_SRC) calls on_event
 * for each through xpcall with the same traceback handler, reading uv.on_event each time as
 * before and reporting an error through report (lgn_report_callback_error, as before). A
 * callback that closes the client marks the old uservalue (lgn_close_uservalue): the loop
 * stops there, the rest is discarded as before. Lua 5.4 keeps one lua_pcall per callback. */
#if LUA_VERSION_NUM == 501
#define LUA_LOOP 1
#else
#define LUA_LOOP 0
#endif
enum { RUN_CHUNK = 64 };
static const char loop_key = 0, stop_key = 0;
static const char LOOP_SRC[] =
  "local xpcall, type = xpcall, type\n"
  "return function(uv, arr, k, tb, report, stop)\n"
  "  local ran = 0\n"
  "  for i = 1, k do\n"
  "    local ev, f = arr[i], uv.on_event\n"
  "    arr[i] = nil\n"
  "    if type(f) == 'function' then\n"
  "      ran = ran + 1\n"
  "      local ok, err = xpcall(f, tb, ev)\n"
  "      if not ok then report(uv, err) end\n"
  "      if uv[stop] then\n"
  "        for j = i + 1, k do arr[j] = nil end\n"
  "        return ran\n"
  "      end\n"
  "    end\n"
  "  end\n"
  "  return ran\n"
  "end\n";

/* See lbind.h. */
void lgn_close_uservalue(lua_State *L, int idx) {
  lua_getuservalue(L, idx);
  lua_pushlightuserdata(L, (void *)&stop_key);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_newtable(L);
  lua_setuservalue(L, idx);
}

typedef struct {
  lgn_caller_t *u;
  gn_item_t **batch;  /* the events left; the first is freed once its table is built */
  gn_item_t *cur;     /* the event whose table is being built (the caller frees it on error) */
  int n, max;         /* callbacks run, and the most this run may run */
  int k;              /* tables waiting in the array (LUA_LOOP) */
  const int *closed;  /* set when a callback closed the client: stop */
  const char *ltopic, *lchan; /* the strings at R_LTOPIC and R_LCHAN */
} run_t;

/* The string s at slot (the same text as last time), or s pushed and kept there. */
static void push_kept(lua_State *L, const char *s, int slot, const char **kept) {
  if (*kept && strcmp(*kept, s) == 0) {
    lua_pushvalue(L, slot);
    return;
  }
  lua_pushstring(L, s);
  lua_pushvalue(L, -1);
  lua_replace(L, slot);
  *kept = lua_tostring(L, slot);
}

/* The event's table, as lgn_item_table makes it. May raise (memory, or a body that does not
 * decode). */
static void event_table(lua_State *L, run_t *r, const gn_item_t *it) {
  lua_createtable(L, 0, it->correlation_id ? 6 : 5);
  lua_pushvalue(L, R_TOPIC);
  push_kept(L, it->topic, R_LTOPIC, &r->ltopic);
  lua_rawset(L, -3);
  lua_pushvalue(L, R_CHAN);
  push_kept(L, it->channel_id, R_LCHAN, &r->lchan);
  lua_rawset(L, -3);
  lua_pushvalue(L, R_MS);
  push_ms(L, it->received_ms);
  lua_rawset(L, -3);
  if (it->correlation_id) {
    lua_pushvalue(L, R_CORR);
    lua_pushstring(L, it->correlation_id);
    lua_rawset(L, -3);
  }
  lua_pushvalue(L, R_BODY);
  if (it->body_len) lgn_json_push(L, it->raw + it->body_off, it->body_len);
  else lua_newtable(L);
  lua_rawset(L, -3);
  lua_pushvalue(L, R_RAW);
  lua_pushlstring(L, it->raw, it->rawlen);
  lua_rawset(L, -3);
}

/* [run (light userdata), uv]: the run's events into uv.on_event, until a non-event, max, or
 * the client closed. Raises only while building a table (r->cur says which event). */
/* The k tables waiting in the array at arr (the loop, report and traceback handler above it)
 * through the Lua loop, in protected mode (a raise there is memory's: reported). */
static void flush(lua_State *L, run_t *r, int uv, int arr) {
  int k = r->k;
  r->k = 0;
  lua_pushvalue(L, arr + 1);
  lua_pushvalue(L, uv);
  lua_pushvalue(L, arr);
  lua_pushinteger(L, k);
  lua_pushvalue(L, arr + 3);
  lua_pushvalue(L, arr + 2);
  lua_pushlightuserdata(L, (void *)&stop_key);
  const char *outer = r->u->in_callback;
  r->u->in_callback = "on_event";
  int rc = lua_pcall(L, 6, 1, 0);
  r->u->in_callback = outer;
  if (rc != 0) {
    r->n -= k;
    lgn_report_callback_error(L, r->u, uv, "on_event");
    return;
  }
  r->n -= k - (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
}

/* report(uv, err) for the loop: as a callback's error is reported. */
static int loop_report(lua_State *L) {
  run_t *r = lua_touserdata(L, lua_upvalueindex(1));
  lua_settop(L, 2);
  lgn_report_callback_error(L, r->u, 1, "on_event");
  return 0;
}

static int deliver_run(lua_State *L) {
  run_t *r = lua_touserdata(L, R_RUN);
  lua_settop(L, R_MSGH);
  lua_pushliteral(L, "on_event");
  lua_pushliteral(L, "topic");
  lua_pushliteral(L, "channel_id");
  lua_pushliteral(L, "correlation_id");
  lua_pushliteral(L, "received_ms");
  lua_pushliteral(L, "body");
  lua_pushliteral(L, "raw");
  lua_pushnil(L);
  lua_pushnil(L);
  r->ltopic = r->lchan = NULL;
  gn_item_t *it;
  while ((it = *r->batch) && it->type == GN_ITEM_EVENT && r->n < r->max && !*r->closed) {
    lua_pushvalue(L, R_ONEV);
    lua_rawget(L, R_UV);
    if (!lua_isfunction(L, -1)) { /* no callback: the event goes, uncounted (lgn_dispatch's 2) */
      lua_pop(L, 1);
      *r->batch = it->next;
      gn_item_free(it);
      continue;
    }
    r->cur = it;
    event_table(L, r, it);
    r->cur = NULL;
    *r->batch = it->next;
    gn_item_free(it);
    r->n++;
    if (LUA_LOOP) {
      lua_rawseti(L, R_ARR, ++r->k);
      if (r->k == RUN_CHUNK) flush(L, r, R_UV, R_ARR);
    } else if (lgn_pcall_callback(L, r->u, "on_event", 0, R_MSGH) != 0) {
      lgn_report_callback_error(L, r->u, R_UV, "on_event");
    }
    lua_settop(L, R_TOP);
  }
  if (r->k) flush(L, r, R_UV, R_ARR);
  return 0;
}

/* Pushes the array, the loop, report and the traceback handler (R_ARR..R_MSGH); nils but the
 * handler on Lua 5.4. */
static void push_loop(lua_State *L, run_t *r) {
  if (!LUA_LOOP) {
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushcfunction(L, lgn_traceback);
    return;
  }
  lua_createtable(L, RUN_CHUNK, 0);
  lua_pushlightuserdata(L, (void *)&loop_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, LOOP_SRC, sizeof LOOP_SRC - 1, "=genesys.notify poll") != 0) lua_error(L);
    lua_call(L, 0, 1);
    lua_pushlightuserdata(L, (void *)&loop_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_pushlightuserdata(L, r);
  lua_pushcclosure(L, loop_report, 1);
  lua_pushcfunction(L, lgn_traceback);
}

/* See lbind.h. */
int lgn_deliver_events(lua_State *L, lgn_caller_t *u, int uv, gn_item_t **batch, int max,
                       const int *closed) {
  run_t r = {u, batch, NULL, 0, max, 0, closed, NULL, NULL};
  int top = lua_gettop(L);
  push_loop(L, &r);
  int arr = top + 1;
  while (*batch && (*batch)->type == GN_ITEM_EVENT && r.n < r.max && !*closed) {
    gn_item_t *head = *batch;
    lua_pushcfunction(L, deliver_run);
    lua_pushlightuserdata(L, &r);
    lua_pushvalue(L, uv);
    for (int i = 0; i < 4; i++) lua_pushvalue(L, arr + i);
    if (lua_pcall(L, 6, 0, 0) == 0) break;
    /* The tables built before the one that failed go first, in order (the message stays). */
    if (r.k) flush(L, &r, uv, arr);
    /* Building an event's table failed (memory): reported like its callback's error, as
     * lgn_dispatch does, and the run goes on after it. Any other failure (a report's own) has
     * freed its event already; one before the first table (the stack's set-up) is the head's. */
    if (!r.cur && *batch == head) r.cur = head;
    if (r.cur) {
      *batch = r.cur->next;
      gn_item_free(r.cur);
      r.cur = NULL;
      r.n++;
    }
    lgn_report_callback_error(L, u, uv, "on_event");
  }
  lua_settop(L, top);
  return r.n;
}
