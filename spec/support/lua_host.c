/* lua_host.c: a minimal Lua 5.4 interpreter linked with the sanitizer runtime, used to run
 * busted in the ASan/TSan builds (`make asan`, `make tsan`).
 *
 * Why not LD_PRELOAD the sanitizer into Debian's lua5.4: every child the specs start through
 * io.popen/os.execute (sh, curl, openssl) inherits LD_PRELOAD, and /bin/sh segfaults at start
 * with libtsan preloaded. Linking the runtime into this host keeps it out of the children.
 *
 * Usage: lua_host SCRIPT [ARGS...]  (arg[0] = SCRIPT, arg[1..] = ARGS, as lua5.4 does). */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>

static int traceback(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s SCRIPT [ARGS...]\n", argv[0]);
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (!L) return 1;
  luaL_openlibs(L);
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1); /* arg[-1] = host, arg[0] = script */
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, traceback);
  int status = luaL_loadfile(L, argv[1]);
  if (status == LUA_OK) {
    for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
    status = lua_pcall(L, argc - 2, 0, 1);
  }
  if (status != LUA_OK) fprintf(stderr, "%s\n", lua_tostring(L, -1));
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
