/* compat.h: the few Lua C API differences between Lua 5.4 and Lua 5.1/LuaJIT (OpenResty's
 * luajit2, which already has luaL_setfuncs, luaL_testudata, luaL_setmetatable, luaL_traceback).
 * Each target is built separately; this header only papers over names. */
#ifndef GN_COMPAT_H
#define GN_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 502
#  define lua_rawlen(L, i) lua_objlen((L), (i))
static inline int lua_absindex(lua_State *L, int i) {
  return (i > 0 || i <= LUA_REGISTRYINDEX) ? i : lua_gettop(L) + i + 1;
}
/* User values live in the userdata's environment table on 5.1. */
#  define lua_setuservalue(L, i) lua_setfenv((L), (i))
#  define lua_getuservalue(L, i) lua_getfenv((L), (i))
#  define GN_HAVE_CLOSE 0
#else
#  define GN_HAVE_CLOSE (LUA_VERSION_NUM >= 504)
#endif

/* A number with an integral value that fits in 53 bits (also 2.0 on 5.4, and any integer). */
static inline int gn_isinteger(lua_State *L, int i) {
  if (lua_type(L, i) != LUA_TNUMBER) return 0;
#if LUA_VERSION_NUM >= 503
  if (lua_isinteger(L, i)) return 1;
#endif
  lua_Number n = lua_tonumber(L, i);
  return n >= -9007199254740992.0 && n <= 9007199254740992.0 && n == (lua_Number)(long long)n;
}

#endif
