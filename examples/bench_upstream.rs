//! A minimal, fast HTTP/1.1 upstream for `bench/run.sh`: the "app" that the
//! benchmark reaches directly, through podgate, and through nginx/HAProxy.
//!
//! ```text
//! cargo build --release --example bench_upstream
//! target/release/examples/bench_upstream PORT [THREADS]
//! ```
//!
//! * `GET /1k`    -> 200, 1024 bytes
//! * `GET /64k`   -> 200, 65536 bytes
//! * `GET /json64k` -> 200, 65536 bytes of JSON (realistic text for the
//!   compression scenario: records with repeated keys and varying values)
//! * `POST /echo` -> 200, the request body echoed back
//! * anything else -> 404
//!
//! Listens on 127.0.0.1:PORT only, HTTP/1.1 with keep-alive, no logging.
//! THREADS = 1 (default) runs a current-thread tokio runtime (the harness
//! pins the upstream to one CPU, shared with the load generator); more runs
//! a multi-thread runtime with that many workers.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

static BODY_1K: [u8; 1024] = [b'a'; 1024];
static BODY_64K: [u8; 65536] = [b'b'; 65536];

/// 64 KiB of JSON records, the same on every run: keys repeat like an API
/// response's, values vary (a fixed linear congruential sequence).
fn json_64k() -> Bytes {
    const WORDS: [&str; 16] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliett", "kilo", "lima", "mike", "november", "oscar", "papa",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let mut out = String::from("[");
    for id in 1.. {
        let rec = format!(
            r#"{{"id":{id},"name":"{} {}","email":"user{}@example.com","score":{}.{:02},"active":{},"tags":["{}","{}"]}},"#,
            WORDS[next() % 16],
            WORDS[next() % 16],
            next() % 100_000,
            next() % 1000,
            next() % 100,
            next() % 2 == 0,
            WORDS[next() % 16],
            WORDS[next() % 16],
        );
        if out.len() + rec.len() + 1 > 65536 {
            break;
        }
        out.push_str(&rec);
    }
    out.pop(); // the last comma
    out.push(']');
    // Padded to exactly 64 KiB with whitespace, still valid JSON.
    out.extend(std::iter::repeat_n(' ', 65536 - out.len()));
    Bytes::from(out)
}

static JSON_64K: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/1k") => {
            reply(StatusCode::OK, Bytes::from_static(&BODY_1K))
        }
        (&Method::GET | &Method::HEAD, "/64k") => {
            reply(StatusCode::OK, Bytes::from_static(&BODY_64K))
        }
        (&Method::GET | &Method::HEAD, "/json64k") => {
            let mut r = reply(StatusCode::OK, JSON_64K.get_or_init(json_64k).clone());
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        (&Method::POST | &Method::PUT, "/echo") => match req.into_body().collect().await {
            Ok(body) => reply(StatusCode::OK, body.to_bytes()),
            Err(_) => reply(StatusCode::BAD_REQUEST, Bytes::new()),
        },
        _ => reply(StatusCode::NOT_FOUND, Bytes::new()),
    };
    Ok(resp)
}

async fn serve(listener: TcpListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("bench_upstream: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}

fn usage() -> ! {
    eprintln!("usage: bench_upstream PORT [THREADS]");
    std::process::exit(64);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| usage());
    let threads: usize = match args.next() {
        None => 1,
        Some(t) => t
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .unwrap_or_else(|| usage()),
    };
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    rt.block_on(async move {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("bench_upstream: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        };
        eprintln!("bench_upstream: listening on http://{addr} ({threads} thread(s))");
        serve(listener).await;
    });
}
