/* Fuzzes the decoding of JSON text into Lua values on the Lua thread (csrc/lua/lbind_json.c
 * lgn_json_push), as poll() does for an event's body. The invariant that matters: the decoder
 * accepts exactly the bodies the service thread accepts (gn_msg_classify: its scan, or jansson
 * when the scan is not sure), so poll() never raises on an event the service thread queued, and
 * nothing the service thread refused could be decoded either. Where it accepts, it gives the
 * values of the reference, jansson's tree of the same text converted by lgn_push_json (types,
 * integer or float, keys), unless that conversion refuses the nesting (its own lower limit).
 *
 * Input: the bytes, taken two ways: as a whole message (the body of an event it makes is
 * decoded), and as a body wrapped in {"topicName":"t","eventBody": ... } (the decoder accepts the
 * bytes alone iff the service thread classifies the wrapper as an event whose body is exactly
 * them). Each decode runs in a fresh Lua 5.4 state. */
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
  if (lua_type(L, a) != lua_type(L, b) || depth > 2100) return 0;
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

/* Decodes s (n bytes) with lgn_json_push. Returns 1 when it gave a value (left on L's stack),
 * 0 when it raised. Only "invalid JSON" or "nested too deeply" may be raised. */
static int decode(lua_State *L, const char *s, size_t n) {
  lua_pushcfunction(L, decode_text);
  lua_pushlstring(L, s, n);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) return 1;
  const char *e = lua_tostring(L, -1);
  FZ_ASSERT(e && (strstr(e, "invalid JSON") || strstr(e, "nested too deeply")));
  lua_pop(L, 1);
  return 0;
}

/* The decoded value on top of L equals jansson's tree of s converted by lgn_push_json (when
 * that conversion does not refuse the nesting). Pops the value. */
static void check_values(lua_State *L, const char *s, size_t n) {
  json_t *j = json_loadb(s, n, JSON_DECODE_ANY, NULL);
  FZ_ASSERT(j); /* the service thread accepted it, so jansson did */
  lua_pushcfunction(L, lgn_push_json);
  lua_pushlightuserdata(L, j);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) FZ_ASSERT(same(L, -2, -1, 0));
  lua_pop(L, 2);
  json_decref(j);
}

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = luaL_newstate();
  FZ_ASSERT(L);
  /* 1. a whole message: an event's body always decodes */
  gn_msg_t m;
  gn_msg_classify((const char *)data, size, 0, &m);
  if (m.kind == GN_MSG_EVENT && m.body) {
    FZ_ASSERT(decode(L, m.body, m.body_len));
    check_values(L, m.body, m.body_len);
  }
  gn_msg_clear(&m);
  /* 2. a body: decoded alone iff the service thread takes it as an event's whole body */
  static const char head[] = "{\"topicName\":\"v2.users.x.presence\",\"eventBody\":";
  size_t hl = sizeof head - 1, wl = hl + size + 1;
  char *w = malloc(wl);
  FZ_ASSERT(w);
  memcpy(w, head, hl);
  memcpy(w + hl, data, size);
  w[wl - 1] = '}';
  size_t a = 0, b = size; /* the bytes without surrounding whitespace */
  while (a < b && is_ws(data[a])) a++;
  while (b > a && is_ws(data[b - 1])) b--;
  int taken = gn_msg_classify(w, wl, 0, &m) == GN_MSG_EVENT && m.body == w + hl + a &&
              m.body_len == b - a;
  gn_msg_clear(&m);
  int decoded = decode(L, (const char *)data, size);
  FZ_ASSERT(decoded == taken);
  if (decoded) check_values(L, (const char *)data, size);
  free(w);
  lua_close(L);
  return 0;
}
