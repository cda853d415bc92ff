#!/bin/sh
# Creates a throwaway CA and a server certificate for localhost and 127.0.0.1 in DIR.
# Idempotent: does nothing when DIR/server.pem already exists. For tests and demos only.
set -eu
dir=${1:-build/certs}
mkdir -p "$dir"
[ -s "$dir/server.pem" ] && [ -s "$dir/server.key" ] && [ -s "$dir/ca.pem" ] && exit 0
tmp=$(mktemp -d "$dir/.mk.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=genesys-notify test CA" \
  -keyout "$tmp/ca.key" -out "$tmp/ca.pem" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
  "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
  > "$tmp/ext.cnf"
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
  -CAcreateserial -days 3650 -extfile "$tmp/ext.cnf" -out "$tmp/server.pem" 2>/dev/null
chmod 600 "$tmp/server.key" "$tmp/ca.key"
# Publish atomically-ish: key and cert first, ca last is what readers check.
mv "$tmp/server.key" "$dir/server.key"
mv "$tmp/ca.pem" "$dir/ca.pem"
mv "$tmp/server.pem" "$dir/server.pem"
