//! k8s/monitoring/ against a running podgate: every metric the alerting rules
//! and the Grafana dashboard query is one podgate really exports (counters
//! with `_total`, histograms as `_bucket`/`_sum`/`_count`), and every label
//! they group or filter by is one those metrics carry (or one that Prometheus
//! adds to each scraped target). The metric names come from scraping
//! /metrics on the admin port after real traffic, not from a list.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use common::*;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

/// Labels Prometheus (with prometheus-operator's PodMonitor) puts on every
/// series of a scraped pod, whatever the exporter sends.
const TARGET_LABELS: &[&str] = &[
    "namespace",
    "pod",
    "container",
    "job",
    "instance",
    "endpoint",
];

fn monitoring_file(name: &str) -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("k8s/monitoring")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (path, text)
}

/// The `expr:` values of a PrometheusRule, with the name of the rule each
/// belongs to. Reads the two forms YAML offers here, a plain one-line value
/// and a `|`/`>` block scalar, and refuses anything else so an expression
/// cannot slip past unread.
fn rule_exprs(yaml: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut current = String::from("?");
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(name) = trimmed
            .strip_prefix("- alert:")
            .or_else(|| trimmed.strip_prefix("- record:"))
        {
            current = name.trim().to_string();
        }
        if let Some(value) = trimmed.strip_prefix("expr:") {
            let indent = line.len() - trimmed.len();
            let value = value.trim();
            if matches!(value, "|" | "|-" | ">" | ">-") {
                let mut body = Vec::new();
                i += 1;
                while i < lines.len() {
                    let l = lines[i];
                    let ind = l.len() - l.trim_start().len();
                    if !l.trim().is_empty() && ind <= indent {
                        break;
                    }
                    body.push(l.trim());
                    i += 1;
                }
                out.push((current.clone(), body.join(" ").trim().to_string()));
                continue;
            }
            assert!(
                !value.is_empty() && !value.starts_with(['"', '\'', '|', '>', '&', '*']),
                "rule {current}: expr {value:?} is in a YAML form this test does not read; \
                 write it on one line or as a `|` block"
            );
            out.push((current.clone(), value.to_string()));
        }
        i += 1;
    }
    out
}

/// Every `expr` in the dashboard's panels, and the selector inside each
/// `label_values(SELECTOR, LABEL)` template variable (whose LABEL is
/// returned as a used label too).
fn dashboard_exprs(json: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(v: &serde_json::Value, title: &str, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                let title = m
                    .get("title")
                    .and_then(|t| t.as_str())
                    .unwrap_or(title)
                    .to_string();
                for (k, v) in m {
                    if k == "expr" {
                        let e = v.as_str().expect("expr is a string");
                        out.push((format!("panel {title:?}"), e.to_string()));
                    } else {
                        walk(v, &title, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, title, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&json["panels"], "?", &mut out);
    for var in json["templating"]["list"]
        .as_array()
        .expect("templating.list")
    {
        if var["type"] != "query" {
            continue;
        }
        let q = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str())
            .expect("query variable has a query");
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable query {q:?} is not label_values(SELECTOR, LABEL)"));
        let (sel, label) = inner
            .rsplit_once(',')
            .expect("label_values(SELECTOR, LABEL)");
        // `sum by (LABEL) (SELECTOR)` uses the same metric and label.
        out.push((
            format!("variable {}", var["name"]),
            format!("sum by ({}) ({})", label.trim(), sel.trim()),
        ));
    }
    out
}

/// Metric names and label names one PromQL expression uses. A small lexer:
/// skips string literals and range/offset brackets, takes the label names of
/// `{...}` matchers and of `by`/`without`/`on`/`ignoring`/`group_*` lists,
/// and counts as a metric every other identifier that is neither a keyword,
/// an aggregation, nor a function call.
fn promql_names(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    let b: Vec<char> = expr.chars().collect();
    let mut metrics = BTreeSet::new();
    let mut labels = BTreeSet::new();
    let mut i = 0;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let skip_string = |i: &mut usize| {
        let q = b[*i];
        *i += 1;
        while *i < b.len() && b[*i] != q {
            if b[*i] == '\\' {
                *i += 1;
            }
            *i += 1;
        }
        *i += 1;
    };
    // Label names in a `(a, b)` list or a `{a="x", b=~"y"}` matcher.
    let label_names = |i: &mut usize, close: char, labels: &mut BTreeSet<String>| {
        *i += 1;
        let mut expect_name = true;
        while *i < b.len() && b[*i] != close {
            let c = b[*i];
            if c == '"' || c == '\'' || c == '`' {
                skip_string(i);
                continue;
            }
            if ident_start(c) && expect_name {
                let s = *i;
                while *i < b.len() && ident_char(b[*i]) {
                    *i += 1;
                }
                labels.insert(b[s..*i].iter().collect());
                expect_name = false;
                continue;
            }
            if c == ',' {
                expect_name = true;
            }
            *i += 1;
        }
        *i += 1;
    };
    while i < b.len() {
        let c = b[i];
        if c == '"' || c == '\'' || c == '`' {
            skip_string(&mut i);
        } else if c == '[' {
            while i < b.len() && b[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            label_names(&mut i, '}', &mut labels);
        } else if c.is_ascii_digit()
            || (c == '.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            // A number, possibly 1e-3 or 0x1f: digits and letters together.
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '.') {
                i += 1;
            }
        } else if ident_start(c) {
            let s = i;
            while i < b.len() && ident_char(b[i]) {
                i += 1;
            }
            let word: String = b[s..i].iter().collect();
            let mut j = i;
            while j < b.len() && b[j].is_whitespace() {
                j += 1;
            }
            let lower = word.to_ascii_lowercase();
            if LABEL_LISTS.contains(&lower.as_str()) {
                if b.get(j) == Some(&'(') {
                    i = j;
                    label_names(&mut i, ')', &mut labels);
                }
            } else if KEYWORDS.contains(&lower.as_str()) || AGGREGATIONS.contains(&lower.as_str()) {
            } else if b.get(j) == Some(&'(') {
                // a function call
            } else {
                metrics.insert(word);
            }
        } else {
            i += 1;
        }
    }
    (metrics, labels)
}

/// From the Prometheus text exposition: the sample names a query can use
/// (derived from the `# TYPE` lines, as Prometheus names the series of each
/// type), and the label names seen on each sample name.
fn exported(text: &str) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            panic!("malformed TYPE line {line:?}");
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
            "gauge" | "unknown" | "untyped" | "info" => {
                names.insert(name.to_string());
            }
            other => panic!("metric type {other} of {name} not handled by this test"),
        }
    }
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..end];
        assert!(
            names.contains(name),
            "sample {name} has no matching # TYPE line in\n{text}"
        );
        let set = labels.entry(name.to_string()).or_default();
        if line[end..].starts_with('{') {
            let (metrics_none, found) = promql_names(&line[end..line.find('}').unwrap() + 1]);
            assert!(metrics_none.is_empty());
            set.extend(found);
        }
    }
    (names, labels)
}

#[tokio::test]
async fn rules_and_dashboard_use_only_metrics_podgate_exports() {
    // An app with a page, a 404, a 500 and a request body it reads.
    let app = spawn_app(|req: Request<Incoming>| async move {
        let status = match req.uri().path() {
            "/missing" => StatusCode::NOT_FOUND,
            "/boom" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::OK,
        };
        let mut r = Response::new(full("hello"));
        *r.status_mut() = status;
        r
    })
    .await;
    let pg = start_podgate(app, &[("MAX_BODY", "16")]).await;
    wait_ready(&pg).await;
    // A second podgate in front of an app that answers garbage: app errors
    // of a kind, and 502s.
    let (bad_app, _log) = spawn_raw_app(b"not http at all\r\n\r\n", true).await;
    let pg_bad = start_podgate(bad_app, &[]).await;

    let c = client();
    for path in ["/", "/a", "/missing", "/boom"] {
        let r = c.get(pg.url(path)).send().await.unwrap();
        assert!(r.status().as_u16() >= 200);
    }
    // A chunked body past PODGATE_MAX_BODY: refused while being forwarded,
    // a client error of a kind.
    let body = "x".repeat(64);
    let resp = raw(
        pg.addr,
        format!(
            "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n40\r\n{body}\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&resp)), 413);
    let r = c.get(pg_bad.url("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);

    let mut names = BTreeSet::new();
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in [&pg, &pg_bad] {
        let r = c.get(p.admin_url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let (n, l) = exported(&r.text().await.unwrap());
        names.extend(n);
        for (k, v) in l {
            labels.entry(k).or_default().extend(v);
        }
    }
    // The scrape itself is what the check rests on: it must show the
    // traffic just sent, labels included.
    for (metric, label) in [
        ("podgate_requests_total", "status_class"),
        ("podgate_upstream_errors_total", "kind"),
        ("podgate_request_duration_seconds_bucket", "le"),
    ] {
        assert!(
            labels.get(metric).is_some_and(|l| l.contains(label)),
            "the scrape has no {metric} sample with label {label}: {labels:?}"
        );
    }

    let (rules_path, rules) = monitoring_file("prometheusrule.yaml");
    let (dash_path, dash) = monitoring_file("podgate-dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(&dash).expect("dashboard is JSON");
    let rule_exprs = rule_exprs(&rules);
    let alerts = rules
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert!(
        alerts >= 4,
        "expected the alerts in {}",
        rules_path.display()
    );
    assert_eq!(
        rule_exprs.len(),
        alerts,
        "one expr per alert in {}",
        rules_path.display()
    );
    let dash_exprs = dashboard_exprs(&dash);
    assert!(
        dash_exprs.len() >= 10,
        "expected the panel queries of {}",
        dash_path.display()
    );

    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (source, exprs) in [(&rules_path, &rule_exprs), (&dash_path, &dash_exprs)] {
        for (what, e) in exprs {
            let (metrics, expr_labels) = promql_names(e);
            if metrics.is_empty() {
                problems.push(format!("{}: {what}: no metric in {e:?}", source.display()));
            }
            let mut available: BTreeSet<String> =
                TARGET_LABELS.iter().map(|s| s.to_string()).collect();
            for m in &metrics {
                used.insert(m.clone());
                if !names.contains(m) {
                    problems.push(format!(
                        "{}: {what}: podgate exports no {m} (it exports {names:?})",
                        source.display()
                    ));
                }
                available.extend(labels.get(m).cloned().unwrap_or_default());
            }
            for l in expr_labels.difference(&available) {
                problems.push(format!(
                    "{}: {what}: label {l} is on none of {metrics:?} (their labels: {available:?})",
                    source.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // What the issue asks the rules and dashboard to cover.
    for m in [
        "podgate_ready",
        "podgate_requests_total",
        "podgate_upstream_errors_total",
        "podgate_log_lines_dropped_total",
        "podgate_request_duration_seconds_bucket",
        "podgate_upstream_duration_seconds_bucket",
        "podgate_requests_in_flight",
        "podgate_client_connections_open",
    ] {
        assert!(
            used.contains(m),
            "neither the rules nor the dashboard use {m}"
        );
    }
}

#[test]
fn the_promql_reader_finds_metrics_and_labels() {
    let (m, l) = promql_names(
        r#"histogram_quantile(0.99, sum by (le, pod) (rate(podgate_x_bucket{namespace=~"a|b", kind!="y"}[$__rate_interval] offset 5m))) > 1e-3 and on (pod) podgate_ready == 0"#,
    );
    assert_eq!(
        m.into_iter().collect::<Vec<_>>(),
        ["podgate_ready", "podgate_x_bucket"]
    );
    assert_eq!(
        l.into_iter().collect::<Vec<_>>(),
        ["kind", "le", "namespace", "pod"]
    );
    let exprs = rule_exprs(
        "      rules:\n        - alert: A\n          expr: up == 0\n        - alert: B\n          expr: |\n            sum(x)\n              > 1\n          for: 5m\n",
    );
    assert_eq!(
        exprs,
        [
            ("A".to_string(), "up == 0".to_string()),
            ("B".to_string(), "sum(x) > 1".to_string())
        ]
    );
}
