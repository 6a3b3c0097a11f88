//! The converters of the structure: `server`, `listen`, `proxy_pass`,
//! `upstream`, `location` (static files and prefixes).

use super::*;

pub(super) fn convert_container(ctx: &mut Ctx, d: &Directive) {
    if d.block.is_none() {
        ctx.drop(d, format!("`{}` is a block here", d.name));
        return;
    }
    if d.name == "server" {
        ctx.servers += 1;
        if ctx.servers > 1 {
            ctx.drop(
                d,
                "a second server block: podgate serves one app on one port (its directives are not read)",
            );
            return;
        }
    }
    // Upstreams are read when a proxy_pass names them.
    let (ups, rest): (Vec<&Directive>, Vec<&Directive>) =
        d.children().iter().partition(|c| c.name == "upstream");
    for u in ups {
        if let (Some(name), Some(_)) = (u.arg(0), &u.block) {
            ctx.upstreams.insert(name.to_string(), u.clone());
        } else {
            ctx.drop(u, "an upstream needs a name and a block");
        }
    }
    let (mut locations, rest): (Vec<&Directive>, Vec<&Directive>) =
        rest.into_iter().partition(|c| c.name == "location");
    // `location /` names the app; other locations are compared with it.
    locations.sort_by_key(|l| l.args.as_slice() != ["/"]);
    // Server-level settings first, so a location sees its server's root.
    for c in rest {
        if c.name == "root" && d.name == "server" {
            ctx.server_root = c.arg(0).map(str::to_string);
        }
        ctx.apply(c);
    }
    for c in locations {
        ctx.apply(c);
    }
}

pub(super) fn convert_listen(ctx: &mut Ctx, d: &Directive) {
    let Some(addr) = d.arg(0) else {
        ctx.drop(d, "listen needs an address or port");
        return;
    };
    let mut dropped_opts = Vec::new();
    for opt in &d.args[1..] {
        match opt.as_str() {
            "default_server" | "default" | "http2" | "reuseport" | "deferred" => {}
            o if o.starts_with("backlog=") || o.starts_with("so_keepalive=") => {}
            o => dropped_opts.push(o.to_string()),
        }
    }
    let socket = if let Ok(port) = addr.parse::<u16>() {
        Some(std::net::SocketAddr::from(([0, 0, 0, 0], port)))
    } else if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
        Some(sa)
    } else if let Some(host) = addr.strip_prefix("*:") {
        host.parse::<u16>()
            .ok()
            .map(|p| std::net::SocketAddr::from(([0, 0, 0, 0], p)))
    } else {
        addr.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| std::net::SocketAddr::new(ip, 80))
    };
    let Some(socket) = socket else {
        ctx.drop(
            d,
            format!("{addr:?}: podgate listens on an IP address and port (a host name or unix socket is not accepted)"),
        );
        return;
    };
    if ctx.seen.iter().filter(|s| *s == "listen").count() > 1 {
        let prev = ctx
            .env
            .get("LISTEN")
            .map(|s| s.value.clone())
            .unwrap_or_else(|| Ctx::var_default("LISTEN").to_string());
        let why = if socket.is_ipv6() {
            format!("podgate listens on one address ({prev}); on an IPv6 or dual-stack cluster set PODGATE_LISTEN=[::]:{} instead", socket.port())
        } else {
            format!("podgate listens on one address ({prev})")
        };
        ctx.drop(d, why);
        return;
    }
    if !dropped_opts.is_empty() {
        let why = if dropped_opts.iter().any(|o| o == "ssl" || o == "quic") {
            "podgate speaks plain HTTP: TLS ends at the ingress or a service mesh".to_string()
        } else {
            "podgate has no such listen option".to_string()
        };
        ctx.drop(d, format!("{} ({why})", dropped_opts.join(" ")));
        if dropped_opts
            .iter()
            .any(|o| o == "ssl" || o == "quic" || o == "proxy_protocol")
        {
            return;
        }
    }
    ctx.set("LISTEN", socket.to_string(), d);
}

/// `http://HOST[:PORT][/URI]`: the host, the port, and the URI part.
pub(super) fn parse_proxy_url(url: &str) -> Result<(String, Option<u16>, Option<String>), String> {
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if url.starts_with("https://") {
        return Err("podgate speaks plain HTTP to the app, as the app is in the pod".into());
    } else if url.contains('$') {
        return Err("a proxy_pass built from variables cannot be carried over".into());
    } else {
        return Err(format!("{url:?} is not an http:// address"));
    };
    let (hostport, uri) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(rest[i..].to_string())),
        None => (rest, None),
    };
    if let Some(v6) = hostport.strip_prefix('[') {
        let (h, p) = v6
            .split_once(']')
            .ok_or_else(|| format!("{hostport:?} is not host:port"))?;
        let port = match p.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| format!("{p:?} is not a port"))?),
            None => None,
        };
        return Ok((h.to_string(), port, uri));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Ok((
            h.to_string(),
            Some(p.parse().map_err(|_| format!("{p:?} is not a port"))?),
            uri,
        )),
        None => Ok((hostport.to_string(), None, uri)),
    }
}

/// Sets APP_HOST and APP_PORT from a host and port (an upstream server's or a
/// proxy_pass's).
pub(super) fn set_app(ctx: &mut Ctx, d: &Directive, host: &str, port: u16) {
    if ctx.app_set {
        let current = format!(
            "{}:{}",
            ctx.env
                .get("APP_HOST")
                .map(|s| s.value.as_str())
                .unwrap_or(Ctx::var_default("APP_HOST")),
            ctx.env
                .get("APP_PORT")
                .map(|s| s.value.as_str())
                .unwrap_or(Ctx::var_default("APP_PORT"))
        );
        let this = format!(
            "{}:{port}",
            if host == "localhost" {
                "127.0.0.1"
            } else {
                host
            }
        );
        if this == current {
            ctx.no_env(
                d,
                format!("no env needed: the same app as before ({current})"),
            );
        } else {
            ctx.drop(d, format!("podgate forwards to one app ({current})"));
        }
        return;
    }
    ctx.app_set = true;
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ctx.set("APP_HOST", ip.to_string(), d),
        Err(_) if host == "localhost" => ctx.set("APP_HOST", "127.0.0.1".into(), d),
        Err(_) => ctx.drop(
            d,
            format!("the host name {host:?}: podgate reaches the app by IP (PODGATE_APP_HOST, default 127.0.0.1: in a pod the app is on loopback); the port is carried over"),
        ),
    }
    ctx.set("APP_PORT", port.to_string(), d);
}

pub(super) fn convert_proxy_pass(ctx: &mut Ctx, d: &Directive) {
    let Some(url) = one_arg(ctx, d) else { return };
    let (host, port, uri) = match parse_proxy_url(url) {
        Ok(x) => x,
        Err(why) => {
            ctx.drop(d, why);
            return;
        }
    };
    match uri.as_deref() {
        None => {}
        Some("/") if ctx.location_prefix.is_some() => {}
        Some("/") if ctx.in_location.is_none() => {}
        Some(u) => {
            ctx.drop(
                d,
                format!("the URI {u:?}: podgate passes the path as it came (PODGATE_STRIP_PREFIX removes a prefix)"),
            );
            return;
        }
    }
    if ctx.proxy_host.is_none() {
        ctx.proxy_host = Some(match port {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        });
    }
    if port.is_none() {
        if let Some(up) = ctx.upstreams.get(&host).cloned() {
            ctx.seen.push(format!("upstream:{host}"));
            ctx.no_env(
                d,
                format!(
                    "no env needed: the app is the server of upstream {host} (line {})",
                    up.line
                ),
            );
            convert_upstream(ctx, &up);
            return;
        }
    }
    set_app(ctx, d, &host, port.unwrap_or(80));
}

pub(super) fn upstream_rule() -> &'static Rule {
    rule_for("upstream").unwrap_or(&RULES[0])
}

pub(super) fn convert_upstream(ctx: &mut Ctx, up: &Directive) {
    let outer = std::mem::replace(&mut ctx.in_upstream, true);
    let loc = ctx.in_location.take();
    let mut servers = 0;
    for c in up.children() {
        if c.name == "server" {
            servers += 1;
            let current = ctx.current.replace(upstream_rule());
            convert_upstream_server(ctx, c, servers);
            ctx.current = current;
        } else if c.name == "keepalive" {
            let current = ctx.current.replace(upstream_rule());
            match c.args.as_slice() {
                [n] if n.parse::<u32>().is_ok() => ctx.set("POOL_MAX_IDLE", n.clone(), c),
                _ => ctx.drop(c, "keepalive takes a number of connections"),
            }
            ctx.current = current;
        } else if c.name == "keepalive_timeout" {
            let current = ctx.current.replace(upstream_rule());
            time_var(ctx, c, "POOL_IDLE_TIMEOUT");
            ctx.current = current;
        } else if ["least_conn", "ip_hash", "hash", "random", "zone"].contains(&c.name.as_str()) {
            ctx.no_env(
                c,
                "no env needed: podgate forwards to one app, so there is nothing to balance",
            );
        } else {
            ctx.apply(c);
        }
    }
    ctx.in_location = loc;
    ctx.in_upstream = outer;
}

pub(super) fn convert_upstream_server(ctx: &mut Ctx, d: &Directive, nth: usize) {
    let Some(addr) = d.arg(0) else {
        ctx.drop(d, "server needs an address");
        return;
    };
    if nth > 1 {
        ctx.drop(d, "a second app server: podgate forwards to one app");
        return;
    }
    let (host, port) = match addr.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (
            h.trim_matches(['[', ']']).to_string(),
            p.parse().unwrap_or(80),
        ),
        _ => (addr.to_string(), 80),
    };
    set_app(ctx, d, &host, port);
    for p in &d.args[1..] {
        if let Some(n) = p.strip_prefix("max_conns=") {
            if n.parse::<u32>().is_ok() {
                ctx.set("APP_CONCURRENCY", n.to_string(), d);
                continue;
            }
        }
        if p.starts_with("weight=") || p.starts_with("max_fails=") || p.starts_with("fail_timeout=")
        {
            continue;
        }
        ctx.drop(d, format!("the server parameter {p:?}"));
    }
}

pub(super) fn convert_upstream_alone(ctx: &mut Ctx, d: &Directive) {
    // An upstream met outside http/server (the file holds only it).
    if let Some(name) = d.arg(0) {
        ctx.upstreams.insert(name.to_string(), d.clone());
    }
}

pub(super) fn convert_location(ctx: &mut Ctx, d: &Directive) {
    if ctx.in_location.is_some() {
        ctx.drop(d, "a nested location");
        return;
    }
    let (modifier, path) = match d.args.as_slice() {
        [p] => ("", p.as_str()),
        [m, p] => (m.as_str(), p.as_str()),
        _ => {
            ctx.drop(d, "location takes a path");
            return;
        }
    };
    if !(modifier.is_empty() || modifier == "^~") {
        ctx.drop(
            d,
            "exact and regex locations: podgate sends every path outside the static prefix to the app",
        );
        return;
    }
    let children = d.children();
    if path == "/" {
        ctx.walk(children);
        return;
    }
    let has = |n: &str| children.iter().any(|c| c.name == n);
    // A location with only file-serving directives in it (or none) serves
    // files from the server's root.
    let static_only = children
        .iter()
        .all(|c| STATIC_DIRECTIVES.contains(&c.name.as_str()));
    if has("alias")
        || (has("root") && !has("proxy_pass"))
        || (static_only && ctx.server_root.is_some())
    {
        convert_static_location(ctx, d, path);
        return;
    }
    if static_only {
        ctx.drop(
            d,
            "with no root or alias it serves files from nginx's own html directory",
        );
        return;
    }
    if let Some(pp) = children.iter().find(|c| c.name == "proxy_pass") {
        // `location /test01/ { proxy_pass http://127.0.0.1:8000/; }` strips
        // the prefix: the location's only job, podgate's STRIP_PREFIX.
        if pp
            .arg(0)
            .is_some_and(|u| parse_proxy_url(u).is_ok_and(|x| x.2.as_deref() == Some("/")))
        {
            let prefix = path.trim_end_matches('/');
            if ctx.env.contains_key("STRIP_PREFIX") {
                ctx.drop(d, "podgate strips one prefix");
                return;
            }
            ctx.location_prefix = Some(prefix.to_string());
            let outer = ctx
                .current
                .replace(rule_for("location").unwrap_or(&RULES[0]));
            ctx.set("STRIP_PREFIX", prefix.to_string(), d);
            ctx.current = outer;
            ctx.walk(children);
            ctx.location_prefix = None;
            return;
        }
    }
    ctx.in_location = Some(path.to_string());
    ctx.upgrade_location = children.iter().any(|c| {
        c.name == "proxy_set_header" && c.arg(0).is_some_and(|h| h.eq_ignore_ascii_case("upgrade"))
    });
    ctx.walk(children);
    ctx.in_location = None;
    ctx.upgrade_location = false;
}

/// What a static location may hold besides `alias`/`root`.
pub(super) const STATIC_DIRECTIVES: &[&str] = &[
    "expires",
    "add_header",
    "access_log",
    "log_not_found",
    "gzip_static",
    "brotli_static",
    "try_files",
];

pub(super) fn convert_static_location(ctx: &mut Ctx, d: &Directive, path: &str) {
    if ctx.env.contains_key("STATIC_DIR") {
        ctx.drop(d, "a second static location: podgate serves one directory");
        return;
    }
    let outer = ctx
        .current
        .replace(rule_for("location").unwrap_or(&RULES[0]));
    let mut dir: Option<String> = None;
    let mut cache: Option<(String, &Directive)> = None;
    for c in d.children() {
        match c.name.as_str() {
            "alias" => dir = c.arg(0).map(|a| a.trim_end_matches('/').to_string()),
            "root" => {
                dir = c
                    .arg(0)
                    .map(|r| format!("{}{}", r.trim_end_matches('/'), path.trim_end_matches('/')))
            }
            "expires" => match c.arg(0) {
                Some("max") => cache = Some(("public, max-age=315360000".into(), c)),
                Some("off") => cache = Some((String::new(), c)),
                Some("epoch") => cache = Some(("no-cache".into(), c)),
                Some(t) => match nginx_time(t) {
                    Some(t) => cache = Some((format!("public, max-age={}", t.as_secs()), c)),
                    None => ctx.drop(c, format!("{t:?} is not an nginx time")),
                },
                None => ctx.drop(c, "expires needs a time"),
            },
            "add_header" if c.arg(0).is_some_and(|h| h.eq_ignore_ascii_case("cache-control")) => {
                cache = c.arg(1).map(|v| (v.to_string(), c));
            }
            "access_log" | "log_not_found" => ctx.drop(c, "podgate logs static files like every request (PODGATE_ACCESS_LOG)"),
            "gzip_static" | "brotli_static" => ctx.no_env(c, "no env needed: podgate serves a .gz/.br file next to a static file when the client accepts it"),
            "try_files" if c.args.last().is_some_and(|l| l.starts_with('@') || l.starts_with('/')) => {
                ctx.set("STATIC_FALLTHROUGH", "true".into(), c);
            }
            _ => ctx.drop(c, format!("applies to `location {path}` only; podgate's static files have no such setting")),
        }
    }
    let dir = dir.or_else(|| {
        ctx.server_root
            .as_ref()
            .map(|r| format!("{}{}", r.trim_end_matches('/'), path.trim_end_matches('/')))
    });
    let Some(dir) = dir else {
        ctx.drop(d, "no directory to serve");
        ctx.current = outer;
        return;
    };
    let prefix = if path.ends_with('/') {
        path.to_string()
    } else {
        format!("{path}/")
    };
    ctx.set("STATIC_PREFIX", prefix, d);
    ctx.set("STATIC_DIR", dir, d);
    ctx.note(
        "STATIC_DIR",
        "must exist in the podgate container: mount the volume the app's collectstatic fills",
    );
    match cache {
        Some((v, c)) => ctx.set("STATIC_CACHE_CONTROL", v, c),
        // nginx sent no Cache-Control without `expires`; podgate would.
        None => {
            ctx.set("STATIC_CACHE_CONTROL", String::new(), d);
            ctx.note(
                "STATIC_CACHE_CONTROL",
                "nginx sent no Cache-Control without `expires`; podgate would send public, max-age=3600",
            );
        }
    }
    ctx.current = outer;
}
