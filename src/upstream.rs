//! Keep-alive connections to the app: one address, HTTP/1.1 only, so the pool
//! is a stack of idle hyper connections rather than hyper-util's general
//! client.
//!
//! The general client hashes a (scheme, authority) key byte by byte with
//! SipHash on every checkout and return, races a checkout against a lazy
//! connect, and spawns a task per request to wait for the connection to be
//! reusable. For the one-upstream sidecar case that was 12 % of podgate's
//! instructions per request (callgrind, GET 1 KiB).
//!
//! A connection has no task of its own either: hyper's connection future is
//! polled by whoever is using the connection (the request's future while the
//! head is exchanged, the response body while it is read), so a request goes
//! to the app and its answer comes back within the client connection's task,
//! the way nginx handles both sockets in one event-loop callback. Only the
//! rare cases that outlive the request get a task: a WebSocket tunnel, and an
//! upload still being sent after the app has answered.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::Body;

/// Why a request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection to the app could be made.
    #[error("cannot connect to the app: {0}")]
    Connect(#[source] io::Error),
    /// The connection failed while the request was in flight. `reused`: the
    /// connection had served requests before (the keep-alive race).
    #[error("connection to the app failed: {error}")]
    Request {
        #[source]
        error: hyper::Error,
        reused: bool,
    },
}

/// hyper's connection state machine (reads, writes, framing), as a future
/// that ends when the connection does.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// One connection to the app: the handle requests are sent through, and the
/// state machine that does the I/O when polled.
struct Conn {
    tx: SendRequest<Body>,
    /// `None` once the connection has ended.
    driver: Option<Driver>,
}

impl Conn {
    /// Lets the connection do whatever I/O it can; registers `cx` for the
    /// rest. False once the connection has ended; it is dropped then, so a
    /// request still waiting on it gets its error.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(driver) = self.driver.as_mut() else {
            return false;
        };
        match driver.as_mut().poll(cx) {
            Poll::Pending => true,
            Poll::Ready(r) => {
                log_end(r);
                self.driver = None;
                false
            }
        }
    }

    /// One poll that asks to be woken by nothing: for the bookkeeping step
    /// after a response (hyper finishing the exchange so the connection
    /// can take another request), after which the caller decides without
    /// waiting.
    fn drive_now(&mut self) -> bool {
        match poll_quiet(Pin::new(&mut std::future::poll_fn(|cx| {
            Poll::Ready(self.drive(cx))
        }))) {
            Poll::Ready(alive) => alive,
            Poll::Pending => true,
        }
    }

    /// Usable for a new request right now.
    fn is_ready(&mut self) -> bool {
        self.drive_now() && self.tx.is_ready()
    }

    /// Sends one request and polls the connection until its response head
    /// is in.
    async fn exchange(
        &mut self,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Body>>> {
        let mut answer = std::pin::pin!(self.tx.try_send_request(req));
        std::future::poll_fn(|cx| {
            // An ended connection is dropped by `drive`, which hands a
            // request it still held its error (and the request itself, if
            // it was never written).
            self.drive(cx);
            // The answer only moves when the driver (polled just above, by
            // this task) moves it, so it needs no waker of its own: a real
            // one would have the driver wake this very task once per request.
            poll_quiet(answer.as_mut())
        })
        .await
    }
}

fn log_end(r: hyper::Result<()>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "connection to the app ended with an error");
    }
}

/// Polls `f` once with a waker that does nothing, for a future that only
/// changes when this task itself does something. Outside tokio's cooperative
/// budget, which would otherwise answer "pending" and wake that no-op waker
/// instead of doing the work.
fn poll_quiet<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(&mut tokio::task::unconstrained(f)).poll(&mut cx)
}

struct Idle {
    conn: Conn,
    since: Instant,
}

struct Shared {
    idle: Mutex<Vec<Idle>>,
    addr: SocketAddr,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    /// True while a reaper task is scheduled to close expired connections.
    reaping: AtomicBool,
}

/// The pool; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    pub fn new(
        addr: SocketAddr,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                idle: Mutex::new(Vec::new()),
                addr,
                connect_timeout,
                idle_timeout,
                max_idle,
                reaping: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `req` (origin-form target, Host set) on an idle connection, or a
    /// new one. A request refused by a connection that closed before taking
    /// it is moved to another: it was never sent.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<UpstreamBody>, SendError> {
        loop {
            let (mut conn, reused) = match self.checkout() {
                Some(conn) => (conn, true),
                // Boxed: connecting is the rare path, and its future (the
                // handshake's) would otherwise make every request's larger.
                None => (Box::pin(self.connect()).await?, false),
            };
            match conn.exchange(req).await {
                Ok(resp) => return Ok(self.attach(conn, resp)),
                Err(mut e) => match e.take_message() {
                    Some(back) if reused => req = back,
                    _ => {
                        return Err(SendError::Request {
                            error: e.into_error(),
                            reused,
                        })
                    }
                },
            }
        }
    }

    /// The most recently used idle connection that is still open, ready for
    /// a request. Expired ones met on the way are closed.
    fn checkout(&self) -> Option<Conn> {
        loop {
            let idle = {
                let mut list = self.shared.lock_idle();
                let now = Instant::now();
                // Oldest first: anything past the idle timeout is dropped
                // (closing it) rather than raced against the app's own timer.
                let expired = list
                    .iter()
                    .take_while(|i| now.duration_since(i.since) >= self.shared.idle_timeout)
                    .count();
                list.drain(..expired);
                list.pop()
            }?;
            // Ready when it was pooled, and nothing has polled it since. If
            // the app has closed it meanwhile, the exchange finds out before
            // writing and hands the request back for another connection.
            if idle.conn.tx.is_ready() {
                return Some(idle.conn);
            }
        }
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let s = &self.shared;
        let stream = tokio::time::timeout(s.connect_timeout, TcpStream::connect(s.addr))
            .await
            .map_err(|_| {
                SendError::Connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            })?
            .map_err(SendError::Connect)?;
        stream.set_nodelay(true).map_err(SendError::Connect)?;
        let (tx, conn) = http1::Builder::new()
            .preserve_header_case(true)
            .max_buf_size(crate::body::READ_BUF_MAX)
            .handshake::<_, Body>(TokioIo::new(stream))
            .await
            .map_err(|error| SendError::Request {
                error,
                reused: false,
            })?;
        Ok(Conn {
            tx,
            driver: Some(Box::pin(conn.with_upgrades())),
        })
    }

    /// Sends `req` on a new connection, never an idle one: the retry after
    /// the keep-alive race must not meet another stale connection.
    pub async fn send_on_new(
        &self,
        req: Request<Body>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let mut conn = self.connect().await?;
        match conn.exchange(req).await {
            Ok(resp) => Ok(self.attach(conn, resp)),
            Err(e) => Err(SendError::Request {
                error: e.into_error(),
                reused: false,
            }),
        }
    }

    /// Wraps the response body so that reading it drives the connection,
    /// which returns to the pool when the body has been read to its end.
    fn attach(&self, mut conn: Conn, resp: Response<Incoming>) -> Response<UpstreamBody> {
        let (parts, inner) = resp.into_parts();
        if parts.status == http::StatusCode::SWITCHING_PROTOCOLS {
            // The connection now belongs to the tunnel; hyper hands the
            // socket over from inside the driver, which needs a task for it.
            if let Some(driver) = conn.driver.take() {
                tokio::spawn(async move { log_end(driver.await) });
            }
            return Response::from_parts(parts, UpstreamBody::new(inner, None));
        }
        let back = Return {
            pool: Arc::downgrade(&self.shared),
            conn,
        };
        if inner.is_end_stream() {
            back.give_back();
            return Response::from_parts(parts, UpstreamBody::new(inner, None));
        }
        let back = Some(back);
        Response::from_parts(parts, UpstreamBody::new(inner, back))
    }
}

impl Shared {
    fn lock_idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put(self: &Arc<Self>, conn: Conn) {
        if self.idle_timeout.is_zero() {
            return;
        }
        {
            let mut list = self.lock_idle();
            if list.len() >= self.max_idle {
                return;
            }
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
        self.schedule_reaper();
    }

    /// Makes sure idle connections are closed on time even when no request
    /// comes to find them expired. One reaper at a time, and none while the
    /// pool is empty, so an idle pod wakes nothing.
    fn schedule_reaper(self: &Arc<Self>) {
        if self.reaping.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(reap(Arc::downgrade(self), self.idle_timeout));
            }
            Err(_) => self.reaping.store(false, Ordering::Release),
        }
    }
}

async fn reap(pool: Weak<Shared>, period: Duration) {
    // Connections are pushed in time order, so the first one expires first.
    let mut next = tokio::time::Instant::now() + period;
    loop {
        tokio::time::sleep_until(next).await;
        let Some(s) = pool.upgrade() else { return };
        let mut list = s.lock_idle();
        let now = Instant::now();
        // By age only: polling every idle connection here would hold the
        // lock that requests check out under. One the app closed costs a
        // file descriptor until it expires; checked out before then, it
        // hands the request back unsent (see `checkout`).
        list.retain(|i| now.duration_since(i.since) < s.idle_timeout && !i.conn.tx.is_closed());
        let Some(first) = list.first() else {
            // Decided under the idle lock: a put after this sees `false`.
            s.reaping.store(false, Ordering::Release);
            return;
        };
        let left = s
            .idle_timeout
            .saturating_sub(now.duration_since(first.since));
        next = tokio::time::Instant::now() + left;
    }
}

/// A checked-out connection on its way back to the pool.
struct Return {
    pool: Weak<Shared>,
    conn: Conn,
}

impl Return {
    /// Pools the connection once it can take a request. Usually it can at
    /// once (hyper finishes the exchange in one poll); a request body still
    /// being sent after the response ended (an app that answered early) is
    /// finished by a task of its own, off the request path.
    fn give_back(self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let mut conn = self.conn;
        if conn.is_ready() {
            pool.put(conn);
        } else if conn.driver.is_some() && !conn.tx.is_closed() {
            let wait = pool.idle_timeout;
            let pool = self.pool;
            tokio::spawn(async move {
                let ready = std::future::poll_fn(|cx| {
                    if !conn.drive(cx) {
                        return Poll::Ready(false);
                    }
                    conn.tx.poll_ready(cx).map(|r| r.is_ok())
                });
                // An upload still going after the idle timeout is cut off:
                // the connection is closed, not pooled.
                if let Ok(true) = tokio::time::timeout(wait, ready).await {
                    if let Some(pool) = pool.upgrade() {
                        pool.put(conn);
                    }
                }
            });
        }
    }
}

pin_project_lite::pin_project! {
    /// The app's response body. Reading it drives the connection; at its
    /// end the connection goes back to the pool. Dropped before its end, it
    /// closes the connection.
    pub struct UpstreamBody {
        #[pin]
        inner: Incoming,
        back: Option<Return>,
        // An error held back for one poll, see `poll_frame`.
        failed: Option<hyper::Error>,
    }
}

impl UpstreamBody {
    fn new(inner: Incoming, back: Option<Return>) -> Self {
        Self {
            inner,
            back,
            failed: None,
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        let polled = match this.back.as_mut() {
            // The body is filled by the driver, which only runs when polled
            // here: look at what it has delivered, let it read more (waking
            // this task when the socket has more), look again. The channel
            // itself needs no waker.
            Some(back) => {
                let mut quiet = Context::from_waker(Waker::noop());
                match this.inner.as_mut().poll_frame(&mut quiet) {
                    Poll::Pending => {
                        back.conn.drive(cx);
                        this.inner.as_mut().poll_frame(&mut quiet)
                    }
                    ready => ready,
                }
            }
            None => this.inner.as_mut().poll_frame(cx),
        };
        match &polled {
            Poll::Ready(None) => {
                if let Some(r) = this.back.take() {
                    r.give_back();
                }
            }
            // hyper stops polling a body once it reports its end, and after
            // trailers (which end a chunked body).
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() || this.inner.is_end_stream() => {
                if let Some(r) = this.back.take() {
                    r.give_back();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.back.take();
                // The app failed mid-body, often in the same read as the
                // last bytes it did send. hyper drops a connection whose
                // body fails without flushing what it has buffered, so the
                // error waits one poll: the client gets the head and the
                // bytes so far (a visibly short body), then the close.
                if let Poll::Ready(Some(Err(e))) = polled {
                    *this.failed = Some(e);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
