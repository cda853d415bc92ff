-- genesys-notify: LuaRocks package. Built with the top Makefile (build.type = "make").
--
-- Offline install from a checkout (no LuaRocks server needed; Debian's lua-cjson is declared as
-- provided by rockspec/luarocks-config.lua):
--   LUAROCKS_CONFIG=rockspec/luarocks-config.lua luarocks --lua-version=5.4 make \
--     rockspec/genesys-notify-scm-1.rockspec
-- or `make rock`. See docs/install.md. The release rockspec beside it (genesys-notify-0.1.0-1)
-- differs only in its version and source.
rockspec_format = "3.0"
package = "genesys-notify"
version = "scm-1"

source = {
  -- Only `luarocks build`/`pack` fetch this; `luarocks make` builds the checkout it runs in.
  -- Replace with the public repository once there is one.
  url = "git+file://.",
}

description = {
  summary = "Keeps Genesys Cloud notification streams alive, with a jittered, bounded backoff engine",
  detailed = [[
A Lua module with a C core that gets and renews OAuth tokens, creates notification channels,
subscribes topics, holds the WebSocket open and reconnects with an exponential backoff engine
(jittered, bounded, single-flight, scriptable from Lua). Builds for Lua 5.4 and LuaJIT.
]],
  license = "MIT",
  labels = { "genesys", "websocket", "backoff", "notifications" },
}

dependencies = {
  "lua >= 5.1",
  "lua-cjson",
}

-- The C module links libwebsockets, libcurl, libuv, OpenSSL and jansson through pkg-config, and hiredis
-- (`make deps` installs them on Debian 12).
build = {
  type = "make",
  -- Only the module: the C tests and benchmarks are not part of the rock.
  build_target = "module",
  install_target = "install",
  -- The Makefile takes the headers from LUA_INCDIR (no pkg-config lookup then) and installs into
  -- LUA_LIBDIR/LUA_LUADIR. LUA is the interpreter LuaRocks was asked for; the build folder is named
  -- after the headers so a rock built for another Lua never reuses the objects of this one, nor
  -- those of a development build (build/lua5.4, build/luajit). LIBFLAG is passed for completeness:
  -- the Makefile links with its own `-shared`.
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA = "$(LUA)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    BUILD = "build/rock$(LUA_INCDIR)",
  },
  install_variables = {
    CFLAGS = "$(CFLAGS)",
    LUA = "$(LUA)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    BUILD = "build/rock$(LUA_INCDIR)",
    PREFIX = "$(PREFIX)",
    LUA_LIBDIR = "$(LIBDIR)",
    LUA_LUADIR = "$(LUADIR)",
  },
  -- The command-line tool; LuaRocks wraps it so it runs with this rock's Lua and paths.
  install = {
    bin = { ["genesys-notify"] = "bin/genesys-notify" },
  },
}
