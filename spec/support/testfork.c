/* testfork.c: gn_testfork, a test-only Lua module for spec/integration/client_fork_spec.lua
 * (Lua has no fork). Built next to the client module by `make check-lua`; never installed.
 *
 *   local tf = require "gn_testfork"
 *   tf.fork()                 -> pid (0 in the child); stdio is flushed first
 *   tf.wait(pid, timeout_ms)  -> exit code, or nil and "signal N" / "timeout" (the child is then
 *                                killed with SIGKILL and reaped)
 *   tf.exit(code[, atexit])   -> _exit(code): no atexit handlers, no Lua state closing, and
 *                                no leak check (LeakSanitizer's is an atexit handler; valgrind's
 *                                is turned off first): a child holds the parent's memory, some
 *                                of it reachable only from the parent's threads, absent here;
 *                                with atexit true, exit(code): atexit handlers run
 *                                (LeakSanitizer's check in ASan builds) but the Lua state is
 *                                still not closed
 *   tf.getpid()               -> this process's pid
 */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define GN_HAVE_VALGRIND_H 1
#endif
#endif

static int l_fork(lua_State *L) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return luaL_error(L, "fork: %s", strerror(errno));
  lua_pushinteger(L, pid);
  return 1;
}

static int l_wait(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  double timeout_ms = luaL_checknumber(L, 2);
  struct timespec start, now, nap = {0, 10 * 1000 * 1000};
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(st)) {
        lua_pushinteger(L, WEXITSTATUS(st));
        return 1;
      }
      lua_pushnil(L);
      lua_pushfstring(L, "signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : -1);
      return 2;
    }
    if (r < 0) return luaL_error(L, "waitpid: %s", strerror(errno));
    clock_gettime(CLOCK_MONOTONIC, &now);
    double el = (double)(now.tv_sec - start.tv_sec) * 1e3 + (double)(now.tv_nsec - start.tv_nsec) / 1e6;
    if (el > timeout_ms) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      lua_pushnil(L);
      lua_pushliteral(L, "timeout");
      return 2;
    }
    nanosleep(&nap, NULL);
  }
}

static int l_exit(lua_State *L) {
  fflush(NULL);
  if (lua_toboolean(L, 2)) exit((int)luaL_optinteger(L, 1, 0));
#ifdef GN_HAVE_VALGRIND_H
  /* memcheck still reports errors made in the child; its leak check at exit would count the
   * parent's memory held by threads the child does not have (OpenSSL's per-thread error queue
   * and random generators, a transport's buffers): skipped, as LeakSanitizer's is */
  if (RUNNING_ON_VALGRIND) VALGRIND_CLO_CHANGE("--leak-check=no");
#endif
  _exit((int)luaL_optinteger(L, 1, 0));
  return 0;
}

static int l_getpid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

__attribute__((visibility("default"))) int luaopen_gn_testfork(lua_State *L);
int luaopen_gn_testfork(lua_State *L) {
  static const luaL_Reg fns[] = {{"fork", l_fork}, {"wait", l_wait}, {"exit", l_exit},
                                 {"getpid", l_getpid}, {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  return 1;
}
