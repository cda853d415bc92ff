/* lbind_context.c: contexts (notify.context(): a service thread of one's own) and bells
 * (notify.bell(path)). The Lua thread. */
#include "bell.h"
#include "lbind_client.h"

#include <string.h>

/* ---- contexts ---- */

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
  if (x->pid != getpid()) lgn_refuse_forked(L, "bell", x->pid);
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
  lgn_setint(L, "peers", st.peers);
  lgn_setint(L, "accepted", st.accepted);
  lgn_setint(L, "refused", st.refused);
  lgn_setint(L, "rings", st.rings);
  lgn_setint(L, "skipped", st.skipped);
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

/* See lbind_client.h. */
int lgn_open_context(lua_State *L) {
  static const luaL_Reg context_methods[] = {{"close", l_context_close}, {NULL, NULL}};
  static const luaL_Reg bell_methods[] = {{"ring", l_bell_ring},   {"path", l_bell_path},
                                          {"stats", l_bell_stats}, {"close", l_bell_close},
                                          {NULL, NULL}};
  lgn_register_class(L, LGN_CONTEXT_MT, context_methods, l_context_close, l_context_close,
                     l_context_tostring);
  lgn_register_class(L, LGN_BELL_MT, bell_methods, l_bell_close, l_bell_close, l_bell_tostring);
  lua_pushcfunction(L, l_bell_new);
  lua_setfield(L, -2, "bell_new");
  lua_pushcfunction(L, l_context_new);
  lua_setfield(L, -2, "context_new");
  lua_pushcfunction(L, l_is_context);
  lua_setfield(L, -2, "is_context");
  return 0;
}
