//! The connection watchdog: which deadline is next (head, idle, park,
//! send) and what happens when it passes.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::ServerConfig;
use crate::ctx::ConnInfo;

/// What the watchdog knows about a connection. Times are milliseconds since
/// the connection was accepted.
pub(super) struct Activity {
    pub(super) epoch: Instant,
    pub(super) h2: bool,
    pub(super) info: Arc<ConnInfo>,
    pub(super) in_flight: AtomicUsize,
    pub(super) idle_since: AtomicU64,
    /// When the first byte of the next request head arrived; `NONE` if not
    /// yet. On HTTP/2: when an unfinished header block began.
    pub(super) head_since: AtomicU64,
    /// Since when a write to the client socket has been refused (the socket
    /// buffer is full); `NONE` while writes go through.
    pub(super) blocked_since: AtomicU64,
    /// HTTP/2: the send clocks of the open streams.
    pub(super) streams: std::sync::Mutex<Vec<std::sync::Weak<AtomicU64>>>,
    pub(super) served_one: AtomicBool,
    /// The connection is being parked: hyper's shutdown of the socket is
    /// skipped, the caller keeps it.
    pub(super) parking: AtomicBool,
}

/// What the watchdog decided.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Close(&'static str),
    Park,
}

pub(super) const NONE: u64 = u64::MAX;
pub(super) const HEAD_LATE: &str = "request head not received in time";
pub(super) const SEND_STALLED: &str = "send timeout: client stopped reading";

impl Activity {
    pub(super) fn new(h2: bool, info: Arc<ConnInfo>) -> Self {
        Self::since(Instant::now(), h2, info)
    }

    /// Deadlines counted from `epoch` (a TLS connection: from accept, so the
    /// handshake counts against the head timeout).
    pub(super) fn since(epoch: Instant, h2: bool, info: Arc<ConnInfo>) -> Self {
        Self {
            epoch,
            h2,
            info,
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            // The sniff saw bytes: the first head is under way from the start.
            head_since: AtomicU64::new(if h2 { NONE } else { 0 }),
            blocked_since: AtomicU64::new(NONE),
            streams: std::sync::Mutex::new(Vec::new()),
            served_one: AtomicBool::new(false),
            parking: AtomicBool::new(false),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(super) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if !self.h2 {
            self.head_since.store(NONE, Ordering::Release);
        }
        self.served_one.store(true, Ordering::Relaxed);
    }

    pub(super) fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since.store(self.now_ms(), Ordering::Release);
        }
    }

    pub(super) fn on_read(&self) {
        if !self.h2
            && self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since.load(Ordering::Acquire) == NONE
        {
            self.head_since.store(self.now_ms(), Ordering::Release);
        }
    }

    /// HTTP/2: a header block began (`true`) or was completed (`false`).
    pub(super) fn on_header_block(&self, open: bool) {
        let v = if open { self.now_ms() } else { NONE };
        self.head_since.store(v, Ordering::Release);
    }

    pub(super) fn on_write(&self, blocked: bool) {
        let since = self.blocked_since.load(Ordering::Relaxed);
        if blocked && since == NONE {
            self.blocked_since.store(self.now_ms(), Ordering::Relaxed);
        } else if !blocked && since != NONE {
            self.blocked_since.store(NONE, Ordering::Relaxed);
        }
    }

    /// Since when the oldest response has waited for the client to take
    /// more: the socket, or on HTTP/2 any stream's window.
    pub(super) fn stalled_since(&self) -> u64 {
        let mut since = self.blocked_since.load(Ordering::Relaxed);
        if self.h2 {
            if let Ok(streams) = self.streams.lock() {
                for c in streams.iter().filter_map(|w| w.upgrade()) {
                    since = since.min(c.load(Ordering::Relaxed));
                }
            }
        }
        since
    }

    /// Time left before an idle connection reaches `idle_timeout`.
    pub(super) fn idle_left(&self, idle_timeout: Duration) -> Duration {
        let since = self.idle_since.load(Ordering::Acquire);
        let deadline = since.saturating_add(idle_timeout.as_millis() as u64);
        Duration::from_millis(deadline.saturating_sub(self.now_ms()))
    }

    /// What is due next: the earliest deadline, and the verdict once it has
    /// passed (`None`: nothing to do then but look again).
    pub(super) fn next(&self, now: u64, t: &Timeouts) -> (u64, Option<Verdict>) {
        let mut due: (u64, Option<Verdict>) = (NONE, None);
        fn at(due: &mut (u64, Option<Verdict>), deadline: u64, v: Verdict) {
            if deadline < due.0 {
                *due = (deadline, Some(v));
            }
        }
        let stalled = self.stalled_since();
        if stalled != NONE {
            at(
                &mut due,
                stalled.saturating_add(t.send),
                Verdict::Close(SEND_STALLED),
            );
        }
        let head = self.head_since.load(Ordering::Acquire);
        let in_flight = self.in_flight.load(Ordering::Acquire) > 0;
        if head != NONE && (self.h2 || !in_flight) {
            at(
                &mut due,
                head.saturating_add(t.header),
                Verdict::Close(HEAD_LATE),
            );
        }
        if in_flight {
            // Not woken when a write blocks or a request ends: look again.
            let poll = t.header.min(t.idle).min(t.send).max(1);
            if now + poll < due.0 {
                due = (now + poll, None);
            }
            return due;
        }
        if head == NONE || self.h2 {
            let since = self.idle_since.load(Ordering::Acquire);
            let served = self.served_one.load(Ordering::Relaxed);
            match t.park {
                Some(park) if served && park < t.idle => at(&mut due, since + park, Verdict::Park),
                _ if served => at(&mut due, since + t.idle, Verdict::Close("idle timeout")),
                // Nothing asked yet (an HTTP/2 preface and then silence).
                _ => at(&mut due, since + t.header, Verdict::Close(HEAD_LATE)),
            }
        }
        due
    }

    /// Resolves when the connection has outstayed its welcome, or, with
    /// `park_after`, when it has been idle between requests that long.
    pub(super) async fn watchdog(
        self: Arc<Self>,
        cfg: &ServerConfig,
        park_after: Option<Duration>,
    ) -> Verdict {
        let ms = |d: Duration| d.as_millis() as u64;
        let t = Timeouts {
            header: ms(cfg.header_timeout),
            idle: ms(cfg.idle_timeout),
            send: ms(cfg.send_timeout),
            park: park_after.map(ms),
        };
        loop {
            let now = self.now_ms();
            let (deadline, verdict) = self.next(now, &t);
            if let Some(v) = verdict.filter(|_| now >= deadline) {
                if v == Verdict::Close(SEND_STALLED) {
                    self.info.send_timed_out.store(true, Ordering::Relaxed);
                }
                return v;
            }
            // Not woken when a request ends: with parking on, look again
            // at least every `park_after`.
            let wait = deadline
                .saturating_sub(now)
                .min(t.park.unwrap_or(u64::MAX))
                .max(1);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

/// The watchdog's limits, in milliseconds.
pub(super) struct Timeouts {
    pub(super) header: u64,
    pub(super) idle: u64,
    pub(super) send: u64,
    pub(super) park: Option<u64>,
}

#[cfg(test)]
mod tests {
    //! The watchdog's verdicts on tokio's paused clock: exact times, no
    //! wall-clock windows.
    use std::net::SocketAddr;

    use super::super::conn::RequestGuard;
    use super::*;

    fn cfg() -> ServerConfig {
        ServerConfig {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_header_bytes: 32 << 10,
            max_headers: 100,
            max_connections: 10,
            h2_max_streams: 100,
            send_timeout: Duration::from_secs(60),
            park_after: Duration::from_secs(1),
        }
    }

    fn activity(h2: bool) -> Arc<Activity> {
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        Arc::new(Activity::new(h2, Arc::new(ConnInfo::new(addr, addr))))
    }

    /// Runs the watchdog to its verdict; returns it and when it came.
    async fn verdict(a: &Arc<Activity>, park: Option<Duration>) -> (Verdict, Duration) {
        let start = Instant::now();
        let v = a.clone().watchdog(&cfg(), park).await;
        (v, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_never_completes_is_closed_at_the_header_timeout() {
        let a = activity(false);
        assert_eq!(
            verdict(&a, Some(Duration::from_secs(1))).await,
            (Verdict::Close(HEAD_LATE), Duration::from_secs(10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_park_then_close_at_the_idle_timeout() {
        let a = activity(false);
        a.begin();
        a.end();
        let park = Some(Duration::from_millis(300));
        assert_eq!(
            verdict(&a, park).await,
            (Verdict::Park, Duration::from_millis(300))
        );
        // Without parking (HTTP/2, or a parked one that was woken) the idle
        // timeout counts from the end of the last request.
        let (v, at) = verdict(&a, None).await;
        assert_eq!(v, Verdict::Close("idle timeout"));
        assert_eq!(at, Duration::from_millis(75_000 - 300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_socket_that_stays_full_is_cut_at_the_send_timeout() {
        let a = activity(false);
        a.begin();
        tokio::time::sleep(Duration::from_secs(3)).await;
        a.on_write(true);
        assert_eq!(
            verdict(&a, Some(Duration::from_secs(1))).await,
            (Verdict::Close(SEND_STALLED), Duration::from_secs(60))
        );
        assert!(a.info.send_timed_out.load(Ordering::Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn writes_that_go_through_reset_the_send_clock() {
        let a = activity(false);
        a.begin();
        a.on_write(true);
        let w = a.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(50)).await;
            w.on_write(false);
            tokio::time::sleep(Duration::from_secs(1)).await;
            w.on_write(true);
            tokio::time::sleep(Duration::from_secs(200)).await;
            w.end();
        });
        let (v, at) = verdict(&a, None).await;
        assert_eq!(v, Verdict::Close(SEND_STALLED));
        // Blocked again at 51 s: cut at 111 s, polled every 10 s.
        assert!(
            at >= Duration::from_secs(111) && at <= Duration::from_secs(121),
            "{at:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_stream_with_a_shut_window_is_cut_at_the_send_timeout() {
        let a = activity(true);
        a.begin();
        let guard = RequestGuard::new(a.clone());
        let clock = guard.clock.clone().unwrap();
        clock.store(a.now_ms(), Ordering::Relaxed);
        let (v, at) = verdict(&a, None).await;
        assert_eq!(v, Verdict::Close(SEND_STALLED));
        assert_eq!(at, Duration::from_secs(60));
        drop(guard);
    }

    #[tokio::test(start_paused = true)]
    async fn http2_preface_alone_or_an_open_header_block_meets_the_header_timeout() {
        let a = activity(true);
        assert_eq!(
            verdict(&a, None).await,
            (Verdict::Close(HEAD_LATE), Duration::from_secs(10))
        );
        // After a request: an unfinished header block, even with another
        // stream in flight.
        let a = activity(true);
        a.begin();
        a.on_header_block(true);
        assert_eq!(
            verdict(&a, None).await,
            (Verdict::Close(HEAD_LATE), Duration::from_secs(10))
        );
    }
}
