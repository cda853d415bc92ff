#!/bin/sh
# The size rule (issue 23, STYLE.md): no C file over 600 lines in csrc/ or emulator/, and no
# file of the Lua binding (csrc/lua/lbind_*) over 500. Prints every file over its limit and exits
# 1 if there is one. Run by `make lint`.
set -u
cd "$(dirname "$0")/../.." || exit 2
bad=0
for f in csrc/*/*.[ch] emulator/*.[ch]; do
  [ -e "$f" ] || continue
  n=$(wc -l < "$f")
  case "$f" in csrc/lua/lbind_*) max=500 ;; *) max=600 ;; esac
  if [ "$n" -gt "$max" ]; then
    echo "filesize: $f has $n lines (at most $max)"; bad=1
  fi
done
[ $bad = 0 ] && echo "filesize: every C file in csrc/ and emulator/ within 600 lines (lbind_* 500)"
exit $bad
