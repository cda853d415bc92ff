/* testjson.c: gn_testjson, a test- and bench-only Lua module, built into build/ and never
 * installed (not part of genesys.notify.core). It links the binding's two JSON-to-Lua paths
 * (csrc/lua/lbind_tree.c, lbind_json.c) for spec/unit/json_decode_spec.lua and
 * bench/decode_bench.lua:
 *
 *   local tj = require "gn_testjson"
 *   tj.json_decode(text)         -> value, or nil and jansson's message (jansson tree -> Lua)
 *   tj.json_bench(text, n, mode) -> elapsed ms of n decodes ("text", "parse+convert", "convert")
 */
#include "lbind.h"

#include <jansson.h>
#include <string.h>
#include <time.h>

/* json_decode(text): jansson parse + conversion on the caller's thread (the decode
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
  lua_pushcfunction(L, lgn_push_json);
  lua_pushlightuserdata(L, j);
  int rc = lua_pcall(L, 1, 1, 0);
  json_decref(j);
  if (rc != 0) return lua_error(L);
  return 1;
}

/* json_bench(text, n, mode): the C side of bench/decode_bench.lua, timed in C so the loop
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
    lgn_push_tree(L, j);
    lua_pop(L, 1);
    if (!convert_only) json_decref(j);
    if ((i & 255) == 0) lua_gc(L, LUA_GCSTEP, 0);
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  json_decref(pre);
  lua_pushnumber(L, (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6);
  return 1;
}

GN_EXPORT int luaopen_gn_testjson(lua_State *L) {
  static const luaL_Reg fns[] = {{"json_decode", l_decode}, {"json_bench", l_json_bench}, {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  return 1;
}
