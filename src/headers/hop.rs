//! Hop-by-hop headers (RFC 9110 §7.6.1) and which upgrades may pass.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub(super) static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub(super) static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub(super) static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Hop-by-hop headers that never cross a proxy (RFC 9110 §7.6.1), besides
/// those named in `Connection`.
pub(super) fn fixed_hop_by_hop() -> [&'static HeaderName; 9] {
    [
        &header::CONNECTION,
        // Part of the h2c upgrade (RFC 7540 §3.2.1), never tunnelled.
        &HTTP2_SETTINGS,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
    ]
}

/// Iterates the comma-separated tokens of every `Connection` header, trimmed.
pub(super) fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// True when an HTTP/1.1 request asks to switch protocols (WebSocket etc.).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// The `Upgrade` value to forward when the request asks for protocols in
/// `allowed` (lowercase names): those protocols alone, in the client's
/// order; `None` when none is allowed.
pub fn allowed_upgrade(headers: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
    let mut kept: Vec<&str> = Vec::new();
    for v in headers.get_all(header::UPGRADE) {
        let Ok(v) = v.to_str() else { continue };
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if upgrade_allowed(p, allowed) {
                kept.push(p);
            }
        }
    }
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

/// Whether one offered protocol (`name` or `name/version`) is allowed.
pub(super) fn upgrade_allowed(protocol: &str, allowed: &[String]) -> bool {
    let name = protocol.split('/').next().unwrap_or(protocol);
    allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(protocol) || a.eq_ignore_ascii_case(name))
}

/// Whether a 101's `Upgrade` names one of the protocols that were offered.
pub fn upgrade_matches(offered: &HeaderValue, answered: Option<&HeaderValue>) -> bool {
    let (Ok(offered), Some(Ok(answered))) = (offered.to_str(), answered.map(|a| a.to_str())) else {
        return false;
    };
    let answered = answered.trim();
    !answered.is_empty()
        && offered.split(',').map(str::trim).any(|o| {
            o.eq_ignore_ascii_case(answered)
                || o.split('/')
                    .next()
                    .is_some_and(|n| n.eq_ignore_ascii_case(answered))
                || answered
                    .split('/')
                    .next()
                    .is_some_and(|n| n.eq_ignore_ascii_case(o))
        })
}

/// Removes hop-by-hop headers in place (RFC 9110 §7.6.1): `Connection` and
/// every header it names, then the fixed list. `TE: trailers` survives as the
/// one allowed signal; on an upgrade being tunnelled `Upgrade` is kept and
/// `Connection: upgrade` restated. `Host` is never removed, whatever
/// `Connection` names: without it the request is not valid HTTP/1.1.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names first: most messages carry none of these, and
    // a removal is a hash lookup per name (4 % of the instructions per
    // request in callgrind when done unconditionally, both directions).
    let fixed = fixed_hop_by_hop();
    if !keep_upgrade && !headers.keys().any(|n| fixed.contains(&n)) {
        return;
    }
    let wants_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("trailers"))
        });
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .filter(|n| *n != header::HOST)
            .filter(|n| !(keep_upgrade && *n == header::UPGRADE))
            .collect();
        for name in named {
            headers.remove(&name);
        }
    }
    for name in fixed_hop_by_hop() {
        if keep_upgrade && *name == header::UPGRADE {
            continue;
        }
        headers.remove(name);
    }
    if wants_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}
