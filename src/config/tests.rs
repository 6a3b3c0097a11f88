//! Loading and the value parsers, unit-tested.

use super::*;

fn load(vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

#[test]
fn defaults_are_valid_and_documented() {
    let l = load(&[]).expect("defaults parse");
    assert_eq!(l.config.listen, Some("0.0.0.0:80".parse().unwrap()));
    assert_eq!(l.config.app_addr(), "127.0.0.1:8000".parse().unwrap());
    assert_eq!(l.config.upstream_timeout, Duration::from_secs(60));
    assert_eq!(l.config.max_body, Some(100 << 20));
    assert!(l.config.max_body.unwrap() > 1 << 20, "above nginx's 1m");
    assert!(l.warnings.is_empty());
    assert!(l.effective.iter().all(|(_, _, s)| *s == Source::Default));
}

#[test]
fn values_are_read_from_the_map() {
    let l = load(&[
        ("PODGATE_LISTEN", "127.0.0.1:8080"),
        ("PODGATE_APP_PORT", "5000"),
        ("PODGATE_CONNECT_TIMEOUT", "250ms"),
        ("PODGATE_IDLE_TIMEOUT", "2m"),
        ("PODGATE_MAX_BODY", "512k"),
        ("PODGATE_LOG_FORMAT", "TEXT"),
        ("PODGATE_ACCESS_LOG", "false"),
        ("OTHER_VAR", "ignored"),
    ])
    .unwrap();
    let c = l.config;
    assert_eq!(c.listen.map(|a| a.port()), Some(8080));
    assert_eq!(c.app_addr().port(), 5000);
    assert_eq!(c.connect_timeout, Duration::from_millis(250));
    assert_eq!(c.idle_timeout, Duration::from_secs(120));
    assert_eq!(c.max_body, Some(512 * 1024));
    assert_eq!(c.log_format, LogFormat::Text);
    assert!(!c.access_log);
}

#[test]
fn every_bad_variable_is_reported_at_once() {
    let err = load(&[
        ("PODGATE_LISTEN", "80"),
        ("PODGATE_APP_PORT", "http"),
        ("PODGATE_UPSTREAM_TIMEOUT", "10"),
        ("PODGATE_MAX_BODY", "lots"),
        ("PODGATE_LOG_FORMAT", "xml"),
    ])
    .unwrap_err();
    let names: Vec<_> = err.errors.iter().map(|e| e.var.as_str()).collect();
    assert_eq!(
        names,
        [
            "PODGATE_LISTEN",
            "PODGATE_APP_PORT",
            "PODGATE_UPSTREAM_TIMEOUT",
            "PODGATE_MAX_BODY",
            "PODGATE_LOG_FORMAT"
        ]
    );
    let msg = err.to_string();
    assert!(msg.contains("PODGATE_APP_PORT=\"http\": expected a port number"));
    assert!(msg.contains("PODGATE_UPSTREAM_TIMEOUT=\"10\": expected a duration"));
}

#[test]
fn unknown_names_warn_but_service_links_do_not() {
    let l = load(&[
        ("PODGATE_LISTN", "0.0.0.0:80"),
        ("PODGATE_PORT", "tcp://10.0.0.7:80"),
        ("PODGATE_PORT_80_TCP_ADDR", "10.0.0.7"),
        ("PODGATE_SERVICE_HOST", "10.0.0.7"),
        ("PODGATE_SERVICE_PORT", "80"),
    ])
    .unwrap();
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert!(l.warnings[0].contains("PODGATE_LISTN"));
}

#[test]
fn zero_body_limit_means_unlimited() {
    let l = load(&[("PODGATE_MAX_BODY", "0")]).unwrap();
    assert_eq!(l.config.max_body, None);
}

#[test]
fn sizes() {
    assert_eq!(parse_size("1024"), Some(1024));
    assert_eq!(parse_size("512k"), Some(512 << 10));
    assert_eq!(parse_size("10m"), Some(10 << 20));
    assert_eq!(parse_size("10MiB"), Some(10 << 20));
    assert_eq!(parse_size("1g"), Some(1 << 30));
    assert_eq!(parse_size("k"), None);
    assert_eq!(parse_size("-1"), None);
    assert_eq!(parse_size("1.5m"), None);
    assert_eq!(parse_size("99999999999999999999g"), None);
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("10"), None);
}

#[test]
fn cidrs() {
    let v = parse_cidrs("10.0.0.0/8, 127.0.0.1,::1").unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(parse_cidrs("none").unwrap().len(), 0);
    assert!(parse_cidrs("10.0.0.0/33").is_none());
}
