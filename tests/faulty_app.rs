//! An app that misbehaves: refuses, resets, hangs up, lies about framing,
//! sends garbage, stalls, sends informational answers, closes keep-alive
//! connections at random. For every fault the client must get a clear answer
//! (an error status, or a visibly truncated stream and a closed connection,
//! never a hang), and podgate must keep serving normal requests afterwards.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NORMAL: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nnormal";

/// An app on 127.0.0.1:0 that runs `conn` for every accepted connection (at
/// most 10,000). The closure owns the socket: it reads requests with
/// [`read_request`] and misbehaves as it likes.
async fn spawn_script_app<F, Fut>(conn: F) -> SocketAddr
where
    F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for n in 0..10_000 {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            // Every connection is bounded in time, whatever the script does.
            tokio::spawn(tokio::time::timeout(Duration::from_secs(15), conn(s, n)));
        }
    });
    addr
}

/// The common case: requests whose target contains `/ok` get a normal answer
/// (keep-alive); anything else gets `fault`, a script run on the socket.
async fn spawn_faulty_app<F, Fut>(fault: F) -> SocketAddr
where
    F: Fn(TcpStream, Received) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    spawn_script_app(move |mut s, _| {
        let fault = fault.clone();
        async move {
            let mut buf = Vec::new();
            for _ in 0..1000 {
                let Some(req) = read_request(&mut s, &mut buf).await else {
                    return;
                };
                if req.head.starts_with("GET /ok") {
                    if s.write_all(NORMAL).await.is_err() {
                        return;
                    }
                    continue;
                }
                fault(s, req).await;
                return;
            }
        }
    })
    .await
}

/// An app that writes `bytes` in answer to anything but `/ok`, then closes.
async fn spawn_answering(bytes: &'static [u8]) -> SocketAddr {
    spawn_faulty_app(move |mut s, _| async move {
        let _ = s.write_all(bytes).await;
        let _ = s.shutdown().await;
        // Let podgate read before the socket goes away.
        let mut tmp = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut tmp)).await;
    })
    .await
}

async fn podgate_for(app: SocketAddr, vars: &[(&str, &str)]) -> Podgate {
    let mut all = vec![("ACCESS_LOG", "false")];
    all.extend_from_slice(vars);
    let pg = start_podgate(app, &all).await;
    pg.running.health.mark_seen();
    pg
}

/// A raw GET through podgate: the byte stream up to the end of the first
/// final response (or until the connection closes or `limit` passes), and
/// when the connection closed (None if it was still open).
async fn get(pg: &Podgate, path: &str, limit: Duration) -> (String, Option<Duration>) {
    let mut s = within(WAIT, TcpStream::connect(pg.addr)).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let t = Instant::now();
    let mut out = Vec::new();
    let mut tmp = vec![0u8; 65536];
    let mut closed = None;
    while t.elapsed() < limit && !response_complete(&out) {
        match tokio::time::timeout(limit.saturating_sub(t.elapsed()), s.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = Some(t.elapsed());
                break;
            }
            Ok(Ok(n)) => out.extend_from_slice(&tmp[..n]),
            Err(_) => break,
        }
    }
    if closed.is_none() && response_complete(&out) {
        // Complete: did podgate close right after it?
        let mut probe = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(50), s.read(&mut probe)).await
        {
            closed = Some(t.elapsed());
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// True when `buf` holds a whole final response framed by Content-Length or
/// chunked encoding (1xx responses before it are skipped).
fn response_complete(buf: &[u8]) -> bool {
    let mut rest = buf;
    for _ in 0..10 {
        let Some(end) = find(rest, b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&rest[..end + 4]).into_owned();
        let body = &rest[end + 4..];
        let status = status_of(&head);
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        if status == 204 || status == 304 {
            return true;
        }
        if header_of(&head, "transfer-encoding").is_some() {
            return body.ends_with(b"0\r\n\r\n");
        }
        return match header_of(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
            Some(n) => body.len() >= n,
            None => false,
        };
    }
    false
}

fn body_of(text: &str) -> &str {
    text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("")
}

/// After a fault, the same podgate serves a normal request.
async fn still_serves(pg: &Podgate) {
    let r = within(WAIT, client().get(pg.url("/ok")).send())
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "podgate serves normally after the fault");
    assert_eq!(within(WAIT, r.text()).await.unwrap(), "normal");
}

async fn upstream_errors(pg: &Podgate, kind: &str) -> u64 {
    let m = pg.running.metrics.render();
    let key = format!("podgate_upstream_errors_total{{kind=\"{kind}\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn refused_connection_is_a_fast_502_and_recovery_is_immediate() {
    Box::pin(async {
        // A port with nothing on it, for an app that was seen before.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let pg = podgate_for(addr, &[("CONNECT_TIMEOUT", "1s")]).await;
        for _ in 0..3 {
            let t = Instant::now();
            let (text, closed) = get(&pg, "/x", Duration::from_secs(3)).await;
            assert_eq!(status_of(&text), 502, "{text}");
            assert_eq!(body_of(&text), "app is not listening\n");
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "took {:?}",
                t.elapsed()
            );
            // A 502 does not cost the client its connection.
            assert!(closed.is_none(), "{text}");
        }
        assert!(upstream_errors(&pg, "app_refused").await >= 3);
        // The app comes back on the same port: served at once.
        let l = TcpListener::bind(addr).await.unwrap();
        serve_app_on(
            l,
            |_req: http::Request<hyper::body::Incoming>| async move {
                http::Response::new(full("normal"))
            },
            None,
        );
        still_serves(&pg).await;
    })
    .await
}

#[tokio::test]
async fn reset_mid_response_truncates_and_closes() {
    Box::pin(async {
        for (name, head) in [
            (
                "content-length",
                &b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"[..],
            ),
            (
                "chunked",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n",
            ),
            ("close-delimited", b"HTTP/1.1 200 OK\r\n\r\n"),
        ] {
            let app = spawn_faulty_app(move |s, _| async move {
                let mut s = s;
                let _ = s.write_all(head).await;
                let _ = s.write_all(&[b'x'; 1000]).await;
                let _ = s.flush().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                // RST instead of FIN.
                let _ = s.set_zero_linger();
                drop(s);
            })
            .await;
            let pg = podgate_for(app, &[]).await;
            let (text, closed) = get(&pg, "/reset", Duration::from_secs(5)).await;
            let closed =
                closed.unwrap_or_else(|| panic!("{name}: client left hanging: {text:.200}"));
            assert!(
                closed < Duration::from_secs(2),
                "{name}: closed after {closed:?}"
            );
            assert_eq!(
                status_of(&text),
                200,
                "{name}: the head was already sent: {text:.200}"
            );
            let body = body_of(&text);
            match name {
                "content-length" => {
                    assert_eq!(
                        header_of(&text, "content-length").as_deref(),
                        Some("100000")
                    );
                    assert!(body.len() < 100_000, "{name}: truncation must be visible");
                }
                _ => {
                    // Chunked to the client: the last chunk must be missing,
                    // or the truncated body would look complete.
                    assert_eq!(
                        header_of(&text, "transfer-encoding").as_deref(),
                        Some("chunked"),
                        "{name}"
                    );
                    assert!(
                        !body.ends_with("0\r\n\r\n"),
                        "{name}: truncated body sent as complete: {body:.100}"
                    );
                }
            }
            eprintln!("{name}: {} body bytes, closed after {closed:?}", body.len());
            still_serves(&pg).await;
        }
    })
    .await
}

#[tokio::test]
async fn app_closing_mid_body_with_fin_truncates_and_closes() {
    Box::pin(async {
        for (name, bytes) in [
            ("short content-length", &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel"[..]),
            ("unterminated chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n"),
            ("bad chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\nzz\r\nlo\r\n0\r\n\r\n"),
        ] {
            let app = spawn_answering(bytes).await;
            let pg = podgate_for(app, &[]).await;
            let (text, closed) = get(&pg, "/fin", Duration::from_secs(5)).await;
            let closed = closed.unwrap_or_else(|| panic!("{name}: client left hanging: {text}"));
            assert!(closed < Duration::from_secs(2), "{name}: {closed:?}");
            let status = status_of(&text);
            assert!(status == 200 || status == 502, "{name}: {text}");
            if status == 200 {
                let body = body_of(&text);
                assert!(!body.ends_with("0\r\n\r\n"), "{name}: truncated body sent as complete: {text}");
                if let Some(cl) = header_of(&text, "content-length") {
                    assert!(body.len() < cl.parse::<usize>().unwrap(), "{name}: {text}");
                }
            }
            eprintln!("{name}: {status}, closed after {closed:?}");
            still_serves(&pg).await;
        }
    })
    .await
}

#[tokio::test]
async fn app_closing_without_an_answer_is_502() {
    Box::pin(async {
        let hits = Arc::new(AtomicUsize::new(0));
        let h2 = hits.clone();
        let app = spawn_faulty_app(move |s, _| {
            h2.fetch_add(1, Ordering::SeqCst);
            async move { drop(s) }
        })
        .await;
        let pg = podgate_for(app, &[]).await;
        let t = Instant::now();
        let (text, _) = get(&pg, "/close", Duration::from_secs(5)).await;
        assert_eq!(status_of(&text), 502, "{text}");
        assert_eq!(
            body_of(&text),
            "app closed the connection without a response\n"
        );
        assert!(t.elapsed() < Duration::from_secs(1));
        // A GET may be sent once more on a fresh connection, never more.
        assert!(
            hits.load(Ordering::SeqCst) <= 2,
            "{} attempts",
            hits.load(Ordering::SeqCst)
        );
        let r = within(
            WAIT,
            client().post(pg.url("/close-post")).body("once").send(),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 502);
        still_serves(&pg).await;
    })
    .await
}

#[tokio::test]
async fn invalid_responses_are_502() {
    Box::pin(async {
        let big_head: &'static [u8] = Box::leak(
            {
                let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
                for i in 0..1024 {
                    v.extend_from_slice(format!("X-Big-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
                }
                v.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
                v
            }
            .into_boxed_slice(),
        );
        let cases: Vec<(&str, &'static [u8])> = vec![
            ("not HTTP", b"NOT HTTP AT ALL\r\n\r\n"),
            ("binary garbage", b"\x00\x01\x02\x03\xff\xfe\r\n\r\n"),
            ("TLS alert", b"\x15\x03\x03\x00\x02\x02\x28"),
            ("status not a number", b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n"),
            ("status 4 digits", b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"),
            ("status 2 digits", b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n"),
            ("HTTP/2.0 status line", b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
            ("lowercase version", b"http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            ("header without colon", b"HTTP/1.1 200 OK\r\nBroken header\r\nContent-Length: 0\r\n\r\n"),
            ("NUL in header value", b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n"),
            (
                "bare CR splitting a header",
                b"HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: evil=1\r\nContent-Length: 0\r\n\r\n",
            ),
            ("obs-fold", b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
            (
                "CL and TE",
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            ),
            (
                "TE and CL",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            ),
            (
                "two different CLs",
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            ),
            ("CL list 3, 4", b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd"),
            ("CL -1", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nabcd"),
            ("CL +3", b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc"),
            ("101 to a plain GET", b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"),
            ("1 MiB of headers", big_head),
        ];
        let mut report = Vec::new();
        for (name, bytes) in cases {
            let app = spawn_answering(bytes).await;
            let pg = podgate_for(app, &[]).await;
            let t = Instant::now();
            let (text, _) = get(&pg, "/bad", Duration::from_secs(5)).await;
            let status = status_of(&text);
            report.push(format!("{name}: {status} {:?} in {:?}", body_of(&text), t.elapsed()));
            assert_eq!(status, 502, "{name}: {text:.300}");
            assert!(
                body_of(&text).starts_with("app sent an invalid response\n")
                    || body_of(&text).starts_with("app closed the connection without a response\n"),
                "{name}: {text:.300}"
            );
            assert!(t.elapsed() < Duration::from_secs(2), "{name}: took {:?}", t.elapsed());
            still_serves(&pg).await;
        }
        eprintln!("{}", report.join("\n"));
    })
    .await
}

/// Many response header fields (e.g. a page setting 150 cookies): hyper's
/// client refuses more than 100 by default.
#[tokio::test]
async fn many_response_headers_are_passed_or_refused_cleanly() {
    Box::pin(async {
        let many: &'static [u8] = Box::leak(
            {
                let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
                for i in 0..150 {
                    v.extend_from_slice(format!("Set-Cookie: c{i}=v; Path=/\r\n").as_bytes());
                }
                v.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
                v
            }
            .into_boxed_slice(),
        );
        let app = spawn_answering(many).await;
        let pg = podgate_for(app, &[]).await;
        let (text, _) = get(&pg, "/cookies", Duration::from_secs(5)).await;
        let status = status_of(&text);
        let cookies = text.matches("set-cookie: ").count() + text.matches("Set-Cookie: ").count();
        eprintln!("150 Set-Cookie headers: {status}, {cookies} forwarded");
        assert!(
            (status == 200 && cookies == 150) || status == 502,
            "all or nothing: {status} with {cookies} cookies"
        );
        still_serves(&pg).await;
    })
    .await
}

#[tokio::test]
async fn stall_mid_body_is_cut_at_the_upstream_timeout() {
    Box::pin(async {
        for (name, head) in [
            (
                "content-length",
                &b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"[..],
            ),
            (
                "chunked",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n",
            ),
        ] {
            let app = spawn_faulty_app(move |mut s, _| async move {
                let _ = s.write_all(head).await;
                let _ = s.write_all(&[b'x'; 100]).await;
                // Stall, connection open, for longer than the test waits.
                tokio::time::sleep(Duration::from_secs(8)).await;
            })
            .await;
            let pg = podgate_for(app, &[("UPSTREAM_TIMEOUT", "500ms")]).await;
            let (text, closed) = get(&pg, "/stall", Duration::from_secs(5)).await;
            let closed =
                closed.unwrap_or_else(|| panic!("{name}: client left hanging: {text:.200}"));
            assert!(
                closed >= Duration::from_millis(450) && closed < Duration::from_secs(2),
                "{name}: closed after {closed:?}"
            );
            assert_eq!(status_of(&text), 200, "{name}");
            let body = body_of(&text);
            assert!(
                body.contains("xxxx"),
                "{name}: the bytes before the stall arrive: {body:.100}"
            );
            assert!(
                !body.ends_with("0\r\n\r\n"),
                "{name}: truncated body sent as complete"
            );
            if name == "content-length" {
                assert!(body.len() < 1000);
            }
            eprintln!(
                "{name}: truncated at {} bytes, closed after {closed:?}",
                body.len()
            );
            assert!(upstream_errors(&pg, "response_timeout").await <= 1);
            still_serves(&pg).await;
        }
    })
    .await
}

#[tokio::test]
async fn informational_responses_before_the_final_one() {
    Box::pin(async {
        for (name, bytes) in [
            (
                "103 Early Hints",
                &b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..],
            ),
            (
                "two 103s",
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            ),
            (
                "unsolicited 100 Continue",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            ),
            (
                "102 Processing, chunked final",
                b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            ),
        ] {
            let app = spawn_answering(bytes).await;
            let pg = podgate_for(app, &[]).await;
            let (text, _) = get(&pg, "/hints", Duration::from_secs(3)).await;
            // Any forwarded 1xx first, then exactly one final response.
            let finals: Vec<&str> = text
                .split("HTTP/1.1 ")
                .skip(1)
                .filter(|r| !r.starts_with('1'))
                .collect();
            assert_eq!(finals.len(), 1, "{name}: {text}");
            assert!(finals[0].starts_with("200"), "{name}: {text}");
            let last = text.rsplit_once("HTTP/1.1 200").unwrap().1;
            let body = body_of(last);
            let body = if header_of(&format!("HTTP/1.1 200{last}"), "transfer-encoding").is_some() {
                body.strip_prefix("5\r\n").and_then(|b| b.strip_suffix("\r\n0\r\n\r\n")).unwrap_or(body)
            } else {
                body
            };
            assert_eq!(body, "hello", "{name}: {text}");
            eprintln!(
                "{name}: {} informational response(s) forwarded",
                text.split("HTTP/1.1 1").count() - 1
            );
            still_serves(&pg).await;
        }
    })
    .await
}

/// The app answers, then writes a second, unsolicited response on the same
/// keep-alive connection. That response must never reach the next client.
#[tokio::test]
async fn extra_bytes_after_a_response_never_reach_the_next_client() {
    Box::pin(async {
        for (name, bytes) in [
            (
                "second response",
                &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON"[..],
            ),
            ("204 with a body", b"HTTP/1.1 204 No Content\r\nContent-Length: 6\r\n\r\nPOISON"),
            ("304 with a body", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 6\r\n\r\nPOISON"),
            ("body longer than CL", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstPOISON"),
        ] {
            // One connection answers everything in order: the fault, then
            // normal answers, so stale bytes would be read as the next answer.
            let app = spawn_script_app(move |mut s, _| async move {
                let mut buf = Vec::new();
                for _ in 0..100 {
                    let Some(req) = read_request(&mut s, &mut buf).await else { return };
                    let out = if req.head.starts_with("GET /ok") { NORMAL } else { bytes };
                    if s.write_all(out).await.is_err() {
                        return;
                    }
                }
            })
            .await;
            let pg = podgate_for(app, &[("POOL_IDLE_TIMEOUT", "30s")]).await;
            let c = client();
            let r = within(WAIT, c.get(pg.url("/fault")).send()).await.unwrap();
            let first_status = r.status();
            let first_body = within(WAIT, r.text()).await.unwrap_or_default();
            assert!(!first_body.contains("POISON") || name.starts_with("body longer") && first_body == "first", "{name}: {first_body}");
            let mut next = Vec::new();
            for _ in 0..3 {
                let r = within(WAIT, c.get(pg.url("/ok")).send()).await.unwrap();
                let status = r.status();
                let body = within(WAIT, r.text()).await.unwrap_or_default();
                next.push((status.as_u16(), body));
            }
            eprintln!("{name}: first {first_status} {first_body:?}, then {next:?}");
            for (status, body) in &next {
                assert!(!body.contains("POISON"), "{name}: a stale response reached another request: {next:?}");
                assert_eq!((*status, body.as_str()), (200, "normal"), "{name}: {next:?}");
            }
        }
    })
    .await
}

/// A tiny deterministic PRNG (xorshift64*), so failures can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The app closes each keep-alive connection after a random 0–3 reuses,
/// silently (no `Connection: close`), sometimes right away and sometimes a
/// moment later, while podgate may already be sending the next request on it.
/// Idempotent requests must never fail for it.
#[tokio::test]
async fn app_closing_keepalive_connections_at_random_never_fails_a_request() {
    Box::pin(async {
        let served = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let (s2, c2) = (served.clone(), conns.clone());
        let app = spawn_script_app(move |mut s, n| {
            let served = s2.clone();
            let conns = c2.clone();
            async move {
                conns.fetch_add(1, Ordering::SeqCst);
                let mut rng =
                    Rng(0x9e37_79b9_7f4a_7c15 ^ (n as u64 + 1).wrapping_mul(0x1000_0000_01b3));
                let reuses = rng.below(4) as usize;
                let linger_ms = rng.below(3) * 5;
                let mut buf = Vec::new();
                for _ in 0..=reuses {
                    let Some(req) = read_request(&mut s, &mut buf).await else {
                        return;
                    };
                    if !req.complete {
                        return;
                    }
                    served.fetch_add(1, Ordering::SeqCst);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                        req.body.len()
                    );
                    if s.write_all(resp.as_bytes()).await.is_err()
                        || s.write_all(&req.body).await.is_err()
                    {
                        return;
                    }
                }
                // Idle close, without warning.
                tokio::time::sleep(Duration::from_millis(linger_ms)).await;
                drop(s);
            }
        })
        .await;
        let pg = podgate_for(app, &[("POOL_IDLE_TIMEOUT", "30s")]).await;
        let c = client();
        let mut rng = Rng(42);
        let mut bad = Vec::new();
        let t = Instant::now();
        for i in 0..200 {
            let pause = rng.below(12);
            if pause > 0 {
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            let (status, body, want) = if i % 3 == 2 {
                let body = format!("put-{i}");
                let r = within(
                    WAIT,
                    c.put(pg.url(&format!("/p/{i}"))).body(body.clone()).send(),
                )
                .await;
                match r {
                    Ok(r) => (
                        r.status().as_u16(),
                        within(WAIT, r.text()).await.unwrap_or_default(),
                        body,
                    ),
                    Err(e) => (0, e.to_string(), body),
                }
            } else {
                match within(WAIT, c.get(pg.url(&format!("/g/{i}"))).send()).await {
                    Ok(r) => (
                        r.status().as_u16(),
                        within(WAIT, r.text()).await.unwrap_or_default(),
                        String::new(),
                    ),
                    Err(e) => (0, e.to_string(), String::new()),
                }
            };
            if status != 200 || body != want {
                bad.push((i, status, body));
            }
        }
        let retries = pg
            .running
            .metrics
            .render()
            .lines()
            .find(|l| l.starts_with("podgate_upstream_retries_total"))
            .unwrap_or("")
            .to_string();
        eprintln!(
            "200 requests in {:?}: app served {} on {} connections; {retries}",
            t.elapsed(),
            served.load(Ordering::SeqCst),
            conns.load(Ordering::SeqCst)
        );
        assert!(bad.is_empty(), "{} failed request(s): {bad:?}", bad.len());
        still_serves_any(&pg).await;
    })
    .await
}

/// Like [`still_serves`] for an app that answers every path.
async fn still_serves_any(pg: &Podgate) {
    let r = within(WAIT, client().get(pg.url("/after")).send())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The app answers early (413 before reading a large upload) and closes.
#[tokio::test]
async fn early_answer_to_an_upload_reaches_the_client() {
    Box::pin(async {
        let app = spawn_script_app(|mut s, _| async move {
            let mut tmp = [0u8; 4096];
            // Read the head only, then refuse.
            let _ = s.read(&mut tmp).await;
            let _ = s
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n")
                .await;
            let _ = s.shutdown().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        })
        .await;
        let pg = podgate_for(app, &[]).await;
        for len in [64 << 10, 4 << 20] {
            let s = within(WAIT, TcpStream::connect(pg.addr)).await.unwrap();
            let (mut r, mut w) = s.into_split();
            let t = Instant::now();
            let writer = tokio::spawn(async move {
                let head = format!("POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\n\r\n");
                let _ = w.write_all(head.as_bytes()).await;
                let chunk = vec![b'u'; 16 << 10];
                let mut sent = 0;
                while sent < len {
                    if tokio::time::timeout(Duration::from_secs(3), w.write_all(&chunk)).await.map_or(true, |r| r.is_err()) {
                        break;
                    }
                    sent += chunk.len();
                }
                (sent, w)
            });
            let got = read_half_response(&mut r, Duration::from_secs(5)).await;
            let (sent, _w) = within(Duration::from_secs(8), writer).await.unwrap();
            let text = String::from_utf8_lossy(&got);
            let status = status_of(&text);
            eprintln!(
                "early 413 from the app, {len}-byte upload ({sent} sent): client got {status} {:?} after {:?}",
                body_of(&text),
                t.elapsed()
            );
            assert!(t.elapsed() < Duration::from_secs(4), "client left hanging");
            assert!(status == 413 || status == 502 || status == 0, "{text}");
        }
    })
    .await
}

/// Reads until a whole response has arrived, the peer closes, or `limit`.
async fn read_half_response(r: &mut tokio::net::tcp::OwnedReadHalf, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        let mut tmp = [0u8; 16384];
        while !response_complete(&out) {
            match r.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&tmp[..n]),
            }
        }
    })
    .await;
    out
}

/// The app answers an upload early and hangs up. The rest of the client's
/// body, still arriving, is body: never read as further requests.
#[tokio::test]
async fn body_left_over_after_an_early_answer_is_not_parsed_as_requests() {
    Box::pin(async {
        let heads = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let h2 = heads.clone();
        let app = spawn_script_app(move |mut s, _| {
            let heads = h2.clone();
            async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                while find(&buf, b"\r\n\r\n").is_none() {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).lines().next().unwrap_or("").to_string();
                heads.lock().unwrap().push(head.clone());
                let out: &[u8] = if head.starts_with("POST") {
                    b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n"
                } else {
                    NORMAL
                };
                let _ = s.write_all(out).await;
                let _ = s.shutdown().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        let pg = podgate_for(app, &[]).await;
        let smuggle = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
        for (name, len) in [("64 KiB", 64usize << 10), ("1 MiB", 1 << 20)] {
            let payload = smuggle.repeat(len / smuggle.len() + 1);
            let s = within(WAIT, TcpStream::connect(pg.addr)).await.unwrap();
            let (mut r, mut w) = s.into_split();
            let writer = tokio::spawn(async move {
                let head = format!("POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n", payload.len());
                let _ = w.write_all(head.as_bytes()).await;
                // Slowly enough that the answer arrives mid-upload.
                for piece in payload.as_bytes().chunks(8 << 10) {
                    let ok = tokio::time::timeout(Duration::from_secs(3), w.write_all(piece)).await;
                    if !matches!(ok, Ok(Ok(()))) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                w
            });
            let got = {
                let mut out = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(4), async {
                    let mut tmp = [0u8; 16384];
                    loop {
                        match r.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => out.extend_from_slice(&tmp[..n]),
                        }
                    }
                })
                .await;
                out
            };
            let _w = within(Duration::from_secs(10), writer).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let text = String::from_utf8_lossy(&got);
            let seen = heads.lock().unwrap().clone();
            eprintln!(
                "{name}: client got {:?} ({} responses); app saw {} request(s), {} smuggled",
                text.lines().next().unwrap_or(""),
                text.matches("HTTP/1.1 ").count(),
                seen.len(),
                seen.iter().filter(|h| h.contains("smuggled")).count()
            );
            assert!(seen.iter().all(|h| !h.contains("smuggled")), "{name}: body parsed as requests: {seen:?}");
            assert!(text.matches("HTTP/1.1 ").count() <= 1, "{name}: {text:.500}");
            heads.lock().unwrap().clear();
        }
        still_serves(&pg).await;
    })
    .await
}

/// An app whose accept queue is full (alive but swamped): connecting hangs,
/// and the client gets 504 at the connect timeout, not a hang.
#[tokio::test]
async fn app_not_accepting_is_504_at_the_connect_timeout() {
    Box::pin(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = sock.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        // Fill the accept queue; nobody ever accepts.
        let mut fillers = Vec::new();
        for _ in 0..8 {
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
            {
                fillers.push(s);
            }
        }
        let pg = podgate_for(
            addr,
            &[("CONNECT_TIMEOUT", "300ms"), ("UPSTREAM_TIMEOUT", "5s")],
        )
        .await;
        let t = Instant::now();
        let (text, _) = get(&pg, "/swamped", Duration::from_secs(5)).await;
        let took = t.elapsed();
        eprintln!(
            "queue full ({} queued): {} {:?} after {took:?}",
            fillers.len(),
            status_of(&text),
            body_of(&text)
        );
        assert_eq!(status_of(&text), 504, "{text}");
        assert_eq!(
            body_of(&text),
            "app did not accept the connection in time\n"
        );
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(2),
            "{took:?}"
        );
        drop(listener);
    })
    .await
}
