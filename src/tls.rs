//! TLS on the pod port: the serving certificate and key (the `tls.crt` and
//! `tls.key` a `kubernetes.io/tls` Secret mounts), optional client
//! certificates, and rotation without a restart.
//!
//! Rotation is by polling, every [`POLL`]: the kubelet updates a mounted
//! Secret by swapping a `..data` symlink, which inotify on the files
//! themselves does not see (the watched inode never changes) and which
//! needs a watch on the directory and its renames to catch; reading two
//! small files every few seconds sees every way a file can change (symlink
//! swap, rename, write in place, a ConfigMap or a CSI driver) at the cost
//! of two reads. A pair that does not load keeps the last good one serving.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often the certificate and key files are read for a change.
pub const POLL: Duration = Duration::from_secs(5);

/// The files of the TLS listener, from `PODGATE_TLS_*`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// Why a certificate, key or CA bundle cannot be used; each names the
/// variable the operator must fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("PODGATE_{var}: cannot read {path}: {reason}")]
    Read {
        var: &'static str,
        path: String,
        reason: String,
    },
    #[error("PODGATE_TLS_CERT: {path} holds no PEM certificate (BEGIN CERTIFICATE)")]
    NoCert { path: String },
    #[error("PODGATE_TLS_CERT: {path}: the first certificate does not parse: {reason}")]
    BadCert { path: String, reason: String },
    #[error("PODGATE_TLS_KEY: {path} holds no PEM private key (PKCS#8, RSA or EC)")]
    NoKey { path: String },
    #[error("PODGATE_TLS_KEY: {path}: the key cannot be used: {reason}")]
    BadKey { path: String, reason: String },
    #[error("PODGATE_TLS_KEY: {key} does not match the certificate in {cert}")]
    Mismatch { cert: String, key: String },
    #[error("PODGATE_TLS_CLIENT_CA: {path}: {reason}")]
    BadCa { path: String, reason: String },
}

impl TlsError {
    /// The variable to fix, for the configuration error list.
    pub fn var(&self) -> &'static str {
        match self {
            TlsError::Read { var, .. } => var,
            TlsError::NoCert { .. } | TlsError::BadCert { .. } => "TLS_CERT",
            TlsError::NoKey { .. } | TlsError::BadKey { .. } | TlsError::Mismatch { .. } => {
                "TLS_KEY"
            }
            TlsError::BadCa { .. } => "TLS_CLIENT_CA",
        }
    }

    /// What the variable should have held, for `VarError::expected`.
    pub fn expected(&self) -> String {
        match self {
            TlsError::Read { reason, .. } => format!("a readable file ({reason})"),
            TlsError::NoCert { .. } => {
                "a PEM file with the certificate chain (BEGIN CERTIFICATE), leaf first".into()
            }
            TlsError::BadCert { reason, .. } => format!("a valid X.509 certificate ({reason})"),
            TlsError::NoKey { .. } => {
                "a PEM private key (PKCS#8, RSA or EC: BEGIN PRIVATE KEY)".into()
            }
            TlsError::BadKey { reason, .. } => format!("a usable private key ({reason})"),
            TlsError::Mismatch { .. } => {
                "the private key of the certificate in PODGATE_TLS_CERT (this key does not match it)"
                    .into()
            }
            TlsError::BadCa { reason, .. } => format!("a PEM bundle of CA certificates ({reason})"),
        }
    }
}

/// What `/status`, `podgate status` and `podgate check` show of the serving
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub sans: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
}

impl CertInfo {
    pub fn expired(&self, now: SystemTime) -> bool {
        unix(now) > self.not_after
    }

    /// Seconds until expiry (negative once expired).
    pub fn remaining(&self, now: SystemTime) -> i64 {
        self.not_after - unix(now)
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(var: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        var,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A certificate chain and key, parsed and checked against each other.
fn load_pair(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<(Arc<CertifiedKey>, CertInfo), TlsError> {
    let shown = |p: &Path| p.display().to_string();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCert {
            path: shown(cert_path),
        });
    };
    let info = cert_info(leaf).map_err(|reason| TlsError::BadCert {
        path: shown(cert_path),
        reason,
    })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::NoKey {
        path: shown(key_path),
    })?;
    let provider = provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey {
            path: shown(key_path),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| TlsError::Mismatch {
        cert: shown(cert_path),
        key: shown(key_path),
    })?;
    Ok((Arc::new(certified), info))
}

fn cert_info(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(format!("DNS:{d}")),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.push(format!("IP:{ip}"));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        sans,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

fn load_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let pem = read("TLS_CLIENT_CA", path)?;
    let bad = |reason: String| TlsError::BadCa {
        path: path.display().to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not a PEM certificate bundle: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("a certificate cannot be used as a CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no PEM certificate (BEGIN CERTIFICATE)".into()));
    }
    Ok(roots)
}

/// Checks the files as start-up does, for the configuration's error list.
/// Returns the serving certificate's facts (for the expiry warning).
pub fn check(files: &TlsFiles) -> Result<CertInfo, Vec<TlsError>> {
    let mut errors = Vec::new();
    let cert = read("TLS_CERT", &files.cert)
        .map_err(|e| errors.push(e))
        .ok();
    let key = read("TLS_KEY", &files.key).map_err(|e| errors.push(e)).ok();
    let mut info = None;
    if let (Some(c), Some(k)) = (cert, key) {
        match load_pair(&files.cert, &c, &files.key, &k) {
            Ok((_, i)) => info = Some(i),
            Err(e) => errors.push(e),
        }
    }
    if let Some(ca) = &files.client_ca {
        if let Err(e) = load_roots(ca) {
            errors.push(e);
        }
    }
    match info {
        Some(i) if errors.is_empty() => Ok(i),
        _ => Err(errors),
    }
}

/// Hands rustls the current certificate for each handshake; swapped on
/// reload, so new handshakes get the new one and open connections keep
/// theirs.
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

/// The TLS listener's state: the acceptor, the current certificate's facts
/// and what the reloader last read.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    files: TlsFiles,
    resolver: Arc<Resolver>,
    info: RwLock<CertInfo>,
}

impl Tls {
    /// Loads the files and builds the server configuration: TLS 1.2 and 1.3,
    /// ALPN `h2` then `http/1.1`, client certificates when a CA is set.
    pub fn new(files: TlsFiles) -> Result<Self, TlsError> {
        let cert = read("TLS_CERT", &files.cert)?;
        let key = read("TLS_KEY", &files.key)?;
        let (certified, info) = load_pair(&files.cert, &cert, &files.key, &key)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(certified),
        });
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::BadCert {
                path: files.cert.display().to_string(),
                reason: e.to_string(),
            })?;
        let builder = match &files.client_ca {
            Some(ca) => {
                let roots = load_roots(ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::BadCa {
                            path: ca.display().to_string(),
                            reason: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            files,
            resolver,
            info: RwLock::new(info),
        })
    }

    /// The serving certificate's facts now.
    pub fn info(&self) -> Option<CertInfo> {
        self.info.read().ok().map(|i| i.clone())
    }

    /// Reads the files again; a pair that loads replaces the one served.
    fn reload(&self, cert: &[u8], key: &[u8]) -> Result<CertInfo, TlsError> {
        let (certified, info) = load_pair(&self.files.cert, cert, &self.files.key, key)?;
        if let Ok(mut c) = self.resolver.current.write() {
            *c = certified;
        }
        if let Ok(mut i) = self.info.write() {
            *i = info.clone();
        }
        Ok(info)
    }

    /// Polls the files until `stop`, reloading when either changed. Reading
    /// and parsing run on the blocking pool: file reads, and certificate
    /// parsing that wants more stack than a runtime thread has to spare.
    pub async fn watch(self: Arc<Self>, metrics: Arc<Metrics>, stop: CancellationToken) {
        let mut seen: Option<(Vec<u8>, Vec<u8>)> = {
            let tls = self.clone();
            tokio::task::spawn_blocking(move || tls.read_both().ok())
                .await
                .ok()
                .flatten()
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.cancelled() => return,
            }
            let tls = self.clone();
            let last = seen.clone();
            let step = tokio::task::spawn_blocking(move || tls.poll_once(last)).await;
            let Ok(Some((pair, result))) = step else {
                continue;
            };
            match result {
                Ok(info) => {
                    metrics.tls_reloaded(true, info.not_after);
                    let not_after = UNIX_EPOCH + Duration::from_secs(info.not_after.max(0) as u64);
                    tracing::info!(
                        subject = %info.subject,
                        not_after = %humantime::format_rfc3339_seconds(not_after),
                        "TLS certificate reloaded; new handshakes use it"
                    );
                }
                Err(e) => {
                    metrics.tls_reloaded(false, 0);
                    tracing::error!(error = %e, "new TLS certificate or key not loaded; still serving the previous one");
                }
            }
            seen = Some(pair);
        }
    }

    fn read_both(&self) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
        Ok((
            std::fs::read(&self.files.cert)?,
            std::fs::read(&self.files.key)?,
        ))
    }

    /// One poll: `None` when nothing changed (or the files cannot be read
    /// now: mid-swap or gone, and the last good pair keeps serving);
    /// otherwise the pair read and what loading it gave.
    #[allow(clippy::type_complexity)]
    fn poll_once(
        &self,
        last: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Option<((Vec<u8>, Vec<u8>), Result<CertInfo, TlsError>)> {
        let mut pair = self.read_both().ok()?;
        if last.as_ref() == Some(&pair) {
            return None;
        }
        let mut result = self.reload(&pair.0, &pair.1);
        if result.is_err() {
            // A new certificate read before its key was written: read once
            // more before calling the pair bad.
            std::thread::sleep(Duration::from_millis(500));
            if let Ok(again) = self.read_both() {
                pair = again;
                result = self.reload(&pair.0, &pair.1);
            }
        }
        Some((pair, result))
    }
}

/// A bounded label for a failed handshake.
pub fn handshake_failure_reason(e: &std::io::Error) -> &'static str {
    use rustls::Error as E;
    if e.kind() == std::io::ErrorKind::TimedOut {
        return "timeout";
    }
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => "client_closed",
            _ => "io",
        };
    };
    match tls {
        E::NoCertificatesPresented => "no_client_certificate",
        E::InvalidCertificate(_) => "bad_client_certificate",
        E::PeerIncompatible(_) => "incompatible",
        E::NoApplicationProtocol => "no_alpn",
        E::AlertReceived(_) => "alert_received",
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => "not_tls",
        _ => "other",
    }
}
