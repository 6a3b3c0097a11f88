//! The checks across variables, after each has parsed on its own.

use std::path::PathBuf;
use std::time::Duration;

use super::{default_of, Config, Raw, VarError, PREFIX};

/// What no single variable shows, judged on what was set (so that it is
/// reported whatever else failed): at least one listener, and a TLS
/// listener with its certificate and key files named. Reported on the
/// variable that was set.
pub(super) fn listeners_named(raw: &Raw) -> Vec<VarError> {
    let value = |name: &str| {
        raw.get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| default_of(name).to_string())
    };
    let addr = |name: &str| {
        let v = value(name);
        (v.parse::<std::net::SocketAddr>().is_ok(), v)
    };
    let off = |v: &str| v.is_empty() || v.eq_ignore_ascii_case("off");
    let (_, listen) = addr("LISTEN");
    let (tls_on, tls) = addr("TLS_LISTEN");
    let mut errors = Vec::new();
    if off(&listen) && !tls_on {
        errors.push(err(
            "LISTEN",
            listen,
            "an address while PODGATE_TLS_LISTEN is empty: podgate needs a listener".into(),
        ));
    }
    if tls_on {
        let missing: Vec<&str> = [
            ("TLS_CERT", "PODGATE_TLS_CERT (tls.crt)"),
            ("TLS_KEY", "PODGATE_TLS_KEY (tls.key)"),
        ]
        .into_iter()
        .filter(|(var, _)| value(var).is_empty())
        .map(|(_, shown)| shown)
        .collect();
        if !missing.is_empty() {
            errors.push(err(
                "TLS_LISTEN",
                tls,
                format!(
                    "empty, or set together with the PEM files of the certificate and key; missing: {}",
                    missing.join(", ")
                ),
            ));
        }
    }
    errors
}

fn err(var: &str, value: String, expected: String) -> VarError {
    VarError {
        var: format!("{PREFIX}{var}"),
        value,
        expected,
    }
}

/// Once every variable parsed: the TLS files load and match (all problems
/// at once), and what is set without effect warns.
pub(super) fn tls_files(c: &Config, errors: &mut Vec<VarError>, warnings: &mut Vec<String>) {
    let shown = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    if c.tls_listen.is_none() {
        for (var, v) in [
            ("TLS_CERT", &c.tls_cert),
            ("TLS_KEY", &c.tls_key),
            ("TLS_CLIENT_CA", &c.tls_client_ca),
        ] {
            if v.is_some() {
                warnings.push(format!("{PREFIX}{var} is set but PODGATE_TLS_LISTEN is empty: there is no TLS listener"));
            }
        }
        return;
    }
    let Some(files) = c.tls_files() else {
        return;
    };
    match crate::tls::check(&files) {
        Ok(info) => {
            let now = std::time::SystemTime::now();
            if info.expired(now) {
                warnings.push(format!(
                    "{PREFIX}TLS_CERT: the certificate in {} ({}) expired {} ago; serving it anyway until it is renewed",
                    files.cert.display(),
                    info.subject,
                    humantime::format_duration(Duration::from_secs(info.remaining(now).unsigned_abs()))
                ));
            }
        }
        Err(list) => {
            for e in list {
                let value = match e.var() {
                    "TLS_CERT" => shown(&c.tls_cert),
                    "TLS_KEY" => shown(&c.tls_key),
                    _ => shown(&c.tls_client_ca),
                };
                errors.push(err(e.var(), value, e.expected()));
            }
        }
    }
}
