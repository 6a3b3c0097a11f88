//! nginx configuration syntax: comments, quotes, escapes, braces,
//! semicolons and line numbers, into a tree of [`Directive`]s.

use std::fmt;

use super::*;

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

    pub(super) fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(String::as_str)
    }

    pub(super) fn children(&self) -> &[Directive] {
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
pub(super) enum Tok {
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
pub(super) fn unescape(raw: &str) -> String {
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

pub(super) fn tokenize(src: &str) -> Result<Vec<Tok>, ParseError> {
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

pub(super) fn parse_block(
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
pub(super) fn check_missing_semicolons(tree: &[Directive]) -> Result<(), ParseError> {
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
