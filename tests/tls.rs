//! The TLS listener over real sockets, with a rustls client: what the app is
//! told, ALPN, protocol versions, client certificates, rotation done the way
//! the kubelet updates a mounted Secret, the start-up checks, the handshake
//! timeout, and what /status and `podgate check` show.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const BIN: &str = env!("CARGO_BIN_EXE_podgate");

/// Runs a test on a thread of its own with a large stack: a debug build's
/// rustls client and server state (both run on the test's runtime) outgrow
/// the 2 MiB of a test thread.
fn run<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(body())
        })
        .unwrap()
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A CA and what it signs, as PEM.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

struct Pair {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `names`, with `cn`, valid until `days` from now (negative:
    /// already expired). The chain file holds the leaf, then the CA.
    fn leaf(&self, cn: &str, names: &[&str], days: i64) -> Pair {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now + time::Duration::days(days);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert: format!("{}{}", cert.pem(), self.issuer.pem()),
            key: key.serialize_pem(),
        }
    }
}

/// A directory laid out as the kubelet mounts a Secret: the files are
/// symlinks through `..data`, which points at a timestamped directory and
/// is swapped atomically on update.
struct SecretDir {
    root: TempDir,
    version: u32,
}

impl SecretDir {
    fn new(tag: &str, files: &[(&str, &str)]) -> Self {
        let mut d = SecretDir {
            root: TempDir::new(&format!("tls-{tag}")),
            version: 0,
        };
        d.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), d.root.path().join(name)).unwrap();
        }
        d
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// What the kubelet's atomic writer does: a new timestamped directory,
    /// a `..data_tmp` symlink to it, renamed over `..data`.
    fn update(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let dir = format!(
            "..2026_12_07_00_00_{:02}.{}",
            self.version,
            std::process::id()
        );
        let full = self.root.path().join(&dir);
        std::fs::create_dir(&full).unwrap();
        for (name, content) in files {
            std::fs::write(full.join(name), content).unwrap();
        }
        let tmp = self.root.path().join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&dir, &tmp).unwrap();
        std::fs::rename(&tmp, self.root.path().join("..data")).unwrap();
    }
}

fn tls_vars(dir: &SecretDir) -> Vec<(String, String)> {
    vec![
        ("TLS_LISTEN".into(), "127.0.0.1:0".into()),
        ("TLS_CERT".into(), dir.path("tls.crt").display().to_string()),
        ("TLS_KEY".into(), dir.path("tls.key").display().to_string()),
    ]
}

async fn start(app: SocketAddr, vars: &[(String, String)]) -> Podgate {
    let v: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    start_podgate(app, &v).await
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client that trusts `ca`, offers `alpn`, and presents `client` if given.
fn client_config(
    ca: &Ca,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
    client: Option<&Pair>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.issuer.der().clone()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut c = match client {
        Some(p) => {
            use rustls::pki_types::pem::PemObject;
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(p.cert.as_bytes())
                    .map(|c| c.unwrap())
                    .collect();
            let key = PrivateKeyDer::from_pem_slice(p.key.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

async fn connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    within(
        WAIT,
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
}

/// One HTTP/1.1 request on an open TLS stream; the response as text.
async fn get(s: &mut TlsStream<TcpStream>, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    within(WAIT, async {
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = header_of(&text, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return;
                }
            }
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed mid-response: {text:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// The subject CN of the certificate the server presented.
fn served_cn(s: &TlsStream<TcpStream>) -> String {
    let certs = s.get_ref().1.peer_certificates().unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
    let cn = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_string();
    cn
}

async fn metrics(pg: &Podgate) -> String {
    let resp = raw(
        pg.admin,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    String::from_utf8_lossy(&resp).into_owned()
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn the_app_is_told_https_and_the_tls_port_on_the_tls_listener_only() {
    run(the_app_is_told_https_and_the_tls_port_on_the_tls_listener_only_body);
}

async fn the_app_is_told_https_and_the_tls_port_on_the_tls_listener_only_body() {
    let ca = Ca::new("test ca");
    let leaf = ca.leaf("pod", &["localhost"], 90);
    let dir = SecretDir::new("fwd", &[("tls.crt", &leaf.cert), ("tls.key", &leaf.key)]);
    let (app, log) = spawn_raw_app(OK, false).await;
    // An untrusted client (TRUSTED_PROXIES=none), so podgate's own view wins.
    let mut vars = tls_vars(&dir);
    vars.push(("TRUSTED_PROXIES".into(), "none".into()));
    let pg = start(app, &vars).await;
    wait_ready(&pg).await;
    let tls_addr = pg.running.tls_addr.expect("TLS listener");

    let mut s = connect(tls_addr, client_config(&ca, &[b"http/1.1"], BOTH, None))
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let resp = get(&mut s, "/over-tls").await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    // Plain and TLS listeners at once, the same request path.
    let plain = raw(
        pg.addr,
        b"GET /plain HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&plain)), 200);

    sync_with_app(pg.addr, &log).await;
    let got = log.lock().unwrap().clone();
    let head = |path: &str| {
        got.iter()
            .find(|r| r.head.contains(path))
            .unwrap_or_else(|| panic!("{path} did not reach the app: {got:?}"))
            .head
            .clone()
    };
    let tls_head = head("/over-tls");
    assert_eq!(
        header_of(&tls_head, "x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        header_of(&tls_head, "x-forwarded-port"),
        Some(tls_addr.port().to_string())
    );
    let fwd = header_of(&tls_head, "forwarded").unwrap_or_default();
    assert!(fwd.contains("proto=https"), "{fwd}");
    let plain_head = head("/plain");
    assert_eq!(
        header_of(&plain_head, "x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        header_of(&plain_head, "x-forwarded-port"),
        Some(pg.addr.port().to_string())
    );
}

#[test]
fn alpn_h2_serves_http2_and_tls12_works_too() {
    run(alpn_h2_serves_http2_and_tls12_works_too_body);
}

async fn alpn_h2_serves_http2_and_tls12_works_too_body() {
    let ca = Ca::new("test ca");
    let leaf = ca.leaf("pod", &["localhost"], 90);
    let dir = SecretDir::new("h2", &[("tls.crt", &leaf.cert), ("tls.key", &leaf.key)]);
    let app = spawn_echo_app().await;
    let pg = start(app, &tls_vars(&dir)).await;
    wait_ready(&pg).await;
    let tls_addr = pg.running.tls_addr.unwrap();

    let s = connect(
        tls_addr,
        client_config(&ca, &[b"h2", b"http/1.1"], BOTH, None),
    )
    .await
    .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(s),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/h2")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = within(WAIT, send.send_request(req)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("/h2"), "{body:?}");

    let only12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let mut s = connect(tls_addr, client_config(&ca, &[], only12, None))
        .await
        .unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(status_of(&get(&mut s, "/tls12").await), 200);
}

/// TLS 1.0 and 1.1 are refused; an independent client (openssl) agrees.
#[test]
fn old_protocol_versions_are_refused() {
    run(old_protocol_versions_are_refused_body);
}

async fn old_protocol_versions_are_refused_body() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: openssl not installed");
        return;
    }
    let ca = Ca::new("test ca");
    let leaf = ca.leaf("pod", &["localhost"], 90);
    let dir = SecretDir::new("old", &[("tls.crt", &leaf.cert), ("tls.key", &leaf.key)]);
    let (app, _log) = spawn_raw_app(OK, false).await;
    let pg = start(app, &tls_vars(&dir)).await;
    let tls_addr = pg.running.tls_addr.unwrap();
    let s_client = |flag: &'static str| {
        let addr = tls_addr.to_string();
        tokio::task::spawn_blocking(move || {
            let out = Command::new("openssl")
                // SECLEVEL=0 so the client really offers the old versions.
                .args([
                    "s_client",
                    "-connect",
                    &addr,
                    flag,
                    "-servername",
                    "localhost",
                ])
                .args(["-cipher", "DEFAULT:@SECLEVEL=0"])
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr)
        })
    };
    for old in ["-tls1", "-tls1_1"] {
        let out = s_client(old).await.unwrap();
        assert!(
            !out.contains("no protocols available"),
            "{old} not offered: {out}"
        );
        // No certificate came back and no cipher was agreed: refused.
        assert!(
            out.contains("no peer certificate available") && out.contains("Cipher is (NONE)"),
            "{old} was accepted: {out}"
        );
    }
    let out = s_client("-tls1_2").await.unwrap();
    assert!(
        out.contains("Server certificate") && out.contains("TLSv1.2"),
        "{out}"
    );
}

#[test]
fn client_certificates_are_required_when_a_client_ca_is_set() {
    run(client_certificates_are_required_when_a_client_ca_is_set_body);
}

async fn client_certificates_are_required_when_a_client_ca_is_set_body() {
    let ca = Ca::new("server ca");
    let leaf = ca.leaf("pod", &["localhost"], 90);
    let client_ca = Ca::new("ingress ca");
    let ingress = client_ca.leaf("ingress-nginx", &["ingress"], 90);
    let stranger = Ca::new("other ca").leaf("stranger", &["stranger"], 90);
    let dir = SecretDir::new(
        "mtls",
        &[
            ("tls.crt", &leaf.cert),
            ("tls.key", &leaf.key),
            ("ca.crt", &client_ca.pem()),
        ],
    );
    let (app, log) = spawn_raw_app(OK, false).await;
    let mut vars = tls_vars(&dir);
    vars.push((
        "TLS_CLIENT_CA".into(),
        dir.path("ca.crt").display().to_string(),
    ));
    let pg = start(app, &vars).await;
    let tls_addr = pg.running.tls_addr.unwrap();

    // Without a certificate: refused in the handshake (TLS 1.3 reports it
    // on the first read).
    let refused = |cfg| async move {
        match connect(tls_addr, cfg).await {
            Err(_) => true,
            Ok(mut s) => {
                let _ = s
                    .write_all(b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    .await;
                let mut b = [0u8; 64];
                !matches!(within(WAIT, s.read(&mut b)).await, Ok(n) if n > 0)
            }
        }
    };
    assert!(refused(client_config(&ca, &[], BOTH, None)).await);
    assert!(refused(client_config(&ca, &[], BOTH, Some(&stranger))).await);
    let mut s = connect(tls_addr, client_config(&ca, &[], BOTH, Some(&ingress)))
        .await
        .unwrap();
    assert_eq!(status_of(&get(&mut s, "/with-cert").await), 200);

    sync_with_app(pg.addr, &log).await;
    let got = log.lock().unwrap().clone();
    assert!(got.iter().all(|r| !r.head.contains("/nope")), "{got:?}");
    let m = metrics(&pg).await;
    assert!(
        metric(
            &m,
            "podgate_tls_handshake_failures_total{reason=\"no_client_certificate\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "podgate_tls_handshake_failures_total{reason=\"bad_client_certificate\"}"
        ) >= 1.0,
        "{m}"
    );
}

/// Rotation exactly as the kubelet updates a mounted Secret. A renewed
/// pair is served to new handshakes within the poll, open connections keep
/// working, and a bad renewal keeps the last good pair.
#[test]
fn renewed_certificates_are_served_without_a_restart() {
    run(renewed_certificates_are_served_without_a_restart_body);
}

async fn renewed_certificates_are_served_without_a_restart_body() {
    let ca = Ca::new("test ca");
    let first = ca.leaf("first", &["localhost"], 90);
    let mut dir = SecretDir::new("rot", &[("tls.crt", &first.cert), ("tls.key", &first.key)]);
    let (app, _log) = spawn_raw_app(OK, false).await;
    let pg = start(app, &tls_vars(&dir)).await;
    wait_ready(&pg).await;
    let tls_addr = pg.running.tls_addr.unwrap();
    let cfg = client_config(&ca, &[], BOTH, None);

    let mut open = connect(tls_addr, cfg.clone()).await.unwrap();
    assert_eq!(served_cn(&open), "first");
    assert_eq!(status_of(&get(&mut open, "/a").await), 200);

    let second = ca.leaf("second", &["localhost"], 120);
    dir.update(&[("tls.crt", &second.cert), ("tls.key", &second.key)]);
    let waited = std::time::Instant::now();
    loop {
        let s = connect(tls_addr, cfg.clone()).await.unwrap();
        if served_cn(&s) == "second" {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the renewed certificate was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The connection opened before the renewal is untouched.
    assert_eq!(status_of(&get(&mut open, "/b").await), 200);
    let m = metrics(&pg).await;
    assert_eq!(
        metric(&m, "podgate_tls_reloads_total{result=\"ok\"}"),
        1.0,
        "{m}"
    );
    let status = raw(
        pg.admin,
        b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let status = String::from_utf8_lossy(&status);
    assert!(status.contains("CN=second"), "{status}");
    assert!(status.contains("DNS:localhost"), "{status}");

    // A renewal whose key belongs to another certificate: not loaded.
    let other = ca.leaf("third", &["localhost"], 150);
    dir.update(&[("tls.crt", &other.cert), ("tls.key", &second.key)]);
    let waited = std::time::Instant::now();
    loop {
        let m = metrics(&pg).await;
        if metric(&m, "podgate_tls_reloads_total{result=\"error\"}") >= 1.0 {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(12),
            "a bad renewal was not reported: {m}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let s = connect(tls_addr, cfg.clone()).await.unwrap();
    assert_eq!(served_cn(&s), "second", "the last good pair keeps serving");
}

#[test]
fn a_silent_client_is_cut_at_the_header_timeout() {
    run(a_silent_client_is_cut_at_the_header_timeout_body);
}

async fn a_silent_client_is_cut_at_the_header_timeout_body() {
    let ca = Ca::new("test ca");
    let leaf = ca.leaf("pod", &["localhost"], 90);
    let dir = SecretDir::new("slow", &[("tls.crt", &leaf.cert), ("tls.key", &leaf.key)]);
    let (app, _log) = spawn_raw_app(OK, false).await;
    let mut vars = tls_vars(&dir);
    vars.push(("HEADER_TIMEOUT".into(), "500ms".into()));
    let pg = start(app, &vars).await;
    let tls_addr = pg.running.tls_addr.unwrap();
    let mut s = TcpStream::connect(tls_addr).await.unwrap();
    let started = std::time::Instant::now();
    let closed = read_to_close(&mut s, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(closed.is_ok_and(|b| b.is_empty()), "expected a close");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    let m = metrics(&pg).await;
    assert_eq!(
        metric(
            &m,
            "podgate_tls_handshake_failures_total{reason=\"timeout\"}"
        ),
        1.0,
        "{m}"
    );
    // A TLS handshake and nothing after it: the same timeout, counted from
    // the connection.
    let mut s = connect(tls_addr, client_config(&ca, &[], BOTH, None))
        .await
        .unwrap();
    let mut b = [0u8; 16];
    let r = within(Duration::from_secs(3), s.read(&mut b)).await;
    assert!(!matches!(r, Ok(n) if n > 0), "{r:?}");
}

fn podgate(args: &[&str], vars: &[(String, String)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PODGATE_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in vars {
        cmd.env(format!("PODGATE_{k}"), v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn start_up_names_every_bad_tls_file_at_once() {
    let ca = Ca::new("test ca");
    let a = ca.leaf("a", &["localhost"], 90);
    let b = ca.leaf("b", &["localhost"], 90);
    let dir = SecretDir::new(
        "bad",
        &[
            ("tls.crt", &a.cert),
            ("tls.key", &b.key),
            ("ca.crt", "not a pem\n"),
        ],
    );
    let path = |n: &str| dir.path(n).display().to_string();
    // Key of another certificate, and a CA bundle that holds nothing.
    let vars = vec![
        ("LISTEN".into(), "127.0.0.1:0".into()),
        ("TLS_LISTEN".into(), "127.0.0.1:0".into()),
        ("TLS_CERT".into(), path("tls.crt")),
        ("TLS_KEY".into(), path("tls.key")),
        ("TLS_CLIENT_CA".into(), path("ca.crt")),
    ];
    let (code, _, err) = podgate(&["config"], &vars);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("PODGATE_TLS_KEY="), "{err}");
    assert!(err.contains("does not match"), "{err}");
    assert!(err.contains("PODGATE_TLS_CLIENT_CA="), "{err}");

    // Missing files and a key file without a key; TLS without a cert.
    let vars = vec![
        ("TLS_LISTEN".into(), "127.0.0.1:0".into()),
        ("TLS_CERT".into(), path("missing.crt")),
        ("TLS_KEY".into(), path("tls.crt")),
    ];
    let (code, _, err) = podgate(&["config"], &vars);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("PODGATE_TLS_CERT="), "{err}");
    let vars = vec![
        ("TLS_LISTEN".into(), "127.0.0.1:0".into()),
        ("TLS_CERT".into(), path("tls.crt")),
        ("TLS_KEY".into(), path("tls.crt")),
    ];
    let (code, _, err) = podgate(&["config"], &vars);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("PODGATE_TLS_KEY=") && err.contains("private key"),
        "{err}"
    );
    let (code, _, err) = podgate(&["config"], &[("TLS_LISTEN".into(), "127.0.0.1:0".into())]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("PODGATE_TLS_LISTEN="), "{err}");
    assert!(
        err.contains("missing: PODGATE_TLS_CERT (tls.crt), PODGATE_TLS_KEY (tls.key)"),
        "{err}"
    );
    // No listener at all.
    let (code, _, err) = podgate(&["config"], &[("LISTEN".into(), "off".into())]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("PODGATE_LISTEN=\"off\""), "{err}");
}

#[test]
fn an_expired_or_expiring_certificate_warns_but_is_accepted() {
    let ca = Ca::new("test ca");
    let expired = ca.leaf("old", &["localhost"], -2);
    let dir = SecretDir::new(
        "exp",
        &[("tls.crt", &expired.cert), ("tls.key", &expired.key)],
    );
    let vars = vec![
        ("TLS_LISTEN".into(), "127.0.0.1:0".into()),
        ("TLS_CERT".into(), dir.path("tls.crt").display().to_string()),
        ("TLS_KEY".into(), dir.path("tls.key").display().to_string()),
    ];
    let (code, _, err) = podgate(&["config"], &vars);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("expired"), "{err}");

    let soon = ca.leaf("soon", &["localhost", "127.0.0.1"], 3);
    let dir = SecretDir::new("soon", &[("tls.crt", &soon.cert), ("tls.key", &soon.key)]);
    let vars = vec![
        ("TLS_LISTEN".into(), "127.0.0.1:0".into()),
        ("TLS_CERT".into(), dir.path("tls.crt").display().to_string()),
        ("TLS_KEY".into(), dir.path("tls.key").display().to_string()),
        // Nothing listens there: the app check fails, the TLS lines print.
        ("APP_PORT".into(), "1".into()),
    ];
    let (_, out, _) = podgate(&["check"], &vars);
    assert!(out.contains("CN=soon"), "{out}");
    assert!(out.contains("IP:127.0.0.1"), "{out}");
    assert!(out.contains("expires within 7 days"), "{out}");
}

#[test]
fn tls_only_with_the_plain_listener_off() {
    run(tls_only_with_the_plain_listener_off_body);
}

async fn tls_only_with_the_plain_listener_off_body() {
    let ca = Ca::new("test ca");
    let leaf = ca.leaf("pod", &["localhost"], 90);
    let dir = SecretDir::new("only", &[("tls.crt", &leaf.cert), ("tls.key", &leaf.key)]);
    let (app, _log) = spawn_raw_app(OK, false).await;
    let mut vars = tls_vars(&dir);
    vars.push(("LISTEN".into(), "off".into()));
    let pg = start(app, &vars).await;
    assert!(pg.running.proxy_addr.is_none());
    let mut s = connect(
        pg.running.tls_addr.unwrap(),
        client_config(&ca, &[], BOTH, None),
    )
    .await
    .unwrap();
    assert_eq!(status_of(&get(&mut s, "/").await), 200);
}
