/* Fuzzes the conversion of a message's JSON tree into Lua values (csrc/lbind_client.c
 * lgn_push_json), as poll() does for an event: the message is parsed the way the service thread
 * does (gn_msg_classify), and its tree converted in a fresh Lua 5.4 state. Input: the message
 * text. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "fuzz_util.h"
#include "lbind.h"
#include "message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gn_msg_t m;
  gn_msg_classify((const char *)data, size, 0, &m);
  if (m.root) {
    lua_State *L = luaL_newstate();
    FZ_ASSERT(L);
    /* the whole message, then the event body, as an event item carries both */
    json_t *trees[2] = {m.root, m.body};
    for (int i = 0; i < 2 && trees[i]; i++) {
      lua_pushcfunction(L, lgn_push_json);
      lua_pushlightuserdata(L, trees[i]);
      int rc = lua_pcall(L, 1, 1, 0);
      if (rc == LUA_OK) {
        FZ_ASSERT(i == 1 || lua_type(L, -1) == LUA_TTABLE);
      } else {
        /* only nesting too deep (or out of memory) may fail */
        FZ_ASSERT(rc == LUA_ERRRUN || rc == LUA_ERRMEM);
      }
      lua_pop(L, 1);
    }
    lua_close(L);
  }
  gn_msg_clear(&m);
  return 0;
}
