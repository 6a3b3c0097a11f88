//! Configuration: `PODGATE_*` environment variables, read once with envy into a
//! flat struct of strings, then validated into a typed [`Config`].
//!
//! Every variable is parsed before failing, so an operator sees all mistakes at
//! once. Tests feed a map through [`Config::from_vars`]; nothing here reads the
//! process environment except [`Config::from_env`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::headers::UnderscorePolicy;

pub const PREFIX: &str = "PODGATE_";

/// One documented variable: its name without the prefix, its default as
/// written in the README, and what it means. The README table is checked
/// against this list by a test, so docs and code cannot drift.
pub struct VarDoc {
    pub name: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

macro_rules! vars {
    ($( $field:ident => $name:literal, $default:literal, $meaning:literal; )*) => {
        /// The raw environment, one optional string per variable. envy fills it;
        /// nothing is interpreted yet so that every error can be collected.
        #[derive(Debug, Default, Deserialize)]
        #[serde(default)]
        struct RawConfig {
            $( $field: Option<String>, )*
        }

        /// Every variable podgate reads, in README order.
        pub const VARS: &[VarDoc] = &[
            $( VarDoc { name: $name, default: $default, meaning: $meaning }, )*
        ];

        impl RawConfig {
            fn get(&self, name: &str) -> Option<&str> {
                match name {
                    $( $name => self.$field.as_deref(), )*
                    _ => None,
                }
            }
        }
    };
}

vars! {
    listen => "LISTEN", "0.0.0.0:80", "Address and port podgate accepts client traffic on.";
    app_host => "APP_HOST", "127.0.0.1", "IP address of the app inside the pod (an IP, so no DNS is needed).";
    app_port => "APP_PORT", "8000", "Port the app listens on.";
    connect_timeout => "CONNECT_TIMEOUT", "2s", "Time allowed to open a connection to the app; past it the client gets 504 (nginx: proxy_connect_timeout). A refused connection is 502 at once.";
    upstream_timeout => "UPSTREAM_TIMEOUT", "60s", "Time allowed for the app to start its response, and the longest pause inside a response body; past it 504 (nginx: proxy_read_timeout).";
    header_timeout => "HEADER_TIMEOUT", "10s", "A client must send a whole request head within this time of its first byte (or of connecting); slow clients are cut off.";
    idle_timeout => "IDLE_TIMEOUT", "75s", "Idle client keep-alive connections are closed after this. Keep it above the ingress controller's upstream keep-alive (ingress-nginx: 60s).";
    body_timeout => "BODY_TIMEOUT", "60s", "Longest pause allowed while a client sends a request body; past it the upload is aborted and the app sees an incomplete request (nginx: client_body_timeout).";
    max_body => "MAX_BODY", "100m", "Largest request body; larger ones get 413, also when chunked (if the app has already started answering, the connection is cut instead, and the app sees an aborted upload). 0 = no limit (nginx: client_max_body_size, default 1m).";
    pool_idle_timeout => "POOL_IDLE_TIMEOUT", "1s", "How long an idle keep-alive connection to the app is kept. Keep it below the app's keep-alive (gunicorn: 2s, uvicorn: 5s).";
    pool_max_idle => "POOL_MAX_IDLE", "64", "Most idle keep-alive connections kept open to the app.";
    trusted_proxies => "TRUSTED_PROXIES", "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,127.0.0.0/8,fc00::/7,::1/128", "Peers (CIDRs, comma separated, or `none`) whose X-Forwarded-* and Forwarded headers are believed. The default is the private ranges pod and node addresses come from: the ingress controller and the kubelet.";
    request_id_header => "REQUEST_ID_HEADER", "x-request-id", "Header carrying the request id: kept when a client sends a short printable one, generated otherwise, returned on the response and logged.";
    underscore_headers => "UNDERSCORE_HEADERS", "drop", "Request header names with `_`: drop, reject (400) or allow. They alias dash names in WSGI/CGI (X_Forwarded_For = X-Forwarded-For).";
    max_header_bytes => "MAX_HEADER_BYTES", "32k", "Largest request head (request line plus headers); larger gets 431 (nginx: large_client_header_buffers).";
    max_headers => "MAX_HEADERS", "100", "Most request header fields; more gets 431.";
    max_uri => "MAX_URI", "8k", "Longest request target (path and query); longer gets 414.";
    h2_max_streams => "H2_MAX_STREAMS", "100", "Most concurrent requests (streams) one HTTP/2 client connection may have open; each can take an app connection, so this bounds what one client can hold (nginx: http2_max_concurrent_streams 128, Envoy: 100). With APP_CONCURRENCY, the app-wide bound.";
    hide_headers => "HIDE_HEADERS", "", "Response headers to remove, comma separated, e.g. `server,x-powered-by` (nginx: proxy_hide_header).";
    admin_listen => "ADMIN_LISTEN", "0.0.0.0:9901", "Address of the admin listener (/livez, /readyz, /metrics, /status); separate from the proxy port so it never shadows an app path.";
    app_health_path => "APP_HEALTH_PATH", "", "Empty: readiness checks the app with a TCP connect. A path such as /healthz: an HTTP GET that must answer 2xx or 3xx.";
    app_check_interval => "APP_CHECK_INTERVAL", "2s", "How often the app is checked for readiness (every 200ms until it first answers). Probes read the cached result.";
    app_check_timeout => "APP_CHECK_TIMEOUT", "1s", "Time allowed for one app check.";
    drain_delay => "DRAIN_DELAY", "5s", "On SIGTERM, keep serving this long with readiness off, so endpoints and the ingress stop sending first.";
    shutdown_timeout => "SHUTDOWN_TIMEOUT", "20s", "After the drain delay, how long in-flight requests and tunnels may take to finish before podgate exits. Keep DRAIN_DELAY + SHUTDOWN_TIMEOUT below terminationGracePeriodSeconds (30s by default).";
    max_connections => "MAX_CONNECTIONS", "10000", "Most client connections open at once, tunnels (WebSocket) included until both sides close; further ones wait in the kernel's backlog.";
    upgrade_protocols => "UPGRADE_PROTOCOLS", "websocket", "Upgrade protocols tunnelled to the app, comma separated, or `none`. Any other `Upgrade` (h2c among them) is removed and the request forwarded as a plain one; an app answering 101 to an upgrade not asked for gets the client a 502.";
    tunnel_idle_timeout => "TUNNEL_IDLE_TIMEOUT", "5m", "A tunnel (WebSocket) with no byte either way for this long is closed, so tunnels to vanished peers do not pile up. Ten times a 30s ping interval: a live socket with a heartbeat never meets it (nginx: proxy_read_timeout, 60s, which closes quiet WebSockets).";
    send_timeout => "SEND_TIMEOUT", "60s", "When no response byte could be written to a client for this long (it stopped reading), the response is aborted, its connection closed and the app connection freed (nginx: send_timeout, 60s).";
    park_after => "PARK_AFTER", "1s", "An idle HTTP/1 keep-alive connection gives up its buffers after this (only the socket is kept until the client sends again), as nginx frees a keep-alive connection's buffers.";
    app_concurrency => "APP_CONCURRENCY", "0", "Most requests in flight to the app at once, e.g. the gunicorn worker count; 0 = no limit. Further requests queue.";
    app_queue => "APP_QUEUE", "100", "With APP_CONCURRENCY: most requests waiting for a slot; beyond it 503 with Retry-After at once.";
    app_queue_timeout => "APP_QUEUE_TIMEOUT", "5s", "With APP_CONCURRENCY: longest wait for a slot; past it 503 with Retry-After.";
    strip_prefix => "STRIP_PREFIX", "", "A path prefix such as /test01 removed before the app sees the path (X-Forwarded-Prefix is set); requests outside it get 404 (nginx: rewrite, ingress-nginx: rewrite-target).";
    static_dir => "STATIC_DIR", "", "Serve files from this directory (e.g. a volume the app's collectstatic filled) under STATIC_PREFIX, without the app (nginx: location /static/ { alias …; }).";
    static_prefix => "STATIC_PREFIX", "/static/", "URL prefix of the static files.";
    static_cache_control => "STATIC_CACHE_CONTROL", "public, max-age=3600", "Cache-Control sent with static files; empty = none.";
    static_fallthrough => "STATIC_FALLTHROUGH", "false", "true: a static path with no file goes to the app; false: 404 from podgate.";
    compression => "COMPRESSION", "off", "Compress responses for clients that accept it: off, or a list of gzip and br (nginx: gzip on).";
    compression_min_size => "COMPRESSION_MIN_SIZE", "1k", "Responses smaller than this are not compressed.";
    buffer_requests => "BUFFER_REQUESTS", "off", "off, or a size such as 1m: request bodies up to it are read whole into memory before the app is contacted, so a slow upload never holds an app worker (nginx: proxy_request_buffering on).";
    buffer_memory => "BUFFER_MEMORY", "64m", "With BUFFER_REQUESTS: memory all buffered bodies together may use. Past it a body is spooled to BUFFER_DIR, or refused with 503 and Retry-After when there is none.";
    buffer_dir => "BUFFER_DIR", "", "With BUFFER_REQUESTS: bodies above the memory size are spooled to a file in this directory first; empty = such bodies get 413.";
    log_format => "LOG_FORMAT", "json", "Log format on stdout: json or text.";
    log => "LOG", "info", "Filter for podgate's event log, a tracing EnvFilter directive such as `debug` or `podgate=debug,hyper=info`. Access lines are switched by ACCESS_LOG alone.";
    access_log => "ACCESS_LOG", "true", "One log line per proxied request: true or false.";
}

/// How podgate talks about a wrong value: the variable, what it got, what it
/// accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarError {
    pub var: String,
    pub value: String,
    pub expected: String,
}

/// All invalid variables found in one pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub errors: Vec<VarError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.errors.len()
        )?;
        for e in &self.errors {
            writeln!(f, "  {}={:?}: expected {}", e.var, e.value, e.expected)?;
        }
        Ok(())
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// The validated configuration, passed down from `main`.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub app_addr: SocketAddr,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    /// `None` means no limit.
    pub max_body: Option<u64>,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle: usize,
    pub trusted_proxies: Vec<IpNet>,
    pub request_id_header: http::HeaderName,
    pub underscore_headers: UnderscorePolicy,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri: usize,
    pub h2_max_streams: u32,
    pub hide_headers: Vec<http::HeaderName>,
    pub admin_listen: SocketAddr,
    pub app_health_path: Option<String>,
    pub app_check_interval: Duration,
    pub app_check_timeout: Duration,
    pub drain_delay: Duration,
    pub shutdown_timeout: Duration,
    pub max_connections: usize,
    /// Lowercase protocol names; empty = no tunnels.
    pub upgrade_protocols: Vec<String>,
    pub tunnel_idle_timeout: Duration,
    pub send_timeout: Duration,
    pub park_after: Duration,
    pub app_concurrency: usize,
    pub app_queue: usize,
    pub app_queue_timeout: Duration,
    pub strip_prefix: Option<String>,
    pub static_dir: Option<std::path::PathBuf>,
    pub static_prefix: String,
    pub static_cache_control: Option<http::HeaderValue>,
    pub static_fallthrough: bool,
    pub compression: Compression,
    pub compression_min_size: u16,
    pub buffer_requests: Option<u64>,
    pub buffer_memory: u64,
    pub buffer_dir: Option<std::path::PathBuf>,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub access_log: bool,
}

/// Where a value came from, for `podgate config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Env,
    Default,
}

/// The outcome of loading: the config, and the warnings worth logging once
/// telemetry is up (unknown variables).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
    /// Each documented variable's effective raw value and its source.
    pub effective: Vec<(&'static str, String, Source)>,
}

impl Config {
    /// Reads the process environment. The only place podgate calls `std::env`.
    pub fn from_env() -> Result<Loaded, ConfigError> {
        Self::from_vars(std::env::vars_os().filter_map(|(k, v)| {
            Some((k.into_string().ok()?, v.into_string().unwrap_or_default()))
        }))
    }

    /// Parses and validates a set of variables, as given (names with prefix).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Loaded, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let all: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| k.starts_with(PREFIX))
            .collect();

        let mut warnings = Vec::new();
        for name in all.keys() {
            let short = &name[PREFIX.len()..];
            if !VARS.iter().any(|v| v.name == short) && !is_service_link(short) {
                warnings.push(format!(
                    "unknown variable {name} is ignored (is it a typo? see `podgate config` for the accepted names)"
                ));
            }
        }

        // Only the documented names go to envy: service-link variables such as
        // PODGATE_PORT=tcp://… must never be able to fail deserialisation.
        let known = all.iter().filter(|(k, _)| {
            let short = &k[PREFIX.len()..];
            VARS.iter().any(|v| v.name == short)
        });
        let raw: RawConfig = envy::prefixed(PREFIX)
            .from_iter(known.map(|(k, v)| (k.clone(), v.clone())))
            .map_err(|e| ConfigError {
                errors: vec![VarError {
                    var: "PODGATE_*".into(),
                    value: String::new(),
                    expected: e.to_string(),
                }],
            })?;

        let mut p = Parser {
            raw: &raw,
            errors: Vec::new(),
        };
        let listen = p.parse(
            "LISTEN",
            "a socket address such as 0.0.0.0:80 or [::]:80",
            |s| s.parse::<SocketAddr>().ok(),
        );
        let app_host = p.parse("APP_HOST", "an IP address such as 127.0.0.1 or ::1", |s| {
            s.parse::<IpAddr>().ok()
        });
        let app_port = p.parse("APP_PORT", "a port number from 1 to 65535", |s| {
            s.parse::<u16>().ok().filter(|p| *p != 0)
        });
        let connect_timeout = p.duration("CONNECT_TIMEOUT");
        let upstream_timeout = p.duration("UPSTREAM_TIMEOUT");
        let header_timeout = p.duration("HEADER_TIMEOUT");
        let idle_timeout = p.duration("IDLE_TIMEOUT");
        let body_timeout = p.duration("BODY_TIMEOUT");
        let max_body = p.parse(
            "MAX_BODY",
            "a size such as 1048576, 512k, 10m or 1g (0 = no limit)",
            parse_size,
        );
        let pool_idle_timeout = p.duration("POOL_IDLE_TIMEOUT");
        let pool_max_idle = p.parse("POOL_MAX_IDLE", "a whole number from 0 to 100000", |s| {
            s.parse::<usize>().ok().filter(|n| *n <= 100_000)
        });
        let trusted_proxies = p.parse(
            "TRUSTED_PROXIES",
            "comma-separated CIDRs or addresses such as 10.0.0.0/8,192.168.1.7, or none",
            parse_cidrs,
        );
        let request_id_header = p.parse(
            "REQUEST_ID_HEADER",
            "a header name such as x-request-id",
            |s| http::HeaderName::from_bytes(s.as_bytes()).ok(),
        );
        let underscore_headers =
            p.parse("UNDERSCORE_HEADERS", "drop, reject or allow", |s| {
                match s.to_ascii_lowercase().as_str() {
                    "drop" => Some(UnderscorePolicy::Drop),
                    "reject" => Some(UnderscorePolicy::Reject),
                    "allow" => Some(UnderscorePolicy::Allow),
                    _ => None,
                }
            });
        let max_header_bytes = p.parse(
            "MAX_HEADER_BYTES",
            "a size from 8k to 1m such as 32k",
            |s| {
                parse_size(s)
                    .filter(|n| (8192..=1 << 20).contains(n))
                    .map(|n| n as usize)
            },
        );
        let max_headers = p.parse("MAX_HEADERS", "a whole number from 1 to 1000", |s| {
            s.parse::<usize>().ok().filter(|n| (1..=1000).contains(n))
        });
        let max_uri = p.parse("MAX_URI", "a size from 256 to 64k such as 8k", |s| {
            parse_size(s)
                .filter(|n| (256..=65_534).contains(n))
                .map(|n| n as usize)
        });
        let h2_max_streams = p.parse("H2_MAX_STREAMS", "a whole number from 1 to 1000", |s| {
            s.parse::<u32>().ok().filter(|n| (1..=1000).contains(n))
        });
        let hide_headers = p.parse(
            "HIDE_HEADERS",
            "comma-separated header names such as server,x-powered-by",
            |s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
                    .collect::<Option<Vec<_>>>()
            },
        );
        let admin_listen = p.parse(
            "ADMIN_LISTEN",
            "a socket address such as 0.0.0.0:9901",
            |s| s.parse::<SocketAddr>().ok(),
        );
        let app_health_path = p.parse(
            "APP_HEALTH_PATH",
            "empty, or a path starting with / such as /healthz",
            |s| {
                if s.is_empty() {
                    Some(None)
                } else if s.starts_with('/') && http::uri::PathAndQuery::try_from(s).is_ok() {
                    Some(Some(s.to_string()))
                } else {
                    None
                }
            },
        );
        let app_check_interval = p.duration("APP_CHECK_INTERVAL");
        let app_check_timeout = p.duration("APP_CHECK_TIMEOUT");
        let drain_delay = p.parse(
            "DRAIN_DELAY",
            "a duration such as 0s, 5s or 10s (at most 10m)",
            |s| parse_duration(s).filter(|d| *d <= Duration::from_secs(600)),
        );
        let shutdown_timeout = p.duration("SHUTDOWN_TIMEOUT");
        let max_connections = p.parse("MAX_CONNECTIONS", "a whole number from 1 to 1000000", |s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
        });
        let upgrade_protocols = p.parse(
            "UPGRADE_PROTOCOLS",
            "none, or comma-separated protocol names such as websocket (h2c is never tunnelled)",
            parse_upgrade_protocols,
        );
        let tunnel_idle_timeout = p.duration("TUNNEL_IDLE_TIMEOUT");
        let send_timeout = p.duration("SEND_TIMEOUT");
        let park_after = p.duration("PARK_AFTER");
        let app_concurrency = p.parse(
            "APP_CONCURRENCY",
            "a whole number from 0 (no limit) to 100000",
            |s| s.parse::<usize>().ok().filter(|n| *n <= 100_000),
        );
        let app_queue = p.parse("APP_QUEUE", "a whole number from 0 to 1000000", |s| {
            s.parse::<usize>().ok().filter(|n| *n <= 1_000_000)
        });
        let app_queue_timeout = p.duration("APP_QUEUE_TIMEOUT");
        let strip_prefix = p.parse(
            "STRIP_PREFIX",
            "empty, or a path prefix starting with / such as /test01 (or /test01/)",
            |s| {
                // Both spellings mean the same prefix; kept without the slash.
                let s = s.strip_suffix('/').unwrap_or(s);
                if s.is_empty() {
                    Some(None)
                } else if valid_prefix(s) {
                    Some(Some(s.to_string()))
                } else {
                    None
                }
            },
        );
        let static_dir = p.parse("STATIC_DIR", "empty, or an existing directory", |s| {
            if s.is_empty() {
                Some(None)
            } else {
                let p = std::path::PathBuf::from(s);
                p.is_dir().then_some(Some(p))
            }
        });
        let static_prefix = p.parse(
            "STATIC_PREFIX",
            "a URL path starting with / such as /static/ (or /static)",
            |s| {
                // Both spellings mean the same prefix; kept with the slash.
                let s = s.strip_suffix('/').unwrap_or(s);
                valid_prefix(s).then(|| format!("{s}/"))
            },
        );
        let static_cache_control = p.parse(
            "STATIC_CACHE_CONTROL",
            "a valid header value, or empty",
            |s| {
                if s.is_empty() {
                    Some(None)
                } else {
                    http::HeaderValue::from_str(s).ok().map(Some)
                }
            },
        );
        let static_fallthrough = p.parse("STATIC_FALLTHROUGH", "true or false", parse_bool);
        let compression = p.parse(
            "COMPRESSION",
            "off, or a comma-separated list of gzip and br",
            parse_compression,
        );
        let compression_min_size = p.parse(
            "COMPRESSION_MIN_SIZE",
            "a size from 0 to 64k such as 1k",
            |s| parse_size(s).and_then(|n| u16::try_from(n).ok()),
        );
        let buffer_requests = p.parse(
            "BUFFER_REQUESTS",
            "off, or a size such as 64k or 1m (at most 1g)",
            |s| {
                if s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("false") {
                    Some(None)
                } else {
                    parse_size(s).filter(|n| *n > 0 && *n <= 1 << 30).map(Some)
                }
            },
        );
        let buffer_memory = p.parse(
            "BUFFER_MEMORY",
            "a size such as 64m (at least 64k, at most 64g)",
            |s| parse_size(s).filter(|n| (64 << 10..=64 << 30).contains(n)),
        );
        let buffer_dir = p.parse(
            "BUFFER_DIR",
            "empty, or an existing writable directory",
            |s| {
                if s.is_empty() {
                    Some(None)
                } else {
                    let p = std::path::PathBuf::from(s);
                    p.is_dir().then_some(Some(p))
                }
            },
        );
        let log_format = p.parse("LOG_FORMAT", "json or text", |s| {
            match s.to_ascii_lowercase().as_str() {
                "json" => Some(LogFormat::Json),
                "text" => Some(LogFormat::Text),
                _ => None,
            }
        });
        let log_filter = p.parse(
            "LOG",
            "a tracing EnvFilter directive such as info or podgate=debug,hyper=info",
            |s| {
                tracing_subscriber::EnvFilter::try_new(s)
                    .ok()
                    .map(|_| s.to_string())
            },
        );
        let access_log = p.parse("ACCESS_LOG", "true or false", parse_bool);

        let effective = VARS
            .iter()
            .map(|v| match raw.get(v.name) {
                Some(val) => (v.name, val.to_string(), Source::Env),
                None => (v.name, v.default.to_string(), Source::Default),
            })
            .collect();

        if !p.errors.is_empty() {
            return Err(ConfigError { errors: p.errors });
        }
        // Every parse above pushed an error when it returned None, so all are
        // Some here; `ok_or` keeps that visible without a panic path.
        let config = (|| {
            Some(Config {
                listen: listen?,
                app_addr: SocketAddr::new(app_host?, app_port?),
                connect_timeout: connect_timeout?,
                upstream_timeout: upstream_timeout?,
                header_timeout: header_timeout?,
                idle_timeout: idle_timeout?,
                body_timeout: body_timeout?,
                max_body: max_body.map(|b| (b > 0).then_some(b))?,
                pool_idle_timeout: pool_idle_timeout?,
                pool_max_idle: pool_max_idle?,
                trusted_proxies: trusted_proxies?,
                request_id_header: request_id_header?,
                underscore_headers: underscore_headers?,
                max_header_bytes: max_header_bytes?,
                max_headers: max_headers?,
                max_uri: max_uri?,
                h2_max_streams: h2_max_streams?,
                hide_headers: hide_headers?,
                admin_listen: admin_listen?,
                app_health_path: app_health_path?,
                app_check_interval: app_check_interval?,
                app_check_timeout: app_check_timeout?,
                drain_delay: drain_delay?,
                shutdown_timeout: shutdown_timeout?,
                max_connections: max_connections?,
                upgrade_protocols: upgrade_protocols?,
                tunnel_idle_timeout: tunnel_idle_timeout?,
                send_timeout: send_timeout?,
                park_after: park_after?,
                app_concurrency: app_concurrency?,
                app_queue: app_queue?,
                app_queue_timeout: app_queue_timeout?,
                strip_prefix: strip_prefix?,
                static_dir: static_dir?,
                static_prefix: static_prefix?,
                static_cache_control: static_cache_control?,
                static_fallthrough: static_fallthrough?,
                compression: compression?,
                compression_min_size: compression_min_size?,
                buffer_requests: buffer_requests?,
                buffer_memory: buffer_memory?,
                buffer_dir: buffer_dir?,
                log_format: log_format?,
                log_filter: log_filter?,
                access_log: access_log?,
            })
        })()
        .ok_or_else(|| ConfigError {
            errors: vec![VarError {
                var: "PODGATE_*".into(),
                value: String::new(),
                expected: "a consistent configuration (internal error)".into(),
            }],
        })?;
        if let (Some(mem), None) = (config.buffer_requests, &config.buffer_dir) {
            if config.max_body.is_none_or(|max| max > mem) {
                warnings.push(format!(
                    "PODGATE_BUFFER_REQUESTS={} without PODGATE_BUFFER_DIR: request bodies above that size get 413, below PODGATE_MAX_BODY; set PODGATE_BUFFER_DIR to spool them to disk",
                    raw.get("BUFFER_REQUESTS").unwrap_or_default()
                ));
            }
        }
        Ok(Loaded {
            config,
            warnings,
            effective,
        })
    }
}

/// A path prefix without its final slash: `/`, then a path with no query,
/// no `//` and no dot segment, so it means one place.
fn valid_prefix(s: &str) -> bool {
    s.starts_with('/')
        && s.len() > 1
        && !s.contains(['?', '#'])
        && !s.contains("//")
        && !s.split('/').any(|seg| seg == "." || seg == "..")
        && http::uri::PathAndQuery::try_from(s).is_ok()
}

/// Kubernetes injects `<SERVICE>_SERVICE_HOST`, `<SERVICE>_PORT` and
/// `<SERVICE>_PORT_<n>_<PROTO>…` for every Service in the namespace; a Service
/// named `podgate` produces these names, which are not ours.
fn is_service_link(short: &str) -> bool {
    short == "PORT" || short.starts_with("PORT_") || short.starts_with("SERVICE_")
}

struct Parser<'a> {
    raw: &'a RawConfig,
    errors: Vec<VarError>,
}

impl Parser<'_> {
    fn parse<T>(
        &mut self,
        name: &'static str,
        expected: &str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let (value, from_env) = match self.raw.get(name) {
            Some(v) => (v.trim().to_string(), true),
            None => (default_of(name).to_string(), false),
        };
        match f(&value) {
            Some(v) => Some(v),
            None => {
                self.errors.push(VarError {
                    var: format!("{PREFIX}{name}"),
                    value: if from_env {
                        value
                    } else {
                        format!("{value} (default)")
                    },
                    expected: expected.to_string(),
                });
                None
            }
        }
    }

    fn duration(&mut self, name: &'static str) -> Option<Duration> {
        self.parse(
            name,
            "a duration such as 250ms, 10s or 2m (greater than 0, at most 24h)",
            |s| parse_duration(s).filter(|d| !d.is_zero() && *d <= Duration::from_secs(86_400)),
        )
    }
}

fn default_of(name: &str) -> &'static str {
    VARS.iter()
        .find(|v| v.name == name)
        .map(|v| v.default)
        .unwrap_or("")
}

/// "250ms", "10s", "2m", "1h 30m"; a bare number is refused because its unit
/// would be a guess.
pub fn parse_duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim()).ok()
}

/// Sizes in bytes: "1048576", "512k", "10m", "1g", also "10MiB"/"10mb"
/// (binary multiples, as nginx reads them).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return None;
    }
    let n: u64 = s[..digits_end].parse().ok()?;
    let unit = s[digits_end..].trim();
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Which response encodings podgate may apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compression {
    pub gzip: bool,
    pub br: bool,
}

impl Compression {
    pub fn enabled(&self) -> bool {
        self.gzip || self.br
    }
}

fn parse_compression(s: &str) -> Option<Compression> {
    let mut c = Compression::default();
    if s.eq_ignore_ascii_case("off") || s.is_empty() {
        return Some(c);
    }
    for part in s.split(',').map(|p| p.trim().to_ascii_lowercase()) {
        match part.as_str() {
            "gzip" => c.gzip = true,
            "br" => c.br = true,
            _ => return None,
        }
    }
    Some(c)
}

/// Upgrade protocol names (RFC 9110 §7.8 tokens, compared case-blind), or
/// `none`. h2c is refused: RFC 9113 §3.1 retired that upgrade, and a tunnel
/// of HTTP/2 frames would carry requests past every check podgate makes.
fn parse_upgrade_protocols(s: &str) -> Option<Vec<String>> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("none") {
        return Some(Vec::new());
    }
    s.split(',')
        .map(|p| p.trim().to_ascii_lowercase())
        .map(|p| {
            let token = !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b));
            (token && p != "h2c").then_some(p)
        })
        .collect()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A list of CIDRs or bare addresses, comma separated; "none" or "" is empty.
pub fn parse_cidrs(s: &str) -> Option<Vec<IpNet>> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("none") {
        return Some(Vec::new());
    }
    s.split(',')
        .map(|part| {
            let part = part.trim();
            part.parse::<IpNet>()
                .ok()
                .or_else(|| part.parse::<IpAddr>().ok().map(IpNet::from))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_are_valid_and_documented() {
        let l = load(&[]).expect("defaults parse");
        assert_eq!(l.config.listen, "0.0.0.0:80".parse().unwrap());
        assert_eq!(l.config.app_addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(l.config.upstream_timeout, Duration::from_secs(60));
        assert_eq!(l.config.max_body, Some(100 << 20));
        assert!(l.config.max_body.unwrap() > 1 << 20, "above nginx's 1m");
        assert!(l.warnings.is_empty());
        assert!(l.effective.iter().all(|(_, _, s)| *s == Source::Default));
    }

    #[test]
    fn values_are_read_from_the_map() {
        let l = load(&[
            ("PODGATE_LISTEN", "127.0.0.1:8080"),
            ("PODGATE_APP_PORT", "5000"),
            ("PODGATE_CONNECT_TIMEOUT", "250ms"),
            ("PODGATE_IDLE_TIMEOUT", "2m"),
            ("PODGATE_MAX_BODY", "512k"),
            ("PODGATE_LOG_FORMAT", "TEXT"),
            ("PODGATE_ACCESS_LOG", "false"),
            ("OTHER_VAR", "ignored"),
        ])
        .unwrap();
        let c = l.config;
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.app_addr.port(), 5000);
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!(c.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.max_body, Some(512 * 1024));
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(!c.access_log);
    }

    #[test]
    fn every_bad_variable_is_reported_at_once() {
        let err = load(&[
            ("PODGATE_LISTEN", "80"),
            ("PODGATE_APP_PORT", "http"),
            ("PODGATE_UPSTREAM_TIMEOUT", "10"),
            ("PODGATE_MAX_BODY", "lots"),
            ("PODGATE_LOG_FORMAT", "xml"),
        ])
        .unwrap_err();
        let names: Vec<_> = err.errors.iter().map(|e| e.var.as_str()).collect();
        assert_eq!(
            names,
            [
                "PODGATE_LISTEN",
                "PODGATE_APP_PORT",
                "PODGATE_UPSTREAM_TIMEOUT",
                "PODGATE_MAX_BODY",
                "PODGATE_LOG_FORMAT"
            ]
        );
        let msg = err.to_string();
        assert!(msg.contains("PODGATE_APP_PORT=\"http\": expected a port number"));
        assert!(msg.contains("PODGATE_UPSTREAM_TIMEOUT=\"10\": expected a duration"));
    }

    #[test]
    fn unknown_names_warn_but_service_links_do_not() {
        let l = load(&[
            ("PODGATE_LISTN", "0.0.0.0:80"),
            ("PODGATE_PORT", "tcp://10.0.0.7:80"),
            ("PODGATE_PORT_80_TCP_ADDR", "10.0.0.7"),
            ("PODGATE_SERVICE_HOST", "10.0.0.7"),
            ("PODGATE_SERVICE_PORT", "80"),
        ])
        .unwrap();
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
        assert!(l.warnings[0].contains("PODGATE_LISTN"));
    }

    #[test]
    fn zero_body_limit_means_unlimited() {
        let l = load(&[("PODGATE_MAX_BODY", "0")]).unwrap();
        assert_eq!(l.config.max_body, None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("10MiB"), Some(10 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("k"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("1.5m"), None);
        assert_eq!(parse_size("99999999999999999999g"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("10"), None);
    }

    #[test]
    fn cidrs() {
        let v = parse_cidrs("10.0.0.0/8, 127.0.0.1,::1").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(parse_cidrs("none").unwrap().len(), 0);
        assert!(parse_cidrs("10.0.0.0/33").is_none());
    }
}
