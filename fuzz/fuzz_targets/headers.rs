//! Arbitrary header sections through every normalisation step: no panic, and
//! no value with CR, LF or NUL can come out.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use podgate::headers::{self, Peer, UnderscorePolicy};

fuzz_target!(|data: &[u8]| {
    let mut map = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        map.append(name, value);
    }
    let trusted = podgate::config::parse_cidrs("10.0.0.0/8,127.0.0.1").unwrap_or_default();
    let flags = data.first().copied().unwrap_or(0);
    let _ = headers::check_framing(&map, flags & 1 == 1);
    let _ = headers::is_upgrade_request(&map);
    let _ = headers::apply_underscore_policy(&mut map, UnderscorePolicy::Drop);
    headers::remove_hop_by_hop(&mut map, flags & 2 == 2);
    let host = map.get(http::header::HOST).cloned();
    let peer = Peer {
        ip: if flags & 4 == 4 { [10, 0, 0, 1].into() } else { [192, 0, 2, 1].into() },
        local_port: 80,
        tls: false,
    };
    headers::apply_forwarded(&mut map, peer, &trusted, host.as_ref());
    for (_, v) in map.iter() {
        assert!(!v.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
    }
});
