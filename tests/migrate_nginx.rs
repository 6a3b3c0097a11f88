//! `podgate migrate-nginx` over real-world sidecar configs (tests/nginx/),
//! through the real binary: the env block it prints, the lines it did not
//! carry over, its exit codes, and podgate's own configuration check
//! accepting what it printed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{client, full, spawn_app, start_podgate};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_podgate"));
    // The migration must not depend on the environment it runs in.
    c.env_clear();
    c
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/nginx")
        .join(name)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(out: Output) -> Run {
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

fn migrate(name: &str) -> Run {
    run(bin()
        .arg("migrate-nginx")
        .arg(fixture(name))
        .output()
        .unwrap())
}

/// A YAML double-quoted scalar as the command writes it.
fn yaml_unquote(s: &str) -> String {
    let inner = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("value is not a double-quoted string: {s}"));
    let mut out = String::new();
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            assert_ne!(c, '"', "unescaped quote in {s}");
            out.push(c);
            continue;
        }
        match it.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('x') => {
                let hex: String = it.by_ref().take(2).collect();
                out.push(char::from(u8::from_str_radix(&hex, 16).unwrap()));
            }
            other => panic!("unknown escape {other:?} in {s}"),
        }
    }
    out
}

/// The output is YAML: `env:` with `- name:`/`value:` pairs, or `env: []`,
/// and comment lines. Anything else fails the test. Returns the pairs.
fn parse_env_block(stdout: &str) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let mut seen_env = false;
    let mut lines = stdout.lines().peekable();
    while let Some(l) = lines.next() {
        if l.starts_with('#') {
            continue;
        }
        if l == "env: []" {
            assert!(!seen_env, "two env keys");
            seen_env = true;
            continue;
        }
        if l == "env:" {
            assert!(!seen_env, "two env keys");
            seen_env = true;
            while let Some(item) = lines.peek().and_then(|l| l.strip_prefix("  - name: ")) {
                let name = item.to_string();
                lines.next();
                let v = lines
                    .next()
                    .and_then(|l| l.strip_prefix("    value: "))
                    .unwrap_or_else(|| panic!("{name} has no value line"));
                // `"…"  # line N: …`: the comment names the source line.
                let (quoted, comment) = v
                    .split_once("  # line ")
                    .unwrap_or_else(|| panic!("{name}: no source line in {v:?}"));
                assert!(
                    comment.split(':').next().unwrap().parse::<usize>().is_ok(),
                    "{name}: {comment}"
                );
                env.push((name, yaml_unquote(quoted)));
            }
            continue;
        }
        panic!("not YAML this command writes: {l:?}\n{stdout}");
    }
    assert!(seen_env, "no env key in\n{stdout}");
    env
}

/// The `# line N: directive — why` lines under a heading.
fn section<'a>(stdout: &'a str, heading: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| l.starts_with("# line "))
        .collect()
}

const DEFAULTS: &str = "# Already what podgate does (no env needed):";
const DROPPED: &str = "# Not carried over:";

fn env_pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs `podgate config` with the env set: exit 0 means podgate's own
/// validation accepted every value, and each shows as coming from the env.
fn podgate_accepts(env: &[(String, String)]) {
    let out = run(bin()
        .arg("config")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap());
    assert_eq!(
        out.code, 0,
        "podgate refused the migrated env: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("warning"),
        "podgate warned about the migrated env: {}",
        out.stderr
    );
    for (k, v) in env {
        let row = out
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(k.as_str()))
            .unwrap_or_else(|| panic!("podgate config does not list {k}"));
        let rest = row[k.len()..].trim_start();
        assert!(rest.starts_with("env "), "{k} not from the env: {row}");
        assert_eq!(rest["env".len()..].trim(), v.trim(), "{row}");
    }
}

/// The directories must exist where podgate checks them; the migrated
/// value names a path in the target container, so the check uses a real
/// directory in its place.
fn with_local_dirs(env: &[(String, String)], dir: &Path) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| match k.as_str() {
            "PODGATE_STATIC_DIR" | "PODGATE_BUFFER_DIR" => {
                (k.clone(), dir.to_str().unwrap().to_string())
            }
            _ => (k.clone(), v.clone()),
        })
        .collect()
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("podgate-migrate-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_seed_default_conf_is_all_podgate_defaults() {
    let r = migrate("default.conf");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(parse_env_block(&r.stdout).is_empty(), "{}", r.stdout);
    let defaults = section(&r.stdout, DEFAULTS);
    for (line, what) in [
        (
            2,
            "listen 80 — already podgate's default (PODGATE_LISTEN=0.0.0.0:80)",
        ),
        (3, "server_name localhost — no env needed"),
        (
            5,
            "proxy_pass http://127.0.0.1:8000 — already podgate's default (PODGATE_APP_PORT=8000)",
        ),
    ] {
        let want = format!("# line {line}: {what}");
        assert!(
            defaults.iter().any(|l| l.starts_with(&want)),
            "{want:?} missing from\n{}",
            r.stdout
        );
    }
    assert!(section(&r.stdout, DROPPED).is_empty(), "{}", r.stdout);
    // What nginx did silently and podgate does not: the body limit, Host.
    assert!(r
        .stdout
        .contains("PODGATE_MAX_BODY=1m to keep nginx's limit"));
    assert!(r.stdout.contains("`Host: 127.0.0.1:8000`"));
}

#[test]
fn the_usual_additions_carry_over_and_podgate_accepts_them() {
    let r = migrate("usual.conf");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let env = parse_env_block(&r.stdout);
    assert_eq!(
        env,
        env_pairs(&[
            ("PODGATE_LISTEN", "0.0.0.0:8080"),
            ("PODGATE_APP_PORT", "8001"),
            ("PODGATE_CONNECT_TIMEOUT", "5s"),
            ("PODGATE_UPSTREAM_TIMEOUT", "10m"),
            ("PODGATE_IDLE_TIMEOUT", "65s"),
            ("PODGATE_MAX_BODY", "20m"),
            ("PODGATE_POOL_MAX_IDLE", "32"),
            ("PODGATE_TRUSTED_PROXIES", "10.0.0.0/8,192.168.0.0/16"),
            ("PODGATE_UNDERSCORE_HEADERS", "allow"),
            ("PODGATE_HIDE_HEADERS", "x-powered-by,server"),
            ("PODGATE_TUNNEL_IDLE_TIMEOUT", "10m"),
            ("PODGATE_STATIC_DIR", "/app/staticfiles"),
            ("PODGATE_STATIC_CACHE_CONTROL", "public, max-age=2592000"),
            ("PODGATE_COMPRESSION", "gzip"),
            ("PODGATE_COMPRESSION_MIN_SIZE", "256"),
            ("PODGATE_BUFFER_REQUESTS", "1m"),
            ("PODGATE_BUFFER_DIR", "/var/cache/nginx/client_temp"),
        ])
    );
    // Each value names the directive it came from.
    assert!(r
        .stdout
        .contains("value: \"20m\"  # line 11: client_max_body_size 20M"));
    assert!(r.stdout.contains("(lines 19, 20)"), "{}", r.stdout);
    let defaults = section(&r.stdout, DEFAULTS);
    for line in [
        9, 13, 21, 22, 25, 27, 28, 39, 40, 41, 42, 43, 44, 45, 46, 49,
    ] {
        assert!(
            defaults
                .iter()
                .any(|l| l.starts_with(&format!("# line {line}: "))),
            "line {line} not reported as needing no env:\n{}",
            r.stdout
        );
    }
    assert!(section(&r.stdout, DROPPED).is_empty(), "{}", r.stdout);
    let dir = scratch_dir("usual");
    podgate_accepts(&with_local_dirs(&env, &dir));
    let _ = std::fs::remove_dir_all(dir);
}

/// The migrated env does over real sockets what the nginx config did:
/// static files are served with nginx's `expires`, the body limit and the
/// hidden headers hold, responses are gzipped.
#[tokio::test]
async fn the_migrated_env_does_what_the_nginx_config_did() {
    let r = migrate("usual.conf");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let env = parse_env_block(&r.stdout);
    let root = scratch_dir("e2e");
    let static_dir = root.join("staticfiles");
    let spool = root.join("spool");
    std::fs::create_dir_all(&static_dir).unwrap();
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(static_dir.join("site.css"), "body { color: red; }\n").unwrap();
    // The test's own loopback addresses replace the listener and the app;
    // the directories are the ones just made.
    let vars: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "PODGATE_LISTEN" | "PODGATE_APP_PORT"))
        .map(|(k, v)| {
            let v = match k.as_str() {
                "PODGATE_STATIC_DIR" => static_dir.to_str().unwrap().to_string(),
                "PODGATE_BUFFER_DIR" => spool.to_str().unwrap().to_string(),
                _ => v.clone(),
            };
            (k.trim_start_matches("PODGATE_").to_string(), v)
        })
        .collect();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = spawn_app(|req: http::Request<hyper::body::Incoming>| async move {
        http::Response::builder()
            .header("x-seen-path", req.uri().path())
            .header("x-powered-by", "Django")
            .header("server", "gunicorn")
            .header("content-type", "text/html")
            .body(full("<p>hello</p>\n".repeat(100)))
            .unwrap()
    })
    .await;
    let pg = start_podgate(app, &vars).await;
    let c = client();

    let resp = c
        .get(pg.url("/accounts/login/"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-seen-path"], "/accounts/login/");
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert!(resp.headers().get("x-powered-by").is_none());
    assert!(resp.headers().get("server").is_none());

    let resp = c.get(pg.url("/static/site.css")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "public, max-age=2592000");
    assert_eq!(resp.text().await.unwrap(), "body { color: red; }\n");

    // client_max_body_size 20M: 21 MiB is refused.
    let resp = c
        .post(pg.url("/upload"))
        .body(vec![b'x'; 21 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let _ = std::fs::remove_dir_all(root);
}

/// A prefix the sidecar stripped with `rewrite` beside a static location:
/// the prefix carries over, and the line says where the static files end
/// up, which podgate then really does.
#[tokio::test]
async fn a_rewritten_prefix_moves_the_static_files_under_it() {
    let r = migrate("prefix.conf");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let env = parse_env_block(&r.stdout);
    assert_eq!(
        env,
        env_pairs(&[
            ("PODGATE_STRIP_PREFIX", "/test01"),
            ("PODGATE_STATIC_DIR", "/app/staticfiles"),
            ("PODGATE_STATIC_CACHE_CONTROL", ""),
        ])
    );
    let dropped = section(&r.stdout, DROPPED);
    assert_eq!(dropped.len(), 1, "{}", r.stdout);
    assert!(
        dropped[0].starts_with("# line 5: location /static/ { … } — not carried over in full")
            && dropped[0].contains("under /test01/static/")
            && dropped[0].contains("/static/ itself answers 404"),
        "{}",
        dropped[0]
    );

    let root = scratch_dir("prefix");
    std::fs::write(root.join("site.css"), "body {}\n").unwrap();
    let vars: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| {
            let v = if k == "PODGATE_STATIC_DIR" {
                root.to_str().unwrap().to_string()
            } else {
                v.clone()
            };
            (k.trim_start_matches("PODGATE_").to_string(), v)
        })
        .collect();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = spawn_app(|req: http::Request<hyper::body::Incoming>| async move {
        http::Response::builder()
            .header("x-seen-path", req.uri().path())
            .body(full("app"))
            .unwrap()
    })
    .await;
    let pg = start_podgate(app, &vars).await;
    let c = client();
    let resp = c.get(pg.url("/test01/admin/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-seen-path"], "/admin/");
    let resp = c
        .get(pg.url("/test01/static/site.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("cache-control").is_none(),
        "nginx sent none"
    );
    assert_eq!(resp.text().await.unwrap(), "body {}\n");
    let resp = c.get(pg.url("/static/site.css")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_whole_nginx_conf_with_a_proxied_prefix() {
    let r = migrate("full-nginx.conf");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let env = parse_env_block(&r.stdout);
    assert_eq!(
        env,
        env_pairs(&[
            ("PODGATE_APP_PORT", "5000"),
            ("PODGATE_HEADER_TIMEOUT", "20s"),
            ("PODGATE_BODY_TIMEOUT", "2m"),
            ("PODGATE_MAX_HEADER_BYTES", "64k"),
            ("PODGATE_MAX_URI", "16k"),
            ("PODGATE_SEND_TIMEOUT", "30s"),
            ("PODGATE_STRIP_PREFIX", "/test01"),
            ("PODGATE_ACCESS_LOG", "false"),
        ])
    );
    // `keepalive_timeout 75s` and `error_log … notice` are podgate's defaults.
    let defaults = section(&r.stdout, DEFAULTS);
    assert!(defaults.iter().any(|l| l.starts_with(
        "# line 18: keepalive_timeout 75s — already podgate's default (PODGATE_IDLE_TIMEOUT=75s)"
    )));
    assert!(defaults.iter().any(|l| l.starts_with(
        "# line 4: error_log /var/log/nginx/error.log notice — already podgate's default (PODGATE_LOG=info)"
    )));
    podgate_accepts(&env);
}

#[test]
fn what_podgate_does_not_do_is_listed_line_by_line_with_exit_2() {
    let r = migrate("unsupported.conf");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(parse_env_block(&r.stdout).is_empty());
    let dropped = section(&r.stdout, DROPPED);
    let expected = [
        (1, "limit_req_zone", "rate limiting"),
        (2, "proxy_cache_path", "caches nothing"),
        (
            8,
            "proxy_set_header X-Foo bar",
            "custom headers are not supported",
        ),
        (9, "proxy_send_timeout 120s", "PODGATE_UPSTREAM_TIMEOUT"),
        (
            10,
            "add_header X-Frame-Options DENY always",
            "response headers",
        ),
        (13, "auth_basic \"Restricted\"", "authentication"),
        (14, "auth_basic_user_file", "authentication"),
        (19, "if (", "request rules"),
        (22, "limit_req zone=perip", "rate limiting"),
        (23, "proxy_cache app", "caches nothing"),
        (24, "proxy_cache_valid", "caches nothing"),
    ];
    assert_eq!(dropped.len(), expected.len(), "{}", r.stdout);
    for ((line, directive, why), got) in expected.iter().zip(&dropped) {
        let head = format!("# line {line}: {directive}");
        assert!(got.starts_with(&head), "{got:?} should start {head:?}");
        let (_, reason) = got.split_once(" — ").unwrap();
        assert!(reason.starts_with("not carried over: "), "{got}");
        assert!(reason.contains(why), "{got} should say {why:?}");
    }
    assert!(
        r.stderr.contains("11 directive(s) not carried over"),
        "{}",
        r.stderr
    );
    // `location /` names the app; the proxied /admin/ is the same one.
    assert!(section(&r.stdout, DEFAULTS).iter().any(|l| l
        .starts_with("# line 15: proxy_pass http://127.0.0.1:8000 — no env needed: the same app")));
}

#[test]
fn the_compose_upstream_keeps_its_port_and_says_why_not_its_host() {
    let r = migrate("compose-upstream.conf");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    // Port 8000 is podgate's default; the Compose service name is not an IP.
    assert!(parse_env_block(&r.stdout).is_empty(), "{}", r.stdout);
    let dropped = section(&r.stdout, DROPPED);
    assert_eq!(dropped.len(), 1, "{}", r.stdout);
    assert!(
        dropped[0].starts_with(
            "# line 3: server djangotest:8000 — not carried over: the host name \"djangotest\""
        ),
        "{}",
        dropped[0]
    );
    assert!(dropped[0].contains("127.0.0.1"), "{}", dropped[0]);
    assert!(section(&r.stdout, DEFAULTS)
        .iter()
        .any(|l| l.starts_with("# line 11: proxy_pass http://myweb — no env needed: the app is the server of upstream myweb (line 2)")));
    // nginx sent the upstream's name as Host.
    assert!(r.stdout.contains("`Host: myweb`"), "{}", r.stdout);
}

#[test]
fn a_websocket_location_sets_the_tunnel_idle_timeout() {
    let r = migrate("websocket.conf");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let env = parse_env_block(&r.stdout);
    // proxy_read_timeout in the location that sets Upgrade is how long a
    // quiet WebSocket lives; it does not become the app response timeout.
    assert_eq!(env, env_pairs(&[("PODGATE_TUNNEL_IDLE_TIMEOUT", "1h")]));
    let defaults = section(&r.stdout, DEFAULTS);
    for line in [2, 11, 12, 13, 14, 19, 20, 21] {
        assert!(
            defaults
                .iter()
                .any(|l| l.starts_with(&format!("# line {line}: "))),
            "line {line} not reported:\n{}",
            r.stdout
        );
    }
    podgate_accepts(&env);
}

#[test]
fn files_that_are_not_nginx_syntax_exit_64_with_the_line() {
    for (file, line, what) in [
        ("broken-brace.conf", 1, "unbalanced braces"),
        ("broken-semicolon.conf", 3, "missing ';'"),
        ("broken-quote.conf", 3, "unterminated quote"),
    ] {
        let r = migrate(file);
        assert_eq!(r.code, 64, "{file}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.is_empty(), "{file}: printed {}", r.stdout);
        let want = format!("{file}:{line}: {what}");
        assert!(
            r.stderr.contains(&want),
            "{file}: {:?} lacks {want:?}",
            r.stderr
        );
    }
}

#[test]
fn a_file_that_cannot_be_read_exits_66() {
    let r = run(bin()
        .args(["migrate-nginx", "/nonexistent/default.conf"])
        .output()
        .unwrap());
    assert_eq!(r.code, 66, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot read /nonexistent/default.conf"),
        "{}",
        r.stderr
    );
}

#[test]
fn no_file_is_a_usage_error_not_a_partial_migration() {
    let r = run(bin().arg("migrate-nginx").output().unwrap());
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(
        r.stderr.contains("give the nginx config file"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
}

#[test]
fn help_names_the_exit_codes() {
    let r = run(bin().args(["migrate-nginx", "--help"]).output().unwrap());
    assert_eq!(r.code, 0);
    for s in [
        "0 everything carried over",
        "2 something was not",
        "64",
        "66",
        "--table",
    ] {
        assert!(r.stdout.contains(s), "--help lacks {s:?}:\n{}", r.stdout);
    }
}

/// The README's migration table is the command's own table, byte for byte.
#[test]
fn readme_migration_table_is_the_mapping_table() {
    let r = run(bin().args(["migrate-nginx", "--table"]).output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r
        .stdout
        .starts_with("| nginx sidecar directive | podgate |\n|---|---|\n"));
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = "<!-- migrate-nginx table: `podgate migrate-nginx --table` writes it -->\n";
    let end = "<!-- end of migrate-nginx table -->";
    let from = readme
        .find(start)
        .unwrap_or_else(|| panic!("README lacks {start:?}"))
        + start.len();
    let to = from
        + readme[from..]
            .find(end)
            .unwrap_or_else(|| panic!("README lacks {end:?}"));
    assert_eq!(
        &readme[from..to],
        r.stdout,
        "README's migration table differs from `podgate migrate-nginx --table`"
    );
}
