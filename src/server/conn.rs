//! One client connection: hyper driven beside its watchdog, parked when
//! idle, and the per-request bookkeeping the watchdog reads.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as HttpBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use tokio::io::{AsyncRead, AsyncWrite};

use super::io::{ActivityIo, FrameScan};
use super::sniff::sniff;
use super::watchdog::{Activity, Verdict, NONE};
use super::{AppService, ResponseBody, ServerConfig};
use crate::body::BoxError;
use crate::ctx::ConnInfo;
use crate::metrics::Metrics;
use crate::tls::Tls;

pub(super) async fn handle<S, B>(
    mut stream: TcpStream,
    info: Arc<ConnInfo>,
    svc: S,
    cfg: &ServerConfig,
    close: CancellationToken,
) where
    S: AppService<B>,
    B: ResponseBody,
{
    // The futures that are only alive for a while (the sniff, a hyper
    // connection being driven) are boxed: the task's own allocation is as
    // large as its largest state, and a parked connection should pay only
    // for the parked one.
    let Some((is_h2, read)) = Box::pin(sniff(&mut stream, cfg.header_timeout, &close)).await else {
        return; // nothing sent in time, or gone
    };
    let activity = Arc::new(Activity::new(is_h2, info.clone()));
    let (mut io, mut hsvc) = wire(stream, read, &activity, info, svc);

    if is_h2 {
        serve_h2(io, hsvc, cfg, &close, &activity).await;
        return;
    }

    let b = http1_builder(cfg);
    loop {
        activity.parking.store(false, Ordering::Relaxed);
        let watchdog = activity.clone().watchdog(cfg, Some(cfg.park_after));
        let mut conn = Box::new(b.serve_connection(TokioIo::new(io), hsvc).with_upgrades());
        let ended = Box::pin(drive(
            Pin::new(&mut *conn),
            watchdog,
            &close,
            &activity,
            |c| c.graceful_shutdown(),
        ))
        .await;
        if ended == Ended::Closed || close.is_cancelled() {
            return;
        }
        // Unboxed and taken apart here, so that neither the box nor the
        // read buffer's 8 KiB allocation lives on while parked.
        let Some(parts) = unbox(conn).into_parts() else {
            return;
        };
        (io, hsvc) = (parts.io.into_inner(), parts.service);
        io.prefix = Bytes::copy_from_slice(&parts.read_buf);
        drop(parts.read_buf);
        if !io.prefix.is_empty() {
            // Part of the next head was already read: serve it, under the
            // header timeout.
            activity.on_read();
            continue;
        }
        // Parked: no hyper state, no buffers, until the client speaks again.
        tracing::trace!("client connection parked");
        let left = activity.idle_left(cfg.idle_timeout);
        let mut one = [0u8; 1];
        tokio::select! {
            // Not `readable()`: its readiness can be stale, peek's is not.
            r = io.inner.peek(&mut one) => match r {
                // Bytes (or EOF) are waiting: a head is under way.
                Ok(_) => activity.on_read(),
                Err(_) => return,
            },
            _ = tokio::time::sleep(left) => {
                tracing::debug!(reason = "idle timeout", "closing client connection");
                return;
            }
            _ = close.cancelled() => return,
        }
    }
}

/// A TLS connection: the handshake (ALPN picks HTTP/2 or HTTP/1.1), then
/// the same serving as plaintext, without parking (the TLS session's state
/// would have to be kept anyway). The handshake and the first request head
/// share one `header_timeout`, as the sniff and the head do in plaintext.
pub(super) async fn handle_tls<S, B>(
    stream: TcpStream,
    info: Arc<ConnInfo>,
    svc: S,
    cfg: &ServerConfig,
    close: CancellationToken,
    tls: &Tls,
    metrics: &Metrics,
) where
    S: AppService<B>,
    B: ResponseBody,
{
    let accepted = Instant::now();
    let handshake = tokio::time::timeout(cfg.header_timeout, tls.acceptor.accept(stream));
    tokio::pin!(handshake);
    let r = tokio::select! {
        r = &mut handshake => r,
        _ = close.cancelled() => match tokio::time::timeout(SHUTDOWN_GRACE, &mut handshake).await {
            Ok(r) => r,
            Err(_) => return,
        },
    };
    let stream = match r {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let reason = crate::tls::handshake_failure_reason(&e);
            tracing::debug!(error = %e, reason, "TLS handshake failed");
            metrics.tls_handshake_failed(reason);
            return;
        }
        Err(_) => {
            tracing::debug!(reason = "timeout", "TLS handshake failed");
            metrics.tls_handshake_failed("timeout");
            return;
        }
    };
    let is_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let activity = Arc::new(Activity::since(accepted, is_h2, info.clone()));
    let (io, hsvc) = wire(stream, Bytes::new(), &activity, info, svc);
    if is_h2 {
        serve_h2(io, hsvc, cfg, &close, &activity).await;
        return;
    }
    let watchdog = activity.clone().watchdog(cfg, None);
    let mut conn = Box::pin(
        http1_builder(cfg)
            .serve_connection(TokioIo::new(io), hsvc)
            .with_upgrades(),
    );
    Box::pin(drive(conn.as_mut(), watchdog, &close, &activity, |c| {
        c.graceful_shutdown()
    }))
    .await;
}

/// The socket and the service as hyper gets them, both reporting to the
/// connection's watchdog; `read` is what was read before hyper took over.
fn wire<T, S>(
    stream: T,
    read: Bytes,
    activity: &Arc<Activity>,
    info: Arc<ConnInfo>,
    svc: S,
) -> (ActivityIo<T>, ConnService<S>) {
    let io = ActivityIo {
        inner: stream,
        activity: activity.clone(),
        prefix: read,
        frames: activity.h2.then(FrameScan::default),
    };
    let hsvc = ConnService {
        inner: svc,
        info,
        activity: activity.clone(),
    };
    (io, hsvc)
}

fn http1_builder(cfg: &ServerConfig) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.preserve_header_case(true)
        .header_read_timeout(None)
        // Bounded like the client's; the head limit is max_header_size.
        .max_buf_size((cfg.max_header_bytes + 8192).max(crate::body::READ_BUF_MAX))
        .max_header_size(cfg.max_header_bytes);
    if cfg.max_headers != 100 {
        b.max_headers(cfg.max_headers);
    }
    b
}

async fn serve_h2<T, S, B>(
    io: ActivityIo<T>,
    hsvc: ConnService<S>,
    cfg: &ServerConfig,
    close: &CancellationToken,
    activity: &Arc<Activity>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: AppService<B>,
    B: ResponseBody,
{
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_header_list_size(cfg.max_header_bytes as u32)
        .max_concurrent_streams(cfg.h2_max_streams);
    let watchdog = activity.clone().watchdog(cfg, None);
    let mut conn = Box::pin(b.serve_connection(TokioIo::new(io), hsvc));
    Box::pin(drive(conn.as_mut(), watchdog, close, activity, |c| {
        c.graceful_shutdown()
    }))
    .await;
}

/// Moves a value out of its box and frees the box now; a deref move in
/// the async fn body would keep the allocation until the end of the scope,
/// which here is the whole parked wait (measured: +1 KiB per connection).
#[allow(clippy::boxed_local)]
fn unbox<T>(b: Box<T>) -> T {
    *b
}

/// How [`drive`] ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The connection is finished (closed, timed out or failed).
    Closed,
    /// The idle connection was handed back without closing the socket.
    Parked,
}

/// How long a connection accepted before shutdown may take to deliver its
/// first request before it is closed anyway.
pub(super) const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Polls a connection to completion, closing it gracefully on shutdown and
/// dropping it when the watchdog fires. On shutdown, a connection that has
/// not delivered its first request yet gets [`SHUTDOWN_GRACE`] to do so:
/// hyper would otherwise close it before reading bytes that are already on
/// their way, and the client would see a reset.
///
/// When the watchdog says park, hyper is asked to end the idle connection
/// and, once it has, `Ended::Parked` tells the caller to take the socket
/// back with `into_parts`.
async fn drive<C, W>(
    mut conn: Pin<&mut C>,
    watchdog: W,
    close: &CancellationToken,
    activity: &Activity,
    shutdown: fn(Pin<&mut C>),
) -> Ended
where
    C: Future<Output = Result<(), hyper::Error>>,
    W: Future<Output = Verdict>,
{
    tokio::pin!(watchdog);
    let cancelled = close.cancelled();
    tokio::pin!(cancelled);
    // While a connection waits for its first request during shutdown.
    let mut recheck: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let side = Arc::new(SideWake {
        woken: AtomicBool::new(true),
        task: AtomicWaker::new(),
    });
    let side_waker = Waker::from(side.clone());
    let mut closing_since: Option<Instant> = None;
    let mut shut = false;
    let mut parking = false;
    std::future::poll_fn(|cx| loop {
        // The connection first: what it has read decides the watchdog.
        if let Poll::Ready(r) = conn.as_mut().poll(cx) {
            if let Err(e) = r {
                tracing::debug!(error = %e, "client connection ended with an error");
                return Poll::Ready(Ended::Closed);
            }
            return Poll::Ready(if parking {
                Ended::Parked
            } else {
                Ended::Closed
            });
        }
        side.task.register(cx.waker());
        if !side.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let mut scx = Context::from_waker(&side_waker);
        let mut changed = false;
        if !parking {
            if let Poll::Ready(v) = watchdog.as_mut().poll(&mut scx) {
                match v {
                    Verdict::Close(why) => {
                        tracing::debug!(reason = why, "closing client connection");
                        return Poll::Ready(Ended::Closed);
                    }
                    Verdict::Park => {
                        // hyper closes an idle connection at once; the socket
                        // itself is kept (see `ActivityIo::poll_shutdown`).
                        parking = true;
                        activity.parking.store(true, Ordering::Relaxed);
                        shutdown(conn.as_mut());
                        changed = true;
                    }
                }
            }
        }
        if closing_since.is_none() && cancelled.as_mut().poll(&mut scx).is_ready() {
            closing_since = Some(Instant::now());
            changed = true;
        }
        if let (Some(since), false) = (closing_since, shut) {
            if activity.h2
                || activity.served_one.load(Ordering::Relaxed)
                || since.elapsed() >= SHUTDOWN_GRACE
            {
                shut = true;
                shutdown(conn.as_mut());
                changed = true;
            } else {
                // Look again every 5 ms until the first request or the grace
                // is over.
                let tick = recheck
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(5))));
                if tick.as_mut().poll(&mut scx).is_ready() {
                    tick.as_mut()
                        .reset(Instant::now() + Duration::from_millis(5));
                    changed = true;
                }
            }
        }
        if !changed {
            return Poll::Pending;
        }
        // Something moved: poll the connection and everything else again.
        side.woken.store(true, Ordering::Release);
    })
    .await
}

/// Wakes a connection's task on behalf of its watchdog and the shutdown
/// signal, and notes that it did, so that [`drive`] polls those only after
/// such a wake-up rather than on every socket wake-up (polled each time,
/// they cost about 2 % of the instructions per request).
struct SideWake {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl std::task::Wake for SideWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// The hyper-facing service of one connection: tags requests with the
/// connection's facts and keeps the watchdog informed.
struct ConnService<S> {
    inner: S,
    info: Arc<ConnInfo>,
    activity: Arc<Activity>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ActiveBody<B>>;
    type Error = Infallible;
    type Future = ConnFuture<tower::util::Oneshot<S, Request<Incoming>>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.info.clone());
        self.activity.begin();
        ConnFuture {
            fut: self.inner.clone().oneshot(req),
            guard: Some(RequestGuard::new(self.activity.clone())),
        }
    }
}

pin_project! {
    pub struct ConnFuture<F> {
        #[pin]
        fut: F,
        guard: Option<RequestGuard>,
    }
}

impl<F, B> Future for ConnFuture<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<ActiveBody<B>>, Infallible>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(resp) = std::task::ready!(this.fut.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(Ok(resp.map(|inner| ActiveBody { inner, guard })))
    }
}

/// Marks a request finished when its response body is done or dropped. On
/// HTTP/2 it also carries the stream's send clock.
pub struct RequestGuard {
    activity: Arc<Activity>,
    /// When the body last handed out data that has not been taken since
    /// (`NONE` while the body itself is waiting); HTTP/2 only.
    pub(super) clock: Option<Arc<AtomicU64>>,
}

impl RequestGuard {
    pub(super) fn new(activity: Arc<Activity>) -> Self {
        let clock = activity.h2.then(|| {
            let c = Arc::new(AtomicU64::new(NONE));
            if let Ok(mut streams) = activity.streams.lock() {
                streams.retain(|w| w.strong_count() > 0);
                streams.push(Arc::downgrade(&c));
            }
            c
        });
        Self { activity, clock }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.activity.end();
    }
}

pin_project! {
    /// A response body that keeps its request counted as in flight and, on
    /// HTTP/2, tells the watchdog how long its data has waited for the
    /// client's flow-control window.
    pub struct ActiveBody<B> {
        #[pin]
        inner: B,
        guard: Option<RequestGuard>,
    }
}

impl<B: HttpBody<Data = Bytes>> HttpBody for ActiveBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let clock = this
            .guard
            .as_ref()
            .and_then(|g| Some((g.clock.as_ref()?, &g.activity)));
        if let Some((c, _)) = clock {
            c.store(NONE, Ordering::Relaxed);
        }
        let r = this.inner.poll_frame(cx);
        if let (Some((c, a)), Poll::Ready(Some(Ok(_)))) = (clock, &r) {
            // Polled again only once the client has window for more.
            c.store(a.now_ms(), Ordering::Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
