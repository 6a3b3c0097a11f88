//! `cargo run --example demo`: a "pod" in one process. The demo app listens
//! on 127.0.0.1:8000 (the Django/Flask container) and podgate in front of it
//! on 127.0.0.1:8080, with its admin listener (probes, metrics) on
//! 127.0.0.1:9901.
//!
//! Environment:
//! * `DEMO_APP_PORT`  — the demo app's port (default 8000).
//! * `PODGATE_*`      — any podgate variable; these win over the demo's
//!   defaults, e.g. `PODGATE_LISTEN=127.0.0.1:8081`,
//!   `PODGATE_MAX_BODY=1m`, `PODGATE_LOG_FORMAT=json`.
//!
//! Ctrl-C (or SIGTERM) stops podgate gracefully: the listener closes and
//! in-flight requests finish first.

mod demo_app;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use podgate::config::Config;
use podgate::StartError;
use tokio::net::TcpListener;

const DEFAULT_APP_PORT: u16 = 8000;

#[tokio::main]
async fn main() -> ExitCode {
    // -- the app's port
    let app_port = match std::env::var("DEMO_APP_PORT") {
        Err(_) => DEFAULT_APP_PORT,
        Ok(v) => match v.trim().parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => {
                eprintln!("demo: DEMO_APP_PORT={v:?} is not a port number from 1 to 65535");
                return ExitCode::from(64);
            }
        },
    };

    // -- podgate's configuration: the demo's defaults, then the user's PODGATE_*
    let mut vars: BTreeMap<String, String> = [
        ("PODGATE_LISTEN", "127.0.0.1:8080".to_string()),
        ("PODGATE_ADMIN_LISTEN", "127.0.0.1:9901".to_string()),
        ("PODGATE_APP_PORT", app_port.to_string()),
        ("PODGATE_LOG_FORMAT", "text".to_string()),
        ("PODGATE_DRAIN_DELAY", "0s".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // vars_os, not vars: a stray non-UTF-8 variable must not panic the demo.
    for (k, v) in std::env::vars_os() {
        if let (Some(k), Some(v)) = (k.to_str(), v.to_str()) {
            if k.starts_with(podgate::config::PREFIX) {
                vars.insert(k.to_string(), v.to_string());
            }
        }
    }
    let loaded = match Config::from_vars(vars) {
        Ok(l) => l,
        Err(e) => {
            eprint!("demo: {e}");
            return ExitCode::from(64);
        }
    };
    let _log_guard = podgate::telemetry::init(loaded.config.log_format, &loaded.config.log_filter);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    if loaded.config.app_port != app_port {
        eprintln!(
            "demo: note: PODGATE_APP_PORT={} but the demo app listens on {app_port} \
             (DEMO_APP_PORT); podgate will not reach it",
            loaded.config.app_port
        );
    }

    // -- the app ("the Django container")
    let app_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, app_port));
    let app_listener = match TcpListener::bind(app_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo: the demo app cannot listen on {app_addr}: {e}");
            if e.kind() == io::ErrorKind::AddrInUse {
                eprintln!(
                    "demo: port {app_port} is taken by another process; \
                     pick another with DEMO_APP_PORT, e.g. DEMO_APP_PORT=8001 cargo run --example demo"
                );
            }
            return ExitCode::from(1);
        }
    };
    tokio::spawn(demo_app::serve(app_listener));

    // -- podgate ("the sidecar")
    let running = match podgate::start(loaded).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo: podgate cannot start: {e}");
            if let StartError::Bind { addr, var, source } = &e {
                if source.kind() == io::ErrorKind::AddrInUse {
                    let mut other = *addr;
                    other.set_port(addr.port().wrapping_add(1).max(1));
                    eprintln!(
                        "demo: port {} is taken by another process; pick another with \
                         PODGATE_{var}, e.g. PODGATE_{var}={other} cargo run --example demo",
                        addr.port()
                    );
                }
            }
            return ExitCode::from(1);
        }
    };

    print_banner(
        app_addr,
        running.proxy_addr.unwrap_or(running.admin_addr),
        running.admin_addr,
    );

    // -- run until Ctrl-C / SIGTERM (or POST /drain on the admin port)
    match podgate::shutdown::wait_for_stop(&running.drain).await {
        Ok(stop) => tracing::info!(signal = stop.reason, "shutdown requested"),
        Err(e) => eprintln!("demo: cannot watch for signals ({e}); stopping"),
    }
    running.stop(false);
    let _ = running.done.await;
    eprintln!("demo: podgate stopped; bye");
    ExitCode::SUCCESS
}

/// `localhost:PORT` for loopback and wildcard listeners, the address itself
/// otherwise: what to paste after `curl`.
fn curl_host(addr: SocketAddr) -> String {
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

fn print_banner(app: SocketAddr, proxy: SocketAddr, admin: SocketAddr) {
    let p = curl_host(proxy);
    let a = curl_host(admin);
    let d = curl_host(app);
    let tries = [
        (
            format!("curl -i {p}/"),
            "what the app received: Host, X-Forwarded-*, X-Real-IP, X-Request-Id",
        ),
        (
            format!("curl -i {d}/"),
            "the same page straight from the app, without podgate",
        ),
        (
            format!("curl {p}/headers"),
            "every header the app got, as JSON",
        ),
        (
            format!("curl {p}/headers -H 'X_Forwarded_For: 6.6.6.6'"),
            "underscore names are dropped (PODGATE_UNDERSCORE_HEADERS)",
        ),
        (
            format!("curl -T somefile {p}/upload -o echoed"),
            "streamed echo; up to 100m (PODGATE_MAX_BODY), nginx stopped at 1m",
        ),
        (
            format!("curl -o /dev/null '{p}/download?size=1g'"),
            "1 GiB streamed download",
        ),
        (
            format!("curl -i '{p}/slow?ms=3000'"),
            "a slow answer; Ctrl-C meanwhile and it still completes",
        ),
        (format!("curl -i {a}/livez"), "liveness probe"),
        (
            format!("curl -i {a}/readyz"),
            "readiness probe (follows the app)",
        ),
        (format!("curl {a}/metrics"), "Prometheus metrics"),
        (
            format!("curl {a}/status"),
            "effective configuration and counters, JSON",
        ),
    ];
    let width = tries.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let mut out = format!(
        "\npodgate demo: a pod in one process\n\
         \x20 demo app (stands in for Django/Flask)  http://{app}\n\
         \x20 podgate, in front of it                http://{proxy}\n\
         \x20 podgate admin (probes, metrics)        http://{admin}\n\n\
         Try:\n"
    );
    for (cmd, what) in &tries {
        out.push_str(&format!("  {cmd:<width$}  # {what}\n"));
    }
    out.push_str(&format!(
        "  WebSocket echo: ws://{p}/ws (e.g. websocat ws://{p}/ws)\n\n\
         podgate's access log goes to stdout. Ctrl-C to stop.\n"
    ));
    // Not eprintln!: a closed stderr must not panic the demo.
    let _ = writeln!(io::stderr(), "{out}");
}
