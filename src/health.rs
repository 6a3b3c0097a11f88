//! What podgate knows about the app and about itself: the cached app check
//! behind `/readyz`, and the flags that turn readiness off during shutdown.
//!
//! Probes read the cache; only the background checker touches the app, so a
//! storm of probes never becomes a storm on the app.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{header, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How the app is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckMode {
    /// A TCP connect to the app port.
    Tcp,
    /// `GET <path>` expecting 2xx or 3xx.
    Http(String),
}

#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub app_addr: SocketAddr,
    pub mode: CheckMode,
    pub interval: Duration,
    pub timeout: Duration,
}

/// The last app check, as `/status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastCheck {
    pub ok: bool,
    pub detail: String,
    #[serde(with = "unix_millis")]
    pub at: SystemTime,
    pub took_ms: u64,
}

mod unix_millis {
    use std::time::{SystemTime, UNIX_EPOCH};
    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        )
    }
}

#[derive(Debug, Default)]
pub struct AppHealth {
    /// The app has answered at least once (a refused connection before that
    /// means "starting": 503, not 502).
    seen: AtomicBool,
    app_ok: AtomicBool,
    listening: AtomicBool,
    draining: AtomicBool,
    last: Mutex<Option<LastCheck>>,
}

impl AppHealth {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn seen(&self) -> bool {
        self.seen.load(Ordering::Relaxed)
    }

    pub fn mark_seen(&self) {
        if !self.seen.load(Ordering::Relaxed) {
            self.seen.store(true, Ordering::Relaxed);
        }
    }

    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::Release);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// `Ok` when podgate should receive traffic; otherwise a one-line reason.
    pub fn ready(&self) -> Result<(), String> {
        if self.draining() {
            return Err("shutting down".into());
        }
        if !self.listening.load(Ordering::Acquire) {
            return Err("proxy listener not open yet".into());
        }
        if !self.app_ok.load(Ordering::Acquire) {
            let detail = self
                .last_check()
                .map(|c| c.detail)
                .unwrap_or_else(|| "not checked yet".into());
            return Err(format!("app not answering: {detail}"));
        }
        Ok(())
    }

    pub fn last_check(&self) -> Option<LastCheck> {
        self.last.lock().ok().and_then(|g| g.clone())
    }

    fn record(&self, check: LastCheck) {
        self.app_ok.store(check.ok, Ordering::Release);
        if check.ok {
            self.mark_seen();
        }
        if let Ok(mut g) = self.last.lock() {
            *g = Some(check);
        }
    }
}

/// Checks the app once: what `podgate check` prints and the checker caches.
pub async fn check_app(cfg: &CheckConfig) -> LastCheck {
    let started = Instant::now();
    let result = tokio::time::timeout(cfg.timeout, check_inner(cfg)).await;
    let (ok, detail) = match result {
        Err(_) => (
            false,
            format!("no answer from {} within {:?}", cfg.app_addr, cfg.timeout),
        ),
        Ok(Ok(d)) => (true, d),
        Ok(Err(e)) => (false, e),
    };
    LastCheck {
        ok,
        detail,
        at: SystemTime::now(),
        took_ms: started.elapsed().as_millis() as u64,
    }
}

async fn check_inner(cfg: &CheckConfig) -> Result<String, String> {
    let stream = TcpStream::connect(cfg.app_addr)
        .await
        .map_err(|e| format!("connect to {} failed: {e}", cfg.app_addr))?;
    let path = match &cfg.mode {
        CheckMode::Tcp => return Ok(format!("TCP connect to {} succeeded", cfg.app_addr)),
        CheckMode::Http(p) => p,
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(path.as_str())
        .header(header::HOST, cfg.app_addr.to_string())
        .header(
            header::USER_AGENT,
            concat!("podgate/", env!("CARGO_PKG_VERSION"), " health-check"),
        )
        .body(Empty::new())
        .map_err(|e| format!("invalid PODGATE_APP_HEALTH_PATH: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET {path} failed: {e}"));
    driver.abort();
    let resp = resp?;
    let status = resp.status();
    if status.is_success() || status.is_redirection() {
        Ok(format!("GET {path} answered {status}"))
    } else {
        Err(format!("GET {path} answered {status}, expected 2xx or 3xx"))
    }
}

/// Runs until `stop` is cancelled: checks quickly until the app first answers
/// (so the pod turns ready as soon as it can serve), then every `interval`.
pub async fn run_checker(
    cfg: CheckConfig,
    health: Arc<AppHealth>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let fast = cfg.interval.min(Duration::from_millis(200));
    let mut was_ok: Option<bool> = None;
    loop {
        let check = check_app(&cfg).await;
        let ok = check.ok;
        if was_ok != Some(ok) {
            if ok {
                tracing::info!(detail = %check.detail, "app is answering");
            } else {
                tracing::warn!(detail = %check.detail, "app is not answering");
            }
        }
        was_ok = Some(ok);
        health.record(check);
        metrics.set_ready(health.ready().is_ok());
        let wait = if health.seen() { cfg.interval } else { fast };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}
