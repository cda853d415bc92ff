/* testsock.c: gn_testsock, a test-only Lua module for the wake socket and bell specs (there is
 * no luasocket here). Built next to the client module by `make check-lua`; never installed.
 *
 *   local ts = require "gn_testsock"
 *   ts.connect(path)        -> fd, or nil and the error (a unix-domain stream socket)
 *   ts.wait(fd, timeout_ms) -> bytes read (all there are, up to 64 KB) once readable, 0 on
 *                              timeout, or "eof" (the other end closed, or an error)
 *   ts.readable(fd, timeout_ms) -> true once fd is readable, false on timeout; reads nothing
 *                              (for a client's eventfd: the queue owns what it counts)
 *   ts.close(fd)
 *   ts.stale(path)          -> true: leaves a socket file at path that nobody listens on
 *   ts.closed_port()        -> fd, port: a TCP port of 127.0.0.1 held bound and not listening
 *                              until ts.close(fd): connections to it are refused, and no other
 *                              process (a test running beside) can take it meanwhile
 */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

static int addr_of(lua_State *L, const char *path, struct sockaddr_un *sa) {
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa->sun_path) return luaL_error(L, "path too long");
  strcpy(sa->sun_path, path);
  return 0;
}

static int l_connect(lua_State *L) {
  struct sockaddr_un sa;
  addr_of(L, luaL_checkstring(L, 1), &sa);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    int e = errno;
    if (fd >= 0) close(fd);
    lua_pushnil(L);
    lua_pushstring(L, strerror(e));
    return 2;
  }
  lua_pushinteger(L, fd);
  return 1;
}

static int l_wait(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int ms = (int)luaL_checkinteger(L, 2);
  struct pollfd p = {fd, POLLIN, 0};
  int r = poll(&p, 1, ms);
  if (r == 0) {
    lua_pushinteger(L, 0);
    return 1;
  }
  char buf[65536];
  ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n <= 0) lua_pushliteral(L, "eof");
  else lua_pushinteger(L, n);
  return 1;
}

static int l_readable(lua_State *L) {
  struct pollfd p = {(int)luaL_checkinteger(L, 1), POLLIN, 0};
  lua_pushboolean(L, poll(&p, 1, (int)luaL_checkinteger(L, 2)) > 0);
  return 1;
}

static int l_close(lua_State *L) {
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

static int l_stale(lua_State *L) {
  struct sockaddr_un sa;
  addr_of(L, luaL_checkstring(L, 1), &sa);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
    return luaL_error(L, "stale: %s", strerror(errno));
  close(fd);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_closed_port(lua_State *L) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t n = sizeof sa;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &n) != 0) {
    int e = errno;
    if (fd >= 0) close(fd);
    return luaL_error(L, "closed_port: %s", strerror(e));
  }
  lua_pushinteger(L, fd);
  lua_pushinteger(L, ntohs(sa.sin_port));
  return 2;
}

__attribute__((visibility("default"))) int luaopen_gn_testsock(lua_State *L);
int luaopen_gn_testsock(lua_State *L) {
  static const luaL_Reg fns[] = {{"connect", l_connect}, {"wait", l_wait}, {"close", l_close},
                                 {"stale", l_stale},     {"readable", l_readable},
                                 {"closed_port", l_closed_port},
                                 {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  return 1;
}
