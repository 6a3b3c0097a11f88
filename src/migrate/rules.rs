//! The mapping table: each directive, and what becomes of it.

use std::fmt::Write as _;

use super::*;

// ---------------------------------------------------------------------------
// The mapping table

/// What migrate-nginx does with a directive.
pub enum Action {
    /// Converted by a function, which may set variables, or record that
    /// nothing is needed or that (part of) it is not carried over.
    Convert(fn(&mut Ctx, &Directive)),
    /// podgate already does this (or it has no meaning for podgate): no
    /// variable is needed.
    Default(&'static str),
    /// podgate has no equivalent.
    Unsupported(&'static str),
}

/// One row of the mapping table.
pub struct Rule {
    /// Directive names; one ending in `*` matches names with that prefix.
    pub names: &'static [&'static str],
    /// The nginx column of the README table.
    pub nginx: &'static str,
    /// The podgate column for [`Action::Convert`] rows (the others say
    /// their reason).
    pub podgate: &'static str,
    /// Every variable the row can set, without the `PODGATE_` prefix.
    pub vars: &'static [&'static str],
    pub action: Action,
}

macro_rules! rule {
    ($names:expr, $nginx:expr, default $why:expr) => {
        Rule {
            names: $names,
            nginx: $nginx,
            podgate: "",
            vars: &[],
            action: Action::Default($why),
        }
    };
    ($names:expr, $nginx:expr, unsupported $why:expr) => {
        Rule {
            names: $names,
            nginx: $nginx,
            podgate: "",
            vars: &[],
            action: Action::Unsupported($why),
        }
    };
    ($names:expr, $nginx:expr, $podgate:expr, $vars:expr, $f:expr) => {
        Rule {
            names: $names,
            nginx: $nginx,
            podgate: $podgate,
            vars: $vars,
            action: Action::Convert($f),
        }
    };
}

pub(super) const PROCESS: &str = "podgate is one process with one thread per CPU of the container's limit, running as the container's user";

/// The one mapping table: the command and the README table are both made
/// from it.
pub static RULES: &[Rule] = &[
    rule!(&["http", "server", "events"], "`server { … }`, `http { … }`, `events { … }`",
        "read as one server; a second `server` block is not carried over (podgate serves one app)", &[], convert_container),
    rule!(&["listen"], "`listen 8080;`", "`PODGATE_LISTEN=0.0.0.0:8080` (`listen 80` is the default); `ssl`, `proxy_protocol` and a second address are not carried over",
        &["LISTEN"], convert_listen),
    rule!(&["server_name"], "`server_name example.com;`", default "podgate answers any Host and passes it to the app unchanged"),
    rule!(&["location"], "`location / { proxy_pass …; }`, `location /static/ { alias /app/static/; expires 1h; }`, `location /test01/ { proxy_pass http://127.0.0.1:8000/; }`",
        "`location /`: its directives apply to every request. A static location: `PODGATE_STATIC_PREFIX=/static/` `PODGATE_STATIC_DIR=/app/static` `PODGATE_STATIC_CACHE_CONTROL=\"public, max-age=3600\"` (`expires`, or `add_header Cache-Control`; none without them), `try_files $uri @app;` → `PODGATE_STATIC_FALLTHROUGH=true`. A prefix that `proxy_pass http://…/;` strips: `PODGATE_STRIP_PREFIX`. Other locations are not carried over",
        &["STATIC_DIR", "STATIC_PREFIX", "STATIC_CACHE_CONTROL", "STATIC_FALLTHROUGH", "STRIP_PREFIX"], convert_location),
    rule!(&["proxy_pass"], "`proxy_pass http://127.0.0.1:5000;`", "`PODGATE_APP_HOST=127.0.0.1` `PODGATE_APP_PORT=5000` (127.0.0.1:8000 is the default); an upstream's `server` is followed; a host name is not carried over (podgate takes an IP; in a pod the app is on 127.0.0.1)",
        &["APP_HOST", "APP_PORT"], convert_proxy_pass),
    rule!(&["upstream"], "`upstream app { server 127.0.0.1:8000 max_conns=4; keepalive 32; keepalive_timeout 2s; }`",
        "`server`: `PODGATE_APP_HOST`, `PODGATE_APP_PORT`, `max_conns` → `PODGATE_APP_CONCURRENCY`; `keepalive` → `PODGATE_POOL_MAX_IDLE`; `keepalive_timeout` → `PODGATE_POOL_IDLE_TIMEOUT`; a second server is not carried over",
        &["APP_HOST", "APP_PORT", "APP_CONCURRENCY", "POOL_MAX_IDLE", "POOL_IDLE_TIMEOUT"], convert_upstream_alone),
    rule!(&["client_max_body_size"], "`client_max_body_size 20m;`", "`PODGATE_MAX_BODY=20m` (default `100m`; nginx's default is `1m`; `0` = no limit in both)",
        &["MAX_BODY"], convert_max_body),
    rule!(&["proxy_connect_timeout"], "`proxy_connect_timeout 5s;`", "`PODGATE_CONNECT_TIMEOUT=5s` (default `2s`: the app is on loopback)",
        &["CONNECT_TIMEOUT"], convert_connect_timeout),
    rule!(&["proxy_read_timeout"], "`proxy_read_timeout 300;`", "`PODGATE_UPSTREAM_TIMEOUT=5m`; above 5m also `PODGATE_TUNNEL_IDLE_TIMEOUT` (nginx's read timeout closed quiet WebSockets too); in a WebSocket location (one that sets `Upgrade`) only `PODGATE_TUNNEL_IDLE_TIMEOUT`",
        &["UPSTREAM_TIMEOUT", "TUNNEL_IDLE_TIMEOUT"], convert_read_timeout),
    rule!(&["proxy_send_timeout"], "`proxy_send_timeout 60s;`", unsupported "podgate has no separate send timeout: PODGATE_UPSTREAM_TIMEOUT runs from the moment the request goes to the app until its response starts, so it bounds sending the request too"),
    rule!(&["send_timeout"], "`send_timeout 30s;`", "`PODGATE_SEND_TIMEOUT=30s`", &["SEND_TIMEOUT"], convert_send_timeout),
    rule!(&["client_header_timeout"], "`client_header_timeout 20s;`", "`PODGATE_HEADER_TIMEOUT=20s`", &["HEADER_TIMEOUT"], convert_header_timeout),
    rule!(&["client_body_timeout"], "`client_body_timeout 120s;`", "`PODGATE_BODY_TIMEOUT=2m`", &["BODY_TIMEOUT"], convert_body_timeout),
    rule!(&["keepalive_timeout"], "`keepalive_timeout 65;`", "`PODGATE_IDLE_TIMEOUT=65s` (in an `upstream`: `PODGATE_POOL_IDLE_TIMEOUT`); `0` and the second value (the Keep-Alive header) are not carried over",
        &["IDLE_TIMEOUT", "POOL_IDLE_TIMEOUT"], convert_keepalive_timeout),
    rule!(&["keepalive_requests"], "`keepalive_requests 1000;`", unsupported "podgate does not close a connection after a number of requests"),
    rule!(&["large_client_header_buffers"], "`large_client_header_buffers 4 16k;`", "`PODGATE_MAX_URI=16k` (a request line fits one buffer) `PODGATE_MAX_HEADER_BYTES=64k` (all of them)",
        &["MAX_URI", "MAX_HEADER_BYTES"], convert_header_buffers),
    rule!(&["client_header_buffer_size"], "`client_header_buffer_size 1k;`", default "podgate limits the whole request head with PODGATE_MAX_HEADER_BYTES (see large_client_header_buffers)"),
    rule!(&["http2_max_concurrent_streams"], "`http2_max_concurrent_streams 64;`", "`PODGATE_H2_MAX_STREAMS=64`", &["H2_MAX_STREAMS"], convert_h2_streams),
    rule!(&["http2"], "`http2 on;`", default "podgate speaks HTTP/2 cleartext to a client that starts with it, without a setting"),
    rule!(&["underscores_in_headers"], "`underscores_in_headers on;`", "`PODGATE_UNDERSCORE_HEADERS=allow` (`off` is the default: `drop`)",
        &["UNDERSCORE_HEADERS"], convert_underscores),
    rule!(&["ignore_invalid_headers"], "`ignore_invalid_headers off;`", "`PODGATE_UNDERSCORE_HEADERS=allow` (`on` is the default: `drop`); other invalid header names are refused either way",
        &["UNDERSCORE_HEADERS"], convert_ignore_invalid),
    rule!(&["set_real_ip_from"], "`set_real_ip_from 10.0.0.0/8;`", "`PODGATE_TRUSTED_PROXIES=10.0.0.0/8` (every `set_real_ip_from`, comma separated)",
        &["TRUSTED_PROXIES"], convert_real_ip_from),
    rule!(&["real_ip_header"], "`real_ip_header X-Forwarded-For;`", "nothing to do: podgate reads X-Forwarded-For (and Forwarded) from trusted peers; `X-Real-IP` and `proxy_protocol` are not carried over",
        &[], convert_real_ip_header),
    rule!(&["real_ip_recursive"], "`real_ip_recursive on;`", "nothing to do: podgate takes the right-most address that is not a trusted proxy; `off` is not carried over",
        &[], convert_real_ip_recursive),
    rule!(&["proxy_hide_header"], "`proxy_hide_header X-Powered-By;`", "`PODGATE_HIDE_HEADERS=x-powered-by` (every `proxy_hide_header`, comma separated)",
        &["HIDE_HEADERS"], convert_hide_header),
    rule!(&["proxy_set_header"], "`proxy_set_header Host $host;`, `X-Forwarded-For $proxy_add_x_forwarded_for`, `X-Real-IP`, `X-Forwarded-Proto`/`-Host`/`-Port`, `Upgrade $http_upgrade`, `Connection \"upgrade\"`",
        "nothing to do: podgate keeps Host, sets X-Forwarded-For/-Proto/-Host/-Port, X-Real-IP and Forwarded itself and tunnels upgrades; any other header is not carried over",
        &[], convert_set_header),
    rule!(&["proxy_http_version"], "`proxy_http_version 1.1;`", "nothing to do: podgate always speaks HTTP/1.1 with keep-alive to the app; `1.0` is not carried over",
        &[], convert_http_version),
    rule!(&["proxy_redirect"], "`proxy_redirect off;`", "nothing to do: podgate does not rewrite Location (it keeps Host, so the app's redirects are right); a rewrite rule is not carried over",
        &[], convert_proxy_redirect),
    rule!(&["proxy_buffering"], "`proxy_buffering off;`", "nothing to do: podgate streams responses; `on` is not carried over",
        &[], convert_proxy_buffering),
    rule!(&["proxy_buffers", "proxy_buffer_size", "proxy_busy_buffers_size", "proxy_max_temp_file_size", "proxy_temp_file_write_size", "proxy_temp_path"],
        "`proxy_buffers 8 16k;`, `proxy_buffer_size`, `proxy_max_temp_file_size`", unsupported "podgate streams responses to the client; it keeps no response buffers to size"),
    rule!(&["proxy_request_buffering"], "`proxy_request_buffering on;`", "`PODGATE_BUFFER_REQUESTS` = `client_body_buffer_size` (nginx's default `16k` if unset); `off` is the default",
        &["BUFFER_REQUESTS"], convert_request_buffering),
    rule!(&["client_body_buffer_size"], "`client_body_buffer_size 1m;`", "`PODGATE_BUFFER_REQUESTS=1m` (bodies up to it are read whole before the app is contacted); nothing with `proxy_request_buffering off`",
        &["BUFFER_REQUESTS"], convert_body_buffer_size),
    rule!(&["client_body_temp_path"], "`client_body_temp_path /tmp/body;`", "`PODGATE_BUFFER_DIR=/tmp/body` (an existing writable directory: mount an `emptyDir`)",
        &["BUFFER_DIR"], convert_body_temp_path),
    rule!(&["gzip"], "`gzip on;`", "`PODGATE_COMPRESSION=gzip` (with `brotli on;`: `gzip,br`); `off` is the default", &["COMPRESSION"], convert_gzip),
    rule!(&["brotli"], "`brotli on;`", "`PODGATE_COMPRESSION=br` (with `gzip on;`: `gzip,br`)", &["COMPRESSION"], convert_brotli),
    rule!(&["gzip_min_length", "brotli_min_length"], "`gzip_min_length 256;`", "`PODGATE_COMPRESSION_MIN_SIZE=256` (default `1k`)", &["COMPRESSION_MIN_SIZE"], convert_gzip_min_length),
    rule!(&["gzip_types", "brotli_types"], "`gzip_types text/css application/json …;`", default "podgate compresses every type except images, event streams and already-encoded responses"),
    rule!(&["gzip_vary"], "`gzip_vary on;`", default "podgate adds Vary: Accept-Encoding to every response it may compress"),
    rule!(&["gzip_proxied"], "`gzip_proxied any;`", default "podgate compresses whether or not the request came through another proxy"),
    rule!(&["gzip_http_version", "gzip_buffers", "brotli_buffers", "brotli_window"], "`gzip_http_version 1.1;`, `gzip_buffers`", default "podgate compresses for HTTP/1.1 and HTTP/2 clients alike, with buffers it sizes itself"),
    rule!(&["gzip_comp_level", "brotli_comp_level"], "`gzip_comp_level 5;`", unsupported "podgate compresses at a fixed level (gzip: 6, zlib's default)"),
    rule!(&["gzip_disable"], "`gzip_disable \"msie6\";`", unsupported "podgate has no per-User-Agent exceptions"),
    rule!(&["gzip_static", "brotli_static"], "`gzip_static on;`", default "podgate serves a `.gz`/`.br` file next to a static file when the client accepts it"),
    rule!(&["rewrite"], "`rewrite ^/test01/(.*)$ /$1 break;`, `rewrite ^/test01(/.*)$ $1 break;`", "`PODGATE_STRIP_PREFIX=/test01` (requests outside the prefix get 404, where nginx passed them on unchanged); any other rewrite is not carried over",
        &["STRIP_PREFIX"], convert_rewrite),
    rule!(&["alias"], "`alias` outside a static location", unsupported "podgate serves one directory under one prefix (see `location`)"),
    rule!(&["root", "index"], "`root /usr/share/nginx/html;`, `index index.html;` (server level)", default "only used for files nginx served itself; here requests go to the app (a static location's `root` is carried over)"),
    rule!(&["expires"], "`expires 1h;` outside a static location", unsupported "podgate sets Cache-Control only on its static files; the app sets its own"),
    rule!(&["add_header"], "`add_header X-Frame-Options DENY;`", unsupported "podgate adds no response headers of its own choosing; set them in the app (Django: SecurityMiddleware)"),
    rule!(&["access_log"], "`access_log off;`, `access_log /var/log/nginx/access.log main;`", "`off`: `PODGATE_ACCESS_LOG=false`; a file: nothing to do (podgate writes one access line per request to stdout, where `kubectl logs` reads it)",
        &["ACCESS_LOG"], convert_access_log),
    rule!(&["log_format"], "`log_format main '…';`", unsupported "podgate's access line has fixed fields, as JSON or text (PODGATE_LOG_FORMAT)"),
    rule!(&["error_log"], "`error_log /dev/stderr warn;`", "`PODGATE_LOG=warn` (`notice`, `info`: the default `info`; `crit` and above: `error`)", &["LOG"], convert_error_log),
    rule!(&["include"], "`include mime.types;`, `include conf.d/*.conf;`", "`mime.types`: nothing to do (podgate knows the types of static files); another file is not read: run `podgate migrate-nginx` on it too",
        &[], convert_include),
    rule!(&["default_type", "types", "charset_types"], "`default_type application/octet-stream;`", default "podgate sets the content type of static files from their extension; the app's responses keep the app's"),
    rule!(&["user", "worker_processes", "worker_rlimit_nofile", "worker_cpu_affinity", "pid", "daemon", "master_process", "worker_shutdown_timeout", "multi_accept", "accept_mutex", "use"],
        "`user nginx;`, `worker_processes auto;`, `pid …;`", default PROCESS),
    rule!(&["worker_connections"], "`worker_connections 1024;`", default "podgate bounds client connections for the whole process with PODGATE_MAX_CONNECTIONS (default 10000)"),
    rule!(&["sendfile", "tcp_nopush", "tcp_nodelay", "aio", "directio", "output_buffers", "reset_timedout_connection", "lingering_close", "lingering_time", "lingering_timeout"],
        "`sendfile on;`, `tcp_nopush on;`, `tcp_nodelay on;`", default "socket tuning podgate does itself"),
    rule!(&["types_hash_max_size", "types_hash_bucket_size", "server_names_hash_bucket_size", "server_names_hash_max_size", "proxy_headers_hash_max_size", "proxy_headers_hash_bucket_size", "variables_hash_max_size", "variables_hash_bucket_size", "map_hash_bucket_size", "map_hash_max_size"],
        "`types_hash_max_size 2048;`, `server_names_hash_bucket_size`", default "sizes of nginx's internal tables; podgate has none to size"),
    rule!(&["server_tokens"], "`server_tokens off;`", default "podgate adds no Server header of its own (the app's passes unless PODGATE_HIDE_HEADERS=server)"),
    rule!(&["absolute_redirect", "port_in_redirect", "server_name_in_redirect"], "`port_in_redirect off;`", default "podgate makes no redirects of its own"),
    rule!(&["resolver", "resolver_timeout"], "`resolver 10.96.0.10;`", default "podgate needs no DNS: it reaches the app by IP"),
    rule!(&["client_body_in_file_only", "client_body_in_single_buffer"], "`client_body_in_file_only on;`", unsupported "podgate spools only bodies above PODGATE_BUFFER_REQUESTS to PODGATE_BUFFER_DIR"),
    rule!(&["proxy_next_upstream", "proxy_next_upstream_tries", "proxy_next_upstream_timeout"], "`proxy_next_upstream error timeout;`", unsupported "podgate forwards to one app; it retries a request once, on a fresh connection, only when a kept-alive connection was closed under it and the retry is safe"),
    rule!(&["proxy_intercept_errors", "error_page"], "`error_page 502 /502.html;`, `proxy_intercept_errors on;`", unsupported "podgate passes the app's error responses as they are and answers its own errors with a short plain-text body"),
    rule!(&["proxy_ignore_client_abort"], "`proxy_ignore_client_abort on;`", unsupported "podgate drops the request to the app when the client goes away"),
    rule!(&["proxy_cache*", "proxy_no_cache", "proxy_store*"], "`proxy_cache`, `proxy_cache_path`, `proxy_cache_valid`", unsupported "podgate caches nothing; put a cache in front (a CDN, the ingress) or in the app"),
    rule!(&["auth_basic", "auth_basic_user_file", "auth_request", "auth_request_set", "satisfy", "allow", "deny"], "`auth_basic`, `auth_request`, `allow`/`deny`", unsupported "podgate does no authentication or access control; do it in the app, the ingress, or a NetworkPolicy"),
    rule!(&["limit_req", "limit_req_zone", "limit_req_status", "limit_req_log_level", "limit_rate", "limit_rate_after"], "`limit_req zone=one burst=5;`, `limit_rate`", unsupported "podgate does no rate limiting; PODGATE_APP_CONCURRENCY bounds the requests in flight to the app"),
    rule!(&["limit_conn", "limit_conn_zone", "limit_conn_status", "limit_conn_log_level"], "`limit_conn addr 10;`", unsupported "podgate has no per-client connection limit; PODGATE_MAX_CONNECTIONS bounds all client connections, PODGATE_H2_MAX_STREAMS the requests of one HTTP/2 connection"),
    rule!(&["map"], "`map $http_upgrade $connection_upgrade { default upgrade; '' close; }`",
        "nothing to do for the WebSocket `Connection` map: podgate tunnels upgrades itself; any other map is not carried over", &[], convert_map),
    rule!(&["if", "return", "set", "geo", "split_clients", "try_files", "limit_except", "break"], "`if (…) { … }`, `return 301 …;`, `set`, `geo`, `try_files`", unsupported "podgate has no request rules: every request outside the static prefix goes to the app"),
    rule!(&["ssl*", "proxy_ssl*", "http3", "quic*"], "`ssl_certificate …;`", unsupported "podgate speaks plain HTTP: TLS ends at the ingress or a service mesh"),
    rule!(&["sub_filter*", "proxy_pass_header", "proxy_ignore_headers", "proxy_cookie_domain", "proxy_cookie_path", "proxy_cookie_flags", "proxy_pass_request_headers", "proxy_pass_request_body", "proxy_set_body", "proxy_method"],
        "`sub_filter`, `proxy_cookie_path`, `proxy_pass_header`", unsupported "podgate forwards requests and responses as they are, apart from its documented header handling"),
    rule!(&["stub_status"], "`stub_status;`", unsupported "use podgate's admin port: GET :9901/metrics (Prometheus) and /status (JSON)"),
    rule!(&["fastcgi_pass", "uwsgi_pass", "scgi_pass", "grpc_pass", "fastcgi*", "uwsgi*", "scgi*", "grpc*"], "`uwsgi_pass`, `fastcgi_pass`, `grpc_pass`", unsupported "podgate speaks HTTP/1.1 to the app: run the app with an HTTP server (gunicorn, uvicorn)"),
    rule!(&["charset", "source_charset"], "`charset utf-8;`", unsupported "podgate does not change Content-Type: set the charset in the app"),
    rule!(&["autoindex"], "`autoindex on;`", unsupported "podgate lists no directories"),
];

/// The rule for a directive name: an exact name first, then a prefix.
pub fn rule_for(name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.names.contains(&name)).or_else(|| {
        RULES.iter().find(|r| {
            r.names
                .iter()
                .any(|n| n.strip_suffix('*').is_some_and(|p| name.starts_with(p)))
        })
    })
}

/// The README's migration table, in Markdown.
pub fn table() -> String {
    let mut s = String::from("| nginx sidecar directive | podgate |\n|---|---|\n");
    for r in RULES {
        let podgate = match r.action {
            Action::Convert(_) => r.podgate.to_string(),
            Action::Default(why) => format!("nothing to do: {why}"),
            Action::Unsupported(why) => format!("not carried over: {why}"),
        };
        let _ = writeln!(s, "| {} | {} |", r.nginx, podgate.replace('|', "\\|"));
    }
    s
}
