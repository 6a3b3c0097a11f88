//! Shared harness for behaviour tests over real sockets on loopback: apps
//! that stand in for the upstream, podgate started in-process on port 0, and
//! raw and high-level clients. Every wait is bounded so a bug fails fast.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const WAIT: Duration = Duration::from_secs(10);

/// Bounded await: a hang is a test failure, not a stuck CI.
pub async fn within<F: Future>(d: Duration, f: F) -> F::Output {
    tokio::time::timeout(d, f).await.expect("timed out")
}

pub type AppBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn full(b: impl Into<Bytes>) -> AppBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// A hyper app on 127.0.0.1:0 answering with `handler`.
pub async fn spawn_app<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<AppBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_app_on(listener, handler, None);
    addr
}

/// Like [`spawn_app`], closing idle keep-alive connections after `idle`
/// (gunicorn and uvicorn do this after 2 s and 5 s).
pub async fn spawn_app_with_idle<F, Fut>(handler: F, idle: Duration) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<AppBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_app_on(listener, handler, Some(idle));
    addr
}

pub fn serve_app_on<F, Fut>(listener: TcpListener, handler: F, idle: Option<Duration>)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<AppBody>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let h = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let h = h.clone();
                    async move { Ok::<_, Infallible>(h(req).await) }
                });
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(TokioTimer::new());
                // hyper's head timeout doubles as its keep-alive timeout: an
                // app that drops idle connections after `idle`.
                b.header_read_timeout(idle);
                let _ = b
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
}

/// An app that echoes what it received as JSON: method, raw target,
/// version, headers in order (lowercase), and the body.
pub async fn spawn_echo_app() -> SocketAddr {
    spawn_app(|req: Request<Incoming>| async move {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let doc = serde_json::json!({
            "method": parts.method.as_str(),
            "target": parts.uri.to_string(),
            "version": format!("{:?}", parts.version),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        });
        let mut resp = Response::new(full(doc.to_string()));
        resp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        resp
    })
    .await
}

/// What a raw app received: the head exactly as sent, and the body bytes
/// (decoded from chunked), or why reading failed.
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub head: String,
    pub body: Vec<u8>,
    pub complete: bool,
}

/// What a [`spawn_keepalive_app`] reports about its connections.
pub struct ConnCounts {
    /// Connections that carried at least one request (readiness checks
    /// connect and close without one, and are not counted).
    pub used: Arc<std::sync::atomic::AtomicUsize>,
    /// For each such connection closed by its peer: how long it had been
    /// idle since the app wrote its last response.
    pub closed: tokio::sync::mpsc::UnboundedReceiver<Duration>,
}

/// A raw keep-alive TCP app that answers every request on a connection with
/// `response`, and counts the connections podgate used.
pub async fn spawn_keepalive_app(response: &'static [u8]) -> (SocketAddr, ConnCounts) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
    let used2 = used.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (used, closed_tx) = (used2.clone(), closed_tx.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut last_answer = None;
                while read_request(&mut s, &mut buf).await.is_some() {
                    if last_answer.is_none() {
                        used.fetch_add(1, Ordering::SeqCst);
                    }
                    if s.write_all(response).await.is_err() {
                        return;
                    }
                    last_answer = Some(std::time::Instant::now());
                }
                if let Some(at) = last_answer {
                    let _ = closed_tx.send(at.elapsed());
                }
            });
        }
    });
    (addr, ConnCounts { used, closed })
}

/// A raw TCP app: records every request it receives and answers each with
/// `response` bytes (written as given), then closes if `close` is set.
pub async fn spawn_raw_app(
    response: &'static [u8],
    close: bool,
) -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let log = log2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let r = tokio::time::timeout(
                        Duration::from_secs(5),
                        read_request(&mut stream, &mut buf),
                    )
                    .await;
                    let Ok(Some(rec)) = r else { return };
                    let complete = rec.complete;
                    log.lock().unwrap().push(rec);
                    if !complete {
                        return;
                    }
                    if stream.write_all(response).await.is_err() {
                        return;
                    }
                    if close {
                        let _ = stream.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    (addr, log)
}

/// Reads one HTTP/1.1 request (head + Content-Length or chunked body) from
/// `stream`, keeping surplus bytes in `buf`. `None` on EOF before a head.
pub async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Received> {
    let head_end = loop {
        let mut headers = [httparse::EMPTY_HEADER; 1024];
        if let Ok(httparse::Status::Complete(n)) = httparse::Request::new(&mut headers).parse(buf) {
            break n;
        }
        let mut tmp = [0u8; 8192];
        let n = stream.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let chunked = header_values(&head, "transfer-encoding")
        .iter()
        .any(|v| v.eq_ignore_ascii_case("chunked"));
    let len = header_of(&head, "content-length").and_then(|v| v.parse::<usize>().ok());
    let mut rec = Received {
        head,
        body: Vec::new(),
        complete: false,
    };
    if chunked {
        loop {
            let line_end = loop {
                if let Some(i) = find(buf, b"\r\n") {
                    break i;
                }
                if !fill(stream, buf).await {
                    return Some(rec);
                }
            };
            let Ok(httparse::Status::Complete((used, size))) =
                httparse::parse_chunk_size(&buf[..line_end + 2])
            else {
                return None;
            };
            let size = usize::try_from(size).ok()?;
            buf.drain(..used);
            if size == 0 {
                // trailers until empty line
                loop {
                    if let Some(i) = find(buf, b"\r\n") {
                        let empty = i == 0;
                        buf.drain(..i + 2);
                        if empty {
                            rec.complete = true;
                            return Some(rec);
                        }
                    } else if !fill(stream, buf).await {
                        return Some(rec);
                    }
                }
            }
            while buf.len() < size + 2 {
                if !fill(stream, buf).await {
                    rec.body.extend_from_slice(&buf[..buf.len().min(size)]);
                    return Some(rec);
                }
            }
            rec.body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
    }
    let len = len.unwrap_or(0);
    while buf.len() < len {
        if !fill(stream, buf).await {
            rec.body = buf.clone();
            return Some(rec);
        }
    }
    rec.body = buf[..len].to_vec();
    buf.drain(..len);
    rec.complete = true;
    Some(rec)
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut tmp = [0u8; 65536];
    match stream.read(&mut tmp).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            true
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// podgate started in-process on loopback port 0.
pub struct Podgate {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub running: podgate::Running,
}

impl Podgate {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }
}

/// Starts podgate in front of `app` with test-friendly defaults, overridden
/// by `vars` (names without the PODGATE_ prefix).
pub async fn start_podgate(app: SocketAddr, vars: &[(&str, &str)]) -> Podgate {
    let mut all: Vec<(String, String)> = vec![
        ("LISTEN".into(), "127.0.0.1:0".into()),
        ("ADMIN_LISTEN".into(), "127.0.0.1:0".into()),
        ("APP_HOST".into(), app.ip().to_string()),
        ("APP_PORT".into(), app.port().to_string()),
        ("DRAIN_DELAY".into(), "0s".into()),
        ("SHUTDOWN_TIMEOUT".into(), "5s".into()),
    ];
    for (k, v) in vars {
        all.retain(|(n, _)| n != k);
        all.push((k.to_string(), v.to_string()));
    }
    let loaded = podgate::config::Config::from_vars(
        all.into_iter().map(|(k, v)| (format!("PODGATE_{k}"), v)),
    )
    .expect("valid test config");
    let running = podgate::start(loaded).await.expect("podgate starts");
    Podgate {
        addr: running
            .proxy_addr
            .or(running.tls_addr)
            .expect("a listener is on"),
        admin: running.admin_addr,
        running,
    }
}

/// Waits until /readyz answers 200.
pub async fn wait_ready(p: &Podgate) {
    within(WAIT, async {
        loop {
            if let Ok((200, _)) = get_raw_status(p.admin, "/readyz").await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

async fn get_raw_status(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let resp = raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    Ok((status_of(&text), text))
}

/// A reqwest client that never goes through an environment proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
}

pub fn h2c_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(WAIT)
        .build()
        .unwrap()
}

/// Sends raw bytes and reads until the server closes (or 5 s pass).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(bytes).await?;
    read_to_close(&mut s, Duration::from_secs(5)).await
}

pub async fn read_to_close(s: &mut TcpStream, limit: Duration) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        let mut tmp = [0u8; 65536];
        loop {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&tmp[..n]),
            }
        }
    })
    .await;
    Ok(out)
}

/// The status code of the first response in `text`, or 0 (the status line
/// is enough: the rest of the head may still be missing).
pub fn status_of(text: &str) -> u16 {
    let mut headers = [httparse::EMPTY_HEADER; 0];
    let mut r = httparse::Response::new(&mut headers);
    let _ = r.parse(text.as_bytes());
    r.code.unwrap_or(0)
}

/// The header fields of the first head in `text`, a request's or a
/// response's, in order, parsed by httparse. A head that does not parse is
/// a failure of the test (podgate must never send one); empty text has none.
pub fn head_fields(text: &str) -> Vec<(String, String)> {
    if text.is_empty() {
        return Vec::new();
    }
    let head = match text.find("\r\n\r\n") {
        Some(i) => text[..i + 4].to_string(),
        None => format!("{text}\r\n\r\n"),
    };
    let mut headers = vec![httparse::EMPTY_HEADER; 1024];
    let fields = if head.starts_with("HTTP/") {
        let mut r = httparse::Response::new(&mut headers);
        r.parse(head.as_bytes()).map(|_| r.headers.to_vec())
    } else {
        let mut r = httparse::Request::new(&mut headers);
        r.parse(head.as_bytes()).map(|_| r.headers.to_vec())
    };
    let fields = fields.unwrap_or_else(|e| panic!("unparsable head ({e}): {head:?}"));
    fields
        .iter()
        .map(|h| {
            let v = String::from_utf8_lossy(h.value).trim().to_string();
            (h.name.to_string(), v)
        })
        .collect()
}

/// All values of a header in a raw head (case-insensitive name).
pub fn header_values(text: &str, name: &str) -> Vec<String> {
    head_fields(text)
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

/// The value of a header in a raw head (case-insensitive name).
pub fn header_of(text: &str, name: &str) -> Option<String> {
    header_values(text, name).into_iter().next()
}

/// Waits until everything podgate forwarded before now has been recorded by
/// a [`spawn_raw_app`]: a marker request goes through podgate (on the pooled
/// app connection, in order after the rest) and is awaited in the app's log,
/// then removed from it. Tests that assert "nothing reached the app" call
/// this instead of sleeping, so a slow machine cannot make them pass
/// without looking.
pub async fn sync_with_app(podgate: SocketAddr, log: &Mutex<Vec<Received>>) {
    const MARK: &str = "GET /__podgate_test_sync HTTP/1.1";
    let resp = raw(
        podgate,
        format!("{MARK}\r\nHost: sync\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("marker request");
    if status_of(&String::from_utf8_lossy(&resp)) != 200 {
        panic!(
            "marker request not forwarded: {}",
            String::from_utf8_lossy(&resp)
        );
    }
    within(WAIT, async {
        loop {
            {
                let mut l = log.lock().unwrap();
                if let Some(i) = l.iter().position(|r| r.head.starts_with(MARK)) {
                    l.remove(i);
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A directory of the test's own under the system temp dir, removed when
/// dropped (also when the test fails).
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let p = std::env::temp_dir().join(format!("podgate-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
