//! A small demo web app that stands in for Django/Flask/gunicorn behind
//! podgate. Written on hyper 1 directly so that it needs nothing beyond
//! podgate's own dependencies.
//!
//! Endpoints:
//!
//! * `GET /`                 — a text page explaining what you see, echoing
//!   the Host, X-Forwarded-*, X-Real-IP and X-Request-Id it received.
//! * `GET /healthz`          — 200 `ok`.
//! * `GET /slow?ms=N`        — sleeps N ms (default 2000, at most 120000).
//! * `GET /download?size=N`  — N bytes (default 10m, at most 2g; suffixes
//!   k/m/g allowed) of a deterministic pattern: byte `i` is `i % 256`.
//! * `POST|PUT /upload`      — streams the request body back unchanged
//!   (Content-Type kept), without buffering it.
//! * `GET /headers`          — JSON: method, path, version, peer, headers.
//! * `GET /ws`               — WebSocket echo of text and binary messages.
//!
//! Anything else is 404 (405 for a known path with the wrong method). Bad
//! input gets a 400 with a one-line reason; nothing here panics on request
//! data.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

const SERVER: &str = "podgate-demo-app";
const DEFAULT_SLOW_MS: u64 = 2_000;
const MAX_SLOW_MS: u64 = 120_000;
const DEFAULT_DOWNLOAD: u64 = 10 << 20;
const MAX_DOWNLOAD: u64 = 2 << 30;
/// Download chunk size; a multiple of 256 so every chunk is the same slice
/// of the pattern.
const CHUNK: usize = 64 * 1024;

const fn pattern() -> [u8; CHUNK] {
    let mut a = [0u8; CHUNK];
    let mut i = 0;
    while i < CHUNK {
        a[i] = i as u8;
        i += 1;
    }
    a
}

static PATTERN: [u8; CHUNK] = pattern();

/// Accepts connections forever; each connection is served on its own task
/// (HTTP/1.1, keep-alive, upgrades enabled for `/ws`).
pub async fn serve(listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "demo app: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| async move {
                Ok::<_, Infallible>(route(req, peer).await)
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .keep_alive(true)
                .header_read_timeout(Duration::from_secs(30));
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await
            {
                tracing::debug!(%peer, error = %e, "demo app: connection ended with an error");
            }
        });
    }
}

async fn route(req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    match req.uri().path() {
        "/" if get => index(&req, peer),
        "/healthz" if get => text(StatusCode::OK, "ok\n"),
        "/slow" if get => slow(&req).await,
        "/download" if get => download(&req),
        "/headers" if get => headers_json(&req, peer),
        "/ws" if *req.method() == Method::GET => websocket(req),
        "/upload" if matches!(*req.method(), Method::POST | Method::PUT) => upload(req),
        "/" | "/healthz" | "/slow" | "/download" | "/headers" | "/ws" => {
            method_not_allowed("GET, HEAD")
        }
        "/upload" => method_not_allowed("POST, PUT"),
        _ => text(
            StatusCode::NOT_FOUND,
            format!(
                "404 not found: {}\nTry / for the list of endpoints.\n",
                req.uri().path()
            ),
        ),
    }
}

// ---------------------------------------------------------------- responses

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn with_type(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::SERVER, HeaderValue::from_static(SERVER));
    r
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", full(body))
}

fn bad_request(msg: String) -> Response<Body> {
    text(StatusCode::BAD_REQUEST, format!("400 bad request: {msg}\n"))
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("405 method not allowed; use {allow}\n"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

// ------------------------------------------------------------ query parsing

/// The raw value of `name` in the query string, if present.
fn query_param<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

// ----------------------------------------------------------------- handlers

fn header_str(headers: &HeaderMap, name: &str) -> String {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    if values.is_empty() {
        "(not sent)".to_string()
    } else {
        values.join(", ")
    }
}

fn index(req: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let h = req.headers();
    let forwarded = h.contains_key("x-forwarded-for");
    let mut page = String::with_capacity(4096);
    page.push_str(
        "podgate demo app\n\
         ================\n\n\
         This page is served by a small demo web app that stands in for your\n\
         Django/Flask app. In a pod it would listen on 127.0.0.1:8000 and podgate,\n\
         the sidecar in front of it, would receive the client traffic and forward\n\
         it. Below is the request exactly as it reached the app.\n\n",
    );
    page.push_str(&format!(
        "  method, target      {} {} {:?}\n",
        req.method(),
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
        req.version()
    ));
    page.push_str(&format!(
        "  TCP peer            {peer}{}\n",
        if forwarded {
            "   (that is podgate: the app never sees the client's socket)"
        } else {
            ""
        }
    ));
    for name in [
        "Host",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "X-Forwarded-Host",
        "X-Forwarded-Port",
        "X-Forwarded-Prefix",
        "X-Real-IP",
        "X-Request-Id",
    ] {
        page.push_str(&format!("  {name:<19} {}\n", header_str(h, name)));
    }
    page.push('\n');
    if forwarded {
        page.push_str(
            "You came through podgate. It kept the Host you asked for, told the app\n\
             who the client is (X-Forwarded-For, X-Real-IP) and how it connected\n\
             (X-Forwarded-Proto/-Host/-Port), and gave the request an id that is also\n\
             on the response and in podgate's access log.\n\n\
             The classic nginx sidecar (`proxy_pass http://127.0.0.1:8000;` and nothing\n\
             else) would have sent this same request with `Host: 127.0.0.1:8000` and\n\
             none of the X-* headers: Django's ALLOWED_HOSTS, build_absolute_uri() and\n\
             request.is_secure() would all have seen the wrong thing.\n\n",
        );
    } else {
        page.push_str(
            "No X-Forwarded-For: you reached the app directly, not through podgate.\n\
             Try the podgate port instead (8080 with `cargo run --example demo`).\n\n",
        );
    }
    page.push_str(
        "Endpoints of this app:\n\
         \x20 GET  /                  this page\n\
         \x20 GET  /healthz           200 ok\n\
         \x20 GET  /headers           every request header as received, as JSON\n\
         \x20 GET  /slow?ms=N         answers after N ms (default 2000, max 120000)\n\
         \x20 GET  /download?size=N   N bytes (default 10m, max 2g) of a fixed pattern\n\
         \x20 POST /upload            echoes the request body back (PUT too: curl -T)\n\
         \x20 GET  /ws                WebSocket echo\n",
    );
    text(StatusCode::OK, page)
}

async fn slow(req: &Request<Incoming>) -> Response<Body> {
    let ms = match query_param(req, "ms") {
        None | Some("") => DEFAULT_SLOW_MS,
        Some(v) => match v.parse::<u64>() {
            Ok(ms) => ms.min(MAX_SLOW_MS),
            Err(_) => {
                return bad_request(format!(
                    "ms={v:?} is not a whole number of milliseconds (e.g. /slow?ms=500)"
                ))
            }
        },
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    text(StatusCode::OK, format!("slept {ms} ms\n"))
}

/// The download body: `remaining` bytes of the pattern, one chunk a poll.
struct Pattern {
    remaining: u64,
}

impl http_body::Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = this.remaining.min(CHUNK as u64) as usize;
        this.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&PATTERN[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn download(req: &Request<Incoming>) -> Response<Body> {
    let size = match query_param(req, "size") {
        None | Some("") => DEFAULT_DOWNLOAD,
        Some(v) => match podgate::config::parse_size(v) {
            Some(n) => n.min(MAX_DOWNLOAD),
            None => {
                return bad_request(format!(
                    "size={v:?} is not a size such as 1048576, 512k, 10m or 1g"
                ))
            }
        },
    };
    let body = Pattern { remaining: size }
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut r = with_type(StatusCode::OK, "application/octet-stream", body);
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    r
}

fn upload(req: Request<Incoming>) -> Response<Body> {
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let content_length = req.headers().get(header::CONTENT_LENGTH).cloned();
    // The request body becomes the response body: hyper pulls it from the
    // client as fast as it can write it back, so nothing is buffered whole.
    let mut r = Response::new(req.into_body().boxed_unsync());
    let h = r.headers_mut();
    h.insert(header::SERVER, HeaderValue::from_static(SERVER));
    h.insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or_else(|| HeaderValue::from_static("application/octet-stream")),
    );
    if let Some(len) = content_length {
        h.insert(header::CONTENT_LENGTH, len);
    }
    r
}

fn headers_json(req: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let mut headers = serde_json::Map::new();
    for name in req.headers().keys() {
        let values: Vec<serde_json::Value> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned().into())
            .collect();
        let value = match <[serde_json::Value; 1]>::try_from(values) {
            Ok([one]) => one,
            Err(many) => serde_json::Value::Array(many),
        };
        headers.insert(name.as_str().to_string(), value);
    }
    let doc = serde_json::json!({
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "version": format!("{:?}", req.version()),
        "peer": peer.to_string(),
        "headers": headers,
    });
    let mut body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    body.push(b'\n');
    with_type(StatusCode::OK, "application/json", full(body))
}

/// `true` when a comma-separated header contains `token` (any case).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn websocket(mut req: Request<Incoming>) -> Response<Body> {
    let h = req.headers();
    if !has_token(h, header::UPGRADE, "websocket") || !has_token(h, header::CONNECTION, "upgrade") {
        return bad_request(
            "/ws is a WebSocket endpoint: send `Connection: Upgrade` and `Upgrade: websocket`"
                .to_string(),
        );
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        let mut r = text(
            StatusCode::UPGRADE_REQUIRED,
            "426 upgrade required: only Sec-WebSocket-Version 13 is supported\n",
        );
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return r;
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return bad_request("missing Sec-WebSocket-Key".to_string());
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot derive the accept key\n",
        );
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "demo app: websocket upgrade failed");
                return;
            }
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        // Pings are answered and a Close is returned by tungstenite itself;
        // the stream ends once the closing handshake is done.
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "demo app: websocket ended");
                    break;
                }
            }
        }
    });

    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    h.insert(header::SERVER, HeaderValue::from_static(SERVER));
    r
}
