#!/usr/bin/env bash
# Makes a development CA and node certificates for mutual TLS (tests, docker compose, local clusters).
# Usage: ops/tls/make-dev-certs.sh OUT_DIR [NAME...]      (default names: node)
# Writes OUT_DIR/ca.pem (+ ca.key) and, per NAME, OUT_DIR/NAME.pem + OUT_DIR/NAME.key: a certificate
# signed by that CA, good for client and server use, with subjectAltName NAME, localhost and 127.0.0.1.
# Existing files are kept (a second run adds only missing names). EC P-256 keys, valid 825 days.
# Not for production: the CA key sits beside the certificates.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 OUT_DIR [NAME...]" >&2
  exit 2
fi
out=$1
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(node)
command -v openssl >/dev/null || { echo "make-dev-certs: openssl not found (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$out"
umask 077

if [ ! -f "$out/ca.pem" ] || [ ! -f "$out/ca.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -keyout "$out/ca.key" -out "$out/ca.pem" -subj "/CN=moe-cluster dev CA $(date +%s)-$$" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

for name in "${names[@]}"; do
  case "$name" in
    *[!A-Za-z0-9._-]*) echo "make-dev-certs: bad name '$name' (letters, digits, . _ - only)" >&2; exit 2 ;;
  esac
  [ -f "$out/$name.pem" ] && [ -f "$out/$name.key" ] && continue
  ext=$(mktemp)
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\n' "$name" >"$ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$out/$name.key" \
    -out "$out/$name.csr" -subj "/CN=$name" 2>/dev/null
  openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" -CAcreateserial \
    -days 825 -sha256 -extfile "$ext" -out "$out/$name.pem" 2>/dev/null
  rm -f "$out/$name.csr" "$ext"
done
# Readable by the containers' non-root user (compose mounts the folder read-only).
chmod 644 "$out"/*.pem "$out"/*.key
echo "make-dev-certs: CA $out/ca.pem; certificates: ${names[*]}"
