//! Protects a saturated app: at most `APP_CONCURRENCY` requests in flight to
//! it (e.g. the gunicorn worker count), a bounded queue in front, and a
//! queue timeout. Beyond those, 503 with Retry-After at once, instead of
//! piling work onto workers that cannot take it. A slot is held until the
//! app's response body has been fully relayed.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tokio::sync::Semaphore;
use tower::{Layer, Service};

use crate::body::{self, Body};
use crate::error::ProxyError;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppLimitLayer {
    state: Arc<State>,
}

struct State {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl AppLimitLayer {
    pub fn new(concurrency: usize, queue: usize, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            state: Arc::new(State {
                slots: Arc::new(Semaphore::new(concurrency)),
                waiting: AtomicUsize::new(0),
                max_waiting: queue,
                timeout,
                metrics,
            }),
        }
    }
}

impl<S> Layer<S> for AppLimitLayer {
    type Service = AppLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AppLimit {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AppLimit<S> {
    inner: S,
    state: Arc<State>,
}

impl<S> Service<Request<Body>> for AppLimit<S>
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
        let state = self.state.clone();
        let permit = match state.slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                if state.waiting.load(Ordering::Acquire) >= state.max_waiting {
                    state.metrics.app_rejected();
                    return Either::Ready(Some(ProxyError::Overloaded.to_response()));
                }
                None
            }
        };
        let mut inner = self.inner.clone();
        Either::Boxed(Box::pin(async move {
            let permit = match permit {
                Some(p) => p,
                None => {
                    state.waiting.fetch_add(1, Ordering::AcqRel);
                    state.metrics.app_queue_add(1);
                    let r =
                        tokio::time::timeout(state.timeout, state.slots.clone().acquire_owned())
                            .await;
                    state.waiting.fetch_sub(1, Ordering::AcqRel);
                    state.metrics.app_queue_add(-1);
                    match r {
                        Ok(Ok(p)) => p,
                        _ => {
                            state.metrics.app_rejected();
                            return Ok(ProxyError::Overloaded.to_response());
                        }
                    }
                }
            };
            let fut: crate::body::BoxFuture = Box::pin(inner.call(req));
            let Ok(resp) = fut.await;
            Ok(resp.map(|b| body::boxed(body::Guarded::new(b, permit))))
        }))
    }
}
