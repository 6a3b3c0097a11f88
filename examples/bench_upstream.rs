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
