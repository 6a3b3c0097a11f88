#!/usr/bin/env bash
# scripts/tls-scan.sh — podgate's TLS listener checked by an independent
# scanner: sslyze (PyPI, in a venv of its own), plus openssl s_client and
# curl for what sslyze does not look at (ALPN, client certificates).
#
#   bash scripts/tls-scan.sh                 # RSA and ECDSA runs, summary on stdout
#   KEYS=ecdsa bash scripts/tls-scan.sh      # one key type
#   PODGATE_BIN=/path/to/podgate bash scripts/tls-scan.sh
#
# For each key type (RSA 2048, ECDSA P-256) it makes a CA and a server
# certificate signed by it with openssl (the certificate file holds the chain,
# server first, as a cert-manager Secret's tls.crt does), starts podgate on
# 127.0.0.1 with PODGATE_TLS_LISTEN in front of a throwaway Python app, and
# runs sslyze against it: SSL 2.0/3.0, TLS 1.0-1.3 with every cipher suite,
# certificate chain (validated against the CA), Heartbleed, ROBOT,
# renegotiation, compression, CCS injection, downgrade protection
# (TLS_FALLBACK_SCSV), extended master secret, session resumption, curves,
# and Mozilla's "intermediate" configuration. Then ALPN (h2, http/1.1,
# unknown) and one run with PODGATE_TLS_CLIENT_CA: a handshake without a
# client certificate must fail, one with a certificate from the CA succeed.
# With nginx installed, that run is also reached the way ingress-nginx reaches
# a pod with k8s/tls's annotations (the proxy_ssl_* directives it generates
# from backend-protocol HTTPS, proxy-ssl-secret, -verify, -name, -server-name,
# -protocols): it must get through, and fail with a wrong proxy-ssl-name or
# without the client certificate.
#
# Fails (exit 1) when podgate accepts anything but TLS 1.2 and 1.3, when a
# vulnerability check is positive, or when ALPN / mTLS behave otherwise than
# documented. Raw sslyze JSON: $SCAN_OUT (default /tmp/podgate-tls-scan).
#
# Knobs: KEYS ["rsa ecdsa"], NGINX_BIN [nginx on PATH or /usr/sbin/nginx; none = skip the ingress step], PODGATE_BIN [target/release/podgate; built when
# missing], SSLYZE_PKG [sslyze==6.3.1], SCAN_PORT [18643], SCAN_OUT.
# Only 127.0.0.1 is used; podgate and the app are stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

KEYS=${KEYS:-rsa ecdsa}
SSLYZE_PKG=${SSLYZE_PKG:-sslyze==6.3.1}
PORT=${SCAN_PORT:-18643}
PLAIN_PORT=$((PORT + 1)) ADMIN_PORT=$((PORT + 2)) APP_PORT=$((PORT + 3)) INGRESS_PORT=$((PORT + 4))
SCAN_OUT=${SCAN_OUT:-/tmp/podgate-tls-scan}
PODGATE_BIN=${PODGATE_BIN:-$ROOT/target/release/podgate}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

log() { printf '[tls-scan] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for tool in openssl curl python3; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done

# sslyze, pinned, in a venv of its own (Debian's Python is externally managed).
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/podgate-tls-scan/venv
if ! "$VENV/bin/python" -c 'import sslyze' 2>/dev/null; then
    log "installing $SSLYZE_PKG into $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
    "$VENV/bin/pip" install --quiet "$SSLYZE_PKG" || die "pip install $SSLYZE_PKG failed"
fi
SSLYZE=$VENV/bin/sslyze

if [[ ! -x $PODGATE_BIN ]]; then
    log "no podgate at $PODGATE_BIN: cargo build --release --bin podgate"
    cargo build --release --quiet --bin podgate || die "build failed"
fi
# (the whole output first: grep -q closing the pipe early would fail it under pipefail)
pg_config=$(env -i PATH=/usr/bin:/bin "$PODGATE_BIN" config 2>&1 || true)
grep -q PODGATE_TLS_LISTEN <<<"$pg_config" || die "$PODGATE_BIN has no TLS listener (no PODGATE_TLS_LISTEN in 'podgate config')"

for kind in $KEYS; do
    case $kind in rsa | ecdsa) ;; *) die "KEYS: unknown key type '$kind' (accepted: rsa, ecdsa)" ;; esac
done
[[ -n ${KEYS// /} ]] || die "KEYS is empty (accepted: rsa, ecdsa, or both)"

WORK=$(mktemp -d /tmp/podgate-tls-scan.XXXXXX)
mkdir -p "$SCAN_OUT"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() { # wait_port PORT PID
    local _
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# The app podgate forwards to: Python's static server over a one-file tree.
mkdir -p "$WORK/app"
echo "podgate tls-scan" >"$WORK/app/index.html"
(cd "$WORK/app" && exec timeout 900 python3 -m http.server --bind 127.0.0.1 "$APP_PORT") >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$APP_PORT" "${PIDS[-1]}" || die "the test app did not start on :$APP_PORT"

make_certs() { # make_certs DIR rsa|ecdsa
    local d=$1 kind=$2 newkey
    mkdir -p "$d"
    case $kind in
        rsa) newkey=(-newkey rsa:2048) ;;
        ecdsa) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
        *) die "KEYS: unknown key type '$kind' (accepted: rsa, ecdsa)" ;;
    esac
    cat >"$d/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = ext
[dn]
CN = podgate tls-scan CA
[ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    cat >"$d/leaf.cnf" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, DNS:django-service.default.svc, IP:127.0.0.1
authorityKeyIdentifier = keyid
EOF
    cat >"$d/client.cnf" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
EOF
    openssl req -x509 "${newkey[@]}" -nodes -days 30 -sha256 -config "$d/ca.cnf" \
        -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
    openssl req -new "${newkey[@]}" -nodes -subj "/CN=localhost" -keyout "$d/tls.key" -out "$d/leaf.csr" 2>/dev/null
    openssl x509 -req -in "$d/leaf.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 30 -sha256 \
        -extfile "$d/leaf.cnf" -out "$d/leaf.crt" 2>/dev/null
    cat "$d/leaf.crt" "$d/ca.crt" >"$d/tls.crt"
    openssl req -new "${newkey[@]}" -nodes -subj "/CN=ingress-nginx" -keyout "$d/client.key" -out "$d/client.csr" 2>/dev/null
    openssl x509 -req -in "$d/client.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 30 -sha256 \
        -extfile "$d/client.cnf" -out "$d/client.crt" 2>/dev/null
    [[ -s $d/tls.crt && -s $d/tls.key && -s $d/client.crt ]] || die "openssl could not make the $kind certificates"
}

PG=
start_podgate() { # start_podgate DIR [CLIENT_CA]
    env -i PATH=/usr/bin:/bin \
        PODGATE_LISTEN=127.0.0.1:$PLAIN_PORT PODGATE_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
        PODGATE_APP_PORT=$APP_PORT PODGATE_ACCESS_LOG=false \
        PODGATE_TLS_LISTEN=127.0.0.1:$PORT PODGATE_TLS_CERT="$1/tls.crt" PODGATE_TLS_KEY="$1/tls.key" \
        PODGATE_TLS_CLIENT_CA="${2:-}" \
        timeout 600 "$PODGATE_BIN" >"$1/podgate.log" 2>&1 &
    PG=$!
    PIDS+=("$PG")
    wait_port "$PORT" "$PG" || { sed 's/^/    /' "$1/podgate.log" >&2; die "podgate did not listen on :$PORT"; }
}
stop_podgate() {
    kill -INT "$PG" 2>/dev/null || true
    wait "$PG" 2>/dev/null || true
}

# ALPN: what podgate selects for an offer (openssl s_client).
alpn() { # alpn DIR OFFER
    local out
    out=$(timeout 10 openssl s_client -connect 127.0.0.1:$PORT -servername localhost -CAfile "$1/ca.crt" \
        -alpn "$2" </dev/null 2>&1 || true)
    if grep -q '^ALPN protocol:' <<<"$out"; then
        grep -m 1 '^ALPN protocol:' <<<"$out" | sed 's/^ALPN protocol: //'
    elif grep -q 'No ALPN negotiated' <<<"$out"; then
        echo "none"
    else
        echo "handshake failed: $(grep -m1 -iE 'alert|error' <<<"$out" || echo '?')"
    fi
}

# ingress-nginx in front of the pod, as k8s/tls/ingress.yaml configures it:
# three servers, one per case, each printing the status a client gets.
NGINX_BIN=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
ingress_check() { # ingress_check DIR -> "OK WRONG_NAME NO_CLIENT_CERT" (HTTP status codes)
    local d=$1 n=$1/nginx ng i codes=()
    [[ -x $NGINX_BIN ]] || { echo "skipped"; return 0; }
    mkdir -p "$n/tmp"
    # ingress-nginx writes the proxy-ssl-secret's tls.crt and tls.key into one file.
    cat "$d/client.crt" "$d/client.key" >"$n/client.pem"
    server() { # server PORT NAME WITH_CLIENT_CERT
        local cert=""
        [[ $3 == 1 ]] && cert="proxy_ssl_certificate $n/client.pem; proxy_ssl_certificate_key $n/client.pem;"
        cat <<EOF
  server {
    listen 127.0.0.1:$1;
    location / {
      proxy_pass https://127.0.0.1:$PORT;
      $cert
      proxy_ssl_trusted_certificate $d/ca.crt;
      proxy_ssl_verify on;
      proxy_ssl_verify_depth 1;
      proxy_ssl_name $2;
      proxy_ssl_server_name on;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_ssl_session_reuse on;
    }
  }
EOF
    }
    {
        echo "worker_processes 1; pid $n/nginx.pid; error_log $n/error.log warn; events { worker_connections 64; }"
        echo "http { access_log off; client_body_temp_path $n/tmp/body; proxy_temp_path $n/tmp/proxy;"
        echo "  fastcgi_temp_path $n/tmp/fastcgi; uwsgi_temp_path $n/tmp/uwsgi; scgi_temp_path $n/tmp/scgi;"
        server "$INGRESS_PORT" django-service.default.svc 1
        server "$((INGRESS_PORT + 1))" flask-service.default.svc 1
        server "$((INGRESS_PORT + 2))" django-service.default.svc 0
        echo "}"
    } >"$n/nginx.conf"
    timeout 120 "$NGINX_BIN" -p "$n" -c "$n/nginx.conf" -g 'daemon off;' >"$n/stdout.log" 2>&1 &
    ng=$!
    PIDS+=("$ng")
    if ! wait_port "$INGRESS_PORT" "$ng"; then
        sed 's/^/    /' "$n/stdout.log" "$n/error.log" >&2 2>/dev/null || true
        echo "nginx did not start"; return 0
    fi
    for i in 0 1 2; do
        codes+=("$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$((INGRESS_PORT + i))/" || true)")
    done
    kill "$ng" 2>/dev/null || true
    wait "$ng" 2>/dev/null || true
    echo "${codes[*]}"
}

FAIL=0
SUMMARY=$WORK/summary.md
: >"$SUMMARY"
for kind in $KEYS; do
    d=$WORK/$kind
    make_certs "$d" "$kind"
    start_podgate "$d"
    log "$kind: sslyze against 127.0.0.1:$PORT"
    json=$SCAN_OUT/sslyze-$kind.json
    "$SSLYZE" --quiet --json_out="$json" --sni localhost \
        --sslv2 --sslv3 --tlsv1 --tlsv1_1 --tlsv1_2 --tlsv1_3 \
        --certinfo --certinfo_ca_file="$d/ca.crt" \
        --heartbleed --robot --reneg --compression --openssl_ccs --fallback --ems --resum \
        --elliptic_curves --early_data \
        "localhost:$PORT{127.0.0.1}" >/dev/null 2>"$d/sslyze.err" || true
    [[ -s $json ]] || { sed 's/^/    /' "$d/sslyze.err" >&2; die "sslyze wrote no results for $kind"; }
    # Mozilla's intermediate profile, as sslyze judges it (separate run: its
    # verdict is the exit code and text).
    moz=$("$SSLYZE" --mozilla_config=intermediate --certinfo_ca_file="$d/ca.crt" "localhost:$PORT{127.0.0.1}" 2>&1 \
        | tr -d '\000' | sed -n '/COMPLIANCE AGAINST/,$p' | grep -vE '^ *$|^ *-+$|COMPLIANCE AGAINST|Checking results' \
        | sed 's/^ *//' || true)

    a_h2=$(alpn "$d" h2)
    a_h1=$(alpn "$d" http/1.1)
    a_both=$(alpn "$d" "http/1.1,h2")
    a_other=$(alpn "$d" "spdy/3")
    h2=$(curl -s --http2 --cacert "$d/ca.crt" -o /dev/null -w '%{http_version} %{http_code}' \
        --resolve localhost:$PORT:127.0.0.1 "https://localhost:$PORT/" || echo "curl failed")
    stop_podgate

    # mTLS: the same listener with PODGATE_TLS_CLIENT_CA.
    start_podgate "$d" "$d/ca.crt"
    no_cert=$(curl -s --cacert "$d/ca.crt" -o /dev/null -w '%{http_code}' --max-time 5 \
        --resolve localhost:$PORT:127.0.0.1 "https://localhost:$PORT/" 2>&1; echo " exit $?")
    with_cert=$(curl -s --cacert "$d/ca.crt" --cert "$d/client.crt" --key "$d/client.key" -o /dev/null \
        -w '%{http_code}' --max-time 5 --resolve localhost:$PORT:127.0.0.1 "https://localhost:$PORT/" 2>&1; echo " exit $?")
    failures=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep '^podgate_tls_handshake_failures_total' | tr '\n' ' ' || true)
    ingress=$(ingress_check "$d")
    stop_podgate

    if ! "$VENV/bin/python" - "$json" "$kind" "$a_h2" "$a_h1" "$a_both" "$a_other" "$h2" "$no_cert" "$with_cert" \
        "$failures" "$moz" "$ingress" >>"$SUMMARY" <<'PYEOF'
import json, sys

path, kind, a_h2, a_h1, a_both, a_other, h2, no_cert, with_cert, failures, moz, ingress = sys.argv[1:13]
doc = json.load(open(path))
res = doc["server_scan_results"][0]
if res.get("scan_status") != "COMPLETED":
    sys.exit(f"sslyze did not complete the scan: {res.get('connectivity_error_trace') or res.get('scan_status')}")
r = res["scan_result"]
bad = []
def result(name):
    a = r.get(name) or {}
    if a.get("status") != "COMPLETED":
        return None
    return a["result"]

print(f"### {kind.upper()} ({'RSA 2048' if kind == 'rsa' else 'ECDSA P-256'}, chain: server + CA)\n")
print("| protocol | accepted | cipher suites accepted |")
print("|---|---|---|")
names = {"ssl_2_0_cipher_suites": "SSL 2.0", "ssl_3_0_cipher_suites": "SSL 3.0", "tls_1_0_cipher_suites": "TLS 1.0",
         "tls_1_1_cipher_suites": "TLS 1.1", "tls_1_2_cipher_suites": "TLS 1.2", "tls_1_3_cipher_suites": "TLS 1.3"}
for key, label in names.items():
    x = result(key)
    if x is None:
        print(f"| {label} | scan error | |"); bad.append(f"{label}: not scanned"); continue
    acc = [c["cipher_suite"]["name"] for c in x["accepted_cipher_suites"]]
    print(f"| {label} | {'yes' if acc else 'no'} | {', '.join(acc) if acc else '—'} |")
    if acc and label not in ("TLS 1.2", "TLS 1.3"):
        bad.append(f"{label} accepted")
    if not acc and label in ("TLS 1.2", "TLS 1.3"):
        bad.append(f"{label} refused")
    if label == "TLS 1.2":
        # CBC modes, static RSA key exchange, SHA-1 MACs, RC4/3DES/NULL/EXPORT.
        weak = [c for c in acc if "_CBC_" in c or c.startswith("TLS_RSA_") or c.endswith("_SHA")
                or any(w in c for w in ("RC4", "3DES", "NULL", "EXPORT", "anon"))]
        if weak:
            bad.append(f"TLS 1.2 weak suites: {weak}")
        nofs = [c for c in acc if not c.startswith("TLS_ECDHE_")]
        if nofs:
            bad.append(f"TLS 1.2 suites without forward secrecy: {nofs}")
print()

ec = result("elliptic_curves")
if ec:
    print(f"- key exchange groups: {', '.join(c['name'] for c in ec['supported_curves'])}")
ci = result("certificate_info")
if ci:
    for dep in ci["certificate_deployments"]:
        chain = dep["received_certificate_chain"]
        print(f"- certificate chain sent: {len(chain)} certificate(s): " + " → ".join(
            (c["subject"]["rfc4514_string"] or "?") + f" ({c['public_key']['algorithm']} {c['public_key'].get('key_size')})" for c in chain))
        leaf = chain[0]
        sans = leaf.get("subject_alternative_name") or {}
        print(f"- leaf: SANs {', '.join(sans.get('dns_names', []) + sans.get('ip_addresses', []))}; "
              f"signature {leaf.get('signature_hash_algorithm', {}).get('name')}; not after {leaf.get('not_valid_after')}")
        trust = [p for p in dep["path_validation_results"] if p["trust_store"]["name"] == "Supplied CA file"]
        if not trust:
            bad.append("no path validation against the CA file")
        for p in trust:
            ok = p.get("was_validation_successful")
            print(f"- chain validates against the test CA: {'yes' if ok else 'NO: ' + str(p.get('openssl_error_string'))}")
            if not ok:
                bad.append("chain does not validate against the CA")
        print(f"- chain order valid: {'yes' if dep.get('received_chain_has_valid_order') else 'NO'}; "
              f"SHA-1 in the chain: {'YES' if dep.get('verified_chain_has_sha1_signature') else 'no'}; "
              f"OCSP stapling: {'yes' if dep.get('ocsp_response') else 'no'}")
        if not dep.get("received_chain_has_valid_order"):
            bad.append("chain order")

vul = []
hb = result("heartbleed"); vul.append(("Heartbleed", None if hb is None else hb["is_vulnerable_to_heartbleed"]))
ccs = result("openssl_ccs_injection"); vul.append(("OpenSSL CCS injection", None if ccs is None else ccs["is_vulnerable_to_ccs_injection"]))
rb = result("robot")
vul.append(("ROBOT", None if rb is None else rb["robot_result"] not in ("NOT_VULNERABLE_NO_ORACLE", "NOT_VULNERABLE_RSA_NOT_SUPPORTED")))
comp = result("tls_compression"); vul.append(("TLS compression (CRIME)", None if comp is None else comp["supports_compression"]))
rn = result("session_renegotiation")
if rn is not None:
    vul.append(("client-initiated renegotiation (DoS)", rn["is_vulnerable_to_client_renegotiation_dos"]))
    vul.append(("insecure renegotiation (no RFC 5746)", not rn["supports_secure_renegotiation"]))
else:
    vul.append(("renegotiation", None))
fb = result("tls_fallback_scsv"); vul.append(("downgrade (no TLS_FALLBACK_SCSV)", None if fb is None else not fb["supports_fallback_scsv"]))
ems = result("tls_extended_master_secret"); vul.append(("no extended master secret (TLS 1.2)", None if ems is None else not ems["supports_ems_extension"]))
ed = result("tls_1_3_early_data"); vul.append(("TLS 1.3 early data (0-RTT replay)", None if ed is None else ed["supports_early_data"]))
print()
print("| check | result |")
print("|---|---|")
for name, v in vul:
    print(f"| {name} | {'scan error' if v is None else ('VULNERABLE' if v else 'not vulnerable')} |")
    if v:
        bad.append(name)
    if v is None:
        bad.append(f"{name}: not scanned")
if rb is not None:
    print(f"| (ROBOT detail) | {rb['robot_result']} |")
rs = result("session_resumption")
if rs:
    print(f"| TLS 1.2 session resumption | session IDs: {rs.get('session_id_resumption_result')}; tickets: {rs.get('tls_ticket_resumption_result')} |")
print()
print(f"- hostname and chain as a client checks them: curl --cacert CA to https://localhost → "
      f"{'verified' if h2.startswith('2 200') else 'FAILED'}")
print(f"- ALPN: offer h2 → {a_h2}; offer http/1.1 → {a_h1}; offer http/1.1,h2 → {a_both}; offer spdy/3 only → {a_other}; "
      f"curl --http2 → HTTP/{h2}")
if a_h2 != "h2" or a_h1 != "http/1.1" or a_both != "h2":
    bad.append(f"ALPN: h2 → {a_h2}, http/1.1 → {a_h1}, both → {a_both} (expected h2, http/1.1, h2)")
if not h2.startswith("2 200"):
    bad.append(f"curl over h2: {h2}")
print(f"- mTLS (PODGATE_TLS_CLIENT_CA = the test CA): without a client certificate → curl {no_cert}; "
      f"with one from the CA → HTTP {with_cert}")
print(f"  - podgate_tls_handshake_failures_total after that (client_closed includes this script's TCP-only port probe): "
      f"{failures.strip() or '(no series)'}")
if no_cert.split()[0] not in ("000",) or not with_cert.startswith("200"):
    bad.append(f"mTLS: without a certificate {no_cert}, with one {with_cert}")
if ingress == "skipped":
    print("- as ingress-nginx with k8s/tls's annotations: skipped (no nginx here)")
else:
    codes = ingress.split()
    print(f"- as ingress-nginx with k8s/tls's annotations (nginx proxy_ssl_verify on, proxy_ssl_name, client certificate, "
          f"TLSv1.2 TLSv1.3): → HTTP {codes[0] if codes else ingress}; with proxy-ssl-name flask-service.default.svc "
          f"(a name the pod's certificate lacks) → {codes[1] if len(codes) > 1 else '?'}; without proxy-ssl-secret's "
          f"client certificate → {codes[2] if len(codes) > 2 else '?'}")
    if codes != ["200", "502", "502"]:
        bad.append(f"ingress-nginx directives: got {ingress}, expected 200 502 502")
print("- Mozilla \"intermediate\" profile, sslyze --mozilla_config=intermediate (a private CA is expected to fail "
      "certificate_path_validation: the public trust stores do not know it):")
for line in moz.splitlines():
    print(f"  - {line.lstrip('* ')}")
others = [l for l in moz.splitlines() if l.startswith("*") and "certificate_path_validation" not in l]
if others:
    bad.append("Mozilla intermediate: " + "; ".join(others))
print()
if bad:
    print(f"**{kind}: FAILED**: " + "; ".join(bad) + "\n")
    sys.exit(1)
print(f"**{kind}: OK** (only TLS 1.2/1.3, no vulnerability found, ALPN and mTLS as documented)\n")
PYEOF
    then
        FAIL=1
    fi
done

echo "## podgate TLS scan (sslyze $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("sslyze"))'), $(openssl version | cut -d' ' -f1-2), $("$PODGATE_BIN" version))"
echo
cat "$SUMMARY"
echo "raw sslyze JSON: $SCAN_OUT/"
exit "$FAIL"
