//! What the layers share, so that no layer imports another: the facts of
//! the client connection, what one layer learns about a request for another
//! (the request facts, the upgrade marker, the upstream timing, the kind of
//! a podgate-made answer), and the future that optional layers return.
//!
//! Layers put these in request and response extensions; each type has one
//! writer and says which layer reads it.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Response};
use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;

use crate::body::Body;
use crate::metrics::Metrics;

/// Facts about the client connection, put on every request (shared, as
/// `Arc<ConnInfo>`). What the forwarding headers need is worked out once per
/// connection.
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Came in on the TLS listener: the app is told `https`.
    pub tls: bool,
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
        Self::build(peer, local, false, None, None)
    }

    fn build(
        peer: SocketAddr,
        local: SocketAddr,
        tls: bool,
        permit: Option<OwnedSemaphorePermit>,
        counted: Option<Arc<Metrics>>,
    ) -> Self {
        Self {
            peer,
            local,
            tls,
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
    pub(crate) fn accepted(
        peer: SocketAddr,
        local: SocketAddr,
        tls: bool,
        permit: Option<OwnedSemaphorePermit>,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.connection_opened();
        Self::build(peer, local, tls, permit, Some(metrics))
    }
}

/// Set on the request by the header layer when an upgrade is to be
/// tunnelled: the `Upgrade` value forwarded to the app, which its 101 must
/// pick from. Read by the proxy.
#[derive(Debug, Clone)]
pub struct UpgradeRequested(pub HeaderValue);

/// What the header layer learnt, handed back on the response for the access
/// log.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    pub client: IpAddr,
    pub request_id: HeaderValue,
}

/// Time spent waiting for the app's response head: set by the proxy on the
/// response, read by the access log.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTiming(pub Duration);

/// Marks a response podgate generated itself (see `error`), for the access
/// log.
#[derive(Debug, Clone, Copy)]
pub struct ErrorKind(pub &'static str);

pin_project! {
    /// The future of an optional layer: the inner service's, an answer of
    /// the layer's own, or a boxed wait. The pass-through path allocates
    /// nothing.
    #[project = EitherProj]
    pub enum Either<F> {
        Inner { #[pin] fut: F },
        Boxed { fut: crate::body::BoxFuture },
        Ready { resp: Option<Response<Body>> },
    }
}

#[allow(non_snake_case)]
impl<F> Either<F> {
    pub fn Inner(fut: F) -> Self {
        Either::Inner { fut }
    }
    pub fn Ready(resp: Option<Response<Body>>) -> Self {
        Either::Ready { resp }
    }
    /// For layers that must wait before calling inward; the pass-through
    /// path stays allocation-free.
    pub fn Boxed(fut: crate::body::BoxFuture) -> Self {
        Either::Boxed { fut }
    }
}

impl<F> Future for Either<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            EitherProj::Inner { fut } => fut.poll(cx),
            EitherProj::Boxed { fut } => fut.as_mut().poll(cx),
            EitherProj::Ready { resp } => match resp.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
        }
    }
}

/// What a layer that may wait (spawned futures, a clone of the inner
/// service per request) needs of the service inside it: one name for the
/// bounds every such layer repeats.
pub trait InnerService:
    tower::Service<
        http::Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<T> InnerService for T where
    T: tower::Service<
            http::Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}
