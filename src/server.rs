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
//!  * idle between requests: `idle_timeout`; after `park_after` an
//!    HTTP/1 connection is also "parked": its hyper connection, with the
//!    read and write buffers, is dropped and only the socket is kept until
//!    the client sends again;
//!  * requests in flight: body and upstream timeouts apply to the request
//!    itself; the connection is cut when no response byte could be written
//!    for `send_timeout` (a socket that stays full, or on HTTP/2 a stream
//!    whose flow-control window stays shut), and on HTTP/2 when a header
//!    block (HEADERS without END_HEADERS) is not finished within
//!    `header_timeout`.
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
    /// Set when the connection is cut because the client stopped reading
    /// (`PODGATE_SEND_TIMEOUT`), so the access line can say why.
    pub send_timed_out: AtomicBool,
    /// The `PODGATE_MAX_CONNECTIONS` slot and the open-connection count,
    /// released when the last holder lets go: the connection task, or a
    /// tunnel that outlives it.
    _permit: Option<OwnedSemaphorePermit>,
    counted: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnInfo")
            .field("peer", &self.peer)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Drop for ConnInfo {
    fn drop(&mut self) {
        if let Some(m) = &self.counted {
            m.connection_closed();
        }
    }
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, local: SocketAddr) -> Self {
        Self::build(peer, local, None, None)
    }

    fn build(
        peer: SocketAddr,
        local: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
        counted: Option<Arc<Metrics>>,
    ) -> Self {
        Self {
            peer,
            local,
            peer_value: crate::headers::ip_value(peer.ip()),
            port_value: crate::headers::port_value(local.port()),
            trusted: std::sync::OnceLock::new(),
            send_timed_out: AtomicBool::new(false),
            _permit: permit,
            counted,
        }
    }

    /// A connection that counts as open (and holds its slot, if any) for as
    /// long as this lives.
    fn accepted(
        peer: SocketAddr,
        local: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.connection_opened();
        Self::build(peer, local, permit, Some(metrics))
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    pub h2_max_streams: u32,
    pub send_timeout: Duration,
    pub park_after: Duration,
}

impl ServerConfig {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            header_timeout: c.header_timeout,
            idle_timeout: c.idle_timeout,
            max_header_bytes: c.max_header_bytes,
            max_headers: c.max_headers,
            max_connections: c.max_connections,
            h2_max_streams: c.h2_max_streams,
            send_timeout: c.send_timeout,
            park_after: c.park_after,
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
    // The slot permit (if any) is held until the connection ends, and by a
    // tunnel until it closes.
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
            let info = Arc::new(ConnInfo::accepted(peer, local, permit, metrics));
            handle(stream, info, svc, &cfg, close).await;
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

/// Reads until the bytes tell HTTP/1 from h2c, and returns what it read:
/// it is replayed to the connection before the socket. Reading (rather than
/// peeking in a loop) waits on the socket alone, however slowly the
/// preface trickles in.
async fn sniff_h2(stream: &mut TcpStream) -> io::Result<(bool, Bytes)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(H2_PREFACE.len());
    loop {
        let n = stream.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let seen = buf.len().min(H2_PREFACE.len());
        if buf[..seen] != H2_PREFACE[..seen] {
            return Ok((false, buf.into()));
        }
        if seen == H2_PREFACE.len() {
            return Ok((true, buf.into()));
        }
    }
}

/// Waits (at most `header_timeout`) for the first bytes and tells whether
/// they are the h2c preface; `None` if nothing usable came. A connection
/// accepted just before shutdown still gets its first request read (within
/// a short grace), not a reset.
async fn sniff(
    stream: &mut TcpStream,
    cfg: &ServerConfig,
    close: &CancellationToken,
) -> Option<(bool, Bytes)> {
    let sniff = tokio::time::timeout(cfg.header_timeout, sniff_h2(stream));
    tokio::pin!(sniff);
    let r = tokio::select! {
        r = &mut sniff => r,
        _ = close.cancelled() => tokio::time::timeout(SHUTDOWN_GRACE, &mut sniff).await.ok()?,
    };
    r.ok()?.ok()
}

async fn handle<S, B>(
    mut stream: TcpStream,
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
    let Some((is_h2, read)) = Box::pin(sniff(&mut stream, cfg, &close)).await else {
        return; // nothing sent in time, or gone
    };
    let activity = Arc::new(Activity::new(is_h2, info.clone()));
    let mut io = ActivityIo {
        inner: stream,
        activity: activity.clone(),
        prefix: read,
        frames: is_h2.then(FrameScan::default),
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
            .max_concurrent_streams(cfg.h2_max_streams);
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
    clock: Option<Arc<AtomicU64>>,
}

impl RequestGuard {
    fn new(activity: Arc<Activity>) -> Self {
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

/// What the watchdog knows about a connection. Times are milliseconds since
/// the connection was accepted.
struct Activity {
    epoch: Instant,
    h2: bool,
    info: Arc<ConnInfo>,
    in_flight: AtomicUsize,
    idle_since: AtomicU64,
    /// When the first byte of the next request head arrived; `NONE` if not
    /// yet. On HTTP/2: when an unfinished header block began.
    head_since: AtomicU64,
    /// Since when a write to the client socket has been refused (the socket
    /// buffer is full); `NONE` while writes go through.
    blocked_since: AtomicU64,
    /// HTTP/2: the send clocks of the open streams.
    streams: std::sync::Mutex<Vec<std::sync::Weak<AtomicU64>>>,
    served_one: AtomicBool,
    /// The connection is being parked: hyper's shutdown of the socket is
    /// skipped, the caller keeps it.
    parking: AtomicBool,
}

/// What the watchdog decided.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Close(&'static str),
    Park,
}

const NONE: u64 = u64::MAX;
const HEAD_LATE: &str = "request head not received in time";
const SEND_STALLED: &str = "send timeout: client stopped reading";

impl Activity {
    fn new(h2: bool, info: Arc<ConnInfo>) -> Self {
        Self {
            epoch: Instant::now(),
            h2,
            info,
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            // The sniff saw bytes: the first head is under way from the start.
            head_since: AtomicU64::new(if h2 { NONE } else { 0 }),
            blocked_since: AtomicU64::new(NONE),
            streams: std::sync::Mutex::new(Vec::new()),
            served_one: AtomicBool::new(false),
            parking: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if !self.h2 {
            self.head_since.store(NONE, Ordering::Release);
        }
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

    /// HTTP/2: a header block began (`true`) or was completed (`false`).
    fn on_header_block(&self, open: bool) {
        let v = if open { self.now_ms() } else { NONE };
        self.head_since.store(v, Ordering::Release);
    }

    fn on_write(&self, blocked: bool) {
        let since = self.blocked_since.load(Ordering::Relaxed);
        if blocked && since == NONE {
            self.blocked_since.store(self.now_ms(), Ordering::Relaxed);
        } else if !blocked && since != NONE {
            self.blocked_since.store(NONE, Ordering::Relaxed);
        }
    }

    /// Since when the oldest response has waited for the client to take
    /// more: the socket, or on HTTP/2 any stream's window.
    fn stalled_since(&self) -> u64 {
        let mut since = self.blocked_since.load(Ordering::Relaxed);
        if self.h2 {
            if let Ok(streams) = self.streams.lock() {
                for c in streams.iter().filter_map(|w| w.upgrade()) {
                    since = since.min(c.load(Ordering::Relaxed));
                }
            }
        }
        since
    }

    /// Time left before an idle connection reaches `idle_timeout`.
    fn idle_left(&self, idle_timeout: Duration) -> Duration {
        let since = self.idle_since.load(Ordering::Acquire);
        let deadline = since.saturating_add(idle_timeout.as_millis() as u64);
        Duration::from_millis(deadline.saturating_sub(self.now_ms()))
    }

    /// What is due next: the earliest deadline, and the verdict once it has
    /// passed (`None`: nothing to do then but look again).
    fn next(&self, now: u64, t: &Timeouts) -> (u64, Option<Verdict>) {
        let mut due: (u64, Option<Verdict>) = (NONE, None);
        fn at(due: &mut (u64, Option<Verdict>), deadline: u64, v: Verdict) {
            if deadline < due.0 {
                *due = (deadline, Some(v));
            }
        }
        let stalled = self.stalled_since();
        if stalled != NONE {
            at(
                &mut due,
                stalled.saturating_add(t.send),
                Verdict::Close(SEND_STALLED),
            );
        }
        let head = self.head_since.load(Ordering::Acquire);
        let in_flight = self.in_flight.load(Ordering::Acquire) > 0;
        if head != NONE && (self.h2 || !in_flight) {
            at(
                &mut due,
                head.saturating_add(t.header),
                Verdict::Close(HEAD_LATE),
            );
        }
        if in_flight {
            // Not woken when a write blocks or a request ends: look again.
            let poll = t.header.min(t.idle).min(t.send).max(1);
            if now + poll < due.0 {
                due = (now + poll, None);
            }
            return due;
        }
        if head == NONE || self.h2 {
            let since = self.idle_since.load(Ordering::Acquire);
            let served = self.served_one.load(Ordering::Relaxed);
            match t.park {
                Some(park) if served && park < t.idle => at(&mut due, since + park, Verdict::Park),
                _ if served => at(&mut due, since + t.idle, Verdict::Close("idle timeout")),
                // Nothing asked yet (an HTTP/2 preface and then silence).
                _ => at(&mut due, since + t.header, Verdict::Close(HEAD_LATE)),
            }
        }
        due
    }

    /// Resolves when the connection has outstayed its welcome, or, with
    /// `park_after`, when it has been idle between requests that long.
    async fn watchdog(
        self: Arc<Self>,
        cfg: &ServerConfig,
        park_after: Option<Duration>,
    ) -> Verdict {
        let ms = |d: Duration| d.as_millis() as u64;
        let t = Timeouts {
            header: ms(cfg.header_timeout),
            idle: ms(cfg.idle_timeout),
            send: ms(cfg.send_timeout),
            park: park_after.map(ms),
        };
        loop {
            let now = self.now_ms();
            let (deadline, verdict) = self.next(now, &t);
            if let Some(v) = verdict.filter(|_| now >= deadline) {
                if v == Verdict::Close(SEND_STALLED) {
                    self.info.send_timed_out.store(true, Ordering::Relaxed);
                }
                return v;
            }
            // Not woken when a request ends: with parking on, look again
            // at least every `park_after`.
            let wait = deadline
                .saturating_sub(now)
                .min(t.park.unwrap_or(u64::MAX))
                .max(1);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

/// The watchdog's limits, in milliseconds.
struct Timeouts {
    header: u64,
    idle: u64,
    send: u64,
    park: Option<u64>,
}

/// Follows HTTP/2 frame boundaries in the bytes read, to tell when a header
/// block (HEADERS, then CONTINUATION up to END_HEADERS) is unfinished.
/// hyper's HTTP/2 server has no head timeout of its own.
#[derive(Debug)]
struct FrameScan {
    /// Payload bytes of the current frame still to come (the preface first).
    skip: usize,
    head: [u8; 9],
    head_len: usize,
    /// The current frame ends a header block when its payload is complete.
    ends_block: bool,
    block_open: bool,
}

impl Default for FrameScan {
    fn default() -> Self {
        Self {
            skip: H2_PREFACE.len(),
            head: [0; 9],
            head_len: 0,
            ends_block: false,
            block_open: false,
        }
    }
}

impl FrameScan {
    /// Feeds bytes; returns the new block state when it changed.
    fn feed(&mut self, mut data: &[u8]) -> Option<bool> {
        let was = self.block_open;
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                if self.skip == 0 && self.ends_block {
                    self.block_open = false;
                    self.ends_block = false;
                }
                continue;
            }
            let n = (9 - self.head_len).min(data.len());
            self.head[self.head_len..self.head_len + n].copy_from_slice(&data[..n]);
            self.head_len += n;
            data = &data[n..];
            if self.head_len < 9 {
                break;
            }
            self.head_len = 0;
            let h = self.head;
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            const HEADERS: u8 = 0x1;
            const CONTINUATION: u8 = 0x9;
            const END_HEADERS: u8 = 0x4;
            let block = matches!(h[3], HEADERS | CONTINUATION);
            if block {
                self.block_open = true;
            }
            self.skip = len;
            self.ends_block = block && h[4] & END_HEADERS != 0;
            if len == 0 && self.ends_block {
                self.block_open = false;
                self.ends_block = false;
            }
        }
        (self.block_open != was).then_some(self.block_open)
    }
}

/// The client socket, reporting reads and blocked writes to the watchdog.
/// `prefix` holds bytes read before hyper took over (the sniff, or a parked
/// connection's unparsed input); they are read first.
struct ActivityIo {
    inner: TcpStream,
    activity: Arc<Activity>,
    prefix: Bytes,
    /// HTTP/2 only.
    frames: Option<FrameScan>,
}

fn scan(frames: &mut Option<FrameScan>, activity: &Activity, data: &[u8]) {
    if let Some(f) = frames {
        if let Some(open) = f.feed(data) {
            activity.on_header_block(open);
        }
    }
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
            let chunk = this.prefix.split_to(n);
            scan(&mut this.frames, &this.activity, &chunk);
            buf.put_slice(&chunk);
            this.activity.on_read();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            scan(&mut this.frames, &this.activity, &buf.filled()[before..]);
            this.activity.on_read();
        }
        r
    }
}

impl ActivityIo {
    fn wrote<T>(&self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.activity.on_write(r.is_pending());
        r
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(r)
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
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(r)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    //! The watchdog's verdicts on tokio's paused clock: exact times, no
    //! wall-clock windows.
    use super::*;

    fn cfg() -> ServerConfig {
        ServerConfig {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_header_bytes: 32 << 10,
            max_headers: 100,
            max_connections: 10,
            h2_max_streams: 100,
            send_timeout: Duration::from_secs(60),
            park_after: Duration::from_secs(1),
        }
    }

    fn activity(h2: bool) -> Arc<Activity> {
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        Arc::new(Activity::new(h2, Arc::new(ConnInfo::new(addr, addr))))
    }

    /// Runs the watchdog to its verdict; returns it and when it came.
    async fn verdict(a: &Arc<Activity>, park: Option<Duration>) -> (Verdict, Duration) {
        let start = Instant::now();
        let v = a.clone().watchdog(&cfg(), park).await;
        (v, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_never_completes_is_closed_at_the_header_timeout() {
        let a = activity(false);
        assert_eq!(
            verdict(&a, Some(Duration::from_secs(1))).await,
            (Verdict::Close(HEAD_LATE), Duration::from_secs(10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_park_then_close_at_the_idle_timeout() {
        let a = activity(false);
        a.begin();
        a.end();
        let park = Some(Duration::from_millis(300));
        assert_eq!(
            verdict(&a, park).await,
            (Verdict::Park, Duration::from_millis(300))
        );
        // Without parking (HTTP/2, or a parked one that was woken) the idle
        // timeout counts from the end of the last request.
        let (v, at) = verdict(&a, None).await;
        assert_eq!(v, Verdict::Close("idle timeout"));
        assert_eq!(at, Duration::from_millis(75_000 - 300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_socket_that_stays_full_is_cut_at_the_send_timeout() {
        let a = activity(false);
        a.begin();
        tokio::time::sleep(Duration::from_secs(3)).await;
        a.on_write(true);
        assert_eq!(
            verdict(&a, Some(Duration::from_secs(1))).await,
            (Verdict::Close(SEND_STALLED), Duration::from_secs(60))
        );
        assert!(a.info.send_timed_out.load(Ordering::Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn writes_that_go_through_reset_the_send_clock() {
        let a = activity(false);
        a.begin();
        a.on_write(true);
        let w = a.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(50)).await;
            w.on_write(false);
            tokio::time::sleep(Duration::from_secs(1)).await;
            w.on_write(true);
            tokio::time::sleep(Duration::from_secs(200)).await;
            w.end();
        });
        let (v, at) = verdict(&a, None).await;
        assert_eq!(v, Verdict::Close(SEND_STALLED));
        // Blocked again at 51 s: cut at 111 s, polled every 10 s.
        assert!(
            at >= Duration::from_secs(111) && at <= Duration::from_secs(121),
            "{at:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_stream_with_a_shut_window_is_cut_at_the_send_timeout() {
        let a = activity(true);
        a.begin();
        let guard = RequestGuard::new(a.clone());
        let clock = guard.clock.clone().unwrap();
        clock.store(a.now_ms(), Ordering::Relaxed);
        let (v, at) = verdict(&a, None).await;
        assert_eq!(v, Verdict::Close(SEND_STALLED));
        assert_eq!(at, Duration::from_secs(60));
        drop(guard);
    }

    #[tokio::test(start_paused = true)]
    async fn http2_preface_alone_or_an_open_header_block_meets_the_header_timeout() {
        let a = activity(true);
        assert_eq!(
            verdict(&a, None).await,
            (Verdict::Close(HEAD_LATE), Duration::from_secs(10))
        );
        // After a request: an unfinished header block, even with another
        // stream in flight.
        let a = activity(true);
        a.begin();
        a.on_header_block(true);
        assert_eq!(
            verdict(&a, None).await,
            (Verdict::Close(HEAD_LATE), Duration::from_secs(10))
        );
    }

    #[test]
    fn frame_scan_follows_header_blocks_across_reads() {
        let mut f = FrameScan::default();
        assert_eq!(f.feed(&H2_PREFACE[..5]), None);
        assert_eq!(f.feed(&H2_PREFACE[5..]), None);
        // SETTINGS, empty: no block.
        assert_eq!(f.feed(&[0, 0, 0, 4, 0, 0, 0, 0, 0]), None);
        // HEADERS of 3 bytes without END_HEADERS, its header split.
        assert_eq!(f.feed(&[0, 0, 3, 1]), None);
        assert_eq!(f.feed(&[0, 0, 0, 0, 1, 0xaa]), Some(true));
        assert_eq!(f.feed(&[0xbb, 0xcc]), None);
        // CONTINUATION with END_HEADERS: closed once its payload is in.
        assert_eq!(f.feed(&[0, 0, 2, 9, 4, 0, 0, 0, 1, 0xdd]), None);
        assert_eq!(f.feed(&[0xee]), Some(false));
        // HEADERS with END_HEADERS in one read: no change seen.
        assert_eq!(f.feed(&[0, 0, 1, 1, 4, 0, 0, 0, 3, 0x82]), None);
        // DATA frames never open a block.
        assert_eq!(f.feed(&[0, 0, 2, 0, 0, 0, 0, 0, 3, 1]), None);
        assert!(!f.block_open);
    }
}
