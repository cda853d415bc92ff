/* lbind_fleet.c: the fleet methods of a client (lease.h): client:lease_handover(value). The
 * Lua thread. */
#include "lbind_client.h"

#include <lauxlib.h>

/* client:lease_handover(value): hands the fleet lease this client holds to the successor whose
 * lease value (metrics().lease.value) is given; this client parks its stream once it moved
 * (health "lease" "handed_over", or "handover_failed" with the reason). Returns true, or nil
 * and a message when the client has no lease or is not running. */
int lgn_client_lease_handover(lua_State *L) {
  lclient_t *u = lgn_check_open(L, 1);
  size_t n;
  const char *to = luaL_checklstring(L, 2, &n);
  luaL_argcheck(L, n > 0 && n < 160, 2, "expected the successor's lease value");
  gn_lease_t *l = gn_fleet_lease(u->c);
  if (!l) {
    lua_pushnil(L);
    lua_pushliteral(L, "the client has no fleet lease (redis)");
    return 2;
  }
  if (gn_lease_handover(l, to) != 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "the client is not running");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}
