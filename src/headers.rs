//! Header normalisation: pure functions over `HeaderMap`, unit-tested here.
//!
//! What the app receives must be clean (no hop-by-hop headers), honest (the
//! true client address, from a trust model), and unambiguous (one framing,
//! one Host). The [`crate::normalize`] layer applies these to every request.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

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
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Hop-by-hop headers that never cross a proxy (RFC 9110 §7.6.1), besides
/// those named in `Connection`.
fn fixed_hop_by_hop() -> [&'static HeaderName; 9] {
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
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
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
fn upgrade_allowed(protocol: &str, allowed: &[String]) -> bool {
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

/// Joins several `Cookie` fields into one, `; ` apart (RFC 9113 §8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut all = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (all.next(), all.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// A `Host` value for an address: `10.1.2.3:80`, `[fd00::1]:80`.
pub fn host_value(addr: std::net::SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&addr.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("localhost"))
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

/// The client as podgate sees it on the connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub ip: IpAddr,
    /// The port podgate accepted the connection on (for X-Forwarded-Port).
    pub local_port: u16,
    pub tls: bool,
}

/// Applies the trust model to the client-address headers and returns the
/// resolved client address (what the access log shows).
///
/// From a trusted peer, the incoming `X-Forwarded-*` and `Forwarded` headers
/// are kept and the peer is appended to `X-Forwarded-For` (and `Forwarded`).
/// From anyone else they are replaced with what the connection says.
/// `X-Real-IP` is always set to the resolved client: the right-most address of
/// the chain that is not a trusted proxy.
pub fn apply_forwarded(
    headers: &mut HeaderMap,
    peer: Peer,
    trusted: &[IpNet],
    host: Option<&HeaderValue>,
) -> IpAddr {
    let facts = PeerFacts {
        value: &ip_value(peer.ip),
        port: &port_value(peer.local_port),
        trusted: is_trusted(peer.ip, trusted),
    };
    apply_forwarded_with(headers, peer, facts, trusted, host.cloned())
}

/// What [`apply_forwarded_with`] needs of the connection that does not
/// change between its requests, so it is worked out once per connection.
#[derive(Debug, Clone, Copy)]
pub struct PeerFacts<'a> {
    /// The peer address as a header value.
    pub value: &'a HeaderValue,
    /// The port podgate accepted the connection on, as a header value.
    pub port: &'a HeaderValue,
    /// The peer is one of the trusted proxies.
    pub trusted: bool,
}

/// The address as a header value.
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    // An IP address is always a valid header value.
    HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// [`apply_forwarded`] with the connection's facts already worked out (once
/// per connection, not per request).
pub fn apply_forwarded_with(
    headers: &mut HeaderMap,
    peer: Peer,
    facts: PeerFacts<'_>,
    trusted: &[IpNet],
    host: Option<HeaderValue>,
) -> IpAddr {
    let proto = if peer.tls { "https" } else { "http" };
    let peer_value = facts.value;
    let client;
    if facts.trusted {
        // Which forwarding headers came in, in one pass over the names
        // rather than a hash lookup for each (absent is the common case).
        let (mut xff, mut fwd, mut xfp, mut xfh, mut xfport) = (false, false, false, false, false);
        for n in headers.keys() {
            if *n == X_FORWARDED_FOR {
                xff = true;
            } else if *n == header::FORWARDED {
                fwd = true;
            } else if *n == X_FORWARDED_PROTO {
                xfp = true;
            } else if *n == X_FORWARDED_HOST {
                xfh = true;
            } else if *n == X_FORWARDED_PORT {
                xfport = true;
            }
        }
        let mut chain = if xff {
            joined(headers, &X_FORWARDED_FOR)
        } else {
            None
        };
        client = resolve_trusted_chain(chain.as_deref().unwrap_or(""), peer.ip, trusted);
        match chain.take() {
            Some(c) if !c.trim().is_empty() => {
                let peer_s = peer_value.to_str().unwrap_or("unknown");
                set(headers, &X_FORWARDED_FOR, &format!("{c}, {peer_s}"));
            }
            _ => {
                headers.insert(X_FORWARDED_FOR.clone(), peer_value.clone());
            }
        }
        if fwd {
            if let Some(fwd) = joined(headers, &header::FORWARDED) {
                set(
                    headers,
                    &header::FORWARDED,
                    &format!("{fwd}, for={}", forwarded_node(peer.ip)),
                );
            }
        }
        if !xfp {
            headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
        }
        if !xfh {
            if let Some(h) = host {
                headers.insert(X_FORWARDED_HOST.clone(), h);
            }
        }
        if !xfport {
            headers.insert(X_FORWARDED_PORT.clone(), facts.port.clone());
        }
    } else {
        client = peer.ip;
        for name in [
            &X_FORWARDED_FOR,
            &X_FORWARDED_PROTO,
            &X_FORWARDED_HOST,
            &X_FORWARDED_PORT,
            &X_FORWARDED_PREFIX,
            &header::FORWARDED,
        ] {
            headers.remove(name);
        }
        // Other spellings frameworks read for the scheme or the original URL.
        for name in SPOOFABLE {
            headers.remove(*name);
        }
        headers.insert(X_FORWARDED_FOR.clone(), peer_value.clone());
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
        headers.insert(X_FORWARDED_PORT.clone(), facts.port.clone());
        let mut fwd = format!("for={};proto={proto}", forwarded_node(peer.ip));
        if let Some(h) = host {
            // Only a value that cannot leave the quoted-string goes in.
            if h.as_bytes()
                .iter()
                .all(|b| b.is_ascii_graphic() && *b != b'"' && *b != b'\\')
            {
                if let Ok(s) = h.to_str() {
                    fwd.push_str(";host=\"");
                    fwd.push_str(s);
                    fwd.push('"');
                }
            }
            headers.insert(X_FORWARDED_HOST.clone(), h);
        }
        set(headers, &header::FORWARDED, &fwd);
    }
    if client == peer.ip {
        headers.insert(X_REAL_IP.clone(), peer_value.clone());
    } else {
        set(headers, &X_REAL_IP, &client.to_string());
    }
    client
}

/// The right-most address in the chain (after the peer itself) that is not a
/// trusted proxy. An entry that is not an address stops the walk: anything to
/// its left is unverifiable, so the last verified hop is the answer.
pub fn resolve_client(chain: &str, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    resolve_trusted_chain(chain, peer, trusted)
}

/// [`resolve_client`] for a peer already known to be trusted.
fn resolve_trusted_chain(chain: &str, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    let mut client = peer;
    for entry in chain.rsplit(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        match parse_xff_entry(entry) {
            Some(ip) => {
                client = ip;
                if !is_trusted(ip, trusted) {
                    return ip;
                }
            }
            None => return client,
        }
    }
    client
}

/// Accepts `1.2.3.4`, `1.2.3.4:5678`, `::1` and `[::1]:80`.
fn parse_xff_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = entry.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    None
}

/// Whether the address is in a trusted range (IPv4-mapped IPv6 as IPv4).
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    trusted.iter().any(|n| n.contains(&ip))
}

/// The common listening ports as static values; others are formatted.
pub fn port_value(port: u16) -> HeaderValue {
    match port {
        80 => HeaderValue::from_static("80"),
        8080 => HeaderValue::from_static("8080"),
        443 => HeaderValue::from_static("443"),
        p => HeaderValue::from(p),
    }
}

/// RFC 7239 node syntax: IPv6 in quotes and brackets.
fn forwarded_node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

/// All values of a header joined by ", " (the list form), if any and valid.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let s = v.to_str().ok()?;
        match &mut out {
            Some(o) => {
                o.push_str(", ");
                o.push_str(s);
            }
            None => out = Some(s.to_string()),
        }
    }
    out
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name.clone(), v);
    } else {
        headers.remove(name);
    }
}

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

/// A request id worth keeping: short, visible ASCII, no spaces or quotes that
/// could break a log line or a header.
pub fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| (0x21..=0x7e).contains(c) && *c != b'"' && *c != b'\\')
}

/// A fresh 128-bit request id, hex encoded. Not cryptographic: ids identify,
/// they do not authorise.
pub fn new_request_id() -> HeaderValue {
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static STATE: Cell<(u64, u64)> = Cell::new({
            let s = std::collections::hash_map::RandomState::new();
            let mut h = s.build_hasher();
            h.write_u64(0x9e37_79b9_7f4a_7c15);
            let a = h.finish();
            let mut h = s.build_hasher();
            h.write_u64(a);
            (a | 1, h.finish() | 1)
        });
    }
    let (a, b) = STATE.with(|s| {
        // xorshift128+
        let (mut x, y) = s.get();
        x ^= x << 23;
        x ^= x >> 17;
        x ^= y ^ (y >> 26);
        s.set((y, x));
        let r1 = x.wrapping_add(y);
        let mut z = r1 ^ 0x2545_f491_4f6c_dd1d;
        z ^= z >> 33;
        z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
        (r1, z ^ (z >> 29))
    });
    let mut buf = [0u8; 32];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in a
        .to_be_bytes()
        .iter()
        .chain(b.to_be_bytes().iter())
        .enumerate()
    {
        buf[i * 2] = HEX[(byte >> 4) as usize];
        buf[i * 2 + 1] = HEX[(byte & 0xf) as usize];
    }
    // 32 lowercase hex digits are always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Why a request's framing or Host cannot be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguity {
    ContentLengthWithTransferEncoding,
    ConflictingContentLength,
    BadContentLength,
    UnsupportedTransferEncoding,
    SeveralHosts,
    InvalidHost,
    MissingHost,
}

impl Ambiguity {
    pub fn reason(self) -> &'static str {
        match self {
            Self::ContentLengthWithTransferEncoding => {
                "Content-Length together with Transfer-Encoding"
            }
            Self::ConflictingContentLength => "conflicting Content-Length values",
            Self::BadContentLength => "invalid Content-Length",
            Self::UnsupportedTransferEncoding => "Transfer-Encoding other than chunked",
            Self::SeveralHosts => "several Host headers",
            Self::InvalidHost => "invalid Host header",
            Self::MissingHost => "missing Host header",
        }
    }
}

/// Checks what hyper leaves to us: one framing, one valid Host. Runs on the
/// request as hyper parsed it, before anything is changed.
pub fn check_framing(headers: &HeaderMap, require_host: bool) -> Result<(), Ambiguity> {
    let te = headers.get_all(header::TRANSFER_ENCODING);
    let has_te = te.iter().next().is_some();
    let mut cl_values = headers.get_all(header::CONTENT_LENGTH).iter();
    if let Some(first) = cl_values.next() {
        if has_te {
            return Err(Ambiguity::ContentLengthWithTransferEncoding);
        }
        let parse = |v: &HeaderValue| -> Result<Vec<u64>, Ambiguity> {
            v.to_str()
                .map_err(|_| Ambiguity::BadContentLength)?
                .split(',')
                .map(|p| {
                    let p = p.trim();
                    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(Ambiguity::BadContentLength);
                    }
                    p.parse::<u64>().map_err(|_| Ambiguity::BadContentLength)
                })
                .collect()
        };
        let all: Vec<u64> = std::iter::once(first)
            .chain(cl_values)
            .map(parse)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        if all.windows(2).any(|w| w[0] != w[1]) {
            return Err(Ambiguity::ConflictingContentLength);
        }
    }
    if has_te {
        let codings: Vec<String> = te
            .iter()
            .map(|v| v.to_str().map(|s| s.to_ascii_lowercase()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Ambiguity::UnsupportedTransferEncoding)?
            .iter()
            .flat_map(|s| {
                s.split(',')
                    .map(|t| t.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        if codings.len() != 1 || codings[0] != "chunked" {
            return Err(Ambiguity::UnsupportedTransferEncoding);
        }
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(Ambiguity::SeveralHosts),
        (Some(h), None) => {
            if !valid_host(h) {
                return Err(Ambiguity::InvalidHost);
            }
        }
        (None, _) if require_host => return Err(Ambiguity::MissingHost),
        (None, _) => {}
    }
    Ok(())
}

/// A Host is an authority without userinfo (RFC 9110 §7.2).
pub fn valid_host(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    if b.is_empty() || b.len() > 255 || b.contains(&b'@') {
        return false;
    }
    b.iter().all(|&c| HOST_BYTES[c as usize]) && authority_shape_ok(b)
}

/// The structure rules `http::uri::Authority` applies, for bytes already
/// limited to [`HOST_BYTES`]: brackets once and paired, at most one colon
/// after them (the port), no `%` outside them. `Authority::try_from` checks
/// the same but copies the bytes into a new buffer first, an allocation per
/// request; the unit tests hold the two to the same answers.
fn authority_shape_ok(b: &[u8]) -> bool {
    let (mut colons, mut open, mut close, mut percent) = (0u32, false, false, false);
    for &c in b {
        match c {
            b'%' => percent = true,
            b':' => {
                if colons >= 8 {
                    return false;
                }
                colons += 1;
            }
            b'[' => {
                if percent || open {
                    return false;
                }
                open = true;
            }
            b']' => {
                if !open || close {
                    return false;
                }
                close = true;
                // Those were the IPv6 literal's.
                colons = 0;
                percent = false;
            }
            _ => {}
        }
    }
    open == close && colons <= 1 && !percent
}

/// The bytes a Host may hold: unreserved, sub-delims, `:`, `[`, `]`, `%`.
/// A table, since this runs for every request.
static HOST_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    let extra = b"-._~:[]!$&'()*+,;=%";
    let mut j = 0;
    while j < extra.len() {
        t[extra[j] as usize] = true;
        j += 1;
    }
    t
};

/// Removes configured response headers (e.g. `Server`, `X-Powered-By`).
pub fn hide(headers: &mut HeaderMap, names: &[HeaderName]) {
    for n in names {
        headers.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn nets(s: &str) -> Vec<IpNet> {
        crate::config::parse_cidrs(s).unwrap()
    }

    #[test]
    fn hop_by_hop_removed_including_named_ones() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret, authorization"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("authorization", "Bearer t"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic x"),
            ("te", "gzip"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
            ("host", "example.com"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept", "host"]);
    }

    #[test]
    fn te_trailers_and_upgrade_survive_where_allowed() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("te", "trailers, deflate;q=0.5"),
        ]);
        assert!(is_upgrade_request(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn connection_naming_host_does_not_remove_host() {
        let mut h = map(&[("connection", "host"), ("host", "a.example")]);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h["host"], "a.example");
    }

    fn peer(ip: &str) -> Peer {
        Peer {
            ip: ip.parse().unwrap(),
            local_port: 80,
            tls: false,
        }
    }

    #[test]
    fn untrusted_peer_cannot_spoof() {
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=1.1.1.1"),
            ("x-real-ip", "1.1.1.1"),
            ("x-forwarded-ssl", "on"),
            ("x-scheme", "https"),
            ("x-original-url", "/admin"),
        ]);
        let host = HeaderValue::from_static("shop.example");
        let c = apply_forwarded(
            &mut h,
            peer("203.0.113.9"),
            &nets("10.0.0.0/8"),
            Some(&host),
        );
        assert_eq!(c.to_string(), "203.0.113.9");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example");
        assert_eq!(h["x-forwarded-port"], "80");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
        for n in SPOOFABLE {
            assert!(!h.contains_key(*n), "{n}");
        }
        assert_eq!(
            h["forwarded"],
            "for=203.0.113.9;proto=http;host=\"shop.example\""
        );
    }

    #[test]
    fn trusted_peer_chain_is_kept_and_extended() {
        let mut h = map(&[
            ("x-forwarded-for", "198.51.100.7, 10.0.0.3"),
            ("x-forwarded-for", "10.0.0.4"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = apply_forwarded(&mut h, peer("10.0.0.5"), &nets("10.0.0.0/8"), None);
        assert_eq!(c.to_string(), "198.51.100.7");
        assert_eq!(
            h["x-forwarded-for"],
            "198.51.100.7, 10.0.0.3, 10.0.0.4, 10.0.0.5"
        );
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-real-ip"], "198.51.100.7");
    }

    #[test]
    fn resolve_client_stops_at_garbage() {
        let t = nets("10.0.0.0/8");
        let p: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            resolve_client("nonsense, 10.0.0.2", p, &t).to_string(),
            "10.0.0.2"
        );
        assert_eq!(resolve_client("", p, &t), p);
        assert_eq!(
            resolve_client("[2001:db8::1]:443", p, &t).to_string(),
            "2001:db8::1"
        );
        assert_eq!(resolve_client("1.2.3.4:99", p, &t).to_string(), "1.2.3.4");
    }

    #[test]
    fn mapped_v4_peer_matches_v4_cidr() {
        let p: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert!(is_trusted(p, &nets("10.0.0.0/8")));
    }

    #[test]
    fn underscore_policies() {
        let mut h = map(&[("x_forwarded_for", "1.2.3.4"), ("x-ok", "1")]);
        assert!(apply_underscore_policy(&mut h.clone(), UnderscorePolicy::Reject).is_err());
        apply_underscore_policy(&mut h, UnderscorePolicy::Drop).unwrap();
        assert_eq!(h.len(), 1);
        let mut h = map(&[("x_a", "1")]);
        apply_underscore_policy(&mut h, UnderscorePolicy::Allow).unwrap();
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn request_ids() {
        assert!(valid_request_id(&HeaderValue::from_static("abc-123")));
        assert!(!valid_request_id(&HeaderValue::from_static("has space")));
        assert!(!valid_request_id(
            &HeaderValue::from_str(&"a".repeat(129)).unwrap()
        ));
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(valid_request_id(&a));
    }

    #[test]
    fn framing_checks() {
        assert_eq!(
            check_framing(
                &map(&[
                    ("content-length", "5"),
                    ("transfer-encoding", "chunked"),
                    ("host", "a")
                ]),
                true
            ),
            Err(Ambiguity::ContentLengthWithTransferEncoding)
        );
        assert_eq!(
            check_framing(
                &map(&[
                    ("content-length", "5"),
                    ("content-length", "6"),
                    ("host", "a")
                ]),
                true
            ),
            Err(Ambiguity::ConflictingContentLength)
        );
        assert_eq!(
            check_framing(&map(&[("content-length", "5, 5"), ("host", "a")]), true),
            Ok(())
        );
        assert_eq!(
            check_framing(&map(&[("content-length", "+5"), ("host", "a")]), true),
            Err(Ambiguity::BadContentLength)
        );
        assert_eq!(
            check_framing(
                &map(&[("transfer-encoding", "gzip, chunked"), ("host", "a")]),
                true
            ),
            Err(Ambiguity::UnsupportedTransferEncoding)
        );
        assert_eq!(
            check_framing(&map(&[("host", "a"), ("host", "b")]), true),
            Err(Ambiguity::SeveralHosts)
        );
        assert_eq!(
            check_framing(&map(&[("host", "user@a")]), true),
            Err(Ambiguity::InvalidHost)
        );
        assert_eq!(check_framing(&map(&[]), true), Err(Ambiguity::MissingHost));
        assert_eq!(check_framing(&map(&[]), false), Ok(()));
        assert_eq!(check_framing(&map(&[("host", "[::1]:8080")]), true), Ok(()));
    }

    /// The old check, as the reference for the allocation-free one.
    fn valid_host_by_authority(b: &[u8]) -> bool {
        !b.is_empty()
            && b.len() <= 255
            && !b.contains(&b'@')
            && b.iter().all(|&c| HOST_BYTES[c as usize])
            && http::uri::Authority::try_from(b).is_ok()
    }

    #[test]
    fn host_shapes_match_http_authority() {
        for h in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:18080",
            "[::1]",
            "[::1]:80",
            "[fe80::1%25eth0]:80",
            "a:b:c",
            "[::1",
            "::1]",
            "[[::1]]",
            "x%41",
            "[::1]%",
            "[1:2:3:4:5:6:7:8:9]",
            "[1:2:3:4:5:6:7:8]:1",
            "a]b",
            ":",
            "[]",
            "%[::1]",
        ] {
            assert_eq!(
                valid_host(&HeaderValue::from_static(h)),
                valid_host_by_authority(h.as_bytes()),
                "{h}"
            );
        }
    }

    proptest! {
        #[test]
        fn host_check_agrees_with_http_authority(h in "[a-z0-9.:\\[\\]%@_-]{0,24}") {
            let v = HeaderValue::from_str(&h).unwrap();
            prop_assert_eq!(valid_host(&v), valid_host_by_authority(h.as_bytes()), "{}", h);
        }

        #[test]
        fn normalising_twice_changes_nothing(
            pairs in proptest::collection::vec(("[a-z_-]{1,12}", "[ -~]{0,40}"), 0..12),
            keep in any::<bool>(),
            trusted_peer in any::<bool>(),
        ) {
            let mut h = HeaderMap::new();
            for (k, v) in &pairs {
                if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                    h.append(n, v);
                }
            }
            let t = nets("10.0.0.0/8");
            let p = peer(if trusted_peer { "10.0.0.1" } else { "192.0.2.1" });
            let _ = apply_underscore_policy(&mut h, UnderscorePolicy::Drop);
            remove_hop_by_hop(&mut h, keep);
            let once = h.clone();
            let _ = apply_underscore_policy(&mut h, UnderscorePolicy::Drop);
            remove_hop_by_hop(&mut h, keep);
            prop_assert_eq!(&once, &h);
            // Forwarded headers from an untrusted peer are idempotent too.
            if !trusted_peer {
                apply_forwarded(&mut h, p, &t, None);
                let a = h.clone();
                apply_forwarded(&mut h, p, &t, None);
                prop_assert_eq!(&a, &h);
            }
        }

        #[test]
        fn no_client_value_panics_or_escapes(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(v) = HeaderValue::from_bytes(&raw) {
                let mut h = HeaderMap::new();
                h.insert(X_FORWARDED_FOR.clone(), v.clone());
                h.insert(header::CONNECTION, v.clone());
                h.insert(header::TE, v.clone());
                h.insert(header::HOST, v.clone());
                let _ = check_framing(&h, true);
                remove_hop_by_hop(&mut h, false);
                apply_forwarded(&mut h, peer("10.0.0.1"), &nets("10.0.0.0/8"), Some(&v));
                for (_, val) in h.iter() {
                    prop_assert!(!val.as_bytes().iter().any(|b| *b == b'\r' || *b == b'\n' || *b == 0));
                }
            }
        }
    }
}
