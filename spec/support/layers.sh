#!/bin/sh
# The layer rule of csrc/ (docs/design.md): a file includes only headers of its own layer or of
# the layers below it. Layers bottom first: core net stream fleet lua, and cli (the genesys-notify
# command's own module, above the binding). Prints every include that climbs and exits 1 if
# there is one. Run by `make lint`.
set -u
cd "$(dirname "$0")/../.." || exit 2
order="core net stream fleet lua cli"
rank() { i=0; for l in $order; do [ "$l" = "$1" ] && { echo $i; return; }; i=$((i + 1)); done; echo 99; }
bad=0
for layer in $order; do
  r=$(rank "$layer")
  for f in csrc/"$layer"/*.[ch]; do
    [ -e "$f" ] || continue
    for h in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
      found=""
      for l in $order; do [ -e "csrc/$l/$h" ] && found=$l; done
      if [ -z "$found" ]; then
        echo "layers: $f includes \"$h\", which is in no layer of csrc/"; bad=1; continue
      fi
      if [ "$(rank "$found")" -gt "$r" ]; then
        echo "layers: $f ($layer) includes $found/$h: a higher layer"; bad=1
      fi
    done
  done
done
[ $bad = 0 ] && echo "layers: every include stays in its layer or below ($order)"
exit $bad
