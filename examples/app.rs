//! `cargo run --example app -- [PORT]`: only the demo app, on 127.0.0.1:PORT
//! (default 8000), to put the real podgate binary in front of it:
//!
//! ```sh
//! cargo run --example app &
//! PODGATE_LISTEN=127.0.0.1:8080 PODGATE_ADMIN_LISTEN=127.0.0.1:9901 cargo run --release
//! curl -i localhost:8080/
//! ```

mod demo_app;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use tokio::net::TcpListener;

const USAGE: &str =
    "usage: cargo run --example app -- [PORT]   (default 8000; listens on 127.0.0.1)";

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let port = match (args.next(), args.next()) {
        (None, _) => 8000,
        (Some(a), None) => match a.to_str() {
            Some("-h" | "--help") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Some(s) => match s.trim().parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => {
                    eprintln!("app: {s:?} is not a port number from 1 to 65535\n{USAGE}");
                    return ExitCode::from(64);
                }
            },
            None => {
                eprintln!("app: the port is not valid text\n{USAGE}");
                return ExitCode::from(64);
            }
        },
        (Some(_), Some(_)) => {
            eprintln!("app: too many arguments\n{USAGE}");
            return ExitCode::from(64);
        }
    };

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("app: cannot listen on {addr}: {e}");
            if e.kind() == io::ErrorKind::AddrInUse {
                eprintln!(
                    "app: port {port} is taken by another process; pass another one, \
                     e.g. `cargo run --example app -- 8001` (and PODGATE_APP_PORT=8001 for podgate)"
                );
            }
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "demo app listening on http://{addr} (Ctrl-C to stop)\n\
         put podgate in front of it:\n  \
         PODGATE_LISTEN=127.0.0.1:8080 PODGATE_ADMIN_LISTEN=127.0.0.1:9901 PODGATE_APP_PORT={port} cargo run --release"
    );
    tokio::select! {
        _ = demo_app::serve(listener) => {}
        _ = tokio::signal::ctrl_c() => eprintln!("app: stopped"),
    }
    ExitCode::SUCCESS
}
