//! What a conversion collects: the settings, the notes for each line, and
//! the helpers the converters share.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

// ---------------------------------------------------------------------------
// Conversion

/// A variable to set, with the directive(s) it came from.
#[derive(Debug, Clone)]
pub(super) struct Setting {
    pub(super) value: String,
    pub(super) line: usize,
    pub(super) from: String,
    /// What the user should know about the value.
    pub(super) note: Option<String>,
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
    pub(super) env: BTreeMap<&'static str, Setting>,
    /// Directives that need no variable.
    pub defaults: Vec<Note>,
    /// Directives (or parts) not carried over.
    pub dropped: Vec<Note>,
    /// The rule whose converter runs, to check what it sets.
    pub(super) current: Option<&'static Rule>,
    pub(super) upstreams: BTreeMap<String, Directive>,
    pub(super) servers: usize,
    /// Inside an `upstream` block.
    pub(super) in_upstream: bool,
    /// Inside a location that is not `/`: settings there are per-location.
    pub(super) in_location: Option<String>,
    /// The location prefix a `proxy_pass http://…/` strips.
    pub(super) location_prefix: Option<String>,
    /// `root` of the server, for a static location without alias or root.
    pub(super) server_root: Option<String>,
    pub(super) app_set: bool,
    pub(super) trusted: Vec<(String, usize)>,
    pub(super) hide: Vec<(String, usize)>,
    pub(super) gzip: Option<(bool, usize, String)>,
    pub(super) brotli: Option<(bool, usize, String)>,
    pub(super) request_buffering: Option<(bool, usize, String)>,
    pub(super) body_buffer: Option<(u64, usize, String)>,
    /// Inside a location that sets `Upgrade`: a WebSocket location.
    pub(super) upgrade_location: bool,
    pub(super) seen: Vec<String>,
    /// host[:port] of the first proxy_pass, what nginx sent as Host.
    pub(super) proxy_host: Option<String>,
}

impl Ctx {
    pub(super) fn var_default(name: &str) -> &'static str {
        VARS.iter()
            .find(|v| v.name == name)
            .map(|v| v.default)
            .unwrap_or("")
    }

    /// Same value as podgate's default, in the variable's own terms.
    pub(super) fn is_default(name: &str, value: &str) -> bool {
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
    pub(super) fn set(&mut self, name: &'static str, value: String, d: &Directive) {
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
    pub(super) fn note(&mut self, name: &str, note: impl Into<String>) {
        if let Some(s) = self.env.get_mut(name) {
            s.note = Some(note.into());
        }
    }

    /// Names every line a list variable came from.
    pub(super) fn gathered(&mut self, name: &str, directive: &str, items: &[(String, usize)]) {
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

    pub(super) fn no_env(&mut self, d: &Directive, why: impl Into<String>) {
        self.defaults.push(Note {
            line: d.line,
            directive: d.text(),
            why: why.into(),
        });
    }

    pub(super) fn drop(&mut self, d: &Directive, why: impl Into<String>) {
        self.dropped.push(Note {
            line: d.line,
            directive: d.text(),
            why: format!("not carried over: {}", why.into()),
        });
    }

    /// Runs the table's rule for one directive.
    pub(super) fn apply(&mut self, d: &Directive) {
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

    pub(super) fn walk(&mut self, ds: &[Directive]) {
        for d in ds {
            self.apply(d);
        }
    }
}

pub(super) fn one_arg<'a>(ctx: &mut Ctx, d: &'a Directive) -> Option<&'a str> {
    match d.args.as_slice() {
        [a] => Some(a),
        _ => {
            ctx.drop(d, format!("`{}` takes one value here", d.name));
            None
        }
    }
}

pub(super) fn time_var(ctx: &mut Ctx, d: &Directive, var: &'static str) -> Option<Duration> {
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

pub(super) fn on_off(ctx: &mut Ctx, d: &Directive) -> Option<bool> {
    match one_arg(ctx, d)? {
        "on" => Some(true),
        "off" => Some(false),
        other => {
            ctx.drop(d, format!("{other:?} is neither on nor off"));
            None
        }
    }
}
