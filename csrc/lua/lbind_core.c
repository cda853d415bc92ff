/* lbind_core.c: luaopen_genesys_notify_core, the C module behind genesys.notify and
 * genesys.notify.backoff. Each part registers its functions into the one module table. */
#include "lbind.h"

GN_EXPORT int luaopen_genesys_notify_core(lua_State *L);

int luaopen_genesys_notify_core(lua_State *L) {
  lua_newtable(L);
  lgn_open_backoff(L);
  lgn_open_client(L);
  lgn_open_consumer(L);
  lgn_open_json(L);
  lgn_open_ring(L);
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
