//! The one body type podgate hands to hyper, and small constructors.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The most a connection's read buffer grows to, both toward clients and
/// toward the app. Unbounded, hyper grows it to ~400 KiB per connection on
/// large bodies, memory a sidecar pays per connection for no gain. 64 KiB of
/// body plus room for its head, so that a 64 KiB response comes in one read
/// and goes out in one write: at exactly 64 KiB it took two of each, and
/// GET 64 KiB × 64 used 1.22× the CPU per request (kernel 36.0 against
/// 28.5 µs). 128 KiB measured no faster and took peak RSS from 15 to 23 MiB.
pub const READ_BUF_MAX: usize = 72 * 1024;

/// Request and response bodies after the first layer: boxed once so every
/// layer and the client agree on one type.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A boxed response future, for layers that wait before calling inward.
pub type BoxFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<http::Response<Body>, std::convert::Infallible>>
            + Send,
    >,
>;

pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync()
}

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// Boxes any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Raised when a body makes no progress for its allowed pause.
#[derive(Debug, thiserror::Error)]
#[error("body stalled for longer than {0:?}")]
pub struct BodyStalled(pub std::time::Duration);

pin_project_lite::pin_project! {
    /// Fails a body that pauses longer than `limit` between frames. Unlike
    /// tower-http's `TimeoutBody`, it passes size hints through, which the
    /// retry logic and hyper's framing rely on.
    ///
    /// One timer per body, armed at the first pause and only moved when it
    /// fires early: starting and cancelling a timer at every pause went
    /// through tokio's timer wheel several times per upload.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
        limit: std::time::Duration,
        // When the current pause began; `None` while frames are flowing.
        paused_at: Option<tokio::time::Instant>,
    }
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, limit: std::time::Duration) -> Self {
        Self {
            inner,
            sleep: None,
            limit,
            paused_at: None,
        }
    }
}

impl<B> http_body::Body for IdleTimeout<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::future::Future;
        use std::task::Poll;
        let mut this = self.project();
        if let Poll::Ready(r) = this.inner.poll_frame(cx) {
            *this.paused_at = None;
            return Poll::Ready(r.map(|r| r.map_err(Into::into)));
        }
        let since = *this.paused_at.get_or_insert_with(tokio::time::Instant::now);
        let deadline = since + *this.limit;
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep_until(deadline)));
        }
        let Some(mut sleep) = this.sleep.as_pin_mut() else {
            return Poll::Pending;
        };
        // The timer may have been set for an earlier pause: it only counts
        // once this pause has lasted `limit`.
        while sleep.as_mut().poll(cx).is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return Poll::Ready(Some(Err(Box::new(BodyStalled(*this.limit)))));
            }
            sleep.as_mut().reset(deadline);
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A body that keeps `guard` alive until the body is finished or
    /// dropped: an app slot, a connection's in-flight count.
    pub struct Guarded<B, G> {
        #[pin]
        inner: B,
        guard: G,
    }
}

impl<B, G> Guarded<B, G> {
    pub fn new(inner: B, guard: G) -> Self {
        Self { inner, guard }
    }
}

impl<B: http_body::Body<Data = Bytes>, G> http_body::Body for Guarded<B, G> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    /// A body that sends one byte after each of `gaps`.
    fn paced(gaps: Vec<Duration>) -> impl http_body::Body<Data = Bytes, Error = BoxError> {
        let frames = futures_util::stream::unfold(gaps.into_iter(), |mut gaps| async move {
            let gap = gaps.next()?;
            tokio::time::sleep(gap).await;
            Some((
                Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"x"))),
                gaps,
            ))
        });
        StreamBody::new(frames)
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_shorter_than_the_limit_never_fail_however_long_the_body() {
        let limit = Duration::from_secs(10);
        let body = IdleTimeout::new(paced(vec![Duration::from_secs(7); 6]), limit);
        let started = tokio::time::Instant::now();
        let got = body.collect().await.expect("no pause reached the limit");
        assert_eq!(got.to_bytes().len(), 6);
        assert!(started.elapsed() >= Duration::from_secs(42));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_of_the_limit_fails_counted_from_its_start() {
        let limit = Duration::from_secs(10);
        let gaps = vec![
            Duration::from_secs(7),
            Duration::from_secs(7),
            Duration::from_secs(60),
        ];
        let mut body = std::pin::pin!(IdleTimeout::new(paced(gaps), limit));
        for _ in 0..2 {
            let f = body.frame().await.expect("a frame").expect("not stalled");
            assert!(f.is_data());
        }
        let paused = tokio::time::Instant::now();
        let err = body.frame().await.expect("an error").expect_err("stalled");
        assert!(err.is::<BodyStalled>(), "{err}");
        assert_eq!(paused.elapsed(), limit);
    }
}
