//! Pod-network test: podgate in a real network namespace, as in a pod.
//!
//! A Kubernetes pod is one network namespace shared by its containers. This
//! test builds one: a namespace "pod" (loopback up) runs the app (a small
//! python3 HTTP server on 127.0.0.1:8000) and podgate as two processes, the
//! way an app container and the podgate sidecar share a network. A second
//! namespace "client" is joined to it by a veth pair with private test
//! addresses (10.213.N.0/30, which exist only inside these two namespaces).
//! From the client namespace the test checks that:
//!
//! 1. `GET http://<pod-ip>/` reaches the app through podgate on port 80;
//! 2. the app itself (127.0.0.1:8000 inside the pod) cannot be reached from
//!    outside: `<pod-ip>:8000` refuses;
//! 3. the admin port answers `GET /readyz` with 200 "ready";
//! 4. SIGTERM drains cleanly while clients keep sending: readiness turns 503
//!    at once, requests keep succeeding for the whole drain delay, a request
//!    in flight when the listener closes completes (with `Connection: close`),
//!    connections after the close are refused, no request fails in any other
//!    way, and podgate exits 0 within the drain delay plus a few seconds.
//!
//! The client side runs in this process: each client thread moves itself into
//! the client namespace with setns(2), so its sockets live there while the
//! rest of the test stays in the host namespace. Every namespace and process
//! the test makes is removed by a guard, also when an assertion fails.
//!
//! It needs root and `ip netns`. Where those are not available the test is
//! skipped with a `SKIPPED: ...` line on stderr (written past the test
//! harness's capture, so it is visible). Set `PODGATE_TEST_REQUIRE_NETNS=1`
//! (e.g. in CI, where it must run) to turn such a skip into a failure.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "pod_network/netns.rs"]
mod netns;

use netns::*;

const PODGATE: &str = env!("CARGO_BIN_EXE_podgate");
const NETNS_DIR: &str = "/var/run/netns";
const REQUIRE_ENV: &str = "PODGATE_TEST_REQUIRE_NETNS";

const PROXY_PORT: u16 = 80;
const ADMIN_PORT: u16 = 9901;
const APP_PORT: u16 = 8000;

/// PODGATE_DRAIN_DELAY for the test.
const DRAIN_DELAY: Duration = Duration::from_secs(2);
/// podgate must have exited this long after the drain delay ends.
const EXIT_GRACE: Duration = Duration::from_secs(3);
/// The slow request starts this long before the listener closes and takes
/// SLOW_MS in the app, so it is in flight across the close.
const SLOW_LEAD: Duration = Duration::from_millis(400);
const SLOW_MS: u64 = 1200;
/// Per-socket connect/read/write timeout of the test clients.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// Client loops stop by themselves after this, whatever happens.
const LOOP_LIMIT: Duration = Duration::from_secs(12);

/// The app: answers `/` with a greeting that names this run, and
/// `/slow?ms=N` after N milliseconds. HTTP/1.1 keep-alive without an idle
/// timeout, so podgate's pooled connections are never closed under it.
const APP_PY: &str = r#"
import sys, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from urllib.parse import urlparse, parse_qs
TOKEN = sys.argv[1]
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        u = urlparse(self.path)
        if u.path == "/slow":
            time.sleep(int(parse_qs(u.query).get("ms", ["1000"])[0]) / 1000.0)
            body = ("slow done " + TOKEN + "\n").encode()
        else:
            body = ("hello from the app " + TOKEN + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class S(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
srv = S(("127.0.0.1", int(sys.argv[2])), H)
print("app listening on 127.0.0.1:" + sys.argv[2], flush=True)
srv.serve_forever()
"#;

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 client on std sockets, with exact error classes

#[derive(Debug, Clone)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn connection_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

#[derive(Debug, Clone)]
enum Outcome {
    Ok(Resp),
    /// The connection was refused: nothing listens on the port.
    Refused,
    /// Anything else: reset, timeout, early close, malformed answer.
    Fail(String),
}

#[derive(Debug, Clone)]
struct Rec {
    start: Instant,
    end: Instant,
    outcome: Outcome,
    /// Sent on a kept-alive connection that had served a request before.
    reused: bool,
    /// A reused connection closed before any response byte and the request
    /// was sent again on a new connection (RFC 9112 §9.3.1); `outcome` is
    /// that of the retry.
    retried: bool,
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn send_request(
    s: &mut TcpStream,
    addr: SocketAddr,
    path: &str,
    keep_alive: bool,
) -> io::Result<()> {
    let conn = if keep_alive { "keep-alive" } else { "close" };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: podgate-pod-network-test\r\nConnection: {conn}\r\n\r\n"
    );
    s.write_all(req.as_bytes())
}

/// Why reading a response failed; `nothing` when not one byte arrived.
struct ReadErr {
    nothing: bool,
    what: String,
}

fn read_line(r: &mut impl BufRead, got_any: &mut bool) -> Result<String, ReadErr> {
    let mut buf = Vec::new();
    match r.read_until(b'\n', &mut buf) {
        Ok(0) => Err(ReadErr {
            nothing: !*got_any,
            what: "connection closed before the response was complete".into(),
        }),
        Ok(_) => {
            *got_any = true;
            if !buf.ends_with(b"\n") {
                return Err(ReadErr {
                    nothing: false,
                    what: "connection closed in the middle of a line".into(),
                });
            }
            Ok(String::from_utf8_lossy(&buf)
                .trim_end_matches(['\r', '\n'])
                .to_string())
        }
        Err(e) => Err(ReadErr {
            nothing: !*got_any && buf.is_empty(),
            what: format!("read failed: {e} ({:?})", e.kind()),
        }),
    }
}

fn read_exact_body(r: &mut impl BufRead, n: usize, body: &mut Vec<u8>) -> Result<(), ReadErr> {
    let start = body.len();
    body.resize(start + n, 0);
    r.read_exact(&mut body[start..]).map_err(|e| ReadErr {
        nothing: false,
        what: format!("reading the body failed: {e} ({:?})", e.kind()),
    })
}

fn read_response(r: &mut impl BufRead) -> Result<Resp, ReadErr> {
    let bad = |what: String| ReadErr {
        nothing: false,
        what,
    };
    let mut got_any = false;
    let status_line = read_line(r, &mut got_any)?;
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("bad status line {status_line:?}")));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| bad(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, &mut got_any)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = Resp {
        status,
        headers,
        body: String::new(),
    };
    let mut body = Vec::new();
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let line = read_line(r, &mut got_any)?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                while !read_line(r, &mut got_any)?.is_empty() {}
                break;
            }
            read_exact_body(r, size, &mut body)?;
            if !read_line(r, &mut got_any)?.is_empty() {
                return Err(bad("missing CRLF after a chunk".into()));
            }
        }
    } else if let Some(len) = resp.header("content-length") {
        let n: usize = len
            .parse()
            .map_err(|_| bad(format!("bad content-length {len:?}")))?;
        read_exact_body(r, n, &mut body)?;
    } else if resp.connection_close() {
        r.read_to_end(&mut body)
            .map_err(|e| bad(format!("reading the body failed: {e}")))?;
    } else {
        return Err(bad(
            "response without framing on a kept-alive connection".into()
        ));
    }
    resp.body = String::from_utf8_lossy(&body).into_owned();
    Ok(resp)
}

/// One request on a new connection (`Connection: close`).
fn fetch(addr: SocketAddr, path: &str) -> Outcome {
    let mut s = match connect(addr) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Outcome::Refused,
        Err(e) => return Outcome::Fail(format!("connect failed: {e} ({:?})", e.kind())),
    };
    if let Err(e) = send_request(&mut s, addr, path, false) {
        return Outcome::Fail(format!("sending the request failed: {e} ({:?})", e.kind()));
    }
    match read_response(&mut BufReader::new(s)) {
        Ok(r) => Outcome::Ok(r),
        Err(e) => Outcome::Fail(e.what),
    }
}

fn timed(f: impl FnOnce() -> Outcome) -> Rec {
    let start = Instant::now();
    let outcome = f();
    Rec {
        start,
        end: Instant::now(),
        outcome,
        reused: false,
        retried: false,
    }
}

/// Sends `path` on a kept-alive connection, opening one when needed.
fn ka_request(
    conn: &mut Option<BufReader<TcpStream>>,
    addr: SocketAddr,
    path: &str,
    stats: &mut KaStats,
) -> Rec {
    let start = Instant::now();
    let mut reused = false;
    if let Some(c) = conn.as_mut() {
        // As real clients do before reusing a pooled connection: if the
        // server has closed it while idle, open a new one.
        match idle_state(c) {
            Idle::Open => reused = true,
            Idle::Closed => {
                stats.closed_while_idle += 1;
                *conn = None;
            }
            Idle::Unexpected(what) => {
                *conn = None;
                return Rec {
                    start,
                    end: Instant::now(),
                    outcome: Outcome::Fail(what),
                    reused: true,
                    retried: false,
                };
            }
        }
    }
    let mut retried = false;
    let outcome = loop {
        if conn.is_none() {
            match connect(addr) {
                Ok(s) => *conn = Some(BufReader::new(s)),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break Outcome::Refused,
                Err(e) => break Outcome::Fail(format!("connect failed: {e} ({:?})", e.kind())),
            }
        }
        let c = conn.as_mut().expect("connection");
        let sent = send_request(c.get_mut(), addr, path, true);
        let result = match sent {
            Ok(()) => read_response(c),
            Err(e) => Err(ReadErr {
                nothing: true,
                what: format!("sending the request failed: {e} ({:?})", e.kind()),
            }),
        };
        match result {
            Ok(resp) => {
                if resp.connection_close() {
                    stats.connection_close += 1;
                    *conn = None;
                }
                break Outcome::Ok(resp);
            }
            Err(e) => {
                *conn = None;
                if e.nothing && reused && !retried {
                    // The keep-alive race: the server closed the idle
                    // connection as this request was on its way. Not one
                    // byte came back, so the request may be sent again.
                    stats.race_retries.push((start, e.what));
                    retried = true;
                    continue;
                }
                break Outcome::Fail(e.what);
            }
        }
    };
    Rec {
        start,
        end: Instant::now(),
        outcome,
        reused,
        retried,
    }
}

enum Idle {
    Open,
    Closed,
    Unexpected(String),
}

fn idle_state(c: &BufReader<TcpStream>) -> Idle {
    if !c.buffer().is_empty() {
        return Idle::Unexpected(
            "unsolicited bytes buffered on an idle keep-alive connection".into(),
        );
    }
    let s = c.get_ref();
    if s.set_nonblocking(true).is_err() {
        return Idle::Closed;
    }
    let mut b = [0u8; 1];
    let r = s.peek(&mut b);
    let _ = s.set_nonblocking(false);
    match r {
        Ok(0) => Idle::Closed,
        Ok(_) => Idle::Unexpected("unsolicited bytes on an idle keep-alive connection".into()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Idle::Open,
        Err(_) => Idle::Closed,
    }
}

#[derive(Debug, Default)]
struct KaStats {
    closed_while_idle: usize,
    connection_close: usize,
    /// When each retried request started, and what the first try met.
    race_retries: Vec<(Instant, String)>,
}

// ---------------------------------------------------------------------------
// Timeline helpers

fn rel(t: Instant, t0: Instant) -> f64 {
    if t >= t0 {
        (t - t0).as_secs_f64()
    } else {
        -(t0 - t).as_secs_f64()
    }
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Ok(r) => format!("{} {:?}", r.status, r.body.trim_end()),
        Outcome::Refused => "connection refused".into(),
        Outcome::Fail(e) => format!("FAILED: {e}"),
    }
}

// ---------------------------------------------------------------------------
// The test

#[test]
fn pod_network() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { sys::geteuid() } != 0 {
        return skip("not running as root");
    }
    match Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {}
        Ok(s) => return skip(&format!("`ip -V` exited with {s}")),
        Err(e) => {
            return skip(&format!(
                "the `ip` command (iproute2) is not available: {e}"
            ))
        }
    }
    let python = match Command::new("python3").arg("--version").output() {
        Ok(o) if o.status.success() => "python3",
        _ => return skip("python3 not found; it runs the app inside the pod"),
    };

    let mut pod = Pod::new();
    if let Err(e) = std::fs::create_dir_all(&pod.dir) {
        panic!("cannot create {}: {e}", pod.dir.display());
    }
    if let Err(e) = pod.build_network() {
        drop(pod);
        return skip(&e);
    }
    let (pod_ns, cli_ns) = (pod.pod_ns.clone(), pod.cli_ns.clone());
    eprintln!(
        "pod-network: pod netns {pod_ns} (eth0 {}/30), client netns {cli_ns} (eth0 {}/30)",
        pod.pod_ip, pod.cli_ip
    );

    // The two "containers" of the pod.
    let token = format!("run-{}", pod.pod_ns);
    let app_port = APP_PORT.to_string();
    pod.app = Some(pod.spawn_in_pod("app", python, &["-u", "-c", APP_PY, &token, &app_port], &[]));
    let drain = format!("{}ms", DRAIN_DELAY.as_millis());
    pod.podgate = Some(pod.spawn_in_pod(
        "podgate",
        PODGATE,
        &[],
        &[
            ("PODGATE_DRAIN_DELAY", drain.as_str()),
            ("PODGATE_SHUTDOWN_TIMEOUT", "5s"),
            ("PODGATE_LOG_FORMAT", "text"),
            ("PODGATE_ACCESS_LOG", "false"),
            ("PODGATE_APP_PORT", app_port.as_str()),
        ],
    ));
    let podgate_pid = pod.podgate.as_ref().map(|c| c.id()).expect("podgate child");
    check_process_in_netns(podgate_pid, Path::new(PODGATE), &pod_ns);

    let proxy = pod.addr(PROXY_PORT);
    let admin = pod.addr(ADMIN_PORT);
    let app_outside = pod.addr(APP_PORT);

    // (3) first, as readiness gates the rest: poll /readyz from the client.
    let ready_wait = Instant::now();
    let ready = run_in_netns(&cli_ns, move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let o = fetch(admin, "/readyz");
            if matches!(&o, Outcome::Ok(r) if r.status == 200) || Instant::now() >= deadline {
                return o;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    match &ready {
        Outcome::Ok(r) if r.status == 200 && r.body == "ready\n" => {}
        o => panic!(
            "(3) GET http://{admin}/readyz from the client namespace did not answer 200 \"ready\" within 10s: {}\n{}",
            describe(o),
            pod.logs()
        ),
    }
    eprintln!(
        "  (3) GET http://{admin}/readyz from {cli_ns}: 200 \"ready\" after {:.2}s",
        ready_wait.elapsed().as_secs_f64()
    );
    // The app must be running in the same namespace (as its container would).
    let app_pid = pod.app.as_ref().map(|c| c.id()).expect("app child");
    let app_exe = std::fs::read_link(format!("/proc/{app_pid}/exe")).expect("app exe");
    check_process_in_netns(app_pid, &app_exe, &pod_ns);

    // (1) Through podgate on port 80.
    let first = run_in_netns(&cli_ns, move || fetch(proxy, "/"));
    let want_body = format!("hello from the app {token}\n");
    match &first {
        Outcome::Ok(r) if r.status == 200 && r.body == want_body && r.header("x-request-id").is_some() => {}
        o => panic!(
            "(1) GET http://{proxy}/ from the client namespace: want 200 {want_body:?} with an x-request-id from podgate, got {o:?}\n{}",
            pod.logs()
        ),
    }
    eprintln!(
        "  (1) GET http://{proxy}/ from {cli_ns}: {}",
        describe(&first)
    );

    // (2) The app listens on the pod's loopback only.
    let inside = run_in_netns(&pod_ns, || {
        connect(SocketAddr::from((Ipv4Addr::LOCALHOST, APP_PORT))).map(|_| ())
    });
    assert!(
        inside.is_ok(),
        "(2) the app does not answer on 127.0.0.1:{APP_PORT} inside the pod: {inside:?}"
    );
    let outside = run_in_netns(&cli_ns, move || connect(app_outside).map(|_| ()));
    match &outside {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        other => panic!("(2) connecting to the app at {app_outside} from the client namespace must be refused, got {other:?}"),
    }
    eprintln!(
        "  (2) app: 127.0.0.1:{APP_PORT} answers inside {pod_ns}; {app_outside} from {cli_ns}: connection refused"
    );

    // (4) Drain under load.
    let stop = Arc::new(AtomicBool::new(false));
    let limit = Instant::now() + LOOP_LIMIT;
    let running = move |stop: &AtomicBool| !stop.load(Ordering::Relaxed) && Instant::now() < limit;

    let s = stop.clone();
    let newconn = spawn_in_netns(&cli_ns, "newconn-client", move || {
        let mut recs = Vec::new();
        while running(&s) {
            recs.push(timed(|| fetch(proxy, "/")));
            thread::sleep(Duration::from_millis(2));
        }
        recs
    });
    let s = stop.clone();
    let keepalive = spawn_in_netns(&cli_ns, "keepalive-client", move || {
        let mut recs = Vec::new();
        let mut stats = KaStats::default();
        let mut conn = None;
        while running(&s) {
            recs.push(ka_request(&mut conn, proxy, "/", &mut stats));
            thread::sleep(Duration::from_millis(5));
        }
        (recs, stats)
    });
    let s = stop.clone();
    let readyz = spawn_in_netns(&cli_ns, "readyz-poller", move || {
        let mut recs = Vec::new();
        while running(&s) {
            recs.push(timed(|| fetch(admin, "/readyz")));
            thread::sleep(Duration::from_millis(25));
        }
        recs
    });

    thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
    let rc = unsafe { sys::kill(podgate_pid as i32, sys::SIGTERM) };
    assert_eq!(rc, 0, "kill(SIGTERM): {}", io::Error::last_os_error());

    let slow_path = format!("/slow?ms={SLOW_MS}");
    let slow = spawn_in_netns(&cli_ns, "slow-client", move || {
        let at = t0 + DRAIN_DELAY - SLOW_LEAD;
        thread::sleep(at.saturating_duration_since(Instant::now()));
        let mut stats = KaStats::default();
        let mut conn = None;
        ka_request(&mut conn, proxy, &slow_path, &mut stats)
    });

    // Wait (bounded) for podgate to exit.
    let exit_deadline = t0 + DRAIN_DELAY + EXIT_GRACE;
    let mut exit: Option<(Instant, ExitStatus)> = None;
    while exit.is_none() && Instant::now() < exit_deadline + Duration::from_millis(500) {
        let child = pod.podgate.as_mut().expect("podgate child");
        match child.try_wait() {
            Ok(Some(status)) => exit = Some((Instant::now(), status)),
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for podgate: {e}"),
        }
    }
    // Let the clients meet the closed port for a moment, then stop them.
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let newconn: Vec<Rec> = join("newconn", newconn);
    let (keepalive, ka_stats): (Vec<Rec>, KaStats) = join("keepalive", keepalive);
    let readyz: Vec<Rec> = join("readyz", readyz);
    let slow: Rec = join("slow", slow);

    // ---- Analysis: collect every problem, then report them all at once.
    let close_at = t0 + DRAIN_DELAY; // podgate cannot close the listener earlier
    let mut problems: Vec<String> = Vec::new();
    let r = |t: Instant| rel(t, t0);

    // readiness
    let last_before = readyz.iter().rev().find(|x| x.start < t0);
    match last_before.map(|x| &x.outcome) {
        Some(Outcome::Ok(resp)) if resp.status == 200 && resp.body == "ready\n" => {}
        o => problems.push(format!(
            "readyz: last probe before SIGTERM was not 200 \"ready\": {o:?}"
        )),
    }
    let mut first_503: Option<Instant> = None;
    let mut admin_closed: Option<Instant> = None;
    let mut admin_late_errors = Vec::new();
    for x in readyz.iter().filter(|x| x.start >= t0) {
        match &x.outcome {
            Outcome::Ok(resp)
                if resp.status == 503 && resp.body.starts_with("not ready: shutting down") =>
            {
                first_503.get_or_insert(x.end);
            }
            Outcome::Ok(resp)
                if x.start < t0 + Duration::from_millis(100) && resp.status == 200 => {}
            Outcome::Ok(resp) => problems.push(format!(
                "readyz at +{:.3}s: want 503 \"not ready: shutting down\", got {} {:?}",
                r(x.start),
                resp.status,
                resp.body
            )),
            Outcome::Refused if x.end >= close_at => {
                admin_closed.get_or_insert(x.end);
            }
            // Once the drain is over the admin listener closes too; what a
            // probe meets while it goes is not part of the contract.
            Outcome::Fail(e) if x.start >= close_at => {
                admin_late_errors.push(format!("+{:.3}s {e}", r(x.start)))
            }
            o => problems.push(format!(
                "readyz at +{:.3}s during the drain delay: {}",
                r(x.start),
                describe(o)
            )),
        }
    }
    let in_delay_503 = readyz
        .iter()
        .filter(|x| x.start >= t0 && x.end < close_at)
        .filter(|x| matches!(&x.outcome, Outcome::Ok(resp) if resp.status == 503))
        .count();
    if in_delay_503 == 0 {
        problems.push("readyz never answered 503 during the drain delay".into());
    }

    // the request loops
    let mut check_loop = |name: &str,
                          recs: &[Rec]|
     -> (usize, usize, usize, Option<f64>, Option<f64>) {
        let mut ok = (0, 0, 0); // before SIGTERM, during the delay, after
        let mut first_refused = None;
        let mut last_ok_start = None;
        for x in recs {
            match &x.outcome {
                Outcome::Ok(resp) => {
                    if resp.status != 200 || resp.body != want_body {
                        problems.push(format!(
                            "{name}: request at +{:.3}s: want 200 {want_body:?}, got {} {:?}",
                            r(x.start),
                            resp.status,
                            resp.body
                        ));
                    }
                    if x.start < t0 {
                        ok.0 += 1;
                    } else if x.start < close_at {
                        ok.1 += 1;
                    } else {
                        ok.2 += 1;
                    }
                    last_ok_start = Some(r(x.start));
                }
                Outcome::Refused => {
                    if x.end < close_at {
                        problems.push(format!(
                            "{name}: connection refused at +{:.3}s, before the drain delay ended (+{:.3}s)",
                            r(x.end),
                            r(close_at)
                        ));
                    }
                    first_refused.get_or_insert(r(x.end));
                }
                Outcome::Fail(e) => problems.push(format!(
                    "{name}: request started at +{:.3}s (reused connection: {}, retried: {}) failed after {:.3}s: {e}",
                    r(x.start),
                    x.reused,
                    x.retried,
                    (x.end - x.start).as_secs_f64()
                )),
            }
        }
        if ok.0 == 0 {
            problems.push(format!("{name}: no successful request before SIGTERM"));
        }
        let late_ok = recs.iter().any(|x| {
            matches!(x.outcome, Outcome::Ok(_))
                && x.start >= close_at - Duration::from_millis(300)
                && x.start < close_at
        });
        if !late_ok {
            problems.push(format!(
                "{name}: no successful request in the last 300ms of the drain delay (podgate must keep serving)"
            ));
        }
        if first_refused.is_none() {
            problems.push(format!(
                "{name}: never saw the listener closed (no refused connection): the test did not exercise the close"
            ));
        }
        (ok.0, ok.1, ok.2, last_ok_start, first_refused)
    };
    let nc = check_loop("new-connection client", &newconn);
    let ka = check_loop("keep-alive client", &keepalive);
    let ka_reused_in_delay = keepalive
        .iter()
        .filter(|x| {
            x.reused && x.start >= t0 && x.start < close_at && matches!(x.outcome, Outcome::Ok(_))
        })
        .count();

    // podgate closes idle keep-alive connections only when the listener
    // closes; a retry earlier would hide a connection dropped mid-request.
    let race_slack = Duration::from_millis(50);
    for (at, what) in &ka_stats.race_retries {
        if *at < close_at - race_slack {
            problems.push(format!(
                "keep-alive client: a reused connection was closed under a request at +{:.3}s, before the listener closed (+{:.3}s): {what}",
                r(*at),
                r(close_at)
            ));
        }
    }
    let retries: Vec<String> = ka_stats
        .race_retries
        .iter()
        .map(|(at, what)| format!("+{:.3}s {what}", r(*at)))
        .collect();

    // the request in flight across the close
    let slow_want = format!("slow done {token}\n");
    match &slow.outcome {
        Outcome::Ok(resp) if resp.status == 200 && resp.body == slow_want && resp.connection_close() => {}
        o => problems.push(format!(
            "slow request (started +{:.3}s, in flight when the listener closed): want 200 {slow_want:?} with Connection: close, got {o:?}",
            r(slow.start)
        )),
    }
    if slow.start >= close_at || slow.end <= close_at {
        problems.push(format!(
            "slow request was not in flight across the close (+{:.3}s .. +{:.3}s)",
            r(slow.start),
            r(slow.end)
        ));
    }

    // podgate's exit
    match exit {
        Some((at, status)) => {
            if !status.success() {
                problems.push(format!("podgate exited with {status}, want 0"));
            }
            if at > exit_deadline {
                problems.push(format!(
                    "podgate exited at +{:.3}s, later than drain delay + {}s",
                    r(at),
                    EXIT_GRACE.as_secs()
                ));
            }
        }
        None => problems.push(format!(
            "podgate had not exited {:.1}s after SIGTERM",
            rel(exit_deadline, t0) + 0.5
        )),
    }

    // ---- Report.
    let fmt_opt = |v: Option<f64>| v.map_or("never".to_string(), |v| format!("+{v:.3}s"));
    eprintln!(
        "  (4) SIGTERM to podgate (pid {podgate_pid}) at t=0, drain delay {:.1}s:",
        DRAIN_DELAY.as_secs_f64()
    );
    eprintln!(
        "      readyz: last before SIGTERM {}, first 503 at {}, {in_delay_503} x 503 during the delay, admin refused from {}{}",
        last_before.map_or("none".into(), |x| describe(&x.outcome)),
        fmt_opt(first_503.map(r)),
        fmt_opt(admin_closed.map(r)),
        if admin_late_errors.is_empty() {
            String::new()
        } else {
            format!(", errors after the drain (tolerated): {admin_late_errors:?}")
        }
    );
    eprintln!(
        "      new-connection client: {} requests; ok {} before SIGTERM, {} during the delay, {} after; last ok started {}, refused from {} ({} refused); failed {}",
        newconn.len(),
        nc.0,
        nc.1,
        nc.2,
        fmt_opt(nc.3),
        fmt_opt(nc.4),
        newconn.iter().filter(|x| matches!(x.outcome, Outcome::Refused)).count(),
        newconn.iter().filter(|x| matches!(x.outcome, Outcome::Fail(_))).count(),
    );
    eprintln!(
        "      keep-alive client: {} requests; ok {} before SIGTERM, {} during the delay ({ka_reused_in_delay} on a reused connection), {} after; last ok started {}, refused from {}; failed {}; Connection: close seen {}, closed while idle {}, race retries {} {:?}",
        keepalive.len(),
        ka.0,
        ka.1,
        ka.2,
        fmt_opt(ka.3),
        fmt_opt(ka.4),
        keepalive.iter().filter(|x| matches!(x.outcome, Outcome::Fail(_))).count(),
        ka_stats.connection_close,
        ka_stats.closed_while_idle,
        retries.len(),
        retries,
    );
    eprintln!(
        "      slow request: +{:.3}s .. +{:.3}s: {}{}",
        r(slow.start),
        r(slow.end),
        describe(&slow.outcome),
        match &slow.outcome {
            Outcome::Ok(resp) => format!(
                " (connection: {})",
                resp.header("connection").unwrap_or("-")
            ),
            _ => String::new(),
        }
    );
    eprintln!(
        "      podgate exit: {}",
        exit.map_or("did not exit".into(), |(at, s)| format!(
            "{s} at +{:.3}s",
            r(at)
        ))
    );

    let logs = pod.logs();
    // Cleanup, then check that it left nothing behind.
    drop(pod);
    for ns in [&pod_ns, &cli_ns] {
        if netns_path(ns).exists() {
            problems.push(format!("cleanup: namespace {ns} still exists"));
        }
    }
    if Path::new(&format!("/proc/{podgate_pid}")).exists()
        && std::fs::read_link(format!("/proc/{podgate_pid}/exe"))
            .ok()
            .as_deref()
            == Some(Path::new(PODGATE))
    {
        problems.push(format!("cleanup: podgate (pid {podgate_pid}) still runs"));
    }
    eprintln!("  cleanup: namespaces {pod_ns} and {cli_ns} deleted, app and podgate gone");

    assert!(
        problems.is_empty(),
        "pod-network drain problems:\n  - {}\n{logs}",
        problems.join("\n  - ")
    );
    eprintln!("{logs}");
}
