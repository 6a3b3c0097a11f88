//! `PODGATE_STATIC_DIR`: files served by podgate itself under
//! `PODGATE_STATIC_PREFIX`, with tower-http's `ServeDir` (content types,
//! ETag/Last-Modified and conditional requests, Range, precompressed `.br` /
//! `.gz` variants). Never a directory listing.
//!
//! Path safety: `ServeDir` refuses `..` segments; on top of that the file's
//! real path (symlinks resolved) must lie inside the directory, so a symlink
//! in a shared volume cannot expose the rest of the filesystem. Encoded
//! separators (`%2f`, `%5c`) and backslashes are refused outright.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use tower::{Layer, Service, ServiceExt};
use tower_http::services::ServeDir;

use crate::body::{self, Body};

#[derive(Debug, Clone)]
pub struct StaticConfig {
    pub dir: PathBuf,
    pub prefix: String,
    pub cache_control: Option<HeaderValue>,
    pub fallthrough: bool,
}

struct Shared {
    cfg: StaticConfig,
    root: PathBuf,
    serve: ServeDir,
}

#[derive(Clone)]
pub struct StaticFilesLayer {
    shared: Arc<Shared>,
}

impl StaticFilesLayer {
    pub fn new(cfg: StaticConfig) -> Self {
        let root = std::fs::canonicalize(&cfg.dir).unwrap_or_else(|_| cfg.dir.clone());
        let serve = ServeDir::new(&root)
            .append_index_html_on_directories(false)
            .precompressed_br()
            .precompressed_gzip();
        Self {
            shared: Arc::new(Shared { cfg, root, serve }),
        }
    }
}

impl<S> Layer<S> for StaticFilesLayer {
    type Service = StaticFiles<S>;
    fn layer(&self, inner: S) -> Self::Service {
        StaticFiles {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
pub struct StaticFiles<S> {
    inner: S,
    shared: Arc<Shared>,
}

enum Decision {
    Serve(PathBuf),
    NotFound,
    Forbidden,
    App,
}

/// The file a static path names, if it is safe: decoded, no `..`, no
/// separators smuggled in encoded form, and no symlink out of the root.
async fn resolve(root: &Path, rel: &str) -> Decision {
    let lower = rel.to_ascii_lowercase();
    if rel.contains('\\') || lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00")
    {
        return Decision::Forbidden;
    }
    let Some(decoded) = percent_decode(rel) else {
        return Decision::Forbidden;
    };
    let mut path = root.to_path_buf();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => continue,
            ".." => return Decision::Forbidden,
            s => path.push(s),
        }
    }
    match tokio::fs::canonicalize(&path).await {
        Ok(real) if real.starts_with(root) => match tokio::fs::metadata(&real).await {
            Ok(m) if m.is_file() => Decision::Serve(real),
            _ => Decision::NotFound,
        },
        Ok(_) => Decision::Forbidden,
        Err(_) => Decision::NotFound,
    }
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits, or bytes
/// that are not UTF-8, mean the path names nothing.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let malformed = b.iter().enumerate().any(|(i, &c)| {
        c == b'%'
            && !b
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if malformed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// What a path segment keeps unescaped in a redirect: RFC 3986 unreserved.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode_path(p: &Path) -> String {
    let mut out = String::new();
    for comp in p.components() {
        let std::path::Component::Normal(seg) = comp else {
            continue;
        };
        out.push('/');
        out.extend(percent_encoding::percent_encode(
            seg.as_encoded_bytes(),
            SEGMENT,
        ));
    }
    out
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl<S, B> Service<Request<B>> for StaticFiles<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = crate::ctx::Either<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        use crate::ctx::Either;
        if !req
            .uri()
            .path()
            .starts_with(self.shared.cfg.prefix.as_str())
        {
            return Either::Inner(self.inner.call(req));
        }
        let shared = self.shared.clone();
        let mut inner = self.inner.clone();
        Either::Boxed(Box::pin(async move {
            let is_read = matches!(*req.method(), Method::GET | Method::HEAD);
            let rel = req.uri().path()[shared.cfg.prefix.len()..].to_string();
            let decision = if is_read {
                resolve(&shared.root, &rel).await
            } else {
                Decision::App
            };
            let real = match decision {
                Decision::Serve(real) => real,
                Decision::Forbidden => return Ok(plain(StatusCode::FORBIDDEN, "forbidden\n")),
                Decision::NotFound | Decision::App if shared.cfg.fallthrough => {
                    return inner.call(req).await
                }
                Decision::NotFound => return Ok(plain(StatusCode::NOT_FOUND, "not found\n")),
                Decision::App => {
                    let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                    r.headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                    return Ok(r);
                }
            };
            // Serve the resolved file itself, so a symlink swapped after the
            // check cannot redirect the read.
            let Ok(inside) = real.strip_prefix(&shared.root) else {
                return Ok(plain(StatusCode::FORBIDDEN, "forbidden\n"));
            };
            let rel = percent_encode_path(inside);
            // ServeDir resolves the URI path below its root: hand it the part
            // after the prefix (it would otherwise look for root/static/…).
            let (mut parts, _) = req.into_parts();
            let query = parts
                .uri
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            parts.uri =
                Uri::try_from(format!("{rel}{query}")).unwrap_or_else(|_| Uri::from_static("/"));
            let sreq = Request::from_parts(parts, http_body_util::Empty::<bytes::Bytes>::new());
            let resp = match shared.serve.clone().oneshot(sreq).await {
                Ok(r) => r,
                Err(e) => match e {},
            };
            let mut resp = resp.map(body::boxed);
            if resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED {
                if let Some(cc) = &shared.cfg.cache_control {
                    resp.headers_mut().insert(header::CACHE_CONTROL, cc.clone());
                }
            }
            Ok(resp)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_or_refuses() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("%2e%2e").as_deref(), Some(".."));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%e2"), None);
    }
}
