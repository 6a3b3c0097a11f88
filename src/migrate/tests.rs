//! The tokenizer, the units and the mapping table, unit-tested.

use std::time::Duration;

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
