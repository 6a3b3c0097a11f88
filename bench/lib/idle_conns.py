#!/usr/bin/env python3
"""Open N keep-alive connections to 127.0.0.1:PORT, send one request on each,
read its response whole, and keep every connection open (idle) until
--hold seconds pass, stdin closes or SIGTERM arrives.

Prints `READY {"opened": N, "failed": M, "seconds": S}` once all connections
are established and served, so the caller can measure the server's memory
with N idle keep-alive connections.

At most --concurrency requests are in flight at once, so a proxy never holds
more than that many upstream connections while the client connections pile
up (the point is idle *client* connections, not an upstream connection storm).

usage: idle_conns.py PORT N [--path /1k] [--concurrency 200] [--hold 120]
"""
import argparse
import asyncio
import json
import resource
import signal
import sys
import time


async def one(port, path, sem, conns, stats):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), timeout=10)
        except Exception:
            stats["failed"] += 1
            return
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: idle-conns\r\n\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            length = 0
            status = head.split(b" ", 2)[1]
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip())
            if length:
                await asyncio.wait_for(reader.readexactly(length), timeout=10)
            if status != b"200":
                stats["non200"] += 1
        except Exception:
            stats["failed"] += 1
            writer.close()
            return
        conns.append((reader, writer))
        stats["opened"] += 1


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("--path", default="/1k")
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--hold", type=float, default=120.0)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, a.n + 256) if hard != resource.RLIM_INFINITY else a.n + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    conns, stats = [], {"opened": 0, "failed": 0, "non200": 0}
    sem = asyncio.Semaphore(a.concurrency)
    t0 = time.monotonic()
    await asyncio.gather(*(one(a.port, a.path, sem, conns, stats) for _ in range(a.n)))
    stats["seconds"] = round(time.monotonic() - t0, 3)
    print("READY " + json.dumps(stats), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    try:  # stdin closing also ends the hold (not pollable when it is a file)
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(4096) else None)
    except (OSError, ValueError):
        pass
    try:
        await asyncio.wait_for(stop.wait(), timeout=a.hold)
    except asyncio.TimeoutError:
        pass
    # How many did the server close while we held them (idle timeouts)?
    alive = sum(1 for r, w in conns if not r.at_eof() and not w.transport.is_closing())
    print("DONE " + json.dumps({"still_open": alive}), flush=True)
    for _, w in conns:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
