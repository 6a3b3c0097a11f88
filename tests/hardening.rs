//! Regression tests for the limits that tunnels, HTTP/2, slow readers and
//! h2c once walked around. Each asserts what a client or the app sees over
//! real sockets; waits are bounded and end on a signal, not a sleep.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const H2C_UPGRADE: &str = "GET /h2c HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
const WS_UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

fn metric(pg: &Podgate, line_start: &str) -> Option<f64> {
    pg.running
        .metrics
        .render()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits until a metric has the value, bounded.
async fn metric_becomes(pg: &Podgate, name: &str, want: f64) {
    within(WAIT, async {
        while metric(pg, name) != Some(want) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    within(WAIT, async {
        let mut b = [0u8; 1];
        while find(&buf, b"\r\n\r\n").is_none() {
            if s.read(&mut b).await.unwrap() == 0 {
                break;
            }
            buf.push(b[0]);
        }
    })
    .await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// A raw app that answers every upgrade with a 101 naming `protocol`, then
/// echoes bytes; reports each accepted tunnel's end on `ended`.
async fn spawn_upgrade_app(
    protocol: &'static str,
) -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<()>,
    Arc<AtomicUsize>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let requests = Arc::new(AtomicUsize::new(0));
    let r2 = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (tx, requests) = (tx.clone(), r2.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if read_request(&mut s, &mut buf).await.is_none() {
                    return;
                }
                requests.fetch_add(1, Ordering::SeqCst);
                let head = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
                );
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut b = [0u8; 4096];
                loop {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&b[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = tx.send(());
            });
        }
    });
    (addr, rx, requests)
}

async fn open_tunnel(pg: &Podgate) -> TcpStream {
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    s.write_all(WS_UPGRADE.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 101, "{head}");
    s
}

async fn echo(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    within(WAIT, s.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, msg);
}

#[tokio::test]
async fn h2c_upgrade_is_forwarded_as_a_plain_request() {
    let (app, log) = spawn_raw_app(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false).await;
    let pg = start_podgate(app, &[]).await;
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    s.write_all(H2C_UPGRADE.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 200, "{head}");
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let app_head = seen[0].head.to_ascii_lowercase();
    for name in ["upgrade:", "http2-settings:", "connection:"] {
        assert!(
            !app_head.contains(name),
            "{name} reached the app: {app_head}"
        );
    }
}

#[tokio::test]
async fn a_101_the_client_did_not_get_to_ask_for_is_a_502() {
    // The app switches to h2c although podgate removed that upgrade.
    let (app, _) = spawn_raw_app(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        false,
    )
    .await;
    let pg = start_podgate(app, &[]).await;
    let resp = raw(pg.addr, H2C_UPGRADE.as_bytes()).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert_eq!(status_of(&text), 502, "{text}");

    // The client asked for WebSocket; the app answers with another protocol.
    let resp = raw(pg.addr, WS_UPGRADE.as_bytes()).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert_eq!(status_of(&text), 502, "{text}");

    // WebSocket switched off: the upgrade is removed, so a 101 is refused.
    let (ws_app, _, _) = spawn_upgrade_app("websocket").await;
    let pg = start_podgate(ws_app, &[("UPGRADE_PROTOCOLS", "none")]).await;
    let resp = raw(pg.addr, WS_UPGRADE.as_bytes()).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert_eq!(status_of(&text), 502, "{text}");
}

#[tokio::test]
async fn tunnels_hold_their_connection_slot_and_are_counted() {
    let (app, mut ended, requests) = spawn_upgrade_app("websocket").await;
    let pg = start_podgate(app, &[("MAX_CONNECTIONS", "3")]).await;
    let mut tunnels = Vec::new();
    for _ in 0..3 {
        let mut t = open_tunnel(&pg).await;
        echo(&mut t, b"ping").await;
        tunnels.push(t);
    }
    metric_becomes(&pg, "podgate_tunnels_open ", 3.0).await;
    assert_eq!(metric(&pg, "podgate_client_connections_open "), Some(3.0));

    // A fourth client waits in the backlog while the three tunnels are up.
    let mut fourth = TcpStream::connect(pg.addr).await.unwrap();
    fourth.write_all(WS_UPGRADE.as_bytes()).await.unwrap();
    // Round trips through every tunnel: podgate has had time to act.
    for t in &mut tunnels {
        echo(t, b"again").await;
    }
    assert_eq!(
        requests.load(Ordering::SeqCst),
        3,
        "a fourth connection got past MAX_CONNECTIONS"
    );

    // One tunnel closes: its slot goes to the waiting client.
    drop(tunnels.remove(0));
    within(WAIT, ended.recv()).await.unwrap();
    let head = read_head(&mut fourth).await;
    assert_eq!(status_of(&head), 101, "{head}");
    assert_eq!(requests.load(Ordering::SeqCst), 4);
    drop(tunnels);
    drop(fourth);
    metric_becomes(&pg, "podgate_tunnels_open ", 0.0).await;
    metric_becomes(&pg, "podgate_client_connections_open ", 0.0).await;
}

#[tokio::test]
async fn idle_tunnels_are_closed_and_busy_ones_are_not() {
    let (app, mut ended, _) = spawn_upgrade_app("websocket").await;
    let pg = start_podgate(app, &[("TUNNEL_IDLE_TIMEOUT", "1s")]).await;
    let mut busy = open_tunnel(&pg).await;
    let mut quiet = open_tunnel(&pg).await;
    // The busy tunnel moves a byte every 100 ms for 2.5 s, well past the
    // idle timeout, and stays open.
    let busy_task = tokio::spawn(async move {
        for _ in 0..25 {
            echo(&mut busy, b"x").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        busy
    });
    // The quiet one is closed by podgate: the client sees EOF, the app too.
    let rest = read_to_close(&mut quiet, WAIT).await.unwrap();
    assert!(rest.is_empty());
    within(WAIT, ended.recv()).await.unwrap();
    let mut busy = busy_task.await.unwrap();
    echo(&mut busy, b"still here").await;
    metric_becomes(&pg, "podgate_tunnels_open ", 1.0).await;
}

#[tokio::test]
async fn drain_closes_tunnels_after_the_shutdown_timeout() {
    let (app, mut ended, _) = spawn_upgrade_app("websocket").await;
    let pg = start_podgate(app, &[("SHUTDOWN_TIMEOUT", "500ms")]).await;
    let mut t = open_tunnel(&pg).await;
    echo(&mut t, b"hi").await;
    pg.running.stop(false);
    let rest = read_to_close(&mut t, WAIT).await.unwrap();
    assert!(rest.is_empty());
    within(WAIT, ended.recv()).await.unwrap();
    within(WAIT, pg.running.done).await.unwrap();
}

/// An app that streams `size` bytes and reports on `freed` when its write
/// fails or completes: the end of its hold on a worker.
async fn spawn_big_app(size: usize) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if read_request(&mut s, &mut buf).await.is_none() {
                    return;
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
                let chunk = vec![b'z'; 64 * 1024];
                let mut ok = s.write_all(head.as_bytes()).await.is_ok();
                let mut left = size;
                while ok && left > 0 {
                    let n = left.min(chunk.len());
                    ok = s.write_all(&chunk[..n]).await.is_ok();
                    left -= n;
                }
                // true: the whole body was written.
                let _ = tx.send(ok);
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_at_the_send_timeout() {
    // 64 MiB cannot sit in socket buffers: the app blocks until podgate
    // lets go of it.
    let (app, mut freed) = spawn_big_app(64 << 20).await;
    let pg = start_podgate(
        app,
        &[("SEND_TIMEOUT", "500ms"), ("UPSTREAM_TIMEOUT", "60s")],
    )
    .await;
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    // Never read: the app connection is freed (its write fails).
    let done = within(WAIT, freed.recv()).await.unwrap();
    assert!(
        !done,
        "the app could write everything to a client that never read"
    );
    metric_becomes(&pg, "podgate_client_connections_open ", 0.0).await;
    // The client connection was closed: what it can read ends early.
    let got = read_to_close(&mut s, WAIT).await.unwrap();
    assert!(got.len() < 64 << 20);
}

#[tokio::test]
async fn an_http2_stream_whose_window_stays_shut_is_cut_at_the_send_timeout() {
    let (app, mut freed) = spawn_big_app(8 << 20).await;
    let pg = start_podgate(app, &[("SEND_TIMEOUT", "500ms")]).await;
    let tcp = TcpStream::connect(pg.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(format!("http://{}/big", pg.addr))
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = within(WAIT, resp).await.unwrap();
    assert_eq!(resp.status(), 200);
    // The body is never read, so its window (64 KiB) is never opened again.
    let _body = resp.into_body();
    let done = within(WAIT, freed.recv()).await.unwrap();
    assert!(
        !done,
        "the app could write 8 MiB to a stream with a shut window"
    );
    within(WAIT, driver).await.unwrap();
}

#[tokio::test]
async fn http2_requests_get_the_header_count_limit_and_one_cookie_line() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[("MAX_HEADERS", "20")]).await;
    let c = h2c_client();
    let mut req = c.get(pg.url("/many"));
    for i in 0..30 {
        req = req.header(format!("x-h{i}"), "v");
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 431);

    let resp = c
        .get(pg.url("/cookies"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("cookie", "c=3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let doc: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let cookies: Vec<&str> = doc["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == "cookie")
        .map(|h| h[1].as_str().unwrap())
        .collect();
    assert_eq!(cookies, ["a=1; b=2; c=3"]);
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

#[tokio::test]
async fn http2_connections_that_stall_before_a_whole_head_are_closed_at_the_header_timeout() {
    let app = spawn_echo_app().await;
    // The idle timeout is far beyond WAIT: only the header timeout can close.
    let pg = start_podgate(app, &[("HEADER_TIMEOUT", "500ms"), ("IDLE_TIMEOUT", "10m")]).await;

    // The preface and SETTINGS, then nothing.
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    s.write_all(&[PREFACE, EMPTY_SETTINGS].concat())
        .await
        .unwrap();
    within(WAIT, read_to_close(&mut s, Duration::from_secs(600)))
        .await
        .unwrap();

    // A HEADERS frame without END_HEADERS, and part of its payload.
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    let headers_frame = [0u8, 0, 10, 1, 0, 0, 0, 0, 1, 0x82, 0x86];
    s.write_all(&[PREFACE, EMPTY_SETTINGS, &headers_frame].concat())
        .await
        .unwrap();
    within(WAIT, read_to_close(&mut s, Duration::from_secs(600)))
        .await
        .unwrap();

    // A whole request on such a connection is served, then it stays open
    // while idle (closed only at the idle timeout).
    let c = h2c_client();
    let resp = c.get(pg.url("/ok")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn http2_connections_are_told_the_stream_limit() {
    let app = spawn_echo_app().await;
    for (vars, want) in [(&[][..], 100u32), (&[("H2_MAX_STREAMS", "7")][..], 7)] {
        let pg = start_podgate(app, vars).await;
        let mut s = TcpStream::connect(pg.addr).await.unwrap();
        s.write_all(&[PREFACE, EMPTY_SETTINGS].concat())
            .await
            .unwrap();
        // The server's first frame is its SETTINGS.
        let mut head = [0u8; 9];
        within(WAIT, s.read_exact(&mut head)).await.unwrap();
        assert_eq!(head[3], 4, "not a SETTINGS frame: {head:?}");
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        within(WAIT, s.read_exact(&mut payload)).await.unwrap();
        let max = payload.chunks(6).find_map(|p| {
            (u16::from_be_bytes([p[0], p[1]]) == 3)
                .then(|| u32::from_be_bytes([p[2], p[3], p[4], p[5]]))
        });
        assert_eq!(max, Some(want));
    }
}

#[tokio::test]
async fn a_preface_or_head_that_trickles_in_is_served() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[]).await;
    // HTTP/1.1 in three pieces, the first too short to tell it from h2c.
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    for part in [
        &b"GE"[..],
        b"T /slow HTTP/1.1\r\nHo",
        b"st: h\r\nConnection: close\r\n\r\n",
    ] {
        s.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = String::from_utf8_lossy(&read_to_close(&mut s, WAIT).await.unwrap()).into_owned();
    assert_eq!(status_of(&got), 200, "{got}");
    assert!(got.contains("/slow"), "{got}");

    // The h2c preface split in two: still detected, the server answers
    // with its SETTINGS.
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    s.write_all(&PREFACE[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(&PREFACE[10..]).await.unwrap();
    let mut head = [0u8; 9];
    within(WAIT, s.read_exact(&mut head)).await.unwrap();
    assert_eq!(head[3], 4, "HTTP/2 not detected: {head:?}");
}

#[tokio::test]
async fn an_http10_request_without_host_reaches_the_app_with_one() {
    let (app, log) = spawn_raw_app(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false).await;
    let pg = start_podgate(app, &[]).await;
    let resp = raw(pg.addr, b"GET /old HTTP/1.0\r\n\r\n").await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&resp)), 200);
    let seen = log.lock().unwrap().clone();
    let host = header_of(&seen[0].head, "host");
    assert_eq!(host, Some(pg.addr.to_string()), "{}", seen[0].head);
}

/// Starts an upload of `len` bytes and sends all but its last byte.
async fn start_upload(pg: &Podgate, len: usize) -> TcpStream {
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    let head = format!(
        "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![b'a'; len - 1]).await.unwrap();
    s
}

/// One whole upload; its status. Boxed: read_to_close's 64 KiB buffer
/// would otherwise sit on the test thread's stack for each caller.
async fn upload(pg: &Podgate, len: usize) -> u16 {
    Box::pin(async {
        let mut s = start_upload(pg, len).await;
        s.write_all(b"a").await.unwrap();
        let got = read_to_close(&mut s, WAIT).await.unwrap();
        status_of(&String::from_utf8_lossy(&got))
    })
    .await
}

#[tokio::test]
async fn buffered_bodies_share_one_memory_budget() {
    Box::pin(budget_case()).await
}

async fn budget_case() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(
        app,
        &[("BUFFER_REQUESTS", "100k"), ("BUFFER_MEMORY", "64k")],
    )
    .await;
    // One upload holds 48 KiB of the 64 KiB while it waits for its last byte.
    let mut held = start_upload(&pg, 48 * 1024).await;
    // Another of 32 KiB cannot fit once the first is buffered: 503.
    let refused = within(WAIT, async {
        loop {
            let status = upload(&pg, 32 * 1024).await;
            if status == 503 {
                return;
            }
            assert_eq!(status, 200);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    refused.await;
    held.write_all(b"a").await.unwrap();
    let got = read_to_close(&mut held, WAIT).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&got)), 200);
    // The budget is back.
    assert_eq!(upload(&pg, 32 * 1024).await, 200);

    // With a spool directory, a body past the budget goes to disk instead.
    let dir = std::env::temp_dir().join(format!("podgate-budget-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pg = start_podgate(
        app,
        &[
            ("BUFFER_REQUESTS", "100k"),
            ("BUFFER_MEMORY", "64k"),
            ("BUFFER_DIR", dir.to_str().unwrap()),
        ],
    )
    .await;
    let mut held = start_upload(&pg, 48 * 1024).await;
    for _ in 0..20 {
        assert_eq!(upload(&pg, 32 * 1024).await, 200);
    }
    held.write_all(b"a").await.unwrap();
    let got = read_to_close(&mut held, WAIT).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&got)), 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn both_prefix_spellings_work() {
    let dir = std::env::temp_dir().join(format!("podgate-prefix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.css"), "body{}").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let app = spawn_app(move |req: Request<Incoming>| {
        s2.lock().unwrap().push(req.uri().to_string());
        async { Response::new(full(Bytes::from_static(b"app"))) }
    })
    .await;
    let c = client();
    for (static_prefix, strip) in [("/static", "/test01/"), ("/static/", "/test01")] {
        let pg = start_podgate(
            app,
            &[
                ("STATIC_DIR", dir.to_str().unwrap()),
                ("STATIC_PREFIX", static_prefix),
                ("STRIP_PREFIX", strip),
            ],
        )
        .await;
        let r = c
            .get(pg.url("/test01/static/app.css"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{static_prefix} {strip}");
        assert_eq!(r.text().await.unwrap(), "body{}");
        let r = c.get(pg.url("/test01/page")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "app");
        assert_eq!(seen.lock().unwrap().pop().as_deref(), Some("/page"));
        let r = c.get(pg.url("/test012/page")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{static_prefix} {strip}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn client_faults_are_not_counted_as_app_errors() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[("MAX_BODY", "1k")]).await;
    // A chunked body that crosses the limit on its way to the app.
    let mut req =
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'x'; 512]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let resp = raw(pg.addr, &req).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&resp)), 413);
    let m = pg.running.metrics.render();
    assert!(
        m.contains("podgate_client_errors_total{kind=\"body_too_large\"} 1"),
        "{m}"
    );
    assert!(
        !m.contains("podgate_upstream_errors_total{kind=\"body_too_large\"}"),
        "{m}"
    );
}
