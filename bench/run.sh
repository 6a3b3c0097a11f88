#!/usr/bin/env bash
# bench/run.sh — podgate vs direct vs nginx (vs HAProxy) on loopback, with wrk.
#
#   bash bench/run.sh                  # full run: 3 rounds × 10 s (≈ 30 min on 2 CPUs)
#   QUICK=1 bash bench/run.sh          # smoke run: 1 round × 3 s, 3 start-ups, 2,000 idle conns
#   SCENARIOS="get1k_c64" TARGETS="direct nginx podgate" bash bench/run.sh
#
# See bench/README.md for what is measured and how to read the report.
#
# Knobs (environment, defaults in brackets):
#   DURATION [10]  WARMUP [2]  ROUNDS [3]  CONNS [64]   QUICK [0]: 1 = DURATION=3 ROUNDS=1
#   SCENARIOS ["get1k_c64 get64k_c64 post16k_c64 get1k_c1 gzip64k_c64 tls_get1k_c64 tls_newconn"]
#              tls_*: nginx and podgate terminating TLS on the same self-signed ECDSA
#              P-256 certificate (openssl, in the work directory): tls_get1k_c64 over
#              64 keep-alive TLS connections, tls_newconn a new TLS connection per
#              request (wrk -H "Connection: close": req/s = connections/s)
#   TARGETS ["direct nginx haproxy podgate podgate-nolog"]
#   EXTRAS ["idle startup conns10k"]: idle RSS, start-up time, N idle keep-alive connections ("" = none)
#   IDLE_CONNS [10000]  IDLE_CONNS_TARGETS ["podgate nginx haproxy"]  STARTUP_RUNS [15]
#   EXTRA_PODGATES [""]: more podgate builds to compare, "name=/path/to/podgate ..."
#                        (a name ending in -nolog runs with PODGATE_ACCESS_LOG=false)
#   PODGATE_EXTRA_ENV [""]: "PODGATE_X=y ..." given to every podgate target
#   PROXY_ACCESS_LOG [1]: nginx/HAProxy access logs on (to a file on tmpfs), like podgate's
#   NGINX_CLIENT_BODY_BUFFER [64k]: "default" = nginx's 16k, which spills 16 KiB POSTs to disk
#   PIN [auto]: 1 = taskset pinning (needs 2 CPUs), 0 = none
#   LOADGEN_CPUS [0] (wrk + upstream)  PROXY_CPUS [1]  LATENCY_CPUS [0] (1-connection scenario)
#   FOREIGN_MAX [30]: % of one CPU others may use during a run before it is retried
#   FOREIGN_MAX_LATENCY [15]: the same for the 1-connection scenario
#   RETRIES [1]  QUIET_WAIT [60] s
#   BENCH_OUT [/tmp/podgate-bench.md]  BENCH_RAW_DIR [/tmp/podgate-bench-raw-<time>]
#   PODGATE_BIN [target/x86_64-unknown-linux-musl/release/podgate]: the static build the image ships
#   UPSTREAM_BIN [target/release/examples/bench_upstream]
#   BUILD [1]: build first: podgate for musl with profile-guided optimisation
#              (scripts/pgo/build.sh, as the image does) and the bench_upstream example
#   PGO [1]: 0 = a plain `cargo build --release` of podgate instead
#   INSTALL [1]: apt-get install wrk nginx-light haproxy when missing
#   UPSTREAM_PORT [8000]  PODGATE_PORT [18080]  PODGATE_ADMIN_PORT [19901]
#   NGINX_TLS_PORT [18443]  PODGATE_TLS_PORT [18444]: the TLS scenarios' listeners
#
# Only 127.0.0.1 is used. Every process started here is stopped on exit (by
# PID / its own process group), and every load run is bounded by DURATION.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [[ ${QUICK:-0} == 1 ]]; then
  export DURATION=${DURATION:-3} ROUNDS=${ROUNDS:-1} WARMUP=${WARMUP:-1}
  export STARTUP_RUNS=${STARTUP_RUNS:-3} IDLE_CONNS=${IDLE_CONNS:-2000}
fi
export DURATION=${DURATION:-10} ROUNDS=${ROUNDS:-3}
export BENCH_OUT=${BENCH_OUT:-/tmp/podgate-bench.md}
export BENCH_RAW_DIR=${BENCH_RAW_DIR:-/tmp/podgate-bench-raw-$(date +%Y%m%d-%H%M%S)}
MUSL=x86_64-unknown-linux-musl
export PODGATE_BIN=${PODGATE_BIN:-$ROOT/target/$MUSL/release/podgate}
export UPSTREAM_BIN=${UPSTREAM_BIN:-$ROOT/target/release/examples/bench_upstream}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------- tools --
export PATH=$PATH:/usr/sbin:/sbin
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v taskset >/dev/null || need+=(util-linux)
command -v python3 >/dev/null || need+=(python3)
command -v openssl >/dev/null || need+=(openssl)
[[ ${BUILD:-1} == 1 ]] && ! command -v musl-gcc >/dev/null && need+=(musl-tools)
[[ ${BUILD:-1} == 1 && ${PGO:-1} == 1 ]] && ! command -v h2load >/dev/null && need+=(nghttp2-client)
if ((${#need[@]})); then
  [[ ${INSTALL:-1} == 1 ]] || die "missing: ${need[*]} (INSTALL=0)"
  command -v apt-get >/dev/null || die "missing: ${need[*]}, and no apt-get to install them"
  log "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  # Debian starts the packaged services; the benchmark runs its own copies.
fi

if [[ ${BUILD:-1} == 1 ]]; then
  # The static musl binary (mimalloc) is what the image ships; measure that.
  if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx $MUSL; then
    rustup target add $MUSL >&2 || die "cannot add the $MUSL target (rustup target add $MUSL)"
  fi
  if [[ ${PGO:-1} == 1 ]]; then
    log "building podgate (--target $MUSL, profile-guided: scripts/pgo/build.sh, ~5 min)"
    bash scripts/pgo/build.sh $MUSL >"${TMPDIR:-/tmp}/podgate-bench-build.log" 2>&1 \
      || { tail -n 20 "${TMPDIR:-/tmp}/podgate-bench-build.log" >&2; die "build failed"; }
  else
    log "building podgate (--target $MUSL, cargo build --release, no PGO)"
    cargo build --release --quiet --target $MUSL --bin podgate || die "build failed"
  fi
  log "building the bench_upstream example (cargo build --release)"
  cargo build --release --quiet --example bench_upstream || die "build failed"
fi
[[ -x $PODGATE_BIN ]] || die "no podgate binary at $PODGATE_BIN"
[[ -x $UPSTREAM_BIN ]] || die "no upstream binary at $UPSTREAM_BIN"

# 10,000 idle connections need ~10,300 descriptors in the proxy and the client.
hard=$(ulimit -Hn)
want=40000
if [[ $hard != unlimited ]] && (( hard < want )); then ulimit -Hn "$want" 2>/dev/null || want=$hard; fi
ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log "file descriptor limit: $(ulimit -n)"

# ------------------------------------------------------------- run --
PIDFILE=$(mktemp /tmp/podgate-bench-pids.XXXXXX)
export BENCH_PIDFILE=$PIDFILE
DRIVER=
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  if [[ -n $DRIVER ]] && kill -0 "$DRIVER" 2>/dev/null; then
    kill -TERM "$DRIVER" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$DRIVER" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DRIVER" 2>/dev/null || true
  fi
  # Anything the driver started and did not stop (it records their PIDs; each
  # leads its own process group).
  local pids=()
  [[ -s $PIDFILE ]] && read -ra pids <"$PIDFILE"
  for pid in "${pids[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$PIDFILE"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 "$ROOT/bench/lib/bench.py" &
DRIVER=$!
wait "$DRIVER"
