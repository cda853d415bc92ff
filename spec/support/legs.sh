#!/usr/bin/env bash
# legs.sh NAME CMD [NAME CMD ...]: runs the commands side by side and waits for all of them.
# Every line a command prints is prefixed with "[NAME] " (whole lines only, so two legs never
# mix inside a line). Exits 0 when every command did, else 1 after naming the legs that failed
# and printing again, at the very end, what each failed leg said about its failures (busted's
# Failure/Error blocks, sanitizer reports, the leg's last lines): a CI log that keeps only its
# tail still says what failed.
#
# The specs spend most of their time waiting on sockets and timers (a plain `make test` leg uses
# about a third of one core), so two legs side by side on two cores take little more than the
# longer one. Each leg builds into its own folder (build/$(LUA)[-$(SAN)]); what the legs share
# (test certificates) is made before they start.
#
# LEGS_MAX=N runs at most N legs at a time: the next one starts, in the order given, when one
# ends (make sanitize: six parts, three at a time).
set -u
if [ $# -lt 2 ] || [ $(($# % 2)) -ne 0 ]; then
  echo "usage: legs.sh NAME CMD [NAME CMD ...]" >&2
  exit 2
fi
dir=$(mktemp -d /tmp/gn-legs.XXXXXX)
trap 'rm -rf "$dir"' EXIT
names=()
pids=()
# Ctrl-C or a CI timeout: take the legs (and what they started) down too.
trap 'trap - INT TERM; kill 0; exit 130' INT TERM
max=${LEGS_MAX:-0}
while [ $# -gt 0 ]; do
  name=$1 cmd=$2
  shift 2
  # a leg's status is in its .rc file: what `wait -n` returns is not needed
  while [ "$max" -gt 0 ] && [ "$(jobs -rp | wc -l)" -ge "$max" ]; do wait -n; done
  names+=("$name")
  (
    set -o pipefail
    start=$(date +%s)
    bash -c "$cmd" 2>&1 | tee "$dir/$name.log" | sed -u "s/^/[$name] /"
    rc=$?
    echo "[$name] finished with status $rc after $(( $(date +%s) - start )) s"
    echo $rc > "$dir/$name.rc"
  ) &
  pids+=($!)
done
wait "${pids[@]}" 2>/dev/null # legs already reaped by `wait -n` are not children any more
failed=()
for name in "${names[@]}"; do
  rc=$(cat "$dir/$name.rc" 2>/dev/null || echo 1)
  [ "$rc" = 0 ] || failed+=("$name (status $rc)")
done
if [ ${#failed[@]} -gt 0 ]; then
  for name in "${names[@]}"; do
    rc=$(cat "$dir/$name.rc" 2>/dev/null || echo 1)
    [ "$rc" = 0 ] && continue
    echo "legs.sh: what the failed leg $name said about its failures:"
    # busted's blocks run from their "Failure →"/"Error →" line to the next blank line; a
    # sanitizer's report from its "==PID==ERROR"/"WARNING: ThreadSanitizer" line on; make's own
    # errors and the leg's last lines close it. At most 300 lines per leg.
    # A leg that is itself legs.sh (make test) has said it already: its own summary is shown.
    first=$(grep -n -m1 -E '^(\[[^]]*\] )*legs\.sh: what the failed leg' "$dir/$name.log" | cut -d: -f1)
    if [ -n "$first" ]; then
      tail -n +"$first" "$dir/$name.log" | head -n 300 | sed "s/^/[$name] /"
      continue
    fi
    # Lines a leg prefixes itself ("[lua5.4] ") are matched without the prefix.
    awk '{ s = $0; sub(/^(\[[^]]*\] )+/, "", s) }
         s ~ /^(Failure|Error) →/ { on = 1 }
         s ~ /^==[0-9]+==ERROR|^WARNING: ThreadSanitizer|^SUMMARY: |runtime error:|^make(\[[0-9]+\])?: \*\*\*/ { on = 2 }
         on { print } on == 1 && s ~ /^$/ { on = 0 }' "$dir/$name.log" | head -n 250 | sed "s/^/[$name] /"
    echo "[$name] ... its last lines:"
    tail -n 30 "$dir/$name.log" | sed "s/^/[$name] /"
  done
  echo "legs.sh: failed: ${failed[*]}"
  exit 1
fi
echo "legs.sh: all passed: ${names[*]}"
