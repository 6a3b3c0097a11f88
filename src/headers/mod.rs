//! Header normalisation: pure functions over `HeaderMap`, unit-tested here.
//!
//! What the app receives must be clean (no hop-by-hop headers), honest (the
//! true client address, from a trust model), and unambiguous (one framing,
//! one Host). The [`crate::layers::normalize`] layer applies these to every request.

mod forwarded;
mod framing;
mod hop;
mod request_id;
#[cfg(test)]
mod tests;

use http::header::{HeaderMap, HeaderName};

pub use forwarded::*;
pub use framing::*;
pub use hop::*;
pub use request_id::*;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

pub static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Proxy-set headers that only a trusted proxy may send: frameworks read
/// them for the scheme (Django's SECURE_PROXY_SSL_HEADER, Rails, Rack) or the
/// original URL (IIS-style rewrites).
pub const SPOOFABLE: &[&str] = &[
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded-server",
    "x-scheme",
    "x-url-scheme",
    "front-end-https",
    "x-original-url",
    "x-rewrite-url",
    "x-original-forwarded-for",
];

/// Policy for header names containing `_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnderscorePolicy {
    Drop,
    Reject,
    Allow,
}

/// A header name with `_` under the `reject` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("header name with underscore")]
pub struct UnderscoreRejected;

/// Applies the underscore policy; an error means the request must be refused.
pub fn apply_underscore_policy(
    headers: &mut HeaderMap,
    policy: UnderscorePolicy,
) -> Result<(), UnderscoreRejected> {
    if policy == UnderscorePolicy::Allow {
        return Ok(());
    }
    let bad: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().contains('_'))
        .cloned()
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    if policy == UnderscorePolicy::Reject {
        return Err(UnderscoreRejected);
    }
    for n in bad {
        headers.remove(&n);
    }
    Ok(())
}

/// Removes configured response headers (e.g. `Server`, `X-Powered-By`).
pub fn hide(headers: &mut HeaderMap, names: &[HeaderName]) {
    for n in names {
        headers.remove(n);
    }
}
