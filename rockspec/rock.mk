# rock.mk: the offline LuaRocks install (the top Makefile includes it: -include rockspec/rock.mk).
#
#   make rock                         install for Lua 5.4 into LuaRocks' default tree (/usr/local
#                                     as root: then `lua5.4 -e 'require "genesys.notify.backoff"'`
#                                     works from any directory)
#   make rock ROCK_TREE=/tmp/gn       into another tree
#   make rock LUA=luajit              for LuaJIT (LuaRocks' 5.1 tree, LuaJIT's headers)
#
# No network: rockspec/luarocks-config.lua has no rock server and declares Debian's lua-cjson as
# provided. MAKEFLAGS is cleared so that variables given to this make (BUILD=..., SAN=...) do not
# leak into the make LuaRocks runs, which must build exactly what the rockspec says.
ROCKSPEC    := rockspec/genesys-notify-scm-1.rockspec
ROCK_CONFIG := rockspec/luarocks-config.lua
LUAROCKS    ?= luarocks
ROCK_TREE   ?=
ifeq ($(LUA),luajit)
  # LuaRocks would look for lua5.1's headers and interpreter: point it at LuaJIT's.
  ROCK_VARS := LUA_INCDIR=$(LUA_INCDIR) LUA=$(shell command -v luajit)
endif

.PHONY: rock
rock:
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL LUAROCKS_CONFIG=$(ROCK_CONFIG) \
	  $(LUAROCKS) --lua-version=$(LUA_ABI) $(if $(ROCK_TREE),--tree $(ROCK_TREE)) \
	  make $(ROCKSPEC) $(ROCK_VARS)
