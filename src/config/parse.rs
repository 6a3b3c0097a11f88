//! Value parsers for the settings table: each turns a variable's text into
//! its typed value, or `None`, and carries the words that tell an operator
//! what would have been accepted.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::headers::UnderscorePolicy;

use super::{Compression, LogFormat};

/// How one variable is read: the parser, and what it accepts, for the error.
pub struct Parse<T> {
    pub f: fn(&str) -> Option<T>,
    pub expected: &'static str,
}

impl<T> Parse<T> {
    pub fn new(expected: &'static str, f: fn(&str) -> Option<T>) -> Self {
        Self { f, expected }
    }
}

/// A timeout: greater than 0, at most a day.
pub fn duration() -> Parse<Duration> {
    Parse::new(
        "a duration such as 250ms, 10s or 2m (greater than 0, at most 24h)",
        |s| parse_duration(s).filter(|d| !d.is_zero() && *d <= Duration::from_secs(86_400)),
    )
}

pub fn socket_addr(expected: &'static str) -> Parse<SocketAddr> {
    Parse::new(expected, |s| s.parse().ok())
}

/// An address, or `off`/empty for no listener.
pub fn listen_addr(expected: &'static str) -> Parse<Option<SocketAddr>> {
    Parse::new(expected, |s| {
        if s.is_empty() || s.eq_ignore_ascii_case("off") {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    })
}

/// Empty, or a file that exists (what it holds is checked with the other
/// TLS settings).
pub fn optional_file(expected: &'static str) -> Parse<Option<PathBuf>> {
    Parse::new(expected, |s| {
        if s.is_empty() {
            Some(None)
        } else {
            let p = PathBuf::from(s);
            p.is_file().then_some(Some(p))
        }
    })
}

pub fn boolean() -> Parse<bool> {
    Parse::new("true or false", parse_bool)
}

pub fn ip_addr() -> Parse<IpAddr> {
    Parse::new("an IP address such as 127.0.0.1 or ::1", |s| s.parse().ok())
}

/// Empty, or an existing directory.
pub fn optional_dir(expected: &'static str) -> Parse<Option<PathBuf>> {
    Parse::new(expected, |s| {
        if s.is_empty() {
            Some(None)
        } else {
            let p = PathBuf::from(s);
            p.is_dir().then_some(Some(p))
        }
    })
}

pub fn underscore_policy() -> Parse<UnderscorePolicy> {
    Parse::new("drop, reject or allow", |s| {
        match s.to_ascii_lowercase().as_str() {
            "drop" => Some(UnderscorePolicy::Drop),
            "reject" => Some(UnderscorePolicy::Reject),
            "allow" => Some(UnderscorePolicy::Allow),
            _ => None,
        }
    })
}

pub fn log_format() -> Parse<LogFormat> {
    Parse::new("json or text", |s| match s.to_ascii_lowercase().as_str() {
        "json" => Some(LogFormat::Json),
        "text" => Some(LogFormat::Text),
        _ => None,
    })
}

/// A path prefix without its final slash: `/`, then a path with no query,
/// no `//` and no dot segment, so it means one place.
pub fn valid_prefix(s: &str) -> bool {
    s.starts_with('/')
        && s.len() > 1
        && !s.contains(['?', '#'])
        && !s.contains("//")
        && !s.split('/').any(|seg| seg == "." || seg == "..")
        && http::uri::PathAndQuery::try_from(s).is_ok()
}

/// "250ms", "10s", "2m", "1h 30m"; a bare number is refused because its unit
/// would be a guess.
pub fn parse_duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim()).ok()
}

/// Sizes in bytes: "1048576", "512k", "10m", "1g", also "10MiB"/"10mb"
/// (binary multiples, as nginx reads them).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return None;
    }
    let n: u64 = s[..digits_end].parse().ok()?;
    let unit = s[digits_end..].trim();
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

pub fn parse_compression(s: &str) -> Option<Compression> {
    let mut c = Compression::default();
    if s.eq_ignore_ascii_case("off") || s.is_empty() {
        return Some(c);
    }
    for part in s.split(',').map(|p| p.trim().to_ascii_lowercase()) {
        match part.as_str() {
            "gzip" => c.gzip = true,
            "br" => c.br = true,
            _ => return None,
        }
    }
    Some(c)
}

/// Upgrade protocol names (RFC 9110 §7.8 tokens, compared case-blind), or
/// `none`. h2c is refused: RFC 9113 §3.1 retired that upgrade, and a tunnel
/// of HTTP/2 frames would carry requests past every check podgate makes.
pub fn parse_upgrade_protocols(s: &str) -> Option<Vec<String>> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("none") {
        return Some(Vec::new());
    }
    s.split(',')
        .map(|p| p.trim().to_ascii_lowercase())
        .map(|p| {
            let token = !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b));
            (token && p != "h2c").then_some(p)
        })
        .collect()
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A list of CIDRs or bare addresses, comma separated; "none" or "" is empty.
pub fn parse_cidrs(s: &str) -> Option<Vec<IpNet>> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("none") {
        return Some(Vec::new());
    }
    s.split(',')
        .map(|part| {
            let part = part.trim();
            part.parse::<IpNet>()
                .ok()
                .or_else(|| part.parse::<IpAddr>().ok().map(IpNet::from))
        })
        .collect()
}
