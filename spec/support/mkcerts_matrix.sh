#!/bin/sh
# Certificates for the TLS matrix (spec/integration/client_tls_spec.lua), in DIR (default
# build/certs/matrix). Idempotent: does nothing when DIR/done exists. Tests only.
#
#   ca.pem             the CA the client is given (tls.ca_file)
#   good.pem           localhost + 127.0.0.1, valid now (the control: the setup itself works)
#   expired.pem        valid 2020-01-01 .. 2021-01-01
#   future.pem         valid 2090-01-01 .. 2091-01-01 (not yet valid)
#   wronghost.pem      only DNS:wrong-host.invalid (the client asks for localhost)
#   noip.pem           only DNS:localhost (the client connects to 127.0.0.1)
#   selfsigned.pem     localhost + 127.0.0.1, self-signed (the client has no ca_file)
#   intermediate.pem   leaf + intermediate, the intermediate signed by another root that is not
#                      in ca.pem (an untrusted chain)
#   server.key         the key of every leaf above
#
# Validity in the past or the future needs `openssl ca -startdate/-enddate` (OpenSSL 3.0's
# `x509 -req` has no such options); no faked clock.
set -eu
dir=${1:-build/certs/matrix}
[ -e "$dir/done" ] && exit 0
mkdir -p "$(dirname "$dir")"
dir=$(cd "$(dirname "$dir")" && pwd)/$(basename "$dir")
tmp=$(mktemp -d "$(dirname "$dir")/.matrix.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
q() { "$@" >/dev/null 2>err.txt || { cat err.txt >&2; exit 1; }; }

cat > ca.cnf <<'EOF'
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = .
database = ./index.txt
new_certs_dir = ./issued
serial = ./serial
default_md = sha256
policy = pol
copy_extensions = none
unique_subject = no
[ pol ]
commonName = supplied
EOF
mkdir issued
: > index.txt
echo 1000 > serial

ca_ext() { printf '%s\n' "basicConstraints=critical,CA:TRUE" "keyUsage=critical,keyCertSign,cRLSign"; }
leaf_ext() { # $1: subjectAltName
  printf '%s\n' "subjectAltName=$1" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth"
}

# The trusted CA and another root that the client does not know.
for name in ca other; do
  q openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=genesys-notify matrix $name" \
    -keyout $name.key -out $name.pem -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
done
q openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out leaf.csr

# sign OUT CA SAN [STARTDATE ENDDATE]
sign() {
  leaf_ext "$3" > ext.cnf
  if [ $# -ge 5 ]; then dates="-startdate $4 -enddate $5"; else dates="-days 3650"; fi
  # shellcheck disable=SC2086
  q openssl ca -batch -config ca.cnf -cert "$2.pem" -keyfile "$2.key" -in leaf.csr -out "$1" \
    $dates -extfile ext.cnf -notext
}
sign good.pem ca "DNS:localhost,IP:127.0.0.1"
sign expired.pem ca "DNS:localhost,IP:127.0.0.1" 20200101000000Z 20210101000000Z
sign future.pem ca "DNS:localhost,IP:127.0.0.1" 20900101000000Z 20910101000000Z
sign wronghost.pem ca "DNS:wrong-host.invalid"
sign noip.pem ca "DNS:localhost"

leaf_ext "DNS:localhost,IP:127.0.0.1" > ext.cnf
q openssl x509 -req -in leaf.csr -signkey server.key -days 3650 -extfile ext.cnf -out selfsigned.pem

# other -> intermediate -> leaf; the server sends leaf and intermediate.
q openssl req -newkey rsa:2048 -nodes -subj "/CN=genesys-notify matrix intermediate" \
  -keyout inter.key -out inter.csr
ca_ext > ext.cnf
q openssl ca -batch -config ca.cnf -cert other.pem -keyfile other.key -in inter.csr \
  -out inter.pem -days 3650 -extfile ext.cnf -notext
leaf_ext "DNS:localhost,IP:127.0.0.1" > ext.cnf
q openssl ca -batch -config ca.cnf -cert inter.pem -keyfile inter.key -in leaf.csr \
  -out leaf-inter.pem -days 3650 -extfile ext.cnf -notext
cat leaf-inter.pem inter.pem > intermediate.pem

chmod 600 server.key
mkdir -p "$dir"
for f in ca.pem good.pem expired.pem future.pem wronghost.pem noip.pem selfsigned.pem \
    intermediate.pem server.key; do
  mv "$f" "$dir/$f"
done
: > "$dir/done"
