#!/usr/bin/env python3
"""Turns bench/run.sh's raw results (runs.jsonl) into the Markdown report.

usage: summarize.py RAW_DIR/runs.jsonl [OUT.md]

Every number in a cell is the median over the valid rounds; ratios are taken
between those medians. A cell marked `*` had no valid run (every attempt was
disturbed by foreign load or failed) and shows the median of the invalid ones.
"""
import json
import statistics
import sys

SC_TITLES = {
    "get1k_c64": "GET 1 KiB × 64 conns",
    "get64k_c64": "GET 64 KiB × 64 conns",
    "post16k_c64": "POST 16 KiB echo × 64 conns",
    "get1k_c1": "GET 1 KiB × 1 conn",
    "gzip64k_c64": "GET 64 KiB JSON, gzip × 64 conns",
    "tls_get1k_c64": "TLS: GET 1 KiB × 64 conns",
    "tls_newconn": "TLS: new connection per GET 1 KiB × 64",
}
TLS_SCENARIOS = {"tls_get1k_c64", "tls_newconn"}
COMPRESSED = {"gzip64k_c64"}
MIB = 1024.0


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=0, unit=""):
    if x is None:
        return "—"
    return ("{:,.%df}" % nd).format(x) + unit


def ratio(a, b, nd=2):
    if a is None or b is None or b == 0:
        return "—"
    return "%.*f×" % (nd, a / b)


def spread(xs):
    xs = [x for x in xs if x is not None]
    if len(xs) < 2:
        return "—"
    m = statistics.median(xs)
    return "±%.0f%%" % (100.0 * (max(xs) - min(xs)) / 2 / m) if m else "—"


def load(path):
    recs = [json.loads(line) for line in open(path) if line.strip()]
    meta = next((r for r in recs if r.get("kind") == "meta"), {})
    return meta, recs


class Cell:
    def __init__(self, runs):
        valid = [r for r in runs if r.get("valid")]
        usable = valid or [r for r in runs if r.get("rps")]
        self.flag = "" if valid else "*"
        self.runs = usable
        self.n = len(valid)

    def m(self, key):
        return med([r.get(key) for r in self.runs])

    def all(self, key):
        return [r.get(key) for r in self.runs]


def summarize(path):
    meta, recs = load(path)
    runs = [r for r in recs if r.get("kind") == "run"]
    scenarios = meta.get("scenarios") or sorted({r["scenario"] for r in runs})
    targets = meta.get("targets") or sorted({r["target"] for r in runs})
    cells = {}
    for sc in scenarios:
        for t in targets:
            rs = [r for r in runs if r["scenario"] == sc and r["target"] == t]
            if rs and Cell(rs).runs:
                cells[(sc, t)] = Cell(rs)

    def c(sc, t):
        return cells.get((sc, t))

    out = []
    w = out.append
    v = meta.get("versions", {})
    w("# podgate benchmark (%s)\n" % meta.get("date", "?"))
    w("- host: %s" % meta.get("host", "?"))
    w("- tools: nginx %s, %s, %s, %s; %s" % (v.get("nginx"), v.get("haproxy"), v.get("wrk"), v.get("podgate"), v.get("rustc")))
    pin = ("pinned: load generator + upstream on CPU %s, proxy alone on CPU %s; 1-connection scenario: all on CPU %s"
           % (meta.get("loadgen_cpus"), meta.get("proxy_cpus"), meta.get("latency_cpus"))) if meta.get("pin") else "not pinned"
    w("- method: wrk closed loop, %s rounds (target order rotated), %ss warm-up + %ss measured per run, every proxy "
      "restarted per run; %s; median of valid rounds, ratios between medians; runs where processes that are not "
      "the benchmark's used > %s%% of a CPU (1-connection scenario: > %s%%) are retried" % (
          meta.get("rounds"), meta.get("warmup"), meta.get("duration"), pin, meta.get("foreign_max"),
          meta.get("foreign_max_latency", meta.get("foreign_max"))))
    w("- access logs: podgate ON (stdout → file on tmpfs) except `podgate-nolog`; nginx/HAProxy %s; "
      "nginx: 1 worker, upstream keepalive 64, client_body_buffer_size %s; HAProxy: mode http, nbthread = CPUs it is pinned to"
      % ("ON (file on tmpfs)" if meta.get("proxy_access_log") else "off", meta.get("nginx_client_body_buffer")))
    if meta.get("podgate_extra_env"):
        w("- extra podgate env: `%s`" % " ".join(meta["podgate_extra_env"]))
    extra = {k: v for k, v in (meta.get("podgates") or {}).items() if k not in ("podgate", "podgate-nolog")}
    for k, d in extra.items():
        w("- `%s` = `%s` (access log %s)" % (k, d["bin"], "on" if d["access_log"] else "off"))
    w("")

    # ---------------------------------------------------------------- throughput
    tp = [sc for sc in scenarios if not sc.endswith("_c1")]
    if tp:
        w("## Throughput: 64 keep-alive connections\n")
        w("CPU µs/req = proxy CPU time (user+sys, all its processes and threads) over the measured window ÷ requests; "
          "kernel µs/req is the part spent in system calls (the socket work), user µs/req the proxy's own code. "
          "Peak RSS = VmHWM summed over the proxy's processes (nginx: master + worker). "
          "With the proxy on its own CPU, ×direct ≈ 1.00 means the proxy kept up with what CPU %s could generate; "
          "compare CPU µs/req then.\n" % meta.get("loadgen_cpus", "0"))
        w("| scenario | target | req/s | spread | ×direct | ×nginx | p50 ms | p99 ms | p99.9 ms | CPU µs/req | CPU ×nginx | user µs/req | kernel µs/req | proxy CPU % | peak RSS MiB | runs |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for sc in tp:
            d, ng = c(sc, "direct"), c(sc, "nginx")
            for t in targets:
                x = c(sc, t)
                if not x:
                    continue
                rps = x.m("rps")
                cpu = x.m("proxy_cpu_us_per_req")
                ksys = x.m("proxy_sys_us_per_req")
                user = cpu - ksys if cpu is not None and ksys is not None else None
                w("| %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                    SC_TITLES.get(sc, sc), t, x.flag, fmt(rps), spread(x.all("rps")),
                    ratio(rps, d.m("rps") if d else None), ratio(rps, ng.m("rps") if ng else None),
                    fmt(_ms(x.m("p50_us")), 2), fmt(_ms(x.m("p99_us")), 2), fmt(_ms(x.m("p999_us")), 2),
                    fmt(cpu, 1), ratio(cpu, ng.m("proxy_cpu_us_per_req") if ng and t != "direct" else None),
                    fmt(user, 1), fmt(ksys, 1),
                    fmt(x.m("proxy_cpu_pct"), 0), fmt(_mib(x.m("proxy_hwm_kb")), 1), x.n))
        w("")

    # ---------------------------------------------------------------- TLS
    tl = [sc for sc in scenarios if sc in TLS_SCENARIOS]
    if tl:
        w("## TLS\n")
        w("The proxy terminates TLS 1.2/1.3 with the same self-signed ECDSA P-256 certificate (nginx: `listen ssl`, "
          "`ssl_protocols TLSv1.2 TLSv1.3`; podgate: PODGATE_TLS_LISTEN/CERT/KEY) and forwards plain HTTP to the same upstream. "
          "Keep-alive: the 64 connections stay open, so CPU µs/req is the cost of encrypting 1 KiB (compare with the plaintext "
          "GET 1 KiB × 64 above). New connection per request (wrk `-H \"Connection: close\"`): req/s = TLS connections/s and "
          "CPU µs/req = CPU per handshake + one request. wrk offers the previous session on each new connection; "
          "*resumed* is the share nginx's log shows as resumed (`$ssl_session_reused`).\n")
        w("| scenario | target | req/s (= conn/s when new) | ×nginx | CPU µs/req (= per handshake when new) | CPU ×nginx | p50 ms | p99 ms | protocol | resumed | runs |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
        for sc in tl:
            ng = c(sc, "nginx")
            for t in targets:
                x = c(sc, t)
                if not x:
                    continue
                cpu = x.m("proxy_cpu_us_per_req")
                reused = x.m("tls_reused_frac")
                proto = sorted({r.get("tls_protocol") for r in x.runs if r.get("tls_protocol")})
                w("| %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                    SC_TITLES.get(sc, sc), t, x.flag, fmt(x.m("rps")), ratio(x.m("rps"), ng.m("rps") if ng else None),
                    fmt(cpu, 1), ratio(cpu, ng.m("proxy_cpu_us_per_req") if ng else None),
                    fmt(_ms(x.m("p50_us")), 2), fmt(_ms(x.m("p99_us")), 2), ", ".join(proto) or "—",
                    "%.0f%%" % (100 * reused) if reused is not None else "—", x.n))
        w("")

    # ---------------------------------------------------------------- compression
    for sc in [s for s in scenarios if s in COMPRESSED]:
        base = "get64k_c64"
        w("## Compression: what gzip costs\n")
        w("The same 64 KiB per response as `%s`, but JSON, asked for with `Accept-Encoding: gzip` and compressed "
          "by the proxy at level %s (podgate `PODGATE_COMPRESSION=gzip`; nginx `gzip on; gzip_comp_level %s`). "
          "Added CPU = CPU µs/req here minus CPU µs/req passing 64 KiB through uncompressed.\n"
          % (base, meta.get("gzip_level", "?"), meta.get("gzip_level", "?")))
        w("| target | req/s | ×nginx | bytes/response | CPU µs/req | CPU ×nginx | added CPU µs/req (vs %s) | p99 ms | peak RSS MiB |" % base)
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        ng = c(sc, "nginx")
        for t in targets:
            x = c(sc, t)
            if not x or t == "direct":
                continue
            cpu = x.m("proxy_cpu_us_per_req")
            b = c(base, t)
            added = cpu - b.m("proxy_cpu_us_per_req") if b and cpu is not None and b.m("proxy_cpu_us_per_req") else None
            w("| %s%s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                t, x.flag, fmt(x.m("rps")), ratio(x.m("rps"), ng.m("rps") if ng else None),
                fmt(x.m("resp_bytes_per_req")), fmt(cpu, 1),
                ratio(cpu, ng.m("proxy_cpu_us_per_req") if ng else None), fmt(added, 1),
                fmt(_ms(x.m("p99_us")), 2), fmt(_mib(x.m("proxy_hwm_kb")), 1)))
        w("")

    # ---------------------------------------------------------------- latency
    for sc in [s for s in scenarios if s.endswith("_c1")]:
        d, hp, ng = c(sc, "direct"), c(sc, "haproxy"), c(sc, "nginx")
        w("## Latency: %s (everything on CPU %s)\n" % (SC_TITLES.get(sc, sc), meta.get("latency_cpus")))
        w("Added = the target's percentile minus direct's (same percentile), in µs. "
          "×HAProxy / ×nginx compare the added latency (lower is better).\n")
        w("| target | req/s | p50 µs | p99 µs | p99.9 µs | added p50 | added p99 | added p50 ×HAProxy | added p99 ×HAProxy | added p50 ×nginx | added p99 ×nginx | CPU µs/req | runs |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        dp50, dp99 = (d.m("p50_us"), d.m("p99_us")) if d else (None, None)

        def added(x, k, base):
            return x.m(k) - base if x and base is not None and x.m(k) is not None else None
        hp50, hp99 = added(hp, "p50_us", dp50), added(hp, "p99_us", dp99)
        n50, n99 = added(ng, "p50_us", dp50), added(ng, "p99_us", dp99)
        for t in targets:
            x = c(sc, t)
            if not x:
                continue
            a50, a99 = (added(x, "p50_us", dp50), added(x, "p99_us", dp99)) if t != "direct" else (None, None)
            w("| %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                t, x.flag, fmt(x.m("rps")), fmt(x.m("p50_us")), fmt(x.m("p99_us")), fmt(x.m("p999_us")),
                fmt(a50), fmt(a99), ratio(a50, hp50), ratio(a99, hp99), ratio(a50, n50), ratio(a99, n99),
                fmt(x.m("proxy_cpu_us_per_req"), 1), x.n))
        w("")

    # ---------------------------------------------------------------- access log
    pairs = [(a, a + "-nolog") for a in targets if a + "-nolog" in targets]
    if pairs:
        w("## Access log: on vs off\n")
        w("| scenario | pair | req/s on | req/s off | on ÷ off req/s | CPU µs/req on | CPU µs/req off | on ÷ off CPU | log lines written ÷ requests (on) |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for sc in scenarios:
            for on, off in pairs:
                a, b = c(sc, on), c(sc, off)
                if not a or not b:
                    continue
                lines = med([(r.get("log_lines") or 0) / r["requests"] for r in a.runs if r.get("requests")])
                w("| %s | %s / %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    SC_TITLES.get(sc, sc), on, off, fmt(a.m("rps")), fmt(b.m("rps")), ratio(a.m("rps"), b.m("rps"), 3),
                    fmt(a.m("proxy_cpu_us_per_req"), 1), fmt(b.m("proxy_cpu_us_per_req"), 1),
                    ratio(a.m("proxy_cpu_us_per_req"), b.m("proxy_cpu_us_per_req"), 3), fmt(lines, 3)))
        w("")

    # ---------------------------------------------------------------- memory, start-up
    idle = {r["target"]: r for r in recs if r.get("kind") == "idle"}
    conns = {r["target"]: r for r in recs if r.get("kind") == "conns"}
    starts = {r["target"]: r for r in recs if r.get("kind") == "startup"}
    proxies = [t for t in targets if t != "direct"]
    if idle or conns or starts or tp:
        n10k = next((r.get("n") for r in conns.values() if r.get("n")), 10000)
        w("## Memory and start-up\n")
        w("Idle = started, no traffic yet (RSS; PSS counts shared pages once). Under load = highest VmHWM over the "
          "64-connection runs without compression (gzip state is in the compression table). %s idle conns = RSS after %s keep-alive connections each served one GET 1 KiB and "
          "were left open; bytes/conn = (that RSS − RSS before) ÷ connections. Start-up = fork/exec → TCP connect "
          "succeeds / → first 200 through the proxy (median of runs; min in brackets).\n" % (f"{n10k:,}", f"{n10k:,}"))
        w("| proxy | idle RSS MiB | idle PSS MiB | RSS after 1 req | peak RSS under 64-conn load MiB | RSS with %s idle conns MiB | bytes/conn | start-up → listening ms | start-up → first 200 ms |" % f"{n10k:,}")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for t in proxies:
            i, k, s = idle.get(t, {}), conns.get(t, {}), starts.get(t, {})
            load_hwm = max([x.m("proxy_hwm_kb") for (sc, tt), x in cells.items()
                            if tt == t and sc in tp and sc not in COMPRESSED and x.m("proxy_hwm_kb") is not None]
                           or [None], key=lambda z: z or 0)
            opened = k.get("opened")
            cn = fmt(_mib(k.get("rss_kb")), 1) if k.get("rss_kb") else "—"
            if opened is not None and opened != k.get("n"):
                cn += " (%s of %s opened)" % (opened, k.get("n"))
            w("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                t, fmt(_mib(i.get("rss_kb")), 1), fmt(_mib(i.get("pss_kb")), 1), fmt(_mib(i.get("rss_after_1req_kb")), 1),
                fmt(_mib(load_hwm), 1), cn, fmt(k.get("bytes_per_conn"), 0),
                _ms_list(s.get("listen_ms")), _ms_list(s.get("first_200_ms"))))
        w("")

    # ---------------------------------------------------------------- targets
    pg = "podgate"
    if pg in targets:
        w("## Goals (podgate, access log on)\n")
        w("| goal | measured | met |")
        w("|---|---|:-:|")

        def goal(name, val, ok):
            w("| %s | %s | %s |" % (name, val, "—" if ok is None else ("yes" if ok else "**no**")))

        def rel(sc, key, ref):
            a, b = c(sc, pg), c(sc, ref)
            if not a or not b or a.m(key) is None or not b.m(key):
                return None
            return a.m(key) / b.m(key)
        for sc, need in (("get1k_c64", 1.3), ("get64k_c64", 1.35), ("post16k_c64", 1.1)):
            r = rel(sc, "rps", "nginx")
            if sc in scenarios:
                goal("%s: req/s ≥ %.2f× nginx" % (SC_TITLES[sc], need), ratio(r, 1.0) if r else "—",
                     None if r is None else r >= need)
        r = rel("get1k_c64", "proxy_cpu_us_per_req", "nginx")
        if "get1k_c64" in scenarios:
            goal("GET 1 KiB × 64: CPU µs/req ≤ 0.80× nginx", ratio(r, 1.0) if r else "—", None if r is None else r <= 0.8)
        sc = "get1k_c1"
        if sc in scenarios and c(sc, "direct") and c(sc, pg) and c(sc, "haproxy"):
            for k in ("p50_us", "p99_us"):
                base, a, h = c(sc, "direct").m(k), c(sc, pg).m(k), c(sc, "haproxy").m(k)
                if None in (base, a, h):
                    continue
                a, h = a - base, h - base
                goal("1 conn: added %s ≤ HAProxy's" % k.replace("_us", ""), "%s µs vs %s µs" % (fmt(a), fmt(h)), a <= h)
        i = idle.get(pg, {})
        if i.get("rss_kb"):
            goal("idle RSS < 8 MiB", fmt(_mib(i["rss_kb"]), 1, " MiB"), _mib(i["rss_kb"]) < 8)
        hw = [x.m("proxy_hwm_kb") for (s2, tt), x in cells.items()
              if tt == pg and s2 in tp and s2 not in COMPRESSED and x.m("proxy_hwm_kb")]
        if hw:
            goal("peak RSS under 64-conn load < 16 MiB", fmt(_mib(max(hw)), 1, " MiB"), _mib(max(hw)) < 16)
        k = conns.get(pg, {})
        if k.get("rss_kb"):
            goal("RSS with %s idle conns < 64 MiB" % f"{k.get('n', 0):,}",
                 "%s MiB (%s bytes/conn)" % (fmt(_mib(k["rss_kb"]), 1), fmt(k.get("bytes_per_conn"))),
                 _mib(k["rss_kb"]) < 64 and k.get("opened") == k.get("n"))
        s = starts.get(pg, {})
        if s.get("listen_ms"):
            m = statistics.median(s["listen_ms"])
            goal("start-up to listening < 50 ms", fmt(m, 1, " ms"), m < 50)
        w("")

    # ---------------------------------------------------------------- notes
    bad = [r for r in runs if not r.get("valid")]
    if bad:
        w("<details><summary>%d invalid run(s) (retried or excluded)</summary>\n" % len(bad))
        for r in bad:
            why = " / ".join(x.strip() for x in str(r.get("why")).splitlines() if x.strip())
            w("- round %s %s %s attempt %s: %s" % (r["round"], r["scenario"], r["target"], r.get("attempt"),
                                                  why if len(why) <= 300 else why[:300] + " …"))
        w("\n</details>\n")
    fr = [r.get("foreign_cpu_pct") for r in runs if r.get("valid")]
    st = [r.get("steal_pct") for r in runs if r.get("valid")]
    if fr:
        w("Foreign CPU during valid runs (%% of one CPU): median %.0f, max %.0f; hypervisor steal: median %.1f%%, max %.1f%%.\n"
          % (statistics.median(fr), max(fr), statistics.median(st), max(st)))
    return "\n".join(out) + "\n"


def _ms(us):
    return None if us is None else us / 1000.0


def _mib(kb):
    return None if kb is None else kb / MIB


def _ms_list(xs):
    if not xs:
        return "—"
    return "%.1f (%.1f)" % (statistics.median(xs), min(xs))


if __name__ == "__main__":
    rep = summarize(sys.argv[1])
    if len(sys.argv) > 2:
        open(sys.argv[2], "w").write(rep)
    print(rep)
