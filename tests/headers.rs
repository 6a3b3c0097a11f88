//! Header normalisation over real sockets: each rule sends raw bytes and
//! checks both what the client got and what the app received.

mod common;

use common::*;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

async fn exchange(vars: &[(&str, &str)], request: &[u8]) -> (String, Vec<Received>) {
    exchange_with(OK, vars, request).await
}

async fn exchange_with(
    response: &'static [u8],
    vars: &[(&str, &str)],
    request: &[u8],
) -> (String, Vec<Received>) {
    let (app, log) = spawn_raw_app(response, false).await;
    let pg = start_podgate(app, vars).await;
    let resp = raw(pg.addr, request).await.unwrap();
    // Until the app has recorded what (if anything) reached it.
    sync_with_app(pg.addr, &log).await;
    let got = log.lock().unwrap().clone();
    (String::from_utf8_lossy(&resp).into_owned(), got)
}

fn app_header(rec: &Received, name: &str) -> Option<String> {
    header_of(&rec.head, name)
}

#[tokio::test]
async fn hop_by_hop_request_headers_never_reach_the_app() {
    let (resp, got) = exchange(
        &[],
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close, X-Secret, Authorization\r\nX-Secret: s\r\nAuthorization: Bearer t\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nTE: gzip, trailers\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200);
    let rec = &got[0];
    for gone in [
        "x-secret",
        "authorization",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            app_header(rec, gone).is_none(),
            "{gone} reached the app: {}",
            rec.head
        );
    }
    assert_eq!(app_header(rec, "te").as_deref(), Some("trailers"));
    assert_eq!(app_header(rec, "x-kept").as_deref(), Some("yes"));
    assert_eq!(app_header(rec, "host").as_deref(), Some("h"));
}

#[tokio::test]
async fn hop_by_hop_response_headers_never_reach_the_client() {
    let (resp, _) = exchange_with(
        b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 1\r\nKeep-Alive: timeout=2\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nServer: gunicorn\r\nX-Powered-By: PHP\r\nContent-Length: 2\r\n\r\nok",
        &[("HIDE_HEADERS", "server, x-powered-by")],
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200);
    for gone in [
        "x-internal",
        "keep-alive",
        "proxy-authenticate",
        "upgrade",
        "server",
        "x-powered-by",
    ] {
        assert!(
            header_of(&resp, gone).is_none(),
            "{gone} reached the client: {resp}"
        );
    }
    assert!(resp.ends_with("ok"));
}

#[tokio::test]
async fn untrusted_client_cannot_spoof_its_address() {
    let (resp, got) = exchange(
        &[("TRUSTED_PROXIES", "none")],
        b"GET / HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200);
    let rec = &got[0];
    assert_eq!(
        app_header(rec, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        app_header(rec, "x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        app_header(rec, "x-forwarded-host").as_deref(),
        Some("shop.example")
    );
    assert_eq!(app_header(rec, "x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        app_header(rec, "forwarded").as_deref(),
        Some("for=127.0.0.1;proto=http;host=\"shop.example\"")
    );
    assert_eq!(
        rec.head.matches("X-Forwarded-For").count() + rec.head.matches("x-forwarded-for").count(),
        1
    );
}

#[tokio::test]
async fn trusted_proxy_chain_is_kept_and_extended() {
    let (_, got) = exchange(
        &[("TRUSTED_PROXIES", "127.0.0.0/8,10.0.0.0/8")],
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.5, 10.1.1.1\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    )
    .await;
    let rec = &got[0];
    assert_eq!(
        app_header(rec, "x-forwarded-for").as_deref(),
        Some("203.0.113.5, 10.1.1.1, 127.0.0.1")
    );
    assert_eq!(
        app_header(rec, "x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(app_header(rec, "x-real-ip").as_deref(), Some("203.0.113.5"));
}

#[tokio::test]
async fn request_id_is_kept_generated_and_returned() {
    let (resp, got) = exchange(
        &[],
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: abc-123\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(header_of(&resp, "x-request-id").as_deref(), Some("abc-123"));
    assert_eq!(
        app_header(&got[0], "x-request-id").as_deref(),
        Some("abc-123")
    );

    let (resp, got) = exchange(
        &[],
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: has space\r\nConnection: close\r\n\r\n",
    )
    .await;
    let id = header_of(&resp, "x-request-id").unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(app_header(&got[0], "x-request-id"), Some(id));

    let (resp, got) = exchange(
        &[("REQUEST_ID_HEADER", "x-correlation-id")],
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    let id = header_of(&resp, "x-correlation-id").unwrap();
    assert_eq!(app_header(&got[0], "x-correlation-id"), Some(id));
}

#[tokio::test]
async fn underscore_header_policies() {
    let req = b"GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nConnection: close\r\n\r\n";
    let (resp, got) = exchange(&[], req).await;
    assert_eq!(status_of(&resp), 200);
    assert!(
        app_header(&got[0], "x_forwarded_for").is_none(),
        "dropped by default"
    );

    let (resp, got) = exchange(&[("UNDERSCORE_HEADERS", "reject")], req).await;
    assert_eq!(status_of(&resp), 400);
    assert!(got.is_empty());

    let (_, got) = exchange(&[("UNDERSCORE_HEADERS", "allow")], req).await;
    assert_eq!(
        app_header(&got[0], "x_forwarded_for").as_deref(),
        Some("6.6.6.6")
    );
}

#[tokio::test]
async fn limits_answer_with_the_right_status() {
    // URI too long: 414.
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        "a".repeat(400)
    );
    let (resp, got) = exchange(&[("MAX_URI", "256")], long.as_bytes()).await;
    assert_eq!(status_of(&resp), 414, "{resp}");
    assert!(got.is_empty());

    // Header section too large: 431.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(10_000)
    );
    let (resp, got) = exchange(&[("MAX_HEADER_BYTES", "8k")], big.as_bytes()).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    assert!(got.is_empty());

    // Too many header fields: 431.
    let mut many = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
    for i in 0..30 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("Connection: close\r\n\r\n");
    let (resp, got) = exchange(&[("MAX_HEADERS", "20")], many.as_bytes()).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    assert!(got.is_empty());

    // Declared body over the limit: 413 before the app is contacted.
    let (resp, got) = exchange(
        &[("MAX_BODY", "1k")],
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 413, "{resp}");
    assert!(got.is_empty());

    // Chunked body crossing the limit: 413, and the app never gets a
    // complete request.
    let mut chunked =
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'x'; 0x200]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (resp, got) = exchange(&[("MAX_BODY", "1k")], &chunked).await;
    assert_eq!(status_of(&resp), 413, "{resp}");
    assert!(
        got.iter().all(|r| !r.complete),
        "app saw a complete request: {got:?}"
    );
}

#[tokio::test]
async fn ambiguous_requests_are_refused_and_never_forwarded() {
    let cases: &[(&str, &[u8])] = &[
        (
            "two CL",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        ),
        (
            "TE not chunked last",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        ),
        (
            "TE gzip,chunked",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  continued\r\n\r\n",
        ),
        (
            "space before colon",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n",
        ),
        ("bare CR", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r2\r\n\r\n"),
        (
            "NUL in value",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\x002\r\n\r\n",
        ),
        (
            "control in name",
            b"GET / HTTP/1.1\r\nHost: h\r\nX\x01A: 1\r\n\r\n",
        ),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("invalid Host", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
        ("userinfo Host", b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n"),
        ("missing Host", b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n"),
        (
            "CONNECT",
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        ),
        ("asterisk", b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"),
    ];
    for (name, req) in cases {
        let (resp, got) = exchange(&[], req).await;
        let status = status_of(&resp);
        assert!((400..500).contains(&status), "{name}: got {status}: {resp}");
        assert!(got.is_empty(), "{name} reached the app: {got:?}");
    }
}

#[tokio::test]
async fn absolute_form_target_sets_host() {
    let (resp, got) = exchange(
        &[],
        b"GET http://real.example/p?q=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200);
    let rec = &got[0];
    assert!(
        rec.head.starts_with("GET /p?q=1 HTTP/1.1\r\n"),
        "{}",
        rec.head
    );
    assert_eq!(app_header(rec, "host").as_deref(), Some("real.example"));
}

#[tokio::test]
async fn header_name_case_is_preserved_both_ways() {
    let (resp, got) = exchange_with(
        b"HTTP/1.1 200 OK\r\nX-Resp-CamelCase: 1\r\nContent-Length: 2\r\n\r\nok",
        &[],
        b"GET / HTTP/1.1\r\nHost: h\r\nX-CamelCase-Header: v\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.contains("X-Resp-CamelCase: 1"), "{resp}");
    assert!(
        got[0].head.contains("X-CamelCase-Header: v"),
        "{}",
        got[0].head
    );
}

/// Content-Length with Transfer-Encoding: RFC 9112 §6.1 lets a server
/// process the message by Transfer-Encoding alone if it closes the
/// connection afterwards. hyper does exactly that; podgate forwards a clean
/// chunked request without Content-Length, and whatever the client smuggled
/// after the chunked body never reaches the app.
#[tokio::test]
async fn content_length_with_transfer_encoding_is_normalised_and_closed() {
    let (resp, got) = exchange(
        &[],
        b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200);
    assert_eq!(
        resp.matches("HTTP/1.1 ").count(),
        1,
        "one response, then close: {resp}"
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body, b"abc");
    assert!(
        app_header(&got[0], "content-length").is_none(),
        "{}",
        got[0].head
    );
    assert!(!got.iter().any(|r| r.head.contains("/smuggled")));
}
