//! The admin listener, apart from the proxy port so it never shadows an app
//! path. Endpoints:
//!
//! * `GET /livez`   — 200 while the event loop runs; never depends on the app.
//! * `GET /readyz`  — 200 when podgate listens and the app answers (cached
//!   check); 503 with a one-line reason otherwise, and from the moment
//!   shutdown starts.
//! * `GET /metrics` — Prometheus text format.
//! * `GET /status`  — JSON: version, uptime, effective config, readiness, the
//!   last app check, counters. `podgate status` reads it.
//! * `POST /drain`  — starts the same drain as SIGTERM. Accepted only from
//!   loopback (a container of the same pod, e.g. the app's preStop hook);
//!   anyone else gets 403, so no peer in the cluster can take a pod out.
//!
//! Admin requests never appear in the access log.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Source;
use crate::health::AppHealth;
use crate::metrics::Metrics;

pub struct AdminState {
    pub health: Arc<AppHealth>,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    pub effective: Vec<(&'static str, String, Source)>,
    pub drain: CancellationToken,
    pub tls: Option<Arc<crate::tls::Tls>>,
}

/// Serves until `stop` is cancelled.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, peer, req)) }
            });
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(5))
                .keep_alive(true);
            let _ = b.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn route(state: &AdminState, peer: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET | &Method::HEAD, "/livez") => text(StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") => match state.health.ready() {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let mut r = text(StatusCode::OK, state.metrics.render());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        (&Method::GET | &Method::HEAD, "/status") => {
            let mut r = text(StatusCode::OK, status_json(state).to_string());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        (&Method::POST, "/drain") => {
            if !peer.ip().is_loopback() {
                return text(
                    StatusCode::FORBIDDEN,
                    "drain is accepted from loopback only\n",
                );
            }
            state.drain.cancel();
            text(StatusCode::ACCEPTED, "draining\n")
        }
        (_, "/livez" | "/readyz" | "/metrics" | "/status" | "/drain") => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static(if path == "/drain" {
                    "POST"
                } else {
                    "GET, HEAD"
                }),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /livez /readyz /metrics /status\n",
        ),
    }
}

/// The `/status` document. Only documented settings appear, and none is
/// secret.
pub fn status_json(state: &AdminState) -> serde_json::Value {
    let ready = state.health.ready();
    let config: serde_json::Map<String, serde_json::Value> = state
        .effective
        .iter()
        .map(|(k, v, src)| {
            (
                format!("PODGATE_{k}"),
                json!({"value": v, "source": match src { Source::Env => "env", Source::Default => "default" }}),
            )
        })
        .collect();
    let m = &state.metrics;
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "ready": ready.is_ok(),
        "ready_reason": ready.err(),
        "draining": state.health.draining(),
        "last_app_check": state.health.last_check(),
        "counters": {
            "requests": m.requests_total.load(Ordering::Relaxed),
            "responses_5xx": m.errors_5xx.load(Ordering::Relaxed),
            "open_connections": m.open_connections.load(Ordering::Relaxed),
            "upstream_errors": m.upstream_errors_total(),
        },
        "tls": state.tls.as_ref().and_then(|t| t.info()).map(|i| {
            let now = std::time::SystemTime::now();
            json!({
                "subject": i.subject,
                "sans": i.sans,
                "not_before": i.not_before,
                "not_after": i.not_after,
                "expires_in_seconds": i.remaining(now),
            })
        }),
        "config": config,
    })
}
