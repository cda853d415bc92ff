# genesys-notify build.
#
# Variables (override on the command line, e.g. `make LUA=luajit`):
#   LUA          interpreter the C module is built for: lua5.4 (default) or luajit
#   LUA_INCDIR   Lua headers (found with pkg-config from LUA when empty)
#   PREFIX       install prefix for `make install`
#   SAN          sanitizer build: "" (none), asan (ASan+UBSan) or tsan
#   BUILD        output folder (default build/<LUA>[-<SAN>])
#   CFLAGS       extra compiler flags (LuaRocks passes its own; ours are appended with override)
#   HIREDIS      a hiredis install prefix to build against (e.g. build/hiredis-1.2.0, made by
#                `make deps-hiredis`); empty: the system's (Debian 12: 0.14, without TLS)
LUA        ?= lua5.4
SAN        ?=
PREFIX     ?= /usr/local
CC         ?= cc
CFLAGS     ?= -O2 -g
BUSTED     ?= busted

ifeq ($(LUA),luajit)
  LUA_PC := luajit
  LUA_ABI := 5.1
else
  LUA_PC := $(LUA)
  LUA_ABI := $(patsubst lua%,%,$(LUA))
endif
LUA_INCDIR ?= $(patsubst -I%,%,$(filter -I%,$(shell pkg-config --cflags $(LUA_PC))))

ifeq ($(SAN),asan)
  SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(SAN),tsan)
  SAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
else
  SAN_FLAGS :=
endif

BUILD  ?= build/$(LUA)$(if $(SAN),-$(SAN))
BINDIR := $(BUILD)/bin
OBJDIR := $(BUILD)/obj

DEP_PCS := libwebsockets libcurl libuv openssl jansson
DEP_CFLAGS := $(shell pkg-config --cflags $(DEP_PCS))
DEP_LIBS := $(shell pkg-config --libs $(DEP_PCS)) -lpthread -lm
# hiredis: TLS (rediss://) when hiredis_ssl is there (hiredis 1.x: Ubuntu 24.04, Debian 13, or
# HIREDIS=build/hiredis-1.2.0); Debian 12's 0.14 has none, and rediss:// is then refused.
ifneq ($(HIREDIS),)
  HIREDIS_ABS := $(abspath $(HIREDIS))
  HIREDIS_CFLAGS := -I$(HIREDIS_ABS)/include -DGN_HIREDIS_SSL=1
  HIREDIS_LIBS := -L$(HIREDIS_ABS)/lib -Wl,-rpath,$(HIREDIS_ABS)/lib -lhiredis_ssl -lhiredis
else ifeq ($(shell pkg-config --exists hiredis_ssl && echo y),y)
  HIREDIS_CFLAGS := $(shell pkg-config --cflags hiredis_ssl) -DGN_HIREDIS_SSL=1
  HIREDIS_LIBS := $(shell pkg-config --libs hiredis_ssl hiredis)
else
  HIREDIS_CFLAGS :=
  HIREDIS_LIBS := -lhiredis
endif
DEP_CFLAGS := $(HIREDIS_CFLAGS) $(DEP_CFLAGS)
DEP_LIBS := $(HIREDIS_LIBS) $(DEP_LIBS)

override CFLAGS += -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden -Wall -Wextra -Wno-unused-parameter \
	$(SAN_FLAGS) $(DEP_CFLAGS) $(LAYER_INCS)
LUA_CFLAGS := $(addprefix -I,$(LUA_INCDIR))
override LDFLAGS += $(SAN_FLAGS)

# The C core in layers, bottom first (docs/design.md): a file includes only headers of its own
# layer or of those below it (`make lint` checks). core: pure pieces, no I/O; net: the service
# thread and its I/O; stream: one Genesys stream and the client; fleet: above the client. The
# Lua binding (csrc/lua) sits on top. Each source is listed once, by its folder.
LAYERS     := core net stream fleet
LAYER_INCS := $(addprefix -Icsrc/,$(LAYERS) lua cli)
CORE_SRCS  := $(foreach l,$(LAYERS),$(sort $(wildcard csrc/$(l)/*.c)))
BIND_SRCS  := $(sort $(wildcard csrc/lua/*.c))
CORE_OBJS := $(CORE_SRCS:csrc/%.c=$(OBJDIR)/%.o)
BIND_OBJS := $(BIND_SRCS:csrc/%.c=$(OBJDIR)/%.o)
MODULE := $(BUILD)/genesys/notify/core.so
# The genesys-notify command's own C module (signals, the /metrics listener, output that never
# blocks): not in core.so, so nginx and applications never load it. It needs only Lua and jansson.
CLI_SRCS := $(sort $(wildcard csrc/cli/*.c))
CLI_OBJS := $(CLI_SRCS:csrc/%.c=$(OBJDIR)/%.o)
CLI_MODULE := $(BUILD)/genesys/notify/cli.so

CTESTS := $(patsubst spec/c/%.c,$(BINDIR)/%,$(wildcard spec/c/test_*.c))

.PHONY: all module ctests deps demo test test-c test-lua check check-lua asan tsan sanitize san-build san-part spec-seconds test-prep valgrind soak lint install clean certs bench fuzz
all: module ctests
module: $(MODULE) $(CLI_MODULE)
ctests: $(CTESTS)

# Header dependencies come from the compiler (-MMD): an object depends on the headers it includes,
# and on the flags it was built with (a changed CFLAGS rebuilds it).
FLAGS_STAMP := $(OBJDIR)/.cflags
$(FLAGS_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(CC) $(CFLAGS) $(LUA_CFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(LUA_CFLAGS)' > $@
.PHONY: FORCE
FORCE:

$(OBJDIR)/%.o: csrc/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(OBJDIR)/lua/%.o: csrc/lua/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) -MMD -MP -c $< -o $@

$(OBJDIR)/cli/%.o: csrc/cli/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) -MMD -MP -c $< -o $@

-include $(CORE_OBJS:.o=.d) $(BIND_OBJS:.o=.d) $(CLI_OBJS:.o=.d)

# -z nodelete: the module is never unloaded, not even by lua_close's dlclose. Its service threads
# may still be ending then, and unloading it took its libraries' thread-local storage along
# (libp11-kit, libgnutls through libcurl) while the main thread's DTV still named it: at exit
# LeakSanitizer then read a block at 0x58 and died ("Tracer caught signal 11"), 2 runs in 3 of
# client_fork_spec with client_wake_spec under ASan, none in 6 with this flag.
$(MODULE): $(CORE_OBJS) $(BIND_OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -Wl,-z,nodelete -o $@ $^ $(DEP_LIBS)

$(CLI_MODULE): $(CLI_OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs jansson) -lm

$(BINDIR)/test_%: spec/c/test_%.c $(CORE_OBJS) spec/c/ctest.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ispec/c $(LDFLAGS) -o $@ $< $(CORE_OBJS) $(DEP_LIBS)

-include emulator/emulator.mk
-include bench/bench.mk
-include rockspec/rock.mk
-include fuzz/fuzz.mk

# ---------------------------------------------------------------------------------------------
# Dependencies: Debian packages, installed only when missing (apt-get update only then too).
DEB_PKGS := build-essential pkg-config lua5.4 liblua5.4-dev lua-busted luarocks lua-cjson \
	lua-check libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libcurl4-openssl-dev \
	libssl-dev libjansson-dev luajit2 libluajit2-5.1-dev valgrind clang libclang-rt-14-dev \
	cppcheck openssl curl python3 prometheus tinyproxy lua-luv lua-cqueues \
	nginx libnginx-mod-http-lua lua-resty-core redis-server libhiredis-dev zip unzip \
	python3-websockets cmake
# Node.js (for the emulator's conformance test with Genesys's JS SDK) comes from Debian only when
# no node/npm is on the PATH: some images ship NodeSource's nodejs, which conflicts with Debian's npm.
NODE_PKGS := $(if $(shell command -v node),,nodejs) $(if $(shell command -v npm),,npm)
deps:
	@missing=$$(for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	  done; echo $(NODE_PKGS)); \
	missing=$$(echo $$missing); \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing" $$missing; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "make deps: all Debian packages present"; fi
	@$(MAKE) --no-print-directory deps-extra

# Later parts (the emulator's npm conformance packages) hook in here.
deps-extra::
	@true

# ---------------------------------------------------------------------------------------------
# The demo (demo/demo.lua): the genesys-notify command against the bundled emulator over TLS
# under a scripted fault sequence, then the accounting of every event. The first command on a
# fresh machine: it installs what is missing and builds (Lua 5.4) first.
demo: deps
	@$(MAKE) --no-print-directory LUA=lua5.4 SAN= all
	GN_BUILD=$(abspath build/lua5.4) GN_BINDIR=$(abspath build/lua5.4/bin) lua5.4 demo/demo.lua

# ---------------------------------------------------------------------------------------------
# Tests. `make test` builds for Lua 5.4 and LuaJIT and runs the C tests and the busted specs
# under both, the two legs side by side (spec/support/legs.sh; each line says its leg).
# `make sanitize` runs the same in the ASan/UBSan and TSan builds, each in parts, three parts at
# a time (below; `make asan` / `make tsan` run one whole build). The long specs (the reconnect
# soak, the subscription property) run their `make test` size under Lua 5.4 and a shorter one
# under LuaJIT: the core they drive is the same, and CI must stay under 40 minutes. The emulator's own specs (emulator_*_spec.lua) drive
# the emulator process over HTTP and WebSocket and never load the client module: they run in the
# Lua 5.4 leg and the sanitizer builds, not again under LuaJIT.
LEGS := bash spec/support/legs.sh
test: deps test-prep
	@$(LEGS) lua5.4 "$(MAKE) --no-print-directory LUA=lua5.4 check" \
	  luajit "GN_SOAK_RECONNECTS=$${GN_SOAK_RECONNECTS:-27} GN_PROP_ROUNDS=$${GN_PROP_ROUNDS:-100} \
	    $(MAKE) --no-print-directory LUA=luajit BUSTED_ARGS='--exclude-pattern=^emulator_' check-lua"

# `make sanitize`: the two builds side by side, then each build's C tests and specs in SAN_PARTS
# parts (spec/support/shard.lua, balanced by spec/support/spec_seconds.txt), SAN_LEGS parts at a
# time (spec/support/legs.sh). The long spec files mostly wait on timers, so the two cores take
# three parts at once: about two thirds of the time of the two whole builds side by side
# (docs/testing.md). A part fails, rather than run every spec, when shard.lua cannot list it.
SAN_PARTS ?= 3
SAN_LEGS ?= 3
sanitize: deps test-prep
	@$(LEGS) asan-build "$(MAKE) --no-print-directory SAN=asan LUA=lua5.4 san-build" \
	  tsan-build "$(MAKE) --no-print-directory SAN=tsan LUA=lua5.4 san-build"
	@LEGS_MAX=$(SAN_LEGS) $(LEGS) $(foreach s,tsan asan,$(foreach k,$(shell seq $(SAN_PARTS)),\
	  $(s)$(k) "$(MAKE) --no-print-directory SAN=$(s) LUA=lua5.4 SAN_PART=$(k) san-part"))

# What legs running side by side share is made once, before they start: the emulator's test
# certificates and the TLS matrix's.
test-prep: certs
	@env -u LD_PRELOAD sh spec/support/mkcerts_matrix.sh build/certs/matrix
	@env -u LD_PRELOAD sh spec/support/mkcerts_redis.sh build/certs/redis

SPEC_ENV = GN_BUILD=$(abspath $(BUILD)) GN_BINDIR=$(abspath $(BINDIR)) GN_SAN=$(SAN) GN_STRICT_MACHINE=1
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	LSAN_OPTIONS=suppressions=$(abspath spec/lsan.supp):print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(abspath spec/tsan.supp)

# In sanitizer builds busted runs in $(BINDIR)/lua_host, a Lua 5.4 interpreter linked with the
# sanitizer runtime (see spec/support/lua_host.c for why not LD_PRELOAD).
LUA_HOST := $(BINDIR)/lua_host
ifneq ($(SAN),)
  BUSTED_CMD = $(LUA_HOST) $(shell command -v $(BUSTED)) --ignore-lua
  HOST_DEP = $(LUA_HOST)
else
  BUSTED_CMD = $(BUSTED) --lua=$(LUA)
  HOST_DEP =
endif
$(LUA_HOST): spec/support/lua_host.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(shell pkg-config --cflags lua5.4) $(LDFLAGS) -o $@ $< $(shell pkg-config --libs lua5.4)

# A test-only Lua module (fork() and waitpid() for the fork-safety spec); never installed.
TESTFORK := $(BUILD)/gn_testfork.so
$(TESTFORK): spec/support/testfork.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) -shared $(LDFLAGS) -o $@ $<

# A test-only Lua module (connect to a unix socket, wait for bytes) for the wake socket and bell
# specs; never installed.
TESTSOCK := $(BUILD)/gn_testsock.so
$(TESTSOCK): spec/support/testsock.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) -shared $(LDFLAGS) -o $@ $<

# A test- and bench-only Lua module (the binding's JSON-to-Lua paths side by side: the decoder's
# spec and bench/decode_bench.lua); never installed, not in core.so.
TESTJSON := $(BUILD)/gn_testjson.so
TESTJSON_OBJS := $(OBJDIR)/lua/lbind_tree.o $(OBJDIR)/lua/lbind_json.o
$(TESTJSON): spec/support/testjson.c $(TESTJSON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) -shared $(LDFLAGS) -o $@ $< $(TESTJSON_OBJS) \
	  $(shell pkg-config --libs jansson) -lm

# C tests and specs for the current LUA.
check: all test-c check-lua
check-lua: all $(HOST_DEP) $(TESTFORK) $(TESTSOCK) $(TESTJSON)
	$(SPEC_ENV) $(SAN_ENV) $(BUSTED_CMD) $(BUSTED_ARGS)

test-c: ctests
	@set -e; for t in $(CTESTS); do echo "== $$t"; $(SAN_ENV) $$t; done

# One build's part of make sanitize: built before (san-build), so parts of the same build never
# build side by side; part 1 also runs the C tests.
san-build: all ctests $(HOST_DEP) $(TESTFORK) $(TESTSOCK) $(TESTJSON)
san-part: san-build
	@if [ "$(SAN_PART)" = 1 ]; then $(MAKE) --no-print-directory test-c; fi
	files=$$(lua5.4 spec/support/shard.lua $(SAN_PART) $(SAN_PARTS)) && \
	  $(SPEC_ENV) $(SAN_ENV) $(BUSTED_CMD) $$files

# Writes spec/support/spec_seconds.txt, how long each spec file takes in the TSan build (and the
# C tests), by which make sanitize balances its parts. About 20 minutes; run it when spec files
# are added or have grown much longer.
spec-seconds:
	@$(MAKE) --no-print-directory SAN=tsan LUA=lua5.4 san-build
	@rm -f $(abspath build)/spec-seconds.txt
	@s=$$(date +%s.%N); $(MAKE) --no-print-directory SAN=tsan LUA=lua5.4 test-c >/dev/null; \
	  awk -v s=$$s -v e=$$(date +%s.%N) 'BEGIN { printf "%.1f test-c\n", e - s }' \
	  > $(abspath build)/spec-seconds.txt
	$(MAKE) --no-print-directory SAN=tsan LUA=lua5.4 check-lua \
	  GN_TIMING_OUT=$(abspath build)/spec-seconds.txt BUSTED_ARGS="-o spec/support/timing_output.lua"
	@{ sed -n '/^#/p' spec/support/spec_seconds.txt; sort -k2 $(abspath build)/spec-seconds.txt; } \
	  > spec/support/spec_seconds.txt.new && mv spec/support/spec_seconds.txt.new spec/support/spec_seconds.txt

asan:
	$(MAKE) --no-print-directory SAN=asan LUA=lua5.4 check
tsan:
	$(MAKE) --no-print-directory SAN=tsan LUA=lua5.4 check

# The same C tests and specs under valgrind's memcheck (no sanitizer build): any error or
# definite/indirect leak fails the run. Slow (about 20-50x): pass BUSTED_ARGS to pick specs.
# `make valgrind` = valgrind-c (the C tests), valgrind-fuzz (the fuzz corpora, fuzz/fuzz.mk) and
# valgrind-lua (the specs); each can run alone. VALGRIND_SUPP: suppression files (for an error
# inside a system library that our use does not cause). VALGRIND_LOGS: see below.
VALGRIND_SUPP ?=
VALGRIND_OPTS := -q --error-exitcode=99 --leak-check=full \
	--errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
	$(addprefix --suppressions=,$(abspath $(VALGRIND_SUPP)))
VALGRIND := valgrind $(VALGRIND_OPTS)
VALGRIND_LOGS ?= $(BUILD)/valgrind
.PHONY: valgrind-c valgrind-lua valgrind-fuzz
valgrind: valgrind-c valgrind-fuzz valgrind-lua
valgrind-c: ctests
	@set -e; for t in $(CTESTS); do echo "== valgrind $$t"; $(VALGRIND) $$t; done
# Without BUSTED_ARGS, the specs that load the module: not the emulator's own (its process is not
# under valgrind), nginx's (LuaJIT only), the rock's (a packaging check) nor the soaks. The Lua
# processes the specs start (fleet nodes, the CLI, examples) run under memcheck too
# (spec/support/valgrind_lua.sh), each reporting to $(VALGRIND_LOGS)/<pid>.log: a log that is not
# empty fails the run and is printed.
VALGRIND_SPECS ?= spec/unit $(filter-out $(SOAK_SPECS) spec/integration/emulator_% \
	spec/integration/resty_spec.lua spec/integration/rock_spec.lua, \
	$(sort $(wildcard spec/integration/*_spec.lua)))
valgrind-lua: all $(HOST_DEP) $(TESTFORK) $(TESTSOCK) $(TESTJSON)
	@rm -rf $(VALGRIND_LOGS) && mkdir -p $(VALGRIND_LOGS)
	rc=0; $(SPEC_ENV) GN_VALGRIND_LOGS=$(abspath $(VALGRIND_LOGS)) GN_VALGRIND_OPTS="$(VALGRIND_OPTS)" \
	  $(VALGRIND) $(LUA) $(shell command -v $(BUSTED)) --ignore-lua \
	  $(or $(BUSTED_ARGS),$(VALGRIND_SPECS)) || rc=$$?; \
	bad=$$(find $(VALGRIND_LOGS) -name '*.log' -size +0c | sort); \
	for f in $$bad; do echo "== valgrind, a process the specs started: $$f"; cat $$f; done; \
	test -z "$$bad" || exit 99; exit $$rc

# Long forms of the delivery-guarantee specs: thousands of random subscription sequences under
# faults, a hundred rollovers back to back under a fast stream, longer stalls and blackholes,
# a thousand forced reconnects of every kind under a 200 events/s stream, ten minutes of
# channels living 20 s and tokens 30 s under each lifetime rule (the lifetime soak).
SOAK_SPECS := spec/integration/client_subs_property_spec.lua \
	spec/integration/client_delivery_spec.lua spec/integration/client_soak_spec.lua \
	spec/integration/client_lifetime_soak_spec.lua
soak: all $(HOST_DEP)
	$(SPEC_ENV) $(SAN_ENV) GN_PROP_ROUNDS=$${GN_PROP_ROUNDS:-5000} \
	  GN_DELIVERY_SCALE=$${GN_DELIVERY_SCALE:-5} \
	  GN_SOAK_RECONNECTS=$${GN_SOAK_RECONNECTS:-1000} \
	  GN_LIFETIME_SOAK_S=$${GN_LIFETIME_SOAK_S:-600} $(BUSTED_CMD) $(SOAK_SPECS)

# The OpenResty burst at the size of issue 22 (100,000 events of 1 KB into nginx with 2 and with
# 4 workers at the default settings; make test runs 20,000). LuaJIT only (nginx loads it).
.PHONY: soak-resty
soak-resty:
	GN_RESTY_BURST=$${GN_RESTY_BURST:-100000} $(MAKE) --no-print-directory LUA=luajit check-lua \
	  BUSTED_ARGS="--filter=burst.of spec/integration/resty_spec.lua"

lint:
	sh spec/support/layers.sh
	luacheck lua spec bench bin/genesys-notify
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr --suppress=missingIncludeSystem $(LAYER_INCS) csrc emulator spec/c
	sh spec/support/filesize.sh

# ---------------------------------------------------------------------------------------------
# hiredis 1.2.0 with TLS (hiredis_ssl), from ../shared/deps (DEPS_SRC), built into
# build/hiredis-1.2.0 (a few seconds), and the Redis specs against a module built with it
# (rediss:// against redis-server --tls-port): Debian 12 ships 0.14, without TLS. DEPS_SRC: the
# folder next to the checkout (or next to its parent, for a git worktree).
DEPS_SRC ?= $(firstword $(wildcard $(abspath ../shared/deps) $(abspath ../../shared/deps)) \
	$(abspath ../shared/deps))
HIREDIS1 := build/hiredis-1.2.0
HIREDIS1_SPECS := spec/unit/fleet_config_spec.lua spec/integration/fleet_redis_spec.lua \
	spec/integration/fleet_sentinel_spec.lua spec/integration/fleet_spec.lua \
	spec/integration/fleet_trim_spec.lua
.PHONY: deps-hiredis test-hiredis1
deps-hiredis: $(HIREDIS1)/lib/libhiredis_ssl.so
$(HIREDIS1)/lib/libhiredis_ssl.so:
	@test -f $(DEPS_SRC)/hiredis-1.2.0.tar.gz || \
	  { echo "make deps-hiredis: $(DEPS_SRC)/hiredis-1.2.0.tar.gz not found (set DEPS_SRC)"; exit 1; }
	@mkdir -p $(HIREDIS1)/src
	tar -xzf $(DEPS_SRC)/hiredis-1.2.0.tar.gz -C $(HIREDIS1)/src
	env -u LIBRARY_PATH $(MAKE) --no-print-directory -C $(HIREDIS1)/src/hiredis-1.2.0 USE_SSL=1 \
	  PREFIX=$(abspath $(HIREDIS1)) LIBRARY_PATH=lib install >$(HIREDIS1)/build.log 2>&1 || \
	  { tail -20 $(HIREDIS1)/build.log; exit 1; }
# Only the module is built again (the emulator and tools are the Lua 5.4 build's).
test-hiredis1: deps-hiredis test-prep
	@$(MAKE) --no-print-directory LUA=lua5.4 SAN= all
	@$(MAKE) --no-print-directory LUA=lua5.4 SAN= HIREDIS=$(HIREDIS1) BUILD=build/lua5.4-hiredis1 module
	GN_BUILD=$(abspath build/lua5.4-hiredis1) GN_BINDIR=$(abspath build/lua5.4/bin) GN_STRICT_MACHINE=1 \
	  $(BUSTED) --lua=lua5.4 $(HIREDIS1_SPECS)

# ---------------------------------------------------------------------------------------------
# Install (used by the rockspec's make backend, which passes LUA_LIBDIR/LUA_LUADIR).
LUA_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUA_LUADIR ?= $(PREFIX)/share/lua/$(LUA_ABI)
install: module
	install -d $(DESTDIR)$(LUA_LIBDIR)/genesys/notify $(DESTDIR)$(LUA_LUADIR)/genesys/notify
	install -m 755 $(MODULE) $(DESTDIR)$(LUA_LIBDIR)/genesys/notify/core.so
	install -m 755 $(CLI_MODULE) $(DESTDIR)$(LUA_LIBDIR)/genesys/notify/cli.so
	install -m 644 lua/genesys/notify/*.lua $(DESTDIR)$(LUA_LUADIR)/genesys/notify/
	for f in lua/genesys/*.lua; do [ -e "$$f" ] && install -m 644 $$f $(DESTDIR)$(LUA_LUADIR)/genesys/ || true; done

clean:
	rm -rf build

# ---------------------------------------------------------------------------------------------
# The other libwebsockets line (issue 24 item 5): Debian 12 ships 4.1.6, Ubuntu 24.04 LTS 4.3.3
# (Debian 13 4.3.5). `make deps-lws433` builds 4.3.3 from ../shared/deps (DEPS_SRC; its README)
# into build/lws-4.3.3 (never into the repository), with the libuv event loop linked in;
# `make test-lws433` builds the module against it into build/lua5.4-lws433 and runs the C tests
# and the specs of the connection (LWS433_SPECS: the client specs, the hostile gateway, the TLS
# matrix, proxies, foreign servers) with it. CI runs it as one leg (.ci/run). DEPS_SRC is the
# hiredis leg's (above).
LWS433 := $(abspath build/lws-4.3.3)
LWS433_ENV := PKG_CONFIG_PATH=$(LWS433)/lib/pkgconfig LD_LIBRARY_PATH=$(LWS433)/lib
LWS433_SPECS ?= $(wildcard spec/integration/client_*_spec.lua) spec/integration/hostile_spec.lua \
	spec/integration/foreign_servers_spec.lua
.PHONY: deps-lws433 test-lws433
deps-lws433: $(LWS433)/lib/pkgconfig/libwebsockets.pc
$(LWS433)/lib/pkgconfig/libwebsockets.pc:
	@test -f $(DEPS_SRC)/libwebsockets-4.3.3.tar.gz || \
	  { echo "make deps-lws433: $(DEPS_SRC)/libwebsockets-4.3.3.tar.gz not found (DEPS_SRC=...)"; exit 1; }
	@command -v cmake >/dev/null || { echo "make deps-lws433: cmake is needed (apt-get install cmake)"; exit 1; }
	rm -rf $(LWS433)/src $(LWS433)/obj && mkdir -p $(LWS433)/src
	tar xzf $(DEPS_SRC)/libwebsockets-4.3.3.tar.gz -C $(LWS433)/src --strip-components=1
	cmake -S $(LWS433)/src -B $(LWS433)/obj -DCMAKE_INSTALL_PREFIX=$(LWS433) \
	  -DCMAKE_BUILD_TYPE=Release -DLWS_WITH_LIBUV=ON -DLWS_WITH_EVLIB_PLUGINS=OFF \
	  -DLWS_WITHOUT_TESTAPPS=ON -DLWS_WITH_MINIMAL_EXAMPLES=OFF -DLWS_WITH_STATIC=OFF >/dev/null
	cmake --build $(LWS433)/obj -j2 >/dev/null && cmake --install $(LWS433)/obj >/dev/null
	rm -rf $(LWS433)/src $(LWS433)/obj

test-lws433: deps-lws433 test-prep
	@$(LWS433_ENV) pkg-config --modversion libwebsockets | grep -q '^4\.3\.' || \
	  { echo "make test-lws433: pkg-config does not find lws 4.3"; exit 1; }
	$(LWS433_ENV) $(MAKE) --no-print-directory LUA=lua5.4 BUILD=build/lua5.4-lws433 check \
	  BUSTED_ARGS="$(LWS433_SPECS)"
