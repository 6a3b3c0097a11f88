//! Operations: probes, metrics, status, start-up, the SIGTERM drain, and the
//! diagnostic subcommands of the real binary.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

const BIN: &str = env!("CARGO_BIN_EXE_podgate");

async fn get(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn probes_metrics_and_status() {
    let health_hits = Arc::new(AtomicUsize::new(0));
    let h2 = health_hits.clone();
    let app = spawn_app(move |req: Request<Incoming>| {
        let h = h2.clone();
        async move {
            if req.uri().path() == "/healthz" {
                h.fetch_add(1, Ordering::SeqCst);
            }
            Response::new(full("ok"))
        }
    })
    .await;
    let pg = start_podgate(
        app,
        &[
            ("APP_HEALTH_PATH", "/healthz"),
            ("APP_CHECK_INTERVAL", "5s"),
        ],
    )
    .await;
    wait_ready(&pg).await;
    assert_eq!(get(&pg.admin_url("/livez")).await, (200, "ok\n".into()));
    assert_eq!(get(&pg.admin_url("/readyz")).await, (200, "ready\n".into()));
    // A probe storm is answered from the cache.
    let before = health_hits.load(Ordering::SeqCst);
    for _ in 0..200 {
        assert_eq!(get(&pg.admin_url("/readyz")).await.0, 200);
    }
    assert!(
        health_hits.load(Ordering::SeqCst) - before <= 1,
        "probes reached the app"
    );

    client().get(pg.url("/x")).send().await.unwrap();
    let (code, metrics) = get(&pg.admin_url("/metrics")).await;
    assert_eq!(code, 200);
    for name in [
        "podgate_requests_total{method=\"GET\",status_class=\"2xx\"} 1",
        "podgate_request_duration_seconds_bucket",
        "podgate_upstream_duration_seconds_bucket",
        "podgate_requests_in_flight",
        "podgate_client_connections_open",
        "podgate_response_bytes_total 2",
        "podgate_ready 1",
        "podgate_log_lines_dropped_total 0",
        "podgate_build_info{version=",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
    let (code, status) = get(&pg.admin_url("/status")).await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["ready"], true);
    assert_eq!(v["last_app_check"]["ok"], true);
    assert_eq!(v["config"]["PODGATE_APP_HEALTH_PATH"]["value"], "/healthz");
    assert_eq!(v["config"]["PODGATE_APP_HEALTH_PATH"]["source"], "env");
    assert_eq!(v["config"]["PODGATE_MAX_BODY"]["source"], "default");
    assert!(v["counters"]["requests"].as_u64().unwrap() >= 1);
    // Admin calls never count as proxied requests.
    assert_eq!(pg.running.metrics.requests_total.load(Ordering::Relaxed), 1);
    assert_eq!(get(&pg.admin_url("/nope")).await.0, 404);
}

#[tokio::test]
async fn readiness_follows_an_http_health_check() {
    let healthy = Arc::new(AtomicUsize::new(1));
    let h2 = healthy.clone();
    let app = spawn_app(move |_req: Request<Incoming>| {
        let h = h2.clone();
        async move {
            let mut r = Response::new(full(""));
            if h.load(Ordering::SeqCst) == 0 {
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            }
            r
        }
    })
    .await;
    let pg = start_podgate(
        app,
        &[
            ("APP_HEALTH_PATH", "/healthz"),
            ("APP_CHECK_INTERVAL", "100ms"),
        ],
    )
    .await;
    wait_ready(&pg).await;
    healthy.store(0, Ordering::SeqCst);
    within(WAIT, async {
        loop {
            let (code, text) = get(&pg.admin_url("/readyz")).await;
            if code == 503 {
                assert!(
                    text.contains("answered 500 Internal Server Error"),
                    "{text}"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Liveness never depends on the app.
    assert_eq!(get(&pg.admin_url("/livez")).await.0, 200);
}

/// podgate is live at once; ready only once the app answers; meanwhile
/// requests get 503 with Retry-After instead of a reset.
#[tokio::test]
async fn startup_before_the_app() {
    let port = free_port();
    let app_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let pg = start_podgate(app_addr, &[]).await;
    assert_eq!(get(&pg.admin_url("/livez")).await.0, 200);
    let (code, text) = get(&pg.admin_url("/readyz")).await;
    assert_eq!(code, 503);
    assert!(text.starts_with("not ready: "), "{text}");
    let r = client().get(pg.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");

    let listener = tokio::net::TcpListener::bind(app_addr).await.unwrap();
    serve_app_on(
        listener,
        |_req: Request<Incoming>| async { Response::new(full("up")) },
        None,
    );
    let t = Instant::now();
    wait_ready(&pg).await;
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "ready {:?} after the app came up",
        t.elapsed()
    );
    assert_eq!(get(&pg.url("/")).await, (200, "up".into()));
}

#[tokio::test]
async fn drain_endpoint_from_loopback_turns_readiness_off() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[("DRAIN_DELAY", "5s")]).await;
    wait_ready(&pg).await;
    assert_eq!(
        client()
            .get(pg.admin_url("/drain"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    let r = client().post(pg.admin_url("/drain")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let (code, text) = get(&pg.admin_url("/readyz")).await;
    assert_eq!((code, text.as_str()), (503, "not ready: shutting down\n"));
    // Still serving during the drain delay.
    assert_eq!(get(&pg.url("/")).await.0, 200);
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_podgate_bin(vars: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in vars {
        cmd.env(format!("PODGATE_{k}"), v);
    }
    Child(cmd.spawn().unwrap())
}

async fn wait_until_up(admin: &str) {
    within(WAIT, async {
        loop {
            if let Ok(r) = client().get(format!("http://{admin}/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

async fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    within(limit, async {
        loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A steady load runs while SIGTERM arrives: readiness turns 503 at once,
/// serving continues through the drain delay, in-flight requests finish, and
/// no request started before the listener closed fails.
#[tokio::test]
async fn sigterm_drains_without_failing_requests() {
    let app = spawn_app(|req: Request<Incoming>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        Response::new(full("ok"))
    })
    .await;
    let port = free_port();
    let admin_port = free_port();
    let mut child = spawn_podgate_bin(&[
        ("LISTEN", format!("127.0.0.1:{port}")),
        ("ADMIN_LISTEN", format!("127.0.0.1:{admin_port}")),
        ("APP_PORT", app.port().to_string()),
        ("DRAIN_DELAY", "1s".into()),
        ("SHUTDOWN_TIMEOUT", "5s".into()),
    ]);
    let admin = format!("127.0.0.1:{admin_port}");
    wait_until_up(&admin).await;

    let start = Instant::now();
    let results = Arc::new(std::sync::Mutex::new(Vec::<(Duration, bool, String)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let results = results.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            // Two keep-alive workers, two with a new connection per request.
            let c = if w % 2 == 0 {
                client()
            } else {
                reqwest::Client::builder()
                    .no_proxy()
                    .pool_max_idle_per_host(0)
                    .timeout(WAIT)
                    .build()
                    .unwrap()
            };
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 5000 {
                n += 1;
                let t = start.elapsed();
                let path = if n % 10 == 0 { "/slow" } else { "/fast" };
                let r = c.get(format!("http://127.0.0.1:{port}{path}")).send().await;
                let (ok, why) = match r {
                    Ok(r) if r.status() == 200 => (
                        r.text().await.map(|b| b == "ok").unwrap_or(false),
                        String::new(),
                    ),
                    Ok(r) => (false, format!("status {}", r.status())),
                    Err(e) => (false, format!("{e:?}")),
                };
                results.lock().unwrap().push((t, ok, why));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sigterm_at = start.elapsed();
    signal(&child, "TERM");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = client()
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "readiness off at once");
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = within(WAIT, w).await;
    }
    assert!(status.success(), "exit status {status:?}");
    let exited_after = start.elapsed() - sigterm_at;
    assert!(
        exited_after >= Duration::from_millis(900),
        "drain delay honoured: {exited_after:?}"
    );

    // The listener closes at SIGTERM + DRAIN_DELAY (1 s).
    let listener_closed = sigterm_at + Duration::from_millis(1000);
    let results = results.lock().unwrap();
    let before: Vec<_> = results
        .iter()
        .filter(|(t, _, _)| *t < listener_closed - Duration::from_millis(20))
        .collect();
    let failed: Vec<_> = before.iter().filter(|(_, ok, _)| !ok).collect();
    let during_delay = before
        .iter()
        .filter(|(t, ok, _)| *t > sigterm_at && *ok)
        .count();
    assert!(before.len() > 50, "load ran: {} requests", before.len());
    assert!(
        during_delay > 10,
        "served during the drain delay: {during_delay}"
    );
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        before.len(),
        &failed[..failed.len().min(5)]
    );
}

#[tokio::test]
async fn nginx_and_haproxy_stop_signals_are_graceful_too() {
    let app = spawn_echo_app().await;
    for (sig, delayed) in [("QUIT", true), ("USR1", true), ("INT", false)] {
        let port = free_port();
        let admin_port = free_port();
        let mut child = spawn_podgate_bin(&[
            ("LISTEN", format!("127.0.0.1:{port}")),
            ("ADMIN_LISTEN", format!("127.0.0.1:{admin_port}")),
            ("APP_PORT", app.port().to_string()),
            ("DRAIN_DELAY", "1s".into()),
        ]);
        wait_until_up(&format!("127.0.0.1:{admin_port}")).await;
        let t = Instant::now();
        signal(&child, sig);
        let status = wait_exit(&mut child, Duration::from_secs(10)).await;
        assert!(status.success(), "{sig}: {status:?}");
        if delayed {
            assert!(
                t.elapsed() >= Duration::from_millis(900),
                "{sig} drained, not a fast kill"
            );
        } else {
            assert!(
                t.elapsed() < Duration::from_millis(900),
                "SIGINT skips the delay"
            );
        }
    }
}

fn run(args: &[&str], vars: &[(&str, String)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().args(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_and_help() {
    let (code, out, _) = run(&["version"], &[]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("podgate {}", env!("CARGO_PKG_VERSION")));
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    for sub in ["serve", "status", "check", "config", "version", "PODGATE_"] {
        assert!(out.contains(sub), "--help lists {sub}:\n{out}");
    }
}

#[test]
fn invalid_configuration_exits_64_naming_every_variable() {
    let (code, _, err) = run(
        &[],
        &[
            ("PODGATE_APP_PORT", "http".into()),
            ("PODGATE_IDLE_TIMEOUT", "forever".into()),
        ],
    );
    assert_eq!(code, 64);
    assert!(
        err.contains("PODGATE_APP_PORT=\"http\": expected a port number from 1 to 65535"),
        "{err}"
    );
    assert!(
        err.contains("PODGATE_IDLE_TIMEOUT=\"forever\": expected a duration"),
        "{err}"
    );
}

#[test]
fn config_shows_values_sources_and_typos() {
    let (code, out, err) = run(
        &["config"],
        &[
            ("PODGATE_APP_PORT", "5000".into()),
            ("PODGATE_APP_PROT", "1".into()),
            ("PODGATE_SERVICE_HOST", "10.0.0.1".into()),
        ],
    );
    assert_eq!(code, 0);
    let line = out
        .lines()
        .find(|l| l.starts_with("PODGATE_APP_PORT "))
        .unwrap();
    assert!(line.contains("env") && line.ends_with("5000"), "{line}");
    let line = out
        .lines()
        .find(|l| l.starts_with("PODGATE_LISTEN "))
        .unwrap();
    assert!(
        line.contains("default") && line.ends_with("0.0.0.0:80"),
        "{line}"
    );
    assert!(err.contains("PODGATE_APP_PROT"), "typo warned: {err}");
    assert!(
        !err.contains("SERVICE_HOST"),
        "service links are not typos: {err}"
    );
}

#[tokio::test]
async fn check_tries_the_app_now() {
    let app = spawn_echo_app().await;
    let (code, out, _) = tokio::task::spawn_blocking(move || {
        run(
            &["check"],
            &[
                ("PODGATE_APP_PORT", app.port().to_string()),
                ("PODGATE_APP_HEALTH_PATH", "/healthz".into()),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("GET /healthz answered 200 OK"), "{out}");
    let dead = free_port();
    let (code, out, _) = run(&["check"], &[("PODGATE_APP_PORT", dead.to_string())]);
    assert_eq!(code, 1);
    assert!(
        out.contains("FAILED") && out.contains("Connection refused"),
        "{out}"
    );
}

#[tokio::test]
async fn status_asks_the_running_instance() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[]).await;
    wait_ready(&pg).await;
    let admin = pg.admin.to_string();
    let (code, out, err) = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || run(&["status"], &[("PODGATE_ADMIN_LISTEN", admin)])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ready:        yes"), "{out}");
    let (code, out, _) = tokio::task::spawn_blocking(move || {
        run(&["status", "--json"], &[("PODGATE_ADMIN_LISTEN", admin)])
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ready"], true);
    let (code, _, err) = run(
        &["status"],
        &[("PODGATE_ADMIN_LISTEN", format!("127.0.0.1:{}", free_port()))],
    );
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the admin port"), "{err}");
}
