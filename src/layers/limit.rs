//! Request body limits: a size limit (413) and a read timeout between chunks
//! (408), applied while the body streams, so nothing is buffered.
//!
//! The count is `http_body_util::Limited`'s; this layer adds the early 413
//! and the timeout. A body announced by Content-Length above the limit is refused before the
//! app is contacted. A chunked body that crosses the limit fails mid-stream:
//! the upload to the app is aborted before its last chunk, so the app never
//! sees a truncated body as if it were whole, and the client gets 413.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body::Body as HttpBody;
use http_body_util::Limited;
use tower::{Layer, Service};

use crate::body::{self, Body, BoxError};
use crate::error::ProxyError;

#[derive(Debug, Clone, Copy)]
pub struct BodyLimitLayer {
    max: Option<u64>,
    read_timeout: Duration,
}

impl BodyLimitLayer {
    pub fn new(max: Option<u64>, read_timeout: Duration) -> Self {
        Self { max, read_timeout }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit { inner, cfg: *self }
    }
}

#[derive(Debug, Clone)]
pub struct BodyLimit<S> {
    inner: S,
    cfg: BodyLimitLayer,
}

impl<S, B> Service<Request<B>> for BodyLimit<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = crate::ctx::Either<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(max) = self.cfg.max {
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > max) {
                return crate::ctx::Either::Ready(Some(ProxyError::BodyTooLarge.to_response()));
            }
        }
        let (parts, b) = req.into_parts();
        let b = if b.is_end_stream() {
            // Nothing to read: no timer, no wrapper.
            body::empty()
        } else {
            let limit = self
                .cfg
                .max
                .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
            body::boxed(body::IdleTimeout::new(
                Limited::new(b, limit),
                self.cfg.read_timeout,
            ))
        };
        crate::ctx::Either::Inner(self.inner.call(Request::from_parts(parts, b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, LengthLimitError};

    #[tokio::test]
    async fn limited_passes_small_and_fails_large() {
        let ok = Limited::new(Full::new(Bytes::from_static(b"hello")), 5);
        assert_eq!(ok.collect().await.unwrap().to_bytes(), "hello");
        let big = Limited::new(Full::new(Bytes::from_static(b"hello!")), 5);
        let err = big.collect().await.unwrap_err();
        assert!(err.downcast_ref::<LengthLimitError>().is_some());
    }
}
