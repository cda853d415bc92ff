/* lbind_tree.c: a jansson tree (health items, the fleet's stream entries) as Lua values. Event
 * bodies do not come this way: lbind_json.c decodes their text. The Lua thread. */
#include "lbind.h"

#include <jansson.h>
#include <math.h>

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

/* See lbind.h. */
void lgn_push_tree(lua_State *L, json_t *j) { push_json(L, j, 0); }

/* See lbind.h (for fuzz/fuzz_json_lua.c and the consumer). */
int lgn_push_json(lua_State *L) {
  push_json(L, (json_t *)lua_touserdata(L, 1), 0);
  return 1;
}
