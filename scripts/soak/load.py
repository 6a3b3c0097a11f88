#!/usr/bin/env python3
"""Mixed background load for scripts/soak.sh, against podgate on loopback.

Runs until --seconds pass (or it is killed), with a few worker threads:
  * uploads: POST /upload with 64 KiB .. 2 MiB bodies, echoed back and checked;
  * downloads: GET /download?size=N, read fully and length-checked;
  * slow: GET /slow?ms=N;
  * aborted: downloads and uploads cut off half-way (client closes);
  * slowloris: connections that dribble a request head and get cut off.
Counts outcomes and prints one JSON line at the end (and on SIGTERM).
Standard library only; every socket operation has a timeout.
"""

import argparse
import json
import random
import signal
import socket
import sys
import threading
import time
import urllib.request
import urllib.error

stats = {}
lock = threading.Lock()
stop = threading.Event()


def count(key, n=1):
    with lock:
        stats[key] = stats.get(key, 0) + n


def opener():
    # Never use an environment proxy.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(op, base, method, path, body=None, timeout=20):
    req = urllib.request.Request(base + path, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/octet-stream")
    try:
        with op.open(req, timeout=timeout) as r:
            data = r.read()
            return r.status, data
    except urllib.error.HTTPError as e:
        return e.code, b""
    except Exception:
        return 0, b""


def record(kind, status, ok):
    if status >= 500:
        count(f"{kind}_{status}")
    elif status == 0:
        count(f"{kind}_neterr")
    elif not ok:
        count(f"{kind}_bad")
    else:
        count(f"{kind}_ok")


def uploads(base, rng):
    op = opener()
    while not stop.is_set():
        n = rng.choice([64 << 10, 256 << 10, 1 << 20, 2 << 20])
        body = bytes(rng.getrandbits(8) for _ in range(256)) * (n // 256)
        status, data = request(op, base, "POST", "/upload", body)
        record("upload", status, status == 200 and data == body)


def downloads(base, rng):
    op = opener()
    while not stop.is_set():
        n = rng.choice([1 << 10, 1 << 20, 5 << 20])
        status, data = request(op, base, "GET", f"/download?size={n}")
        record("download", status, status == 200 and len(data) == n)


def slow(base, rng):
    op = opener()
    while not stop.is_set():
        ms = rng.choice([100, 500, 1500])
        status, _ = request(op, base, "GET", f"/slow?ms={ms}")
        record("slow", status, status == 200)


def raw_conn(host, port, timeout=5):
    s = socket.create_connection((host, port), timeout=timeout)
    s.settimeout(timeout)
    return s


def aborted(host, port, rng):
    while not stop.is_set():
        try:
            s = raw_conn(host, port)
            if rng.random() < 0.5:
                # Download cut off after the first bytes.
                s.sendall(b"GET /download?size=50m HTTP/1.1\r\nHost: soak\r\n\r\n")
                s.recv(65536)
                count("abort_download")
            else:
                # Upload announced at 10 MiB, cut off after 100 KiB.
                s.sendall(b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 10485760\r\n\r\n")
                s.sendall(b"x" * (100 << 10))
                count("abort_upload")
            s.close()
        except Exception:
            count("abort_neterr")
        time.sleep(rng.uniform(0.05, 0.3))


def slowloris(host, port, rng, conns):
    """Keeps `conns` connections dribbling a head; reopens those cut off."""
    socks = []
    while not stop.is_set():
        while len(socks) < conns and not stop.is_set():
            try:
                s = raw_conn(host, port, timeout=2)
                s.sendall(b"GET /loris HTTP/1.1\r\nHost: soak\r\nX-Slow: ")
                socks.append(s)
                count("loris_opened")
            except Exception:
                count("loris_neterr")
                break
        alive = []
        for s in socks:
            try:
                s.sendall(b"a")
                alive.append(s)
            except Exception:
                count("loris_cut")
                s.close()
        socks = alive
        stop.wait(1.0)
    for s in socks:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--loris", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    base = f"http://{a.host}:{a.port}"

    def finish(*_):
        stop.set()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    workers = [
        (uploads, (base,)),
        (downloads, (base,)),
        (slow, (base,)),
        (slow, (base,)),
        (aborted, (a.host, a.port)),
        (slowloris, (a.host, a.port, None, a.loris)),
    ]
    threads = []
    for i, (fn, args) in enumerate(workers):
        rng = random.Random(a.seed * 1000 + i)
        args = tuple(rng if x is None else x for x in args)
        if fn is not slowloris:
            args = args + (rng,)
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        threads.append(t)
    deadline = time.monotonic() + a.seconds
    while not stop.is_set() and time.monotonic() < deadline:
        stop.wait(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=25)
    with lock:
        print(json.dumps(dict(sorted(stats.items()))), flush=True)


if __name__ == "__main__":
    sys.exit(main())
