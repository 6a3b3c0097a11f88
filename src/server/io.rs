//! The client socket as hyper sees it: reads and blocked writes reported to
//! the watchdog, HTTP/2 header blocks followed frame by frame.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::sniff::H2_PREFACE;
use super::watchdog::Activity;

/// Follows HTTP/2 frame boundaries in the bytes read, to tell when a header
/// block (HEADERS, then CONTINUATION up to END_HEADERS) is unfinished.
/// hyper's HTTP/2 server has no head timeout of its own.
#[derive(Debug)]
pub(super) struct FrameScan {
    /// Payload bytes of the current frame still to come (the preface first).
    skip: usize,
    head: [u8; 9],
    head_len: usize,
    /// The current frame ends a header block when its payload is complete.
    ends_block: bool,
    block_open: bool,
}

impl Default for FrameScan {
    fn default() -> Self {
        Self {
            skip: H2_PREFACE.len(),
            head: [0; 9],
            head_len: 0,
            ends_block: false,
            block_open: false,
        }
    }
}

impl FrameScan {
    /// Feeds bytes; returns the new block state when it changed.
    pub(super) fn feed(&mut self, mut data: &[u8]) -> Option<bool> {
        let was = self.block_open;
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                if self.skip == 0 && self.ends_block {
                    self.block_open = false;
                    self.ends_block = false;
                }
                continue;
            }
            let n = (9 - self.head_len).min(data.len());
            self.head[self.head_len..self.head_len + n].copy_from_slice(&data[..n]);
            self.head_len += n;
            data = &data[n..];
            if self.head_len < 9 {
                break;
            }
            self.head_len = 0;
            let h = self.head;
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            const HEADERS: u8 = 0x1;
            const CONTINUATION: u8 = 0x9;
            const END_HEADERS: u8 = 0x4;
            let block = matches!(h[3], HEADERS | CONTINUATION);
            if block {
                self.block_open = true;
            }
            self.skip = len;
            self.ends_block = block && h[4] & END_HEADERS != 0;
            if len == 0 && self.ends_block {
                self.block_open = false;
                self.ends_block = false;
            }
        }
        (self.block_open != was).then_some(self.block_open)
    }
}

/// The client socket, reporting reads and blocked writes to the watchdog.
/// `prefix` holds bytes read before hyper took over (the sniff, or a parked
/// connection's unparsed input); they are read first.
pub(super) struct ActivityIo<T = TcpStream> {
    pub(super) inner: T,
    pub(super) activity: Arc<Activity>,
    pub(super) prefix: Bytes,
    /// HTTP/2 only.
    pub(super) frames: Option<FrameScan>,
}

fn scan(frames: &mut Option<FrameScan>, activity: &Activity, data: &[u8]) {
    if let Some(f) = frames {
        if let Some(open) = f.feed(data) {
            activity.on_header_block(open);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            let chunk = this.prefix.split_to(n);
            scan(&mut this.frames, &this.activity, &chunk);
            buf.put_slice(&chunk);
            this.activity.on_read();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            scan(&mut this.frames, &this.activity, &buf.filled()[before..]);
            this.activity.on_read();
        }
        r
    }
}

impl<T> ActivityIo<T> {
    fn wrote<R>(&self, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        self.activity.on_write(r.is_pending());
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(r)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.activity.parking.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(r)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_scan_follows_header_blocks_across_reads() {
        let mut f = FrameScan::default();
        assert_eq!(f.feed(&H2_PREFACE[..5]), None);
        assert_eq!(f.feed(&H2_PREFACE[5..]), None);
        // SETTINGS, empty: no block.
        assert_eq!(f.feed(&[0, 0, 0, 4, 0, 0, 0, 0, 0]), None);
        // HEADERS of 3 bytes without END_HEADERS, its header split.
        assert_eq!(f.feed(&[0, 0, 3, 1]), None);
        assert_eq!(f.feed(&[0, 0, 0, 0, 1, 0xaa]), Some(true));
        assert_eq!(f.feed(&[0xbb, 0xcc]), None);
        // CONTINUATION with END_HEADERS: closed once its payload is in.
        assert_eq!(f.feed(&[0, 0, 2, 9, 4, 0, 0, 0, 1, 0xdd]), None);
        assert_eq!(f.feed(&[0xee]), Some(false));
        // HEADERS with END_HEADERS in one read: no change seen.
        assert_eq!(f.feed(&[0, 0, 1, 1, 4, 0, 0, 0, 3, 0x82]), None);
        // DATA frames never open a block.
        assert_eq!(f.feed(&[0, 0, 2, 0, 0, 0, 0, 0, 3, 1]), None);
        assert!(!f.block_open);
    }
}
