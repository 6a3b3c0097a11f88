//! The nginx extras, each off by default: static files, compression, request
//! buffering, prefix stripping, and the app concurrency limit.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("podgate-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn static_files_are_served_safely() {
    let root = temp_dir("static");
    let dir = root.join("static");
    std::fs::create_dir_all(dir.join("css")).unwrap();
    std::fs::write(
        dir.join("css/site.css"),
        "body { color: red; }\n".repeat(100),
    )
    .unwrap();
    std::fs::write(dir.join("app.js"), "console.log(1)").unwrap();
    std::fs::write(dir.join("app.js.gz"), b"\x1f\x8bfake-gzip").unwrap();
    std::fs::write(dir.join("a b.txt"), "spaced").unwrap();
    std::fs::write(root.join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(root.join("secret.txt"), dir.join("escape.txt")).unwrap();
    std::os::unix::fs::symlink("css/site.css", dir.join("inside.css")).unwrap();

    let app = spawn_echo_app().await;
    let pg = start_podgate(
        app,
        &[
            ("STATIC_DIR", dir.to_str().unwrap()),
            ("STATIC_PREFIX", "/static/"),
            ("STATIC_CACHE_CONTROL", "public, max-age=60"),
        ],
    )
    .await;
    let c = client();
    let r = c.get(pg.url("/static/css/site.css")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/css");
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
    let etag = r.headers().get("etag").cloned();
    let last_modified = r.headers()["last-modified"].clone();
    assert!(r.text().await.unwrap().starts_with("body { color: red; }"));

    // Conditional request.
    let mut req = c
        .get(pg.url("/static/css/site.css"))
        .header("if-modified-since", last_modified);
    if let Some(e) = etag {
        req = req.header("if-none-match", e);
    }
    assert_eq!(req.send().await.unwrap().status(), 304);

    // Range.
    let r = c
        .get(pg.url("/static/css/site.css"))
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.text().await.unwrap(), "body");

    // Precompressed variant.
    let r = c
        .get(pg.url("/static/app.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"\x1f\x8bfake-gzip");

    assert_eq!(
        c.get(pg.url("/static/a%20b.txt"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "spaced"
    );
    assert_eq!(
        c.get(pg.url("/static/inside.css"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Escapes, raw so no client normalises the path first.
    for path in [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/css/%2e%2e/%2e%2e/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/%2fetc/passwd",
        "/static/..\\secret.txt",
        "/static/escape.txt",
        "/static/css/",
        "/static/",
    ] {
        let text = String::from_utf8_lossy(
            &raw(
                pg.addr,
                format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap(),
        )
        .into_owned();
        let status = status_of(&text);
        assert!(
            status == 403 || status == 404 || status == 400,
            "{path}: {status}"
        );
        assert!(!text.contains("top secret"), "{path} leaked: {text}");
    }
    // Not configured to fall through: a missing file is podgate's 404.
    let r = c.get(pg.url("/static/missing.css")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Outside the prefix: the app.
    let r = c.get(pg.url("/page")).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("\"target\":\"/page\""));

    let pg = start_podgate(
        app,
        &[
            ("STATIC_DIR", dir.to_str().unwrap()),
            ("STATIC_FALLTHROUGH", "true"),
        ],
    )
    .await;
    let r = c.get(pg.url("/static/missing.css")).send().await.unwrap();
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("\"target\":\"/static/missing.css\""),
        "fell through to the app"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn compression_follows_accept_encoding() {
    let app = spawn_app(|req: Request<Incoming>| async move {
        let mut r = Response::new(full("x".repeat(4000)));
        let ct = if req.uri().path() == "/img" {
            "image/png"
        } else {
            "text/html"
        };
        r.headers_mut().insert("content-type", ct.parse().unwrap());
        if req.uri().path() == "/pre" {
            r.headers_mut()
                .insert("content-encoding", "identity-custom".parse().unwrap());
        }
        if req.uri().path() == "/small" {
            *r.body_mut() = full("tiny");
        }
        r
    })
    .await;
    let pg = start_podgate(
        app,
        &[("COMPRESSION", "gzip,br"), ("COMPRESSION_MIN_SIZE", "1k")],
    )
    .await;
    // A client that does not decode, to see the raw encoding.
    let c = client();
    let r = c
        .get(pg.url("/"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert!(r.headers()["vary"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("accept-encoding"));
    let zipped = r.bytes().await.unwrap();
    assert!(zipped.len() < 4000);
    let r = c
        .get(pg.url("/"))
        .header("accept-encoding", "gzip;q=0.5, br;q=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "br");
    let r = c
        .get(pg.url("/"))
        .header("accept-encoding", "gzip;q=0")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    let r = c.get(pg.url("/")).send().await.unwrap();
    assert!(
        r.headers().get("content-encoding").is_none(),
        "no Accept-Encoding, no compression"
    );
    for path in ["/img", "/pre", "/small"] {
        let r = c
            .get(pg.url(path))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        let ce = r
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            ce.is_none() || ce.as_deref() == Some("identity-custom"),
            "{path}: {ce:?}"
        );
    }
    let pg = start_podgate(app, &[]).await;
    let r = c
        .get(pg.url("/"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().get("content-encoding").is_none(),
        "off by default"
    );
}

/// A client uploading slowly must not occupy an app worker for the upload:
/// with buffering the app sees the request only once the body is complete.
#[tokio::test]
async fn buffering_keeps_slow_uploads_off_the_app() {
    let seen = Arc::new(Mutex::new(Vec::<(Duration, usize)>::new()));
    let s2 = seen.clone();
    let app = spawn_app(move |req: Request<Incoming>| {
        let s = s2.clone();
        async move {
            let t = Instant::now();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            s.lock().unwrap().push((t.elapsed(), body.len()));
            Response::new(full(body))
        }
    })
    .await;
    let dir = temp_dir("spool");
    for (vars, size) in [
        (vec![("BUFFER_REQUESTS", "64k")], 30_000usize),
        (
            vec![
                ("BUFFER_REQUESTS", "8k"),
                ("BUFFER_DIR", dir.to_str().unwrap()),
            ],
            60_000,
        ),
    ] {
        let pg = start_podgate(app, &vars).await;
        let mut s = TcpStream::connect(pg.addr).await.unwrap();
        s.write_all(format!("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let data = vec![b'z'; size];
        for chunk in data.chunks(size / 6) {
            s.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let resp = read_to_close(&mut s, WAIT).await.unwrap();
        let text = String::from_utf8_lossy(&resp);
        assert_eq!(status_of(&text), 200, "{text}");
        assert!(text.ends_with(&"z".repeat(100)));
        let (app_time, len) = *seen.lock().unwrap().last().unwrap();
        assert_eq!(len, size);
        assert!(
            app_time < Duration::from_millis(300),
            "app held for {app_time:?} by a ~1.2 s upload"
        );
    }
    // The spool directory is left empty.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // Without a spool directory, bodies above the memory size are refused.
    let pg = start_podgate(app, &[("BUFFER_REQUESTS", "1k")]).await;
    let r = client()
        .post(pg.url("/up"))
        .body(vec![0u8; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn strip_prefix_rewrites_and_refuses_outside() {
    let app = spawn_echo_app().await;
    let pg = start_podgate(app, &[("STRIP_PREFIX", "/test01")]).await;
    let c = client();
    let doc: serde_json::Value = serde_json::from_str(
        &c.get(pg.url("/test01/admin/login?next=%2F"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(doc["target"], "/admin/login?next=%2F");
    let prefix = doc["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "x-forwarded-prefix")
        .unwrap()[1]
        .clone();
    assert_eq!(prefix, "/test01");
    let doc: serde_json::Value = serde_json::from_str(
        &c.get(pg.url("/test01"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(doc["target"], "/");
    assert_eq!(
        c.get(pg.url("/test012/x")).send().await.unwrap().status(),
        404
    );
    assert_eq!(c.get(pg.url("/other")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn app_concurrency_queues_then_sheds_with_503() {
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (a2, p2) = (active.clone(), peak.clone());
    let app = spawn_app(move |_req: Request<Incoming>| {
        let (a, p) = (a2.clone(), p2.clone());
        async move {
            let now = a.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            a.fetch_sub(1, Ordering::SeqCst);
            Response::new(full("done"))
        }
    })
    .await;
    let pg = start_podgate(
        app,
        &[
            ("APP_CONCURRENCY", "2"),
            ("APP_QUEUE", "2"),
            ("APP_QUEUE_TIMEOUT", "2s"),
        ],
    )
    .await;
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = c.clone();
        let url = pg.url(&format!("/{i}"));
        tasks.push(tokio::spawn(async move {
            let r = c.get(url).send().await.unwrap();
            (
                r.status().as_u16(),
                r.headers().get("retry-after").is_some(),
            )
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut ok = 0;
    let mut shed = 0;
    for t in tasks {
        let (status, retry_after) = within(WAIT, t).await.unwrap();
        match status {
            200 => ok += 1,
            503 => {
                assert!(retry_after);
                shed += 1
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(ok, 4, "2 in flight + 2 queued");
    assert_eq!(shed, 4);
    assert!(
        peak.load(Ordering::SeqCst) <= 2,
        "the app never saw more than 2 at once"
    );
    let m = pg.running.metrics.render();
    assert!(m.contains("podgate_app_rejected_total 4"), "{m}");
    assert!(m.contains("podgate_app_queue_length 0"));
}
