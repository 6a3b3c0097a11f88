//! The client-facing listener: accept loop, connection limit, protocol
//! detection (HTTP/1.x or h2c with prior knowledge), and per-connection
//! timeouts.
//!
//! Timeouts are enforced here rather than by hyper's `header_read_timeout`,
//! because hyper's doubles as the keep-alive idle timeout, and podgate needs
//! the two apart: a short head timeout against slow clients, and an idle
//! timeout longer than the ingress controller's upstream keep-alive, or the
//! ingress meets the keep-alive race and answers 502. A watchdog beside each
//! connection tracks three phases:
//!  * waiting for a request head since its first byte (or since connecting):
//!    `header_timeout`;
//!  * idle between requests: `idle_timeout`; after [`PARK_AFTER`] an
//!    HTTP/1 connection is also "parked": its hyper connection, with the
//!    read and write buffers, is dropped and only the socket is kept until
//!    the client sends again;
//!  * requests in flight: no connection-level limit (body and upstream
//!    timeouts apply to the request itself).
//!
//! The protocol sniff waits at most `header_timeout` for the first bytes,
//! which also closes clients that connect and send nothing (the auto builder
//! of hyper-util would wait forever, hyper #3756).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt};

use crate::body::BoxError;
use crate::metrics::Metrics;

/// Facts about the client connection, put on every request (shared, as
/// `Arc<ConnInfo>`). What the forwarding headers need is worked out once per
/// connection.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The peer address as a header value.
    pub peer_value: http::HeaderValue,
    /// The local port as a header value.
    pub port_value: http::HeaderValue,
    /// Whether the peer is a trusted proxy; set by the first request, since
    /// the trusted ranges are the header layer's configuration.
    pub trusted: std::sync::OnceLock<bool>,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, local: SocketAddr) -> Self {
        Self {
            peer,
            local,
            peer_value: crate::headers::ip_value(peer.ip()),
            port_value: crate::headers::port_value(local.port()),
            trusted: std::sync::OnceLock::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
}

impl ServerConfig {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            header_timeout: c.header_timeout,
            idle_timeout: c.idle_timeout,
            max_header_bytes: c.max_header_bytes,
            max_headers: c.max_headers,
            max_connections: c.max_connections,
        }
    }
}

/// Runs the accept loop until `stop_accepting` is cancelled; then closes the
/// listener and asks every connection to finish (`Connection: close` on
/// HTTP/1.1, GOAWAY on HTTP/2). Connection tasks are spawned on `tracker` so
/// the caller can wait for them to drain.
pub async fn serve<S, B>(
    listener: TcpListener,
    svc: S,
    cfg: ServerConfig,
    metrics: Arc<Metrics>,
    stop_accepting: CancellationToken,
    tracker: TaskTracker,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let cfg = Arc::new(cfg);
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let close_conns = stop_accepting.child_token();
    // Counts as a task until the backlog below has been accepted, so the
    // drain cannot finish before those connections are being served.
    let _serving = tracker.token();
    // The slot permit (if any) is held until the connection ends.
    let spawn_conn = |stream: TcpStream, peer: SocketAddr, permit: Option<OwnedSemaphorePermit>| {
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let (svc, cfg, metrics, close) = (
            svc.clone(),
            cfg.clone(),
            metrics.clone(),
            close_conns.clone(),
        );
        tracker.spawn(async move {
            metrics.connection_opened();
            handle(
                stream,
                Arc::new(ConnInfo::new(peer, local)),
                svc,
                &cfg,
                close,
            )
            .await;
            metrics.connection_closed();
            drop(permit);
        });
    };
    loop {
        // Waiting for a permit leaves further connections in the kernel's
        // backlog instead of exhausting file descriptors.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop_accepting.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop_accepting.cancelled() => break,
        };
        spawn_conn(stream, peer, Some(permit));
    }
    // Connections the kernel has already completed are accepted and served
    // rather than reset by closing the listener under them. tokio's accept
    // would not make the system call once cancelled, so use the std socket.
    if let Ok(std_listener) = listener.into_std() {
        while let Ok((s, peer)) = std_listener.accept() {
            if let Ok(stream) = s.set_nonblocking(true).and_then(|_| TcpStream::from_std(s)) {
                spawn_conn(stream, peer, None);
            }
        }
    }
    tracing::info!("listener closed; finishing open connections");
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads ahead (without consuming) until the bytes tell HTTP/1 from h2c.
async fn sniff_h2(stream: &TcpStream) -> io::Result<bool> {
    let mut buf = [0u8; 24];
    let mut last = 0;
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        if n == last {
            // A partial preface with nothing new: wait a little, not a spin.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        last = n;
    }
}

/// Waits (at most `header_timeout`) for the first bytes and tells whether
/// they are the h2c preface; `None` if nothing usable came. A connection
/// accepted just before shutdown still gets its first request read (within
/// a short grace), not a reset.
async fn sniff(stream: &TcpStream, cfg: &ServerConfig, close: &CancellationToken) -> Option<bool> {
    let sniff = tokio::time::timeout(cfg.header_timeout, sniff_h2(stream));
    tokio::pin!(sniff);
    let r = tokio::select! {
        r = &mut sniff => r,
        _ = close.cancelled() => tokio::time::timeout(SHUTDOWN_GRACE, &mut sniff).await.ok()?,
    };
    r.ok()?.ok()
}

async fn handle<S, B>(
    stream: TcpStream,
    info: Arc<ConnInfo>,
    svc: S,
    cfg: &ServerConfig,
    close: CancellationToken,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    // The futures that are only alive for a while (the sniff, a hyper
    // connection being driven) are boxed: the task's own allocation is as
    // large as its largest state, and a parked connection should pay only
    // for the parked one.
    let Some(is_h2) = Box::pin(sniff(&stream, cfg, &close)).await else {
        return; // nothing sent in time, or gone
    };
    let activity = Arc::new(Activity::new(is_h2));
    let mut io = ActivityIo {
        inner: stream,
        activity: activity.clone(),
        prefix: Bytes::new(),
    };
    let mut hsvc = ConnService {
        inner: svc,
        info,
        activity: activity.clone(),
    };

    if is_h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_header_list_size(cfg.max_header_bytes as u32)
            .max_concurrent_streams(250);
        let watchdog = activity.clone().watchdog(cfg, None);
        let mut conn = Box::pin(b.serve_connection(TokioIo::new(io), hsvc));
        Box::pin(drive(conn.as_mut(), watchdog, &close, &activity, |c| {
            c.graceful_shutdown()
        }))
        .await;
        return;
    }

    let mut b = hyper::server::conn::http1::Builder::new();
    b.preserve_header_case(true)
        .header_read_timeout(None)
        // Bounded like the client's; the head limit is max_header_size.
        .max_buf_size((cfg.max_header_bytes + 8192).max(crate::body::READ_BUF_MAX))
        .max_header_size(cfg.max_header_bytes);
    if cfg.max_headers != 100 {
        b.max_headers(cfg.max_headers);
    }
    loop {
        activity.parking.store(false, Ordering::Relaxed);
        let watchdog = activity.clone().watchdog(cfg, Some(PARK_AFTER));
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

/// How long an HTTP/1 keep-alive connection stays idle before its hyper
/// connection (an 8 KiB read and an 8 KiB write buffer, and its state) is
/// dropped and only the socket is kept, the way nginx frees a keep-alive
/// connection's buffers.
/// Long enough that a busy connection never pays for rebuilding it.
const PARK_AFTER: Duration = Duration::from_secs(1);

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
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

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
            guard: Some(RequestGuard(self.activity.clone())),
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
        Poll::Ready(Ok(resp.map(|inner| ActiveBody::new(inner, guard))))
    }
}

/// Marks a request finished when its response body is done or dropped.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that keeps its request counted as in flight.
pub type ActiveBody<B> = crate::body::Guarded<B, Option<RequestGuard>>;

/// What the watchdog knows about a connection. Times are milliseconds since
/// the connection was accepted.
struct Activity {
    epoch: Instant,
    h2: bool,
    in_flight: AtomicUsize,
    idle_since: AtomicU64,
    /// When the first byte of the next request head arrived; `NONE` if not yet.
    head_since: AtomicU64,
    served_one: AtomicBool,
    /// The connection is being parked: hyper's shutdown of the socket is
    /// skipped, the caller keeps it.
    parking: AtomicBool,
}

/// What the watchdog decided.
enum Verdict {
    Close(&'static str),
    Park,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new(h2: bool) -> Self {
        Self {
            epoch: Instant::now(),
            h2,
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            // The sniff saw bytes: the first head is under way from the start.
            head_since: AtomicU64::new(if h2 { NONE } else { 0 }),
            served_one: AtomicBool::new(false),
            parking: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Release);
        self.served_one.store(true, Ordering::Relaxed);
    }

    fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since.store(self.now_ms(), Ordering::Release);
        }
    }

    fn on_read(&self) {
        if !self.h2
            && self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since.load(Ordering::Acquire) == NONE
        {
            self.head_since.store(self.now_ms(), Ordering::Release);
        }
    }

    /// Time left before an idle connection reaches `idle_timeout`.
    fn idle_left(&self, idle_timeout: Duration) -> Duration {
        let since = self.idle_since.load(Ordering::Acquire);
        let deadline = since.saturating_add(idle_timeout.as_millis() as u64);
        Duration::from_millis(deadline.saturating_sub(self.now_ms()))
    }

    /// Resolves when the connection has outstayed its welcome, or, with
    /// `park_after`, when it has been idle between requests that long.
    async fn watchdog(
        self: Arc<Self>,
        cfg: &ServerConfig,
        park_after: Option<Duration>,
    ) -> Verdict {
        let header_ms = cfg.header_timeout.as_millis() as u64;
        let idle_ms = cfg.idle_timeout.as_millis() as u64;
        let park_ms = park_after.map(|d| d.as_millis() as u64);
        loop {
            let now = self.now_ms();
            // What happens at `deadline`; nothing while a request is in flight.
            let (deadline, verdict) = if self.in_flight.load(Ordering::Acquire) > 0 {
                (now + header_ms.min(idle_ms), None)
            } else {
                let head = self.head_since.load(Ordering::Acquire);
                if head != NONE {
                    let why = "request head not received in time";
                    (head + header_ms, Some(Verdict::Close(why)))
                } else {
                    let since = self.idle_since.load(Ordering::Acquire);
                    let served = self.served_one.load(Ordering::Relaxed);
                    let idle = Verdict::Close("idle timeout");
                    match park_ms {
                        Some(park) if served && park < idle_ms => {
                            (since + park, Some(Verdict::Park))
                        }
                        _ if served || self.h2 => (since + idle_ms, Some(idle)),
                        _ => (since + header_ms, Some(idle)),
                    }
                }
            };
            if let Some(v) = verdict.filter(|_| now >= deadline) {
                return v;
            }
            // Not woken when a request ends: with parking on, look again
            // at least every `park_after`.
            let wait = deadline
                .saturating_sub(now)
                .min(park_ms.unwrap_or(u64::MAX))
                .max(1);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

/// The client socket, reporting reads to the watchdog. `prefix` holds bytes
/// a parked hyper connection had read but not parsed; they are read first.
struct ActivityIo {
    inner: TcpStream,
    activity: Arc<Activity>,
    prefix: Bytes,
}

impl AsyncRead for ActivityIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            this.activity.on_read();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.on_read();
        }
        r
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.activity.parking.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
