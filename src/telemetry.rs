//! Logs on stdout: JSON (default) or text, filtered by `PODGATE_LOG`.
//!
//! Lines are appended to an in-memory batch that a writer thread sends to
//! stdout, so a slow stdout (a congested container log pipe) never blocks a
//! request. The writer waits up to [`FLUSH_DELAY`] or [`FLUSH_BYTES`] before
//! writing, so under load one `write(2)` carries hundreds of lines; a queue
//! that handed over one line at a time cost a write, two `sched_yield`s and a
//! futex per request (strace, GET 1 KiB × 64). If stdout stalls and
//! [`MAX_QUEUED`] bytes are waiting, new lines are dropped and counted
//! (`podgate_log_lines_dropped_total`) rather than stalling traffic.
//!
//! Access lines share that batch but skip tracing's formatter: they are
//! written by [`crate::layers::access_log`] with a hand-rolled formatter, because
//! the generic one cost about a quarter of podgate's CPU per request
//! (measured with callgrind).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// How long a line may wait for others to share its write. Short enough
/// that `kubectl logs -f` looks live.
pub const FLUSH_DELAY: Duration = Duration::from_millis(50);
/// A batch this large is written at once, without waiting for the delay.
pub const FLUSH_BYTES: usize = 32 * 1024;
/// Bytes waiting for a stalled stdout before lines are dropped: about 16,000
/// access lines, only resident while stdout is stalled (plus the batch the
/// writer is stuck on: at most twice this in all).
pub const MAX_QUEUED: usize = 4 * 1024 * 1024;

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Lines dropped because stdout could not keep up (or failed), since start.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer: the first line of a batch, a full batch, or close.
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A writer that panicked mid-append leaves at worst a torn line.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, line: &[u8]) {
        let mut p = self.lock();
        let before = p.buf.len();
        if p.closed || before + line.len() > MAX_QUEUED {
            drop(p);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        p.buf.extend_from_slice(line);
        let after = p.buf.len();
        drop(p);
        // Only the transitions the writer waits for: a notify is a syscall.
        if before == 0 || (before < FLUSH_BYTES && after >= FLUSH_BYTES) {
            self.wake.notify_one();
        }
    }
}

/// A handle that appends to the batch; cheap to clone, one per event.
#[derive(Clone)]
pub struct LogQueue {
    shared: Arc<Shared>,
}

impl Write for LogQueue {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // tracing's formatter hands over a whole event in one call.
        self.shared.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogQueue {
    type Writer = LogQueue;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// How long exit waits for queued lines to be written. A stalled stdout
/// (a full container log pipe) must not keep a drained pod from exiting.
pub const EXIT_FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Keep it alive until exit: dropping it writes what is queued (waiting at
/// most [`EXIT_FLUSH_WAIT`]) and stops the writer thread.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Disconnects when the writer thread ends.
    finished: std::sync::mpsc::Receiver<()>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        let _ = self.finished.recv_timeout(EXIT_FLUSH_WAIT);
        if let Some(t) = self.thread.take() {
            if t.is_finished() {
                let _ = t.join();
            }
            // Otherwise it is stuck in a write; the process exits without it.
        }
    }
}

/// Starts a writer thread that sends batches to `out`.
pub fn queue<W: Write + Send + 'static>(mut out: W) -> std::io::Result<(LogQueue, LogGuard)> {
    let shared = Arc::new(Shared::default());
    let for_writer = shared.clone();
    let (finished_tx, finished) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("podgate-log".into())
        .spawn(move || {
            let _finished = finished_tx;
            let shared = for_writer;
            let mut batch = Vec::new();
            loop {
                let mut p = shared.lock();
                while p.buf.is_empty() && !p.closed {
                    p = shared.wake.wait(p).unwrap_or_else(|e| e.into_inner());
                }
                if p.buf.is_empty() {
                    return; // closed and drained
                }
                let deadline = Instant::now() + FLUSH_DELAY;
                while p.buf.len() < FLUSH_BYTES && !p.closed {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    p = shared
                        .wake
                        .wait_timeout(p, left)
                        .map(|(p, _)| p)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                std::mem::swap(&mut p.buf, &mut batch);
                drop(p);
                if out.write_all(&batch).and_then(|()| out.flush()).is_err() {
                    let lines = batch.iter().filter(|&&b| b == b'\n').count();
                    DROPPED.fetch_add(lines as u64, Ordering::Relaxed);
                }
                batch.clear();
                // A burst (a stall that filled the queue) should not stay resident.
                if batch.capacity() > 4 * FLUSH_BYTES {
                    batch.shrink_to(FLUSH_BYTES);
                }
            }
        })?;
    Ok((
        LogQueue {
            shared: shared.clone(),
        },
        LogGuard {
            shared,
            thread: Some(thread),
            finished,
        },
    ))
}

/// Where access lines go once telemetry is set up. Unset (tests, library
/// use without [`init`]): access lines are not written.
static ACCESS_SINK: OnceLock<(LogQueue, LogFormat)> = OnceLock::new();

/// Queues one finished access line (with its newline).
pub fn write_access_line(line: &[u8]) {
    if let Some((q, _)) = ACCESS_SINK.get() {
        q.shared.push(line);
    }
}

/// The access line format, if access lines are being written at all.
pub fn access_format() -> Option<LogFormat> {
    ACCESS_SINK.get().map(|(_, f)| *f)
}

/// Installs the global subscriber writing to stdout.
pub fn init(format: LogFormat, filter: &str) -> std::io::Result<LogGuard> {
    let (writer, guard) = queue(std::io::stdout())?;
    let _ = ACCESS_SINK.set((writer.clone(), format));
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(writer);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    // A subscriber may already be installed (tests start podgate in-process).
    let _ = result;
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stdout stand-in that records each write call.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_batched_and_all_written_by_close() {
        let rec = Recorder::default();
        let (mut q, guard) = queue(rec.clone()).unwrap();
        for i in 0..1000 {
            writeln!(q, "line {i}").unwrap();
        }
        drop(guard);
        let writes = rec.0.lock().unwrap();
        let all: Vec<u8> = writes.concat();
        let text = String::from_utf8(all).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[0], "line 0");
        assert_eq!(lines[999], "line 999");
        // 1000 lines queued faster than the flush delay share few writes.
        assert!(writes.len() < 10, "{} writes for 1000 lines", writes.len());
    }

    #[test]
    fn a_lone_line_is_written_without_more_traffic() {
        let rec = Recorder::default();
        let (mut q, _guard) = queue(rec.clone()).unwrap();
        q.write_all(b"only\n").unwrap();
        let start = Instant::now();
        while rec.0.lock().unwrap().is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "line never written"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(rec.0.lock().unwrap().concat(), b"only\n");
    }

    /// A stdout that blocks until told to go on.
    struct Stalled(std::sync::mpsc::Receiver<()>);

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_stdout_drops_lines_and_counts_them() {
        let (go, gate) = std::sync::mpsc::channel();
        let (mut q, guard) = queue(Stalled(gate)).unwrap();
        let mut line = [b'x'; 1024];
        line[1023] = b'\n';
        let before = dropped_lines();
        // The writer takes at most one batch into its stalled write; the rest
        // fills the queue up to MAX_QUEUED, then lines are dropped.
        let n = 2 * MAX_QUEUED / 1024 + 100;
        for _ in 0..n {
            q.write_all(&line).unwrap();
        }
        assert!(
            dropped_lines() - before >= (n - MAX_QUEUED / 1024 * 2) as u64,
            "dropped {} of {n}",
            dropped_lines() - before
        );
        drop(go); // unblocks the writer: every write returns at once
        drop(guard);
    }

    #[test]
    fn exit_does_not_wait_for_a_stuck_stdout() {
        let (go, gate) = std::sync::mpsc::channel::<()>();
        let (mut q, guard) = queue(Stalled(gate)).unwrap();
        q.write_all(b"stuck\n").unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(guard);
            let _ = done_tx.send(());
        });
        // The guard gives up after EXIT_FLUSH_WAIT; never in a test's lifetime
        // if it waited for the write.
        assert!(
            done_rx
                .recv_timeout(EXIT_FLUSH_WAIT + Duration::from_secs(10))
                .is_ok(),
            "dropping the guard hung on a stalled stdout"
        );
        drop(go);
    }
}
