//! The checks across variables, after each has parsed on its own.

use std::path::PathBuf;
use std::time::Duration;

use super::{Config, VarError, PREFIX};

/// What no single variable shows: at least one listener, and a TLS listener
/// whose certificate, key and CA load (all reported at once).
pub(super) fn listeners(c: &Config, errors: &mut Vec<VarError>, warnings: &mut Vec<String>) {
    let err = |var: &str, value: String, expected: String| VarError {
        var: format!("{PREFIX}{var}"),
        value,
        expected,
    };
    if c.listen.is_none() && c.tls_listen.is_none() {
        errors.push(err(
            "LISTEN",
            "off".into(),
            "an address while PODGATE_TLS_LISTEN is empty: podgate needs a listener".into(),
        ));
    }
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
    // Reported on TLS_LISTEN, the variable that was set: the missing files
    // are what it needs.
    let missing: Vec<&str> = [
        ("PODGATE_TLS_CERT (tls.crt)", &c.tls_cert),
        ("PODGATE_TLS_KEY (tls.key)", &c.tls_key),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_none())
    .map(|(name, _)| name)
    .collect();
    if !missing.is_empty() {
        errors.push(err(
            "TLS_LISTEN",
            c.tls_listen.map(|a| a.to_string()).unwrap_or_default(),
            format!(
                "empty, or set together with the PEM files of the certificate and key; missing: {}",
                missing.join(", ")
            ),
        ));
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
