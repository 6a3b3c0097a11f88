//! The corpus of malformed and smuggling requests that tests/attacks.rs
//! runs: each case, its raw bytes, and what the client and the app may see.
//! Adding a case is one entry here.

use super::*;

/// The request a smuggler hopes the app will see as a second request.
pub const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: h\r\nX-Smuggled: yes\r\n\r\n";

/// What the client and the app are allowed to see for one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The client gets a 4xx (or 501) and the app sees nothing at all.
    Reject,
    /// The client gets no 2xx (a 4xx, or a closed connection) and the app
    /// sees nothing, or an incomplete request it must discard.
    Fault,
    /// The client gets no 2xx and the app sees nothing (garbage that is not
    /// HTTP/1.x: podgate may answer 400 or just close).
    Drop,
    /// Exactly `n` complete, clean requests reach the app, the first with
    /// `body`; the client gets `n` 200s; with `close`, podgate closes the
    /// connection after answering (RFC 9112 §6.3 for CL+TE).
    Clean {
        n: usize,
        body: &'static [u8],
        close: bool,
    },
    /// Either a refusal as in `Reject` or a clean request as in `Clean`
    /// (where the RFC leaves the choice to the recipient).
    RejectOrClean { body: &'static [u8] },
    /// Either `Fault` or `Clean` with one request carrying `body` (lenient
    /// parsing of something harmless that podgate re-frames anyway).
    FaultOrClean { body: &'static [u8] },
}

pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub expect: Expect,
    /// Extra check of the head the app received (for the first request).
    pub head_check: Option<HeadCheck>,
}

pub type HeadCheck = fn(&str) -> Result<(), String>;

/// Header fields of an HTTP/2 request, as (name, value) bytes.
pub type H2Fields<'a> = Vec<(&'a [u8], &'a [u8])>;

pub fn case(name: &'static str, bytes: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name,
        bytes: bytes.into(),
        expect,
        head_check: None,
    }
}

pub fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

pub const fn clean(body: &'static [u8], close: bool) -> Expect {
    Expect::Clean { n: 1, body, close }
}

/// The corpus. Every smuggling payload names `/smuggled`.
pub fn corpus() -> Vec<Case> {
    use Expect::*;
    let post = "POST /upload HTTP/1.1\r\nHost: h\r\n";
    // A chunked body that ends right away, followed by a whole request: a
    // hop that reads Content-Length takes it all as body, a hop that reads
    // Transfer-Encoding sees a second request.
    let cl_te_body = format!("0\r\n\r\n{SMUGGLED}");
    // A chunk carrying a whole request: a hop that reads Content-Length: 4
    // sees the rest as a second request.
    let te_cl_chunk = chunk(&format!("G{SMUGGLED}"));
    let te_cl_body = format!("{te_cl_chunk}0\r\n\r\n");
    let te_cl_payload: &'static str = Box::leak(format!("G{SMUGGLED}").into_boxed_str());
    let with_cl_te = |te_lines: &str| {
        format!(
            "{post}Content-Length: {}\r\n{te_lines}\r\n{cl_te_body}",
            cl_te_body.len()
        )
    };
    let hello_chunked = "5\r\nhello\r\n0\r\n\r\n";
    let chunked_post = |body: &str| format!("{post}Transfer-Encoding: chunked\r\n\r\n{body}");
    let cl_post = |cl: &str| format!("{post}Content-Length: {cl}\r\n\r\nhello{SMUGGLED}");
    let long_method = "A".repeat(100_000);
    let medium_method = "A".repeat(4000);

    let mut v = vec![
        // Controls: legitimate pipelining is served, in order.
        case(
            "control: two pipelined requests",
            "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            Clean { n: 2, body: b"", close: true },
        ),
        case(
            "control: Connection: close, then more bytes",
            format!("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n{SMUGGLED}"),
            clean(b"", true),
        ),
        case(
            "control: HTTP/1.0 without keep-alive, then more bytes",
            format!("GET / HTTP/1.0\r\nHost: h\r\n\r\n{SMUGGLED}"),
            clean(b"", true),
        ),
        // CL.TE and TE.CL: Transfer-Encoding wins, Content-Length is removed
        // and the connection is closed after the answer (RFC 9112 §6.3).
        case("CL.TE", with_cl_te("Transfer-Encoding: chunked\r\n"), clean(b"", true)),
        case(
            "TE.CL",
            format!("{post}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{te_cl_body}{SMUGGLED}"),
            Clean {
                n: 1,
                body: te_cl_payload.as_bytes(),
                close: true,
            },
        ),
        case(
            "TE.CL, Content-Length first",
            format!("{post}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{te_cl_body}{SMUGGLED}"),
            Clean {
                n: 1,
                body: te_cl_payload.as_bytes(),
                close: true,
            },
        ),
        // TE.TE: obfuscated Transfer-Encoding, each beside a Content-Length.
        case("TE: xchunked", with_cl_te("Transfer-Encoding: xchunked\r\n"), Reject),
        case("TE: space before colon", with_cl_te("Transfer-Encoding : chunked\r\n"), Reject),
        case(
            "TE: chunked + TE: x",
            with_cl_te("Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n"),
            Reject,
        ),
        case(
            "TE: x + TE: chunked",
            with_cl_te("Transfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n"),
            Reject,
        ),
        case("TE: x, chunked", with_cl_te("Transfer-Encoding: x, chunked\r\n"), Reject),
        case("TE: chunked, chunked", with_cl_te("Transfer-Encoding: chunked, chunked\r\n"), Reject),
        case("TE: identity", with_cl_te("Transfer-Encoding: identity\r\n"), Reject),
        case("TE: \"chunked\"", with_cl_te("Transfer-Encoding: \"chunked\"\r\n"), Reject),
        // HTAB is optional whitespace: this is plain chunked.
        case("TE:<HTAB>chunked", with_cl_te("Transfer-Encoding:\tchunked\r\n"), clean(b"", true)),
        case("TE: chunked<HTAB>", with_cl_te("Transfer-Encoding: chunked\t\r\n"), clean(b"", true)),
        // Coding names are case-insensitive (RFC 9112 §7).
        case("TE: CHUNKED", with_cl_te("Transfer-Encoding: CHUNKED\r\n"), clean(b"", true)),
        case("TE: ChUnKeD", with_cl_te("tRANSFER-eNCODING: ChUnKeD\r\n"), clean(b"", true)),
        // obs-fold must be rejected by a server (RFC 9112 §5.2).
        case(
            "TE obs-fold: value on the next line",
            with_cl_te("Transfer-Encoding:\r\n chunked\r\n"),
            Reject,
        ),
        case(
            "TE obs-fold: continuation after chunked",
            with_cl_te("Transfer-Encoding: chunked\r\n x\r\n"),
            Reject,
        ),
        case(
            "TE obs-fold: tab continuation",
            with_cl_te("Transfer-Encoding: chunked\r\n\tidentity\r\n"),
            Reject,
        ),
        case(
            "whitespace-led line before the first header (RFC 9112 §2.2)",
            format!(
                "POST /upload HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: h\r\nContent-Length: {}\r\n\r\n{cl_te_body}",
                cl_te_body.len()
            ),
            Reject,
        ),
        case(
            "TE in an HTTP/1.0 request",
            format!(
                "POST /upload HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n{cl_te_body}",
                cl_te_body.len()
            ),
            Reject,
        ),
        case("TE: chunked with NUL", with_cl_te("Transfer-Encoding: chunked\0\r\n"), Reject),
        case("TE: chunked with VT", with_cl_te("Transfer-Encoding:\x0bchunked\r\n"), Reject),
        case(
            "Transfer_Encoding (underscore) is dropped, CL frames",
            format!("{post}Transfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello"),
            clean(b"hello", false),
        ),
        // Content-Length forms.
        case(
            "CL duplicated, same value",
            format!("{post}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
            RejectOrClean { body: b"hello" },
        ),
        case(
            "CL duplicated, different values",
            format!("{post}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello{SMUGGLED}"),
            Reject,
        ),
        case("CL list 5, 5", cl_post("5, 5"), RejectOrClean { body: b"hello" }),
        case("CL list 5, 6", cl_post("5, 6"), Reject),
        case("CL +5", cl_post("+5"), Reject),
        case("CL -5", cl_post("-5"), Reject),
        case("CL 0x5", cl_post("0x5"), Reject),
        case("CL 5 5", cl_post("5 5"), Reject),
        case("CL 5.0", cl_post("5.0"), Reject),
        case("CL empty", cl_post(""), Reject),
        case("CL 5e0", cl_post("5e0"), Reject),
        case("CL overflow", cl_post("99999999999999999999999"), Reject),
        case("CL u64::MAX", cl_post("18446744073709551615"), Reject),
        case("CL with NUL", cl_post("5\0"), Reject),
        case(
            "Expect: 100-continue with CL above MAX_BODY",
            format!("{post}Expect: 100-continue\r\nContent-Length: 200000000\r\n\r\n{SMUGGLED}"),
            Reject,
        ),
        case(
            "CL above MAX_BODY, body never read",
            format!("{post}Content-Length: 200000000\r\n\r\n{SMUGGLED}"),
            Reject,
        ),
        case(
            "CL space before colon",
            format!("{post}Content-Length : 5\r\n\r\nhello{SMUGGLED}"),
            Reject,
        ),
        case(
            "CL surrounded by OWS",
            format!("{post}Content-Length: \t5\t \r\n\r\nhello"),
            clean(b"hello", false),
        ),
        case("CL leading zeros", format!("{post}Content-Length: 005\r\n\r\nhello"), clean(b"hello", false)),
        // Chunked body faults: head may already be forwarded, the body never
        // completes.
        case(
            "chunk size overflow",
            chunked_post(&format!("ffffffffffffffffff\r\nhello\r\n0\r\n\r\n{SMUGGLED}")),
            Fault,
        ),
        case(
            "chunk size 2^64-1",
            chunked_post(&format!("ffffffffffffffff\r\nhello\r\n0\r\n\r\n{SMUGGLED}")),
            Fault,
        ),
        case("chunk size 5g", chunked_post(&format!("5g\r\nhello\r\n0\r\n\r\n{SMUGGLED}")), Fault),
        case("chunk size 0x5", chunked_post(&format!("0x5\r\nhello\r\n0\r\n\r\n{SMUGGLED}")), Fault),
        case("chunk size -5", chunked_post(&format!("-5\r\nhello\r\n0\r\n\r\n{SMUGGLED}")), Fault),
        case("chunk size +5", chunked_post(&format!("+5\r\nhello\r\n0\r\n\r\n{SMUGGLED}")), Fault),
        case("chunk size 5 5", chunked_post(&format!("5 5\r\nhello\r\n0\r\n\r\n{SMUGGLED}")), Fault),
        case("chunk size empty", chunked_post(&format!("\r\nhello\r\n0\r\n\r\n{SMUGGLED}")), Fault),
        case("chunk size with NUL", chunked_post(&format!("5\0\r\nhello\r\n0\r\n\r\n{SMUGGLED}")), Fault),
        case(
            "chunk size with leading zeros",
            chunked_post("0000000000000000000000005\r\nhello\r\n0\r\n\r\n"),
            FaultOrClean { body: b"hello" },
        ),
        case(
            "chunk data longer than its size",
            chunked_post(&format!("3\r\nhello\r\n0\r\n\r\n{SMUGGLED}")),
            Fault,
        ),
        case(
            "chunk data without CRLF",
            chunked_post(&format!("5\r\nhelloXX0\r\n\r\n{SMUGGLED}")),
            Fault,
        ),
        case("chunked with bare LF lines", chunked_post(&format!("5\nhello\n0\n\n{SMUGGLED}")), Fault),
        case(
            "chunk extension with bare LF",
            chunked_post(&format!("5;a\nb\r\nhello\r\n0\r\n\r\n{SMUGGLED}")),
            Fault,
        ),
        case(
            "chunk extension with bare CR",
            chunked_post(&format!("5;a\rb\r\nhello\r\n0\r\n\r\n{SMUGGLED}")),
            Fault,
        ),
        case(
            "chunk extension, valid",
            chunked_post("5;name=value;q=\"a b\"\r\nhello\r\n0;last\r\n\r\n"),
            clean(b"hello", false),
        ),
        case(
            "chunk extension with NUL and junk",
            chunked_post("5;\0\x01junk\r\nhello\r\n0\r\n\r\n"),
            FaultOrClean { body: b"hello" },
        ),
        case(
            "chunk extension 64 KiB long",
            chunked_post(&format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(65536))),
            FaultOrClean { body: b"hello" },
        ),
        case(
            "missing final CRLF",
            chunked_post("5\r\nhello\r\n0\r\n"),
            Fault,
        ),
        case(
            "trailer without final CRLF",
            chunked_post("5\r\nhello\r\n0\r\nX-T: 1\r\n"),
            Fault,
        ),
        case(
            "control: chunked request, then a pipelined second one",
            format!("{}GET /second HTTP/1.1\r\nHost: h\r\n\r\n", chunked_post(hello_chunked)),
            Clean {
                n: 2,
                body: b"hello",
                close: false,
            },
        ),
        // NUL, bare CR and bare LF.
        case("NUL in method", "GE\0T / HTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        case("NUL in target", "GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        case("NUL in version", "GET / HTTP/1.1\0\r\nHost: h\r\n\r\n", Reject),
        case("NUL in header name", "GET / HTTP/1.1\r\nHost: h\r\nX-A\0: 1\r\n\r\n", Reject),
        case("NUL in header value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\x002\r\n\r\n", Reject),
        case("bare CR in target", "GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        case("bare CR after request line", "GET / HTTP/1.1\rHost: h\r\n\r\n", Reject),
        case(
            "bare CR in header value",
            format!("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rContent-Length: 5\r\n\r\nhello{SMUGGLED}"),
            Reject,
        ),
        case(
            "bare CR as header terminator",
            format!("GET / HTTP/1.1\r\nHost: h\rContent-Length: 5\r\n\r\nhello{SMUGGLED}"),
            Reject,
        ),
        case("bare LF in target", "GET /a\nb HTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        case(
            "bare LF line endings",
            "GET / HTTP/1.1\nHost: h\nConnection: close\n\n",
            RejectOrClean { body: b"" },
        ),
        case(
            "bare LF between headers (CL hidden behind it)",
            "POST /upload HTTP/1.1\r\nHost: h\r\nX-A: a\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            RejectOrClean { body: b"hello" },
        ),
        // Request-target forms.
        Case {
            name: "absolute-form: Host comes from the target, app sees origin-form",
            bytes: b"GET http://other.example/p?q=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".to_vec(),
            expect: clean(b"", true),
            head_check: Some(|head| {
                let line = head.lines().next().unwrap_or("");
                if line != "GET /p?q=1 HTTP/1.1" {
                    return Err(format!("request line {line:?}"));
                }
                let hosts = header_values(head, "host");
                if hosts != ["other.example"] {
                    return Err(format!("Host {hosts:?}"));
                }
                Ok(())
            }),
        },
        Case {
            name: "absolute-form without Host",
            bytes: b"GET http://other.example:8080/ HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            expect: Expect::RejectOrClean { body: b"" },
            head_check: Some(|head| {
                let hosts = header_values(head, "host");
                if hosts != ["other.example:8080"] {
                    return Err(format!("Host {hosts:?}"));
                }
                Ok(())
            }),
        },
        case(
            "absolute-form with userinfo",
            "GET http://user:pw@other.example/ HTTP/1.1\r\nHost: h\r\n\r\n",
            Reject,
        ),
        case(
            "absolute-form with empty authority",
            "GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n",
            Reject,
        ),
        case("authority-form GET", "GET other.example:443 HTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        case(
            "CONNECT authority-form",
            "CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n",
            Reject,
        ),
        case("CONNECT origin-form", "CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        case("asterisk-form OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", RejectOrClean { body: b"" }),
        case("asterisk-form GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        case("target without leading slash", "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        // Versions and non-HTTP/1.x.
        case("HTTP/0.9 request", "GET /\r\n\r\n", Drop),
        case("HTTP/0.9 request, LF", "GET /\n", Drop),
        case("HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", Drop),
        case("HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", Drop),
        case("HTTP/3.0", "GET / HTTP/3.0\r\nHost: h\r\n\r\n", Drop),
        case("lowercase version", "GET / http/1.1\r\nHost: h\r\n\r\n", Drop),
        case(
            "h2 preface then garbage",
            [&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..], b"\x00\x00\x05\xff\x00\x00\x00\x00\x01garbageGET /smuggled HTTP/1.1\r\n\r\n"].concat(),
            Drop,
        ),
        case(
            "h2 preface then an HTTP/1 request",
            format!("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n{SMUGGLED}"),
            Drop,
        ),
        case("broken h2 preface", format!("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n{SMUGGLED}"), Drop),
        case("TLS ClientHello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage".to_vec(), Drop),
        // Methods and request-line shape.
        case(
            "very long method (100 KB)",
            format!("{long_method} / HTTP/1.1\r\nHost: h\r\n\r\n"),
            Drop,
        ),
        case(
            "long method (4000 B) is a token",
            format!("{medium_method} / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
            RejectOrClean { body: b"" },
        ),
        case("method with @", "G@T / HTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        case("method with (", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        case("method with high byte", b"G\xc3\xa9T / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), Reject),
        case("empty method", " / HTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        case("two spaces after method", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        case("two spaces before version", "GET /  HTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        case("trailing space after version", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", Reject),
        case("tab as separator", "GET\t/\tHTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        case("space inside target", "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        case("two versions in the request line", "GET /a HTTP/1.1 HTTP/1.1\r\nHost: h\r\n\r\n", Reject),
        // Header syntax.
        case("header without colon", "GET / HTTP/1.1\r\nHost: h\r\nX-A 1\r\n\r\n", Reject),
        case("header with empty name", "GET / HTTP/1.1\r\nHost: h\r\n: 1\r\n\r\n", Reject),
        case("header name with space", "GET / HTTP/1.1\r\nHost: h\r\nX A: 1\r\n\r\n", Reject),
        case("header name with (", "GET / HTTP/1.1\r\nHost: h\r\nX(A: 1\r\n\r\n", Reject),
        case("two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Reject),
        case("Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", Reject),
        case("missing Host", "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", Reject),
        case("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", Reject),
        case("Host with path", "GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", Reject),
        case("Host with space", "GET / HTTP/1.1\r\nHost: h x\r\n\r\n", Reject),
    ];
    v.sort_by_key(|c| c.name.starts_with("control"));
    v
}
