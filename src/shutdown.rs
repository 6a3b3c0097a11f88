//! Stop signals and the drain sequence Kubernetes needs.
//!
//! SIGTERM (what the kubelet sends), SIGQUIT and SIGUSR1 (the STOPSIGNALs of
//! the nginx and HAProxy images, so a copied Dockerfile line cannot turn a
//! rollout into a fast kill) all start a graceful drain: readiness off at
//! once, keep serving for the drain delay, then close the listener, ask
//! keep-alive clients to close, and wait for in-flight requests and tunnels
//! up to the shutdown timeout. SIGINT (Ctrl-C) drains without the delay.

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Why shutdown began, and whether to wait for the drain delay first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopRequest {
    pub reason: &'static str,
    pub with_delay: bool,
}

/// Waits for the first stop signal, or for `drain` to be triggered (the
/// admin endpoint, or a test). Fails only if signal handlers cannot be set.
pub async fn wait_for_stop(drain: &CancellationToken) -> std::io::Result<StopRequest> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let req = |reason, with_delay| StopRequest { reason, with_delay };
    Ok(tokio::select! {
        _ = term.recv() => req("SIGTERM", true),
        _ = quit.recv() => req("SIGQUIT", true),
        _ = usr1.recv() => req("SIGUSR1", true),
        _ = int.recv() => req("SIGINT", false),
        _ = drain.cancelled() => req("drain requested", true),
    })
}

/// Sleeps for the drain delay, cut short by a second SIGINT or SIGTERM (an
/// operator who insists).
pub async fn drain_delay(delay: Duration) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tokio::time::sleep(delay).await;
        return;
    };
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = term.recv() => tracing::info!("second signal: skipping the rest of the drain delay"),
        _ = int.recv() => tracing::info!("second signal: skipping the rest of the drain delay"),
    }
}
