//! Configuration: `PODGATE_*` environment variables, read once with envy,
//! then validated into a typed [`Config`].
//!
//! Each variable is one entry of the `settings!` table below: its field
//! (where the value goes), type, name, default, parser and help text. The
//! `Config` struct, the list of known names (unknown-variable warnings),
//! `podgate config`, `/status` and the README table all come from it, so
//! adding a setting is one edit here.
//!
//! Every variable is parsed before failing, so an operator sees all mistakes
//! at once. Tests feed a map through [`Config::from_vars`]; nothing here
//! reads the process environment except [`Config::from_env`].

mod checks;
mod parse;
mod sections;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::headers::UnderscorePolicy;
use parse::{duration, Parse};
pub use parse::{parse_cidrs, parse_duration, parse_size};

pub const PREFIX: &str = "PODGATE_";

/// One documented variable: its name without the prefix, its default as
/// written in the README, and what it means. The README table is checked
/// against this list by a test, so docs and code cannot drift.
pub struct VarDoc {
    pub name: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

macro_rules! settings {
    ($( $field:ident: $ty:ty = $name:literal, $default:literal, $parse:expr, $meaning:literal; )*) => {
        /// Every variable podgate reads, in README order.
        pub const VARS: &[VarDoc] = &[
            $( VarDoc { name: $name, default: $default, meaning: $meaning }, )*
        ];

        /// The validated configuration, passed down from `main`; one field
        /// per variable.
        #[derive(Debug, Clone)]
        pub struct Config {
            $( #[doc = $meaning] pub $field: $ty, )*
        }

        /// Parses every variable (collecting each error), then builds the
        /// config only if all parsed.
        fn parse_all(p: &mut Parser<'_>) -> Option<Config> {
            $( let $field = p.parse($name, $parse); )*
            Some(Config { $( $field: $field?, )* })
        }
    };
}

settings! {
    listen: Option<SocketAddr> = "LISTEN", "0.0.0.0:80",
        parse::listen_addr("a socket address such as 0.0.0.0:80 or [::]:80, or off"),
        "Address and port podgate accepts plain HTTP client traffic on; `off` for none (TLS only).";
    tls_listen: Option<SocketAddr> = "TLS_LISTEN", "",
        parse::listen_addr("empty (no TLS listener), or a socket address such as 0.0.0.0:443"),
        "Empty: no TLS. An address such as 0.0.0.0:443: a TLS listener (TLS 1.2 and 1.3, ALPN h2 and http/1.1) beside the plain one, with the same request path and limits; the handshake counts against HEADER_TIMEOUT (nginx: listen 443 ssl).";
    tls_cert: Option<PathBuf> = "TLS_CERT", "", parse::optional_file("empty, or a readable PEM file"),
        "With TLS_LISTEN: the certificate chain, PEM, leaf first (a kubernetes.io/tls Secret's tls.crt). Re-read every 5s: a renewed certificate is served to new handshakes without a restart (nginx: ssl_certificate).";
    tls_key: Option<PathBuf> = "TLS_KEY", "", parse::optional_file("empty, or a readable PEM file"),
        "With TLS_LISTEN: the private key, PEM, RSA or ECDSA (tls.key); must match TLS_CERT (nginx: ssl_certificate_key).";
    tls_client_ca: Option<PathBuf> = "TLS_CLIENT_CA", "", parse::optional_file("empty, or a readable PEM file"),
        "With TLS_LISTEN: CA certificates (PEM bundle); when set, a client must present a certificate they signed or the handshake is refused, so only the ingress holding one reaches the pod (nginx: ssl_verify_client on + ssl_client_certificate).";
    app_host: IpAddr = "APP_HOST", "127.0.0.1", parse::ip_addr(),
        "IP address of the app inside the pod (an IP, so no DNS is needed).";
    app_port: u16 = "APP_PORT", "8000",
        Parse::new("a port number from 1 to 65535", |s| s.parse::<u16>().ok().filter(|p| *p != 0)),
        "Port the app listens on.";
    connect_timeout: Duration = "CONNECT_TIMEOUT", "2s", duration(),
        "Time allowed to open a connection to the app; past it the client gets 504 (nginx: proxy_connect_timeout). A refused connection is 502 at once.";
    upstream_timeout: Duration = "UPSTREAM_TIMEOUT", "60s", duration(),
        "Time allowed for the app to start its response once the request body is sent, and the longest pause of the app in taking a request body or inside a response body; past it 504 (nginx: proxy_read_timeout, proxy_send_timeout). A slow client upload is BODY_TIMEOUT's.";
    header_timeout: Duration = "HEADER_TIMEOUT", "10s", duration(),
        "A client must send a whole request head within this time of its first byte (or of connecting); slow clients are cut off.";
    idle_timeout: Duration = "IDLE_TIMEOUT", "75s", duration(),
        "Idle client keep-alive connections are closed after this. Keep it above the ingress controller's upstream keep-alive (ingress-nginx: 60s).";
    body_timeout: Duration = "BODY_TIMEOUT", "60s", duration(),
        "Longest pause allowed while a client sends a request body; past it the upload is aborted and the app sees an incomplete request (nginx: client_body_timeout).";
    max_body: Option<u64> = "MAX_BODY", "100m",
        Parse::new("a size such as 1048576, 512k, 10m or 1g (0 = no limit)", |s| parse_size(s).map(|b| (b > 0).then_some(b))),
        "Largest request body; larger ones get 413, also when chunked (if the app has already started answering, the connection is cut instead, and the app sees an aborted upload). 0 = no limit (nginx: client_max_body_size, default 1m).";
    pool_idle_timeout: Duration = "POOL_IDLE_TIMEOUT", "1s", duration(),
        "How long an idle keep-alive connection to the app is kept. Keep it below the app's keep-alive (gunicorn: 2s, uvicorn: 5s).";
    pool_max_idle: usize = "POOL_MAX_IDLE", "64",
        Parse::new("a whole number from 0 to 100000", |s| s.parse::<usize>().ok().filter(|n| *n <= 100_000)),
        "Most idle keep-alive connections kept open to the app.";
    trusted_proxies: Vec<IpNet> = "TRUSTED_PROXIES", "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,127.0.0.0/8,fc00::/7,::1/128",
        Parse::new("comma-separated CIDRs or addresses such as 10.0.0.0/8,192.168.1.7, or none", parse_cidrs),
        "Peers (CIDRs, comma separated, or `none`) whose X-Forwarded-* and Forwarded headers are believed. The default is the private ranges pod and node addresses come from: the ingress controller and the kubelet.";
    request_id_header: http::HeaderName = "REQUEST_ID_HEADER", "x-request-id",
        Parse::new("a header name such as x-request-id", |s| http::HeaderName::from_bytes(s.as_bytes()).ok()),
        "Header carrying the request id: kept when a client sends a short printable one, generated otherwise, returned on the response and logged.";
    underscore_headers: UnderscorePolicy = "UNDERSCORE_HEADERS", "drop", parse::underscore_policy(),
        "Request header names with `_`: drop, reject (400) or allow. They alias dash names in WSGI/CGI (X_Forwarded_For = X-Forwarded-For).";
    max_header_bytes: usize = "MAX_HEADER_BYTES", "32k",
        Parse::new("a size from 8k to 1m such as 32k", |s| parse_size(s).filter(|n| (8192..=1 << 20).contains(n)).map(|n| n as usize)),
        "Largest request head (request line plus headers); larger gets 431 (nginx: large_client_header_buffers).";
    max_headers: usize = "MAX_HEADERS", "100",
        Parse::new("a whole number from 1 to 1000", |s| s.parse::<usize>().ok().filter(|n| (1..=1000).contains(n))),
        "Most request header fields; more gets 431.";
    max_uri: usize = "MAX_URI", "8k",
        Parse::new("a size from 256 to 64k such as 8k", |s| parse_size(s).filter(|n| (256..=65_534).contains(n)).map(|n| n as usize)),
        "Longest request target (path and query); longer gets 414.";
    h2_max_streams: u32 = "H2_MAX_STREAMS", "100",
        Parse::new("a whole number from 1 to 1000", |s| s.parse::<u32>().ok().filter(|n| (1..=1000).contains(n))),
        "Most concurrent requests (streams) one HTTP/2 client connection may have open; each can take an app connection, so this bounds what one client can hold (nginx: http2_max_concurrent_streams 128, Envoy: 100). With APP_CONCURRENCY, the app-wide bound.";
    hide_headers: Vec<http::HeaderName> = "HIDE_HEADERS", "",
        Parse::new("comma-separated header names such as server,x-powered-by", |s| {
            s.split(',').map(str::trim).filter(|n| !n.is_empty())
                .map(|n| http::HeaderName::from_bytes(n.as_bytes()).ok()).collect()
        }),
        "Response headers to remove, comma separated, e.g. `server,x-powered-by` (nginx: proxy_hide_header).";
    admin_listen: SocketAddr = "ADMIN_LISTEN", "0.0.0.0:9901",
        parse::socket_addr("a socket address such as 0.0.0.0:9901"),
        "Address of the admin listener (/livez, /readyz, /metrics, /status); separate from the proxy port so it never shadows an app path.";
    app_health_path: Option<String> = "APP_HEALTH_PATH", "",
        Parse::new("empty, or a path starting with / such as /healthz", |s| {
            if s.is_empty() {
                Some(None)
            } else {
                (s.starts_with('/') && http::uri::PathAndQuery::try_from(s).is_ok()).then(|| Some(s.to_string()))
            }
        }),
        "Empty: readiness checks the app with a TCP connect. A path such as /healthz: an HTTP GET that must answer 2xx or 3xx.";
    app_check_interval: Duration = "APP_CHECK_INTERVAL", "2s", duration(),
        "How often the app is checked for readiness (every 200ms until it first answers). Probes read the cached result.";
    app_check_timeout: Duration = "APP_CHECK_TIMEOUT", "1s", duration(),
        "Time allowed for one app check.";
    drain_delay: Duration = "DRAIN_DELAY", "5s",
        Parse::new("a duration such as 0s, 5s or 10s (at most 10m)", |s| parse_duration(s).filter(|d| *d <= Duration::from_secs(600))),
        "On SIGTERM, keep serving this long with readiness off, so endpoints and the ingress stop sending first.";
    shutdown_timeout: Duration = "SHUTDOWN_TIMEOUT", "20s", duration(),
        "After the drain delay, how long in-flight requests and tunnels may take to finish before podgate exits. Keep DRAIN_DELAY + SHUTDOWN_TIMEOUT below terminationGracePeriodSeconds (30s by default).";
    max_connections: usize = "MAX_CONNECTIONS", "10000",
        Parse::new("a whole number from 1 to 1000000", |s| s.parse::<usize>().ok().filter(|n| (1..=1_000_000).contains(n))),
        "Most client connections open at once, tunnels (WebSocket) included until both sides close; further ones wait in the kernel's backlog.";
    upgrade_protocols: Vec<String> = "UPGRADE_PROTOCOLS", "websocket",
        Parse::new("none, or comma-separated protocol names such as websocket (h2c is never tunnelled)", parse::parse_upgrade_protocols),
        "Upgrade protocols tunnelled to the app, comma separated, or `none`. Any other `Upgrade` (h2c among them) is removed and the request forwarded as a plain one; an app answering 101 to an upgrade not asked for gets the client a 502.";
    tunnel_idle_timeout: Duration = "TUNNEL_IDLE_TIMEOUT", "5m", duration(),
        "A tunnel (WebSocket) with no byte either way for this long is closed, so tunnels to vanished peers do not pile up. Ten times a 30s ping interval: a live socket with a heartbeat never meets it (nginx: proxy_read_timeout, 60s, which closes quiet WebSockets).";
    send_timeout: Duration = "SEND_TIMEOUT", "60s", duration(),
        "When no response byte could be written to a client for this long (it stopped reading), the response is aborted, its connection closed and the app connection freed (nginx: send_timeout, 60s).";
    park_after: Duration = "PARK_AFTER", "1s", duration(),
        "An idle HTTP/1 keep-alive connection gives up its buffers after this (only the socket is kept until the client sends again), as nginx frees a keep-alive connection's buffers.";
    app_concurrency: usize = "APP_CONCURRENCY", "0",
        Parse::new("a whole number from 0 (no limit) to 100000", |s| s.parse::<usize>().ok().filter(|n| *n <= 100_000)),
        "Most requests in flight to the app at once, e.g. the gunicorn worker count; 0 = no limit. Further requests queue.";
    app_queue: usize = "APP_QUEUE", "100",
        Parse::new("a whole number from 0 to 1000000", |s| s.parse::<usize>().ok().filter(|n| *n <= 1_000_000)),
        "With APP_CONCURRENCY: most requests waiting for a slot; beyond it 503 with Retry-After at once.";
    app_queue_timeout: Duration = "APP_QUEUE_TIMEOUT", "5s", duration(),
        "With APP_CONCURRENCY: longest wait for a slot; past it 503 with Retry-After.";
    strip_prefix: Option<String> = "STRIP_PREFIX", "",
        Parse::new("empty, or a path prefix starting with / such as /test01 (or /test01/)", |s| {
            // Both spellings mean the same prefix; kept without the slash.
            let s = s.strip_suffix('/').unwrap_or(s);
            if s.is_empty() {
                Some(None)
            } else {
                parse::valid_prefix(s).then(|| Some(s.to_string()))
            }
        }),
        "A path prefix such as /test01 removed before the app sees the path (X-Forwarded-Prefix is set); requests outside it get 404 (nginx: rewrite, ingress-nginx: rewrite-target).";
    static_dir: Option<PathBuf> = "STATIC_DIR", "", parse::optional_dir("empty, or an existing directory"),
        "Serve files from this directory (e.g. a volume the app's collectstatic filled) under STATIC_PREFIX, without the app (nginx: location /static/ { alias …; }).";
    static_prefix: String = "STATIC_PREFIX", "/static/",
        Parse::new("a URL path starting with / such as /static/ (or /static)", |s| {
            // Both spellings mean the same prefix; kept with the slash.
            let s = s.strip_suffix('/').unwrap_or(s);
            parse::valid_prefix(s).then(|| format!("{s}/"))
        }),
        "URL prefix of the static files.";
    static_cache_control: Option<http::HeaderValue> = "STATIC_CACHE_CONTROL", "public, max-age=3600",
        Parse::new("a valid header value, or empty", |s| {
            if s.is_empty() {
                Some(None)
            } else {
                http::HeaderValue::from_str(s).ok().map(Some)
            }
        }),
        "Cache-Control sent with static files; empty = none.";
    static_fallthrough: bool = "STATIC_FALLTHROUGH", "false", parse::boolean(),
        "true: a static path with no file goes to the app; false: 404 from podgate.";
    compression: Compression = "COMPRESSION", "off",
        Parse::new("off, or a comma-separated list of gzip and br", parse::parse_compression),
        "Compress responses for clients that accept it: off, or a list of gzip and br (nginx: gzip on).";
    compression_min_size: u16 = "COMPRESSION_MIN_SIZE", "1k",
        Parse::new("a size from 0 to 64k such as 1k", |s| parse_size(s).and_then(|n| u16::try_from(n).ok())),
        "Responses smaller than this are not compressed.";
    buffer_requests: Option<u64> = "BUFFER_REQUESTS", "off",
        Parse::new("off, or a size such as 64k or 1m (at most 1g)", |s| {
            if s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("false") {
                Some(None)
            } else {
                parse_size(s).filter(|n| *n > 0 && *n <= 1 << 30).map(Some)
            }
        }),
        "off, or a size such as 1m: request bodies up to it are read whole into memory before the app is contacted, so a slow upload never holds an app worker (nginx: proxy_request_buffering on).";
    buffer_memory: u64 = "BUFFER_MEMORY", "64m",
        Parse::new("a size such as 64m (at least 64k, at most 64g)", |s| parse_size(s).filter(|n| (64 << 10..=64 << 30).contains(n))),
        "With BUFFER_REQUESTS: memory all buffered bodies together may use. Past it a body is spooled to BUFFER_DIR, or refused with 503 and Retry-After when there is none.";
    buffer_dir: Option<PathBuf> = "BUFFER_DIR", "", parse::optional_dir("empty, or an existing writable directory"),
        "With BUFFER_REQUESTS: bodies above the memory size are spooled to a file in this directory first; empty = such bodies get 413.";
    log_format: LogFormat = "LOG_FORMAT", "json", parse::log_format(),
        "Log format on stdout: json or text.";
    log_filter: String = "LOG", "info",
        Parse::new("a tracing EnvFilter directive such as info or podgate=debug,hyper=info", |s| {
            tracing_subscriber::EnvFilter::try_new(s).ok().map(|_| s.to_string())
        }),
        "Filter for podgate's event log, a tracing EnvFilter directive such as `debug` or `podgate=debug,hyper=info`. Access lines are switched by ACCESS_LOG alone.";
    access_log: bool = "ACCESS_LOG", "true", parse::boolean(),
        "One log line per proxied request: true or false.";
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
        // envy lowercases the names it strips the prefix from.
        let raw: Raw = envy::prefixed(PREFIX)
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
        let config = parse_all(&mut p);
        p.errors.extend(checks::listeners_named(&raw));
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
        // Every parse pushed an error when it returned None, so this is Some
        // here; `ok_or` keeps that visible without a panic path.
        let config = config.ok_or_else(|| ConfigError {
            errors: vec![VarError {
                var: "PODGATE_*".into(),
                value: String::new(),
                expected: "a consistent configuration (internal error)".into(),
            }],
        })?;
        let mut errors = Vec::new();
        checks::tls_files(&config, &mut errors, &mut warnings);
        if !errors.is_empty() {
            return Err(ConfigError { errors });
        }
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

    /// The app's address, from APP_HOST and APP_PORT.
    pub fn app_addr(&self) -> SocketAddr {
        SocketAddr::new(self.app_host, self.app_port)
    }
}

/// The raw environment: the documented names, lowercased without the
/// prefix, as envy hands them over. Nothing is interpreted yet, so every
/// error can be collected.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(transparent)]
struct Raw(BTreeMap<String, String>);

impl Raw {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// Kubernetes injects `<SERVICE>_SERVICE_HOST`, `<SERVICE>_PORT` and
/// `<SERVICE>_PORT_<n>_<PROTO>…` for every Service in the namespace; a Service
/// named `podgate` produces these names, which are not ours.
fn is_service_link(short: &str) -> bool {
    short == "PORT" || short.starts_with("PORT_") || short.starts_with("SERVICE_")
}

struct Parser<'a> {
    raw: &'a Raw,
    errors: Vec<VarError>,
}

impl Parser<'_> {
    fn parse<T>(&mut self, name: &'static str, parse: Parse<T>) -> Option<T> {
        let (value, from_env) = match self.raw.get(name) {
            Some(v) => (v.trim().to_string(), true),
            None => (default_of(name).to_string(), false),
        };
        let parsed = (parse.f)(&value);
        if parsed.is_none() {
            self.errors.push(VarError {
                var: format!("{PREFIX}{name}"),
                value: if from_env {
                    value
                } else {
                    format!("{value} (default)")
                },
                expected: parse.expected.to_string(),
            });
        }
        parsed
    }
}

fn default_of(name: &str) -> &'static str {
    VARS.iter()
        .find(|v| v.name == name)
        .map(|v| v.default)
        .unwrap_or("")
}
