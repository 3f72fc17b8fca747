#!/usr/bin/env bash
# Makes a throwaway PKI for the gateway and for the cluster's etcd into
# OUT_DIR (created 0700):
#
#   certs/make_pki.sh [--node NODE]... OUT_DIR [NAME...]
#
#   ca.pem                     the CA the gateway trusts for client certs, and
#                              the one clients trust for the server cert
#   server.pem  server.key     ECDSA P-256 server cert: localhost, 127.0.0.1, ::1
#                              and each NAME (a host name or an IP address),
#                              for gateways the others reach by those names
#                              (a cluster: README, "Running on several hosts")
#   server-rsa.pem server-rsa.key   the same names on an RSA 2048 key (the TLS
#                              policy test reaches the ECDHE-RSA suites with it)
#   client.pem  client.key     a client cert issued by ca.pem (CN=pm-client)
#   peer-ca.pem peer-ca.key    the CA of the gateways' certs alone (the
#                              gateway's --peer_ca_file): never ca.pem,
#                              which signs users' certs, so no user's cert
#                              can forward calls, whatever its subject says
#   peer.pem    peer.key       the cert the gateways of a cluster present to
#                              each other, from peer-ca.pem (OU=pm peer: only
#                              a call on a connection with it may be marked
#                              forwarded)
#   peer-node-NODE.pem .key    for each --node: a peer cert of that host
#                              alone (CN=pm-node:NODE): it forwards only
#                              calls marked forwarded by NODE, and only
#                              NODE's gateway starts with it
#   user-ou-peer.pem user-ou-peer.key  a user's cert from ca.pem whose
#                              subject says OU=pm peer: with --peer_ca_file
#                              it forwards nothing (tests; and a peer cert
#                              for a gateway run without --peer_ca_file)
#   untrusted-ca.pem           a second CA the gateway does not trust ...
#   untrusted-client.pem untrusted-client.key  ... and a client cert from it
#
#   etcd-ca.pem etcd-ca.key    a CA of etcd's alone: etcd trusts it, and only
#                              it, for client and peer certs. Not ca.pem,
#                              which signs the gateway's users' certs: a
#                              user's cert must never open etcd.
#   etcd-server.pem etcd-server.key  an etcd member's cert (serverAuth and
#                              clientAuth: the members use it for their peer
#                              traffic both ways): localhost, 127.0.0.1, ::1,
#                              etcd (the name the registry checks on every
#                              member, its --etcd_server_name) and each NAME
#                              (the members' addresses, which etcd checks on
#                              its peers' certs)
#   etcd-client.pem etcd-client.key  the registry's client cert for etcd
#                              (clientAuth, CN=pm-registry), from etcd-ca.pem
#
# Keys are written mode 0600. `make up` runs this once into certs/dev/
# (git-ignored); tests run it into their temp dir. Nothing here is secret
# beyond the machine it was made on, and nothing is committed.
set -euo pipefail

nodes=()
while [ $# -gt 0 ] && [ "$1" = --node ]; do
  # Checked: each is written into a subject and a file name.
  if [ $# -lt 2 ] || [[ ! $2 =~ ^[A-Za-z0-9._-]+$ ]]; then
    echo "$0: --node takes a node name (letters, digits, . _ -)" >&2
    exit 2
  fi
  nodes+=("$2")
  shift 2
done
if [ $# -lt 1 ]; then
  echo "usage: $0 [--node NODE]... OUT_DIR [NAME...]" >&2
  exit 2
fi
out=$1
shift
names="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in "$@"; do
  # Checked: each is written into openssl's extension file.
  if [[ ! $name =~ ^[A-Za-z0-9.:-]+$ ]]; then
    echo "$0: \"$name\" is no host name or IP address" >&2
    exit 2
  fi
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
    names+=",IP:$name"
  else
    names+=",DNS:$name"
  fi
done
umask 077
mkdir -p "$out"
cd "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

days=825

ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
rsa_key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

# ca NAME SUBJECT: a self-signed CA (NAME.pem, NAME.key).
ca() {
  ec_key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days "$days" -subj "$2" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1.pem" 2>/dev/null
}

# leaf NAME CA SUBJECT KEYTYPE EXTFILE: a cert for NAME.key signed by CA.
leaf() {
  local name=$1 issuer=$2 subject=$3 keytype=$4 ext=$5
  "${keytype}_key" "$name.key"
  openssl req -new -key "$name.key" -subj "$subject" -out "$work/$name.csr" 2>/dev/null
  openssl x509 -req -in "$work/$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" \
    -CAcreateserial -CAserial "$work/$issuer.srl" -sha256 -days "$days" \
    -extfile "$ext" -out "$name.pem" 2>/dev/null
}

cat >"$work/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$names
EXT
cat >"$work/etcd-server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$names,DNS:etcd
EXT
cat >"$work/client.ext" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EXT

ca ca "/O=pm dev/CN=pm dev CA"
leaf server ca "/O=pm dev/CN=localhost" ec "$work/server.ext"
leaf server-rsa ca "/O=pm dev/CN=localhost" rsa "$work/server.ext"
leaf client ca "/O=pm dev/CN=pm-client" ec "$work/client.ext"
ca peer-ca "/O=pm dev/OU=pm peer/CN=pm dev peer CA"
leaf peer peer-ca "/O=pm dev/OU=pm peer/CN=pm-peer" ec "$work/client.ext"
leaf user-ou-peer ca "/O=pm dev/OU=pm peer/CN=pm-peer" ec "$work/client.ext"
for node in ${nodes[@]+"${nodes[@]}"}; do
  leaf "peer-node-$node" peer-ca "/O=pm dev/OU=pm peer/CN=pm-node:$node" ec "$work/client.ext"
done
ca untrusted-ca "/O=somebody else/CN=untrusted CA"
leaf untrusted-client untrusted-ca "/O=somebody else/CN=pm-client" ec "$work/client.ext"
ca etcd-ca "/O=pm dev/CN=pm dev etcd CA"
leaf etcd-server etcd-ca "/O=pm dev/CN=etcd" ec "$work/etcd-server.ext"
leaf etcd-client etcd-ca "/O=pm dev/CN=pm-registry" ec "$work/client.ext"

# Certificates are public; keys stay 0600 (umask above).
chmod 0644 ./*.pem
