#!/bin/sh
# Scale figures for genesys-notify-emulator (loopback): 2,000+ concurrent WebSockets held, and
# events/s to one connection, over TLS and plain. Usage (or `make bench-emulator`):
#   sh bench/emulator_bench.sh BINDIR CERTS_DIR [N_CONNECTIONS] [HOLD_S]
# Prints one JSON line per measurement.
set -eu
bindir=$1; certs=$2; n=${3:-2000}; hold=${4:-10}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
clients=$(( (n + 19) / 20 ))
out=$(mktemp -d /tmp/gn-emu-bench.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT INT TERM

start() {  # start TLS|plain extra-args...
  mode=$1; shift
  args="--port 0 --heartbeat-ms 1000"
  i=0; while [ $i -lt "$clients" ]; do args="$args --client load-$i:secret-$i"; i=$((i + 1)); done
  [ "$mode" = tls ] && args="$args --tls-cert $certs/server.pem --tls-key $certs/server.key"
  # shellcheck disable=SC2086
  env -u LD_PRELOAD "$bindir/genesys-notify-emulator" $args "$@" >"$out/emu.out" 2>"$out/emu.err" &
  pid=$!
  for _ in $(seq 100); do grep -q listening "$out/emu.out" 2>/dev/null && break; sleep 0.05; done
  port=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$out/emu.out")
}
stop() { kill -TERM "$pid"; wait "$pid" || { echo "emulator exit status $?" >&2; exit 1; }; pid=; }

for mode in tls plain; do
  tlsargs=; [ "$mode" = tls ] && tlsargs="--tls --ca $certs/ca.pem"
  start $mode
  # shellcheck disable=SC2086
  env -u LD_PRELOAD "$bindir/gn-emulator-load" --port "$port" $tlsargs --emu-pid "$pid" connections --n "$n" --hold-s "$hold"
  stop
  start $mode
  # shellcheck disable=SC2086
  env -u LD_PRELOAD "$bindir/gn-emulator-load" --port "$port" $tlsargs --emu-pid "$pid" events --events 1000000 --rate 100000 --seconds 5
  stop
done
