#!/usr/bin/env bash
# Builds the release binary with profile-guided optimisation (PGO): what the
# image ships and what bench/run.sh measures.
#
#   bash scripts/pgo/build.sh [TARGET]    # default x86_64-unknown-linux-musl
#
# 1. builds podgate with instrumentation (its own target dir, target/pgo-gen);
# 2. runs it for about 20 s on loopback in front of scripts/pgo/upstream.py,
#    under h2load: GET 1 KiB and 64 KiB, POST 16 KiB, one connection, 404s,
#    h2c, and gzip on a second instance;
# 3. merges the counts with llvm-profdata;
# 4. builds target/TARGET/release/podgate with them (-Cprofile-use).
#
# Why: a request through podgate touches more code than the CPU's
# instruction cache holds (hyper on two connections, tokio, the layers);
# callgrind simulated ~2,700 instruction-cache misses per request. With the
# profile, the compiler lays out the hot paths together and inlines by
# measured frequency: GET 1 KiB x 64 went from 0.68x to 0.80x nginx's
# requests/s against the same sources built plainly, in one run
# (bench/results/2026-12-01-run-f.md).
#
# Needs rustup's llvm-tools component (added if missing), python3 and h2load
# (Debian: nghttp2-client). Loopback ports 18700-18704 must be free.
#
# PGO_STEP=instrumented stops after step 1 (the Dockerfile's dependency
# layer uses it to build and cache the instrumented dependencies).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
TARGET=${1:-${TARGET:-x86_64-unknown-linux-musl}}
GEN_DIR=$ROOT/target/pgo-gen
WORK=$ROOT/target/pgo
APP=18700 LISTEN=18701 ADMIN=18702 GZ_LISTEN=18703 GZ_ADMIN=18704

say() { printf 'pgo: %s\n' "$*"; }
die() { printf 'pgo: %s\n' "$*" >&2; exit 1; }

say "instrumented build"
rm -rf "$WORK"
mkdir -p "$WORK/raw"
# The flag's directory is only a default (LLVM_PROFILE_FILE below says
# where profiles go) and is relative on purpose: the same flags wherever
# the checkout is, so the Dockerfile's cached dependency layer (and
# .ci/deploy-checks.sh's copy of it) stays valid.
# With the release profile's fat LTO, like the final build: a profile from
# an instrumented build without LTO matched too little to help (measured:
# the same user time per request as the plain build).
RUSTFLAGS="-Cprofile-generate=target/pgo/raw" \
    cargo build --release --locked --target "$TARGET" --bin podgate --target-dir "$GEN_DIR"
[ "${PGO_STEP:-}" = instrumented ] && exit 0

profdata=$(find "$(rustc --print sysroot)" -name llvm-profdata -type f 2>/dev/null | head -n 1)
if [ -z "$profdata" ]; then
    rustup component add llvm-tools >/dev/null 2>&1 || die "cannot add rustup's llvm-tools component (llvm-profdata)"
    profdata=$(find "$(rustc --print sysroot)" -name llvm-profdata -type f | head -n 1)
fi
[ -n "$profdata" ] || die "llvm-profdata not found after adding llvm-tools"
command -v h2load >/dev/null || die "h2load not found (Debian: apt-get install nghttp2-client)"
command -v python3 >/dev/null || die "python3 not found"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_port() { # wait_port PORT: up to 10 s
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1"
}
start_podgate() { # start_podgate LISTEN ADMIN [VAR=value...]
    local listen=$1 admin=$2; shift 2
    env LLVM_PROFILE_FILE="$WORK/raw/podgate-%p.profraw" \
        PODGATE_LISTEN="127.0.0.1:$listen" PODGATE_ADMIN_LISTEN="127.0.0.1:$admin" \
        PODGATE_APP_PORT=$APP "$@" \
        "$GEN_DIR/$TARGET/release/podgate" >"$WORK/podgate-$listen.log" 2>&1 &
    pids+=($!)
    wait_port "$listen"
}
load() { # load SECONDS ARGS... (h2load; its summary goes to the log)
    local secs=$1; shift
    timeout $((secs + 20)) h2load -D "$secs" "$@" >>"$WORK/h2load.log" 2>&1 \
        || die "h2load $* failed: $(tail -n 3 "$WORK/h2load.log")"
}

say "training (about 20 s)"
python3 scripts/pgo/upstream.py "$APP" &
pids+=($!)
wait_port "$APP"
start_podgate "$LISTEN" "$ADMIN"
start_podgate "$GZ_LISTEN" "$GZ_ADMIN" PODGATE_COMPRESSION=gzip
head -c 16384 /dev/zero | tr '\0' p >"$WORK/post16k"
url=http://127.0.0.1:$LISTEN
load 5 --h1 -c 64 "$url/1k"
load 3 --h1 -c 64 "$url/64k"
load 3 --h1 -c 64 -d "$WORK/post16k" "$url/echo"
load 2 --h1 -c 1 "$url/1k"
load 1 --h1 -c 4 "$url/missing"
load 2 -c 4 -m 16 "$url/1k"
load 1 -c 4 -m 8 -d "$WORK/post16k" "$url/echo"
load 2 --h1 -c 8 -H 'Accept-Encoding: gzip' "http://127.0.0.1:$GZ_LISTEN/json64k"
# SIGINT: drain without the delay, exit normally, write the profile.
for p in "${pids[@]:1}"; do kill -INT "$p"; done
for p in "${pids[@]:1}"; do wait "$p" || die "instrumented podgate exited with $? (see $WORK)"; done
pids=("${pids[0]}")

ls "$WORK"/raw/*.profraw >/dev/null 2>&1 || die "the instrumented podgate wrote no profile"
"$profdata" merge -o "$WORK/podgate.profdata" "$WORK"/raw/*.profraw
say "profile: $(du -h "$WORK/podgate.profdata" | cut -f1)"

say "optimised build"
RUSTFLAGS="-Cprofile-use=$WORK/podgate.profdata" \
    cargo build --release --locked --target "$TARGET" --bin podgate
say "built target/$TARGET/release/podgate"
