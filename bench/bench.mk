# bench.mk: benchmarks (included by the top Makefile). Not part of `all`; `make bench` builds them.
#
# bench/herd: the thundering-herd simulator over the real backoff engine (figures and the choice of default: docs/backoff.md, "The herd simulation").
# `make herd` builds and runs it (HERD_ARGS passes options, e.g. HERD_ARGS="--sweep").
# The binary is also a prerequisite of `ctests`, so `make test` builds it for
# spec/unit/herd_spec.lua; it is not a C test (CTESTS is only spec/c/test_*).
HERD := $(BINDIR)/herd
HERD_ARGS ?=

.PHONY: herd
bench: $(HERD)
ctests: $(HERD)

$(HERD): bench/herd.c $(CORE_OBJS) $(wildcard csrc/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(CORE_OBJS) $(DEP_LIBS)

herd: $(HERD)
	$(SAN_ENV) $(HERD) $(HERD_ARGS)

# The client's own measurements (Lua, against the module of this build; see docs/design.md):
# decoding in C vs lua-cjson, and memory/latency/throughput per client.
.PHONY: bench-decode bench-client
bench-decode: module $(TESTJSON)
	$(LUA) bench/decode_bench.lua $(BUILD)
bench-client: all
	GN_BINDIR=$(BINDIR) $(LUA) bench/client_bench.lua $(BUILD) 200

# A pool at Genesys's limits (issue 13; docs/client.md "More than 1,000 topics"): 20 channels x 1,000
# topics at 1,000 events/s in total, memory per channel. BENCH_POOL_SECS: how long it streams.
.PHONY: bench-pool
BENCH_POOL_SECS ?= 10
bench-pool: all
	GN_BINDIR=$(BINDIR) $(LUA) bench/pool_bench.lua $(BUILD) $(BENCH_POOL_SECS)

# Wake-up latency and idle CPU inside real nginx workers (issue 10; docs/openresty.md): Debian's
# nginx and lua-nginx-module against the emulator over TLS; needs the LuaJIT module.
# Then the burst table (issue 24 item 4; bench/resty_burst.lua): resty in 2 workers beside the
# plain client (Lua 5.4 and LuaJIT) and lua-resty-websocket + cjson in one worker (the peer, a
# benchmark dependency only: extracted from ../shared/deps into build/, never committed).
# RESTY_BURST_ENV passes BENCH_RUNS (3), BENCH_EVENTS (100000), BENCH_ONLY.
RESTY_WS := lua-resty-websocket-3aef1aa
DEPS_DIR ?= $(firstword $(wildcard $(abspath ../shared/deps) /work/shared/deps) $(abspath ../shared/deps))
RESTY_WS_TGZ ?= $(DEPS_DIR)/$(RESTY_WS).tar.gz
.PHONY: bench-resty bench-resty-burst
bench-resty: bench-resty-burst
	$(MAKE) --no-print-directory LUA=luajit module
	$(MAKE) --no-print-directory emulator
	sh bench/resty_bench.sh . $(BINDIR) $(RESTY_BENCH_ARGS)

build/$(RESTY_WS)/lib/resty/websocket/client.lua:
	@test -f $(RESTY_WS_TGZ) || { echo "$(RESTY_WS_TGZ): missing (RESTY_WS_TGZ=path)"; exit 1; }
	mkdir -p build && tar -xzf $(RESTY_WS_TGZ) -C build && touch $@

bench-resty-burst: build/$(RESTY_WS)/lib/resty/websocket/client.lua
	$(MAKE) --no-print-directory LUA=luajit module
	$(MAKE) --no-print-directory LUA=lua5.4 module
	$(MAKE) --no-print-directory emulator
	$(RESTY_BURST_ENV) GN_BINDIR=$(abspath $(BINDIR)) lua5.4 bench/resty_burst.lua

# make bench-peers: the project against its peers (Node ws, Python websockets, lua-http, bare lws
# with and without jansson), one at a time against one emulator over TLS; one markdown table of
# medians (docs/performance.md; bench/peers/run.lua says what each column is). Not in make test.
# make deps-bench installs the peers' packages (Debian, and ws from npm into bench/peers).
BENCH_LWS := $(BINDIR)/gn-bench-lws
.PHONY: bench-peers deps-bench
bench: $(BENCH_LWS)

$(BENCH_LWS): bench/peers/lws_client.c $(PROBE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iemulator/probe $(LDFLAGS) -o $@ $< $(PROBE_LIB) $(DEP_LIBS)

deps-bench:
	@dpkg -s lua-http python3-websockets linux-perf lua5.1 curl >/dev/null 2>&1 || \
	  (apt-get update && apt-get install -y lua-http python3-websockets linux-perf lua5.1 curl)
	cd bench/peers && npm install --no-audit --no-fund

bench-peers: $(BENCH_LWS) $(EMU_BIN)
	$(MAKE) LUA=luajit module
	$(MAKE) LUA=lua5.4 module
	GN_BINDIR=$(BINDIR) lua5.4 bench/peers/run.lua

# Takeover times of a fleet behind a Redis lease (docs/fleet.md): kill -9 of the
# holder among three candidate processes, for two lease_ms. Needs redis-server (make deps).
.PHONY: bench-fleet
bench-fleet: all
	GN_BUILD=$(abspath $(BUILD)) GN_BINDIR=$(abspath $(BINDIR)) $(LUA) bench/fleet_takeover.lua $(FLEET_ROUNDS)

# make bench-ring-decode: a resty reader's decode of ring entries without nginx, the Lua path it
# had against core.ring_decode_entry (bench/ring_decode_bench.lua; LuaJIT, as nginx runs it).
.PHONY: bench-ring-decode
bench-ring-decode:
	$(MAKE) --no-print-directory LUA=luajit module
	luajit bench/ring_decode_bench.lua build/luajit
