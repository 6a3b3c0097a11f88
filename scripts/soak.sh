#!/usr/bin/env bash
# Soak test for podgate: not part of `cargo test`.
#
# Builds podgate (release) and the demo app (examples/app.rs; a small Python
# app if that is missing or does not build), runs podgate on loopback in front
# of it, and for SOAK_SECONDS holds mixed load while injecting faults:
#   * wrk on GET / (installed with apt-get when missing and possible; a curl
#     loop otherwise),
#   * scripts/soak/load.py: uploads, downloads, slow requests, aborted
#     requests, 50 slowloris connections,
#   * the app is restarted every RESTART_EVERY seconds (podgate sees refused
#     connections for a moment).
# Every SAMPLE_EVERY seconds it prints podgate's RSS (VmRSS, VmHWM), open file
# descriptors, open client connections and the 5xx count from /metrics. The
# verdict compares the first and the last third of the samples: RSS or fd
# growth beyond the tolerances below fails (exit 1), and so does podgate
# dying or keeping sockets after the load stops.
#
#   SOAK_SECONDS=120 scripts/soak.sh
#
# Tunables (environment): SOAK_SECONDS (180), SAMPLE_EVERY (5),
# RESTART_EVERY (30), WRK_THREADS (1), WRK_CONNECTIONS (16), LORIS (50),
# RSS_TOLERANCE_PCT (10), RSS_TOLERANCE_KB (8192), FD_TOLERANCE (16),
# IDLE_FD_TOLERANCE (8), SKIP_BUILD (unset).
#
# Uses loopback only and cleans up everything it started on exit.

set -euo pipefail

SOAK_SECONDS=${SOAK_SECONDS:-180}
SAMPLE_EVERY=${SAMPLE_EVERY:-5}
RESTART_EVERY=${RESTART_EVERY:-30}
WRK_THREADS=${WRK_THREADS:-1}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-16}
LORIS=${LORIS:-50}
RSS_TOLERANCE_PCT=${RSS_TOLERANCE_PCT:-10}
RSS_TOLERANCE_KB=${RSS_TOLERANCE_KB:-8192}
FD_TOLERANCE=${FD_TOLERANCE:-16}
IDLE_FD_TOLERANCE=${IDLE_FD_TOLERANCE:-8}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d "${TMPDIR:-/tmp}/podgate-soak.XXXXXX")

PG_PID=""
APP_PID=""
WRK_PID=""
LOAD_PID=""

log() { printf '[soak %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Stops one process we started: TERM, up to 5 s, then KILL.
stop_pid() {
    local pid=$1
    [[ -n "$pid" ]] || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$LOAD_PID"
    stop_pid "$WRK_PID"
    stop_pid "$PG_PID"
    stop_pid "$APP_PID"
    wait 2>/dev/null || true
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (bounded) until an HTTP GET on $1 answers 200.
wait_http() {
    local url=$1 secs=$2
    for _ in $(seq $((secs * 10))); do
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)" == 200 ]]; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- build
command -v python3 >/dev/null || { log "python3 is required"; exit 2; }
command -v curl >/dev/null || { log "curl is required"; exit 2; }

if [[ -z "${SKIP_BUILD:-}" ]]; then
    log "building podgate (cargo build --release)"
    cargo build --release --bin podgate
fi
PODGATE_BIN=$target_dir/release/podgate
[[ -x "$PODGATE_BIN" ]] || { log "no binary at $PODGATE_BIN"; exit 2; }

APP_CMD=()
if [[ -f examples/app.rs ]]; then
    log "building the demo app (cargo build --release --example app)"
    if [[ -n "${SKIP_BUILD:-}" && -x "$target_dir/release/examples/app" ]] ||
        cargo build --release --example app; then
        APP_CMD=("$target_dir/release/examples/app")
    else
        log "examples/app.rs does not build; using scripts/soak/app.py"
    fi
else
    log "examples/app.rs not found; using scripts/soak/app.py"
fi
if [[ ${#APP_CMD[@]} -eq 0 ]]; then
    APP_CMD=(python3 "$root/scripts/soak/app.py")
fi

APP_PORT=$(free_port)
PG_PORT=$(free_port)
ADMIN_PORT=$(free_port)
while [[ "$PG_PORT" == "$APP_PORT" || "$ADMIN_PORT" == "$APP_PORT" || "$ADMIN_PORT" == "$PG_PORT" ]]; do
    PG_PORT=$(free_port)
    ADMIN_PORT=$(free_port)
done

start_app() {
    "${APP_CMD[@]}" "$APP_PORT" >>"$work/app.log" 2>&1 &
    APP_PID=$!
    wait_http "http://127.0.0.1:$APP_PORT/healthz" 15 || { log "the app did not start"; tail -5 "$work/app.log" >&2; exit 2; }
}

restart_app() {
    stop_pid "$APP_PID"
    wait "$APP_PID" 2>/dev/null || true
    APP_PID=""
    # The app is gone for a moment: podgate sees refused connections.
    sleep 1
    start_app
}

# ---------------------------------------------------------------- start
start_app
log "app: ${APP_CMD[*]} on 127.0.0.1:$APP_PORT (pid $APP_PID)"

PODGATE_LISTEN=127.0.0.1:$PG_PORT \
    PODGATE_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT \
    PODGATE_APP_HOST=127.0.0.1 \
    PODGATE_APP_PORT=$APP_PORT \
    PODGATE_APP_HEALTH_PATH=/healthz \
    PODGATE_ACCESS_LOG=false \
    PODGATE_LOG=warn \
    PODGATE_LOG_FORMAT=text \
    PODGATE_DRAIN_DELAY=0s \
    PODGATE_SHUTDOWN_TIMEOUT=2s \
    "$PODGATE_BIN" >"$work/podgate.log" 2>&1 &
PG_PID=$!
wait_http "http://127.0.0.1:$ADMIN_PORT/readyz" 15 || { log "podgate did not become ready"; tail -20 "$work/podgate.log" >&2; exit 1; }
log "podgate on 127.0.0.1:$PG_PORT, admin 127.0.0.1:$ADMIN_PORT (pid $PG_PID)"

# shellcheck disable=SC2012 # fd names are numbers
fds_of() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
baseline_fds=$(fds_of "$PG_PID")

if ! command -v wrk >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing wrk"
    apt-get install -y wrk >/dev/null 2>&1 || log "apt-get install wrk failed; using a curl loop"
fi
if command -v wrk >/dev/null; then
    wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${SOAK_SECONDS}s" --timeout 10s \
        "http://127.0.0.1:$PG_PORT/" >"$work/wrk.log" 2>&1 &
    WRK_PID=$!
    log "wrk -t$WRK_THREADS -c$WRK_CONNECTIONS on GET / (pid $WRK_PID)"
else
    timeout "${SOAK_SECONDS}s" bash -c \
        "while :; do curl -s -o /dev/null --max-time 10 http://127.0.0.1:$PG_PORT/ || true; done" \
        >"$work/wrk.log" 2>&1 &
    WRK_PID=$!
    log "wrk not available: curl loop on GET / (pid $WRK_PID)"
fi
python3 "$root/scripts/soak/load.py" --port "$PG_PORT" --seconds "$SOAK_SECONDS" --loris "$LORIS" \
    >"$work/load.json" 2>"$work/load.err" &
LOAD_PID=$!
log "mixed load + $LORIS slowloris connections (pid $LOAD_PID); app restart every ${RESTART_EVERY}s"

# ---------------------------------------------------------------- sample
metric_sum() { # name regex over the /metrics text in $1
    awk -v re="$2" '$0 !~ /^#/ && $1 ~ re { s += $2 } END { printf "%d", s }' <<<"$1"
}

printf '%6s %9s %9s %5s %6s %9s %6s %6s  %s\n' t_s rss_mb hwm_mb fds conns requests 5xx d5xx event
samples=$work/samples.tsv
: >"$samples"
start=$(date +%s)
next_restart=$((start + RESTART_EVERY))
tick=0
prev_5xx=0
dead=0
while :; do
    tick=$((tick + 1))
    target=$((start + tick * SAMPLE_EVERY))
    now=$(date +%s)
    (( target > now )) && sleep $((target - now))
    now=$(date +%s)
    (( now - start > SOAK_SECONDS )) && break
    event=""
    if ! kill -0 "$PG_PID" 2>/dev/null; then
        log "podgate died"
        dead=1
        break
    fi
    rss=$(status_kb "$PG_PID" VmRSS)
    hwm=$(status_kb "$PG_PID" VmHWM)
    fds=$(fds_of "$PG_PID")
    m=$(curl -s --max-time 2 "http://127.0.0.1:$ADMIN_PORT/metrics" || true)
    reqs=$(metric_sum "$m" '^podgate_requests_total')
    e5xx=$(metric_sum "$m" '^podgate_requests_total[{].*status_class="5xx"')
    conns=$(metric_sum "$m" '^podgate_client_connections_open')
    d5xx=$((e5xx - prev_5xx))
    prev_5xx=$e5xx
    if (( now >= next_restart && now + 2 < start + SOAK_SECONDS )); then
        restart_app
        event="app restarted"
        next_restart=$((next_restart + RESTART_EVERY))
    fi
    printf '%6d %9.1f %9.1f %5d %6d %9d %6d %6d  %s\n' \
        $((now - start)) "$(awk -v k="$rss" 'BEGIN{print k/1024}')" "$(awk -v k="$hwm" 'BEGIN{print k/1024}')" \
        "$fds" "$conns" "$reqs" "$e5xx" "$d5xx" "$event"
    printf '%d\t%d\t%d\t%d\n' $((now - start)) "$rss" "$hwm" "$fds" >>"$samples"
done

# ---------------------------------------------------------------- wind down
stop_pid "$WRK_PID"
WRK_PID=""
# load.py prints its counts on SIGTERM or when its time is up.
for _ in $(seq 300); do kill -0 "$LOAD_PID" 2>/dev/null || break; sleep 0.1; done
stop_pid "$LOAD_PID"
LOAD_PID=""

idle_fds=-1
if (( ! dead )) && kill -0 "$PG_PID" 2>/dev/null; then
    # Every client went away: podgate's sockets must drain back (idle pooled
    # app connections expire after POOL_IDLE_TIMEOUT, 1 s by default).
    for _ in $(seq 150); do
        idle_fds=$(fds_of "$PG_PID")
        (( idle_fds <= baseline_fds + IDLE_FD_TOLERANCE )) && break
        sleep 0.1
    done
    after_status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PG_PORT/" || true)
else
    dead=1
fi

echo
echo "wrk:"
sed 's/^/  /' "$work/wrk.log" | grep -E 'Requests/sec|requests in|Non-2xx|Socket errors|Latency' || true
echo "mixed load (outcome counts): $(cat "$work/load.json" 2>/dev/null || echo '{}')"
if grep -qi 'panic' "$work/podgate.log"; then
    echo "podgate log mentions a panic:"
    grep -i -m5 panic "$work/podgate.log"
fi

# ---------------------------------------------------------------- verdict
verdict=$(awk -F'\t' -v rpct="$RSS_TOLERANCE_PCT" -v rkb="$RSS_TOLERANCE_KB" -v ftol="$FD_TOLERANCE" '
    { t[NR] = $1; rss[NR] = $2; fds[NR] = $4 }
    END {
        n = NR
        if (n < 3) { print "FAIL too few samples (" n ")"; exit }
        k = int(n / 3)
        for (i = 1; i <= k; i++) { r1 += rss[i]; f1 += fds[i] }
        for (i = n - k + 1; i <= n; i++) { r3 += rss[i]; f3 += fds[i] }
        r1 /= k; r3 /= k; f1 /= k; f3 /= k
        allow = r1 * rpct / 100; if (allow < rkb) allow = rkb
        bad = ""
        if (r3 - r1 > allow) bad = bad sprintf(" RSS grew %.1f MiB (allowed %.1f);", (r3 - r1) / 1024, allow / 1024)
        if (f3 - f1 > ftol) bad = bad sprintf(" fds grew %.1f (allowed %d);", f3 - f1, ftol)
        printf "%s first third: RSS %.1f MiB, fds %.1f | last third: RSS %.1f MiB, fds %.1f (%d samples of each)%s\n",
            (bad == "" ? "PASS" : "FAIL"), r1 / 1024, f1, r3 / 1024, f3, k, bad
    }' "$samples")
echo
echo "fds: $baseline_fds at start, $idle_fds after the load stopped (tolerance +$IDLE_FD_TOLERANCE)"
echo "after the soak, GET / answered ${after_status:-nothing}"
fail=0
if (( dead )); then
    echo "FAIL podgate died during the soak"; tail -20 "$work/podgate.log"; fail=1
fi
if (( idle_fds > baseline_fds + IDLE_FD_TOLERANCE )); then
    echo "FAIL podgate kept $((idle_fds - baseline_fds)) more fds than at start once idle"; fail=1
fi
if [[ "${after_status:-}" != 200 ]]; then
    echo "FAIL podgate did not serve GET / after the soak"; fail=1
fi
echo "verdict: $verdict"
[[ $verdict == PASS* ]] || fail=1
exit "$fail"
