//! `podgate migrate-nginx FILE`: read the nginx config baked into a sidecar
//! image and print the `PODGATE_*` environment that does the same, then every
//! directive that is already what podgate does and every one that is not
//! carried over, each with its line.
//!
//! Two parts: a tokenizer and parser for nginx's configuration syntax
//! (comments, quotes, escapes, braces, semicolons, line numbers) into a tree
//! of [`Directive`]s, and one mapping table, [`RULES`], from directive to
//! podgate variable(s), default, or reason it has no equivalent. The command
//! and the README's migration table (`podgate migrate-nginx --table`) both
//! come from that table.
//!
//! No crate is used for the parsing: the ones on crates.io either accept only
//! the directives they know (a config with `auth_basic` would not parse) or
//! split an argument such as `/$1` into two, which `rewrite` cannot afford.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{self, Config, VarError, VARS};

/// Exit status: everything carried over (or already podgate's default).
pub const EXIT_OK: u8 = 0;
/// Exit status: at least one directive was not carried over.
pub const EXIT_NOT_CARRIED: u8 = 2;
/// Exit status: the file is not valid nginx syntax (EX_DATAERR is 65, but
/// podgate uses 64 for every input it refuses).
pub const EXIT_PARSE: u8 = 64;
/// Exit status: the file cannot be read (EX_NOINPUT).
pub const EXIT_NO_INPUT: u8 = 66;

// ---------------------------------------------------------------------------
// Syntax

/// One directive: its name, its arguments (quotes removed, escapes applied as
/// nginx does), the line it starts on, and its block if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    /// Each argument as written (with its quotes), for messages.
    pub raw: Vec<String>,
    /// The line of each argument.
    pub arg_lines: Vec<usize>,
    /// 1-based line of the name.
    pub line: usize,
    pub block: Option<Vec<Directive>>,
}

impl Directive {
    /// The directive as written, on one line: `proxy_set_header Host $host`.
    pub fn text(&self) -> String {
        let mut s = self.name.clone();
        for r in &self.raw {
            s.push(' ');
            s.push_str(r);
        }
        if self.block.is_some() {
            s.push_str(" { … }");
        }
        // A quoted argument may hold a newline; a comment line may not.
        s.replace('\n', "\\n").replace('\r', "\\r")
    }

    fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(String::as_str)
    }

    fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// Why a file is not valid nginx syntax, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug)]
enum Tok {
    Word {
        value: String,
        raw: String,
        line: usize,
    },
    Semi(usize),
    Open(usize),
    Close(usize),
}

/// nginx's escapes inside a token: `\"`, `\'` and `\\` lose the backslash,
/// `\t`, `\r`, `\n` become the character; any other backslash is kept (so a
/// regex `\.` reaches the directive as written).
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut it = raw.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.peek().copied() {
            Some(q @ ('"' | '\'' | '\\')) => {
                out.push(q);
                it.next();
            }
            Some('t') => {
                out.push('\t');
                it.next();
            }
            Some('r') => {
                out.push('\r');
                it.next();
            }
            Some('n') => {
                out.push('\n');
                it.next();
            }
            _ => out.push('\\'),
        }
    }
    out
}

fn tokenize(src: &str) -> Result<Vec<Tok>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ';' => {
                toks.push(Tok::Semi(line));
                i += 1;
            }
            '{' => {
                toks.push(Tok::Open(line));
                i += 1;
            }
            '}' => {
                toks.push(Tok::Close(line));
                i += 1;
            }
            '"' | '\'' => {
                let start_line = line;
                let mut j = i + 1;
                let mut inner = String::new();
                loop {
                    let Some(&d) = chars.get(j) else {
                        return Err(ParseError {
                            line: start_line,
                            message: format!(
                                "unterminated quote: the {c} opened here is never closed"
                            ),
                        });
                    };
                    if d == '\\' {
                        inner.push(d);
                        if let Some(&e) = chars.get(j + 1) {
                            if e == '\n' {
                                line += 1;
                            }
                            inner.push(e);
                        }
                        j += 2;
                        continue;
                    }
                    if d == c {
                        break;
                    }
                    if d == '\n' {
                        line += 1;
                    }
                    inner.push(d);
                    j += 1;
                }
                let raw: String = chars[i..=j].iter().collect();
                i = j + 1;
                if let Some(&n) = chars.get(i) {
                    if !(n.is_whitespace() || n == ';' || n == '{' || n == ')') {
                        return Err(ParseError {
                            line,
                            message: format!(
                                "unexpected {n:?} right after the closing quote of {raw} (expected a space or ';')"
                            ),
                        });
                    }
                }
                toks.push(Tok::Word {
                    value: unescape(&inner),
                    raw,
                    line: start_line,
                });
            }
            _ => {
                let start = i;
                let mut brace_var = false;
                while i < chars.len() {
                    let d = chars[i];
                    if d == '\\' {
                        i += 2;
                        continue;
                    }
                    if brace_var {
                        if d == '}' {
                            brace_var = false;
                        }
                        i += 1;
                        continue;
                    }
                    if d == '{' && i > start && chars[i - 1] == '$' {
                        brace_var = true;
                        i += 1;
                        continue;
                    }
                    if d.is_whitespace() || d == ';' || d == '{' || d == '}' {
                        break;
                    }
                    i += 1;
                }
                let i_end = i.min(chars.len());
                let raw: String = chars[start..i_end].iter().collect();
                i = i_end;
                toks.push(Tok::Word {
                    value: unescape(&raw),
                    raw,
                    line,
                });
            }
        }
    }
    Ok(toks)
}

/// Parses nginx configuration text into its directives.
pub fn parse(src: &str) -> Result<Vec<Directive>, ParseError> {
    let toks = tokenize(src)?;
    let mut pos = 0;
    let tree = parse_block(&toks, &mut pos, None)?;
    check_missing_semicolons(&tree)?;
    Ok(tree)
}

fn parse_block(
    toks: &[Tok],
    pos: &mut usize,
    opened: Option<(usize, &str)>,
) -> Result<Vec<Directive>, ParseError> {
    let mut out = Vec::new();
    loop {
        let mut words: Vec<(&str, &str, usize)> = Vec::new();
        let end = loop {
            match toks.get(*pos) {
                Some(Tok::Word {
                    value, raw, line, ..
                }) => {
                    words.push((value, raw, *line));
                    *pos += 1;
                }
                other => break other,
            }
        };
        let make = |block| {
            let (name, _, line) = words[0];
            Directive {
                name: name.to_string(),
                args: words[1..].iter().map(|w| w.0.to_string()).collect(),
                raw: words[1..].iter().map(|w| w.1.to_string()).collect(),
                arg_lines: words[1..].iter().map(|w| w.2).collect(),
                line,
                block,
            }
        };
        match end {
            Some(Tok::Semi(line)) => {
                if words.is_empty() {
                    return Err(ParseError {
                        line: *line,
                        message: "unexpected ';' with no directive before it".into(),
                    });
                }
                *pos += 1;
                out.push(make(None));
            }
            Some(Tok::Open(line)) => {
                if words.is_empty() {
                    return Err(ParseError {
                        line: *line,
                        message: "unexpected '{' with no directive before it".into(),
                    });
                }
                *pos += 1;
                let children = parse_block(toks, pos, Some((words[0].2, words[0].0)))?;
                out.push(make(Some(children)));
            }
            Some(Tok::Close(line)) => {
                if let Some(&(_, _, last)) = words.last() {
                    return Err(ParseError {
                        line: last,
                        message: format!(
                            "missing ';' at the end of `{}` (the '}}' on line {line} closes the block first)",
                            words.iter().map(|w| w.1).collect::<Vec<_>>().join(" ")
                        ),
                    });
                }
                if opened.is_none() {
                    return Err(ParseError {
                        line: *line,
                        message: "unbalanced braces: this '}' closes no block".into(),
                    });
                }
                *pos += 1;
                return Ok(out);
            }
            None | Some(Tok::Word { .. }) => {
                if let Some(&(_, _, last)) = words.last() {
                    return Err(ParseError {
                        line: last,
                        message: format!(
                            "missing ';' at the end of `{}` (the file ends first)",
                            words.iter().map(|w| w.1).collect::<Vec<_>>().join(" ")
                        ),
                    });
                }
                if let Some((line, name)) = opened {
                    return Err(ParseError {
                        line,
                        message: format!(
                            "unbalanced braces: the '{{' of `{name}` opened here is never closed"
                        ),
                    });
                }
                return Ok(out);
            }
        }
    }
}

/// `listen 80` + newline + `server_name x;` is one directive to nginx (which
/// then fails on its arguments): an unquoted argument that starts a line and
/// is a directive name of the table means a `;` was forgotten.
fn check_missing_semicolons(tree: &[Directive]) -> Result<(), ParseError> {
    for d in tree {
        let mut prev_line = d.line;
        for (i, a) in d.args.iter().enumerate() {
            let line = d.arg_lines[i];
            let quoted = d.raw[i].starts_with(['"', '\'']);
            if line > prev_line && !quoted && rule_for(a).is_some() && rule_for(&d.name).is_some() {
                return Err(ParseError {
                    line: prev_line,
                    message: format!(
                        "missing ';' at the end of the line: `{} {}` runs on into `{a}` on line {line}",
                        d.name,
                        d.raw[..i].join(" ")
                    ),
                });
            }
            prev_line = line;
        }
        check_missing_semicolons(d.children())?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Units

/// nginx time: `500ms`, `30s`, `5m`, `1h30m`, `2d`; a bare number is
/// seconds. (`M` is 30 days, `y` 365 days.)
pub fn nginx_time(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: u128 = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return None;
        }
        let n: u128 = s[start..i].parse().ok()?;
        let unit_ms: u128 = if s[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let u = b.get(i).copied();
            if u.is_some() {
                i += 1;
            }
            match u {
                None => 1000,
                Some(b's') => 1000,
                Some(b'm') => 60_000,
                Some(b'h') => 3_600_000,
                Some(b'd') => 86_400_000,
                Some(b'w') => 7 * 86_400_000,
                Some(b'M') => 30 * 86_400_000,
                Some(b'y') => 365 * 86_400_000,
                _ => return None,
            }
        };
        total = total.checked_add(n.checked_mul(unit_ms)?)?;
    }
    Some(Duration::from_millis(u64::try_from(total).ok()?))
}

/// A duration as podgate reads it, in the largest unit that is exact.
pub fn podgate_time(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        format!("{ms}ms")
    } else if ms == 0 {
        "0s".into()
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// nginx size: `1024`, `8k`/`8K`, `10m`/`10M`, `1g`/`1G` (binary multiples).
pub fn nginx_size(s: &str) -> Option<u64> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    let mult: u64 = match &s[digits..] {
        "" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A size as podgate reads it, in the largest unit that is exact.
pub fn podgate_size(n: u64) -> String {
    if n == 0 {
        "0".into()
    } else if n % (1 << 30) == 0 {
        format!("{}g", n >> 30)
    } else if n % (1 << 20) == 0 {
        format!("{}m", n >> 20)
    } else if n % (1 << 10) == 0 {
        format!("{}k", n >> 10)
    } else {
        n.to_string()
    }
}

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

const PROCESS: &str = "podgate is one process with one thread per CPU of the container's limit, running as the container's user";

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

// ---------------------------------------------------------------------------
// Conversion

/// A variable to set, with the directive(s) it came from.
#[derive(Debug, Clone)]
struct Setting {
    value: String,
    line: usize,
    from: String,
    /// What the user should know about the value.
    note: Option<String>,
}

/// A directive and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub line: usize,
    pub directive: String,
    pub why: String,
}

/// The state of one conversion.
#[derive(Default)]
pub struct Ctx {
    env: BTreeMap<&'static str, Setting>,
    /// Directives that need no variable.
    pub defaults: Vec<Note>,
    /// Directives (or parts) not carried over.
    pub dropped: Vec<Note>,
    /// The rule whose converter runs, to check what it sets.
    current: Option<&'static Rule>,
    upstreams: BTreeMap<String, Directive>,
    servers: usize,
    /// Inside an `upstream` block.
    in_upstream: bool,
    /// Inside a location that is not `/`: settings there are per-location.
    in_location: Option<String>,
    /// The location prefix a `proxy_pass http://…/` strips.
    location_prefix: Option<String>,
    /// `root` of the server, for a static location without alias or root.
    server_root: Option<String>,
    app_set: bool,
    trusted: Vec<(String, usize)>,
    hide: Vec<(String, usize)>,
    gzip: Option<(bool, usize, String)>,
    brotli: Option<(bool, usize, String)>,
    request_buffering: Option<(bool, usize, String)>,
    body_buffer: Option<(u64, usize, String)>,
    /// Inside a location that sets `Upgrade`: a WebSocket location.
    upgrade_location: bool,
    seen: Vec<String>,
    /// host[:port] of the first proxy_pass, what nginx sent as Host.
    proxy_host: Option<String>,
}

impl Ctx {
    fn var_default(name: &str) -> &'static str {
        VARS.iter()
            .find(|v| v.name == name)
            .map(|v| v.default)
            .unwrap_or("")
    }

    /// Same value as podgate's default, in the variable's own terms.
    fn is_default(name: &str, value: &str) -> bool {
        let def = Self::var_default(name);
        if let (Some(a), Some(b)) = (config::parse_duration(value), config::parse_duration(def)) {
            return a == b;
        }
        if let (Some(a), Some(b)) = (config::parse_size(value), config::parse_size(def)) {
            return a == b;
        }
        value.eq_ignore_ascii_case(def)
    }

    /// Sets `PODGATE_<name>`, or records that the value is the default.
    fn set(&mut self, name: &'static str, value: String, d: &Directive) {
        debug_assert!(
            self.current.is_none_or(|r| r.vars.contains(&name)),
            "rule {:?} sets PODGATE_{name} without listing it",
            self.current.map(|r| r.names)
        );
        if Self::is_default(name, &value) {
            self.env.remove(name);
            self.no_env(
                d,
                format!(
                    "already podgate's default (PODGATE_{name}={}), no env needed",
                    Self::var_default(name)
                ),
            );
            return;
        }
        self.env.insert(
            name,
            Setting {
                value,
                line: d.line,
                from: d.text(),
                note: None,
            },
        );
    }

    /// Adds what the user should know to a variable already set.
    fn note(&mut self, name: &str, note: impl Into<String>) {
        if let Some(s) = self.env.get_mut(name) {
            s.note = Some(note.into());
        }
    }

    /// Names every line a list variable came from.
    fn gathered(&mut self, name: &str, directive: &str, items: &[(String, usize)]) {
        if let Some(s) = self.env.get_mut(name) {
            let lines: Vec<String> = items.iter().map(|i| i.1.to_string()).collect();
            s.line = items.first().map(|i| i.1).unwrap_or(s.line);
            s.from = format!(
                "{directive} {}{}",
                items
                    .iter()
                    .map(|i| i.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if lines.len() > 1 {
                    format!(" (lines {})", lines.join(", "))
                } else {
                    String::new()
                }
            );
        }
    }

    fn no_env(&mut self, d: &Directive, why: impl Into<String>) {
        self.defaults.push(Note {
            line: d.line,
            directive: d.text(),
            why: why.into(),
        });
    }

    fn drop(&mut self, d: &Directive, why: impl Into<String>) {
        self.dropped.push(Note {
            line: d.line,
            directive: d.text(),
            why: format!("not carried over: {}", why.into()),
        });
    }

    /// Runs the table's rule for one directive.
    fn apply(&mut self, d: &Directive) {
        self.seen.push(d.name.clone());
        let Some(rule) = rule_for(&d.name) else {
            self.drop(d, "podgate has no equivalent of this directive");
            return;
        };
        if let Some(loc) = self.in_location.clone() {
            // Settings inside a location other than `/` apply to that path
            // only; podgate's apply to every request.
            // Those that only say what podgate does anyway are read as
            // usual, and so is the read timeout of a WebSocket location.
            let converts = matches!(rule.action, Action::Convert(_));
            let path_neutral = [
                "proxy_pass",
                "rewrite",
                "proxy_set_header",
                "proxy_http_version",
                "proxy_redirect",
            ]
            .contains(&d.name.as_str());
            let tunnel_timeout = self.upgrade_location && d.name == "proxy_read_timeout";
            if converts && !path_neutral && !tunnel_timeout {
                self.drop(
                    d,
                    format!("it applies to `location {loc}` only, and podgate's settings apply to every request"),
                );
                return;
            }
        }
        match rule.action {
            Action::Convert(f) => {
                let outer = self.current.replace(rule);
                f(self, d);
                self.current = outer;
            }
            Action::Default(why) => self.no_env(d, format!("no env needed: {why}")),
            Action::Unsupported(why) => self.drop(d, why),
        }
    }

    fn walk(&mut self, ds: &[Directive]) {
        for d in ds {
            self.apply(d);
        }
    }
}

fn one_arg<'a>(ctx: &mut Ctx, d: &'a Directive) -> Option<&'a str> {
    match d.args.as_slice() {
        [a] => Some(a),
        _ => {
            ctx.drop(d, format!("`{}` takes one value here", d.name));
            None
        }
    }
}

fn time_var(ctx: &mut Ctx, d: &Directive, var: &'static str) -> Option<Duration> {
    let a = one_arg(ctx, d)?;
    match nginx_time(a) {
        Some(t) => {
            ctx.set(var, podgate_time(t), d);
            Some(t)
        }
        None => {
            ctx.drop(
                d,
                format!("{a:?} is not an nginx time such as 30s, 5m or 60"),
            );
            None
        }
    }
}

fn on_off(ctx: &mut Ctx, d: &Directive) -> Option<bool> {
    match one_arg(ctx, d)? {
        "on" => Some(true),
        "off" => Some(false),
        other => {
            ctx.drop(d, format!("{other:?} is neither on nor off"));
            None
        }
    }
}

fn convert_container(ctx: &mut Ctx, d: &Directive) {
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

fn convert_listen(ctx: &mut Ctx, d: &Directive) {
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
fn parse_proxy_url(url: &str) -> Result<(String, Option<u16>, Option<String>), String> {
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
fn set_app(ctx: &mut Ctx, d: &Directive, host: &str, port: u16) {
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

fn convert_proxy_pass(ctx: &mut Ctx, d: &Directive) {
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

fn upstream_rule() -> &'static Rule {
    rule_for("upstream").unwrap_or(&RULES[0])
}

fn convert_upstream(ctx: &mut Ctx, up: &Directive) {
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

fn convert_upstream_server(ctx: &mut Ctx, d: &Directive, nth: usize) {
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

fn convert_upstream_alone(ctx: &mut Ctx, d: &Directive) {
    // An upstream met outside http/server (the file holds only it).
    if let Some(name) = d.arg(0) {
        ctx.upstreams.insert(name.to_string(), d.clone());
    }
}

fn convert_location(ctx: &mut Ctx, d: &Directive) {
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
const STATIC_DIRECTIVES: &[&str] = &[
    "expires",
    "add_header",
    "access_log",
    "log_not_found",
    "gzip_static",
    "brotli_static",
    "try_files",
];

fn convert_static_location(ctx: &mut Ctx, d: &Directive, path: &str) {
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

fn convert_max_body(ctx: &mut Ctx, d: &Directive) {
    let Some(a) = one_arg(ctx, d) else { return };
    match nginx_size(a) {
        Some(n) => ctx.set("MAX_BODY", podgate_size(n), d),
        None => ctx.drop(d, format!("{a:?} is not an nginx size such as 10m")),
    }
}

fn convert_connect_timeout(ctx: &mut Ctx, d: &Directive) {
    time_var(ctx, d, "CONNECT_TIMEOUT");
}

fn convert_read_timeout(ctx: &mut Ctx, d: &Directive) {
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

fn convert_send_timeout(ctx: &mut Ctx, d: &Directive) {
    time_var(ctx, d, "SEND_TIMEOUT");
}

fn convert_header_timeout(ctx: &mut Ctx, d: &Directive) {
    time_var(ctx, d, "HEADER_TIMEOUT");
}

fn convert_body_timeout(ctx: &mut Ctx, d: &Directive) {
    time_var(ctx, d, "BODY_TIMEOUT");
}

fn convert_keepalive_timeout(ctx: &mut Ctx, d: &Directive) {
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

fn convert_header_buffers(ctx: &mut Ctx, d: &Directive) {
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

fn convert_h2_streams(ctx: &mut Ctx, d: &Directive) {
    let Some(a) = one_arg(ctx, d) else { return };
    ctx.set("H2_MAX_STREAMS", a.to_string(), d);
}

fn convert_underscores(ctx: &mut Ctx, d: &Directive) {
    match on_off(ctx, d) {
        Some(true) => ctx.set("UNDERSCORE_HEADERS", "allow".into(), d),
        Some(false) => ctx.set("UNDERSCORE_HEADERS", "drop".into(), d),
        None => {}
    }
}

fn convert_ignore_invalid(ctx: &mut Ctx, d: &Directive) {
    match on_off(ctx, d) {
        Some(false) => ctx.set("UNDERSCORE_HEADERS", "allow".into(), d),
        Some(true) => ctx.set("UNDERSCORE_HEADERS", "drop".into(), d),
        None => {}
    }
}

fn convert_real_ip_from(ctx: &mut Ctx, d: &Directive) {
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

fn convert_real_ip_header(ctx: &mut Ctx, d: &Directive) {
    match d.arg(0).map(str::to_ascii_lowercase).as_deref() {
        Some("x-forwarded-for") => ctx.no_env(d, "no env needed: podgate reads X-Forwarded-For (and Forwarded) from PODGATE_TRUSTED_PROXIES"),
        _ => ctx.drop(d, "podgate reads the client address from X-Forwarded-For (and Forwarded) of trusted peers only"),
    }
}

fn convert_real_ip_recursive(ctx: &mut Ctx, d: &Directive) {
    match on_off(ctx, d) {
        Some(true) => ctx.no_env(d, "no env needed: podgate takes the right-most address that is not a trusted proxy"),
        Some(false) => ctx.drop(d, "podgate always skips trusted proxies in X-Forwarded-For, as `real_ip_recursive on` does"),
        None => {}
    }
}

fn convert_hide_header(ctx: &mut Ctx, d: &Directive) {
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

fn convert_set_header(ctx: &mut Ctx, d: &Directive) {
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

fn convert_map(ctx: &mut Ctx, d: &Directive) {
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

fn convert_http_version(ctx: &mut Ctx, d: &Directive) {
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

fn convert_proxy_redirect(ctx: &mut Ctx, d: &Directive) {
    match d.arg(0) {
        Some("off") | Some("default") => ctx.no_env(d, "no env needed: podgate does not rewrite Location; it keeps Host, so the app's redirects are right"),
        _ => ctx.drop(d, "podgate does not rewrite Location headers"),
    }
}

fn convert_proxy_buffering(ctx: &mut Ctx, d: &Directive) {
    match on_off(ctx, d) {
        Some(false) => ctx.no_env(d, "no env needed: podgate streams responses"),
        Some(true) => ctx.drop(d, "podgate streams responses to the client (a client that stops reading is cut after PODGATE_SEND_TIMEOUT)"),
        None => {}
    }
}

fn convert_request_buffering(ctx: &mut Ctx, d: &Directive) {
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

fn convert_body_buffer_size(ctx: &mut Ctx, d: &Directive) {
    let Some(a) = one_arg(ctx, d) else { return };
    match nginx_size(a) {
        Some(n) => ctx.body_buffer = Some((n, d.line, d.text())),
        None => ctx.drop(d, format!("{a:?} is not an nginx size such as 1m")),
    }
}

fn convert_body_temp_path(ctx: &mut Ctx, d: &Directive) {
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

fn convert_gzip(ctx: &mut Ctx, d: &Directive) {
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

fn convert_brotli(ctx: &mut Ctx, d: &Directive) {
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

fn convert_gzip_min_length(ctx: &mut Ctx, d: &Directive) {
    let Some(a) = one_arg(ctx, d) else { return };
    match nginx_size(a) {
        Some(n) => ctx.set("COMPRESSION_MIN_SIZE", podgate_size(n), d),
        None => ctx.drop(d, format!("{a:?} is not a length in bytes")),
    }
}

/// The prefix of a rewrite that only strips it: `^/p/(.*)$ /$1`,
/// `^/p(/.*)$ $1`, `^/p/?(.*)$ /$1`, `^/p(/|$)(.*)$ /$2`.
fn strip_prefix_of(pattern: &str, replacement: &str) -> Option<String> {
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

fn convert_rewrite(ctx: &mut Ctx, d: &Directive) {
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

fn convert_access_log(ctx: &mut Ctx, d: &Directive) {
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

fn convert_error_log(ctx: &mut Ctx, d: &Directive) {
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

fn convert_include(ctx: &mut Ctx, d: &Directive) {
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

/// One variable to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// Without the `PODGATE_` prefix.
    pub name: &'static str,
    pub value: String,
    /// The line of the directive it came from, and the directive.
    pub line: usize,
    pub from: String,
    pub note: Option<String>,
}

/// The result of a migration.
pub struct Migration {
    /// In README order.
    pub env: Vec<EnvVar>,
    pub defaults: Vec<Note>,
    pub dropped: Vec<Note>,
    /// What nginx did without a directive and podgate does differently.
    pub implicit: Vec<String>,
}

/// Converts a parsed config.
pub fn migrate(tree: &[Directive]) -> Migration {
    let mut ctx = Ctx::default();
    // A bare `server { … }` (conf.d/default.conf) or a whole nginx.conf.
    let (ups, rest): (Vec<&Directive>, Vec<&Directive>) = tree
        .iter()
        .partition(|c| c.name == "upstream" && c.block.is_some());
    for u in ups {
        if let Some(name) = u.arg(0) {
            ctx.upstreams.insert(name.to_string(), u.clone());
        }
    }
    for d in rest {
        ctx.apply(d);
    }
    for u in ctx.upstreams.values().cloned().collect::<Vec<_>>() {
        let used = ctx
            .seen
            .iter()
            .any(|s| s == &format!("upstream:{}", u.args[0]));
        if !used {
            ctx.no_env(&u, "no env needed: no proxy_pass uses this upstream");
        }
    }
    finish(&mut ctx);
    validate(&mut ctx);

    let mut implicit = Vec::new();
    let seen = |n: &str| ctx.seen.iter().any(|s| s == n);
    if !seen("client_max_body_size") {
        implicit.push("nginx refused request bodies over 1m (client_max_body_size); podgate allows 100m: set PODGATE_MAX_BODY=1m to keep nginx's limit".to_string());
    }
    let host_set = tree_has(tree, &|d| {
        d.name == "proxy_set_header" && d.arg(0).is_some_and(|h| h.eq_ignore_ascii_case("host"))
    });
    if !host_set {
        let proxy_host = ctx.proxy_host.as_deref().unwrap_or("127.0.0.1:8000");
        implicit.push(format!("nginx sent the app `Host: {proxy_host}` (the proxy_pass address); podgate passes the client's Host: the app (Django's ALLOWED_HOSTS) must accept the real host names"));
    }
    if !tree_has(tree, &|d| {
        d.name == "proxy_set_header"
            && d.arg(0)
                .is_some_and(|h| h.eq_ignore_ascii_case("x-forwarded-for"))
    }) {
        implicit.push("nginx sent no X-Forwarded-* headers; podgate sets X-Forwarded-For/-Proto/-Host/-Port and X-Real-IP".to_string());
    }
    if !seen("proxy_request_buffering") && !seen("client_body_buffer_size") {
        implicit.push("nginx read each request body whole (to a temp file above 16k) before contacting the app; podgate streams bodies: PODGATE_BUFFER_REQUESTS and PODGATE_BUFFER_DIR do what nginx did".to_string());
    }

    let mut env: Vec<_> = ctx
        .env
        .into_iter()
        .map(|(name, s)| EnvVar {
            name,
            value: s.value,
            line: s.line,
            from: s.from,
            note: s.note,
        })
        .collect();
    env.sort_by_key(|e| {
        VARS.iter()
            .position(|v| v.name == e.name)
            .unwrap_or(usize::MAX)
    });
    let mut defaults = ctx.defaults;
    defaults.sort_by_key(|n| n.line);
    let mut dropped = ctx.dropped;
    dropped.sort_by_key(|n| n.line);
    Migration {
        env,
        defaults,
        dropped,
        implicit,
    }
}

fn tree_has(tree: &[Directive], f: &dyn Fn(&Directive) -> bool) -> bool {
    tree.iter().any(|d| f(d) || tree_has(d.children(), f))
}

/// The settings that several directives make together.
fn finish(ctx: &mut Ctx) {
    // podgate removes the prefix before it looks for static files.
    if let (Some(strip), Some(dir)) = (
        ctx.env.get("STRIP_PREFIX").cloned(),
        ctx.env.get("STATIC_DIR").cloned(),
    ) {
        let prefix = ctx
            .env
            .get("STATIC_PREFIX")
            .map(|s| s.value.clone())
            .unwrap_or_else(|| Ctx::var_default("STATIC_PREFIX").to_string());
        let p = &strip.value;
        match prefix.strip_prefix(p.as_str()).filter(|r| r.starts_with('/')) {
            Some(inner) => {
                let inner = inner.to_string();
                let (line, from) = (dir.line, dir.from.clone());
                ctx.env.insert(
                    "STATIC_PREFIX",
                    Setting {
                        value: inner,
                        line,
                        from,
                        note: Some(format!("the path after {p} is removed, as podgate sees it")),
                    },
                );
            }
            None => ctx.dropped.push(Note {
                line: dir.line,
                directive: dir.from.clone(),
                why: format!("not carried over in full: with PODGATE_STRIP_PREFIX={p} podgate serves these files under {p}{prefix} (it removes the prefix before it looks for them), and {prefix} itself answers 404"),
            }),
        }
    }
    let on = |x: &Option<(bool, usize, String)>| x.as_ref().is_some_and(|x| x.0);
    if on(&ctx.gzip) || on(&ctx.brotli) {
        let mut list = Vec::new();
        let mut src = None;
        if let Some((true, line, text)) = ctx.gzip.clone() {
            list.push("gzip");
            src = Some((line, text));
        }
        if let Some((true, line, text)) = ctx.brotli.clone() {
            list.push("br");
            src = src.or(Some((line, text)));
        }
        if let Some((line, from)) = src {
            ctx.env.insert(
                "COMPRESSION",
                Setting {
                    value: list.join(","),
                    line,
                    from,
                    note: None,
                },
            );
        }
    }
    let buffering_on = ctx.request_buffering.as_ref().is_none_or(|b| b.0);
    let explicit_on = ctx.request_buffering.as_ref().is_some_and(|b| b.0);
    match (&ctx.body_buffer, buffering_on) {
        (Some((n, line, text)), true) => {
            let (n, line, text) = (*n, *line, text.clone());
            if let Some((true, bline, btext)) = ctx.request_buffering.clone() {
                ctx.defaults.push(Note {
                    line: bline,
                    directive: btext,
                    why: format!("carried over with client_body_buffer_size (line {line}) as PODGATE_BUFFER_REQUESTS"),
                });
            }
            ctx.env.insert(
                "BUFFER_REQUESTS",
                Setting {
                    value: podgate_size(n),
                    line,
                    from: text,
                    note: None,
                },
            );
        }
        (Some((_, line, text)), false) => {
            ctx.defaults.push(Note {
                line: *line,
                directive: text.clone(),
                why: "no env needed: it has no effect with proxy_request_buffering off, and podgate streams request bodies by default".into(),
            });
        }
        (None, _) if explicit_on => {
            if let Some((_, line, text)) = ctx.request_buffering.clone() {
                ctx.env.insert(
                    "BUFFER_REQUESTS",
                    Setting {
                        value: "16k".into(),
                        line,
                        from: text,
                        note: Some("nginx's default client_body_buffer_size".into()),
                    },
                );
            }
        }
        _ => {}
    }
    if let Some(s) = ctx.env.get("BUFFER_REQUESTS").cloned() {
        if !ctx.env.contains_key("BUFFER_DIR") {
            ctx.dropped.push(Note {
                line: s.line,
                directive: s.from,
                why: format!("not carried over in full: nginx wrote bodies above {} to a temp file; podgate refuses them with 413 unless PODGATE_BUFFER_DIR names a writable directory (mount an emptyDir and set it)", s.value),
            });
        }
    }
}

/// Runs what would be emitted through podgate's own configuration check; a
/// value podgate refuses is moved to the not-carried list. Directories are
/// left out: they are checked in the container, where they exist.
fn validate(ctx: &mut Ctx) {
    debug_assert!(
        ctx.env.keys().all(|k| VARS.iter().any(|v| v.name == *k)),
        "a variable podgate does not read: {:?}",
        ctx.env.keys()
    );
    let vars: Vec<(String, String)> = ctx
        .env
        .iter()
        .filter(|(k, _)| !matches!(**k, "STATIC_DIR" | "BUFFER_DIR"))
        .map(|(k, s)| (format!("{}{k}", config::PREFIX), s.value.clone()))
        .collect();
    if let Err(e) = Config::from_vars(vars) {
        for VarError {
            var,
            value,
            expected,
        } in e.errors
        {
            let short = var.strip_prefix(config::PREFIX).unwrap_or(&var).to_string();
            if let Some(s) = ctx.env.remove(short.as_str()) {
                ctx.dropped.push(Note {
                    line: s.line,
                    directive: s.from,
                    why: format!(
                        "not carried over: podgate refuses {var}={value:?} (expected {expected})"
                    ),
                });
            }
        }
    }
}

/// A YAML double-quoted string.
fn yaml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The report: an `env:` block, then comment lines. All of it is YAML.
pub fn render(file: &str, m: &Migration) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# podgate environment for the nginx config {file}");
    if m.env.is_empty() {
        s.push_str("env: []\n");
    } else {
        s.push_str("env:\n");
        for e in &m.env {
            let _ = write!(
                s,
                "  - name: {}{}\n    value: {}  # line {}: {}",
                config::PREFIX,
                e.name,
                yaml_str(&e.value),
                e.line,
                e.from
            );
            match &e.note {
                Some(n) => {
                    let _ = writeln!(s, " — {n}");
                }
                None => s.push('\n'),
            }
        }
    }
    if !m.defaults.is_empty() {
        s.push_str("# Already what podgate does (no env needed):\n");
        for n in &m.defaults {
            let _ = writeln!(s, "# line {}: {} — {}", n.line, n.directive, n.why);
        }
    }
    if !m.dropped.is_empty() {
        s.push_str("# Not carried over:\n");
        for n in &m.dropped {
            let _ = writeln!(s, "# line {}: {} — {}", n.line, n.directive, n.why);
        }
    }
    if !m.implicit.is_empty() {
        s.push_str("# nginx did this without a directive; podgate does it differently:\n");
        for n in &m.implicit {
            let _ = writeln!(s, "# - {n}");
        }
    }
    s
}

/// `podgate migrate-nginx FILE` and `--table`.
pub fn run(file: Option<&Path>, table_only: bool) -> ExitCode {
    if table_only {
        print!("{}", table());
        return ExitCode::from(EXIT_OK);
    }
    let Some(file) = file else {
        eprintln!("podgate migrate-nginx: give the nginx config file to read, e.g. podgate migrate-nginx default.conf");
        return ExitCode::from(EXIT_PARSE);
    };
    let text = match std::fs::read(file) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            eprintln!("podgate migrate-nginx: cannot read {}: {e}", file.display());
            return ExitCode::from(EXIT_NO_INPUT);
        }
    };
    let tree = match parse(&text) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "podgate migrate-nginx: {}:{}: {} (not valid nginx syntax; nothing was converted)",
                file.display(),
                e.line,
                e.message
            );
            return ExitCode::from(EXIT_PARSE);
        }
    };
    let m = migrate(&tree);
    print!("{}", render(&file.display().to_string(), &m));
    if m.dropped.is_empty() {
        ExitCode::from(EXIT_OK)
    } else {
        eprintln!(
            "podgate migrate-nginx: {} directive(s) not carried over, listed under \"Not carried over\"",
            m.dropped.len()
        );
        ExitCode::from(EXIT_NOT_CARRIED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_the_table_names_is_a_real_setting() {
        for r in RULES {
            for v in r.vars {
                assert!(
                    VARS.iter().any(|k| k.name == *v),
                    "rule {:?} names PODGATE_{v}, which podgate does not read",
                    r.names
                );
            }
            // And the README cell of a converting rule names what it sets.
            for v in r.vars {
                assert!(
                    r.podgate.contains(&format!("PODGATE_{v}")),
                    "the table row of {:?} does not mention PODGATE_{v}",
                    r.names
                );
            }
        }
        for (cell, _) in table().match_indices("PODGATE_") {
            let rest = &table()[cell + 8..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            assert!(
                VARS.iter().any(|k| k.name == name),
                "the table mentions PODGATE_{name}, which podgate does not read"
            );
        }
    }

    #[test]
    fn no_directive_has_two_rules() {
        let mut names: Vec<&str> = RULES.iter().flat_map(|r| r.names.iter().copied()).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(n, names.len(), "a directive name appears in two rules");
    }

    #[test]
    fn tokens_comments_quotes_and_lines() {
        let t = parse(
            "server { # a { comment ;\n  add_header X \"a;b}\" always;\n  rewrite ^/p/(.*)$ /$1 break;\n  return 200 'it\\'s';\n  set $x ${host}x;\n}\n",
        )
        .unwrap();
        let s = &t[0];
        assert_eq!(s.name, "server");
        let c = s.children();
        assert_eq!(c[0].args, ["X", "a;b}", "always"]);
        assert_eq!(c[0].line, 2);
        assert_eq!(c[1].args, ["^/p/(.*)$", "/$1", "break"]);
        assert_eq!(c[1].line, 3);
        assert_eq!(c[2].args, ["200", "it's"]);
        assert_eq!(c[3].args, ["$x", "${host}x"]);
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let e = parse(
            "server {\n  listen 80;\n  location / {\n    proxy_pass http://127.0.0.1:8000;\n  }\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert!(e.message.contains("never closed"), "{e}");
        let e = parse("server {\n  listen 80;\n}\n}\n").unwrap_err();
        assert_eq!(
            (e.line, e.message.contains("closes no block")),
            (4, true),
            "{e}"
        );
        let e = parse("server {\n  listen 80;\n  proxy_pass http://x\n}\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("missing ';'"), "{e}");
        let e = parse("server {\n  listen 80\n  server_name x;\n}\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("missing ';'"), "{e}");
        let e = parse("server {\n  add_header X \"a;\n  listen 80;\n}\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("unterminated quote"), "{e}");
        let e = parse("server {\n  ;\n}\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse("listen 80").unwrap_err();
        assert!(e.message.contains("missing ';'"), "{e}");
    }

    #[test]
    fn nginx_units_become_podgate_units() {
        assert_eq!(nginx_time("60"), Some(Duration::from_secs(60)));
        assert_eq!(nginx_time("10m"), Some(Duration::from_secs(600)));
        assert_eq!(nginx_time("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(nginx_time("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(nginx_time("1M"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(nginx_time("10x"), None);
        assert_eq!(nginx_time(""), None);
        assert_eq!(podgate_time(Duration::from_secs(600)), "10m");
        assert_eq!(podgate_time(Duration::from_secs(90)), "90s");
        assert_eq!(podgate_time(Duration::from_millis(1500)), "1500ms");
        assert_eq!(podgate_time(Duration::from_secs(7200)), "2h");
        assert_eq!(nginx_size("10m"), Some(10 << 20));
        assert_eq!(nginx_size("10M"), Some(10 << 20));
        assert_eq!(nginx_size("1024"), Some(1024));
        assert_eq!(nginx_size("1.5m"), None);
        assert_eq!(podgate_size(10 << 20), "10m");
        assert_eq!(podgate_size(1536), "1536");
        // What podgate prints, podgate reads back as the same value.
        for t in ["60", "10m", "1h30m", "500ms", "2h", "75s"] {
            let d = nginx_time(t).unwrap();
            assert_eq!(config::parse_duration(&podgate_time(d)), Some(d), "{t}");
        }
        for s in ["10m", "8k", "1536", "1g", "0"] {
            let n = nginx_size(s).unwrap();
            assert_eq!(config::parse_size(&podgate_size(n)), Some(n), "{s}");
        }
    }

    #[test]
    fn prefix_rewrites() {
        assert_eq!(
            strip_prefix_of("^/test01/(.*)$", "/$1").as_deref(),
            Some("/test01")
        );
        assert_eq!(
            strip_prefix_of("^/test01(/.*)$", "$1").as_deref(),
            Some("/test01")
        );
        assert_eq!(
            strip_prefix_of("^/a/b(/|$)(.*)$", "/$2").as_deref(),
            Some("/a/b")
        );
        assert_eq!(strip_prefix_of("^/test01/(.*)$", "/app/$1"), None);
        assert_eq!(strip_prefix_of("^/te.t/(.*)$", "/$1"), None);
        assert_eq!(strip_prefix_of("/test01/(.*)$", "/$1"), None);
    }

    fn run_on(src: &str) -> Migration {
        migrate(&parse(src).unwrap())
    }

    fn env_of(m: &Migration) -> Vec<(&str, &str)> {
        m.env.iter().map(|e| (e.name, e.value.as_str())).collect()
    }

    #[test]
    fn the_seed_config_needs_no_env() {
        let m = run_on("server {\n    listen 80;\n    server_name localhost;\n    location / {\n        proxy_pass http://127.0.0.1:8000;\n    }\n}\n");
        assert!(m.env.is_empty(), "{:?}", m.env);
        assert!(m.dropped.is_empty(), "{:?}", m.dropped);
        let lines: Vec<usize> = m.defaults.iter().map(|n| n.line).collect();
        assert_eq!(lines, [2, 3, 5, 5]);
    }

    #[test]
    fn upstream_keepalive_and_max_conns() {
        let m = run_on("upstream app {\n server 127.0.0.1:5000 max_conns=4;\n keepalive 32;\n keepalive_timeout 2s;\n}\nserver {\n listen 8080;\n keepalive_timeout 65;\n location / { proxy_pass http://app; }\n}\n");
        assert_eq!(
            env_of(&m),
            [
                ("LISTEN", "0.0.0.0:8080"),
                ("APP_PORT", "5000"),
                ("IDLE_TIMEOUT", "65s"),
                ("POOL_IDLE_TIMEOUT", "2s"),
                ("POOL_MAX_IDLE", "32"),
                ("APP_CONCURRENCY", "4"),
            ]
        );
        assert!(m.dropped.is_empty(), "{:?}", m.dropped);
    }

    fn dropped_lines(m: &Migration) -> Vec<usize> {
        m.dropped.iter().map(|n| n.line).collect()
    }

    #[test]
    fn one_listener_one_app() {
        let m = run_on("server {\n listen 80;\n listen [::]:80;\n location /api/ { proxy_pass http://127.0.0.1:9000; }\n location / { proxy_pass http://127.0.0.1:8000; }\n}\n");
        assert!(m.env.is_empty(), "{:?}", m.env);
        assert_eq!(dropped_lines(&m), [3, 4], "{:?}", m.dropped);
        assert!(
            m.dropped[0].why.contains("PODGATE_LISTEN=[::]:80"),
            "{:?}",
            m.dropped
        );
        assert!(
            m.dropped[1].why.contains("one app (127.0.0.1:8000)"),
            "{:?}",
            m.dropped
        );
    }

    #[test]
    fn a_compose_host_name_keeps_its_port_only() {
        let m = run_on("upstream myweb { server djangotest:8000; }\nserver {\n listen 80;\n location / { proxy_pass http://myweb; }\n}\n");
        assert!(m.env.is_empty(), "{:?}", m.env);
        assert_eq!(dropped_lines(&m), [1]);
        assert!(m.dropped[0].why.contains("by IP"), "{:?}", m.dropped);
    }

    #[test]
    fn static_files_without_expires_get_no_cache_control() {
        let m = run_on("server {\n root /srv;\n location /assets/ { }\n location / { proxy_pass http://127.0.0.1:8000; }\n}\n");
        assert_eq!(
            env_of(&m),
            [
                ("STATIC_DIR", "/srv/assets"),
                ("STATIC_PREFIX", "/assets/"),
                ("STATIC_CACHE_CONTROL", ""),
            ],
            "an empty location serves the server's root"
        );
        let m = run_on("server {\n location /assets/ { root /srv; }\n location / { proxy_pass http://127.0.0.1:8000; }\n}\n");
        assert_eq!(
            env_of(&m),
            [
                ("STATIC_DIR", "/srv/assets"),
                ("STATIC_PREFIX", "/assets/"),
                ("STATIC_CACHE_CONTROL", ""),
            ]
        );
        // A location with a rule in it is not a static one.
        let m = run_on("server {\n root /srv;\n location /healthz { return 200; }\n location / { proxy_pass http://127.0.0.1:8000; }\n}\n");
        assert!(m.env.is_empty(), "{:?}", m.env);
        assert_eq!(dropped_lines(&m), [3]);
    }

    #[test]
    fn gzip_and_brotli_together_and_partial_keepalive() {
        let m = run_on("server {\n gzip on;\n brotli on;\n keepalive_timeout 30s 25s;\n location / { proxy_pass http://127.0.0.1:8000; }\n}\n");
        assert_eq!(
            env_of(&m),
            [("IDLE_TIMEOUT", "30s"), ("COMPRESSION", "gzip,br")]
        );
        assert_eq!(dropped_lines(&m), [4]);
        assert!(m.dropped[0].why.contains("the second value"));
    }

    #[test]
    fn only_a_prefix_strip_is_a_rewrite_podgate_does() {
        let m = run_on("server {\n rewrite ^/old/(.*)$ /new/$1 permanent;\n location / { proxy_pass http://127.0.0.1:8000; }\n}\n");
        assert!(m.env.is_empty());
        assert_eq!(dropped_lines(&m), [2]);
        let m = run_on("server {\n location / {\n  rewrite ^/test01(/.*)$ $1 break;\n  proxy_pass http://127.0.0.1:8000;\n }\n}\n");
        assert_eq!(env_of(&m), [("STRIP_PREFIX", "/test01")]);
    }

    #[test]
    fn a_static_location_inside_the_stripped_prefix_loses_it() {
        let m = run_on("server {\n location /test01/static/ { alias /srv/static/; expires 1h; }\n location / {\n  rewrite ^/test01/(.*)$ /$1 break;\n  proxy_pass http://127.0.0.1:8000;\n }\n}\n");
        assert_eq!(
            env_of(&m),
            [
                ("STRIP_PREFIX", "/test01"),
                ("STATIC_DIR", "/srv/static"),
                ("STATIC_PREFIX", "/static/"),
            ]
        );
        assert!(m.dropped.is_empty(), "{:?}", m.dropped);
    }

    #[test]
    fn per_location_settings_are_not_global() {
        let m = run_on("server {\n location /upload/ {\n  client_max_body_size 1g;\n  proxy_pass http://127.0.0.1:8000;\n }\n location / { proxy_pass http://127.0.0.1:8000; }\n}\n");
        assert!(m.env.is_empty(), "{:?}", m.env);
        assert_eq!(dropped_lines(&m), [3]);
        assert!(m.dropped[0].why.contains("location /upload/"));
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_names_a_line(src in "[a-z_ ;{}#\"'\\$\n/0-9.:]{0,200}") {
            let lines = src.lines().count().max(1);
            match parse(&src) {
                Ok(tree) => {
                    let m = migrate(&tree);
                    let _ = render("x", &m);
                }
                Err(e) => proptest::prop_assert!(e.line >= 1 && e.line <= lines + 1, "{e} in {src:?}"),
            }
        }
    }

    #[test]
    fn absurd_numbers_are_refused_not_overflowed() {
        let m = run_on("server {\n large_client_header_buffers 99999999999999999999 1g;\n large_client_header_buffers 999999999999 1g;\n client_max_body_size 99999999999999999999g;\n proxy_read_timeout 99999999999999999999y;\n location / { proxy_pass http://127.0.0.1:8000; }\n}\n");
        assert!(m.env.is_empty(), "{:?}", m.env);
        assert_eq!(dropped_lines(&m), [2, 3, 4, 5], "{:?}", m.dropped);
    }

    #[test]
    fn values_podgate_refuses_are_not_emitted() {
        // 1k buffers make a 4k head limit, below podgate's 8k minimum.
        let m = run_on("server {\n large_client_header_buffers 4 1k;\n location / { proxy_pass http://127.0.0.1:8000; }\n}\n");
        assert!(
            m.env.iter().all(|e| e.name != "MAX_HEADER_BYTES"),
            "{:?}",
            m.env
        );
        assert!(
            m.dropped
                .iter()
                .any(|n| n.line == 2 && n.why.contains("PODGATE_MAX_HEADER_BYTES")),
            "{:?}",
            m.dropped
        );
    }
}
