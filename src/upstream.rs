//! Keep-alive connections to the app: one address, HTTP/1.1 only, so the pool
//! is a stack of idle hyper senders rather than hyper-util's general client.
//!
//! The general client hashes a (scheme, authority) key byte by byte with
//! SipHash on every checkout and return, races a checkout against a lazy
//! connect, and spawns a task per request to wait for the connection to be
//! reusable. For the one-upstream sidecar case that was 12 % of podgate's
//! instructions per request (callgrind, GET 1 KiB). Here a connection goes
//! back to the pool when its response body ends, from the task that read it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
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

struct Idle {
    tx: SendRequest<Body>,
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
            let (mut tx, reused) = match self.checkout().await {
                Some(tx) => (tx, true),
                None => (self.connect().await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok(self.attach(tx, resp)),
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
    async fn checkout(&self) -> Option<SendRequest<Body>> {
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
            let mut tx = idle.tx;
            if tx.is_closed() {
                continue;
            }
            // Usually ready at once; otherwise the connection is finishing
            // the previous exchange and says so within a poll or two.
            if tx.ready().await.is_ok() {
                return Some(tx);
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Body>, SendError> {
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
            // Bounded read buffers: hyper grows them up to ~400 KiB per
            // connection on large bodies, memory a sidecar pays per
            // connection for no throughput gain past 64 KiB.
            .max_buf_size(64 * 1024)
            .handshake::<_, Body>(TokioIo::new(stream))
            .await
            .map_err(|error| SendError::Request {
                error,
                reused: false,
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "connection to the app ended with an error");
            }
        });
        Ok(tx)
    }

    /// Sends `req` on a new connection, never an idle one: the retry after
    /// the keep-alive race must not meet another stale connection.
    pub async fn send_on_new(
        &self,
        req: Request<Body>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let mut tx = self.connect().await?;
        match tx.send_request(req).await {
            Ok(resp) => Ok(self.attach(tx, resp)),
            Err(error) => Err(SendError::Request {
                error,
                reused: false,
            }),
        }
    }

    /// Wraps the response body so the connection returns to the pool when
    /// the body has been read to its end.
    fn attach(&self, tx: SendRequest<Body>, resp: Response<Incoming>) -> Response<UpstreamBody> {
        let (parts, inner) = resp.into_parts();
        if parts.status == http::StatusCode::SWITCHING_PROTOCOLS {
            // The connection now belongs to the tunnel.
            return Response::from_parts(parts, UpstreamBody { inner, back: None });
        }
        let back = Return {
            pool: Arc::downgrade(&self.shared),
            tx,
        };
        if inner.is_end_stream() {
            back.give_back();
            return Response::from_parts(parts, UpstreamBody { inner, back: None });
        }
        let back = Some(back);
        Response::from_parts(parts, UpstreamBody { inner, back })
    }
}

impl Shared {
    fn lock_idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put(self: &Arc<Self>, tx: SendRequest<Body>) {
        if tx.is_closed() || self.idle_timeout.is_zero() {
            return;
        }
        {
            let mut list = self.lock_idle();
            if list.len() >= self.max_idle {
                return;
            }
            list.push(Idle {
                tx,
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
        list.retain(|i| now.duration_since(i.since) < s.idle_timeout && !i.tx.is_closed());
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
    tx: SendRequest<Body>,
}

impl Return {
    /// Pools the connection once it can take a request. Usually it can at
    /// once; a request body still being sent after the response ended (an app
    /// that answered early) is waited for off the request path.
    fn give_back(self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let mut tx = self.tx;
        if tx.is_ready() {
            pool.put(tx);
        } else if !tx.is_closed() {
            let wait = pool.idle_timeout;
            let pool = self.pool;
            tokio::spawn(async move {
                // An upload still going after the idle timeout is left to
                // finish on its own; the connection is just not pooled.
                if let Ok(Ok(())) = tokio::time::timeout(wait, tx.ready()).await {
                    if let Some(pool) = pool.upgrade() {
                        pool.put(tx);
                    }
                }
            });
        }
    }
}

pin_project_lite::pin_project! {
    /// The app's response body; hands the connection back at its end. If it
    /// is dropped before its end, the sender goes with it and hyper closes
    /// that connection.
    pub struct UpstreamBody {
        #[pin]
        inner: Incoming,
        back: Option<Return>,
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
        let polled = this.inner.as_mut().poll_frame(cx);
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
