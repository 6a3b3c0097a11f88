//! Subcommands of the one binary, for `kubectl exec` into an image that has
//! no shell and no curl. Each reads the same `PODGATE_*` environment as the
//! running proxy, so `podgate status` finds the admin port by itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http::{header, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::config::{Loaded, Source, VARS};
use crate::health::{self, CheckMode};

#[derive(Debug, Parser)]
#[command(
    name = "podgate",
    version,
    about = "HTTP sidecar proxy for a web app in a Kubernetes pod",
    long_about = "podgate forwards the pod's port (PODGATE_LISTEN, default 0.0.0.0:80) to the app on \
127.0.0.1 (PODGATE_APP_PORT, default 8000), with health probes, access logs, header \
normalisation, Prometheus metrics and a graceful drain on SIGTERM; optionally TLS on a second \
port (PODGATE_TLS_LISTEN, PODGATE_TLS_CERT, PODGATE_TLS_KEY; certificates reloaded without a \
restart). It is configured only by PODGATE_* environment variables: run `podgate config` to list \
them with their values.\n\n\
With no subcommand, podgate runs the proxy.",
    after_help = "Examples:\n  kubectl exec POD -c podgate -- podgate status\n  kubectl exec POD -c podgate -- podgate check\n  kubectl exec POD -c podgate -- podgate config\n  podgate migrate-nginx default.conf   # the env block from an nginx sidecar's config"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default when no subcommand is given).
    Serve,
    /// Ask the running podgate (via its admin port) how it is doing.
    Status {
        /// Print the raw JSON document of GET /status.
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration (TLS files included) and try the app now;
    /// exits 1 if the app does not answer (usable as an exec probe). Warns
    /// when the TLS certificate expires within 7 days.
    Check,
    /// Print the effective configuration: every variable, its value, and
    /// whether it came from the environment or the default.
    Config,
    /// Print the version.
    Version,
    /// Read an nginx sidecar's config and print the podgate env that does the same.
    #[command(
        long_about = "Reads the nginx config baked into a sidecar image (such as default.conf) and \
prints the env block for the podgate container, as YAML ready to paste, then each directive that \
is already what podgate does, and each one that is not carried over and why, with its line.\n\n\
Exit status: 0 everything carried over, 2 something was not, 64 the file is not valid nginx \
syntax (the message names the line), 66 the file cannot be read.",
        after_help = "Examples:\n  docker run --rm --entrypoint cat IMAGE /etc/nginx/conf.d/default.conf > default.conf\n  podgate migrate-nginx default.conf\n  podgate migrate-nginx --table   # the mapping as a Markdown table"
    )]
    MigrateNginx {
        /// The nginx config file (a server block, or a whole nginx.conf).
        /// Required unless --table.
        file: Option<std::path::PathBuf>,
        /// Print the directive-to-variable table as Markdown instead.
        #[arg(long)]
        table: bool,
    },
}

/// The admin address to dial: an unspecified listen address means loopback.
fn dial_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

async fn get(addr: SocketAddr, path: &str) -> Result<(u16, Bytes), String> {
    let stream = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("no answer from {addr} within 3s"))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(path)
        .header(header::HOST, addr.to_string())
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let fut = async {
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| format!("{addr} did not answer within 5s"))?
}

pub async fn status(loaded: &Loaded, json: bool) -> ExitCode {
    let addr = dial_addr(loaded.config.admin_listen);
    let (code, body) = match get(addr, "/status").await {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "podgate status: cannot reach the admin port (PODGATE_ADMIN_LISTEN={}): {e}",
                loaded.config.admin_listen
            );
            return ExitCode::from(1);
        }
    };
    if code != 200 {
        eprintln!("podgate status: {addr}/status answered {code}");
        return ExitCode::from(1);
    }
    if json {
        println!("{}", String::from_utf8_lossy(&body));
        return ExitCode::SUCCESS;
    }
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("podgate status: invalid answer from {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    let ready = v["ready"].as_bool().unwrap_or(false);
    println!(
        "podgate {} up {}s",
        v["version"].as_str().unwrap_or("?"),
        v["uptime_seconds"]
    );
    if ready {
        println!("ready:        yes");
    } else {
        println!(
            "ready:        no ({})",
            v["ready_reason"].as_str().unwrap_or("unknown")
        );
    }
    if let Some(c) = v.get("last_app_check").filter(|c| !c.is_null()) {
        println!(
            "last check:   {} — {} ({} ms)",
            if c["ok"].as_bool().unwrap_or(false) {
                "ok"
            } else {
                "FAILED"
            },
            c["detail"].as_str().unwrap_or(""),
            c["took_ms"]
        );
    }
    let c = &v["counters"];
    println!(
        "requests:     {} total, {} answered 5xx, {} app errors",
        c["requests"], c["responses_5xx"], c["upstream_errors"]
    );
    println!("connections:  {} open", c["open_connections"]);
    if let Some(t) = v.get("tls").filter(|t| !t.is_null()) {
        let sans: Vec<&str> = t["sans"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        println!(
            "tls:          {} [{}], expires {} ({})",
            t["subject"].as_str().unwrap_or("?"),
            sans.join(", "),
            t["not_after"]
                .as_i64()
                .map(rfc3339)
                .unwrap_or_else(|| "?".into()),
            t["expires_in_seconds"]
                .as_i64()
                .map(in_words)
                .unwrap_or_default()
        );
    }
    if v["draining"].as_bool().unwrap_or(false) {
        println!("draining:     yes (shutdown in progress)");
    }
    ExitCode::SUCCESS
}

pub async fn check(loaded: &Loaded) -> ExitCode {
    let cfg = &loaded.config;
    println!(
        "configuration: valid ({} variables set)",
        loaded
            .effective
            .iter()
            .filter(|e| e.2 == Source::Env)
            .count()
    );
    for w in &loaded.warnings {
        println!("warning: {w}");
    }
    if let Some(files) = cfg.tls_files() {
        // The configuration has loaded these already; only the facts remain.
        if let Ok(info) = crate::tls::check(&files) {
            let left = info.remaining(std::time::SystemTime::now());
            println!(
                "tls:           {} [{}], expires {} ({})",
                info.subject,
                info.sans.join(", "),
                rfc3339(info.not_after),
                in_words(left)
            );
            if left < 7 * 86_400 {
                println!(
                    "warning: the TLS certificate in {} expires within 7 days; is its renewal (cert-manager) working?",
                    files.cert.display()
                );
            }
        }
    }
    let mut check_cfg = cfg.app_check();
    // A one-off check deserves the connect timeout too.
    check_cfg.timeout = check_cfg.timeout.max(cfg.connect_timeout);
    let what = match &check_cfg.mode {
        CheckMode::Tcp => format!("TCP connect to {}", cfg.app_addr()),
        CheckMode::Http(p) => format!("GET http://{}{p}", cfg.app_addr()),
    };
    println!("app check:     {what} (timeout {:?})", check_cfg.timeout);
    let result = health::check_app(&check_cfg).await;
    if result.ok {
        println!(
            "result:        ok — {} ({} ms)",
            result.detail, result.took_ms
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "result:        FAILED — {} ({} ms)",
            result.detail, result.took_ms
        );
        ExitCode::from(1)
    }
}

fn rfc3339(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// "in 89 days" or "expired 3 days ago".
fn in_words(secs: i64) -> String {
    let days = secs.abs() / 86_400;
    let span = if days > 0 {
        format!("{days} days")
    } else {
        format!("{} hours", secs.abs() / 3600)
    };
    if secs >= 0 {
        format!("in {span}")
    } else {
        format!("expired {span} ago")
    }
}

pub fn config(loaded: &Loaded) -> ExitCode {
    let width = VARS.iter().map(|v| v.name.len()).max().unwrap_or(10) + 8;
    for (name, value, source) in &loaded.effective {
        let src = match source {
            Source::Env => "env",
            Source::Default => "default",
        };
        println!("{:width$} {:9} {}", format!("PODGATE_{name}"), src, value);
    }
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_admin_address_is_dialled_on_loopback() {
        assert_eq!(
            dial_addr("0.0.0.0:9901".parse().unwrap()),
            "127.0.0.1:9901".parse().unwrap()
        );
        assert_eq!(
            dial_addr("[::]:9901".parse().unwrap()),
            "[::1]:9901".parse().unwrap()
        );
        assert_eq!(
            dial_addr("10.1.2.3:9901".parse().unwrap()),
            "10.1.2.3:9901".parse().unwrap()
        );
    }
}
