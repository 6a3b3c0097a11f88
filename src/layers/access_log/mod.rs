//! The access log and request metrics: the outermost layer, so it sees every
//! answer, podgate's own errors included. One line per request, written when
//! the response body is finished (or abandoned), so sizes and durations are
//! the real ones.

mod line;

pub use line::Line;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, USER_AGENT};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Version};

use crate::config::LogFormat;
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::Body;
use crate::ctx::{ConnInfo, ErrorKind, RequestFacts, UpstreamTiming};
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AccessLogLayer {
    enabled: bool,
    metrics: Arc<Metrics>,
}

impl AccessLogLayer {
    pub fn new(enabled: bool, metrics: Arc<Metrics>) -> Self {
        Self { enabled, metrics }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessLog {
            inner,
            enabled: self.enabled,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
    enabled: bool,
    metrics: Arc<Metrics>,
}

/// What is known when the request arrives; completed by the response.
struct Record {
    start: Instant,
    method: Method,
    path: Option<PathAndQuery>,
    version: Version,
    user_agent: Option<HeaderValue>,
    /// The connection: its peer, and whether it was cut for a client that
    /// stopped reading.
    conn: Option<Arc<ConnInfo>>,
    bytes_in: AtomicU64,
}

impl<S, B> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<Counted<B>>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Logged>;
    type Error = Infallible;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.metrics.request_started();
        let record = Arc::new(Record {
            start: Instant::now(),
            method: req.method().clone(),
            path: if self.enabled {
                req.uri().path_and_query().cloned()
            } else {
                None
            },
            version: req.version(),
            user_agent: if self.enabled {
                req.headers().get(USER_AGENT).cloned()
            } else {
                None
            },
            conn: req.extensions().get::<Arc<ConnInfo>>().cloned(),
            bytes_in: AtomicU64::new(0),
        });
        let req = req.map(|inner| Counted {
            inner,
            record: record.clone(),
        });
        AccessLogFuture {
            fut: self.inner.call(req),
            state: Some((record, self.enabled, self.metrics.clone())),
        }
    }
}

pin_project! {
    pub struct AccessLogFuture<F> {
        #[pin]
        fut: F,
        state: Option<(Arc<Record>, bool, Arc<Metrics>)>,
    }
}

impl<F> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Logged>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(resp) = std::task::ready!(this.fut.poll(cx));
        let Some((record, enabled, metrics)) = this.state.take() else {
            return Poll::Pending;
        };
        let (mut parts, body) = resp.into_parts();
        let complete = http_body::Body::is_end_stream(&body);
        let expected = http_body::Body::size_hint(&body).exact();
        let facts = parts.extensions.remove::<RequestFacts>();
        let upstream = parts.extensions.remove::<UpstreamTiming>();
        let error = parts.extensions.get::<ErrorKind>().map(|e| e.0);
        let done = Done {
            record,
            enabled,
            metrics,
            status: parts.status.as_u16(),
            facts,
            upstream,
            error,
            bytes_out: 0,
            expected,
            complete,
        };
        Poll::Ready(Ok(Response::from_parts(
            parts,
            Logged { inner: body, done },
        )))
    }
}

pin_project! {
    /// The request body, counting bytes for the log.
    pub struct Counted<B> {
        #[pin]
        inner: B,
        record: Arc<Record>,
    }
}

impl<B: HttpBody<Data = Bytes>> HttpBody for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                this.record
                    .bytes_in
                    .fetch_add(d.len() as u64, Ordering::Relaxed);
            }
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

struct Done {
    record: Arc<Record>,
    enabled: bool,
    metrics: Arc<Metrics>,
    status: u16,
    facts: Option<RequestFacts>,
    upstream: Option<UpstreamTiming>,
    error: Option<&'static str>,
    bytes_out: u64,
    /// hyper stops polling a body once its Content-Length is written.
    expected: Option<u64>,
    complete: bool,
}

impl Drop for Done {
    fn drop(&mut self) {
        let r = &self.record;
        let elapsed = r.start.elapsed();
        let bytes_in = r.bytes_in.load(Ordering::Relaxed);
        let upstream = self.upstream.map(|u| u.0);
        self.metrics.request_finished(
            &r.method,
            self.status,
            elapsed.as_secs_f64(),
            upstream.map(|u| u.as_secs_f64()),
            bytes_in,
            self.bytes_out,
        );
        if !self.enabled {
            return;
        }
        let client = self
            .facts
            .as_ref()
            .map(|f| f.client)
            .or(r.conn.as_ref().map(|c| c.peer.ip()));
        let completed = self.complete || self.expected == Some(self.bytes_out);
        let send_timed_out = || {
            r.conn
                .as_ref()
                .is_some_and(|c| c.send_timed_out.load(Ordering::Relaxed))
        };
        let error = match self.error {
            None if !completed && send_timed_out() => Some("send_timeout"),
            e => e,
        };
        let request_id = self
            .facts
            .as_ref()
            .and_then(|f| f.request_id.to_str().ok())
            .unwrap_or("");
        let path = r.path.as_ref().map(|p| p.as_str()).unwrap_or("");
        let ua = r
            .user_agent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some(format) = crate::telemetry::access_format() else {
            return;
        };
        let line = Line {
            client,
            method: r.method.as_str(),
            path,
            proto: match r.version {
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_11 => "HTTP/1.1",
                Version::HTTP_2 => "HTTP/2.0",
                _ => "HTTP/?",
            },
            status: self.status,
            request_bytes: bytes_in,
            response_bytes: self.bytes_out,
            duration_us: elapsed.as_micros() as u64,
            upstream_us: upstream.map(|u| u.as_micros() as u64),
            user_agent: ua,
            request_id,
            error,
            completed,
        };
        // One buffer per thread, reused: no allocation per line.
        thread_local! {
            static TEXT: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(512));
        }
        TEXT.with_borrow_mut(|text| {
            text.clear();
            let now = std::time::SystemTime::now();
            match format {
                LogFormat::Json => line.write_json(now, text),
                LogFormat::Text => line.write_text(now, text),
            }
            crate::telemetry::write_access_line(text.as_bytes());
        });
    }
}

pin_project! {
    /// The response body, counting bytes and logging the request when done.
    pub struct Logged {
        #[pin]
        inner: Body,
        done: Done,
    }
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = crate::body::BoxError;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.done.bytes_out += d.len() as u64;
                }
            }
            Poll::Ready(None) => this.done.complete = true,
            _ => {}
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
