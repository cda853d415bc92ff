# genesys-notify-emulator build fragment (included by the top Makefile).
#
#   make                     builds $(BINDIR)/genesys-notify-emulator and the gn-wsprobe tool
#   make certs               throwaway CA + server certificate for localhost/127.0.0.1 in build/certs
#   make bench-emulator      measures the scale figures (2,000 connections; events/s to one socket)
#
# The emulator is a plain C program (no Lua): objects go under $(OBJDIR)/emulator/.
EMU_SRCS := $(wildcard emulator/*.c)
EMU_OBJS := $(EMU_SRCS:emulator/%.c=$(OBJDIR)/emulator/%.o)
EMU_BIN  := $(BINDIR)/genesys-notify-emulator
PROBE_SRCS := $(wildcard emulator/probe/*.c)
PROBE_OBJS := $(PROBE_SRCS:emulator/probe/%.c=$(OBJDIR)/emulator/probe/%.o)
PROBE_LIB := $(filter-out $(OBJDIR)/emulator/probe/wsprobe.o,$(PROBE_OBJS))
PROBE_BIN := $(BINDIR)/gn-wsprobe
EMU_LOAD_BIN := $(BINDIR)/gn-emulator-load
CERTS_DIR ?= build/certs

all: $(EMU_BIN) $(PROBE_BIN) $(EMU_LOAD_BIN)
.PHONY: emulator bench-emulator
emulator: $(EMU_BIN) $(PROBE_BIN) $(EMU_LOAD_BIN)

$(OBJDIR)/emulator/%.o: emulator/%.c $(wildcard emulator/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(EMU_BIN): $(EMU_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(OBJDIR)/emulator/probe/%.o: emulator/probe/%.c $(wildcard emulator/probe/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iemulator/probe -c $< -o $@

$(PROBE_BIN): $(OBJDIR)/emulator/probe/wsprobe.o $(PROBE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(OBJDIR)/bench/emulator_load.o: bench/emulator_load.c $(wildcard emulator/probe/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iemulator/probe -c $< -o $@

$(EMU_LOAD_BIN): $(OBJDIR)/bench/emulator_load.o $(PROBE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(DEP_LIBS)

# Throwaway CA and a server certificate for localhost and 127.0.0.1 (idempotent).
certs: $(CERTS_DIR)/server.pem
$(CERTS_DIR)/server.pem:
	@mkdir -p $(CERTS_DIR)
	env -u LD_PRELOAD sh emulator/mkcerts.sh $(CERTS_DIR)

# The conformance test's npm packages (official Genesys JS SDK, ws), only when missing.
deps-extra::
	@if [ ! -d spec/conformance/node_modules ]; then \
	  cd spec/conformance && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; \
	  else npm install --no-audit --no-fund; fi; \
	fi

bench-emulator: $(EMU_BIN) $(EMU_LOAD_BIN) certs
	sh bench/emulator_bench.sh $(abspath $(BINDIR)) $(CERTS_DIR)
