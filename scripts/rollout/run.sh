#!/usr/bin/env bash
# Rollout proof: rolling updates of a 3-replica Deployment under steady load,
# in Linux network namespaces, with podgate (classic and native-sidecar
# forms) and the nginx sidecar it replaces side by side. See
# scripts/rollout/README.md for the model and what each variant shows.
#
#   scripts/rollout/run.sh                   # full run, every variant, 3 rollouts each (~6 min)
#   ROLLOUT_QUICK=1 scripts/rollout/run.sh   # CI: podgate's two forms, 2 rollouts each (< 3 min)
#
# Needs root (ip netns). Installs what is missing on Debian: nginx, iproute2,
# python3-venv, libnginx-mod-http-lua (apt-get); gunicorn and Flask (pip, into a venv under
# ROLLOUT_VENV, so PEP 668 "externally managed" system Pythons are left alone).
# podgate: PODGATE_BIN, or target/release/podgate (built when missing).
#
# Environment:
#   ROLLOUT_QUICK=1            podgate-classic and podgate-native only, 2 rollouts each
#   ROLLOUT_ROUNDS             rollouts per variant (full: 3; quick: 2)
#   ROLLOUT_VARIANTS           comma list of: podgate-classic, podgate-native,
#                              nginx-sigquit, nginx-sigterm, podgate-classic-late,
#                              podgate-native-late
#   ROLLOUT_PROPAGATION        seconds from pod deletion to the ingress dropping it (2)
#   ROLLOUT_LATE_PROPAGATION   the same for the *-late variants (12)
#   ROLLOUT_INGRESS            lua (endpoint changes without reload, as ingress-nginx;
#                              default) or reload (nginx reloaded per change)
#   ROLLOUT_RATE               requests per second offered by the client (300)
#   ROLLOUT_REPLICAS           replicas of the Deployment (3)
#   ROLLOUT_PROBE_PERIOD       readiness probe period, seconds (2, as k8s/base)
#   ROLLOUT_WORK               directory for logs (default: a new /tmp/podgate-rollout.*)
#   ROLLOUT_VENV               venv for gunicorn + Flask (/var/tmp/podgate-rollout-venv)
#   ROLLOUT_KEEP=1             keep the work directory even when everything passed
#
# Exit status: 0 when podgate-classic and podgate-native (those that ran) lost
# no request; 1 when one of them did; 2 when the load generator could not
# hold the rate; 64 on bad settings; anything else: setup failed.
# Everything it starts (namespaces ro-<tag>-*, processes) is removed on exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$root/scripts/rollout"
cd "$root"

if [ "$(id -u)" != 0 ]; then
  echo "rollout: needs root (ip netns); run it with sudo" >&2
  exit 64
fi

if [ -n "${ROLLOUT_QUICK:-}" ] && [ "${ROLLOUT_QUICK}" != 0 ]; then
  export ROLLOUT_QUICK=1
  export ROLLOUT_ROUNDS=${ROLLOUT_ROUNDS:-2}
else
  export ROLLOUT_ROUNDS=${ROLLOUT_ROUNDS:-3}
fi

# --- system packages -------------------------------------------------------
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# The ingress applies endpoint changes through Lua, as ingress-nginx does.
if [ "${ROLLOUT_INGRESS:-lua}" = lua ] && [ ! -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
  need+=(libnginx-mod-http-lua)
fi
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "rollout: missing ${need[*]} and no apt-get to install them" >&2
    exit 1
  fi
  echo "rollout: apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
# Debian's package starts a system nginx on port 80 of the host netns; the
# harness never uses it (its nginx processes run in their own namespaces).

# --- gunicorn + Flask in a venv (PEP 668 safe) ------------------------------
venv=${ROLLOUT_VENV:-/var/tmp/podgate-rollout-venv}
if ! "$venv/bin/python" -c 'import flask, gunicorn' >/dev/null 2>&1; then
  echo "rollout: pip install gunicorn flask into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check gunicorn flask
fi

# --- podgate ---------------------------------------------------------------
if [ -z "${PODGATE_BIN:-}" ]; then
  PODGATE_BIN="${CARGO_TARGET_DIR:-$root/target}/release/podgate"
  if [ ! -x "$PODGATE_BIN" ]; then
    echo "rollout: building podgate (cargo build --release)"
    cargo build --release --locked --bin podgate
  fi
fi
if [ ! -x "$PODGATE_BIN" ]; then
  echo "rollout: PODGATE_BIN=$PODGATE_BIN is not an executable" >&2
  exit 64
fi
PODGATE_BIN=$(cd "$(dirname "$PODGATE_BIN")" && pwd)/$(basename "$PODGATE_BIN")

# --- run -------------------------------------------------------------------
tag=$(printf '%x' $$)
user_work=${ROLLOUT_WORK:-}
work=${ROLLOUT_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/podgate-rollout.XXXXXX")}
mkdir -p "$work"
py_pid=""

cleanup() {
  local rc=$?
  if [ -n "$py_pid" ] && kill -0 "$py_pid" 2>/dev/null; then
    kill -TERM "$py_pid" 2>/dev/null || true
    wait "$py_pid" 2>/dev/null || true
  fi
  # Whatever the orchestrator left behind: processes in our namespaces (by
  # pid, from `ip netns pids`), then the namespaces themselves.
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^ro-$tag-" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null || true
  done
  if { [ "$rc" = 0 ] || [ "$rc" = 64 ]; } && [ -z "${ROLLOUT_KEEP:-}" ] && [ -z "$user_work" ]; then
    rm -rf "$work"
  else
    echo "rollout: logs in $work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export PYTHONDONTWRITEBYTECODE=1
export PODGATE_BIN ROLLOUT_WORK="$work" ROLLOUT_TAG="$tag" ROLLOUT_NGINX="$nginx_bin"
export ROLLOUT_PYTHON="$venv/bin/python" ROLLOUT_GUNICORN="$venv/bin/gunicorn"
set +e
"$venv/bin/python" "$here/rollout.py" &
py_pid=$!
wait "$py_pid"
rc=$?
py_pid=""
set -e
exit "$rc"
