//! Hostile clients: malformed and smuggling requests over raw sockets, slow
//! and stalled clients, connection floods. For every case the question is the
//! same: does the client get a clean refusal, and does the app only ever see
//! clean, unambiguous requests — never a second, smuggled one?

#[path = "attacks/cases.rs"]
mod cases;
mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cases::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the recording app answers to every complete request.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Tests that count file descriptors or hold many sockets run alone; the
/// others share. (All tests of this binary run in one process.)
static FD_GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A head the app can only read one way: CRLF lines, an origin-form request
/// line in HTTP/1.1, token names, values without CTLs, one framing, one Host.
fn unambiguous_head(head: &str) -> Result<(), String> {
    let body = head
        .strip_suffix("\r\n\r\n")
        .ok_or_else(|| "head does not end in CRLF CRLF".to_string())?;
    if body.replace("\r\n", "").contains(['\r', '\n']) {
        return Err("bare CR or LF in head".into());
    }
    let mut lines = body.split("\r\n");
    let line = lines.next().unwrap_or("");
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 3
        || parts[0].is_empty()
        || !parts[0].bytes().all(is_tchar)
        || !parts[1].starts_with('/')
        || parts[1].bytes().any(|b| b <= b' ' || b == 0x7f)
        || parts[2] != "HTTP/1.1"
    {
        return Err(format!("request line {line:?}"));
    }
    for l in lines {
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| format!("header line without colon {l:?}"))?;
        if k.is_empty() || !k.bytes().all(is_tchar) {
            return Err(format!("header name {k:?}"));
        }
        if v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(format!("control byte in value of {k}"));
        }
    }
    let cl = header_values(head, "content-length");
    let te = header_values(head, "transfer-encoding");
    if !cl.is_empty() && !te.is_empty() {
        return Err(format!(
            "both Content-Length {cl:?} and Transfer-Encoding {te:?}"
        ));
    }
    if cl.len() > 1
        || cl
            .iter()
            .any(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("Content-Length {cl:?}"));
    }
    if te.len() > 1 || te.iter().any(|v| !v.eq_ignore_ascii_case("chunked")) {
        return Err(format!("Transfer-Encoding {te:?}"));
    }
    if header_values(head, "host").len() != 1 {
        return Err(format!("Host {:?}", header_values(head, "host")));
    }
    if head.to_ascii_lowercase().contains("smuggled") {
        return Err("smuggled request in the head".into());
    }
    Ok(())
}

/// Sends `bytes` (while reading, so a peer that answers early and closes does
/// not block the write) and reads until the peer closes or `limit` passes.
/// Returns what was read and, if the peer closed, when.
async fn exchange(addr: SocketAddr, bytes: &[u8], limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let s = within(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect");
    let (mut r, mut w) = s.into_split();
    let data = bytes.to_vec();
    let writer = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), w.write_all(&data)).await;
        // Keep the write half open: a half-close would change the meaning of
        // an unfinished request. Hand it back so it lives as long as reading.
        w
    });
    let t = Instant::now();
    let mut out = Vec::new();
    let mut closed = None;
    let mut tmp = vec![0u8; 65536];
    while t.elapsed() < limit {
        match tokio::time::timeout(limit.saturating_sub(t.elapsed()), r.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = Some(t.elapsed());
                break;
            }
            Ok(Ok(n)) => out.extend_from_slice(&tmp[..n]),
            Err(_) => break,
        }
    }
    let w = tokio::time::timeout(Duration::from_secs(6), writer).await;
    drop(w);
    (out, closed)
}

/// Status codes of every response in a raw byte stream (by their status line).
fn statuses(raw: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(raw);
    let mut v = Vec::new();
    let mut rest = text.as_ref();
    while let Some(i) = rest.find("HTTP/1.") {
        let line = &rest[i..];
        let code = line
            .get(9..12)
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or(0);
        v.push(code);
        rest = &rest[i + 7..];
    }
    v
}

#[derive(Debug)]
struct Outcome {
    name: &'static str,
    statuses: Vec<u16>,
    closed: Option<Duration>,
    app: Vec<Received>,
    response: String,
}

async fn run_case(c: &Case) -> Outcome {
    let (app, log) = spawn_raw_app(OK, false).await;
    let pg = start_podgate(
        app,
        &[
            ("HEADER_TIMEOUT", "2s"),
            ("BODY_TIMEOUT", "1s"),
            ("IDLE_TIMEOUT", "3s"),
            ("UPSTREAM_TIMEOUT", "3s"),
            ("ACCESS_LOG", "false"),
        ],
    )
    .await;
    pg.running.health.mark_seen();
    let (resp, closed) = exchange(pg.addr, &c.bytes, Duration::from_secs(5)).await;
    // The app logs an incomplete request once podgate drops its connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let app_log = log.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&resp);
    Outcome {
        name: c.name,
        statuses: statuses(&resp),
        closed,
        app: app_log,
        response: text.chars().take(300).collect(),
    }
}

fn judge(c: &Case, o: &Outcome) -> Result<(), String> {
    let complete: Vec<&Received> = o.app.iter().filter(|r| r.complete).collect();
    for r in &o.app {
        if r.head.to_ascii_lowercase().contains("smuggled") {
            return Err(format!("the app received a smuggled request: {:?}", r.head));
        }
    }
    for r in &complete {
        unambiguous_head(&r.head)
            .map_err(|e| format!("ambiguous request reached the app ({e}): {:?}", r.head))?;
    }
    let any_2xx = o.statuses.iter().any(|s| (200..300).contains(s));
    let first = o.statuses.first().copied().unwrap_or(0);
    let refused = (400..500).contains(&first) || first == 501;
    let reject = || -> Result<(), String> {
        if !o.app.is_empty() {
            return Err(format!("expected a refusal, but the app saw {:?}", o.app));
        }
        if !refused || any_2xx {
            return Err(format!("expected one 4xx, got {:?}", o.statuses));
        }
        Ok(())
    };
    let clean = |n: usize, body: &[u8], close: bool| -> Result<(), String> {
        if o.app.len() != n || complete.len() != n {
            return Err(format!(
                "expected {n} complete request(s) at the app, got {:?}",
                o.app
            ));
        }
        if complete[0].body != body {
            return Err(format!(
                "app got body {:?}, expected {:?}",
                String::from_utf8_lossy(&complete[0].body),
                String::from_utf8_lossy(body)
            ));
        }
        if let Some(check) = c.head_check {
            check(&complete[0].head)?;
        }
        if o.statuses != vec![200; n] {
            return Err(format!("expected {n} × 200, got {:?}", o.statuses));
        }
        if close && o.closed.is_none_or(|t| t > Duration::from_millis(1500)) {
            return Err(format!(
                "connection not closed after the answer (closed: {:?})",
                o.closed
            ));
        }
        Ok(())
    };
    let fault = || -> Result<(), String> {
        if !complete.is_empty() {
            return Err(format!(
                "a broken body reached the app as complete: {complete:?}"
            ));
        }
        if o.app.len() > 1 {
            return Err(format!("several requests reached the app: {:?}", o.app));
        }
        if any_2xx || o.statuses.len() > 1 {
            return Err(format!("expected no 2xx, got {:?}", o.statuses));
        }
        if o.closed.is_none() {
            return Err("connection left open after a framing error".into());
        }
        Ok(())
    };
    match c.expect {
        Expect::Reject => reject(),
        Expect::Fault => fault(),
        Expect::Drop => {
            if !o.app.is_empty() {
                return Err(format!("expected nothing at the app, got {:?}", o.app));
            }
            if any_2xx || (first != 0 && !refused && first != 505) {
                return Err(format!(
                    "expected a refusal or a close, got {:?}",
                    o.statuses
                ));
            }
            if o.closed.is_none() {
                return Err("connection left open".into());
            }
            Ok(())
        }
        Expect::Clean { n, body, close } => clean(n, body, close),
        Expect::RejectOrClean { body } => {
            if o.app.is_empty() {
                reject()
            } else {
                clean(1, body, false)
            }
        }
        Expect::FaultOrClean { body } => {
            if complete.is_empty() {
                fault()
            } else {
                clean(1, body, false)
            }
        }
    }
}

/// The corpus, all cases at once (each against its own podgate and app).
#[tokio::test]
async fn malformed_and_smuggling_requests() {
    // Boxed: the test future is large in debug builds.
    Box::pin(malformed_and_smuggling_requests_body()).await
}

async fn malformed_and_smuggling_requests_body() {
    let _g = FD_GATE.read().await;
    let cases = corpus();
    let outcomes = within(
        Duration::from_secs(30),
        futures_util::future::join_all(cases.iter().map(run_case)),
    )
    .await;
    let mut failures = Vec::new();
    for (c, o) in cases.iter().zip(&outcomes) {
        let verdict = judge(c, o);
        eprintln!(
            "{:<70} {:<6} statuses={:?} closed={:?} app={:?}",
            o.name,
            if verdict.is_ok() { "ok" } else { "FAIL" },
            o.statuses,
            o.closed.map(|d| d.as_millis()),
            o.app
                .iter()
                .map(|r| format!(
                    "{}{}",
                    r.head.lines().next().unwrap_or(""),
                    if r.complete { "" } else { " (incomplete)" }
                ))
                .collect::<Vec<_>>()
        );
        if let Err(e) = verdict {
            failures.push(format!(
                "{}: {e}\n    sent {:?}\n    got {:?}",
                o.name,
                String::from_utf8_lossy(&c.bytes)
                    .chars()
                    .take(200)
                    .collect::<String>(),
                o.response
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// CONNECT is refused. Whatever the client sent after the CONNECT head was
/// meant for a tunnel, not for HTTP: it must never be read as a request.
#[tokio::test]

async fn connect_is_refused_and_its_payload_never_reaches_the_app() {
    // Boxed: the test future is large in debug builds.
    Box::pin(connect_is_refused_and_its_payload_never_reaches_the_app_body()).await
}

async fn connect_is_refused_and_its_payload_never_reaches_the_app_body() {
    let _g = FD_GATE.read().await;
    let (app, log) = spawn_raw_app(OK, false).await;
    let pg = start_podgate(app, &[("IDLE_TIMEOUT", "5s")]).await;
    pg.running.health.mark_seen();
    let req = format!("CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n{SMUGGLED}");
    let (resp, closed) = exchange(pg.addr, req.as_bytes(), Duration::from_secs(3)).await;
    sync_with_app(pg.addr, &log).await;
    let seen = log.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&resp);
    assert!(
        seen.is_empty(),
        "the app received the tunnel payload as a request: {seen:?}; client got {text:?}"
    );
    assert_eq!(statuses(&resp).len(), 1, "one answer only: {text:?}");
    assert!(
        (400..500).contains(&status_of(&text)) || status_of(&text) == 501,
        "{text:?}"
    );
    assert_eq!(
        header_of(&text, "connection").as_deref(),
        Some("close"),
        "{text:?}"
    );
    assert!(
        closed.is_some_and(|t| t < Duration::from_secs(1)),
        "closed after {closed:?}"
    );
}

/// Trailers may not smuggle framing or routing fields to the app.
#[tokio::test]
async fn trailers_cannot_carry_framing_or_host_to_the_app() {
    // Boxed: the test future is large in debug builds.
    Box::pin(trailers_cannot_carry_framing_or_host_to_the_app_body()).await
}

async fn trailers_cannot_carry_framing_or_host_to_the_app_body() {
    let _g = FD_GATE.read().await;
    let (app, taps) = spawn_tap_app().await;
    let pg = start_podgate(app, &[]).await;
    pg.running.health.mark_seen();
    let req = "POST /t HTTP/1.1\r\nHost: h\r\nTrailer: X-Ok, Content-Length, Transfer-Encoding, Host\r\nTE: trailers\r\n\
               Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
               5\r\nhello\r\n0\r\nX-Ok: 1\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\nHost: evil\r\n\r\n";
    let (resp, _) = exchange(pg.addr, req.as_bytes(), Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&resp);
    assert_eq!(status_of(&text), 200, "{text}");
    let taps = taps.lock().unwrap().clone();
    assert_eq!(taps.len(), 1, "{taps:?}");
    let got = String::from_utf8_lossy(&taps[0]).into_owned();
    let (head, rest) = got.split_once("\r\n\r\n").expect("a head");
    assert!(
        unambiguous_head(&format!("{head}\r\n\r\n")).is_ok(),
        "{head}"
    );
    let trailer_part = rest
        .split_once("\r\n0\r\n")
        .map(|x| x.1)
        .unwrap_or(rest)
        .to_ascii_lowercase();
    for bad in ["content-length", "transfer-encoding", "host:"] {
        assert!(
            !trailer_part.contains(bad),
            "{bad} reached the app in the trailers: {rest:?}"
        );
    }
}

/// An app that records the raw bytes of each connection: reads until a
/// chunked body's trailer section ends (or 2 s pass), then answers and closes.
async fn spawn_tap_app() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let taps = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let t2 = taps.clone();
    tokio::spawn(async move {
        for _ in 0..1000 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let taps = t2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let t = Instant::now();
                let mut tmp = [0u8; 4096];
                while t.elapsed() < Duration::from_secs(2) {
                    if let Some(p) = find(&buf, b"\r\n0\r\n") {
                        if find(&buf[p + 3..], b"\r\n\r\n").is_some() {
                            break;
                        }
                    }
                    match tokio::time::timeout(Duration::from_millis(500), s.read(&mut tmp)).await {
                        Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                        Ok(_) => break,
                        Err(_) => continue,
                    }
                }
                if buf.is_empty() {
                    return;
                }
                taps.lock().unwrap().push(buf);
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, taps)
}

/// One plain request through podgate: its status and how long it took.
async fn probe(addr: SocketAddr) -> (u16, Duration) {
    let t = Instant::now();
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        raw(
            addr,
            b"GET /probe HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        ),
    )
    .await;
    let status = match got {
        Ok(Ok(b)) => status_of(&String::from_utf8_lossy(&b)),
        _ => 0,
    };
    (status, t.elapsed())
}

/// 50 clients dribbling their heads a byte at a time are all cut off at the
/// header timeout, while a normal client is served throughout.
#[tokio::test]
async fn slowloris_connections_are_cut_off_and_others_still_served() {
    // Boxed: the test future is large in debug builds.
    Box::pin(slowloris_connections_are_cut_off_and_others_still_served_body()).await
}

async fn slowloris_connections_are_cut_off_and_others_still_served_body() {
    let _g = FD_GATE.read().await;
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[("HEADER_TIMEOUT", "1s"), ("ACCESS_LOG", "false")]).await;
    wait_ready(&pg).await;
    let addr = pg.addr;
    let started = Instant::now();
    let lorises: Vec<_> = (0..50)
        .map(|i| {
            tokio::spawn(async move {
                let s = TcpStream::connect(addr).await.expect("connect");
                let t = Instant::now();
                let (mut r, mut w) = s.into_split();
                let head = format!("GET /loris/{i} HTTP/1.1\r\nHost: h\r\nX-Slow: ");
                if w.write_all(head.as_bytes()).await.is_err() {
                    return (t.elapsed(), Vec::new());
                }
                let mut got = Vec::new();
                let mut tmp = [0u8; 1024];
                // One byte every 100 ms, for at most 6 s.
                for _ in 0..60 {
                    tokio::select! {
                        r = r.read(&mut tmp) => match r {
                            Ok(0) | Err(_) => return (t.elapsed(), got),
                            Ok(n) => got.extend_from_slice(&tmp[..n]),
                        },
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {
                            if w.write_all(b"a").await.is_err() {
                                return (t.elapsed(), got);
                            }
                        }
                    }
                }
                (Duration::MAX, got)
            })
        })
        .collect();
    // Meanwhile, a normal client every 200 ms.
    let mut probes = Vec::new();
    while started.elapsed() < Duration::from_millis(2500) {
        probes.push(probe(addr).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut closed_after = Vec::new();
    for l in lorises {
        let (t, got) = within(Duration::from_secs(10), l)
            .await
            .expect("loris task");
        let text = String::from_utf8_lossy(&got);
        assert!(
            status_of(&text) == 0 || status_of(&text) >= 400,
            "a slow head was served: {text}"
        );
        closed_after.push(t);
    }
    let slowest = closed_after.iter().max().copied().unwrap_or_default();
    let fastest = closed_after.iter().min().copied().unwrap_or_default();
    eprintln!("slowloris closed after {fastest:?}..{slowest:?}; probes {probes:?}");
    assert!(
        fastest >= Duration::from_millis(900),
        "closed before the header timeout: {fastest:?}"
    );
    assert!(
        slowest <= Duration::from_secs(3),
        "a slow head lived {slowest:?}"
    );
    assert!(probes.len() >= 5, "{probes:?}");
    for (status, took) in &probes {
        assert_eq!(*status, 200, "normal client during the attack: {probes:?}");
        assert!(
            *took < Duration::from_secs(1),
            "normal client slowed down: {probes:?}"
        );
    }
}

/// A client that stops sending its body half-way: 408 (or a close), and the
/// app sees the upload as incomplete, never as a complete request.
#[tokio::test]
async fn stalled_upload_is_aborted_and_the_app_sees_it_incomplete() {
    // Boxed: the test future is large in debug builds.
    Box::pin(stalled_upload_is_aborted_and_the_app_sees_it_incomplete_body()).await
}

async fn stalled_upload_is_aborted_and_the_app_sees_it_incomplete_body() {
    let _g = FD_GATE.read().await;
    let (app, log) = spawn_raw_app(OK, false).await;
    let pg = start_podgate(app, &[("BODY_TIMEOUT", "500ms")]).await;
    pg.running.health.mark_seen();
    let cases: [(&str, &[u8]); 3] = [
        ("POST, Content-Length", b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789"),
        ("POST, chunked", b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n"),
        // Idempotent and small: podgate buffers it for a retry first.
        ("PUT, Content-Length", b"PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789"),
    ];
    for (name, bytes) in cases {
        log.lock().unwrap().clear();
        let (resp, closed) = exchange(pg.addr, bytes, Duration::from_secs(4)).await;
        let text = String::from_utf8_lossy(&resp);
        let closed = closed.unwrap_or_else(|| panic!("{name}: connection left open: {text:?}"));
        assert!(
            closed >= Duration::from_millis(400) && closed < Duration::from_millis(2500),
            "{name}: closed after {closed:?}"
        );
        let status = status_of(&text);
        assert!(status == 408 || status == 0, "{name}: {text:?}");
        if status == 408 {
            assert!(
                text.ends_with("client stopped sending the request body\n"),
                "{name}: {text:?}"
            );
            assert_eq!(
                header_of(&text, "connection").as_deref(),
                Some("close"),
                "{name}"
            );
        }
        // The app logs the request once its connection is dropped.
        let seen = within(Duration::from_secs(3), async {
            loop {
                let seen = log.lock().unwrap().clone();
                if !seen.is_empty() || name.starts_with("PUT") {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            seen.iter().all(|r| !r.complete),
            "{name}: the app saw a complete request: {seen:?}"
        );
        if name.starts_with("POST") {
            assert_eq!(seen.len(), 1, "{name}: {seen:?}");
            assert!(seen[0].body.len() <= 10, "{name}: {seen:?}");
        }
        eprintln!("{name}: {status} after {closed:?}; app saw {seen:?}");
    }
    assert_eq!(probe(pg.addr).await.0, 200);
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// At MAX_CONNECTIONS further clients wait in the backlog and are served as
/// soon as earlier connections close; podgate holds no more sockets than the
/// limit allows.
#[tokio::test]
async fn connection_limit_queues_and_recovers() {
    // Boxed: the test future is large in debug builds.
    Box::pin(connection_limit_queues_and_recovers_body()).await
}

async fn connection_limit_queues_and_recovers_body() {
    let _g = FD_GATE.write().await;
    let app = spawn_echo_app().await;
    let pg = start_podgate(
        app,
        &[
            ("MAX_CONNECTIONS", "5"),
            ("IDLE_TIMEOUT", "30s"),
            ("ACCESS_LOG", "false"),
        ],
    )
    .await;
    wait_ready(&pg).await;
    let base = open_fds();
    // Five keep-alive clients take every slot and then sit idle.
    let mut idle = Vec::new();
    for i in 0..5 {
        let mut s = within(WAIT, TcpStream::connect(pg.addr)).await.unwrap();
        s.write_all(format!("GET /idle/{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 8192];
        let n = within(WAIT, s.read(&mut buf)).await.unwrap();
        assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);
        idle.push(s);
    }
    // Fifteen more: connected by the kernel, not accepted by podgate.
    let waiting: Vec<_> = (0..15)
        .map(|i| {
            let addr = pg.addr;
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.expect("connect");
                s.write_all(
                    format!("GET /wait/{i} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .expect("write");
                let t = Instant::now();
                let got = read_to_close(&mut s, Duration::from_secs(10))
                    .await
                    .unwrap();
                (status_of(&String::from_utf8_lossy(&got)), t.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let open = pg.running.metrics.open_connections.load(Ordering::Relaxed);
    let fds = open_fds();
    eprintln!("at the limit: {open} open in podgate, fds {base} -> {fds}");
    assert!(open <= 5, "{open} connections open with MAX_CONNECTIONS=5");
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "a client beyond the limit was served"
    );
    // 20 client sockets + 5 accepted + pooled app connections (both ends here).
    assert!(
        fds <= base + 20 + 5 + 2 * 5 + 10,
        "fds grew from {base} to {fds}"
    );
    // Free the slots: everyone waiting is served.
    drop(idle);
    let mut results = Vec::new();
    for w in waiting {
        results.push(within(Duration::from_secs(15), w).await.unwrap());
    }
    eprintln!("waiting clients: {results:?}");
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    assert!(
        results.iter().all(|(_, t)| *t < Duration::from_secs(5)),
        "{results:?}"
    );
    let (status, _) = probe(pg.addr).await;
    assert_eq!(status, 200);
    // And the sockets are released.
    let settled = within(Duration::from_secs(5), async {
        loop {
            let fds = open_fds();
            if fds <= base + 12 && pg.running.metrics.open_connections.load(Ordering::Relaxed) == 0
            {
                return fds;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    eprintln!("after: fds {settled}");
}

/// 1,000 clients that each sent part of a head and then nothing: podgate keeps
/// answering a normal client promptly.
#[tokio::test]
async fn a_thousand_partial_heads_do_not_block_others() {
    // Boxed: the test future is large in debug builds.
    Box::pin(a_thousand_partial_heads_do_not_block_others_body()).await
}

async fn a_thousand_partial_heads_do_not_block_others_body() {
    let _g = FD_GATE.write().await;
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[("HEADER_TIMEOUT", "10s"), ("ACCESS_LOG", "false")]).await;
    wait_ready(&pg).await;
    let base = open_fds();
    let mut held = Vec::with_capacity(1000);
    for batch in 0..10 {
        let conns = futures_util::future::join_all((0..100).map(|i| {
            let addr = pg.addr;
            async move {
                let mut s = within(WAIT, TcpStream::connect(addr)).await.ok()?;
                let partial =
                    format!("GET /partial/{batch}/{i} HTTP/1.1\r\nHost: h\r\nX-Partial: ");
                within(WAIT, s.write_all(partial.as_bytes())).await.ok()?;
                Some(s)
            }
        }))
        .await;
        held.extend(conns.into_iter().flatten());
    }
    assert_eq!(held.len(), 1000);
    let opened = within(Duration::from_secs(5), async {
        loop {
            let n = pg.running.metrics.open_connections.load(Ordering::Relaxed);
            if n >= 1000 {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut probes = Vec::new();
    for _ in 0..10 {
        probes.push(probe(pg.addr).await);
    }
    eprintln!(
        "{opened} partial heads open, fds {base} -> {}; probes {probes:?}",
        open_fds()
    );
    for (status, took) in &probes {
        assert_eq!(*status, 200, "{probes:?}");
        assert!(*took < Duration::from_secs(1), "{probes:?}");
    }
    // None of them got an answer, and none reached the app.
    let mut buf = [0u8; 64];
    for s in held.iter_mut().take(20) {
        assert!(
            tokio::time::timeout(Duration::from_millis(5), s.read(&mut buf))
                .await
                .is_err()
        );
    }
    drop(held);
    within(Duration::from_secs(5), async {
        while pg.running.metrics.open_connections.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(probe(pg.addr).await.0, 200);
}

/// Minimal HPACK: a literal header field without indexing, new name.
fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    fn int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, mut n: usize) {
        let max = (1usize << prefix_bits) - 1;
        if n < max {
            out.push(first | n as u8);
            return;
        }
        out.push(first | max as u8);
        n -= max;
        while n >= 128 {
            out.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        out.push(n as u8);
    }
    out.push(0x00);
    int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Sends one HTTP/2 request (prior knowledge, no :authority) with the given
/// extra fields and returns the client's bytes and what the app received.
async fn h2_without_authority(fields: &[(&[u8], &[u8])]) -> (Vec<u8>, Vec<Received>) {
    let (app, log) = spawn_raw_app(OK, false).await;
    // The client is not a trusted proxy: podgate writes Forwarded itself.
    let pg = start_podgate(app, &[("TRUSTED_PROXIES", "none")]).await;
    pg.running.health.mark_seen();
    let mut block = vec![0x82, 0x86, 0x84]; // :method GET, :scheme http, :path /
    for (n, v) in fields {
        hpack_literal(&mut block, n, v);
    }
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS
    bytes.extend(h2_frame(0x1, 0x5, 1, &block)); // HEADERS, END_STREAM | END_HEADERS
    let (resp, _) = exchange(pg.addr, &bytes, Duration::from_millis(1500)).await;
    let seen = log.lock().unwrap().clone();
    (resp, seen)
}

/// An HTTP/2 request without :authority may carry its Host in a `host` field
/// (RFC 9113 §8.3.1). That field must be held to the same rules as an
/// HTTP/1.1 Host (one, valid): otherwise a quote in it lets an untrusted
/// client write its own `for=`/`proto=` into the Forwarded header the app
/// receives, and the app sees several or no Host at all.
#[tokio::test]

async fn h2_host_field_is_validated_like_http1_host() {
    Box::pin(h2_host_field_is_validated_like_http1_host_body()).await
}

async fn h2_host_field_is_validated_like_http1_host_body() {
    let _g = FD_GATE.read().await;
    let mut failures = Vec::new();
    let evil: &[u8] = b"h\";for=6.6.6.6;proto=https;by=\"x";
    let cases: [(&str, H2Fields); 4] = [
        ("quote in host", vec![(b"host", evil)]),
        (
            "two host fields",
            vec![(b"host", b"a.example"), (b"host", b"b.example")],
        ),
        ("host with userinfo", vec![(b"host", b"user@a.example")]),
        ("no :authority and no host", vec![]),
    ];
    let results =
        futures_util::future::join_all(cases.iter().map(|(_, f)| h2_without_authority(f))).await;
    for ((name, _), (resp, seen)) in cases.iter().zip(results) {
        eprintln!(
            "h2 {name}: {} bytes back; app saw {:?}",
            resp.len(),
            seen.iter().map(|r| &r.head).collect::<Vec<_>>()
        );
        for r in &seen {
            let forwarded = header_values(&r.head, "forwarded").join(", ");
            let fors = forwarded
                .split([';', ','])
                .filter(|p| p.trim().to_ascii_lowercase().starts_with("for="))
                .count();
            if fors > 1 || forwarded.contains("6.6.6.6") {
                failures.push(format!(
                    "{name}: client-controlled Forwarded parameters: {forwarded:?}"
                ));
            }
            if let Err(e) = unambiguous_head(&r.head) {
                failures.push(format!("{name}: {e}: {:?}", r.head));
            }
            for h in header_values(&r.head, "host")
                .iter()
                .chain(&header_values(&r.head, "x-forwarded-host"))
            {
                if !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
                {
                    failures.push(format!("{name}: invalid Host reached the app: {h:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An upgrade the app declines is no tunnel: what the client sends next on
/// the connection is parsed and normalised by podgate like any request
/// (websocket smuggling). And an h2c upgrade never carries HTTP2-Settings to
/// the app, so a compliant h2c server cannot switch a tunnel past podgate.
#[tokio::test]
async fn declined_upgrades_open_no_tunnel() {
    Box::pin(declined_upgrades_open_no_tunnel_body()).await
}

async fn declined_upgrades_open_no_tunnel_body() {
    let _g = FD_GATE.read().await;
    let (app, log) = spawn_raw_app(OK, false).await;
    let pg = start_podgate(app, &[("TRUSTED_PROXIES", "none")]).await;
    pg.running.health.mark_seen();
    let follow =
        "GET /admin HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n";
    for (name, upgrade) in [
        (
            "websocket",
            "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        ),
        (
            "h2c",
            "GET /h2c HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        ),
    ] {
        log.lock().unwrap().clear();
        let (resp, _) = exchange(pg.addr, format!("{upgrade}{follow}").as_bytes(), Duration::from_secs(3)).await;
        let seen = log.lock().unwrap().clone();
        eprintln!(
            "{name}: client got {:?}; app saw {:?}",
            statuses(&resp),
            seen.iter().map(|r| &r.head).collect::<Vec<_>>()
        );
        assert_eq!(statuses(&resp), [200, 200], "{name}: {}", String::from_utf8_lossy(&resp));
        assert_eq!(seen.len(), 2, "{name}: {seen:?}");
        assert!(
            header_values(&seen[0].head, "http2-settings").is_empty(),
            "{name}: HTTP2-Settings reached the app: {}",
            seen[0].head
        );
        let second = &seen[1].head;
        assert!(second.starts_with("GET /admin HTTP/1.1"), "{name}: {second}");
        assert_eq!(header_values(second, "x-forwarded-for"), ["127.0.0.1"], "{name}: {second}");
        assert_eq!(header_values(second, "x-request-id").len(), 1, "{name}: not normalised: {second}");
    }
}

/// With MAX_CONNECTIONS taken by clients that never send a byte, others wait
/// for the header timeout to free slots: served late, but served.
#[tokio::test]
async fn silent_clients_at_the_connection_limit_only_delay_others() {
    Box::pin(silent_clients_at_the_connection_limit_only_delay_others_body()).await
}

async fn silent_clients_at_the_connection_limit_only_delay_others_body() {
    let _g = FD_GATE.read().await;
    let app = spawn_echo_app().await;
    let pg = start_podgate(
        app,
        &[
            ("MAX_CONNECTIONS", "5"),
            ("HEADER_TIMEOUT", "500ms"),
            ("ACCESS_LOG", "false"),
        ],
    )
    .await;
    wait_ready(&pg).await;
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(within(WAIT, TcpStream::connect(pg.addr)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, took) = probe(pg.addr).await;
    eprintln!("behind 10 silent clients with MAX_CONNECTIONS=5: {status} after {took:?}");
    assert_eq!(status, 200);
    // Two rounds of five silent clients, each cut at 500 ms.
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "{took:?}"
    );
    drop(silent);
}

/// A client uploading more than MAX_BODY gets the 413, even while it is
/// still sending: podgate must not reset the connection under it before the
/// answer can be read (what nginx's lingering close is for).
#[tokio::test]
async fn oversized_upload_sees_its_413() {
    Box::pin(oversized_upload_sees_its_413_body()).await
}

async fn oversized_upload_sees_its_413_body() {
    let _g = FD_GATE.read().await;
    let (app, _log) = spawn_raw_app(OK, false).await;
    let pg = start_podgate(app, &[("MAX_BODY", "1m")]).await;
    pg.running.health.mark_seen();
    let mut outcomes = Vec::new();
    for (name, head) in [
        (
            "Content-Length",
            format!(
                "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
                16 << 20
            ),
        ),
        (
            "chunked",
            "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_string(),
        ),
    ] {
        let s = within(WAIT, TcpStream::connect(pg.addr)).await.unwrap();
        let (mut r, mut w) = s.into_split();
        let chunked = name == "chunked";
        let writer = tokio::spawn(async move {
            let _ = w.write_all(head.as_bytes()).await;
            let piece = vec![b'x'; 64 << 10];
            let framed = if chunked {
                [
                    format!("{:x}\r\n", piece.len()).into_bytes(),
                    piece.clone(),
                    b"\r\n".to_vec(),
                ]
                .concat()
            } else {
                piece
            };
            for _ in 0..256 {
                match tokio::time::timeout(Duration::from_secs(2), w.write_all(&framed)).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
            w
        });
        let mut got = Vec::new();
        let mut err = None;
        let mut tmp = vec![0u8; 65536];
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            match tokio::time::timeout(Duration::from_secs(5), r.read(&mut tmp)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => got.extend_from_slice(&tmp[..n]),
                Ok(Err(e)) => {
                    err = Some(e.kind());
                    break;
                }
                Err(_) => break,
            }
        }
        let _w = within(Duration::from_secs(10), writer).await.unwrap();
        let text = String::from_utf8_lossy(&got).into_owned();
        outcomes.push(format!(
            "{name}: status {} read error {err:?}",
            status_of(&text)
        ));
    }
    eprintln!("{}", outcomes.join("\n"));
    for o in &outcomes {
        assert!(o.contains("status 413"), "{}", outcomes.join("\n"));
    }
}
