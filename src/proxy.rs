//! The forwarding service: requests to the app over the [`crate::upstream`]
//! pool, plus the upgrade tunnel and the keep-alive-race retry.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use crate::body::{self, Body};
use crate::ctx::{ConnInfo, UpgradeRequested, UpstreamTiming};
use crate::error::{classify_send_error, find_cause, ProxyError};
use crate::health::AppHealth;
use crate::metrics::Metrics;
use crate::upstream::{Pool, SendError, UpstreamBody};

/// Bodies of idempotent requests up to this size are buffered so that a
/// request lost to the keep-alive race can be sent again, whole.
const REPLAY_LIMIT: u64 = 64 * 1024;

#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    upstream_timeout: Duration,
    health: Arc<AppHealth>,
    metrics: Arc<Metrics>,
    tunnels: Tunnels,
}

/// Where tunnels run: tracked for the drain, and closed together when the
/// shutdown timeout is over.
#[derive(Clone)]
pub struct Tunnels {
    pub tracker: TaskTracker,
    pub close: CancellationToken,
    pub idle_timeout: Duration,
}

/// What the proxy needs from the configuration.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub app_addr: SocketAddr,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle: usize,
}

impl Proxy {
    pub fn new(
        cfg: ProxyConfig,
        health: Arc<AppHealth>,
        metrics: Arc<Metrics>,
        tunnels: Tunnels,
    ) -> Self {
        let pool = Pool::new(
            cfg.app_addr,
            cfg.connect_timeout,
            cfg.pool_idle_timeout,
            cfg.pool_max_idle,
        );
        Self {
            inner: Arc::new(Inner {
                pool,
                upstream_timeout: cfg.upstream_timeout,
                health,
                metrics,
                tunnels,
            }),
        }
    }
}

impl Service<Request<Body>> for Proxy {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            let started = Instant::now();
            let mut resp = match forward(&inner, req).await {
                Ok(r) => r,
                Err(e) => {
                    if e.is_upstream() {
                        inner.metrics.upstream_error(e.kind());
                        let cause = std::error::Error::source(&e)
                            .map(|s| s.to_string())
                            .unwrap_or_default();
                        tracing::warn!(error = %e, cause, "request to app failed");
                    } else {
                        // The client's fault (a body too large or broken):
                        // not something the app did.
                        inner.metrics.client_error(e.kind());
                    }
                    e.to_response()
                }
            };
            resp.extensions_mut()
                .insert(UpstreamTiming(started.elapsed()));
            Ok(resp)
        })
    }
}

/// The request parts kept for a retry.
struct Replay {
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
    body: Bytes,
}

async fn forward(inner: &Inner, mut req: Request<Body>) -> Result<Response<Body>, ProxyError> {
    let upgrade = req.extensions_mut().remove::<UpgradeRequested>();
    let client_upgrade = match upgrade {
        Some(UpgradeRequested(offered)) => {
            // The tunnel keeps the client connection's slot until it closes.
            let conn = req.extensions().get::<Arc<ConnInfo>>().cloned();
            Some(ClientUpgrade {
                on: hyper::upgrade::on(&mut req),
                offered,
                conn,
            })
        }
        None => None,
    };
    let upgrade = client_upgrade.is_some();

    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    // Origin-form: the app is not a proxy, and Host is already the client's.
    *req.uri_mut() = Uri::from(path.clone());
    // The app always speaks HTTP/1.1 with podgate, whatever the client spoke.
    *req.version_mut() = Version::HTTP_11;

    // Decide whether this request could be sent twice, and make that possible.
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    let mut replay = None;
    let wants_replay = idempotent
        && !upgrade
        && (req.body().is_end_stream()
            || req
                .body()
                .size_hint()
                .upper()
                .is_some_and(|n| n <= REPLAY_LIMIT));
    if wants_replay {
        let (parts, b) = req.into_parts();
        let bytes = if b.is_end_stream() {
            Bytes::new()
        } else {
            b.collect()
                .await
                .map_err(crate::error::classify_body_error)?
                .to_bytes()
        };
        replay = Some(Replay {
            method: parts.method.clone(),
            path: path.clone(),
            headers: parts.headers.clone(),
            body: bytes.clone(),
        });
        let b = if bytes.is_empty() {
            body::empty()
        } else {
            body::full(bytes)
        };
        req = Request::from_parts(parts, b);
    }

    // The app cannot be late while the client is still uploading: that pace
    // is BODY_TIMEOUT's. The response clock starts when the body is sent
    // (nginx's proxy_read_timeout counts the same way).
    let (req, upload) = if req.body().is_end_stream() {
        (req, None)
    } else {
        let upload = Arc::new(Upload {
            start: std::time::Instant::now(),
            moved: std::sync::atomic::AtomicU64::new(0),
            client_turn: std::sync::atomic::AtomicBool::new(false),
            done: tokio::sync::Notify::new(),
        });
        let state = Uploading(upload.clone());
        let req = req.map(|inner| body::boxed(UploadBody { inner, state }));
        (req, Some(upload))
    };
    let sent = after_body(inner.pool.send(req), upload, inner.upstream_timeout).await;
    let resp = match sent {
        Err(_) => return Err(ProxyError::ResponseTimeout),
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => match replay {
            Some(r) if is_retryable(&e) => {
                tracing::debug!(error = %e, "pooled connection to app failed before any response; retrying on a fresh one");
                inner.metrics.upstream_retry();
                // Boxed, like any rare path: it would size every request's future.
                let retry = Box::pin(send_fresh(inner, r));
                match tokio::time::timeout(inner.upstream_timeout, retry).await {
                    Err(_) => return Err(ProxyError::ResponseTimeout),
                    Ok(Ok(resp)) => resp,
                    Ok(Err(e)) => return Err(classify_send_error(e, inner.health.seen())),
                }
            }
            _ => return Err(classify_send_error(e, inner.health.seen())),
        },
    };
    inner.health.mark_seen();
    respond(inner, resp, client_upgrade)
}

/// A reused connection that died before any response byte: the keep-alive
/// race (the app closed it while the request was on its way).
/// The upload to the app: when it last moved, and a signal when it is gone
/// (sent whole, or dropped by hyper).
struct Upload {
    start: std::time::Instant,
    /// Milliseconds since `start` when the body last handed hyper a frame.
    moved: std::sync::atomic::AtomicU64,
    /// The body is waiting for the client: not the app's pause.
    client_turn: std::sync::atomic::AtomicBool,
    done: tokio::sync::Notify,
}

impl Upload {
    fn idle(&self) -> Duration {
        if self.client_turn.load(std::sync::atomic::Ordering::Relaxed) {
            return Duration::ZERO;
        }
        let moved = self.moved.load(std::sync::atomic::Ordering::Relaxed);
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(moved))
    }
}

/// Keeps [`Upload`] informed from inside the request body.
struct Uploading(Arc<Upload>);

impl Uploading {
    fn polled(&self, client_turn: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.0.client_turn.store(client_turn, Relaxed);
        if !client_turn {
            let ms = self.0.start.elapsed().as_millis() as u64;
            self.0.moved.store(ms, Relaxed);
        }
    }
}

impl Drop for Uploading {
    fn drop(&mut self) {
        // Stores a permit if nobody waits yet.
        self.0.done.notify_one();
    }
}

pin_project_lite::pin_project! {
    struct UploadBody {
        #[pin]
        inner: Body,
        state: Uploading,
    }
}

impl HttpBody for UploadBody {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        this.state.polled(r.is_pending());
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// `fut` with `limit` counted from when the request body was sent, or at
/// once when there is none. While the body is on its way, `limit` bounds a
/// pause of the app in taking it (nginx: proxy_send_timeout); the client's
/// own pauses are BODY_TIMEOUT's.
async fn after_body<F: Future>(
    fut: F,
    upload: Option<Arc<Upload>>,
    limit: Duration,
) -> Result<F::Output, ()> {
    let Some(upload) = upload else {
        return tokio::time::timeout(limit, fut).await.map_err(|_| ());
    };
    // One timer, moved as the upload goes: as cheap as a plain timeout.
    tokio::pin!(fut);
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    let mut sent = false;
    loop {
        tokio::select! {
            r = &mut fut => return Ok(r),
            _ = upload.done.notified(), if !sent => {
                sent = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + limit);
            }
            _ = &mut deadline => {
                let idle = upload.idle();
                if sent || idle >= limit {
                    return Err(());
                }
                deadline.as_mut().reset(tokio::time::Instant::now() + (limit - idle));
            }
        }
    }
}

fn is_retryable(e: &SendError) -> bool {
    let SendError::Request {
        error,
        reused: true,
    } = e
    else {
        return false;
    };
    if error.is_incomplete_message() || error.is_canceled() {
        return true;
    }
    find_cause::<io::Error>(error).is_some_and(|io| {
        matches!(
            io.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::UnexpectedEof
        )
    })
}

/// Sends a replayed request on a brand-new connection.
async fn send_fresh(inner: &Inner, r: Replay) -> Result<Response<UpstreamBody>, SendError> {
    let mut req = Request::new(if r.body.is_empty() {
        body::empty()
    } else {
        body::full(r.body)
    });
    *req.method_mut() = r.method;
    *req.uri_mut() = Uri::from(r.path);
    *req.headers_mut() = r.headers;
    inner.pool.send_on_new(req).await
}

/// The client side of an upgrade podgate forwarded.
struct ClientUpgrade {
    on: hyper::upgrade::OnUpgrade,
    /// The `Upgrade` value the app was offered.
    offered: http::HeaderValue,
    conn: Option<Arc<ConnInfo>>,
}

fn respond(
    inner: &Inner,
    mut resp: Response<UpstreamBody>,
    client_upgrade: Option<ClientUpgrade>,
) -> Result<Response<Body>, ProxyError> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Only to an upgrade podgate forwarded, and only to a protocol that
        // was offered: anything else would tunnel bytes no check has seen.
        let Some(client) = client_upgrade else {
            return Err(ProxyError::BadResponse(
                "101 Switching Protocols without an upgrade request".into(),
            ));
        };
        if !crate::headers::upgrade_matches(
            &client.offered,
            resp.headers().get(http::header::UPGRADE),
        ) {
            return Err(ProxyError::BadResponse(
                "101 Switching Protocols to a protocol that was not offered".into(),
            ));
        }
        let app_upgrade = hyper::upgrade::on(&mut resp);
        let t = inner.tunnels.clone();
        let metrics = inner.metrics.clone();
        inner.tunnels.tracker.spawn(async move {
            metrics.tunnel_opened();
            tunnel(client.on, app_upgrade, &t).await;
            metrics.tunnel_closed();
            // The client connection's slot and count go with the tunnel.
            drop(client.conn);
        });
        let (parts, _) = resp.into_parts();
        return Ok(Response::from_parts(parts, body::empty()));
    }
    // hyper lets Transfer-Encoding win over Content-Length; a response that
    // carries both can be read two ways and is never forwarded.
    if resp.headers().contains_key(http::header::TRANSFER_ENCODING)
        && resp.headers().contains_key(http::header::CONTENT_LENGTH)
    {
        return Err(ProxyError::BadResponse(
            "response with both Content-Length and Transfer-Encoding".into(),
        ));
    }
    // Never leak the app's protocol version (an HTTP/1.0 app) to the client;
    // hyper writes the version that fits the client's connection.
    *resp.version_mut() = Version::HTTP_11;
    let (parts, b) = resp.into_parts();
    let b = if b.is_end_stream() {
        body::empty()
    } else {
        // A stall inside the response body counts like a slow response head.
        body::boxed(body::IdleTimeout::new(b, inner.upstream_timeout))
    };
    Ok(Response::from_parts(parts, b))
}

/// Copies bytes both ways between the upgraded client and app connections
/// until either side closes, no byte moves for the tunnel idle timeout, or
/// the shutdown timeout is over.
async fn tunnel(client: hyper::upgrade::OnUpgrade, app: hyper::upgrade::OnUpgrade, t: &Tunnels) {
    let (client, app) = match tokio::try_join!(client, app) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let clock = Arc::new(TunnelClock {
        epoch: tokio::time::Instant::now(),
        last_ms: std::sync::atomic::AtomicU64::new(0),
    });
    let mut client = Watched {
        io: TokioIo::new(client),
        clock: clock.clone(),
    };
    let mut app = Watched {
        io: TokioIo::new(app),
        clock: clock.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut app);
    tokio::pin!(copy);
    let idle = t.idle_timeout;
    let why = loop {
        let left = idle.saturating_sub(clock.since_last());
        if left.is_zero() {
            break "idle timeout";
        }
        tokio::select! {
            r = &mut copy => {
                match r {
                    Ok((up, down)) => tracing::debug!(bytes_to_app = up, bytes_to_client = down, "tunnel closed"),
                    Err(e) => tracing::debug!(error = %e, "tunnel closed with an error"),
                }
                return;
            }
            _ = tokio::time::sleep(left) => {}
            _ = t.close.cancelled() => break "shutdown timeout",
        }
    };
    tracing::debug!(reason = why, "closing tunnel");
}

/// When a tunnel last moved a byte, either way.
struct TunnelClock {
    epoch: tokio::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl TunnelClock {
    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    fn since_last(&self) -> Duration {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.epoch
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }
}

pin_project_lite::pin_project! {
    /// One side of a tunnel, noting each byte that moves.
    struct Watched<T> {
        #[pin]
        io: T,
        clock: Arc<TunnelClock>,
    }
}

impl<T: tokio::io::AsyncRead> tokio::io::AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.io.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.clock.touch();
        }
        r
    }
}

impl<T: tokio::io::AsyncWrite> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.io.poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.clock.touch();
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}
