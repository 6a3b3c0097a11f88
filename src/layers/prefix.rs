//! `PODGATE_STRIP_PREFIX`: the job ingress-nginx's rewrite-target does. A
//! request for `/test01/x?y` reaches the app as `/x?y` with
//! `X-Forwarded-Prefix: /test01`, so frameworks can build correct URLs;
//! anything outside the prefix gets 404. The prefix is matched on the raw
//! path, byte for byte, and the rest of the path is not re-encoded.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use tower::{Layer, Service};

use crate::body::{self, Body};
use crate::ctx::Either;

use crate::headers::X_FORWARDED_PREFIX;

#[derive(Clone)]
pub struct StripPrefixLayer {
    prefix: Arc<str>,
}

impl StripPrefixLayer {
    pub fn new(prefix: String) -> Self {
        Self {
            prefix: Arc::from(prefix),
        }
    }
}

impl<S> Layer<S> for StripPrefixLayer {
    type Service = StripPrefix<S>;
    fn layer(&self, inner: S) -> Self::Service {
        StripPrefix {
            inner,
            prefix: self.prefix.clone(),
        }
    }
}

#[derive(Clone)]
pub struct StripPrefix<S> {
    inner: S,
    prefix: Arc<str>,
}

/// The path with `prefix` removed, if the path is under it.
pub fn strip(pq: &str, prefix: &str) -> Option<String> {
    let rest = pq.strip_prefix(prefix)?;
    match rest.as_bytes().first() {
        None => Some("/".into()),
        Some(b'/') => Some(rest.into()),
        Some(b'?') => Some(format!("/{rest}")),
        Some(_) => None, // "/test012" is not under "/test01"
    }
}

impl<S, B> Service<Request<B>> for StripPrefix<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let prefix = &self.prefix;
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let Some(rest) = strip(pq, prefix).and_then(|r| PathAndQuery::try_from(r).ok()) else {
            let mut resp = Response::new(body::full("not found\n"));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return Either::Ready(Some(resp));
        };
        *req.uri_mut() = Uri::from(rest);
        if let Ok(v) = HeaderValue::from_str(prefix) {
            req.headers_mut().insert(X_FORWARDED_PREFIX.clone(), v);
        }
        Either::Inner(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::strip;

    #[test]
    fn strips_only_whole_segments() {
        assert_eq!(strip("/test01", "/test01").as_deref(), Some("/"));
        assert_eq!(strip("/test01/", "/test01").as_deref(), Some("/"));
        assert_eq!(
            strip("/test01/a/b?x=1", "/test01").as_deref(),
            Some("/a/b?x=1")
        );
        assert_eq!(strip("/test01?x=1", "/test01").as_deref(), Some("/?x=1"));
        assert_eq!(strip("/test012", "/test01"), None);
        assert_eq!(strip("/other", "/test01"), None);
        assert_eq!(
            strip("/test01/%2e%2e/x", "/test01").as_deref(),
            Some("/%2e%2e/x")
        );
    }
}
