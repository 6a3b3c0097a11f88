//! Forwarding behaviour over real sockets: transparency, streaming, upgrades,
//! errors from the app side, the keep-alive race, and the known traps.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Headers podgate is meant to add or change on the way to the app.
const CHANGED: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
    "x-real-ip",
    "x-request-id",
];

fn app_view(doc: &serde_json::Value) -> serde_json::Value {
    let headers: Vec<_> = doc["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !CHANGED.contains(&h[0].as_str().unwrap()))
        .cloned()
        .collect();
    serde_json::json!({
        "method": doc["method"], "target": doc["target"], "version": doc["version"],
        "headers": headers, "body": doc["body"],
    })
}

/// The same raw requests sent directly to the app and through podgate: what
/// the app saw must match, except for the headers podgate exists to set.
#[tokio::test]
async fn transparency_table() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[]).await;
    let cases: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n",
        b"GET /a%2Fb/./../c%20d;p=1?q=1&q=2&e=%E2%82%AC&sp=a+b&&x= HTTP/1.1\r\nHost: shop.example:8443\r\nConnection: close\r\n\r\n",
        b"GET //double//slashes/?a=b/../c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"POST /submit?x=1 HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello=world",
        b"PUT /item/7 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        b"PATCH /item/7 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        b"DELETE /item/7 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"OPTIONS /item HTTP/1.1\r\nHost: h\r\nOrigin: https://a.example\r\nConnection: close\r\n\r\n",
        b"PURGE /cache/key HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"GET /cookies HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nCookie: b=2\r\nAccept: */*\r\nAccept-Language: en, fr;q=0.5\r\nConnection: close\r\n\r\n",
        b"GET /old HTTP/1.0\r\nHost: h\r\n\r\n",
    ];
    for case in cases {
        let direct = raw(app, case).await.unwrap();
        let proxied = raw(pg.addr, case).await.unwrap();
        let d = String::from_utf8_lossy(&direct);
        let p = String::from_utf8_lossy(&proxied);
        assert_eq!(
            status_of(&d),
            status_of(&p),
            "status for {}",
            String::from_utf8_lossy(case)
        );
        let dj: serde_json::Value =
            serde_json::from_str(d.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        let pj: serde_json::Value =
            serde_json::from_str(p.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        let mut dv = app_view(&dj);
        let pv = app_view(&pj);
        // hyper's server speaks 1.1 to the app for a 1.0 client, and the app
        // always gets the body framed by podgate: these are the documented
        // differences, nothing else.
        if dv["version"] == "HTTP/1.0" {
            dv["version"] = "HTTP/1.1".into();
        }
        let strip = |v: &serde_json::Value| -> serde_json::Value {
            let mut v = v.clone();
            let hs: Vec<_> = v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| {
                    !["connection", "transfer-encoding", "content-length"]
                        .contains(&h[0].as_str().unwrap())
                })
                .cloned()
                .collect();
            v["headers"] = hs.into();
            v
        };
        assert_eq!(
            strip(&dv),
            strip(&pv),
            "app view for {}",
            String::from_utf8_lossy(case)
        );
        // Host reaches the app unchanged.
        let host = |j: &serde_json::Value| {
            j["headers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h[0] == "host")
                .map(|h| h[1].clone())
        };
        assert_eq!(host(&dj), host(&pj));
    }
}

#[tokio::test]
async fn response_details_survive() {
    let app = spawn_app(|req: Request<Incoming>| async move {
        let mut r = Response::new(full(""));
        match req.uri().path() {
            "/cookies" => {
                r.headers_mut()
                    .append("set-cookie", "a=1; Path=/".parse().unwrap());
                r.headers_mut()
                    .append("set-cookie", "b=2; HttpOnly".parse().unwrap());
                *r.body_mut() = full("ok");
            }
            "/204" => *r.status_mut() = StatusCode::NO_CONTENT,
            "/304" => {
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
            }
            "/head" => {
                *r.body_mut() = full("twelve bytes");
            }
            _ => *r.status_mut() = StatusCode::NOT_FOUND,
        }
        r
    })
    .await;
    let pg = start_podgate(app, &[]).await;
    let c = client();
    let r = c.get(pg.url("/cookies")).send().await.unwrap();
    let cookies: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; HttpOnly"]);
    assert!(r.headers().get("x-request-id").is_some());

    for (path, status) in [("/204", 204), ("/304", 304)] {
        let text = String::from_utf8_lossy(
            &raw(
                pg.addr,
                format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap(),
        )
        .into_owned();
        assert_eq!(status_of(&text), status);
        assert!(
            text.ends_with("\r\n\r\n"),
            "no body after {status}: {text:?}"
        );
        assert!(header_of(&text, "transfer-encoding").is_none());
    }
    let text = String::from_utf8_lossy(
        &raw(
            pg.addr,
            b"HEAD /head HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap(),
    )
    .into_owned();
    assert_eq!(status_of(&text), 200);
    assert_eq!(header_of(&text, "content-length").as_deref(), Some("12"));
    assert!(text.ends_with("\r\n\r\n"), "HEAD has no body: {text:?}");
}

#[tokio::test]
async fn trailers_pass_through_chunked_bodies() {
    let (app, log) = spawn_raw_app(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n2\r\nok\r\n0\r\nx-checksum: abc\r\n\r\n",
        true,
    )
    .await;
    let pg = start_podgate(app, &[]).await;
    let resp = raw(
        pg.addr,
        b"POST /t HTTP/1.1\r\nHost: h\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 1\r\n\r\n",
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert_eq!(status_of(&text), 200);
    assert!(
        text.contains("x-checksum: abc"),
        "response trailer forwarded: {text:?}"
    );
    let rec = log.lock().unwrap()[0].clone();
    assert_eq!(rec.body, b"abc");
    assert!(rec.complete);
}

#[tokio::test]
async fn expect_100_continue_is_answered_and_body_forwarded() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[]).await;
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = within(WAIT, s.read(&mut buf)).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"));
    s.write_all(b"hello").await.unwrap();
    let rest = read_to_close(&mut s, WAIT).await.unwrap();
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("\"body\":\"hello\""), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("\"expect\""),
        "Expect is not forwarded: {text}"
    );
}

#[tokio::test]
async fn large_upload_and_download_stream_byte_for_byte() {
    const SIZE: usize = 64 << 20;
    let app = spawn_app(|req: Request<Incoming>| async move {
        match req.uri().path() {
            // Echo streams: the body goes back as it arrives.
            "/echo" => Response::new(req.into_body().map_err(|e| e.into()).boxed()),
            _ => {
                let data: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 251) as u8).collect();
                Response::new(full(data))
            }
        }
    })
    .await;
    let pg = start_podgate(app, &[("MAX_BODY", "0")]).await;
    let c = client();
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 253) as u8).collect();
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = c.post(pg.url("/echo")).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let got = r.bytes().await.unwrap();
    assert_eq!(got.len(), SIZE);
    assert!(
        got.as_ref() == data.as_slice(),
        "upload echoed byte for byte"
    );

    let got = c
        .get(pg.url("/download"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.len(), SIZE);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i * 31 % 251) as u8));
}

#[tokio::test]
async fn websocket_echo_is_tunnelled() {
    let app = spawn_app(|mut req: Request<Incoming>| async move {
        let key = req.headers().get("sec-websocket-key").cloned();
        let Some(key) = key else {
            return Response::builder().status(400).body(full("")).unwrap();
        };
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(up) = on.await else { return };
            let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                hyper_util::rt::TokioIo::new(up),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            let (mut tx, mut rx) = ws.split();
            while let Some(Ok(m)) = rx.next().await {
                if m.is_close() {
                    break;
                }
                if tx.send(m).await.is_err() {
                    break;
                }
            }
        });
        Response::builder()
            .status(101)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header(
                "sec-websocket-accept",
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
            )
            .body(full(""))
            .unwrap()
    })
    .await;
    let pg = start_podgate(app, &[("MAX_BODY", "1k")]).await;
    let (mut ws, resp) = within(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{}/ws", pg.addr)),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 101);
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        within(WAIT, ws.next()).await.unwrap().unwrap(),
        Message::text("hello")
    );
    // A tunnel has no body limit: 64 KiB through a 1 KiB MAX_BODY.
    let big = vec![7u8; 64 * 1024];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(
        within(WAIT, ws.next()).await.unwrap().unwrap(),
        Message::binary(big)
    );
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn app_not_listening_is_502_fast_after_it_was_seen_and_503_before() {
    // Reserve a port with nothing on it.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = l.local_addr().unwrap();
    drop(l);
    let pg = start_podgate(dead, &[("CONNECT_TIMEOUT", "1s")]).await;
    let c = client();
    let t = Instant::now();
    let r = c.get(pg.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 503, "app never seen: starting");
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(t.elapsed() < Duration::from_secs(1));

    // An app that was up and went away: 502 within the connect timeout.
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[("CONNECT_TIMEOUT", "1s")]).await;
    wait_ready(&pg).await;
    assert_eq!(c.get(pg.url("/")).send().await.unwrap().status(), 200);
    let pg2 = start_podgate(dead, &[("CONNECT_TIMEOUT", "1s")]).await;
    pg2.running.health.mark_seen();
    let t = Instant::now();
    let r = c.get(pg2.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.text().await.unwrap(), "app is not listening\n");
}

#[tokio::test]
async fn slow_app_is_504_after_the_upstream_timeout() {
    let app = spawn_app(|_req: Request<Incoming>| async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Response::new(full("late"))
    })
    .await;
    let pg = start_podgate(app, &[("UPSTREAM_TIMEOUT", "300ms")]).await;
    let t = Instant::now();
    let r = client().get(pg.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(t.elapsed() >= Duration::from_millis(300) && t.elapsed() < Duration::from_secs(2));
    assert_eq!(r.text().await.unwrap(), "app did not respond in time\n");
}

/// A slow upload is the client's pace (BODY_TIMEOUT), not the app's: the
/// upstream timeout counts from when the body has been sent, as nginx's
/// proxy_read_timeout does.
#[tokio::test]
async fn a_slow_upload_does_not_count_against_the_upstream_timeout() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[("UPSTREAM_TIMEOUT", "300ms")]).await;
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    for part in [&b"abc"[..], b"def", b"ghi", b"jkl"] {
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.write_all(part).await.unwrap();
    }
    let resp = read_to_close(&mut s, WAIT).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert_eq!(status_of(&text), 200, "{text}");
    assert!(text.contains("abcdefghijkl"), "{text}");
}

/// An app that stops taking the request body gets the upstream timeout
/// (nginx: proxy_send_timeout), not an upload that hangs forever.
#[tokio::test]
async fn an_app_that_stops_reading_the_upload_is_504() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Accepts and reads nothing: the socket buffers fill up.
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let pg = start_podgate(app, &[("UPSTREAM_TIMEOUT", "500ms")]).await;
    pg.running.health.mark_seen();
    let t = Instant::now();
    let body = vec![b'x'; 32 << 20];
    let r = client()
        .post(pg.url("/big"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[tokio::test]
async fn malformed_app_response_is_502() {
    for bad in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        b"HTTP/1.1 2000 Weird\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ] {
        let (app, _) = spawn_raw_app(bad, true).await;
        let pg = start_podgate(app, &[]).await;
        pg.running.health.mark_seen();
        let r = client().get(pg.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 502, "for {:?}", String::from_utf8_lossy(bad));
        let body = r.text().await.unwrap();
        assert!(body.starts_with("app "), "short cause, no internals: {body}");
    }
}

#[tokio::test]
async fn http10_app_response_does_not_leak_its_version() {
    let (app, _) = spawn_raw_app(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", true).await;
    let pg = start_podgate(app, &[]).await;
    let text = String::from_utf8_lossy(
        &raw(
            pg.addr,
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap(),
    )
    .into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("ok"));
}

#[tokio::test]
async fn h2c_request_reaches_app_as_http11_with_host() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[]).await;
    let r = h2c_client().get(pg.url("/h2?x=1")).send().await.unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    let doc: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(doc["version"], "HTTP/1.1");
    assert_eq!(doc["target"], "/h2?x=1");
    let host = doc["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "host")
        .unwrap()[1]
        .clone();
    assert_eq!(host, pg.addr.to_string());
}

#[tokio::test]
async fn silent_client_is_closed_after_the_header_timeout() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[("HEADER_TIMEOUT", "500ms")]).await;
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    let t = Instant::now();
    let got = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
    assert!(got.is_empty());
    let e = t.elapsed();
    assert!(
        e >= Duration::from_millis(400) && e < Duration::from_secs(3),
        "closed after {e:?}"
    );
}

#[tokio::test]
async fn slowloris_head_is_cut_off_but_idle_keepalive_lasts_longer() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[("HEADER_TIMEOUT", "500ms"), ("IDLE_TIMEOUT", "3s")]).await;
    // Dribbling a head: cut at the header timeout even though bytes flow.
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    let t = Instant::now();
    let mut closed = false;
    for b in b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa" {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if t.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let rest = read_to_close(&mut s, Duration::from_secs(2)).await.unwrap();
    assert!(closed || rest.is_empty() || t.elapsed() < Duration::from_secs(3));
    assert!(
        t.elapsed() < Duration::from_millis(2900),
        "slow head cut off, took {:?}",
        t.elapsed()
    );

    // A keep-alive connection idle for longer than the header timeout (but
    // shorter than the idle timeout) is still usable.
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = within(WAIT, s.read(&mut buf)).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.write_all(b"GET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let rest = read_to_close(&mut s, WAIT).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&rest)), 200);

    // And closed after the idle timeout.
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let _ = read_to_close(&mut s, Duration::from_secs(8)).await.unwrap();
    let e = t.elapsed();
    assert!(
        e >= Duration::from_millis(2500) && e < Duration::from_secs(6),
        "idle close after {e:?}"
    );
}

/// Reads one response with a Content-Length body from a keep-alive stream.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = header_of(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return String::from_utf8_lossy(&buf[..end + 4 + len]).into_owned();
            }
        }
        let n = within(WAIT, s.read(&mut chunk)).await.unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An idle HTTP/1 keep-alive connection gives up its buffers after
/// PARK_AFTER (podgate "parks" it): the next request on it must be served as
/// usual, including one whose first bytes arrived before the park, and the
/// idle and header timeouts must still apply. The exact times of each
/// verdict are tested on a paused clock in `server`; here the timeouts are
/// far apart, so no wall-clock window is needed.
#[tokio::test]
async fn parked_keepalive_connections_resume_and_keep_their_timeouts() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(
        app,
        &[
            ("PARK_AFTER", "100ms"),
            ("HEADER_TIMEOUT", "1s"),
            ("IDLE_TIMEOUT", "10m"),
        ],
    )
    .await;

    // A pipelined request whose head is cut short: parked with those bytes
    // in hand, it completes later.
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let a = read_response(&mut s).await;
    assert_eq!(status_of(&a), 200, "{a}");
    assert!(a.contains("\"target\":\"/a\""), "{a}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.write_all(b"st: h\r\n\r\n").await.unwrap();
    let b = read_response(&mut s).await;
    assert_eq!(status_of(&b), 200, "{b}");
    assert!(b.contains("\"target\":\"/b\""), "{b}");
    assert!(header_of(&b, "connection").is_none(), "{b}");

    // Parked several times over, still served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.write_all(b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let c = read_response(&mut s).await;
    assert!(c.contains("\"target\":\"/c\""), "{c}");

    // A head that starts after the park and stalls: cut at the header
    // timeout (1 s), not left to the idle timeout (10 min).
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.write_all(b"GET /d HTTP/1.1\r\n").await.unwrap();
    let rest = within(WAIT, read_to_close(&mut s, Duration::from_secs(600)))
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&rest).contains("/d"));

    // And a parked connection is closed at the idle timeout.
    let pg = start_podgate(
        app,
        &[
            ("PARK_AFTER", "100ms"),
            ("HEADER_TIMEOUT", "10m"),
            ("IDLE_TIMEOUT", "1s"),
        ],
    )
    .await;
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    s.write_all(b"GET /e HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let got = within(WAIT, read_to_close(&mut s, Duration::from_secs(600)))
        .await
        .unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&got)), 200);
}

/// Draining closes parked connections at once instead of waiting for them.
#[tokio::test]
async fn drain_closes_parked_connections() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[("PARK_AFTER", "100ms"), ("IDLE_TIMEOUT", "10m")]).await;
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&read_response(&mut s).await), 200);
    tokio::time::sleep(Duration::from_millis(500)).await; // parked by now
    pg.running.stop(false);
    let rest = within(WAIT, read_to_close(&mut s, Duration::from_secs(600)))
        .await
        .unwrap();
    assert!(rest.is_empty());
}

/// The app closes idle connections after 1 s; requests arrive with pauses
/// around 1 s. No client may see a 502 for the race.
#[tokio::test]
async fn keepalive_race_never_shows_a_502() {
    let served = Arc::new(AtomicUsize::new(0));
    let s2 = served.clone();
    let app = spawn_app_with_idle(
        move |req: Request<Incoming>| {
            let s = s2.clone();
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                Response::new(full(body))
            }
        },
        Duration::from_secs(1),
    )
    .await;
    // A pool that keeps connections far longer than the app: the worst case.
    let pg = start_podgate(app, &[("POOL_IDLE_TIMEOUT", "30s")]).await;
    let c = client();
    let mut bad = Vec::new();
    for (i, pause_ms) in [950u64, 1000, 1010, 1030, 990, 1050, 1000, 1020]
        .iter()
        .enumerate()
    {
        tokio::time::sleep(Duration::from_millis(*pause_ms)).await;
        let r = if i % 2 == 0 {
            c.get(pg.url("/g")).send().await.unwrap()
        } else {
            c.put(pg.url("/p"))
                .body("payload-xyz")
                .send()
                .await
                .unwrap()
        };
        let status = r.status();
        let body = r.text().await.unwrap();
        if status != 200 {
            bad.push((i, status, body));
        } else if i % 2 == 1 {
            assert_eq!(body, "payload-xyz", "retried PUT carries its full body");
        }
    }
    assert!(bad.is_empty(), "502s from the keep-alive race: {bad:?}");
    let m = pg.running.metrics.render();
    let retries = m
        .lines()
        .find(|l| l.starts_with("podgate_upstream_retries_total"))
        .unwrap_or("")
        .to_string();
    eprintln!("{retries}; app served {}", served.load(Ordering::SeqCst));
}

#[tokio::test]
async fn client_going_away_cancels_the_app_request() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<Duration>();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let _ = read_request(&mut s, &mut buf).await;
        let t = Instant::now();
        // Never answer; wait for podgate to hang up.
        let mut tmp = [0u8; 16];
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut tmp)).await;
        let _ = tx.send(t.elapsed());
    });
    let pg = start_podgate(app, &[]).await;
    let mut s = TcpStream::connect(pg.addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);
    let waited = within(WAIT, rx).await.unwrap();
    assert!(
        waited < Duration::from_secs(2),
        "app saw the cancel after {waited:?}"
    );
}

#[tokio::test]
async fn http10_client_is_served() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[]).await;
    let text = String::from_utf8_lossy(&raw(pg.addr, b"GET /ten HTTP/1.0\r\n\r\n").await.unwrap())
        .into_owned();
    assert_eq!(status_of(&text), 200, "{text}");
    assert!(text.contains("\"target\":\"/ten\""));
}

/// Forces the race deterministically: the app answers the first request on a
/// connection, then closes the connection when the next one arrives, without
/// answering — exactly what a keep-alive timeout firing mid-flight looks like.
#[tokio::test]
async fn reused_connection_dying_before_response_is_retried_only_when_safe() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    let bodies = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let b2 = bodies.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let bodies = b2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let Some(first) = read_request(&mut s, &mut buf).await else {
                    return;
                };
                bodies.lock().unwrap().push(first.body.clone());
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    first.body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.write_all(&first.body).await;
                // Second request on this connection: hang up without a word.
                let _ = read_request(&mut s, &mut buf).await;
            });
        }
    });
    let pg = start_podgate(app, &[("POOL_IDLE_TIMEOUT", "30s")]).await;
    let c = client();
    // Prime a pooled connection.
    assert_eq!(c.get(pg.url("/prime")).send().await.unwrap().status(), 200);
    let r = c.put(pg.url("/p")).body("full-body").send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "idempotent PUT retried on a fresh connection"
    );
    assert_eq!(r.text().await.unwrap(), "full-body");
    // Each connection serves one request: the next request on it hits the
    // race. The retry's new connection is pooled, so both GETs meet one.
    assert_eq!(c.get(pg.url("/g1")).send().await.unwrap().status(), 200);
    assert_eq!(c.get(pg.url("/g2")).send().await.unwrap().status(), 200);
    let m = pg.running.metrics.render();
    assert!(m.contains("podgate_upstream_retries_total 3"), "{m}");
    // A POST may have reached the app: never sent twice.
    assert_eq!(
        c.get(pg.url("/prime-again")).send().await.unwrap().status(),
        200
    );
    let r = c.post(pg.url("/post")).body("once").send().await.unwrap();
    assert_eq!(r.status(), 502);
    let seen_posts = bodies
        .lock()
        .unwrap()
        .iter()
        .filter(|b| b.as_slice() == b"once")
        .count();
    assert!(seen_posts <= 1);
}

/// Sequential requests share one app connection, and the pool closes it once
/// it has been idle for POOL_IDLE_TIMEOUT even when no request comes to find
/// it expired (an app with a 2 s keep-alive must never be the one to close).
#[tokio::test]
async fn pool_reuses_app_connections_and_closes_idle_ones() {
    let (app, mut conns) =
        spawn_keepalive_app(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let pg = start_podgate(app, &[("POOL_IDLE_TIMEOUT", "300ms")]).await;
    let c = client();
    for i in 0..5 {
        let r = c.get(pg.url(&format!("/r{i}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    assert_eq!(
        conns.used.load(Ordering::SeqCst),
        1,
        "one app connection reused"
    );
    // Measured by the app, from its last response: podgate's idle clock
    // starts when it has read that response, never earlier.
    let idle = within(WAIT, conns.closed.recv()).await.unwrap();
    assert!(
        idle >= Duration::from_millis(300),
        "closed after {idle:?} idle, before POOL_IDLE_TIMEOUT"
    );
    // The next request gets a new connection and is answered.
    assert_eq!(c.get(pg.url("/again")).send().await.unwrap().status(), 200);
    assert_eq!(conns.used.load(Ordering::SeqCst), 2);
}

/// A chunked response that ends in trailers also hands its app connection
/// back for reuse (hyper stops reading such a body after the trailers).
#[tokio::test]
async fn connection_is_reused_after_a_response_with_trailers() {
    let (app, conns) = spawn_keepalive_app(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n2\r\nok\r\n0\r\nx-sum: 1\r\n\r\n",
    )
    .await;
    let pg = start_podgate(app, &[("POOL_IDLE_TIMEOUT", "30s")]).await;
    for i in 0..3 {
        let text = String::from_utf8_lossy(
            &raw(
                pg.addr,
                format!(
                    "GET /t{i} HTTP/1.1\r\nHost: h\r\nTE: trailers\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap(),
        )
        .into_owned();
        assert_eq!(status_of(&text), 200, "{text}");
        assert!(text.contains("ok"), "{text}");
    }
    assert_eq!(
        conns.used.load(Ordering::SeqCst),
        1,
        "one app connection reused"
    );
}
