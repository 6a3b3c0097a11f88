//! One framing and one Host: what hyper leaves to a proxy to refuse, the
//! Host an HTTP/1.0 request lacks, and HTTP/2 cookie crumbs joined.

use http::header::{self, HeaderMap, HeaderValue};

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
pub(super) fn authority_shape_ok(b: &[u8]) -> bool {
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
pub(super) static HOST_BYTES: [bool; 256] = {
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
