//! Request body limits: a size limit (413) and a read timeout between chunks
//! (408), applied while the body streams, so nothing is buffered.
//!
//! A body announced by Content-Length above the limit is refused before the
//! app is contacted. A chunked body that crosses the limit fails mid-stream:
//! the upload to the app is aborted before its last chunk, so the app never
//! sees a truncated body as if it were whole, and the client gets 413.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::{self, Body, BoxError};
use crate::error::{BodyTooLarge, ProxyError};

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
            body::boxed(body::IdleTimeout::new(
                Limited::new(b, self.cfg.max.unwrap_or(u64::MAX)),
                self.cfg.read_timeout,
            ))
        };
        crate::ctx::Either::Inner(self.inner.call(Request::from_parts(parts, b)))
    }
}

pin_project! {
    /// Counts bytes and fails with [`BodyTooLarge`] past the limit.
    pub struct Limited<B> {
        #[pin]
        inner: B,
        remaining: u64,
    }
}

impl<B> Limited<B> {
    pub fn new(inner: B, max: u64) -> Self {
        Self {
            inner,
            remaining: max,
        }
    }
}

impl<B> HttpBody for Limited<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > *this.remaining {
                        *this.remaining = 0;
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    *this.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn limited_passes_small_and_fails_large() {
        let ok = Limited::new(Full::new(Bytes::from_static(b"hello")), 5);
        assert_eq!(ok.collect().await.unwrap().to_bytes(), "hello");
        let big = Limited::new(Full::new(Bytes::from_static(b"hello!")), 5);
        let err = big.collect().await.unwrap_err();
        assert!(err.downcast_ref::<BodyTooLarge>().is_some());
    }
}
