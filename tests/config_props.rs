//! Properties of configuration parsing and header normalisation: whatever an
//! operator types into an environment variable, and whatever header map a
//! client manages to send, podgate neither panics nor produces something
//! unsafe, and its error reports name exactly the variables at fault.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use podgate::config::{parse_cidrs, parse_duration, parse_size, Config, PREFIX, VARS};
use podgate::headers::{
    apply_forwarded, apply_underscore_policy, check_framing, remove_hop_by_hop, valid_host, Peer,
    UnderscorePolicy,
};
use proptest::prelude::*;
use proptest::test_runner::Config as PropConfig;

/// Values worth trying for any variable: valid examples of every kind, edge
/// cases, and near misses.
const SAMPLES: &[&str] = &[
    "",
    " ",
    "0",
    "1",
    "-1",
    "+1",
    "65535",
    "65536",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999g",
    "1e9",
    "1.5",
    "0x10",
    "10",
    "10s",
    "250ms",
    "0s",
    "0ms",
    "1ns",
    "24h",
    "25h",
    "86400s",
    "86401s",
    "1h 30m",
    "10m",
    "11m",
    "600s",
    "601s",
    "9999999999999999999999h",
    "18446744073709551615s",
    "584942417356y",
    "1k",
    "8k",
    "32k",
    "64k",
    "65534",
    "1m",
    "1mb",
    "1MiB",
    "1g",
    "1G",
    "2g",
    "1t",
    "k",
    "none",
    "NONE",
    "off",
    "true",
    "false",
    "TRUE",
    "yes",
    "2",
    "json",
    "text",
    "xml",
    "drop",
    "reject",
    "allow",
    "gzip",
    "br",
    "gzip,br",
    "gzip, br, gzip",
    "zstd",
    "debug",
    "podgate=debug,hyper=info",
    "[[[",
    "x-request-id",
    "bad header",
    "server,x-powered-by",
    "a,,b",
    "/healthz",
    "/static/",
    "/static",
    "static/",
    "/",
    "/a b",
    "/test01",
    "/tmp",
    "/nonexistent/dir",
    "127.0.0.1",
    "::1",
    "0.0.0.0:80",
    "[::]:80",
    "127.0.0.1:0",
    "localhost:80",
    "256.0.0.1",
    "10.0.0.0/8",
    "10.0.0.0/33",
    "10.0.0.0/8, 127.0.0.1,::1",
    "fc00::/7,::1/128",
    "public, max-age=3600",
    "a\u{0}b",
    "\u{7f}",
    "\t10s\n",
    "１０s",
    "10\u{a0}s",
    "ß",
];

fn unit() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "", "b", "k", "K", "kb", "KiB", "m", "M", "mb", "MiB", "g", "G", "gb", "GiB", "t", "ms",
        "s", "m", "h", "d", "w", "us", "ns", "y", "sec", "min", " s", "s s",
    ])
}

fn ws() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "", "", "", " ", "\t", "\n", " \t", "\u{a0}", "\u{3000}",
    ])
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[ -~]{0,24}",
        2 => (any::<u64>(), unit(), ws(), ws()).prop_map(|(n, u, a, b)| format!("{a}{n}{u}{b}")),
        2 => (0u64..100_000, unit()).prop_map(|(n, u)| format!("{n}{u}")),
        3 => prop::sample::select(SAMPLES).prop_map(String::from),
        1 => prop::sample::select(VARS.iter().map(|v| v.default).collect::<Vec<_>>()).prop_map(String::from),
        1 => (any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| format!("{}:{p}", Ipv4Addr::from(a))),
        1 => (any::<[u16; 8]>(), 0u8..=130).prop_map(|(a, l)| format!("{}/{l}", Ipv6Addr::from(a))),
    ]
}

/// Names with the prefix, by index into VARS, with a value each.
fn assignment() -> impl Strategy<Value = BTreeMap<usize, String>> {
    prop::collection::btree_map(0..VARS.len(), value(), 0..10)
}

fn full_name(i: usize) -> String {
    format!("{PREFIX}{}", VARS[i].name)
}

/// The variables `from_vars` reports as invalid (`Ok` = none).
fn invalid_vars(vars: &[(String, String)]) -> Result<BTreeSet<String>, String> {
    match Config::from_vars(vars.iter().cloned()) {
        Ok(_) => Ok(BTreeSet::new()),
        Err(e) => {
            let names: Vec<String> = e.errors.iter().map(|v| v.var.clone()).collect();
            let set: BTreeSet<String> = names.iter().cloned().collect();
            if set.len() != names.len() {
                return Err(format!("a variable is reported twice: {names:?}"));
            }
            if e.errors.is_empty() {
                return Err("an error without any variable".into());
            }
            let text = e.to_string();
            for n in &names {
                if !text.contains(n.as_str()) {
                    return Err(format!("{n} missing from the message {text:?}"));
                }
            }
            Ok(set)
        }
    }
}

/// Whether one variable, set alone, is accepted.
fn alone_is_valid(i: usize, value: &str) -> Result<bool, String> {
    let set = invalid_vars(&[(full_name(i), value.to_string())])?;
    if set.is_empty() {
        return Ok(true);
    }
    if set.len() == 1 && set.contains(&full_name(i)) {
        return Ok(false);
    }
    Err(format!(
        "{}={value:?} alone reported as {set:?}",
        full_name(i)
    ))
}

fn prop_config() -> PropConfig {
    PropConfig {
        cases: 96,
        failure_persistence: None,
        ..PropConfig::default()
    }
}

#[test]
fn every_default_is_valid_and_every_name_is_documented_once() {
    assert!(Config::from_vars(Vec::<(String, String)>::new()).is_ok());
    let names: BTreeSet<&str> = VARS.iter().map(|v| v.name).collect();
    assert_eq!(names.len(), VARS.len(), "a variable is listed twice");
    for (i, v) in VARS.iter().enumerate() {
        assert!(!v.name.starts_with(PREFIX), "{} carries the prefix", v.name);
        assert_eq!(
            alone_is_valid(i, v.default),
            Ok(true),
            "{}={:?}",
            v.name,
            v.default
        );
    }
}

proptest! {
    #![proptest_config(prop_config())]

    /// Any values for any documented variables: no panic, and the error
    /// names exactly the variables that are invalid on their own (validity
    /// of one variable does not depend on the others).
    #[test]
    fn errors_name_exactly_the_invalid_variables(vars in assignment()) {
        let list: Vec<(String, String)> = vars.iter().map(|(i, v)| (full_name(*i), v.clone())).collect();
        let mut expected = BTreeSet::new();
        for (i, v) in &vars {
            match alone_is_valid(*i, v) {
                Ok(true) => {}
                Ok(false) => {
                    expected.insert(full_name(*i));
                }
                Err(e) => return Err(TestCaseError::fail(e)),
            }
        }
        let got = invalid_vars(&list).map_err(TestCaseError::fail)?;
        prop_assert_eq!(got, expected, "for {:?}", list);
    }

    /// Surrounding whitespace never changes whether a value is accepted,
    /// and the error quotes the value as given, trimmed.
    #[test]
    fn values_are_trimmed(i in 0..VARS.len(), v in value(), a in ws(), b in ws()) {
        let plain = alone_is_valid(i, v.trim()).map_err(TestCaseError::fail)?;
        let padded = alone_is_valid(i, &format!("{a}{v}{b}")).map_err(TestCaseError::fail)?;
        prop_assert_eq!(plain, padded, "{}={:?}", VARS[i].name, v);
        if !plain {
            let e = Config::from_vars([(full_name(i), format!("{a}{v}{b}"))]).unwrap_err();
            let given = format!("{a}{v}{b}");
            prop_assert_eq!(e.errors[0].value.as_str(), given.trim());
        }
    }

    /// Unknown `PODGATE_*` names and foreign variables are warnings at most.
    #[test]
    fn unknown_names_never_make_an_error(
        vars in assignment(),
        unknown in prop::collection::btree_map("[A-Z][A-Z0-9_]{0,15}", value(), 0..5),
        foreign in prop::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,15}", value(), 0..5),
    ) {
        let known: Vec<(String, String)> = vars.iter().map(|(i, v)| (full_name(*i), v.clone())).collect();
        let mut all = known.clone();
        for (k, v) in &unknown {
            if !VARS.iter().any(|d| d.name == k) {
                all.push((format!("{PREFIX}{k}"), v.clone()));
            }
        }
        for (k, v) in &foreign {
            if !k.starts_with(PREFIX) {
                all.push((k.clone(), v.clone()));
            }
        }
        let a = invalid_vars(&known).map_err(TestCaseError::fail)?;
        let b = invalid_vars(&all).map_err(TestCaseError::fail)?;
        prop_assert_eq!(a, b);
    }

    #[test]
    fn parse_size_and_duration_never_panic(s in prop_oneof![
        any::<String>(),
        (any::<u64>(), unit(), ws()).prop_map(|(n, u, w)| format!("{w}{n}{u}{w}")),
        "[0-9]{15,30}[a-zA-Z ]{0,4}",
        prop::sample::select(SAMPLES).prop_map(String::from),
    ]) {
        let _ = parse_size(&s);
        let _ = parse_duration(&s);
        let _ = parse_cidrs(&s);
    }

    /// Sizes: n with a binary unit means n × 2^10k, exactly, or None when
    /// that overflows; case and the `b`/`ib` spellings do not matter.
    #[test]
    fn parse_size_round_trips(n in prop_oneof![0u64..1 << 20, any::<u64>()], unit in 0usize..4, spelling in 0usize..5, pad in ws()) {
        let (short, shift) = [("", 0u32), ("k", 10), ("m", 20), ("g", 30)][unit];
        let written = match (shift, spelling) {
            (0, 0..=2) => String::new(),
            (0, _) => "b".to_string(),
            (_, 0) => short.to_string(),
            (_, 1) => short.to_ascii_uppercase(),
            (_, 2) => format!("{short}b"),
            (_, 3) => format!("{}iB", short.to_ascii_uppercase()),
            (_, _) => format!("{short}ib"),
        };
        let s = format!("{pad}{n}{written}{pad}");
        let want = n.checked_mul(1u64 << shift);
        prop_assert_eq!(parse_size(&s), want, "{:?}", s);
    }

    /// Durations written with a unit parse to exactly that duration.
    #[test]
    fn parse_duration_round_trips(n in 0u64..1_000_000, unit in 0usize..4) {
        let (suffix, d) = [
            ("ms", Duration::from_millis(n)),
            ("s", Duration::from_secs(n)),
            ("m", Duration::from_secs(n * 60)),
            ("h", Duration::from_secs(n * 3600)),
        ][unit];
        prop_assert_eq!(parse_duration(&format!("{n}{suffix}")), Some(d));
        // A bare number has no unit and is refused.
        prop_assert_eq!(parse_duration(&n.to_string()), None);
    }
}

// ---------------------------------------------------------------------------
// Header normalisation.

/// Names that mean something to podgate, the app or a proxy, plus noise.
const NAMES: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
    "x-real-ip",
    "x-request-id",
    "x_forwarded_for",
    "x-custom",
    "authorization",
    "cookie",
    "trailer",
];

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(NAMES).prop_map(String::from),
        1 => "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,16}",
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => any::<Vec<u8>>(),
        2 => "[ -~\t]{0,40}".prop_map(String::into_bytes),
        2 => prop::sample::select(vec![
            "close", "keep-alive", "Upgrade", "upgrade, x-custom, host", "x-custom, authorization, te",
            "trailers", "trailers, deflate;q=0.5", "chunked", "gzip, chunked", "websocket", "5", "5, 5", "5, 6",
            "+5", "1.2.3.4", "1.2.3.4, 10.0.0.1", "unknown, 10.0.0.2", "[2001:db8::1]:443", "for=1.2.3.4",
            "for=\"[::1]\";proto=https", "example.com", "example.com:8080", "[::1]:80", "user@host", "a\"b",
            "h\";for=6.6.6.6;by=\"x", "", " ", "\u{e9}", "a,b",
        ]).prop_map(|s| s.as_bytes().to_vec()),
        1 => (any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| format!("{}:{p}", Ipv4Addr::from(a)).into_bytes()),
    ]
}

fn header_map() -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec((header_name(), header_value()), 0..16).prop_map(|pairs| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_bytes(&v),
            ) {
                h.append(n, v);
            }
        }
        h
    })
}

/// Host values: anything, or something made of the characters that matter
/// inside a Forwarded header.
fn host_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => header_value(),
        1 => "[a-z0-9.:\\[\\]\";=, \\\\-]{0,24}".prop_map(String::into_bytes),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(|a| IpAddr::from(Ipv6Addr::from(a))),
        any::<[u8; 4]>().prop_map(|a| IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped())),
        prop::sample::select(vec![
            "10.0.0.5",
            "127.0.0.1",
            "::1",
            "192.0.2.1",
            "::ffff:10.1.2.3"
        ])
        .prop_map(|s| s.parse::<IpAddr>().unwrap()),
    ]
}

fn cidrs() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "none",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "::/0",
            "10.0.0.0/8,127.0.0.0/8,fc00::/7,::1/128"
        ])
        .prop_map(String::from),
        prop::collection::vec(
            prop_oneof![
                (any::<[u8; 4]>(), 0u8..=32)
                    .prop_map(|(a, l)| format!("{}/{l}", Ipv4Addr::from(a))),
                (any::<[u16; 8]>(), 0u8..=128)
                    .prop_map(|(a, l)| format!("{}/{l}", Ipv6Addr::from(a))),
                any::<[u8; 4]>().prop_map(|a| Ipv4Addr::from(a).to_string()),
            ],
            0..4
        )
        .prop_map(|v| v.join(",")),
    ]
}

fn is_hop_by_hop(n: &str) -> bool {
    matches!(
        n,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

fn no_forbidden_bytes(h: &HeaderMap) -> Result<(), TestCaseError> {
    for (k, v) in h {
        prop_assert!(
            !v.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)),
            "{k}: {v:?}"
        );
    }
    Ok(())
}

/// `for=` parameters of a Forwarded value, honouring quoted strings.
fn forwarded_fors(v: &str) -> Vec<String> {
    let mut params = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in v.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                cur.push(c)
            }
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' | ',' if !quoted => params.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    params.push(cur);
    params
        .into_iter()
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("for")
                .then(|| v.trim().to_string())
        })
        .collect()
}

proptest! {
    #![proptest_config(PropConfig { cases: 256, failure_persistence: None, ..PropConfig::default() })]

    /// Arbitrary maps through every normalisation step: no panic, and no
    /// value with CR, LF or NUL comes out.
    #[test]
    fn normalisation_never_panics_or_emits_line_breaks(
        h in header_map(),
        keep_upgrade in any::<bool>(),
        peer_ip in ip(),
        local_port in any::<u16>(),
        tls in any::<bool>(),
        trusted in cidrs(),
        host in prop::option::of(host_value()),
        policy in prop::sample::select(vec![UnderscorePolicy::Drop, UnderscorePolicy::Reject, UnderscorePolicy::Allow]),
    ) {
        let trusted = parse_cidrs(&trusted).unwrap_or_default();
        let host = host.and_then(|v| HeaderValue::from_bytes(&v).ok());
        let mut h = h;
        let _ = check_framing(&h, true);
        let _ = check_framing(&h, false);
        let _ = apply_underscore_policy(&mut h, policy);
        remove_hop_by_hop(&mut h, keep_upgrade);
        let client = apply_forwarded(&mut h, Peer { ip: peer_ip, local_port, tls }, &trusted, host.as_ref());
        no_forbidden_bytes(&h)?;
        let real: Vec<_> = h.get_all("x-real-ip").iter().collect();
        prop_assert_eq!(real.len(), 1);
        let client_s = client.to_string();
        prop_assert_eq!(real[0].to_str().ok(), Some(client_s.as_str()));
    }

    /// After removal no hop-by-hop header survives, nor any header the
    /// Connection header named (Host excepted); TE survives only as
    /// `trailers`, and an upgrade keeps Upgrade with `Connection: upgrade`.
    #[test]
    fn hop_by_hop_headers_are_gone(h in header_map(), keep_upgrade in any::<bool>()) {
        let named: Vec<String> = h
            .get_all("connection")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty() && t != "host")
            .collect();
        let had_upgrade = h.get_all("upgrade").iter().cloned().collect::<Vec<_>>();
        let had_host = h.get_all("host").iter().cloned().collect::<Vec<_>>();
        let mut out = h.clone();
        remove_hop_by_hop(&mut out, keep_upgrade);
        no_forbidden_bytes(&out)?;
        for (k, v) in &out {
            let k = k.as_str();
            match k {
                "te" => prop_assert_eq!(v, "trailers"),
                "connection" if keep_upgrade => prop_assert_eq!(v, "upgrade"),
                "upgrade" if keep_upgrade => {}
                _ => prop_assert!(!is_hop_by_hop(k), "{} survived", k),
            }
            if !(keep_upgrade && (k == "upgrade" || k == "connection")) && k != "te" {
                prop_assert!(!named.iter().any(|n| n == k), "{} was named by Connection {:?}", k, named);
            }
        }
        if keep_upgrade {
            let kept = out.get_all("upgrade").iter().cloned().collect::<Vec<_>>();
            prop_assert_eq!(kept, had_upgrade);
        }
        prop_assert_eq!(out.get_all("host").iter().cloned().collect::<Vec<_>>(), had_host);
    }

    /// From an untrusted peer, what the app is told about the client is what
    /// the connection says — whatever the client sent. With a Host that
    /// passed validation, the Forwarded header holds exactly one `for=`.
    #[test]
    fn untrusted_peers_cannot_spoof_the_client(
        h in header_map(),
        peer_ip in ip(),
        host in prop::option::of(host_value()),
    ) {
        let host = host.and_then(|v| HeaderValue::from_bytes(&v).ok()).filter(valid_host);
        let mut h = h;
        let client = apply_forwarded(&mut h, Peer { ip: peer_ip, local_port: 80, tls: false }, &[], host.as_ref());
        prop_assert_eq!(client, peer_ip);
        let xff: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
        prop_assert_eq!(xff.len(), 1);
        let peer_s = peer_ip.to_string();
        prop_assert_eq!(xff[0].to_str().ok(), Some(peer_s.as_str()));
        let fwd: Vec<_> = h.get_all("forwarded").iter().filter_map(|v| v.to_str().ok()).collect();
        prop_assert_eq!(fwd.len(), 1);
        let fors = forwarded_fors(fwd[0]);
        prop_assert_eq!(fors.len(), 1, "{:?}", fwd[0]);
        prop_assert_eq!(h.get_all("x-forwarded-proto").iter().count(), 1);
        no_forbidden_bytes(&h)?;
    }

    /// The same, for any Host value at all: a quote or backslash in it must
    /// be escaped (or the host left out), never add parameters of its own.
    #[test]
    fn forwarded_is_well_formed_for_any_host(peer_ip in ip(), host in host_value()) {
        let Ok(host) = HeaderValue::from_bytes(&host) else { return Ok(()) };
        let mut h = HeaderMap::new();
        apply_forwarded(&mut h, Peer { ip: peer_ip, local_port: 80, tls: false }, &[], Some(&host));
        let fwd: Vec<_> = h.get_all("forwarded").iter().filter_map(|v| v.to_str().ok()).collect();
        prop_assert!(fwd.len() <= 1);
        if let Some(f) = fwd.first() {
            prop_assert_eq!(forwarded_fors(f).len(), 1, "{:?} from Host {:?}", f, host);
            prop_assert_eq!(f.matches("proto=").count(), 1, "{:?} from Host {:?}", f, host);
        }
    }

    /// From a trusted peer the chain is extended with the peer, and the
    /// client is the peer or an address from the chain.
    #[test]
    fn trusted_peers_extend_the_chain(h in header_map(), peer_ip in ip(), extra in cidrs()) {
        let mut trusted = parse_cidrs(&extra).unwrap_or_default();
        trusted.extend(parse_cidrs(&peer_ip.to_string()).unwrap_or_default());
        let before: Vec<String> = h
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok().map(String::from))
            .collect();
        let mut h = h;
        let client = apply_forwarded(&mut h, Peer { ip: peer_ip, local_port: 443, tls: true }, &trusted, None);
        no_forbidden_bytes(&h)?;
        let xff: Vec<_> = h.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
        prop_assert_eq!(xff.len(), 1);
        prop_assert!(xff[0].ends_with(&peer_ip.to_string()), "{:?}", xff);
        let chain = before.join(",");
        let ip_in_chain = chain.split(',').any(|e| {
            let e = e.trim();
            e.parse::<IpAddr>().ok() == Some(client)
                || e.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()) == Some(client)
        });
        prop_assert!(client == peer_ip || ip_in_chain, "client {} not from {:?}", client, chain);
    }

    /// What check_framing accepts has one reading: one valid Host, at most
    /// one Content-Length value, never with Transfer-Encoding, and
    /// Transfer-Encoding only as `chunked`.
    #[test]
    fn accepted_framing_is_unambiguous(h in header_map()) {
        if check_framing(&h, true).is_ok() {
            let hosts: Vec<_> = h.get_all("host").iter().collect();
            prop_assert_eq!(hosts.len(), 1);
            prop_assert!(valid_host(hosts[0]));
            let cls: BTreeSet<u64> = h
                .get_all("content-length")
                .iter()
                .flat_map(|v| v.to_str().unwrap_or("x").split(',').map(|p| p.trim().parse::<u64>()).collect::<Vec<_>>())
                .collect::<Result<_, _>>()
                .map_err(|e| TestCaseError::fail(format!("accepted a bad Content-Length: {e}")))?;
            prop_assert!(cls.len() <= 1, "{:?}", cls);
            let tes: Vec<_> = h.get_all("transfer-encoding").iter().collect();
            prop_assert!(tes.is_empty() || cls.is_empty());
            prop_assert!(tes.len() <= 1);
            if let Some(te) = tes.first() {
                prop_assert!(te.as_bytes().eq_ignore_ascii_case(b"chunked"), "{:?}", te);
            }
        }
    }

    #[test]
    fn underscore_policies_do_what_they_say(h in header_map()) {
        let has_underscore = h.keys().any(|k| k.as_str().contains('_'));
        let mut d = h.clone();
        prop_assert!(apply_underscore_policy(&mut d, UnderscorePolicy::Drop).is_ok());
        prop_assert!(!d.keys().any(|k| k.as_str().contains('_')));
        prop_assert_eq!(d.len(), h.iter().filter(|(k, _)| !k.as_str().contains('_')).count());
        let mut r = h.clone();
        prop_assert_eq!(apply_underscore_policy(&mut r, UnderscorePolicy::Reject).is_err(), has_underscore);
        let mut a = h.clone();
        prop_assert!(apply_underscore_policy(&mut a, UnderscorePolicy::Allow).is_ok());
        prop_assert_eq!(a, h);
    }
}
