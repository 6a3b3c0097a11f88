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
    shared: Option<Arc<Shared>>,
}

impl StaticFilesLayer {
    pub fn new(cfg: Option<StaticConfig>) -> Self {
        Self {
            shared: cfg.map(|cfg| {
                let root = std::fs::canonicalize(&cfg.dir).unwrap_or_else(|_| cfg.dir.clone());
                let serve = ServeDir::new(&root)
                    .append_index_html_on_directories(false)
                    .precompressed_br()
                    .precompressed_gzip();
                Arc::new(Shared { cfg, root, serve })
            }),
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
    shared: Option<Arc<Shared>>,
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

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode_path(p: &Path) -> String {
    let mut out = String::new();
    for comp in p.components() {
        let std::path::Component::Normal(seg) = comp else {
            continue;
        };
        out.push('/');
        for b in seg.as_encoded_bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(b) {
                out.push(*b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
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
        let shared = match &self.shared {
            Some(s) if req.uri().path().starts_with(s.cfg.prefix.as_str()) => s.clone(),
            _ => return Either::Inner(self.inner.call(req)),
        };
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
