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

mod context;
mod directives;
mod rules;
mod server;
mod syntax;
#[cfg(test)]
mod tests;
mod units;

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Config, VarError, VARS};

pub use context::*;
use directives::*;
pub use rules::*;
use server::*;
pub use syntax::*;
pub use units::*;

/// Exit status: everything carried over (or already podgate's default).
pub const EXIT_OK: u8 = 0;
/// Exit status: at least one directive was not carried over.
pub const EXIT_NOT_CARRIED: u8 = 2;
/// Exit status: the file is not valid nginx syntax (EX_DATAERR is 65, but
/// podgate uses 64 for every input it refuses).
pub const EXIT_PARSE: u8 = 64;
/// Exit status: the file cannot be read (EX_NOINPUT).
pub const EXIT_NO_INPUT: u8 = 66;

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
