//! The one place the request path is composed, outermost first:
//!
//! 1. access log + request metrics — sees every answer, podgate's own too;
//! 2. header normalisation — request id, framing checks, hop-by-hop removal,
//!    client-address headers; cleans the response on the way back;
//! 3. prefix stripping (`PODGATE_STRIP_PREFIX`) — 404 outside the prefix;
//! 4. compression (`PODGATE_COMPRESSION`) — of app and static responses;
//! 5. static files (`PODGATE_STATIC_DIR`) — answered without the app;
//! 6. body limits — 413 above `PODGATE_MAX_BODY`, 408 on a stalled upload;
//! 7. request buffering (`PODGATE_BUFFER_REQUESTS`) — before an app slot
//!    is taken, so slow uploads never hold one;
//! 8. app concurrency limit (`PODGATE_APP_CONCURRENCY`) — queue, then 503;
//! 9. the proxy — the pooled client to the app, retries and upgrades.
//!
//! Optional layers are left out (`option_layer`) when their setting is off.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tower::util::Either;
use tower::{Service, ServiceBuilder};
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;

use crate::body::{self, Body};
use crate::config::Config;
use crate::layers::access_log::{AccessLogLayer, Logged};
use crate::layers::app_limit::AppLimitLayer;
use crate::layers::buffer::BufferLayer;
use crate::layers::limit::BodyLimitLayer;
use crate::layers::normalize::NormalizeLayer;
use crate::layers::prefix::StripPrefixLayer;
use crate::layers::static_files::StaticFilesLayer;
use crate::metrics::Metrics;
use crate::proxy::Proxy;

pub fn build(
    cfg: &Config,
    proxy: Proxy,
    metrics: Arc<Metrics>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<Logged>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + Sync
       + 'static {
    let inner = ServiceBuilder::new()
        .option_layer(cfg.static_files().map(StaticFilesLayer::new))
        .layer(BodyLimitLayer::new(cfg.max_body, cfg.body_timeout))
        .option_layer(cfg.buffer().map(BufferLayer::new))
        .option_layer((cfg.app_concurrency > 0).then(|| {
            AppLimitLayer::new(
                cfg.app_concurrency,
                cfg.app_queue,
                cfg.app_queue_timeout,
                metrics.clone(),
            )
        }))
        .service(proxy);
    let inner = if cfg.compression.enabled() {
        let predicate =
            DefaultPredicate::new().and(SizeAbove::new(cfg.compression_min_size as u64));
        let layer = CompressionLayer::new()
            .gzip(cfg.compression.gzip)
            .br(cfg.compression.br)
            .compress_when(predicate);
        Either::Left(
            ServiceBuilder::new()
                .map_response(box_response as fn(_) -> _)
                .layer(layer)
                .service(inner),
        )
    } else {
        Either::Right(inner)
    };
    ServiceBuilder::new()
        .layer(AccessLogLayer::new(cfg.access_log, metrics))
        .layer(NormalizeLayer::new(cfg.normalize()))
        .option_layer(cfg.strip_prefix.clone().map(StripPrefixLayer::new))
        .service(inner)
}

fn box_response(r: Response<tower_http::compression::CompressionBody<Body>>) -> Response<Body> {
    r.map(body::boxed)
}
