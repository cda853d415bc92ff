# libFuzzer targets for every parser that sees network bytes (included by the top Makefile).
#
#   make fuzz [FUZZ_TIME=60] [FUZZ_TARGETS="message rest"]
#
# Each target fuzz/fuzz_<name>.c is built with clang, -fsanitize=fuzzer,address,undefined, into
# build/fuzz/ and runs FUZZ_TIME seconds on a scratch copy of its committed corpus
# fuzz/corpus/<name>/ (so the committed corpus does not grow by itself; new inputs stay under
# build/fuzz/run/<name>/). Any crash, leak, UB report or hang fails the run and leaves the input in
# build/fuzz/artifacts/. `make fuzz-build` only builds.
FUZZ_CC     ?= clang
FUZZ_TIME   ?= 60
FUZZ_DIR    := build/fuzz
FUZZ_OBJDIR := $(FUZZ_DIR)/obj
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter \
	-fsanitize=fuzzer-no-link $(FUZZ_SAN) $(DEP_CFLAGS) $(LAYER_INCS) -Iemulator
FUZZ_LUA_PC := lua5.4
FUZZ_ALL    := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_BINS   := $(addprefix $(FUZZ_DIR)/fuzz_,$(FUZZ_ALL))

# The client's core (and its Lua binding, for the JSON-to-Lua target) and the emulator without
# its main(), built with the fuzzer's instrumentation.
FUZZ_CORE_OBJS := $(CORE_SRCS:csrc/%.c=$(FUZZ_OBJDIR)/%.o)
FUZZ_BIND_OBJS := $(BIND_SRCS:csrc/%.c=$(FUZZ_OBJDIR)/%.o)
FUZZ_EMU_OBJS  := $(patsubst emulator/%.c,$(FUZZ_OBJDIR)/emulator/%.o,\
	$(filter-out emulator/main.c,$(wildcard emulator/*.c)))

$(FUZZ_OBJDIR)/%.o: csrc/%.c $(wildcard csrc/*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@
$(FUZZ_OBJDIR)/lua/%.o: csrc/lua/%.c $(wildcard csrc/*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(shell pkg-config --cflags $(FUZZ_LUA_PC)) -c $< -o $@
$(FUZZ_OBJDIR)/emulator/%.o: emulator/%.c $(wildcard emulator/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

FUZZ_LINK = $(FUZZ_CC) -g -fsanitize=fuzzer $(FUZZ_SAN)

FUZZ_EMU_BINS  := $(filter $(FUZZ_DIR)/fuzz_emu_%,$(FUZZ_BINS))
FUZZ_CORE_BINS := $(filter-out $(FUZZ_EMU_BINS) $(FUZZ_DIR)/fuzz_json_lua $(FUZZ_DIR)/fuzz_cli_http,$(FUZZ_BINS))
# The command's /metrics request head (csrc/cli/http_parse.c: no Lua, no I/O).
FUZZ_CLI_OBJS  := $(FUZZ_OBJDIR)/cli/http_parse.o

$(FUZZ_EMU_BINS): $(FUZZ_DIR)/fuzz_emu_%: fuzz/fuzz_emu_%.c fuzz/fuzz_util.h $(FUZZ_EMU_OBJS)
	@mkdir -p $(dir $@)
	$(FUZZ_LINK) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_EMU_OBJS) $(DEP_LIBS)
$(FUZZ_DIR)/fuzz_json_lua: fuzz/fuzz_json_lua.c fuzz/fuzz_util.h $(FUZZ_CORE_OBJS) $(FUZZ_BIND_OBJS)
	@mkdir -p $(dir $@)
	$(FUZZ_LINK) $(FUZZ_CFLAGS) $(shell pkg-config --cflags $(FUZZ_LUA_PC)) -o $@ $< \
	  $(FUZZ_BIND_OBJS) $(FUZZ_CORE_OBJS) $(DEP_LIBS) $(shell pkg-config --libs $(FUZZ_LUA_PC))
$(FUZZ_DIR)/fuzz_cli_http: fuzz/fuzz_cli_http.c fuzz/fuzz_util.h $(FUZZ_CLI_OBJS)
	@mkdir -p $(dir $@)
	$(FUZZ_LINK) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_CLI_OBJS)
$(FUZZ_CORE_BINS): $(FUZZ_DIR)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_util.h $(FUZZ_CORE_OBJS)
	@mkdir -p $(dir $@)
	$(FUZZ_LINK) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_CORE_OBJS) $(DEP_LIBS)

.PHONY: fuzz fuzz-build
fuzz-build: $(addprefix $(FUZZ_DIR)/fuzz_,$(FUZZ_TARGETS))

# Targets whose input is JSON use fuzz/json.dict.
FUZZ_JSON := message json_lua rest token_answer emu_admin
# -timeout: one input taking longer is a hang; -rss_limit_mb: growth is a failure too. The
# dictionary fuzz/<name>.dict is used when present (else fuzz/json.dict for the JSON targets).
FUZZ_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fuzz: fuzz-build
	@set -e; mkdir -p $(FUZZ_DIR)/artifacts; for t in $(FUZZ_TARGETS); do \
	  run=$(FUZZ_DIR)/run/$$t; rm -rf $$run; mkdir -p $$run; \
	  cp fuzz/corpus/$$t/* $$run/ 2>/dev/null || true; \
	  dict=; if [ -f fuzz/$$t.dict ]; then dict=-dict=fuzz/$$t.dict; \
	  elif echo " $(FUZZ_JSON) " | grep -q " $$t "; then dict=-dict=fuzz/json.dict; fi; \
	  echo "== fuzz_$$t: $(FUZZ_TIME) s"; \
	  $(FUZZ_ENV) $(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_TIME) -timeout=25 \
	    -rss_limit_mb=2048 -print_final_stats=1 $$dict \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t- $$run \
	    || { echo "fuzz_$$t FAILED (input in $(FUZZ_DIR)/artifacts/)"; exit 1; }; \
	done

# The committed corpora under valgrind's memcheck (`make valgrind-fuzz`, part of `make
# valgrind`): each target is linked with fuzz/replay.c (a main() that feeds each file once)
# instead of libFuzzer, against this build's own objects (plain compiler, no sanitizer), and its
# corpus runs through it under $(VALGRIND). `FUZZ_TARGETS` picks targets; json_lua needs LUA=lua5.4.
REPLAY_DIR  := $(BUILD)/fuzz-replay
REPLAY_ALL  := $(filter-out $(if $(filter lua5.4,$(LUA)),,json_lua),$(FUZZ_ALL))
REPLAY_EMU_OBJS := $(filter-out $(OBJDIR)/emulator/main.o,$(EMU_OBJS))
REPLAY_BINS := $(addprefix $(REPLAY_DIR)/fuzz_,$(REPLAY_ALL))
$(REPLAY_DIR)/fuzz_emu_%: fuzz/fuzz_emu_%.c fuzz/replay.c fuzz/fuzz_util.h $(REPLAY_EMU_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iemulator $(LDFLAGS) -o $@ $< fuzz/replay.c $(REPLAY_EMU_OBJS) $(DEP_LIBS)
$(REPLAY_DIR)/fuzz_json_lua: fuzz/fuzz_json_lua.c fuzz/replay.c fuzz/fuzz_util.h $(CORE_OBJS) $(BIND_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) $(LDFLAGS) -o $@ $< fuzz/replay.c $(BIND_OBJS) $(CORE_OBJS) \
	  $(DEP_LIBS) $(shell pkg-config --libs lua5.4)
$(REPLAY_DIR)/fuzz_cli_http: fuzz/fuzz_cli_http.c fuzz/replay.c fuzz/fuzz_util.h $(OBJDIR)/cli/http_parse.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< fuzz/replay.c $(OBJDIR)/cli/http_parse.o
$(REPLAY_DIR)/fuzz_%: fuzz/fuzz_%.c fuzz/replay.c fuzz/fuzz_util.h $(CORE_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< fuzz/replay.c $(CORE_OBJS) $(DEP_LIBS)

.PHONY: valgrind-fuzz
valgrind-fuzz: $(addprefix $(REPLAY_DIR)/fuzz_,$(filter $(REPLAY_ALL),$(FUZZ_TARGETS)))
	@set -e; for t in $(filter $(REPLAY_ALL),$(FUZZ_TARGETS)); do \
	  echo "== valgrind fuzz_$$t: fuzz/corpus/$$t"; \
	  $(VALGRIND) $(REPLAY_DIR)/fuzz_$$t fuzz/corpus/$$t/*; done
