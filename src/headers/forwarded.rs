//! The client-address headers (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`)
//! under the trust model: believed from trusted proxies, replaced otherwise.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use super::*;

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
pub(super) fn resolve_trusted_chain(chain: &str, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
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
pub(super) fn parse_xff_entry(entry: &str) -> Option<IpAddr> {
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
pub(super) fn forwarded_node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

/// All values of a header joined by ", " (the list form), if any and valid.
pub(super) fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
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

pub(super) fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name.clone(), v);
    } else {
        headers.remove(name);
    }
}
