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

mod conn;
mod io;
mod sniff;
mod watchdog;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as HttpBody;
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use crate::body::BoxError;
use crate::ctx::ConnInfo;
use crate::metrics::Metrics;
use crate::tls::Tls;

pub use conn::{ActiveBody, ConnFuture, RequestGuard};

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

/// The request path as a connection serves it (what `stack::build`
/// returns): one name for its bounds.
pub trait AppService<B>:
    Service<Request<Incoming>, Response = Response<B>, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T, B> AppService<B> for T where
    T: Service<
            Request<Incoming>,
            Response = Response<B>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// A response body hyper can send.
pub trait ResponseBody: HttpBody<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

impl<T> ResponseBody for T where T: HttpBody<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

/// A bound listener: plain, or TLS with its acceptor. Both listeners share
/// one `limit`, the `PODGATE_MAX_CONNECTIONS` slots.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<Arc<Tls>>,
    pub limit: Arc<Semaphore>,
}

impl ServerConfig {
    /// The connection slots both listeners draw from.
    pub fn connection_limit(&self) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(self.max_connections))
    }
}

/// Runs the accept loop until `stop_accepting` is cancelled; then closes the
/// listener and asks every connection to finish (`Connection: close` on
/// HTTP/1.1, GOAWAY on HTTP/2). Connection tasks are spawned on `tracker` so
/// the caller can wait for them to drain.
pub async fn serve<S, B>(
    listener: Listener,
    svc: S,
    cfg: Arc<ServerConfig>,
    metrics: Arc<Metrics>,
    stop_accepting: CancellationToken,
    tracker: TaskTracker,
) where
    S: AppService<B>,
    B: ResponseBody,
{
    let Listener {
        tcp: listener,
        tls,
        limit,
    } = listener;
    let close_conns = stop_accepting.child_token();
    // Counts as a task until the backlog below has been accepted, so the
    // drain cannot finish before those connections are being served.
    let _serving = tracker.token();
    // The slot permit (if any) is held until the connection ends, and by a
    // tunnel until it closes.
    let spawn_conn = |stream: TcpStream, peer: SocketAddr, permit: Option<OwnedSemaphorePermit>| {
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let (svc, cfg, metrics, close, tls) = (
            svc.clone(),
            cfg.clone(),
            metrics.clone(),
            close_conns.clone(),
            tls.clone(),
        );
        tracker.spawn(async move {
            let info = Arc::new(ConnInfo::accepted(
                peer,
                local,
                tls.is_some(),
                permit,
                metrics.clone(),
            ));
            match tls {
                Some(tls) => conn::handle_tls(stream, info, svc, &cfg, close, &tls, &metrics).await,
                None => conn::handle(stream, info, svc, &cfg, close).await,
            }
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
