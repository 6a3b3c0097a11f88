//! The converters of single directives: limits, timeouts, headers,
//! buffering, compression, rewrites, logs.

use super::*;

pub(super) fn convert_max_body(ctx: &mut Ctx, d: &Directive) {
    let Some(a) = one_arg(ctx, d) else { return };
    match nginx_size(a) {
        Some(n) => ctx.set("MAX_BODY", podgate_size(n), d),
        None => ctx.drop(d, format!("{a:?} is not an nginx size such as 10m")),
    }
}

pub(super) fn convert_connect_timeout(ctx: &mut Ctx, d: &Directive) {
    time_var(ctx, d, "CONNECT_TIMEOUT");
}

pub(super) fn convert_read_timeout(ctx: &mut Ctx, d: &Directive) {
    if ctx.in_location.is_some() {
        // Only reached in a WebSocket location: there nginx's read timeout
        // is how long a quiet tunnel lives.
        if time_var(ctx, d, "TUNNEL_IDLE_TIMEOUT").is_some() {
            ctx.note(
                "TUNNEL_IDLE_TIMEOUT",
                "in a WebSocket location nginx's read timeout is how long a quiet tunnel lives",
            );
        }
        return;
    }
    if let Some(t) = time_var(ctx, d, "UPSTREAM_TIMEOUT") {
        let tunnel_default = config::parse_duration(Ctx::var_default("TUNNEL_IDLE_TIMEOUT"));
        if tunnel_default.is_some_and(|def| t > def) {
            ctx.set("TUNNEL_IDLE_TIMEOUT", podgate_time(t), d);
        }
    }
}

pub(super) fn convert_send_timeout(ctx: &mut Ctx, d: &Directive) {
    time_var(ctx, d, "SEND_TIMEOUT");
}

pub(super) fn convert_header_timeout(ctx: &mut Ctx, d: &Directive) {
    time_var(ctx, d, "HEADER_TIMEOUT");
}

pub(super) fn convert_body_timeout(ctx: &mut Ctx, d: &Directive) {
    time_var(ctx, d, "BODY_TIMEOUT");
}

pub(super) fn convert_keepalive_timeout(ctx: &mut Ctx, d: &Directive) {
    if ctx.in_upstream {
        time_var(ctx, d, "POOL_IDLE_TIMEOUT");
        return;
    }
    let Some(first) = d.arg(0) else {
        ctx.drop(d, "keepalive_timeout needs a time");
        return;
    };
    match nginx_time(first) {
        Some(t) if t.is_zero() => {
            ctx.drop(
                d,
                "podgate always keeps client connections alive (PODGATE_IDLE_TIMEOUT)",
            );
        }
        Some(t) => {
            ctx.set("IDLE_TIMEOUT", podgate_time(t), d);
            if d.args.len() > 1 {
                ctx.drop(d, "the second value: podgate sends no `Keep-Alive: timeout=` header (the first is carried over)");
            }
        }
        None => ctx.drop(d, format!("{first:?} is not an nginx time")),
    }
}

pub(super) fn convert_header_buffers(ctx: &mut Ctx, d: &Directive) {
    match d.args.as_slice() {
        [n, size] => match (n.parse::<u64>(), nginx_size(size)) {
            (Ok(n), Some(size)) if n.checked_mul(size).is_some() => {
                ctx.set("MAX_URI", podgate_size(size), d);
                ctx.set("MAX_HEADER_BYTES", podgate_size(n * size), d);
            }
            _ => ctx.drop(d, "expected a number and a size, such as 4 8k"),
        },
        _ => ctx.drop(d, "expected a number and a size, such as 4 8k"),
    }
}

pub(super) fn convert_h2_streams(ctx: &mut Ctx, d: &Directive) {
    let Some(a) = one_arg(ctx, d) else { return };
    ctx.set("H2_MAX_STREAMS", a.to_string(), d);
}

pub(super) fn convert_underscores(ctx: &mut Ctx, d: &Directive) {
    match on_off(ctx, d) {
        Some(true) => ctx.set("UNDERSCORE_HEADERS", "allow".into(), d),
        Some(false) => ctx.set("UNDERSCORE_HEADERS", "drop".into(), d),
        None => {}
    }
}

pub(super) fn convert_ignore_invalid(ctx: &mut Ctx, d: &Directive) {
    match on_off(ctx, d) {
        Some(false) => ctx.set("UNDERSCORE_HEADERS", "allow".into(), d),
        Some(true) => ctx.set("UNDERSCORE_HEADERS", "drop".into(), d),
        None => {}
    }
}

pub(super) fn convert_real_ip_from(ctx: &mut Ctx, d: &Directive) {
    let Some(a) = one_arg(ctx, d) else { return };
    if config::parse_cidrs(a).is_some_and(|v| v.len() == 1) {
        ctx.trusted.push((a.to_string(), d.line));
        let list = ctx
            .trusted
            .iter()
            .map(|t| t.0.as_str())
            .collect::<Vec<_>>()
            .join(",");
        ctx.set("TRUSTED_PROXIES", list, d);
        let items = ctx.trusted.clone();
        ctx.gathered("TRUSTED_PROXIES", "set_real_ip_from", &items);
        ctx.note(
            "TRUSTED_PROXIES",
            "podgate's default trusts every private range; this list trusts only these",
        );
    } else {
        ctx.drop(
            d,
            format!("{a:?}: podgate trusts IP addresses and CIDRs only"),
        );
    }
}

pub(super) fn convert_real_ip_header(ctx: &mut Ctx, d: &Directive) {
    match d.arg(0).map(str::to_ascii_lowercase).as_deref() {
        Some("x-forwarded-for") => ctx.no_env(d, "no env needed: podgate reads X-Forwarded-For (and Forwarded) from PODGATE_TRUSTED_PROXIES"),
        _ => ctx.drop(d, "podgate reads the client address from X-Forwarded-For (and Forwarded) of trusted peers only"),
    }
}

pub(super) fn convert_real_ip_recursive(ctx: &mut Ctx, d: &Directive) {
    match on_off(ctx, d) {
        Some(true) => ctx.no_env(d, "no env needed: podgate takes the right-most address that is not a trusted proxy"),
        Some(false) => ctx.drop(d, "podgate always skips trusted proxies in X-Forwarded-For, as `real_ip_recursive on` does"),
        None => {}
    }
}

pub(super) fn convert_hide_header(ctx: &mut Ctx, d: &Directive) {
    let Some(a) = one_arg(ctx, d) else { return };
    if http::HeaderName::from_bytes(a.as_bytes()).is_err() {
        ctx.drop(d, format!("{a:?} is not a header name"));
        return;
    }
    ctx.hide.push((a.to_ascii_lowercase(), d.line));
    let list = ctx
        .hide
        .iter()
        .map(|t| t.0.as_str())
        .collect::<Vec<_>>()
        .join(",");
    ctx.set("HIDE_HEADERS", list, d);
    let items = ctx.hide.clone();
    ctx.gathered("HIDE_HEADERS", "proxy_hide_header", &items);
}

pub(super) fn convert_set_header(ctx: &mut Ctx, d: &Directive) {
    let (Some(name), Some(value)) = (d.arg(0), d.arg(1)) else {
        ctx.drop(d, "proxy_set_header takes a header and a value");
        return;
    };
    let name_l = name.to_ascii_lowercase();
    let ok = match name_l.as_str() {
        "host" => ["$host", "$http_host"].contains(&value),
        "x-forwarded-for" => ["$proxy_add_x_forwarded_for", "$remote_addr"].contains(&value),
        "x-real-ip" => value == "$remote_addr",
        "x-forwarded-proto" => ["$scheme", "$http_x_forwarded_proto"].contains(&value),
        "x-forwarded-host" => ["$host", "$http_host", "$server_name"].contains(&value),
        "x-forwarded-port" => value == "$server_port",
        "upgrade" => value == "$http_upgrade",
        "connection" => ["upgrade", "$connection_upgrade", "", "keep-alive"]
            .contains(&value.to_ascii_lowercase().as_str()),
        _ => false,
    };
    let why = match name_l.as_str() {
        "host" if ok => "no env needed: podgate passes the client's Host unchanged",
        "host" => {
            ctx.drop(d, "podgate always passes the client's Host unchanged");
            return;
        }
        "upgrade" | "connection" if ok => "no env needed: podgate keeps connections to the app alive and tunnels WebSocket upgrades (PODGATE_UPGRADE_PROTOCOLS)",
        _ if ok => "no env needed: podgate sets X-Forwarded-For/-Proto/-Host/-Port, X-Real-IP and Forwarded itself (believing incoming ones from PODGATE_TRUSTED_PROXIES only)",
        n if n.starts_with("x-forwarded-") || n == "x-real-ip" || n == "forwarded" => {
            ctx.drop(d, "podgate sets X-Forwarded-* itself; another value for them is not supported");
            return;
        }
        _ => {
            ctx.drop(d, "podgate sets X-Forwarded-* itself; custom headers are not supported");
            return;
        }
    };
    ctx.no_env(d, why);
}

pub(super) fn convert_map(ctx: &mut Ctx, d: &Directive) {
    if d.arg(0) == Some("$http_upgrade") {
        ctx.no_env(
            d,
            "no env needed: podgate passes WebSocket upgrades (Upgrade and Connection) to the app itself",
        );
    } else {
        ctx.drop(
            d,
            "podgate has no request rules: every request outside the static prefix goes to the app",
        );
    }
}

pub(super) fn convert_http_version(ctx: &mut Ctx, d: &Directive) {
    match d.arg(0) {
        Some("1.1") => ctx.no_env(
            d,
            "no env needed: podgate always speaks HTTP/1.1 with keep-alive to the app",
        ),
        _ => ctx.drop(
            d,
            "podgate always speaks HTTP/1.1 with keep-alive to the app",
        ),
    }
}

pub(super) fn convert_proxy_redirect(ctx: &mut Ctx, d: &Directive) {
    match d.arg(0) {
        Some("off") | Some("default") => ctx.no_env(d, "no env needed: podgate does not rewrite Location; it keeps Host, so the app's redirects are right"),
        _ => ctx.drop(d, "podgate does not rewrite Location headers"),
    }
}

pub(super) fn convert_proxy_buffering(ctx: &mut Ctx, d: &Directive) {
    match on_off(ctx, d) {
        Some(false) => ctx.no_env(d, "no env needed: podgate streams responses"),
        Some(true) => ctx.drop(d, "podgate streams responses to the client (a client that stops reading is cut after PODGATE_SEND_TIMEOUT)"),
        None => {}
    }
}

pub(super) fn convert_request_buffering(ctx: &mut Ctx, d: &Directive) {
    if let Some(on) = on_off(ctx, d) {
        ctx.request_buffering = Some((on, d.line, d.text()));
        if !on {
            ctx.no_env(
                d,
                "already podgate's default (PODGATE_BUFFER_REQUESTS=off), no env needed",
            );
        }
    }
}

pub(super) fn convert_body_buffer_size(ctx: &mut Ctx, d: &Directive) {
    let Some(a) = one_arg(ctx, d) else { return };
    match nginx_size(a) {
        Some(n) => ctx.body_buffer = Some((n, d.line, d.text())),
        None => ctx.drop(d, format!("{a:?} is not an nginx size such as 1m")),
    }
}

pub(super) fn convert_body_temp_path(ctx: &mut Ctx, d: &Directive) {
    let Some(a) = d.arg(0) else {
        ctx.drop(d, "client_body_temp_path needs a directory");
        return;
    };
    ctx.set("BUFFER_DIR", a.trim_end_matches('/').to_string(), d);
    ctx.note(
        "BUFFER_DIR",
        "must be a writable directory in the podgate container: mount an emptyDir there",
    );
}

pub(super) fn convert_gzip(ctx: &mut Ctx, d: &Directive) {
    if let Some(on) = on_off(ctx, d) {
        ctx.gzip = Some((on, d.line, d.text()));
        if !on {
            ctx.no_env(
                d,
                "already podgate's default (PODGATE_COMPRESSION=off), no env needed",
            );
        }
    }
}

pub(super) fn convert_brotli(ctx: &mut Ctx, d: &Directive) {
    if let Some(on) = on_off(ctx, d) {
        ctx.brotli = Some((on, d.line, d.text()));
        if !on {
            ctx.no_env(
                d,
                "already podgate's default (PODGATE_COMPRESSION=off), no env needed",
            );
        }
    }
}

pub(super) fn convert_gzip_min_length(ctx: &mut Ctx, d: &Directive) {
    let Some(a) = one_arg(ctx, d) else { return };
    match nginx_size(a) {
        Some(n) => ctx.set("COMPRESSION_MIN_SIZE", podgate_size(n), d),
        None => ctx.drop(d, format!("{a:?} is not a length in bytes")),
    }
}

/// The prefix of a rewrite that only strips it: `^/p/(.*)$ /$1`,
/// `^/p(/.*)$ $1`, `^/p/?(.*)$ /$1`, `^/p(/|$)(.*)$ /$2`.
pub(super) fn strip_prefix_of(pattern: &str, replacement: &str) -> Option<String> {
    let body = pattern.strip_prefix("^/")?;
    let forms: [(&str, &str); 5] = [
        ("/(.*)$", "/$1"),
        ("/(.*)", "/$1"),
        ("(/.*)$", "$1"),
        ("/?(.*)$", "/$1"),
        ("(/|$)(.*)$", "/$2"),
    ];
    for (tail, repl) in forms {
        if let Some(p) = body.strip_suffix(tail) {
            let literal = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_/~".contains(c));
            if replacement == repl && literal && !p.ends_with('/') {
                return Some(format!("/{p}"));
            }
        }
    }
    None
}

pub(super) fn convert_rewrite(ctx: &mut Ctx, d: &Directive) {
    let (Some(pat), Some(repl)) = (d.arg(0), d.arg(1)) else {
        ctx.drop(d, "rewrite takes a pattern and a replacement");
        return;
    };
    let flag_ok = matches!(d.arg(2), None | Some("break") | Some("last"));
    match strip_prefix_of(pat, repl) {
        Some(prefix) if flag_ok && d.args.len() <= 3 => {
            ctx.set("STRIP_PREFIX", prefix, d);
            ctx.note(
                "STRIP_PREFIX",
                "podgate answers 404 outside the prefix, where this rewrite let other paths through unchanged",
            );
        }
        _ => ctx.drop(
            d,
            "podgate rewrites a path only by stripping one prefix (PODGATE_STRIP_PREFIX)",
        ),
    }
}

pub(super) fn convert_access_log(ctx: &mut Ctx, d: &Directive) {
    match d.arg(0) {
        Some("off") => ctx.set("ACCESS_LOG", "false".into(), d),
        Some(_) => {
            ctx.no_env(d, "no env needed: podgate writes one access line per request to stdout, where `kubectl logs` reads it");
            if d.args.len() > 1 && !d.args[1].contains('=') && d.args[1] != "combined" {
                ctx.defaults.pop();
                ctx.drop(d, format!("the format {:?}: podgate's access line has fixed fields, as JSON or text (PODGATE_LOG_FORMAT); it goes to stdout", d.args[1]));
            }
        }
        None => ctx.drop(d, "access_log needs a path or off"),
    }
}

pub(super) fn convert_error_log(ctx: &mut Ctx, d: &Directive) {
    let level = match d.arg(1) {
        None => "error",
        Some(l) => l,
    };
    let filter = match level {
        "debug" => "debug",
        "info" | "notice" => "info",
        "warn" => "warn",
        "error" | "crit" | "alert" | "emerg" => "error",
        other => {
            ctx.drop(d, format!("{other:?} is not an nginx log level"));
            return;
        }
    };
    ctx.set("LOG", filter.into(), d);
}

pub(super) fn convert_include(ctx: &mut Ctx, d: &Directive) {
    match d.arg(0) {
        Some(f) if f == "mime.types" || f.ends_with("/mime.types") => ctx.no_env(
            d,
            "no env needed: podgate sets the content type of static files from their extension",
        ),
        Some(f) => ctx.drop(
            d,
            format!("{f} is not read: run `podgate migrate-nginx` on it as well"),
        ),
        None => ctx.drop(d, "include needs a file"),
    }
}
