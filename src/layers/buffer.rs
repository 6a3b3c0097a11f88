//! `PODGATE_BUFFER_REQUESTS`: read a request body whole before the app is
//! contacted, so a slow upload never occupies an app worker (the reason
//! gunicorn asks for a buffering proxy in front). Bodies up to the memory
//! size stay in memory; larger ones are spooled to a file in
//! `PODGATE_BUFFER_DIR` (unlinked at once, so nothing is left behind even
//! on a crash), or refused with 413 when no directory is configured.
//! A buffered body is sent to the app with a Content-Length; trailers of a
//! buffered chunked body are not forwarded.

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Request, Response};
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tower::{Layer, Service};

use crate::body::{self, Body};
use crate::error::ProxyError;

#[derive(Debug, Clone)]
pub struct BufferConfig {
    /// Largest body kept in memory.
    pub memory: u64,
    /// Memory all buffered bodies together may hold (`PODGATE_BUFFER_MEMORY`).
    pub budget: u64,
    pub dir: Option<PathBuf>,
}

/// The budget and what is taken of it, shared by every request.
#[derive(Debug)]
struct Shared {
    cfg: BufferConfig,
    used: Arc<AtomicU64>,
}

/// Bytes of the budget one body holds, given back when it is dropped.
struct Reservation {
    used: Arc<AtomicU64>,
    bytes: u64,
}

impl Reservation {
    /// Takes `more` bytes if the budget has them.
    fn grow(&mut self, more: u64, budget: u64) -> bool {
        let ok = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(more).filter(|n| *n <= budget)
            })
            .is_ok();
        if ok {
            self.bytes += more;
        }
        ok
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[derive(Clone)]
pub struct BufferLayer {
    cfg: Arc<Shared>,
}

impl BufferLayer {
    pub fn new(cfg: BufferConfig) -> Self {
        Self {
            cfg: Arc::new(Shared {
                cfg,
                used: Arc::new(AtomicU64::new(0)),
            }),
        }
    }
}

impl<S> Layer<S> for BufferLayer {
    type Service = Buffer<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Buffer {
            inner,
            cfg: self.cfg.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Buffer<S> {
    inner: S,
    cfg: Arc<Shared>,
}

impl<S> Service<Request<Body>> for Buffer<S>
where
    S: crate::ctx::InnerService,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = crate::ctx::Either<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        use crate::ctx::Either;
        if req.body().is_end_stream() || is_upgrade(&req) {
            return Either::Inner(self.inner.call(req));
        }
        let cfg = self.cfg.clone();
        let mut inner = self.inner.clone();
        Either::Boxed(Box::pin(async move {
            let (mut parts, b) = req.into_parts();
            let (b, len) = match read_whole(b, &cfg).await {
                Ok(x) => x,
                Err(e) => return Ok(e.to_response()),
            };
            parts.headers.remove(header::TRANSFER_ENCODING);
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            let fut: crate::body::BoxFuture = Box::pin(inner.call(Request::from_parts(parts, b)));
            fut.await
        }))
    }
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.extensions()
        .get::<crate::ctx::UpgradeRequested>()
        .is_some()
}

static SPOOL_SEQ: AtomicU64 = AtomicU64::new(0);

async fn read_whole(mut b: Body, shared: &Shared) -> Result<(Body, u64), ProxyError> {
    let cfg = &shared.cfg;
    let mut held = Reservation {
        used: shared.used.clone(),
        bytes: 0,
    };
    let mut mem = BytesMut::new();
    let mut file: Option<tokio::fs::File> = None;
    let mut total: u64 = 0;
    while let Some(frame) = b.frame().await {
        let frame = frame.map_err(crate::error::classify_body_error)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        if let Some(f) = &mut file {
            f.write_all(&data).await.map_err(spool_error)?;
            continue;
        }
        let fits = total <= cfg.memory;
        if fits && held.grow(data.len() as u64, cfg.budget) {
            mem.extend_from_slice(&data);
            continue;
        }
        let Some(dir) = &cfg.dir else {
            // Over the per-body size: the client's; over the shared budget:
            // podgate is full for now.
            return Err(if fits {
                ProxyError::BufferFull
            } else {
                ProxyError::BodyTooLarge
            });
        };
        let name = dir.join(format!(
            "podgate-{}-{}.body",
            std::process::id(),
            SPOOL_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&name)
            .await
            .map_err(spool_error)?;
        // Unlinked while open: the data lives until the file is closed.
        let _ = tokio::fs::remove_file(&name).await;
        f.write_all(&mem).await.map_err(spool_error)?;
        f.write_all(&data).await.map_err(spool_error)?;
        mem = BytesMut::new();
        held = Reservation {
            used: shared.used.clone(),
            bytes: 0,
        };
        file = Some(f);
    }
    match file {
        None => Ok((
            body::boxed(body::Guarded::new(
                http_body_util::Full::new(mem.freeze()),
                held,
            )),
            total,
        )),
        Some(mut f) => {
            f.flush().await.map_err(spool_error)?;
            f.rewind().await.map_err(spool_error)?;
            Ok((
                body::boxed(FileBody {
                    file: f,
                    remaining: total,
                    buf: BytesMut::new(),
                }),
                total,
            ))
        }
    }
}

fn spool_error(e: std::io::Error) -> ProxyError {
    tracing::warn!(error = %e, "cannot spool request body to PODGATE_BUFFER_DIR");
    ProxyError::BodyTooLarge
}

pin_project_lite::pin_project! {
    /// A spooled body read back from its file, 64 KiB at a time. The read
    /// buffer is kept across polls: a poll that finds no data (Pending)
    /// allocates nothing, and a frame the app has taken frees its block for
    /// the next read.
    struct FileBody {
        #[pin]
        file: tokio::fs::File,
        remaining: u64,
        buf: BytesMut,
    }
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.project();
        if *this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = (*this.remaining).min(64 * 1024) as usize;
        if this.buf.capacity() < want {
            this.buf.reserve(want);
        }
        match tokio_util::io::poll_read_buf(this.file, cx, this.buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(0)) => Poll::Ready(Some(Err(std::io::ErrorKind::UnexpectedEof.into()))),
            Poll::Ready(Ok(n)) => {
                *this.remaining = this.remaining.saturating_sub(n as u64);
                Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}
