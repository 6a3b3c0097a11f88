//! Telling HTTP/1.x from h2c with prior knowledge by the first bytes.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::conn::SHUTDOWN_GRACE;

pub(super) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the bytes tell HTTP/1 from h2c, and returns what it read:
/// it is replayed to the connection before the socket. Reading (rather than
/// peeking in a loop) waits on the socket alone, however slowly the
/// preface trickles in.
async fn sniff_h2(stream: &mut TcpStream) -> io::Result<(bool, Bytes)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(H2_PREFACE.len());
    loop {
        let n = stream.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let seen = buf.len().min(H2_PREFACE.len());
        if buf[..seen] != H2_PREFACE[..seen] {
            return Ok((false, buf.into()));
        }
        if seen == H2_PREFACE.len() {
            return Ok((true, buf.into()));
        }
    }
}

/// Waits (at most `header_timeout`) for the first bytes and tells whether
/// they are the h2c preface; `None` if nothing usable came. A connection
/// accepted just before shutdown still gets its first request read (within
/// a short grace), not a reset.
pub(super) async fn sniff(
    stream: &mut TcpStream,
    header_timeout: Duration,
    close: &CancellationToken,
) -> Option<(bool, Bytes)> {
    let sniff = tokio::time::timeout(header_timeout, sniff_h2(stream));
    tokio::pin!(sniff);
    let r = tokio::select! {
        r = &mut sniff => r,
        _ = close.cancelled() => tokio::time::timeout(SHUTDOWN_GRACE, &mut sniff).await.ok()?,
    };
    r.ok()?.ok()
}
