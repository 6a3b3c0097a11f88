//! The header functions, unit-tested and property-tested.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use super::forwarded::*;
use super::framing::*;
use super::hop::*;
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
