/* cli.h: the parts of genesys.notify.cli (the genesys-notify command's C module, csrc/cli/) that
 * its files share. The module is not part of core.so: nginx and applications that load the
 * library never carry the command's HTTP listener, signal handling or output writer. Everything
 * here runs on the command's Lua thread only (the library's service thread never sees it). */
#ifndef GN_CLI_H
#define GN_CLI_H

#include <poll.h>
#include <stddef.h>

#include "compat.h"

#define LCLI_HTTPD_MT "genesys.notify.cli.httpd"

/* Registers metatable mt with methods m as __index and gc as __gc (once). Returns nothing. */
void lcli_new_class(lua_State *L, const char *mt, const luaL_Reg *m, lua_CFunction gc);
/* Monotonic milliseconds. */
double lcli_mono_ms(void);

typedef struct lcli_httpd lcli_httpd_t;

/* The /metrics responder (cli_http.c): registers cli.http_server and the server's methods into
 * the module table on top of L. Returns 0. */
int lcli_open_http(lua_State *L);
/* The server at index i (raises when it is not one, or closed). */
lcli_httpd_t *lcli_check_httpd(lua_State *L, int i);
/* Adds the server's sockets to pfd (at most max entries; slot[k] says which connection pfd[k]
 * is, -1 the listener) and lowers *deadline to the earliest connection deadline. Returns how
 * many it added. */
int lcli_httpd_pollfds(lcli_httpd_t *h, struct pollfd *pfd, int *slot, int max, double *deadline);
/* Serves what poll() found ready on the n entries added by lcli_httpd_pollfds, then closes the
 * connections past their deadlines. The handler function is at stack index hidx. */
void lcli_httpd_serve(lua_State *L, lcli_httpd_t *h, const struct pollfd *pfd, const int *slot,
                      int n, int hidx);

#endif
