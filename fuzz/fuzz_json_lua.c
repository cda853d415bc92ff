/* Fuzzes the decoding of JSON text into Lua values on the Lua thread (csrc/lbind_json.c
 * lgn_json_push), as poll() does for an event's body, against the reference: jansson's tree of
 * the same text converted by lgn_push_json (what events carried before). The message is
 * classified the way the service thread does (gn_msg_classify); the event's body span, and the
 * whole text whenever jansson parses it, are decoded both ways in a fresh Lua 5.4 state and must
 * give the same values (types, integer or float, keys). Input: the message text. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "fuzz_util.h"
#include "lbind.h"
#include "message.h"

/* The values at a and b are the same (tables deeply). Returns 1 or 0. */
static int same(lua_State *L, int a, int b, int depth) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  if (lua_type(L, a) != lua_type(L, b) || depth > 1100) return 0;
  switch (lua_type(L, a)) {
  case LUA_TNUMBER:
    return lua_isinteger(L, a) == lua_isinteger(L, b) && lua_rawequal(L, a, b);
  case LUA_TTABLE: {
    size_t na = 0, nb = 0;
    lua_pushnil(L);
    while (lua_next(L, a)) { /* key -2, value -1 */
      na++;
      lua_pushvalue(L, -2);
      lua_rawget(L, b);
      int ok = same(L, -2, -1, depth + 1);
      lua_pop(L, 2);
      if (!ok) {
        lua_pop(L, 1);
        return 0;
      }
    }
    lua_pushnil(L);
    while (lua_next(L, b)) {
      nb++;
      lua_pop(L, 1);
    }
    return na == nb;
  }
  default:
    return lua_rawequal(L, a, b);
  }
}

static int decode_text(lua_State *L) {
  size_t n;
  const char *s = lua_tolstring(L, 1, &n);
  lgn_json_push(L, s, n);
  return 1;
}

/* Decodes s both ways and checks they agree (or both fail on nesting). */
static void both(lua_State *L, const char *s, size_t n) {
  json_t *j = json_loadb(s, n, JSON_DECODE_ANY, NULL);
  FZ_ASSERT(j); /* callers pass only text jansson took */
  lua_pushcfunction(L, lgn_push_json);
  lua_pushlightuserdata(L, j);
  int r1 = lua_pcall(L, 1, 1, 0);
  lua_pushcfunction(L, decode_text);
  lua_pushlstring(L, s, n);
  int r2 = lua_pcall(L, 1, 1, 0);
  if (r1 == LUA_OK) {
    FZ_ASSERT(r2 == LUA_OK);
    FZ_ASSERT(same(L, -2, -1, 0));
  } else {
    /* only nesting too deep (or out of memory) may fail, and then both do */
    FZ_ASSERT(r1 == LUA_ERRRUN || r1 == LUA_ERRMEM);
    FZ_ASSERT(r2 == r1);
  }
  lua_pop(L, 2);
  json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gn_msg_t m;
  gn_msg_classify((const char *)data, size, 0, &m);
  lua_State *L = luaL_newstate();
  FZ_ASSERT(L);
  if (m.kind == GN_MSG_EVENT && m.body) both(L, m.body, m.body_len);
  json_t *whole = json_loadb((const char *)data, size, 0, NULL);
  if (whole) both(L, (const char *)data, size);
  json_decref(whole);
  lua_close(L);
  gn_msg_clear(&m);
  return 0;
}
