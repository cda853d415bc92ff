#!/bin/sh
# Wake-up latency and idle CPU of the client inside real nginx workers (issue 10): Debian's nginx
# with lua-nginx-module (LuaJIT), 2 workers, against the emulator over TLS (30 s heartbeats).
# Usage (or `make bench-resty`, which builds the LuaJIT module first):
#   sh bench/resty_bench.sh ROOT BINDIR [COUNT] [RATE] [IDLE_S]
# ROOT: the checkout (lua/, bench/, build/luajit/); BINDIR: where genesys-notify-emulator is.
# Run 1 (latency): the holding worker runs the variants a (wake socket), b (timer 10 ms), c (timer
# 1 ms) side by side, and d (genesys.notify.resty's subscribe in the other worker) when
# lua/genesys/notify/resty.lua exists; the other worker publishes COUNT events at RATE/s.
# Runs 2-6 (idle): none (the module loaded, no client), a, b, c alone, and d (resty.start and
# subscribe in every worker) when there, a connected client and nothing published; the workers'
# utime+stime from /proc/PID/stat over IDLE_S seconds.
set -eu
root=$(cd "$1" && pwd); bindir=$(cd "$2" && pwd); count=${3:-1500}; rate=${4:-50}; idle_s=${5:-30}
certs=$root/build/certs
[ -f "$certs/server.pem" ] || sh "$root/emulator/mkcerts.sh" "$certs" >/dev/null
out=$(mktemp -d /tmp/gn-resty-bench.XXXXXX)
emu=; ngx=
cleanup() {
  [ -n "$ngx" ] && kill -QUIT "$ngx" 2>/dev/null && sleep 1
  [ -n "$emu" ] && kill "$emu" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT INT TERM

env -u LD_PRELOAD "$bindir/genesys-notify-emulator" --port 0 --heartbeat-ms 30000 \
  --client test-id:test-secret --tls-cert "$certs/server.pem" --tls-key "$certs/server.key" \
  >"$out/emu.out" 2>"$out/emu.err" &
emu=$!
for _ in $(seq 100); do grep -q listening "$out/emu.out" 2>/dev/null && break; sleep 0.05; done
emu_port=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$out/emu.out")
resty=false; [ -f "$root/lua/genesys/notify/resty.lua" ] && resty=true
user=; [ "$(id -u)" = 0 ] && user="user root;"

state() { curl -s --unix-socket "$out/p/http.sock" http://x/state; }

# start_nginx MODE VARIANTS NEED RESTY
start_nginx() {
  rm -rf "$out/p"; mkdir -p "$out/p/logs"
  cat >"$out/p/nginx.conf" <<CONF
$user
daemon off;
master_process on;
worker_processes 2;
error_log $out/p/logs/error.log notice;
pid $out/p/nginx.pid;
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_shutdown_timeout 1s;
events { worker_connections 1024; }
http {
  access_log off;
  lua_package_path "$root/lua/?.lua;$root/bench/?.lua;;";
  lua_package_cpath "$root/build/luajit/?.so;;";
  lua_shared_dict bench 1m;
  lua_shared_dict genesys_notify 4m;
  init_worker_by_lua_block {
    require("resty_bench").init_worker { mode = "$1", variants = "$2", need_connected = $3,
      resty = $4, emu_port = $emu_port, ca = "$certs/ca.pem", count = $count, rate = $rate }
  }
  server {
    listen unix:$out/p/http.sock;
    location /state { content_by_lua_block { require("resty_bench").state() } }
  }
}
CONF
  nginx -p "$out/p/" -c "$out/p/nginx.conf" >"$out/p/out" 2>&1 &
  ngx=$!
  for _ in $(seq 100); do [ -S "$out/p/http.sock" ] && break; sleep 0.05; done
}
stop_nginx() {  # quit; the wake-socket reader's cosocket is cut by worker_shutdown_timeout
  kill -QUIT "$ngx"
  for _ in $(seq 100); do kill -0 "$ngx" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$ngx" 2>/dev/null || true
  wait "$ngx" 2>/dev/null || true; ngx=
}
workers() { pgrep -P "$ngx" | tr '\n' ' '; }
runns() {  # run time of every thread of the given pids, in ns (schedstat: finer than ticks)
  t=0; for p in "$@"; do
    for f in /proc/"$p"/task/*/schedstat; do read -r ns _ <"$f" && t=$((t + ns)); done
  done; echo $t
}
ticks() {  # utime+stime of the given pids, summed
  t=0; for p in "$@"; do
    s=$(sed 's/^.*) //' "/proc/$p/stat"); set -- $s
    t=$((t + ${12} + ${13}))
  done; echo $t
}

# ---- run 1: latency ----
start_nginx latency abc 3 $resty
until state | grep -q '"published_at"'; do sleep 1; done
want='results:holder'
until state | grep -q "$want"; do sleep 0.5; done
$resty && sleep 1.5
echo "latency ($count events at $rate/s; ms from the publish request to the handler):"
state | lua5.4 -e '
  local cjson = require "cjson"
  local st = cjson.decode(io.read("a"))
  local names = { a = "wake socket (cosocket + drain)", b = "ngx.timer.every(0.010) + drain",
    c = "ngx.timer.every(0.001) + drain", d = "resty.subscribe (other worker: ring + bell)" }
  local rows = {}
  for k, v in pairs(st) do
    if k == "results:holder" or k:find("^results:d:") then
      for var, r in pairs(cjson.decode(v)) do rows[var] = r end
    end
  end
  for _, var in ipairs { "a", "b", "c", "d" } do
    local r = rows[var]
    if r and r.n > 0 then
      print(string.format("  %s %-44s n=%d p50=%.2f p90=%.2f p99=%.2f max=%.2f", var, names[var],
        r.n, r.p50, r.p90, r.p99, r.max))
    end
  end'
grep -E "\[(error|alert|crit)\]" "$out/p/logs/error.log" | head -5 || true
stop_nginx

# ---- runs 2-5: idle CPU ----
echo "idle CPU of both workers over ${idle_s} s (a connected client, 30 s heartbeats):"
variants="none a b c"; $resty && variants="$variants d"
for v in $variants; do
  vs=$v; need=1; r=false
  [ "$v" = none ] && { vs=; need=0; }
  [ "$v" = d ] && { vs=; need=0; r=true; }
  start_nginx idle "$vs" $need $r
  if [ $need -gt 0 ]; then until state | grep -q '"connected"'; do sleep 0.2; done; fi
  if $r; then until state | grep -q '"resty_state":"open"'; do sleep 0.2; done; fi
  sleep 2
  w=$(workers)
  # shellcheck disable=SC2086
  t0=$(ticks $w); n0=$(runns $w); sleep "$idle_s"; t1=$(ticks $w); n1=$(runns $w)
  hz=$(getconf CLK_TCK)
  lua5.4 -e "print(string.format('  %-5s %5.2f %% of one core (%d ticks of 1/%d s in %d s; schedstat: %.3f %%)', '$v', ($t1 - $t0) / $hz / $idle_s * 100, $t1 - $t0, $hz, $idle_s, ($n1 - $n0) / 1e9 / $idle_s * 100))"
  stop_nginx
done
