#!/usr/bin/env python3
"""The app behind podgate while scripts/pgo/build.sh trains the optimised
build: HTTP/1.1 with keep-alive on 127.0.0.1, standard library only.

  GET  /1k       1 KiB of text
  GET  /64k      64 KiB of text
  GET  /json64k  64 KiB of JSON (compressible; for the gzip phase)
  POST /echo     the request body back (Content-Length bodies)
  anything else  404

Speed does not matter here: the training needs podgate's usual paths taken
in their usual proportions, not many requests per second.

  python3 upstream.py PORT     # serves until killed
"""
import asyncio
import sys

BODIES = {
    b"/1k": (b"text/plain", b"a" * 1024),
    b"/64k": (b"text/plain", b"b" * 65536),
    b"/json64k": (
        b"application/json",
        (b'{"items":[' + b",".join(b'{"id":%d,"name":"item-%d"}' % (i, i) for i in range(2500)))[:65534] + b"]}",
    ),
}


def response(status, ctype, body):
    return b"".join([
        b"HTTP/1.1 ", status, b"\r\nContent-Type: ", ctype,
        b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n\r\n", body,
    ])


async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            method, path = lines[0].split(b" ")[:2]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length) if length else b""
            if method == b"POST" and path == b"/echo":
                writer.write(response(b"200 OK", b"application/octet-stream", body))
            elif path in BODIES:
                ctype, data = BODIES[path]
                writer.write(response(b"200 OK", ctype, data))
            else:
                writer.write(response(b"404 Not Found", b"text/plain", b"not found\n"))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=512)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
