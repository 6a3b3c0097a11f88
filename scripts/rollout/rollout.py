#!/usr/bin/env python3
"""Rolling update of a 3-replica Deployment under load, in Linux network
namespaces, the way Kubernetes does it. Started by scripts/rollout/run.sh
(which installs nginx, gunicorn and Flask and builds podgate); see the README
next to this file for the model and its sources.

Topology (all addresses inside namespaces this script creates):

    client netns  ro-<tag>-cli  10.77.0.2 --veth-- 10.77.0.1  ingress netns ro-<tag>-ing
                                                   10.77.k.1 --veth-- 10.77.k.2  pod netns ro-<tag>-p<k>

A pod is one netns holding its two "containers": the app (gunicorn + Flask on
127.0.0.1:8000) and the sidecar (podgate, or nginx as the seed deploys it) on
:80, podgate's admin port on :9901. The ingress is a real nginx configured as
ingress-nginx's defaults configure one; this process itself runs in the
ingress netns (setns), where the kubelet's probes and the endpoint updates
happen.
"""

import ctypes
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLONE_NEWNET = 0x40000000


def die(msg):
    """A bad setting: one line naming it and what is accepted, exit 64."""
    print("rollout: " + msg, file=sys.stderr)
    sys.exit(64)


def env_float(name, default, what="a number of seconds (e.g. 2 or 2s)"):
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        v = float(raw.rstrip("s"))
    except ValueError:
        die("%s=%r is not %s" % (name, raw, what))
    if v < 0:
        die("%s=%r must be >= 0" % (name, raw))
    return v


def env_int(name, default, minimum=1):
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        die("%s=%r is not an integer" % (name, raw))
    if v < minimum:
        die("%s=%r must be >= %d" % (name, raw, minimum))
    return v


QUICK = os.environ.get("ROLLOUT_QUICK", "") not in ("", "0")
PROPAGATION = env_float("ROLLOUT_PROPAGATION", 2.0)
LATE_PROPAGATION = env_float("ROLLOUT_LATE_PROPAGATION", 12.0)
ROUNDS = env_int("ROLLOUT_ROUNDS", 3)
RATE = env_float("ROLLOUT_RATE", 300.0, "a number of requests per second (e.g. 300)")
if RATE <= 0:
    die("ROLLOUT_RATE=%r must be > 0" % os.environ.get("ROLLOUT_RATE"))
REPLICAS = env_int("ROLLOUT_REPLICAS", 3)
PROBE_PERIOD = env_float("ROLLOUT_PROBE_PERIOD", 2.0)
# terminationGracePeriodSeconds, the app's preStop sleep, gunicorn's
# --graceful-timeout and podgate's settings: the values of k8s/base and
# k8s/classic, so the harness proves the manifests we ship.
GRACE = 30.0
APP_PRESTOP = 10.0
GUNICORN_GRACEFUL = 15
PODGATE_BIN = os.environ.get("PODGATE_BIN", "")
PYBIN = os.environ.get("ROLLOUT_PYTHON", sys.executable)
GUNICORN = os.environ.get("ROLLOUT_GUNICORN", "gunicorn")
NGINX = os.environ.get("ROLLOUT_NGINX", "nginx")
NGINX_MODULES = os.environ.get("ROLLOUT_NGINX_MODULES", "/usr/lib/nginx/modules")
INGRESS_MODE = os.environ.get("ROLLOUT_INGRESS", "lua")
if INGRESS_MODE not in ("lua", "reload"):
    die("ROLLOUT_INGRESS=%r; accepted: lua, reload" % INGRESS_MODE)
WORK = os.environ["ROLLOUT_WORK"]
TAG = os.environ.get("ROLLOUT_TAG", str(os.getpid()))

# name -> (sidecar, form, propagation, settings)
#   classic: both containers are told to stop at once (each after its own
#            preStop); native: the app first, the sidecar after the app exited.
ALL_VARIANTS = {
    "podgate-classic": dict(sidecar="podgate", form="classic", propagation=PROPAGATION,
                            drain="5s", shutdown="20s", app_prestop=APP_PRESTOP),
    "podgate-native": dict(sidecar="podgate", form="native", propagation=PROPAGATION,
                           drain="0s", shutdown="20s", app_prestop=APP_PRESTOP),
    "nginx-sigquit": dict(sidecar="nginx", form="classic", propagation=PROPAGATION,
                          stopsignal=signal.SIGQUIT, app_prestop=0.0),
    "nginx-sigterm": dict(sidecar="nginx", form="classic", propagation=PROPAGATION,
                          stopsignal=signal.SIGTERM, app_prestop=0.0),
    "podgate-classic-late": dict(sidecar="podgate", form="classic", propagation=LATE_PROPAGATION,
                                 drain="5s", shutdown="20s", app_prestop=APP_PRESTOP),
    "podgate-native-late": dict(sidecar="podgate", form="native", propagation=LATE_PROPAGATION,
                                drain="0s", shutdown="20s", app_prestop=APP_PRESTOP),
}
# Variants whose failed count must be 0 (the exit status says so).
ASSERTED = ("podgate-classic", "podgate-native")

T0 = time.time()
LOG_LOCK = threading.Lock()
EVENTS = []


def log(msg):
    t = time.time()
    line = "[%7.2f] %s" % (t - T0, msg)
    with LOG_LOCK:
        EVENTS.append((t, msg))
        print(line, flush=True)


def run(args, check=True):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("`%s` failed (%d): %s" % (" ".join(args), r.returncode, r.stdout.strip()))
    return r


# ---------------------------------------------------------------------------
# Namespaces

CREATED_NS = []
PROCS = []  # every Popen started, for the final cleanup
PROCS_LOCK = threading.Lock()


def ns_add(name):
    run(["ip", "netns", "add", name])
    CREATED_NS.append(name)
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def ns_del(name):
    run(["ip", "netns", "del", name], check=False)
    if name in CREATED_NS:
        CREATED_NS.remove(name)


def enter_ns(name):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open("/var/run/netns/" + name, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns(%s): %s" % (name, os.strerror(e)))
    finally:
        os.close(fd)


def spawn(ns, argv, logfile, env=None):
    """Starts argv in netns `ns` (None: this process's, the ingress) in its
    own process group (the "container": SIGKILL goes to the whole group)."""
    out = open(logfile, "ab")
    full = (["ip", "netns", "exec", ns] if ns else []) + argv
    e = {k: v for k, v in os.environ.items() if not k.startswith("PODGATE_")}
    e.update(env or {})
    p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         env=e, start_new_session=True)
    out.close()
    with PROCS_LOCK:
        PROCS.append(p)
    return p


def signal_proc(p, sig):
    if p.poll() is None:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass


def kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def http_get(host, port, path, timeout=1.0):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path, headers={"User-Agent": "kube-probe/1.30"})
        r = c.getresponse()
        r.read()
        return r.status
    except OSError:
        return None
    finally:
        c.close()


# ---------------------------------------------------------------------------
# Pods

class Pod:
    def __init__(self, slot, variant, vname):
        self.slot = slot
        self.v = variant
        self.name = "p%d" % slot
        self.ns = "ro-%s-p%d" % (TAG, slot)
        self.ip = "10.77.%d.2" % slot
        self.dir = os.path.join(WORK, vname, self.name)
        self.app = None
        self.sidecar = None
        os.makedirs(self.dir, exist_ok=True)

    def build(self):
        ns_add(self.ns)
        # The ingress end of the veth stays in this (the ingress) netns.
        run(["ip", "link", "add", self.name, "type", "veth", "peer", "name", "eth0", "netns", self.ns])
        run(["ip", "addr", "add", "10.77.%d.1/30" % self.slot, "dev", self.name])
        run(["ip", "link", "set", self.name, "up"])
        run(["ip", "-n", self.ns, "addr", "add", self.ip + "/30", "dev", "eth0"])
        run(["ip", "-n", self.ns, "link", "set", "eth0", "up"])

    def start_app(self):
        self.app = spawn(self.ns, [
            GUNICORN, "-b", "127.0.0.1:8000", "-k", "gthread", "--workers", "2",
            "--threads", "8", "--graceful-timeout", str(GUNICORN_GRACEFUL),
            "--chdir", HERE, "app:app",
        ], os.path.join(self.dir, "app.log"), {"ROLLOUT_POD": self.name})

    def start_sidecar(self):
        if self.v["sidecar"] == "podgate":
            self.sidecar = spawn(self.ns, [PODGATE_BIN], os.path.join(self.dir, "podgate.log"), {
                "PODGATE_LISTEN": "0.0.0.0:80",
                "PODGATE_ADMIN_LISTEN": "0.0.0.0:9901",
                "PODGATE_APP_HOST": "127.0.0.1",
                "PODGATE_APP_PORT": "8000",
                "PODGATE_DRAIN_DELAY": self.v["drain"],
                "PODGATE_SHUTDOWN_TIMEOUT": self.v["shutdown"],
            })
        else:
            conf = os.path.join(self.dir, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_SIDECAR_CONF.format(dir=self.dir))
            self.sidecar = spawn(self.ns, [NGINX, "-c", conf, "-e", os.path.join(self.dir, "error.log")],
                                 os.path.join(self.dir, "nginx.log"))

    def start(self):
        """Classic: both containers at once. Native: the sidecar first; the
        app once the sidecar's startupProbe (/livez) passes."""
        self.build()
        if self.v["form"] == "native":
            self.start_sidecar()
            deadline = time.time() + 30
            while http_get(self.ip, 9901, "/livez") != 200:
                if time.time() > deadline or self.sidecar.poll() is not None:
                    raise RuntimeError("%s: podgate /livez never answered; see %s" % (self.name, self.dir))
                time.sleep(0.2)
            self.start_app()
        else:
            self.start_app()
            self.start_sidecar()

    def ready(self):
        if self.v["sidecar"] == "podgate":
            return http_get(self.ip, 9901, "/readyz") == 200
        # The seed Deployment has no probes at all (the pod is "ready" as
        # soon as its containers run); the harness is charitable and waits
        # until a request through nginx reaches the app, so startup never
        # counts against nginx: only the termination is compared.
        return http_get(self.ip, 80, "/") == 200

    def wait_ready(self):
        deadline = time.time() + 60
        while True:
            # Probes run every periodSeconds (2 in k8s/base).
            if self.ready():
                return
            for p in (self.app, self.sidecar):
                if p is not None and p.poll() is not None:
                    raise RuntimeError("%s exited (%s) before ready; see %s" % (self.name, p.returncode, self.dir))
            if time.time() > deadline:
                raise RuntimeError("%s not ready after 60 s; see %s" % (self.name, self.dir))
            time.sleep(PROBE_PERIOD)

    def destroy(self):
        for p in (self.app, self.sidecar):
            if p is not None:
                kill_group(p)
                p.wait()
        ns_del(self.ns)
        run(["ip", "link", "del", self.name], check=False)


NGINX_SIDECAR_CONF = """# The nginx image's /etc/nginx/nginx.conf (paths moved into the pod's
# directory), with the seed's conf.d/default.conf inlined.
worker_processes auto;
pid {dir}/nginx.pid;
user root;
daemon off;
error_log {dir}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    default_type application/octet-stream;
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    sendfile on;
    keepalive_timeout 65;
    # default.conf, exactly as the seed image bakes it in:
    server {{
        listen 80;
        server_name localhost;
        location / {{
            proxy_pass http://127.0.0.1:8000;
        }}
    }}
}}
"""

# ingress-nginx's defaults (docs/user-guide/nginx-configuration/configmap.md,
# https://kubernetes.github.io/ingress-nginx/user-guide/nginx-configuration/configmap/):
#   upstream-keepalive-connections 320, upstream-keepalive-timeout 60,
#   upstream-keepalive-requests 10000, upstream-keepalive-time 1h,
#   proxy-next-upstream "error timeout", proxy-next-upstream-tries 3,
#   proxy-next-upstream-timeout 0, retry-non-idempotent false,
#   proxy-connect-timeout 5, proxy-read-timeout 60, proxy-send-timeout 60,
#   proxy-buffering off, proxy-request-buffering on, proxy-body-size 1m,
#   keep-alive 75, keep-alive-requests 100, worker-processes = CPUs,
#   worker-shutdown-timeout 240s.
# ingress-nginx balances over the pod IPs of the Service's endpoints (not the
# ClusterIP), with no passive health checks (a pod is never marked down).
#
# Endpoint changes, ROLLOUT_INGRESS:
#   lua (default): as ingress-nginx applies them, without a reload: one
#     `upstream_balancer` whose peer is chosen by balancer_by_lua (round
#     robin over the current endpoints, set_more_tries(1) per try as
#     ingress-nginx's balancer.lua does, capped by proxy_next_upstream_tries),
#     and the endpoint list POSTed to /configuration/backends on
#     127.0.0.1:10246, the controller's own port and path. (ingress-nginx's
#     workers pick a new list up within 1 s; here on the next request, so
#     ROLLOUT_PROPAGATION is exactly when the ingress stops choosing a pod.)
#   reload: the upstream block rewritten and nginx reloaded (SIGHUP), as
#     ingress-nginx did before 0.18 and still does for other changes. A reload
#     makes the old workers close their idle client keep-alive connections,
#     which loses the requests clients send on them at that instant,
#     whatever the pods do.
INGRESS_COMMON = """worker_processes {workers};
pid {dir}/ingress.pid;
daemon off;
user root;
error_log {dir}/ingress-error.log notice;
worker_shutdown_timeout 240s;
{modules}
events {{ worker_connections 16384; multi_accept on; }}
http {{
    log_format upstreaminfo '$msec $remote_addr "$request" $status $body_bytes_sent $request_time '
                            '[$upstream_addr] [$upstream_status] [$upstream_response_time]';
    access_log {dir}/ingress-access.log upstreaminfo buffer=64k flush=1s;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout 75s;
    keepalive_requests 100;
    client_max_body_size 1m;
{lua_http}
    upstream {upstream} {{
{servers}
        keepalive 320;
        keepalive_timeout 60s;
        keepalive_requests 10000;
        keepalive_time 1h;
    }}
    server {{
        listen 10.77.0.1:80 backlog=4096;
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_connect_timeout 5s;
            proxy_send_timeout 60s;
            proxy_read_timeout 60s;
            proxy_buffering off;
            proxy_request_buffering on;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 0;
        }}
    }}
{config_server}
}}
"""

LUA_MODULES = """load_module {moddir}/ndk_http_module.so;
load_module {moddir}/ngx_http_lua_module.so;"""

LUA_HTTP = """    lua_shared_dict configuration_data 1m;
    init_worker_by_lua_block {{
        local dict = ngx.shared.configuration_data
        local balancer = require "ngx.balancer"
        local version, peers, next_peer = -1, {{}}, 0
        local function current()
            local v = dict:get("version") or 0
            if v ~= version then
                local list = {{}}
                for hostport in string.gmatch(dict:get("backends") or "", "%S+") do
                    local host, port = hostport:match("^(.+):(%d+)$")
                    list[#list + 1] = {{ host, tonumber(port) }}
                end
                version, peers = v, list
            end
            return peers
        end
        function rollout_balance()
            local list = current()
            if #list == 0 then
                ngx.log(ngx.ERR, "no endpoints")
                return ngx.exit(503)
            end
            next_peer = next_peer % #list + 1
            local peer = list[next_peer]
            balancer.set_more_tries(1)
            local ok, err = balancer.set_current_peer(peer[1], peer[2])
            if not ok then
                ngx.log(ngx.ERR, "set_current_peer: ", err)
                return ngx.exit(500)
            end
        end
    }}"""

LUA_SERVERS = """        server 0.0.0.1; # placeholder, as in ingress-nginx's template
        balancer_by_lua_block {{ rollout_balance() }}"""

LUA_CONFIG_SERVER = """    server {{
        listen 127.0.0.1:10246;
        access_log off;
        location = /configuration/backends {{
            client_body_buffer_size 64k;
            content_by_lua_block {{
                ngx.req.read_body()
                local dict = ngx.shared.configuration_data
                dict:set("backends", ngx.req.get_body_data() or "")
                dict:incr("version", 1, 0)
                ngx.say("ok")
            }}
        }}
    }}"""


class Ingress:
    def __init__(self, vname):
        self.dir = os.path.join(WORK, vname)
        self.conf = os.path.join(self.dir, "ingress.conf")
        self.endpoints = []  # pod IPs, in the order they became ready
        self.lock = threading.Lock()
        self.proc = None
        self.updates = 0

    def write(self):
        lua = INGRESS_MODE == "lua"
        if lua:
            servers = LUA_SERVERS.format()
        else:
            servers = "\n".join("        server %s:80 max_fails=0;" % ip for ip in self.endpoints)
        with open(self.conf, "w") as f:
            f.write(INGRESS_COMMON.format(
                dir=self.dir, workers=os.cpu_count() or 2, servers=servers,
                upstream="upstream_balancer" if lua else "django-service-80",
                modules=LUA_MODULES.format(moddir=NGINX_MODULES) if lua else "",
                lua_http=LUA_HTTP.format() if lua else "",
                config_server=LUA_CONFIG_SERVER.format() if lua else ""))

    def push(self):
        body = " ".join("%s:80" % ip for ip in self.endpoints).encode()
        c = http.client.HTTPConnection("127.0.0.1", 10246, timeout=5)
        try:
            c.request("POST", "/configuration/backends", body=body)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError("ingress /configuration/backends answered %d" % r.status)
        finally:
            c.close()

    def start(self, ips):
        self.endpoints = list(ips)
        self.write()
        self.proc = spawn(None, [NGINX, "-c", self.conf, "-e", os.path.join(self.dir, "ingress-error.log")],
                          os.path.join(self.dir, "ingress.log"))
        deadline = time.time() + 10
        while True:
            if INGRESS_MODE == "lua":
                try:
                    self.push()
                except (OSError, RuntimeError):
                    pass
            if http_get("10.77.0.1", 80, "/") == 200:
                break
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("ingress nginx did not come up; see %s" % self.dir)
            time.sleep(0.1)

    def update(self, add=None, remove=None):
        with self.lock:
            if add and add not in self.endpoints:
                self.endpoints.append(add)
            if remove and remove in self.endpoints:
                self.endpoints.remove(remove)
            if INGRESS_MODE == "lua":
                self.push()
                self.updates += 1
                log("  ingress endpoints: %s" % " ".join(self.endpoints))
                return
            self.write()
            r = run([NGINX, "-t", "-q", "-c", self.conf, "-e", os.path.join(self.dir, "ingress-error.log")],
                    check=False)
            if r.returncode != 0:
                raise RuntimeError("ingress config invalid: %s" % r.stdout)
            signal_proc(self.proc, signal.SIGHUP)
            self.updates += 1
            log("  ingress reloaded: upstream %s" % " ".join(self.endpoints))

    def stop(self):
        if self.proc:
            signal_proc(self.proc, signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
                self.proc.wait()


# ---------------------------------------------------------------------------
# The kubelet's termination of one pod

def terminate(pod, ingress, done):
    """Pod deletion at t=0, as https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination
    describes it: the pod is marked terminating and, at the same time, the
    endpoints controller drops it from the EndpointSlices (the ingress sees
    that `propagation` seconds later); the kubelet runs each container's
    preStop hook, then sends it its stop signal (the image's STOPSIGNAL,
    SIGTERM by default); whatever still runs at
    terminationGracePeriodSeconds gets SIGKILL. Classic containers are all
    stopped at once; native sidecars (init containers with restartPolicy
    Always) only after every app container has exited
    (https://kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/)."""
    v = pod.v
    t0 = time.time()
    log("  %s deleted (%s form)" % (pod.name, v["form"]))

    def endpoint_removal():
        time.sleep(v["propagation"])
        log("  %s: endpoint removal reaches the ingress (+%.1fs)" % (pod.name, v["propagation"]))
        ingress.update(remove=pod.ip)

    er = threading.Thread(target=endpoint_removal, daemon=True)
    er.start()
    sidecar_sig = v.get("stopsignal", signal.SIGTERM)

    def wait_until(t):
        d = t - time.time()
        if d > 0:
            time.sleep(d)

    def wait_exit(p, until):
        try:
            p.wait(max(0.0, until - time.time()))
            return True
        except subprocess.TimeoutExpired:
            return False

    kill_at = t0 + GRACE
    if v["form"] == "classic":
        # No preStop on the sidecar: its signal at once. The app's preStop
        # sleep (0 for the seed's nginx pod) runs meanwhile.
        signal_proc(pod.sidecar, sidecar_sig)
        log("  %s: sidecar %s" % (pod.name, signal.Signals(sidecar_sig).name))
        wait_until(t0 + v["app_prestop"])
        signal_proc(pod.app, signal.SIGTERM)
        log("  %s: app SIGTERM (after preStop %.0fs)" % (pod.name, v["app_prestop"]))
        for p in (pod.app, pod.sidecar):
            if not wait_exit(p, kill_at):
                log("  %s: grace period over, SIGKILL" % pod.name)
                kill_group(p)
    else:
        wait_until(t0 + v["app_prestop"])
        signal_proc(pod.app, signal.SIGTERM)
        log("  %s: app SIGTERM (after preStop %.0fs)" % (pod.name, v["app_prestop"]))
        if not wait_exit(pod.app, kill_at):
            log("  %s: grace period over, SIGKILL app" % pod.name)
            kill_group(pod.app)
        log("  %s: app exited (%s); sidecar %s" % (pod.name, pod.app.wait(), signal.Signals(sidecar_sig).name))
        signal_proc(pod.sidecar, sidecar_sig)
        if not wait_exit(pod.sidecar, kill_at):
            log("  %s: grace period over, SIGKILL sidecar" % pod.name)
            kill_group(pod.sidecar)
    log("  %s: all containers exited after %.1fs (app %s, sidecar %s)"
        % (pod.name, time.time() - t0, pod.app.wait(), pod.sidecar.wait()))
    er.join()
    pod.destroy()
    done.set()


# ---------------------------------------------------------------------------
# One variant: 3 pods, load, ROUNDS rolling updates

class Slots:
    def __init__(self):
        self.free = list(range(1, 251))
        self.lock = threading.Lock()

    def take(self):
        with self.lock:
            return self.free.pop(0)

    def give(self, s):
        with self.lock:
            self.free.append(s)


SLOTS = Slots()


def new_pod(v, vname):
    return Pod(SLOTS.take(), v, vname)


def run_variant(vname, cli_ns):
    v = ALL_VARIANTS[vname]
    vdir = os.path.join(WORK, vname)
    os.makedirs(vdir, exist_ok=True)
    log("== %s: %s sidecar, %s form, propagation %.1fs, %d rollouts of %d pods at %.0f req/s"
        % (vname, v["sidecar"], v["form"], v["propagation"], ROUNDS, REPLICAS, RATE))
    ingress = Ingress(vname)
    started = time.time()
    pods = []
    terminating = []
    load = None
    try:
        for _ in range(REPLICAS):
            p = new_pod(v, vname)
            pods.append(p)
            p.start()
        for p in pods:
            p.wait_ready()
        ingress.start([p.ip for p in pods])
        summary_file = os.path.join(vdir, "load.json")
        failures_file = os.path.join(vdir, "failures.log")
        load = spawn(cli_ns, [PYBIN, os.path.join(HERE, "load.py"), "--target", "10.77.0.1:80",
                              "--rate", str(RATE), "--max-seconds", "1800",
                              "--out", summary_file, "--failures", failures_file],
                     os.path.join(vdir, "load.log"))
        time.sleep(3)  # steady state before the first rollout
        for rnd in range(1, ROUNDS + 1):
            log("-- %s: rollout %d/%d" % (vname, rnd, ROUNDS))
            # RollingUpdate with maxSurge 1, maxUnavailable 0 (k8s/base): one
            # new pod is created; once it is Ready an old pod is deleted and,
            # as terminating pods no longer count, the next new pod is
            # created at once.
            for _ in range(REPLICAS):
                new = new_pod(v, vname)
                new.start()
                log("  %s started" % new.name)
                new.wait_ready()
                log("  %s ready" % new.name)

                def endpoint_add(ip=new.ip):
                    time.sleep(v["propagation"])
                    ingress.update(add=ip)

                threading.Thread(target=endpoint_add, daemon=True).start()
                old = pods.pop(0)
                pods.append(new)
                ev = threading.Event()
                t = threading.Thread(target=terminate, args=(old, ingress, ev), daemon=True)
                t.start()
                terminating.append((old, t))
            for old, t in terminating:
                t.join()
                SLOTS.give(old.slot)
            terminating.clear()
            log("-- %s: rollout %d done" % (vname, rnd))
            time.sleep(1)
        time.sleep(2)
    finally:
        if load is not None:
            signal_proc(load, signal.SIGTERM)
            try:
                load.wait(60)
            except subprocess.TimeoutExpired:
                kill_group(load)
                load.wait()
        for old, t in terminating:
            t.join(GRACE + 5)
        ingress.stop()
        for p in pods:
            p.destroy()
            SLOTS.give(p.slot)
    with open(os.path.join(vdir, "load.json")) as f:
        s = json.load(f)
    s["endpoint_updates"] = ingress.updates
    s["ingress"] = INGRESS_MODE
    s["variant"] = vname
    s["propagation_s"] = v["propagation"]
    failures = []
    try:
        with open(os.path.join(vdir, "failures.log")) as f:
            failures = [l.split(" ", 4) for l in f.read().splitlines() if l]
    except FileNotFoundError:
        pass
    s["failure_kinds"] = {}
    # When each failure happened, in whole seconds after the latest pod
    # deletion before it (the client's clock and this one are the same).
    with LOG_LOCK:
        deletions = [t for t, msg in EVENTS if msg.endswith("form)") and " deleted " in msg and t >= started]
    s["failures_after_deletion_s"] = {}
    for fl in failures:
        key = "%s %s %s" % (fl[1], fl[2].split("?")[0], fl[3])
        s["failure_kinds"][key] = s["failure_kinds"].get(key, 0) + 1
        t = float(fl[0])
        before = [d for d in deletions if d <= t]
        bucket = "%d" % int(t - before[-1]) if before else "before any deletion"
        s["failures_after_deletion_s"][bucket] = s["failures_after_deletion_s"].get(bucket, 0) + 1
    log("== %s: %s" % (vname, json.dumps(s, sort_keys=True)))
    return s


def cleanup():
    with PROCS_LOCK:
        procs = list(PROCS)
    for p in procs:
        if p.poll() is None:
            kill_group(p)
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
    for ns in list(reversed(CREATED_NS)):
        ns_del(ns)


def main():
    if not PODGATE_BIN or not os.access(PODGATE_BIN, os.X_OK):
        die("PODGATE_BIN=%r is not an executable podgate binary" % PODGATE_BIN)
    default = "podgate-classic,podgate-native" if QUICK else ",".join(ALL_VARIANTS)
    names = [n.strip() for n in os.environ.get("ROLLOUT_VARIANTS", default).split(",") if n.strip()]
    bad = [n for n in names if n not in ALL_VARIANTS]
    if bad:
        die("ROLLOUT_VARIANTS has unknown %s; accepted: %s" % (", ".join(bad), ", ".join(ALL_VARIANTS)))
    ing_ns = "ro-%s-ing" % TAG
    cli_ns = "ro-%s-cli" % TAG
    def interrupted(*_):
        raise KeyboardInterrupt()

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, interrupted)
    results = []
    try:
        ns_add(ing_ns)
        ns_add(cli_ns)
        run(["ip", "-n", ing_ns, "link", "add", "cli0", "type", "veth", "peer", "name", "eth0", "netns", cli_ns])
        run(["ip", "-n", ing_ns, "addr", "add", "10.77.0.1/30", "dev", "cli0"])
        run(["ip", "-n", cli_ns, "addr", "add", "10.77.0.2/30", "dev", "eth0"])
        run(["ip", "-n", ing_ns, "link", "set", "cli0", "up"])
        run(["ip", "-n", cli_ns, "link", "set", "eth0", "up"])
        enter_ns(ing_ns)
        log("rollout: work dir %s; variants %s; %d rollouts each; propagation %.1fs (late: %.1fs); "
            "ingress endpoint updates by %s" % (WORK, ",".join(names), ROUNDS, PROPAGATION,
                                                LATE_PROPAGATION, INGRESS_MODE))
        for n in names:
            results.append(run_variant(n, cli_ns))
    except KeyboardInterrupt:
        log("rollout: interrupted")
        cleanup()
        return 130
    finally:
        cleanup()
    with open(os.path.join(WORK, "results.json"), "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    status = 0
    print()
    for s in results:
        detail = ", ".join("%s: %d" % kv for kv in sorted(s["failure_kinds"].items())) or "none"
        print("%s: %d rollouts, propagation %.1fs, offered %.0f req/s (send lag p99 %.1f ms), "
              "%d endpoint updates (%s), p99 of non-slow requests %.1f ms; failures: %s"
              % (s["variant"], ROUNDS, s["propagation_s"], s["rate_offered"], s["send_lag_p99_ms"],
                 s["endpoint_updates"], s["ingress"], s["p99_fast_ms"], detail))
        if s["send_lag_p99_ms"] > 250:
            print("rollout: %s: the load generator fell behind (send lag p99 %.0f ms): not a valid run"
                  % (s["variant"], s["send_lag_p99_ms"]))
            status = 2
        if s["variant"] in ASSERTED and s["failed"] != 0:
            status = 1
    for s in results:
        print("rollout: %s requests=%d failed=%d p99_ms=%d" % (s["variant"], s["requests"], s["failed"], s["p99_ms"]))
    if status == 1:
        print("rollout: FAILED: a podgate variant lost requests (logs in %s)" % WORK)
    return status


if __name__ == "__main__":
    sys.exit(main())
