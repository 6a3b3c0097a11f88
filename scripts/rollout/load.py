#!/usr/bin/env python3
"""Open-loop HTTP/1.1 load generator for the rollout harness (standard
library only).

Requests are scheduled at a fixed rate (request i is due at t0 + i/rate)
whatever the answers do: a slow or failing backend never slows the offered
load (no coordinated omission), and latency is measured from the time a
request was due, not from when it was sent. Requests go over keep-alive
connections, as an ingress's clients hold them: an idle connection is
reused, a new one is opened when none is idle. Before reuse a connection is
checked for a close from the server (what urllib3 and Go's net/http do),
and one idle for 50 s is closed (below the ingress's 75 s keep-alive);
nothing is ever retried: every connection error and every non-2xx answer is
a failure.

The mix (seeded, so every variant sees the same sequence): SLOW_PCT% GET
/slow?ms=500..2000, POST_PCT% POST /orders?ms=20..200 with a 256-byte body
(a write that takes a database round trip or a few), the rest GET /.

Runs until SIGTERM or SIGINT (or --max-seconds), then stops scheduling,
waits up to --drain-seconds for requests in flight, and writes a JSON
summary to --out. Each failure is written to --failures as one line:
<unix time> <method> <path> <status or error kind> <detail>.
"""

import argparse
import asyncio
import json
import random
import signal
import sys
import time

BODY = b"x" * 256


# Idle keep-alive connections older than this are closed by the client,
# below the ingress's keep-alive timeout (ingress-nginx: 75 s), so the
# server's idle close never races a request.
IDLE_MAX = 50.0


class Conn:
    __slots__ = ("reader", "writer", "uses", "idle_since")

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.uses = 0
        self.idle_since = 0.0

    def dead(self, now):
        # The server closed it (FIN seen by the event loop), sent bytes
        # nobody asked for, or it idled too long: never reuse.
        return (
            now - self.idle_since > IDLE_MAX
            or self.reader.at_eof()
            or self.writer.transport.is_closing()
            or len(self.reader._buffer) > 0  # noqa: SLF001 (no public peek)
        )

    def close(self):
        try:
            self.writer.close()
        except Exception:
            pass


class Load:
    def __init__(self, args):
        self.args = args
        self.host, port = args.target.rsplit(":", 1)
        self.port = int(port)
        self.idle = []
        self.open_conns = 0
        self.max_open = 0
        self.opened = 0
        self.latencies = []
        self.fast_latencies = []
        self.lags = []
        self.statuses = {}
        self.errors = {}
        self.failed = 0
        self.done = 0
        self.inflight = set()
        self.stop = asyncio.Event()
        self.fail_file = open(args.failures, "w", buffering=1) if args.failures else None
        self.rng = random.Random(args.seed)

    def pick(self):
        r = self.rng.random() * 100
        if r < self.args.slow_pct:
            return "GET", "/slow?ms=%d" % self.rng.randint(500, 2000), None
        if r < self.args.slow_pct + self.args.post_pct:
            return "POST", "/orders?ms=%d" % self.rng.randint(20, 200), BODY
        return "GET", "/", None

    async def get_conn(self):
        now = asyncio.get_running_loop().time()
        while self.idle:
            c = self.idle.pop()
            if c.dead(now):
                self.drop(c)
                continue
            return c, True
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.open_conns += 1
        self.opened += 1
        self.max_open = max(self.max_open, self.open_conns)
        return Conn(reader, writer), False

    def drop(self, c):
        self.open_conns -= 1
        c.close()

    async def exchange(self, c, method, path, body):
        head = "%s %s HTTP/1.1\r\nHost: rollout.test\r\nUser-Agent: rollout-load\r\n" % (
            method,
            path,
        )
        if body is not None:
            head += "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n" % len(body)
        c.writer.write(head.encode() + b"\r\n" + (body or b""))
        await c.writer.drain()
        while True:
            raw = await c.reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise ValueError("bad status line %r" % lines[0][:80])
            status = int(parts[1])
            if status >= 200 or status == 101:
                break  # 1xx informational answers are skipped
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        close = "close" in headers.get("connection", "").lower() or parts[0] == "HTTP/1.0"
        if method == "HEAD" or status in (204, 304):
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = await c.reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                await c.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif "content-length" in headers:
            await c.reader.readexactly(int(headers["content-length"]))
        else:
            await c.reader.read()  # body delimited by the close
            close = True
        return status, close

    async def one(self, due, method, path, body):
        loop = asyncio.get_running_loop()
        self.lags.append(loop.time() - due)
        c = None
        kind = None
        detail = ""
        status = None
        try:
            c, reused = await asyncio.wait_for(self.get_conn(), self.args.timeout)
            c.uses += 1
            status, close = await asyncio.wait_for(
                self.exchange(c, method, path, body), self.args.timeout
            )
            if close:
                self.drop(c)
            else:
                c.idle_since = loop.time()
                self.idle.append(c)
            c = None
        except asyncio.TimeoutError:
            kind, detail = "timeout", "no complete answer within %ss" % self.args.timeout
        except ConnectionRefusedError as e:
            kind, detail = "refused", str(e)
        except ConnectionResetError as e:
            kind, detail = "reset", str(e)
        except asyncio.IncompleteReadError as e:
            kind, detail = "closed", "connection closed after %d bytes of an answer" % len(e.partial)
        except (OSError, ValueError, asyncio.LimitOverrunError) as e:
            kind, detail = type(e).__name__, str(e)
        finally:
            if c is not None:
                self.drop(c)
        self.done += 1
        if kind is None:
            self.latencies.append(loop.time() - due)
            if not path.startswith("/slow"):
                self.fast_latencies.append(loop.time() - due)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if not 200 <= status < 300:
                self.failed += 1
                self.record_failure(method, path, str(status), "")
        else:
            self.failed += 1
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self.record_failure(method, path, kind, detail)

    def record_failure(self, method, path, what, detail):
        if self.fail_file:
            self.fail_file.write("%.3f %s %s %s %s\n" % (time.time(), method, path, what, detail))

    async def run(self):
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, self.stop.set)
        rate = self.args.rate
        t0 = loop.time() + 0.05
        self.wall0 = time.time() + 0.05
        deadline = t0 + self.args.max_seconds
        i = 0
        next_report = t0 + 10
        while not self.stop.is_set():
            due = t0 + i / rate
            if due >= deadline:
                break
            now = loop.time()
            if due > now:
                try:
                    await asyncio.wait_for(self.stop.wait(), due - now)
                    break
                except asyncio.TimeoutError:
                    pass
            method, path, body = self.pick()
            t = asyncio.ensure_future(self.one(due, method, path, body))
            self.inflight.add(t)
            t.add_done_callback(self.inflight.discard)
            i += 1
            if loop.time() >= next_report:
                next_report += 10
                print(
                    "load: t=%.0fs sent=%d done=%d failed=%d open=%d"
                    % (loop.time() - t0, i, self.done, self.failed, self.open_conns),
                    file=sys.stderr,
                    flush=True,
                )
        self.elapsed = loop.time() - t0
        self.sent = i
        if self.inflight:
            await asyncio.wait(list(self.inflight), timeout=self.args.drain_seconds)
        for c in self.idle:
            c.close()
        return self.summary()

    def summary(self):
        def pct(xs, p):
            if not xs:
                return 0.0
            xs = sorted(xs)
            return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000

        unfinished = self.sent - self.done
        return {
            "requests": self.sent,
            "failed": self.failed + unfinished,
            "unfinished": unfinished,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
            "seconds": round(self.elapsed, 2),
            "rate_offered": self.args.rate,
            "rate_achieved": round(self.sent / self.elapsed, 1) if self.elapsed else 0,
            "p50_ms": round(pct(self.latencies, 50)),
            "p99_ms": round(pct(self.latencies, 99)),
            "max_ms": round(pct(self.latencies, 100)),
            "p99_fast_ms": round(pct(self.fast_latencies, 99), 1),
            "send_lag_p99_ms": round(pct(self.lags, 99), 1),
            "send_lag_max_ms": round(pct(self.lags, 100), 1),
            "connections_opened": self.opened,
            "connections_max_open": self.max_open,
            "start_unix": round(self.wall0, 3),
        }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help="host:port")
    p.add_argument("--rate", type=float, default=300.0, help="requests per second")
    p.add_argument("--slow-pct", type=float, default=5.0)
    p.add_argument("--post-pct", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    p.add_argument("--max-seconds", type=float, default=900.0)
    p.add_argument("--drain-seconds", type=float, default=35.0)
    p.add_argument("--seed", type=int, default=19)
    p.add_argument("--out", help="write the JSON summary here")
    p.add_argument("--failures", help="write one line per failure here")
    args = p.parse_args()
    if args.rate <= 0:
        p.error("--rate must be > 0, got %s" % args.rate)
    s = asyncio.run(Load(args).run())
    text = json.dumps(s, sort_keys=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
