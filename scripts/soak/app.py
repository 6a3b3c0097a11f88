#!/usr/bin/env python3
"""Fallback demo app for scripts/soak.sh when examples/app.rs is missing or
does not build: the same endpoints, on 127.0.0.1:PORT, standard library only.
  GET /, /healthz, /slow?ms=N, /download?size=N; POST /upload (echo).
"""

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        if u.path in ("/", "/healthz"):
            self.send(200, b"ok\n")
        elif u.path == "/slow":
            time.sleep(min(int(q.get("ms", ["2000"])[0]), 120000) / 1000)
            self.send(200, b"slow\n")
        elif u.path == "/download":
            n = min(int(q.get("size", [str(10 << 20)])[0]), 2 << 30)
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = bytes(range(256)) * 256
            sent = 0
            while sent < n:
                part = chunk[: min(len(chunk), n - sent)]
                self.wfile.write(part)
                sent += len(part)
        else:
            self.send(404, b"not found\n")

    def do_POST(self):
        if urlparse(self.path).path != "/upload":
            self.send(404, b"not found\n")
            return
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.send(200, body, "application/octet-stream")

    do_PUT = do_POST


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
