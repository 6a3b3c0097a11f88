//! The one place the request path is composed, outermost first:
//!
//! 1. access log + request metrics — sees every answer, podgate's own too;
//! 2. header normalisation — request id, framing checks, hop-by-hop removal,
//!    client-address headers; cleans the response on the way back;
//! 3. body limits — 413 above `PODGATE_MAX_BODY`, 408 on a stalled upload;
//! 4. the proxy — the pooled client to the app, retries and upgrades.

use std::convert::Infallible;

use http::{Request, Response};
use hyper::body::Incoming;
use tower::{Service, ServiceBuilder};

use crate::access_log::{AccessLogLayer, Logged};
use crate::config::Config;
use crate::limit::BodyLimitLayer;
use crate::normalize::{NormalizeConfig, NormalizeLayer};
use crate::proxy::Proxy;
use std::sync::Arc;

pub fn build(
    cfg: &Config,
    proxy: Proxy,
    metrics: Arc<crate::metrics::Metrics>,
) -> impl Service<Request<Incoming>, Response = Response<Logged>, Error = Infallible, Future = impl Send>
       + Clone
       + Send
       + Sync
       + 'static {
    ServiceBuilder::new()
        .layer(AccessLogLayer::new(cfg.access_log, metrics))
        .layer(NormalizeLayer::new(NormalizeConfig::from_config(cfg)))
        .layer(BodyLimitLayer::new(cfg.max_body, cfg.body_timeout))
        .service(proxy)
}
