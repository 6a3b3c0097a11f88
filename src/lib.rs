//! podgate: an HTTP proxy that runs beside a web app in a Kubernetes pod.
//!
//! The life of a request: the [`server`] accepts a client connection and
//! detects HTTP/1.x or h2c; the [`stack`] runs the request through the
//! [`layers`] (access log, headers, prefix, static files, limits, buffering,
//! app concurrency) and the [`proxy`], which sends it to the app over a
//! pooled HTTP/1.1 client ([`upstream`]) and streams the answer back. The
//! types the layers share are in [`ctx`]; [`config`] is the one table of
//! settings, parsed once. [`admin`] serves probes and metrics on a port of
//! its own ([`health`], [`metrics`]); [`shutdown`] turns SIGTERM into a
//! drain; [`cli`] holds the diagnostic subcommands.

pub mod admin;
#[cfg(target_env = "musl")]
pub mod alloc;
pub mod body;
pub mod cli;
pub mod config;
pub mod ctx;
pub mod error;
pub mod headers;
pub mod health;
pub mod layers;
pub mod metrics;
pub mod migrate;
pub mod proxy;
pub mod server;
pub mod shutdown;
pub mod stack;
pub mod telemetry;
pub mod tls;
pub mod upstream;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Loaded};
use crate::health::AppHealth;
use crate::metrics::Metrics;

/// Start-up failures, each with the fix in its message.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} (PODGATE_{var}): permission denied. A non-root process may only bind ports below 1024 when the pod sets the sysctl net.ipv4.ip_unprivileged_port_start=0 (securityContext.sysctls; containerd 2 does by default, CRI-O does not). A capability in `capabilities.add` alone does not work for a non-root user. Alternatively listen on 8080 and point the Service's targetPort at it.")]
    PrivilegedPort { addr: SocketAddr, var: &'static str },
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr} (PODGATE_{var})")]
    Bind {
        addr: SocketAddr,
        var: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A listener and the address it got (port 0 picks one).
async fn bind_named(
    addr: SocketAddr,
    var: &'static str,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let l = bind(addr, var).await?;
    let local = l
        .local_addr()
        .map_err(|source| StartError::Bind { addr, var, source })?;
    Ok((l, local))
}

async fn bind(addr: SocketAddr, var: &'static str) -> Result<TcpListener, StartError> {
    // Build the socket by hand for a large backlog: a burst of connections
    // waiting for MAX_CONNECTIONS slots queues in the kernel.
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    };
    let map = |source: io::Error| {
        if source.kind() == io::ErrorKind::PermissionDenied && addr.port() < 1024 {
            StartError::PrivilegedPort { addr, var }
        } else {
            StartError::Bind { addr, var, source }
        }
    };
    let sock = sock.map_err(map)?;
    sock.set_reuseaddr(true).map_err(map)?;
    sock.bind(addr).map_err(map)?;
    sock.listen(4096).map_err(map)
}

/// A running podgate: its bound addresses and the means to stop it.
pub struct Running {
    /// The plain listener's address (`None` with `PODGATE_LISTEN=off`).
    pub proxy_addr: Option<SocketAddr>,
    /// The TLS listener's address, if any.
    pub tls_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub health: Arc<AppHealth>,
    pub metrics: Arc<Metrics>,
    /// Cancel to start a drain, as SIGTERM would (with the drain delay).
    pub drain: CancellationToken,
    skip_delay: Arc<AtomicBool>,
    /// Resolves when podgate has stopped: listener closed and connections
    /// drained (or the shutdown timeout passed).
    pub done: JoinHandle<()>,
}

impl Running {
    /// Starts the drain; `with_delay: false` skips the drain delay (SIGINT).
    pub fn stop(&self, with_delay: bool) {
        if !with_delay {
            self.skip_delay.store(true, Ordering::SeqCst);
        }
        self.drain.cancel();
    }
}

/// Binds both listeners and starts serving. Signals are not watched here:
/// the binary wires them to [`Running::drain`] (see `main.rs`).
pub async fn start(loaded: Loaded) -> Result<Running, StartError> {
    let Loaded {
        config, effective, ..
    } = loaded;
    let config = Arc::new(config);
    let started = Instant::now();
    let listener = match config.listen {
        Some(addr) => Some(bind_named(addr, "LISTEN").await?),
        None => None,
    };
    let tls_listener = match config.tls_listen {
        Some(addr) => Some(bind_named(addr, "TLS_LISTEN").await?),
        None => None,
    };
    // Loaded again (the configuration checked the same files): what is
    // served is what is on disk now.
    let tls = match config.tls_files() {
        Some(files) => Some(Arc::new(tls::Tls::new(files)?)),
        None => None,
    };
    let admin_listener = bind(config.admin_listen, "ADMIN_LISTEN").await?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.admin_listen,
            var: "ADMIN_LISTEN",
            source,
        })?;

    let health = AppHealth::new();
    let metrics = match tls.as_ref().and_then(|t| t.info()) {
        Some(info) => Metrics::new().with_tls(info.not_after),
        None => Metrics::new(),
    };
    let metrics = Arc::new(metrics);
    let tracker = TaskTracker::new();
    let stop_accepting = CancellationToken::new();
    let stop_admin = CancellationToken::new();
    let drain = CancellationToken::new();

    let close_tunnels = CancellationToken::new();
    let proxy = proxy::Proxy::new(
        config.proxy(),
        health.clone(),
        metrics.clone(),
        proxy::Tunnels {
            tracker: tracker.clone(),
            close: close_tunnels.clone(),
            idle_timeout: config.tunnel_idle_timeout,
        },
    );
    let svc = stack::build(&config, proxy, metrics.clone());
    let server_cfg = Arc::new(config.server());
    let limit = server_cfg.connection_limit();
    let spawn_server = |tcp: (TcpListener, SocketAddr), tls: Option<Arc<tls::Tls>>| {
        tokio::spawn(server::serve(
            server::Listener {
                tcp: tcp.0,
                tls,
                limit: limit.clone(),
            },
            svc.clone(),
            server_cfg.clone(),
            metrics.clone(),
            stop_accepting.clone(),
            tracker.clone(),
        ));
        tcp.1
    };
    let proxy_addr = listener.map(|l| spawn_server(l, None));
    let tls_addr = tls_listener.map(|l| spawn_server(l, tls.clone()));
    if let Some(tls) = &tls {
        tokio::spawn(tls.clone().watch(metrics.clone(), stop_admin.clone()));
    }
    health.set_listening();
    tokio::spawn(health::run_checker(
        config.app_check(),
        health.clone(),
        metrics.clone(),
        stop_admin.clone(),
    ));
    let admin_state = Arc::new(admin::AdminState {
        health: health.clone(),
        metrics: metrics.clone(),
        started,
        effective,
        drain: drain.clone(),
        tls: tls.clone(),
    });
    tokio::spawn(admin::serve(
        admin_listener,
        admin_state,
        stop_admin.clone(),
    ));
    let shown = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_string(), |a| a.to_string());
    tracing::info!(
        listen = %shown(proxy_addr),
        tls_listen = %shown(tls_addr),
        admin = %admin_addr,
        app = %config.app_addr(),
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        "podgate listening"
    );

    let skip_delay = Arc::new(AtomicBool::new(false));
    let done = {
        let skip = skip_delay.clone();
        let health = health.clone();
        let metrics = metrics.clone();
        let drain = drain.clone();
        let config = config.clone();
        tokio::spawn(async move {
            drain.cancelled().await;
            let skip = skip.load(Ordering::SeqCst);
            run_drain(&config, &health, &metrics, &stop_accepting, &tracker, skip).await;
            // Whatever outlived the shutdown timeout: tunnels are closed.
            close_tunnels.cancel();
            stop_admin.cancel();
        })
    };
    Ok(Running {
        proxy_addr,
        tls_addr,
        admin_addr,
        health,
        metrics,
        drain,
        skip_delay,
        done,
    })
}

/// The drain sequence; `skip_delay` for SIGINT.
async fn run_drain(
    config: &Config,
    health: &AppHealth,
    metrics: &Metrics,
    stop_accepting: &CancellationToken,
    tracker: &TaskTracker,
    skip_delay: bool,
) {
    health.start_draining();
    metrics.set_ready(false);
    if !skip_delay && !config.drain_delay.is_zero() {
        tracing::info!(delay = ?config.drain_delay, "draining: readiness off, still serving");
        shutdown::drain_delay(config.drain_delay).await;
    }
    tracing::info!(timeout = ?config.shutdown_timeout, "closing listener; waiting for in-flight requests");
    stop_accepting.cancel();
    tracker.close();
    match tokio::time::timeout(config.shutdown_timeout, tracker.wait()).await {
        Ok(()) => tracing::info!("all connections finished"),
        Err(_) => tracing::warn!(
            still_open = tracker.len(),
            "shutdown timeout reached; closing remaining connections"
        ),
    }
}

/// Runs podgate until a stop signal has been handled. What `podgate` (no
/// subcommand) does.
pub async fn serve_until_signal(loaded: Loaded) -> anyhow::Result<()> {
    let running = start(loaded).await?;
    let stop = shutdown::wait_for_stop(&running.drain).await?;
    tracing::info!(signal = stop.reason, "shutdown requested");
    running.stop(stop.with_delay);
    let _ = running.done.await;
    Ok(())
}
