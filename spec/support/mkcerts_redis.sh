#!/bin/sh
# Certificates for the Redis TLS specs (spec/integration/fleet_redis_spec.lua) in DIR, made as
# emulator/mkcerts.sh makes the emulator's: a throwaway CA; a server certificate for localhost,
# 127.0.0.1 and ::1 (redis-server --tls-port); a client certificate (tls-auth-clients yes); a
# server certificate for another name (the name check); a second CA that signed nothing here.
# EC keys (fast). Idempotent: does nothing when DIR/done exists. For tests only.
set -eu
dir=${1:-build/certs/redis}
mkdir -p "$dir"
[ -e "$dir/done" ] && exit 0
tmp=$(mktemp -d "$dir/.mk.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() {
  key "$tmp/$1.key"
  openssl req -x509 -new -key "$tmp/$1.key" -days 3650 -subj "/CN=genesys-notify redis test $1" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$tmp/$1.pem" 2>/dev/null
}
# leaf NAME SAN USAGE
leaf() {
  key "$tmp/$1.key"
  openssl req -new -key "$tmp/$1.key" -subj "/CN=$1" -out "$tmp/$1.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=$3" > "$tmp/$1.cnf"
  [ -n "$2" ] && printf '%s\n' "subjectAltName=$2" >> "$tmp/$1.cnf"
  openssl x509 -req -in "$tmp/$1.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
    -days 3650 -extfile "$tmp/$1.cnf" -out "$tmp/$1.pem" 2>/dev/null
}
ca ca
ca otherca
leaf server "DNS:localhost,IP:127.0.0.1,IP:::1" serverAuth
leaf wronghost "DNS:redis.example.org" serverAuth
leaf client "" clientAuth
chmod 600 "$tmp"/*.key
for f in ca.pem otherca.pem server.pem server.key wronghost.pem wronghost.key client.pem client.key; do
  mv "$tmp/$f" "$dir/$f"
done
touch "$dir/done"
