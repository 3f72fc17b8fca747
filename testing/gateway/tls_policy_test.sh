#!/usr/bin/env bash
# The gateway's TLS policy, checked from outside with openssl s_client and
# sslscan. Run by gateway_harness (PM_GATEWAY_PORT, PM_CERTS); the argument
# is the server's key type, ec or rsa, which decides the reachable TLS 1.2
# suites:
#
#   TLS 1.3 (both): TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256
#                   TLS_AES_128_GCM_SHA256
#   TLS 1.2, ec:    ECDHE-ECDSA-AES256-GCM-SHA384 ECDHE-ECDSA-CHACHA20-POLY1305
#                   ECDHE-ECDSA-AES256-SHA384
#   TLS 1.2, rsa:   ECDHE-RSA-AES256-GCM-SHA384 ECDHE-RSA-CHACHA20-POLY1305
#   everything else, TLS 1.0 and 1.1 included: refused
set -uo pipefail
# A refused connection closes the pipe to s_client: a write must fail, not
# kill the script.
trap '' PIPE

key_type=${1:?usage: tls_policy_test.sh ec|rsa}
port=${PM_GATEWAY_PORT:?run through gateway_harness}
certs=${PM_CERTS:?run through gateway_harness}
good_cert=(-cert "$certs/client.pem" -key "$certs/client.key")

tls13=(TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256 TLS_AES_128_GCM_SHA256)
ecdsa12=(ECDHE-ECDSA-AES256-GCM-SHA384 ECDHE-ECDSA-CHACHA20-POLY1305 ECDHE-ECDSA-AES256-SHA384)
rsa12=(ECDHE-RSA-AES256-GCM-SHA384 ECDHE-RSA-CHACHA20-POLY1305)
if [ "$key_type" = ec ]; then
  reachable12=("${ecdsa12[@]}"); unreachable12=("${rsa12[@]}")
else
  reachable12=("${rsa12[@]}"); unreachable12=("${ecdsa12[@]}")
fi
forbidden12=(AES128-SHA ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-RSA-AES128-GCM-SHA256
  DHE-RSA-AES256-GCM-SHA384 AES256-GCM-SHA384 ECDHE-ECDSA-AES128-SHA256)

passed=0
failed=0
check() {  # check NAME COMMAND...: COMMAND must succeed
  local name=$1; shift
  if "$@"; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"
  fi
}

# The cipher the handshake settled on ("(NONE)" when it failed).
negotiated() {
  echo | timeout 20 openssl s_client -connect "127.0.0.1:$port" -alpn h2 \
    -CAfile "$certs/ca.pem" "${good_cert[@]}" "$@" 2>/dev/null |
    sed -n 's/^New, [^,]*, Cipher is \(.*\)$/\1/p' | head -1
}
accepts12() { [ "$(negotiated -tls1_2 -cipher "$1")" = "$1" ]; }
refuses12() { [ "$(negotiated -tls1_2 -cipher "$1:@SECLEVEL=0")" = "(NONE)" ]; }
accepts13() { [ "$(negotiated -tls1_3 -ciphersuites "$1")" = "$1" ]; }
refuses_version() {
  [ "$(negotiated "$1" -cipher 'DEFAULT:@SECLEVEL=0')" = "(NONE)" ]
}

# Whether the server talks HTTP/2 to us after the handshake: send the
# client preface and read the first frame header (its SETTINGS). A refused
# client certificate shows in TLS 1.3 only as EOF after the handshake, so
# the handshake line alone proves nothing. s_client runs as a coprocess
# (stdin kept open) and is ended once the answer (9 bytes, or EOF) is in.
# (The coprocess's fds exist only in this shell, not in a $(...) subshell,
# hence the temp file.)
answer=$(mktemp)
speaks_h2() {
  coproc S { exec timeout 20 openssl s_client -quiet -connect "127.0.0.1:$port" \
    -alpn h2 -CAfile "$certs/ca.pem" "$@" 2>/dev/null; }
  # Copied at once: bash drops S and S_PID when it reaps the coprocess.
  local pid=$S_PID from=${S[0]} to=${S[1]}
  printf 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0' >&"$to" 2>/dev/null
  head -c 9 <&"$from" >"$answer"
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  # A SETTINGS frame: type 4 in the 4th byte of its header.
  [ "$(od -An -tx1 -j3 -N1 "$answer" 2>/dev/null | tr -d ' ')" = 04 ]
}
refused_after_handshake() { ! speaks_h2 "$@"; }

echo "# gateway on 127.0.0.1:$port, $key_type server key"
for suite in "${tls13[@]}"; do check "TLS 1.3 accepts $suite" accepts13 "$suite"; done
for suite in "${reachable12[@]}"; do check "TLS 1.2 accepts $suite" accepts12 "$suite"; done
for suite in "${unreachable12[@]}"; do
  check "TLS 1.2 cannot reach $suite with an $key_type key" refuses12 "$suite"
done
for suite in "${forbidden12[@]}"; do check "TLS 1.2 refuses $suite" refuses12 "$suite"; done
check "TLS 1.0 refused" refuses_version -tls1
check "TLS 1.1 refused" refuses_version -tls1_1

for version in -tls1_3 -tls1_2; do
  check "$version: the client cert is accepted (HTTP/2 answers)" \
    speaks_h2 "$version" "${good_cert[@]}"
  check "$version: no client cert is refused" refused_after_handshake "$version"
  check "$version: a cert from an untrusted CA is refused" refused_after_handshake \
    "$version" -cert "$certs/untrusted-client.pem" -key "$certs/untrusted-client.key"
done

# sslscan enumerates on its own: exactly the policy's suites for this key.
scan=$(timeout 120 sslscan --no-colour --certs="$certs/client.pem" \
  --pk="$certs/client.key" "127.0.0.1:$port" 2>&1)
echo "$scan" | sed -n '/SSL\/TLS Protocols/,/Server Key Exchange/p' | sed 's/^/# /'
accepted=$(echo "$scan" | awk '$1 == "Accepted" || $1 == "Preferred" { print $2, $5 }' | sort)
expected=$( { for s in "${tls13[@]}"; do echo "TLSv1.3 $s"; done
              for s in "${reachable12[@]}"; do echo "TLSv1.2 $s"; done; } | sort)
check "sslscan: accepted suites are exactly the policy's" [ "$accepted" = "$expected" ]
for protocol in SSLv2 SSLv3 TLSv1.0 TLSv1.1; do
  check "sslscan: $protocol disabled" grep -qE "^$protocol +disabled" <<<"$scan"
done

rm -f "$answer"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
