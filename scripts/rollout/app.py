"""The app of every pod in the rollout harness: a Flask WSGI app served by
gunicorn on 127.0.0.1:8000, as the app container of a pod runs it
(`gunicorn -b 127.0.0.1:8000 --graceful-timeout 15 app:app`).

  GET  /              a small page (the bulk of the traffic)
  GET  /slow?ms=N     answers after N milliseconds (the load mixes in 0.5-2 s)
  POST /orders?ms=N   reads the body, takes N milliseconds (a database
                      write; the load uses 20-200), answers 201 (not
                      idempotent: an ingress never retries it once sent)

Every answer carries X-Pod (the pod's name, from ROLLOUT_POD), so a run's
logs tell which pod served what.
"""

import os
import time

from flask import Flask, Response, request

app = Flask(__name__)
POD = os.environ.get("ROLLOUT_POD", "pod")


def answer(body, status=200):
    r = Response(body, status=status, mimetype="text/plain")
    r.headers["X-Pod"] = POD
    return r


@app.get("/")
def index():
    return answer("hello from %s\n" % POD)


def millis(default):
    """The ?ms= argument, 0..10000; None when it is not an integer."""
    try:
        return min(max(int(request.args.get("ms", default)), 0), 10000)
    except ValueError:
        return None


@app.get("/slow")
def slow():
    ms = millis("1000")
    if ms is None:
        return answer("ms must be an integer number of milliseconds\n", 400)
    time.sleep(ms / 1000)
    return answer("slept %d ms on %s\n" % (ms, POD))


@app.post("/orders")
def orders():
    ms = millis("0")
    if ms is None:
        return answer("ms must be an integer number of milliseconds\n", 400)
    n = len(request.get_data())
    time.sleep(ms / 1000)
    return answer("order of %d bytes taken by %s\n" % (n, POD), 201)
