//! Prometheus metrics, rendered in text format by the admin listener.
//!
//! Labels are bounded: methods outside the standard set count as `OTHER`, and
//! statuses are counted by class, so a hostile client cannot grow the series.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// Handles into `requests`, one per (method, status class), created on
    /// first use: the family's lookup hashes its labels under a lock, which
    /// showed up in profiles of the request path.
    request_slots: [[std::sync::OnceLock<Counter>; 5]; METHODS.len()],
    request_duration: Histogram,
    upstream_duration: Histogram,
    in_flight: Gauge,
    connections_open: Gauge,
    connections_total: Counter,
    upstream_errors: Family<KindLabel, Counter>,
    client_errors: Family<KindLabel, Counter>,
    tunnels_open: Gauge,
    upstream_retries: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    ready: Gauge,
    app_queue: Gauge,
    app_rejected: Counter,
    /// Mirrors [`crate::telemetry::dropped_lines`], brought up to date on render.
    log_dropped: Counter,
    log_dropped_shown: AtomicU64,
    tls_expiry: Gauge,
    tls_handshake_failures: Family<ReasonLabel, Counter>,
    tls_reloads: Family<ResultLabel, Counter>,
    // Plain atomics mirrored for /status without parsing the registry.
    pub requests_total: AtomicU64,
    pub errors_5xx: AtomicU64,
    pub open_connections: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("podgate");
        let requests = Family::<RequestLabels, Counter>::default();
        // 0.5 ms .. ~65 s
        let request_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 18));
        let upstream_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 18));
        let in_flight = Gauge::default();
        let connections_open = Gauge::default();
        let connections_total = Counter::default();
        let upstream_errors = Family::<KindLabel, Counter>::default();
        let client_errors = Family::<KindLabel, Counter>::default();
        let tunnels_open = Gauge::default();
        let upstream_retries = Counter::default();
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let ready = Gauge::default();
        let app_queue = Gauge::default();
        let app_rejected = Counter::default();
        let log_dropped = Counter::default();
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);

        registry.register(
            "requests",
            "Requests answered, by method and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head to the end of the response",
            request_duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time the app took to send its response head",
            upstream_duration.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests being served now",
            in_flight.clone(),
        );
        registry.register(
            "client_connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        registry.register(
            "client_connections",
            "Client connections accepted",
            connections_total.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed requests to the app, by kind (app_refused, connect_timeout, response_timeout, app_closed, bad_response, ...)",
            upstream_errors.clone(),
        );
        registry.register(
            "client_errors",
            "Requests that failed on the client's side while being forwarded, by kind (body_too_large, body_timeout, client_body): not the app's doing",
            client_errors.clone(),
        );
        registry.register(
            "tunnels_open",
            "Upgraded connections (WebSocket) open now; each also counts in client_connections_open",
            tunnels_open.clone(),
        );
        registry.register(
            "upstream_retries",
            "Requests sent again on a fresh connection after the keep-alive race",
            upstream_retries.clone(),
        );
        registry.register(
            "request_bytes",
            "Request body bytes received from clients",
            bytes_in.clone(),
        );
        registry.register(
            "response_bytes",
            "Response body bytes sent to clients",
            bytes_out.clone(),
        );
        registry.register(
            "ready",
            "1 when podgate reports ready (listening and the app answers)",
            ready.clone(),
        );
        registry.register(
            "app_queue_length",
            "Requests waiting for an app slot (PODGATE_APP_CONCURRENCY)",
            app_queue.clone(),
        );
        registry.register(
            "app_rejected",
            "Requests answered 503 because the app was saturated",
            app_rejected.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stdout could not keep up",
            log_dropped.clone(),
        );
        registry.register("build_info", "podgate build", build);

        Self {
            registry,
            requests,
            request_slots: Default::default(),
            request_duration,
            upstream_duration,
            in_flight,
            connections_open,
            connections_total,
            upstream_errors,
            client_errors,
            tunnels_open,
            upstream_retries,
            bytes_in,
            bytes_out,
            ready,
            app_queue,
            app_rejected,
            log_dropped,
            log_dropped_shown: AtomicU64::new(0),
            tls_expiry: Gauge::default(),
            tls_handshake_failures: Family::default(),
            tls_reloads: Family::default(),
            requests_total: AtomicU64::new(0),
            errors_5xx: AtomicU64::new(0),
            open_connections: AtomicI64::new(0),
        }
    }

    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    pub fn request_finished(
        &self,
        method: &http::Method,
        status: u16,
        total_secs: f64,
        upstream_secs: Option<f64>,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        self.in_flight.dec();
        let m = method_index(method);
        let c = status_index(status);
        self.request_slots[m][c]
            .get_or_init(|| {
                self.requests
                    .get_or_create(&RequestLabels {
                        method: METHODS[m],
                        status_class: CLASSES[c],
                    })
                    .clone()
            })
            .inc();
        self.request_duration.observe(total_secs);
        if let Some(u) = upstream_secs {
            self.upstream_duration.observe(u);
        }
        self.bytes_in.inc_by(bytes_in);
        self.bytes_out.inc_by(bytes_out);
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors_5xx.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn connection_opened(&self) {
        self.connections_open.inc();
        self.connections_total.inc();
        self.open_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.dec();
        self.open_connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    pub fn client_error(&self, kind: &'static str) {
        self.client_errors.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn tunnel_opened(&self) {
        self.tunnels_open.inc();
    }

    pub fn tunnel_closed(&self) {
        self.tunnels_open.dec();
    }

    pub fn upstream_retry(&self) {
        self.upstream_retries.inc();
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(ready as i64);
    }

    pub fn app_queue_add(&self, n: i64) {
        self.app_queue.inc_by(n);
    }

    /// Registers the TLS series; only a podgate with a TLS listener has them
    /// (an expiry of 0 would read as long expired).
    pub fn with_tls(mut self, not_after: i64) -> Self {
        self.tls_expiry.set(not_after);
        self.registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the serving certificate expires (Unix time)",
            self.tls_expiry.clone(),
        );
        self.registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, by reason (timeout, client_closed, not_tls, no_client_certificate, bad_client_certificate, incompatible, no_alpn, alert_received, io, other)",
            self.tls_handshake_failures.clone(),
        );
        self.registry.register(
            "tls_reloads",
            "Certificate reloads after the files changed, by result (ok, error: the previous pair kept serving)",
            self.tls_reloads.clone(),
        );
        for result in ["ok", "error"] {
            let _ = self.tls_reloads.get_or_create(&ResultLabel { result });
        }
        self
    }

    pub fn tls_handshake_failed(&self, reason: &'static str) {
        self.tls_handshake_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// A reload's outcome; on success the new certificate's expiry.
    pub fn tls_reloaded(&self, ok: bool, not_after: i64) {
        let result = if ok { "ok" } else { "error" };
        self.tls_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
        if ok {
            self.tls_expiry.set(not_after);
        }
    }

    pub fn app_rejected(&self) {
        self.app_rejected.inc();
    }

    pub fn upstream_errors_total(&self) -> u64 {
        // Summed over the label set for /status.
        let mut total = 0;
        for kind in [
            "app_refused",
            "app_starting",
            "connect_timeout",
            "response_timeout",
            "app_closed",
            "bad_response",
        ] {
            total += self
                .upstream_errors
                .get_or_create(&KindLabel { kind })
                .get();
        }
        total
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        // fetch_max: two scrapes at once each add only what the other did not.
        let dropped = crate::telemetry::dropped_lines();
        let shown = self.log_dropped_shown.fetch_max(dropped, Ordering::Relaxed);
        if dropped > shown {
            self.log_dropped.inc_by(dropped - shown);
        }
        let mut out = String::with_capacity(8192);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT", "OTHER",
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn method_index(m: &http::Method) -> usize {
    match *m {
        http::Method::GET => 0,
        http::Method::POST => 1,
        http::Method::PUT => 2,
        http::Method::DELETE => 3,
        http::Method::HEAD => 4,
        http::Method::OPTIONS => 5,
        http::Method::PATCH => 6,
        http::Method::TRACE => 7,
        http::Method::CONNECT => 8,
        _ => 9,
    }
}

fn status_index(s: u16) -> usize {
    match s {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_with_bounded_labels() {
        let m = Metrics::new();
        m.request_started();
        m.request_finished(
            &http::Method::from_bytes(b"BREW").unwrap(),
            418,
            0.01,
            Some(0.005),
            3,
            4,
        );
        let text = m.render();
        assert!(
            text.contains("podgate_requests_total{method=\"OTHER\",status_class=\"4xx\"} 1"),
            "{text}"
        );
        assert!(text.contains("podgate_build_info{version=\""));
        assert!(text.contains("podgate_requests_in_flight 0"));
        assert!(text.contains("podgate_response_bytes_total 4"));
    }
}
