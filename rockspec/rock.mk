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

# The release: `make dist` writes the source archive of the files git knows (as they are in the
# working tree) under build/dist/; `make src-rock` packs the release rockspec with it into a
# source rock that installs offline from the file alone:
#   LUAROCKS_CONFIG=rockspec/luarocks-config.lua luarocks --lua-version=5.4 install \
#     build/dist/genesys-notify-$(VERSION)-1.src.rock
# The version is the release rockspec's (csrc/lua/lbind_core.c's _VERSION must match it: rock_spec).
RELEASE_ROCKSPEC := $(lastword $(sort $(wildcard rockspec/genesys-notify-[0-9]*-1.rockspec)))
VERSION  := $(patsubst rockspec/genesys-notify-%-1.rockspec,%,$(RELEASE_ROCKSPEC))
DIST_DIR := build/dist
DIST_TGZ := $(DIST_DIR)/genesys-notify-$(VERSION).tar.gz
SRC_ROCK := $(DIST_DIR)/genesys-notify-$(VERSION)-1.src.rock

.PHONY: dist src-rock
dist:
	@mkdir -p $(DIST_DIR)
	git ls-files -z --cached --others --exclude-standard | \
	  xargs -0 sh -c 'for f; do [ -f "$$f" ] && printf "%s\0" "$$f"; done' sh | \
	  tar --null -T - --transform 's,^,genesys-notify-$(VERSION)/,' -czf $(DIST_TGZ)
	@echo "make dist: $(DIST_TGZ)"

# A source rock is a zip of the rockspec and its source archive (what `luarocks pack` writes); it
# is zipped here because `luarocks pack` resolves the rockspec's plain file name in its own
# temporary folder, while `luarocks install` of the rock finds the archive inside it.
src-rock: dist
	cp $(RELEASE_ROCKSPEC) $(DIST_DIR)/
	rm -f $(SRC_ROCK)
	cd $(DIST_DIR) && zip -q $(notdir $(SRC_ROCK)) $(notdir $(RELEASE_ROCKSPEC)) $(notdir $(DIST_TGZ))
	@echo "make src-rock: $(SRC_ROCK)"
