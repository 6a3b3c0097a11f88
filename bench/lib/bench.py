#!/usr/bin/env python3
"""The benchmark driver behind bench/run.sh (run that, not this: it installs
the tools, builds the binaries, raises the file limit and sets the trap).

Everything is configured by environment variables (documented in
bench/README.md and at the top of bench/run.sh). Raw results go to
$BENCH_RAW_DIR/runs.jsonl (one JSON object per measurement); the Markdown
report is written by summarize.py to stdout and $BENCH_OUT.
"""
import atexit
import datetime
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the work tree
import summarize  # noqa: E402


def env(name, default):
    v = os.environ.get(name)
    return default if v is None or v == "" else v


DURATION = int(env("DURATION", 10))
WARMUP = int(env("WARMUP", 2))
ROUNDS = int(env("ROUNDS", 3))
CONNS = int(env("CONNS", 64))
SCENARIOS = env("SCENARIOS", "get1k_c64 get64k_c64 post16k_c64 get1k_c1 gzip64k_c64 tls_get1k_c64 tls_newconn").split()
TARGETS = env("TARGETS", "direct nginx haproxy podgate podgate-nolog").split()
EXTRAS = os.environ.get("EXTRAS", "idle startup conns10k").split()  # EXTRAS= (empty): none
EXTRA_PODGATES = env("EXTRA_PODGATES", "").split()  # name=/path/to/binary
PODGATE_EXTRA_ENV = env("PODGATE_EXTRA_ENV", "").split()  # K=V for every podgate target
IDLE_CONNS = int(env("IDLE_CONNS", 10000))
IDLE_CONNS_TARGETS = env("IDLE_CONNS_TARGETS", "podgate nginx haproxy").split()
STARTUP_RUNS = int(env("STARTUP_RUNS", 15))
FOREIGN_MAX = float(env("FOREIGN_MAX", 30))  # % of one CPU used by processes not ours
# The 1-connection latency scenario shares one CPU with everything: foreign
# load there goes straight into p99, so it gets a stricter limit.
FOREIGN_MAX_LATENCY = float(env("FOREIGN_MAX_LATENCY", min(15.0, FOREIGN_MAX)))
RETRIES = int(env("RETRIES", 1))
QUIET_WAIT = float(env("QUIET_WAIT", 60))
PROXY_ACCESS_LOG = env("PROXY_ACCESS_LOG", "1") == "1"
NGINX_CLIENT_BODY_BUFFER = env("NGINX_CLIENT_BODY_BUFFER", "64k")
BENCH_OUT = env("BENCH_OUT", "/tmp/podgate-bench.md")
BENCH_RAW_DIR = env("BENCH_RAW_DIR", "/tmp/podgate-bench-raw-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
PODGATE_BIN = env("PODGATE_BIN", "target/x86_64-unknown-linux-musl/release/podgate")
UPSTREAM_BIN = env("UPSTREAM_BIN", "target/release/examples/bench_upstream")
NGINX_BIN = env("NGINX_BIN", shutil.which("nginx") or "/usr/sbin/nginx")
HAPROXY_BIN = env("HAPROXY_BIN", shutil.which("haproxy") or "/usr/sbin/haproxy")
WRK_BIN = env("WRK_BIN", shutil.which("wrk") or "wrk")
PIDFILE = env("BENCH_PIDFILE", "")
UPSTREAM_PORT = int(env("UPSTREAM_PORT", 8000))
PORTS = {"nginx": 18081, "haproxy": 18083, "podgate": int(env("PODGATE_PORT", 18080))}
# The TLS scenarios' listeners (nginx `listen ... ssl`, PODGATE_TLS_LISTEN),
# beside the plaintext ones.
TLS_PORTS = {"nginx": int(env("NGINX_TLS_PORT", 18443)), "podgate": int(env("PODGATE_TLS_PORT", 18444))}
PODGATE_ADMIN_PORT = int(env("PODGATE_ADMIN_PORT", 19901))

NCPU = os.cpu_count() or 1
PIN = env("PIN", "auto")
if PIN == "auto":
    PIN = "1" if NCPU >= 2 else "0"
ALL = "0-%d" % (NCPU - 1)
LOADGEN_CPUS = env("LOADGEN_CPUS", "0" if PIN == "1" else ALL)   # wrk + upstream (+ this driver)
PROXY_CPUS = env("PROXY_CPUS", "1" if PIN == "1" else ALL)       # the proxy, alone
LATENCY_CPUS = env("LATENCY_CPUS", "0" if PIN == "1" else ALL)   # everything, 1-connection scenario

# scenario -> (method, path, request body bytes, connections, response body bytes, kind)
SCENARIO_DEFS = {
    "get1k_c64": ("GET", "/1k", 0, CONNS, 1024, "throughput"),
    "get64k_c64": ("GET", "/64k", 0, CONNS, 65536, "throughput"),
    "post16k_c64": ("POST", "/echo", 16384, CONNS, 16384, "throughput"),
    "get1k_c1": ("GET", "/1k", 0, 1, 1024, "latency"),
    "gzip64k_c64": ("GET", "/json64k", 0, CONNS, 65536, "throughput"),
    "tls_get1k_c64": ("GET", "/1k", 0, CONNS, 1024, "throughput"),
    "tls_newconn": ("GET", "/1k", 0, CONNS, 1024, "throughput"),
}

# TLS: the proxy terminates TLS (TLS 1.2 and 1.3) with the same self-signed
# ECDSA P-256 certificate in nginx and podgate, made with openssl in the
# work directory, and forwards in plain HTTP to the same upstream.
# tls_get1k_c64 is get1k_c64 over 64 keep-alive TLS connections (the cost of
# encrypting); tls_newconn opens a new TLS connection for every request
# (wrk -H "Connection: close"), so req/s = connections/s and CPU µs/req = the
# cost of a handshake plus one request. wrk offers the session of its
# connection's previous handshake, so these are mostly resumed handshakes
# (TLS 1.3 PSK with a fresh ECDHE, no certificate signature), as ingress-nginx
# makes them to its backends (proxy_ssl_session_reuse, on by default); the
# nginx runs record $ssl_session_reused to show the share. HAProxy and
# direct sit these out.
TLS_SCENARIOS = {"tls_get1k_c64", "tls_newconn"}
NEWCONN = {"tls_newconn"}

# Compression: the client sends Accept-Encoding: gzip, the upstream answers
# 64 KiB of JSON uncompressed, and the proxy compresses it at the same level
# in nginx and podgate (6: tower-http's default for gzip, set in nginx with
# gzip_comp_level). HAProxy's compressor (libslz) has no levels, so it sits
# this one out; so does podgate-nolog. Compared with get64k_c64 (same size,
# passed through), it gives the CPU cost of compressing.
GZIP_LEVEL = 6
COMPRESSED = {"gzip64k_c64"}
SCENARIO_SKIP = {"gzip64k_c64": {"haproxy", "podgate-nolog"},
                 "tls_get1k_c64": {"direct", "haproxy"}, "tls_newconn": {"direct", "haproxy"}}

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def cpuset(spec):
    out = set()
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.update(range(int(a), int(b) + 1))
        else:
            out.add(int(part))
    return out


# ------------------------------------------------------------ processes --
STARTED = []  # Popen objects, each the leader of its own process group


def record_pids():
    if PIDFILE:
        with open(PIDFILE, "w") as f:
            f.write(" ".join(str(p.pid) for p in STARTED if p.poll() is None) + "\n")


def spawn(argv, cpus=None, envv=None, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL):
    if cpus is not None:
        argv = ["taskset", "-c", cpus] + list(argv)
    p = subprocess.Popen(argv, env=envv, stdout=stdout, stderr=stderr, stdin=stdin, start_new_session=True)
    STARTED.append(p)
    record_pids()
    return p


def stop(p, sig=signal.SIGTERM, grace=5.0):
    """Stops a process we started, and its process group (it leads it)."""
    if p is None:
        return
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # stragglers in its group (nginx workers)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    if p in STARTED:
        STARTED.remove(p)
    record_pids()


def stop_all():
    for p in list(STARTED):
        stop(p, grace=2.0)


atexit.register(stop_all)


def _on_signal(signum, _frame):
    log("signal %d: stopping everything we started" % signum)
    sys.exit(128 + signum)


# If bench/run.sh dies (even by SIGKILL), get SIGTERM and clean up too.
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


def port_open(port):
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_port(port, p, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if port_open(port):
            return True
        if p is not None and p.poll() is not None:
            return False
        time.sleep(0.02)
    return False


# ------------------------------------------------------------ /proc --
def group_pids(pgid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[2]) == pgid:  # field 5 (pgrp), counted after comm
            out.append(int(d))
    return out


def proc_snapshot(pgid):
    """CPU ticks, RSS, peak RSS and PSS summed over a process group."""
    snap = {"pids": [], "cpu_ticks": 0, "sys_ticks": 0, "rss_kb": 0, "hwm_kb": 0, "pss_kb": 0, "threads": 0, "fds": 0}
    for pid in group_pids(pgid):
        try:
            with open("/proc/%d/stat" % pid) as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            with open("/proc/%d/status" % pid) as f:
                status = f.read()
            pss = 0
            try:
                with open("/proc/%d/smaps_rollup" % pid) as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            pss = int(line.split()[1])
            except OSError:
                pass
            fds = len(os.listdir("/proc/%d/fd" % pid))
        except (OSError, ValueError):
            continue
        snap["pids"].append(pid)
        snap["cpu_ticks"] += int(fields[11]) + int(fields[12])  # utime + stime
        snap["sys_ticks"] += int(fields[12])
        for line in status.splitlines():
            k, _, v = line.partition(":")
            if k == "VmRSS":
                snap["rss_kb"] += int(v.split()[0])
            elif k == "VmHWM":
                snap["hwm_kb"] += int(v.split()[0])
            elif k == "Threads":
                snap["threads"] += int(v.split()[0])
        snap["pss_kb"] += pss
        snap["fds"] += fds
    return snap


def cpu_stat():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return {"busy": v[0] + v[1] + v[2] + v[5] + v[6], "steal": v[7], "total": sum(v[:8])}


def own_ticks():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    rc = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (ru.ru_utime + ru.ru_stime + rc.ru_utime + rc.ru_stime) * CLK_TCK


# ------------------------------------------------------------ targets --
WORK = tempfile.mkdtemp(prefix="podgate-bench-")
LOGDIR = tempfile.mkdtemp(prefix="podgate-bench-logs-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
atexit.register(lambda: shutil.rmtree(WORK, ignore_errors=True))
atexit.register(lambda: shutil.rmtree(LOGDIR, ignore_errors=True))
TLS_DIR = os.path.join(WORK, "tls")
TLS_CERT = os.path.join(TLS_DIR, "cert.pem")
TLS_KEY = os.path.join(TLS_DIR, "key.pem")


def make_tls_cert():
    """A self-signed ECDSA P-256 server certificate for localhost and
    127.0.0.1 (an end-entity certificate: CA:FALSE, serverAuth)."""
    os.makedirs(TLS_DIR, exist_ok=True)
    cnf = os.path.join(TLS_DIR, "openssl.cnf")
    with open(cnf, "w") as f:
        f.write("[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = ext\n"
                "[dn]\nCN = localhost\n"
                "[ext]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
                "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "2", "-config", cnf, "-keyout", TLS_KEY, "-out", TLS_CERT],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    if r.returncode != 0:
        raise SystemExit("openssl could not make the TLS certificate: " + r.stdout.decode(errors="replace"))


def write_nginx_conf():
    d = os.path.join(WORK, "nginx")
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    alog = "access_log %s/access.log;" % LOGDIR if PROXY_ACCESS_LOG else "access_log off;"
    tlog = "access_log %s/access.log tls;" % LOGDIR if PROXY_ACCESS_LOG else "access_log off;"
    cbb = "" if NGINX_CLIENT_BODY_BUFFER == "default" else "client_body_buffer_size %s;" % NGINX_CLIENT_BODY_BUFFER
    conf = f"""# The classic sidecar: one worker, proxy_pass to the app on loopback,
# HTTP/1.1 keep-alive to the upstream.
worker_processes 1;
worker_rlimit_nofile 40000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 16384; }}
http {{
  {alog}
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  {cbb}
  # The TLS server's lines also say whether the handshake resumed a session.
  log_format tls '$remote_addr [$time_local] "$request" $status $body_bytes_sent $ssl_protocol $ssl_cipher reused=$ssl_session_reused';
  # Only the gzip64k_c64 scenario asks for it (Accept-Encoding + JSON).
  gzip on;
  gzip_types application/json;
  gzip_comp_level {GZIP_LEVEL};
  gzip_min_length 1024;
  gzip_proxied any;
  gzip_vary on;
  upstream app {{
    server 127.0.0.1:{UPSTREAM_PORT};
    keepalive 64;
    keepalive_requests 1000000;
  }}
  server {{
    listen 127.0.0.1:{PORTS['nginx']} backlog=4096;
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
  # The TLS scenarios: the same proxying behind TLS 1.2/1.3 on the same
  # certificate as podgate's PODGATE_TLS_CERT/KEY (nginx's defaults
  # otherwise: no session cache, session tickets on).
  server {{
    listen 127.0.0.1:{TLS_PORTS['nginx']} ssl backlog=4096;
    ssl_certificate {TLS_CERT};
    ssl_certificate_key {TLS_KEY};
    ssl_protocols TLSv1.2 TLSv1.3;
    {tlog}
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
"""
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf)
    return d


def write_haproxy_conf():
    d = os.path.join(WORK, "haproxy")
    os.makedirs(d, exist_ok=True)
    logl = "log stdout format raw local0" if PROXY_ACCESS_LOG else ""
    dlog = "log global\n  option httplog" if PROXY_ACCESS_LOG else ""
    # HAProxy needs ~2 descriptors per connection and refuses to start when
    # it cannot raise its limit that far.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    maxconn = 12000 if hard == resource.RLIM_INFINITY else max(1000, min(12000, (hard - 200) // 2))
    conf = f"""global
  maxconn {maxconn}
  {logl}
defaults
  mode http
  {dlog}
  option http-keep-alive
  option forwardfor
  timeout connect 5s
  timeout client 75s
  timeout server 60s
  timeout http-keep-alive 75s
frontend fe
  bind 127.0.0.1:{PORTS['haproxy']}
  default_backend app
backend app
  http-reuse always
  server app1 127.0.0.1:{UPSTREAM_PORT}
"""
    with open(os.path.join(d, "haproxy.cfg"), "w") as f:
        f.write(conf)
    return d


NGINX_DIR = None
HAPROXY_DIR = None
PODGATES = {"podgate": (PODGATE_BIN, True), "podgate-nolog": (PODGATE_BIN, False)}
for spec in EXTRA_PODGATES:
    name, _, path = spec.partition("=")
    PODGATES[name] = (path, not name.endswith("-nolog"))


def target_port(t, sc=None):
    if t == "direct":
        return UPSTREAM_PORT
    if sc in TLS_SCENARIOS:
        return TLS_PORTS["podgate" if t in PODGATES else t]
    if t in PODGATES:
        return PORTS["podgate"]
    return PORTS[t]


def podgate_env(access_log, sc=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("PODGATE_")}
    e.update({
        "PODGATE_LISTEN": "127.0.0.1:%d" % PORTS["podgate"],
        "PODGATE_ADMIN_LISTEN": "127.0.0.1:%d" % PODGATE_ADMIN_PORT,
        "PODGATE_APP_PORT": str(UPSTREAM_PORT),
        "PODGATE_ACCESS_LOG": "true" if access_log else "false",
    })
    if sc in COMPRESSED:
        e["PODGATE_COMPRESSION"] = "gzip"
    if sc in TLS_SCENARIOS:
        e.update({"PODGATE_TLS_LISTEN": "127.0.0.1:%d" % TLS_PORTS["podgate"],
                  "PODGATE_TLS_CERT": TLS_CERT, "PODGATE_TLS_KEY": TLS_KEY})
    for kv in PODGATE_EXTRA_ENV:
        k, _, v = kv.partition("=")
        e[k] = v
    return e


def start_target(t, cpus, sc=None):
    """Starts a proxy target pinned to cpus; returns (Popen, log path) or raises."""
    if t == "direct":
        return None, None
    logf = os.path.join(LOGDIR, t + ".log")
    out = open(logf, "wb")
    try:
        if t == "nginx":
            p = spawn([NGINX_BIN, "-p", NGINX_DIR, "-c", os.path.join(NGINX_DIR, "nginx.conf"), "-g", "daemon off;"],
                      cpus, stdout=out)
        elif t == "haproxy":
            p = spawn([HAPROXY_BIN, "-db", "-f", os.path.join(HAPROXY_DIR, "haproxy.cfg")], cpus, stdout=out)
        elif t in PODGATES:
            path, alog = PODGATES[t]
            p = spawn([path], cpus, envv=podgate_env(alog, sc), stdout=out)
        else:
            raise RuntimeError("unknown target %s" % t)
    finally:
        out.close()
    if not wait_port(target_port(t, sc), p):
        stop(p)
        tail = open(logf, "rb").read()[-2000:].decode(errors="replace")
        raise RuntimeError("%s did not start listening on :%d; output:\n%s" % (t, target_port(t, sc), tail))
    return p, logf


def stop_target(t, p):
    if p is None:
        return
    # podgate: SIGINT skips the drain delay (SIGTERM waits PODGATE_DRAIN_DELAY).
    stop(p, signal.SIGINT if t in PODGATES else signal.SIGTERM)


def count_log_lines(t, logf):
    paths = [logf] if logf else []
    if t == "nginx":
        paths = [os.path.join(LOGDIR, "access.log")]
    n = 0
    for pth in paths:
        try:
            with open(pth, "rb") as f:
                while True:
                    b = f.read(1 << 20)
                    if not b:
                        break
                    n += b.count(b"\n")
        except OSError:
            pass
    return n


def nginx_tls_log():
    """What nginx's TLS access log says: the share of requests on a resumed
    session, and the protocol most used."""
    n = reused = 0
    protos = {}
    try:
        with open(os.path.join(LOGDIR, "access.log"), "rb") as f:
            for line in f:
                parts = line.split()
                if not parts or not parts[-1].startswith(b"reused="):
                    continue
                n += 1
                reused += parts[-1] == b"reused=r"
                protos[parts[-3]] = protos.get(parts[-3], 0) + 1
    except OSError:
        return {}
    if not n:
        return {}
    return {"tls_logged": n, "tls_reused_frac": reused / n,
            "tls_protocol": max(protos, key=protos.get).decode(errors="replace")}


def clear_logs():
    for f in os.listdir(LOGDIR):
        try:
            os.unlink(os.path.join(LOGDIR, f))
        except OSError:
            pass


def tls_client_context():
    """Trusts the benchmark's certificate and nothing else; TLS 1.2+."""
    ctx = ssl.create_default_context(cafile=TLS_CERT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def sanity(port, method, path, req_bytes, expect_bytes, gzip=False, tls=False):
    """One request; None if the answer is right. With gzip, the answer must
    be gzip-encoded and decode to expect_bytes. With tls, over TLS, checking
    the server's certificate is the benchmark's."""
    if tls:
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=tls_client_context())
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        body = b"p" * req_bytes if req_bytes else None
        hdrs = {"Content-Type": "application/octet-stream"} if body else {}
        if gzip:
            hdrs["Accept-Encoding"] = "gzip"
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        if gzip:
            if r.getheader("Content-Encoding") != "gzip":
                return "no Content-Encoding: gzip in the answer (got %r)" % r.getheader("Content-Encoding")
            data = zlib.decompress(data, 16 + zlib.MAX_WBITS)
        if r.status != 200 or len(data) != expect_bytes:
            return "got %d with %d bytes, want 200 with %d" % (r.status, len(data), expect_bytes)
        return None
    except Exception as e:  # noqa: BLE001
        return "request failed: %s" % e
    finally:
        c.close()


def run_wrk(seconds, conns, method, req_bytes, url, cpus, out_path, accept_encoding="", headers=()):
    threads = max(1, min(conns, len(cpuset(cpus))))
    envv = dict(os.environ, BENCH_METHOD=method, BENCH_BODY_BYTES=str(req_bytes),
                BENCH_ACCEPT_ENCODING=accept_encoding)
    argv = ["taskset", "-c", cpus, WRK_BIN, "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds,
            "--timeout", "5s", "-s", os.path.join(HERE, "wrk_report.lua")]
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    try:
        r = subprocess.run(argv, env=envv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=seconds + 30, start_new_session=True)
    except subprocess.TimeoutExpired:
        return None, "wrk timed out"
    out = r.stdout.decode(errors="replace")
    if out_path:
        with open(out_path, "w") as f:
            f.write(out)
    for line in out.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):]), None
    return None, "wrk failed (exit %d): %s" % (r.returncode, out[-500:])


def foreign_load(seconds=1.0):
    """% of one CPU used by processes that are not ours, over `seconds`."""
    ours = [p.pid for p in STARTED if p.poll() is None]
    c0, o0 = cpu_stat(), own_ticks() + sum(proc_snapshot(pg)["cpu_ticks"] for pg in ours)
    time.sleep(seconds)
    c1, o1 = cpu_stat(), own_ticks() + sum(proc_snapshot(pg)["cpu_ticks"] for pg in ours)
    return max(0.0, 100.0 * ((c1["busy"] - c0["busy"]) - (o1 - o0)) / (seconds * CLK_TCK))


def wait_quiet(limit=None):
    limit = FOREIGN_MAX if limit is None else limit
    waited = 0.0
    while True:
        f = foreign_load(1.0)
        if f <= limit:
            return f
        if waited >= QUIET_WAIT:
            log("machine still busy (%.0f%% of a CPU used by others); measuring anyway" % f)
            return f
        if waited == 0:
            log("waiting for foreign load (%.0f%% of a CPU) to drop below %.0f%%" % (f, limit))
        time.sleep(2)
        waited += 3


RAW = None


def emit(rec):
    RAW.write(json.dumps(rec) + "\n")
    RAW.flush()


# ------------------------------------------------------------ measurements --
def measure_one(rnd, sc, t, upstream, attempt):
    method, path, req_bytes, conns, expect, kind = SCENARIO_DEFS[sc]
    lcpus = LATENCY_CPUS if kind == "latency" else LOADGEN_CPUS
    pcpus = LATENCY_CPUS if kind == "latency" else PROXY_CPUS
    rec = {"kind": "run", "round": rnd, "scenario": sc, "target": t, "attempt": attempt,
           "valid": False, "proxy_cpus": None if t == "direct" else pcpus, "loadgen_cpus": lcpus}
    limit = FOREIGN_MAX_LATENCY if kind == "latency" else FOREIGN_MAX
    quiet = wait_quiet(limit)
    rec["foreign_before_pct"] = round(quiet, 1)
    clear_logs()
    try:
        p, logf = start_target(t, pcpus, sc)
    except RuntimeError as e:
        rec["why"] = str(e)
        return rec
    gz = sc in COMPRESSED and t != "direct"
    ae = "gzip" if sc in COMPRESSED else ""
    tls = sc in TLS_SCENARIOS
    hdrs = ("Connection: close",) if sc in NEWCONN else ()
    try:
        port = target_port(t, sc)
        err = sanity(port, method, path, req_bytes, expect, gzip=gz, tls=tls)
        if err:
            rec["why"] = "sanity check failed: " + err
            return rec
        url = "%s://127.0.0.1:%d%s" % ("https" if tls else "http", port, path)
        tag = "r%d-%s-%s-a%d" % (rnd, sc, t, attempt)
        if WARMUP > 0:
            run_wrk(WARMUP, conns, method, req_bytes, url, lcpus, None, ae, hdrs)
        base_lines = count_log_lines(t, logf)
        p0 = proc_snapshot(p.pid) if p else None
        u0 = proc_snapshot(upstream.pid)
        c0, own0 = cpu_stat(), own_ticks()
        t0 = time.monotonic()
        res, why = run_wrk(DURATION, conns, method, req_bytes, url, lcpus, os.path.join(BENCH_RAW_DIR, tag + ".wrk.txt"),
                           ae, hdrs)
        t1 = time.monotonic()
        c1, own1 = cpu_stat(), own_ticks()
        p1 = proc_snapshot(p.pid) if p else None
        u1 = proc_snapshot(upstream.pid)
        if res is None:
            rec["why"] = why
            return rec
        secs = res["duration_us"] / 1e6
        n = res["requests"]
        errs = sum(res["errors"].values())
        rec.update({
            "rps": n / secs if secs else 0.0,
            "requests": n,
            "p50_us": res["p50_us"], "p90_us": res["p90_us"], "p99_us": res["p99_us"],
            "p999_us": res["p999_us"], "max_us": res["max_us"],
            "errors": res["errors"],
            "resp_bytes_per_req": res["bytes"] / n if n else 0,
            "upstream_cpu_us_per_req": (u1["cpu_ticks"] - u0["cpu_ticks"]) / CLK_TCK * 1e6 / n if n else None,
        })
        ours = (own1 - own0) + (u1["cpu_ticks"] - u0["cpu_ticks"])
        if p:
            dt = p1["cpu_ticks"] - p0["cpu_ticks"]
            ours += dt
            rec.update({
                "proxy_cpu_s": dt / CLK_TCK,
                "proxy_cpu_pct": 100.0 * dt / CLK_TCK / (t1 - t0),
                "proxy_cpu_us_per_req": dt / CLK_TCK * 1e6 / n if n else None,
                # The kernel's share: the socket work every proxy pays alike.
                "proxy_sys_us_per_req": (p1["sys_ticks"] - p0["sys_ticks"]) / CLK_TCK * 1e6 / n if n else None,
                "proxy_hwm_kb": p1["hwm_kb"], "proxy_rss_kb": p1["rss_kb"], "proxy_pss_kb": p1["pss_kb"],
                "proxy_threads": p1["threads"], "proxy_procs": len(p1["pids"]),
            })
            time.sleep(0.3)  # let the log writer catch up before counting
            rec["log_lines"] = count_log_lines(t, logf) - base_lines
            if tls and t == "nginx":
                rec.update(nginx_tls_log())
        busy = c1["busy"] - c0["busy"]
        rec["foreign_cpu_pct"] = round(max(0.0, 100.0 * (busy - ours) / CLK_TCK / (t1 - t0)), 1)
        rec["steal_pct"] = round(100.0 * (c1["steal"] - c0["steal"]) / max(1, c1["total"] - c0["total"]), 2)
        problems = []
        if errs:
            problems.append("%d errors %s" % (errs, res["errors"]))
        if n and gz and rec["resp_bytes_per_req"] > expect / 2:
            problems.append("responses not compressed (%.0f bytes/req)" % rec["resp_bytes_per_req"])
        elif n and not gz and rec["resp_bytes_per_req"] < expect:
            problems.append("responses too short (%.0f bytes/req)" % rec["resp_bytes_per_req"])
        if rec["foreign_cpu_pct"] > limit:
            problems.append("foreign load %.0f%% of a CPU" % rec["foreign_cpu_pct"])
        if p and p.poll() is not None:
            problems.append("proxy exited during the run")
        rec["valid"] = not problems
        if problems:
            rec["why"] = "; ".join(problems)
        return rec
    finally:
        stop_target(t, p)
        clear_logs()


def measure_idle(t):
    p, _ = start_target(t, PROXY_CPUS)
    try:
        time.sleep(1.5)
        s0 = proc_snapshot(p.pid)
        err = sanity(target_port(t), "GET", "/1k", 0, 1024)
        time.sleep(0.5)
        s1 = proc_snapshot(p.pid)
        return {"kind": "idle", "target": t, "rss_kb": s0["rss_kb"], "pss_kb": s0["pss_kb"],
                "hwm_kb": s0["hwm_kb"], "procs": len(s0["pids"]), "threads": s0["threads"],
                "rss_after_1req_kb": s1["rss_kb"], "pss_after_1req_kb": s1["pss_kb"], "sanity": err}
    finally:
        stop_target(t, p)


def measure_conns(t):
    p, _ = start_target(t, PROXY_CPUS)
    client = None
    try:
        time.sleep(1.0)
        sanity(target_port(t), "GET", "/1k", 0, 1024)
        time.sleep(0.5)
        s0 = proc_snapshot(p.pid)
        client = spawn([sys.executable, os.path.join(HERE, "idle_conns.py"), str(target_port(t)), str(IDLE_CONNS),
                        "--hold", "120"], LOADGEN_CPUS, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       stdin=subprocess.PIPE)
        ready = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = client.stdout.readline().decode()
            if not line:
                break
            if line.startswith("READY "):
                ready = json.loads(line[6:])
                break
        if ready is None:
            return {"kind": "conns", "target": t, "why": "client did not finish"}
        time.sleep(2.0)
        s1 = proc_snapshot(p.pid)
        opened = ready["opened"]
        return {"kind": "conns", "target": t, "n": IDLE_CONNS, "opened": opened, "failed": ready["failed"],
                "non200": ready["non200"], "ramp_s": ready["seconds"],
                "rss_before_kb": s0["rss_kb"], "rss_kb": s1["rss_kb"], "hwm_kb": s1["hwm_kb"],
                "pss_kb": s1["pss_kb"], "fds": s1["fds"],
                "bytes_per_conn": (s1["rss_kb"] - s0["rss_kb"]) * 1024 / opened if opened else None}
    finally:
        if client is not None:
            try:
                client.stdin.close()
            except OSError:
                pass
            stop(client, grace=5.0)
        stop_target(t, p)


def http_get_raw(port, timeout=2.0):
    """One GET /1k on a fresh connection; True on a whole 200 response."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(b"GET /1k HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        return data.startswith(b"HTTP/1.1 200") and len(data) >= 1024
    finally:
        s.close()


def measure_startup(t):
    """Time from exec to (a) a TCP connect succeeding, (b) a first 200."""
    listen_ms, first_ms = [], []
    port = target_port(t)
    for _ in range(STARTUP_RUNS):
        if port_open(port):
            time.sleep(0.5)
        p = None
        logf = open(os.devnull, "wb")
        if t == "nginx":
            argv, envv = [NGINX_BIN, "-p", NGINX_DIR, "-c", os.path.join(NGINX_DIR, "nginx.conf"), "-g", "daemon off;"], None
        elif t == "haproxy":
            argv, envv = [HAPROXY_BIN, "-db", "-f", os.path.join(HAPROXY_DIR, "haproxy.cfg")], None
        else:
            path, alog = PODGATES[t]
            argv, envv = [path], podgate_env(alog)
        # Pin by inheritance (no taskset exec in the timed path): the child
        # is forked while this driver is on the proxy's CPUs.
        mine = os.sched_getaffinity(0)
        os.sched_setaffinity(0, cpuset(PROXY_CPUS))
        try:
            t0 = time.perf_counter()
            p = spawn(argv, None, envv=envv, stdout=logf)
        finally:
            os.sched_setaffinity(0, mine)
        logf.close()
        ok = False
        deadline = t0 + 5
        while time.perf_counter() < deadline:
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", port))
                ok = True
            except OSError:
                pass
            finally:
                s.close()
            if ok:
                break
        t1 = time.perf_counter()
        got = False
        while ok and time.perf_counter() < deadline:
            try:
                if http_get_raw(port):
                    got = True
                    break
            except OSError:
                pass
        t2 = time.perf_counter()
        stop_target(t, p)
        if ok:
            listen_ms.append((t1 - t0) * 1e3)
        if got:
            first_ms.append((t2 - t0) * 1e3)
    return {"kind": "startup", "target": t, "runs": STARTUP_RUNS, "listen_ms": listen_ms, "first_200_ms": first_ms,
            "note": "from just before fork/exec (Python subprocess, pinned to CPU %s) to a successful connect / first 200" % PROXY_CPUS}


# ------------------------------------------------------------ main --
def tool_versions():
    def first_line(argv):
        try:
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
            return r.stdout.decode(errors="replace").strip().splitlines()[0]
        except Exception:  # noqa: BLE001
            return "n/a"
    v = {
        "nginx": first_line([NGINX_BIN, "-v"]).replace("nginx version: ", ""),
        "haproxy": " ".join(first_line([HAPROXY_BIN, "-v"]).split()[:3]),
        "wrk": " ".join(first_line([WRK_BIN, "-v"]).split()[:2]),
        "podgate": first_line([PODGATE_BIN, "version"]),
        "rustc": first_line(["rustc", "-V"]),
    }
    return v


def host_info():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            mem = int(line.split()[1]) // 1048576
    return "%s %s, %d CPUs (%s), %d GiB" % (platform.system(), platform.release(), NCPU, model, mem)


def main():
    global RAW, NGINX_DIR, HAPROXY_DIR
    os.makedirs(BENCH_RAW_DIR, exist_ok=True)
    if PIN == "1":
        os.sched_setaffinity(0, cpuset(LOADGEN_CPUS))  # keep this driver off the proxy's CPU
    RAW = open(os.path.join(BENCH_RAW_DIR, "runs.jsonl"), "w")
    make_tls_cert()  # nginx's configuration names it whatever the scenarios
    NGINX_DIR = write_nginx_conf()
    HAPROXY_DIR = write_haproxy_conf()

    targets = [t for t in TARGETS]
    for spec in EXTRA_PODGATES:
        name = spec.partition("=")[0]
        if name not in targets:
            targets.append(name)
    for t in targets:
        if t != "direct" and t not in PORTS and t not in PODGATES:
            raise SystemExit("unknown target %r" % t)
    for sc in SCENARIOS:
        if sc not in SCENARIO_DEFS:
            raise SystemExit("unknown scenario %r (known: %s)" % (sc, " ".join(SCENARIO_DEFS)))
    ports = {target_port(t, sc) for t in targets for sc in SCENARIOS + [None] if t not in SCENARIO_SKIP.get(sc, ())}
    for port in sorted(ports | {UPSTREAM_PORT, PODGATE_ADMIN_PORT}):
        if port_open(port):
            raise SystemExit("port %d is already in use; stop what holds it first" % port)

    meta = {
        "kind": "meta", "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "host": host_info(),
        "versions": tool_versions(), "duration": DURATION, "warmup": WARMUP, "rounds": ROUNDS, "conns": CONNS, "gzip_level": GZIP_LEVEL,
        "scenarios": SCENARIOS, "targets": targets, "pin": PIN == "1", "loadgen_cpus": LOADGEN_CPUS,
        "proxy_cpus": PROXY_CPUS, "latency_cpus": LATENCY_CPUS, "proxy_access_log": PROXY_ACCESS_LOG,
        "nginx_client_body_buffer": NGINX_CLIENT_BODY_BUFFER, "foreign_max": FOREIGN_MAX,
        "foreign_max_latency": FOREIGN_MAX_LATENCY,
        "idle_conns": IDLE_CONNS, "startup_runs": STARTUP_RUNS,
        "podgates": {k: {"bin": v[0], "access_log": v[1]} for k, v in PODGATES.items() if k in targets},
        "podgate_extra_env": PODGATE_EXTRA_ENV,
    }
    emit(meta)
    log("raw results: %s; pinning: %s" % (BENCH_RAW_DIR, "loadgen+upstream CPU %s, proxy CPU %s, latency CPU %s"
                                           % (LOADGEN_CPUS, PROXY_CPUS, LATENCY_CPUS) if PIN == "1" else "off"))

    upstream = spawn([UPSTREAM_BIN, str(UPSTREAM_PORT), str(len(cpuset(LOADGEN_CPUS)))], LOADGEN_CPUS,
                     stdout=open(os.path.join(WORK, "upstream.log"), "wb"))
    if not wait_port(UPSTREAM_PORT, upstream):
        raise SystemExit("upstream did not start: " + open(os.path.join(WORK, "upstream.log")).read())
    for path, expect in (("/1k", 1024), ("/64k", 65536)):
        err = sanity(UPSTREAM_PORT, "GET", path, 0, expect)
        if err:
            raise SystemExit("upstream sanity check failed: " + err)

    proxies = [t for t in targets if t != "direct"]
    if "idle" in EXTRAS:
        for t in proxies:
            log("idle memory: %s" % t)
            try:
                emit(measure_idle(t))
            except RuntimeError as e:
                log(str(e))
    if "startup" in EXTRAS:
        for t in proxies:
            log("start-up time: %s (%d runs)" % (t, STARTUP_RUNS))
            emit(measure_startup(t))

    total = ROUNDS * sum(1 for sc in SCENARIOS for t in targets if t not in SCENARIO_SKIP.get(sc, ()))
    n = 0
    for rnd in range(1, ROUNDS + 1):
        k = (rnd - 1) % len(targets)
        order = targets[k:] + targets[:k]  # rotate so no target is always first
        for sc in SCENARIOS:
            for t in order:
                if t in SCENARIO_SKIP.get(sc, ()):
                    continue
                n += 1
                for attempt in range(1, RETRIES + 2):
                    log("[%d/%d] round %d %s %s%s" % (n, total, rnd, sc, t, "" if attempt == 1 else " (attempt %d)" % attempt))
                    rec = measure_one(rnd, sc, t, upstream, attempt)
                    emit(rec)
                    if rec["valid"]:
                        log("    %.0f req/s  p50 %.3f ms  p99 %.3f ms%s  foreign %.0f%%" % (
                            rec["rps"], rec["p50_us"] / 1e3, rec["p99_us"] / 1e3,
                            "  proxy %.1f µs/req (%.1f kernel) %.0f%% CPU  HWM %.1f MiB" % (
                                rec["proxy_cpu_us_per_req"], rec["proxy_sys_us_per_req"], rec["proxy_cpu_pct"],
                                rec["proxy_hwm_kb"] / 1024)
                            if "proxy_cpu_us_per_req" in rec else "", rec["foreign_cpu_pct"]))
                        break
                    log("    INVALID: %s" % rec.get("why"))
                    if "foreign load" not in rec.get("why", ""):
                        break

    if "conns10k" in EXTRAS:
        for t in proxies:
            if t not in IDLE_CONNS_TARGETS:
                continue
            log("%d idle keep-alive connections: %s" % (IDLE_CONNS, t))
            try:
                emit(measure_conns(t))
            except RuntimeError as e:
                log(str(e))

    RAW.close()
    report = summarize.summarize(os.path.join(BENCH_RAW_DIR, "runs.jsonl"))
    os.makedirs(os.path.dirname(os.path.abspath(BENCH_OUT)), exist_ok=True)
    with open(BENCH_OUT, "w") as f:
        f.write(report)
    print(report)
    log("report: %s   raw: %s" % (BENCH_OUT, BENCH_RAW_DIR))


if __name__ == "__main__":
    main()
