//! The access log and request metrics: the outermost layer, so it sees every
//! answer, podgate's own errors included. One line per request, written when
//! the response body is finished (or abandoned), so sizes and durations are
//! the real ones.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, USER_AGENT};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Version};

use crate::config::LogFormat;
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::Body;
use crate::ctx::{ConnInfo, ErrorKind, RequestFacts, UpstreamTiming};
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AccessLogLayer {
    enabled: bool,
    metrics: Arc<Metrics>,
}

impl AccessLogLayer {
    pub fn new(enabled: bool, metrics: Arc<Metrics>) -> Self {
        Self { enabled, metrics }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessLog {
            inner,
            enabled: self.enabled,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
    enabled: bool,
    metrics: Arc<Metrics>,
}

/// What is known when the request arrives; completed by the response.
struct Record {
    start: Instant,
    method: Method,
    path: Option<PathAndQuery>,
    version: Version,
    user_agent: Option<HeaderValue>,
    /// The connection: its peer, and whether it was cut for a client that
    /// stopped reading.
    conn: Option<Arc<ConnInfo>>,
    bytes_in: AtomicU64,
}

impl<S, B> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<Counted<B>>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Logged>;
    type Error = Infallible;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.metrics.request_started();
        let record = Arc::new(Record {
            start: Instant::now(),
            method: req.method().clone(),
            path: if self.enabled {
                req.uri().path_and_query().cloned()
            } else {
                None
            },
            version: req.version(),
            user_agent: if self.enabled {
                req.headers().get(USER_AGENT).cloned()
            } else {
                None
            },
            conn: req.extensions().get::<Arc<ConnInfo>>().cloned(),
            bytes_in: AtomicU64::new(0),
        });
        let req = req.map(|inner| Counted {
            inner,
            record: record.clone(),
        });
        AccessLogFuture {
            fut: self.inner.call(req),
            state: Some((record, self.enabled, self.metrics.clone())),
        }
    }
}

pin_project! {
    pub struct AccessLogFuture<F> {
        #[pin]
        fut: F,
        state: Option<(Arc<Record>, bool, Arc<Metrics>)>,
    }
}

impl<F> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Logged>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(resp) = std::task::ready!(this.fut.poll(cx));
        let Some((record, enabled, metrics)) = this.state.take() else {
            return Poll::Pending;
        };
        let (mut parts, body) = resp.into_parts();
        let complete = http_body::Body::is_end_stream(&body);
        let expected = http_body::Body::size_hint(&body).exact();
        let facts = parts.extensions.remove::<RequestFacts>();
        let upstream = parts.extensions.remove::<UpstreamTiming>();
        let error = parts.extensions.get::<ErrorKind>().map(|e| e.0);
        let done = Done {
            record,
            enabled,
            metrics,
            status: parts.status.as_u16(),
            facts,
            upstream,
            error,
            bytes_out: 0,
            expected,
            complete,
        };
        Poll::Ready(Ok(Response::from_parts(
            parts,
            Logged { inner: body, done },
        )))
    }
}

pin_project! {
    /// The request body, counting bytes for the log.
    pub struct Counted<B> {
        #[pin]
        inner: B,
        record: Arc<Record>,
    }
}

impl<B: HttpBody<Data = Bytes>> HttpBody for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                this.record
                    .bytes_in
                    .fetch_add(d.len() as u64, Ordering::Relaxed);
            }
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

struct Done {
    record: Arc<Record>,
    enabled: bool,
    metrics: Arc<Metrics>,
    status: u16,
    facts: Option<RequestFacts>,
    upstream: Option<UpstreamTiming>,
    error: Option<&'static str>,
    bytes_out: u64,
    /// hyper stops polling a body once its Content-Length is written.
    expected: Option<u64>,
    complete: bool,
}

impl Drop for Done {
    fn drop(&mut self) {
        let r = &self.record;
        let elapsed = r.start.elapsed();
        let bytes_in = r.bytes_in.load(Ordering::Relaxed);
        let upstream = self.upstream.map(|u| u.0);
        self.metrics.request_finished(
            &r.method,
            self.status,
            elapsed.as_secs_f64(),
            upstream.map(|u| u.as_secs_f64()),
            bytes_in,
            self.bytes_out,
        );
        if !self.enabled {
            return;
        }
        let client = self
            .facts
            .as_ref()
            .map(|f| f.client)
            .or(r.conn.as_ref().map(|c| c.peer.ip()));
        let completed = self.complete || self.expected == Some(self.bytes_out);
        let send_timed_out = || {
            r.conn
                .as_ref()
                .is_some_and(|c| c.send_timed_out.load(Ordering::Relaxed))
        };
        let error = match self.error {
            None if !completed && send_timed_out() => Some("send_timeout"),
            e => e,
        };
        let request_id = self
            .facts
            .as_ref()
            .and_then(|f| f.request_id.to_str().ok())
            .unwrap_or("");
        let path = r.path.as_ref().map(|p| p.as_str()).unwrap_or("");
        let ua = r
            .user_agent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some(format) = crate::telemetry::access_format() else {
            return;
        };
        let line = Line {
            client,
            method: r.method.as_str(),
            path,
            proto: match r.version {
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_11 => "HTTP/1.1",
                Version::HTTP_2 => "HTTP/2.0",
                _ => "HTTP/?",
            },
            status: self.status,
            request_bytes: bytes_in,
            response_bytes: self.bytes_out,
            duration_us: elapsed.as_micros() as u64,
            upstream_us: upstream.map(|u| u.as_micros() as u64),
            user_agent: ua,
            request_id,
            error,
            completed,
        };
        // One buffer per thread, reused: no allocation per line.
        thread_local! {
            static TEXT: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(512));
        }
        TEXT.with_borrow_mut(|text| {
            text.clear();
            let now = std::time::SystemTime::now();
            match format {
                LogFormat::Json => line.write_json(now, text),
                LogFormat::Text => line.write_text(now, text),
            }
            crate::telemetry::write_access_line(text.as_bytes());
        });
    }
}

pin_project! {
    /// The response body, counting bytes and logging the request when done.
    pub struct Logged {
        #[pin]
        inner: Body,
        done: Done,
    }
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = crate::body::BoxError;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.done.bytes_out += d.len() as u64;
                }
            }
            Poll::Ready(None) => this.done.complete = true,
            _ => {}
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One access line. Formatted by hand: the generic tracing formatter was
/// the largest single cost on the request path.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    pub client: Option<IpAddr>,
    pub method: &'a str,
    pub path: &'a str,
    pub proto: &'a str,
    pub status: u16,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub duration_us: u64,
    pub upstream_us: Option<u64>,
    pub user_agent: &'a str,
    pub request_id: &'a str,
    pub error: Option<&'a str>,
    pub completed: bool,
}

impl Line<'_> {
    /// `{"timestamp":…,"level":"INFO","target":"podgate::access",…}` + newline,
    /// the same shape as podgate's other JSON log lines.
    pub fn json(&self, now: std::time::SystemTime) -> String {
        let mut l = String::with_capacity(320);
        self.write_json(now, &mut l);
        l
    }

    /// [`Line::json`], appended to `l`.
    pub fn write_json(&self, now: std::time::SystemTime, l: &mut String) {
        l.push_str("{\"timestamp\":\"");
        push_timestamp(l, now);
        l.push_str("\",\"level\":\"INFO\",\"target\":\"podgate::access\"");
        if let Some(c) = self.client {
            l.push_str(",\"client\":\"");
            push_ip(l, c);
            l.push('"');
        }
        l.push_str(",\"method\":");
        push_json_str(l, self.method);
        l.push_str(",\"path\":");
        push_json_str(l, self.path);
        l.push_str(",\"proto\":\"");
        l.push_str(self.proto);
        l.push_str("\",\"status\":");
        push_u64(l, self.status as u64);
        l.push_str(",\"request_bytes\":");
        push_u64(l, self.request_bytes);
        l.push_str(",\"response_bytes\":");
        push_u64(l, self.response_bytes);
        l.push_str(",\"duration_ms\":");
        push_ms(l, self.duration_us);
        if let Some(u) = self.upstream_us {
            l.push_str(",\"upstream_ms\":");
            push_ms(l, u);
        }
        l.push_str(",\"user_agent\":");
        push_json_str(l, self.user_agent);
        l.push_str(",\"request_id\":");
        push_json_str(l, self.request_id);
        if let Some(e) = self.error {
            l.push_str(",\"error\":");
            push_json_str(l, e);
        }
        l.push_str(",\"completed\":");
        l.push_str(if self.completed { "true" } else { "false" });
        l.push_str("}\n");
    }

    /// The text form: timestamp, level, target, then `key=value` pairs with
    /// strings quoted as JSON strings.
    pub fn text(&self, now: std::time::SystemTime) -> String {
        let mut l = String::with_capacity(256);
        self.write_text(now, &mut l);
        l
    }

    /// [`Line::text`], appended to `l`.
    pub fn write_text(&self, now: std::time::SystemTime, l: &mut String) {
        push_timestamp(l, now);
        l.push_str("  INFO podgate::access:");
        if let Some(c) = self.client {
            l.push_str(" client=");
            push_ip(l, c);
        }
        l.push_str(" method=");
        l.push_str(self.method);
        l.push_str(" path=");
        push_json_str(l, self.path);
        l.push_str(" proto=");
        l.push_str(self.proto);
        l.push_str(" status=");
        push_u64(l, self.status as u64);
        l.push_str(" request_bytes=");
        push_u64(l, self.request_bytes);
        l.push_str(" response_bytes=");
        push_u64(l, self.response_bytes);
        l.push_str(" duration_ms=");
        push_ms(l, self.duration_us);
        if let Some(u) = self.upstream_us {
            l.push_str(" upstream_ms=");
            push_ms(l, u);
        }
        l.push_str(" user_agent=");
        push_json_str(l, self.user_agent);
        l.push_str(" request_id=");
        push_json_str(l, self.request_id);
        if let Some(e) = self.error {
            l.push_str(" error=");
            l.push_str(e);
        }
        l.push_str(if self.completed {
            " completed=true\n"
        } else {
            " completed=false\n"
        });
    }
}

fn push_u64(s: &mut String, n: u64) {
    s.push_str(itoa::Buffer::new().format(n));
}

/// Padded with zeros to `width` digits (at most 20), written in one piece.
fn push_padded(s: &mut String, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut m = n;
    for i in (0..width).rev() {
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
    }
    // ASCII digits only, so never the empty fallback.
    s.push_str(std::str::from_utf8(&buf[..width]).unwrap_or(""));
}

/// Microseconds as milliseconds with three decimals, no float noise.
fn push_ms(s: &mut String, us: u64) {
    push_u64(s, us / 1000);
    s.push('.');
    push_padded(s, us % 1000, 3);
}

fn push_ip(s: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                push_u64(s, *o as u64);
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(s, "{v6}");
        }
    }
}

/// Bytes a JSON string cannot hold as they are: controls, `"`, `\`, DEL.
/// A table, since every line runs several strings through it.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i < 0x20 || i == b'"' as usize || i == b'\\' as usize || i == 0x7f;
        i += 1;
    }
    t
};

/// A JSON string literal: quotes, backslashes and control characters escaped.
fn push_json_str(s: &mut String, v: &str) {
    s.push('"');
    // Paths, ids and user agents rarely need escaping: copy them whole.
    if !v.bytes().any(|b| NEEDS_ESCAPE[b as usize]) {
        s.push_str(v);
        s.push('"');
        return;
    }
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                use std::fmt::Write as _;
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-23T13:17:07.240704Z`.
/// The part down to the second is formatted once per second per thread.
fn push_timestamp(s: &mut String, now: std::time::SystemTime) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let d = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (cached, mut prefix) = SECOND.get();
    if cached != secs {
        let mut p = String::with_capacity(19);
        push_date_time(&mut p, secs);
        prefix.copy_from_slice(&p.as_bytes()[..19]);
        SECOND.set((secs, prefix));
    }
    s.push_str(std::str::from_utf8(&prefix).unwrap_or("1970-01-01T00:00:00"));
    s.push('.');
    push_padded(s, d.subsec_micros() as u64, 6);
    s.push('Z');
}

/// `YYYY-MM-DDTHH:MM:SS` (19 bytes) for seconds since the Unix epoch.
fn push_date_time(s: &mut String, secs: u64) {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Four digits: years past 9999 would not fit the cached 19 bytes.
    push_padded(s, year.clamp(0, 9999) as u64, 4);
    s.push('-');
    push_padded(s, month as u64, 2);
    s.push('-');
    push_padded(s, day as u64, 2);
    s.push('T');
    push_padded(s, rem / 3600, 2);
    s.push(':');
    push_padded(s, rem % 3600 / 60, 2);
    s.push(':');
    push_padded(s, rem % 60, 2);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn line() -> Line<'static> {
        Line {
            client: Some("10.1.2.3".parse().unwrap()),
            method: "GET",
            path: "/a?q=\"x\"\\\n",
            proto: "HTTP/1.1",
            status: 200,
            request_bytes: 0,
            response_bytes: 1024,
            duration_us: 1_234,
            upstream_us: Some(56),
            user_agent: "curl/8\u{1}",
            request_id: "abc",
            error: None,
            completed: true,
        }
    }

    #[test]
    fn json_line_is_valid_json_with_every_field() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_958_227_240_704);
        let text = line().json(t);
        assert!(text.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["timestamp"],
            humantime::format_rfc3339_micros(t).to_string()
        );
        assert_eq!(v["client"], "10.1.2.3");
        assert_eq!(v["path"], "/a?q=\"x\"\\\n");
        assert_eq!(v["user_agent"], "curl/8\u{1}");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1.234);
        assert_eq!(v["upstream_ms"], 0.056);
        assert_eq!(v["completed"], true);
        assert!(v.get("error").is_none());
    }

    #[test]
    fn timestamps_match_a_reference_formatter() {
        for secs in [
            0u64,
            951_782_400,
            1_709_164_800,
            4_102_444_799,
            1_795_958_227,
        ] {
            // Twice in the same second: the second one reuses the cached
            // date and time.
            for micros in [0, 999_999] {
                let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
                let mut s = String::new();
                push_timestamp(&mut s, t);
                let reference = humantime::format_rfc3339_micros(t).to_string();
                assert_eq!(s, reference);
            }
        }
    }

    #[test]
    fn text_line_has_one_line() {
        let text = line().text(UNIX_EPOCH);
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.contains(" status=200 "));
        assert!(text.contains(" path=\"/a?q=\\\"x\\\"\\\\\\n\""));
    }
}
