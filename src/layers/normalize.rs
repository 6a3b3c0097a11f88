//! The header-normalisation middleware: applies [`crate::headers`] to every
//! request on its way to the app and to every response on its way back.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, Version};
use ipnet::IpNet;
use tower::{Layer, Service};

use crate::body::Body;
use crate::ctx::{ConnInfo, ErrorKind, RequestFacts, UpgradeRequested};
use crate::error::ProxyError;
use crate::headers::{self, Peer, PeerFacts, UnderscorePolicy};

/// Settings the normaliser needs, taken from [`crate::config::Config`].
#[derive(Debug, Clone)]
pub struct NormalizeConfig {
    pub trusted_proxies: Vec<IpNet>,
    pub request_id_header: HeaderName,
    pub underscore_headers: UnderscorePolicy,
    pub max_uri: usize,
    pub hide_headers: Vec<HeaderName>,
    /// HTTP/1.1 counts this in hyper's parser; HTTP/2 here.
    pub max_headers: usize,
    /// Lowercase names from `PODGATE_UPGRADE_PROTOCOLS`.
    pub upgrade_protocols: Vec<String>,
}

#[derive(Clone)]
pub struct NormalizeLayer {
    config: Arc<NormalizeConfig>,
}

impl NormalizeLayer {
    pub fn new(config: NormalizeConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for NormalizeLayer {
    type Service = Normalize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Normalize {
            inner,
            config: self.config.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Normalize<S> {
    inner: S,
    config: Arc<NormalizeConfig>,
}

impl<S, B> Service<Request<B>> for Normalize<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = NormalizeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let cfg = self.config.clone();
        let conn = req.extensions().get::<Arc<ConnInfo>>().cloned();
        let peer_ip = conn
            .as_ref()
            .map(|c| c.peer.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));

        // The request id comes first so that even a refused request has one.
        let request_id = match req.headers().get(&cfg.request_id_header) {
            Some(v)
                if headers::valid_request_id(v)
                    && req.headers().get_all(&cfg.request_id_header).iter().count() == 1 =>
            {
                v.clone()
            }
            _ => headers::new_request_id(),
        };

        let facts = RequestFacts {
            client: peer_ip,
            request_id: request_id.clone(),
        };
        match prepare(&mut req, &cfg, conn, request_id) {
            Ok(client) => {
                let facts = RequestFacts { client, ..facts };
                NormalizeFuture {
                    fut: Some(self.inner.call(req)),
                    ready: None,
                    state: Some((cfg, facts)),
                }
            }
            Err(e) => {
                let mut resp = e.to_response();
                finish_response(&mut resp, &cfg, facts);
                NormalizeFuture {
                    fut: None,
                    ready: Some(resp),
                    state: None,
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Cleans the response once the inner service answers (no allocation).
    pub struct NormalizeFuture<F> {
        #[pin]
        fut: Option<F>,
        ready: Option<Response<Body>>,
        state: Option<(Arc<NormalizeConfig>, RequestFacts)>,
    }
}

impl<F> Future for NormalizeFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(resp) = this.ready.take() {
            return Poll::Ready(Ok(resp));
        }
        let Some(fut) = this.fut.as_pin_mut() else {
            return Poll::Pending;
        };
        let Ok(mut resp) = std::task::ready!(fut.poll(cx));
        if let Some((cfg, facts)) = this.state.take() {
            finish_response(&mut resp, &cfg, facts);
        }
        Poll::Ready(Ok(resp))
    }
}

/// Everything done to a request before it may go to the app. Returns the
/// resolved client address.
fn prepare<B>(
    req: &mut Request<B>,
    cfg: &NormalizeConfig,
    conn: Option<Arc<ConnInfo>>,
    request_id: HeaderValue,
) -> Result<IpAddr, ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    let uri = req.uri();
    let target_len = uri.path_and_query().map(|p| p.as_str().len()).unwrap_or(0);
    if target_len > cfg.max_uri {
        return Err(ProxyError::UriTooLong);
    }
    if uri
        .path_and_query()
        .is_none_or(|p| !p.as_str().starts_with('/'))
    {
        // asterisk-form (`OPTIONS *`) and authority-form targets are not
        // something an app behind a sidecar can answer.
        return Err(ProxyError::BadRequest("unsupported request target"));
    }
    let is_h2 = req.version() == Version::HTTP_2;
    // hyper counts HTTP/1 fields while parsing; HTTP/2 has only a size limit.
    if is_h2 && req.headers().len() > cfg.max_headers {
        return Err(ProxyError::HeadersTooLarge);
    }
    // HTTP/1.1 must carry Host; HTTP/2 must carry :authority or Host.
    let require_host =
        req.version() == Version::HTTP_11 || (is_h2 && req.uri().authority().is_none());
    headers::check_framing(req.headers(), require_host)
        .map_err(|a| ProxyError::BadRequest(a.reason()))?;
    if headers::apply_underscore_policy(req.headers_mut(), cfg.underscore_headers).is_err() {
        return Err(ProxyError::BadRequest("header name with underscore"));
    }

    // The authority of an absolute-form or HTTP/2 target wins over Host
    // (RFC 9112 §3.2.2, RFC 9113 §8.3.1); the app only ever sees Host.
    if let Some(auth) = req.uri().authority() {
        let v = HeaderValue::from_str(auth.as_str())
            .map_err(|_| ProxyError::BadRequest("invalid authority"))?;
        if !headers::valid_host(&v) {
            return Err(ProxyError::BadRequest("invalid authority"));
        }
        req.headers_mut().insert(header::HOST, v);
    }

    // Only allowed protocols are tunnelled; any other Upgrade (h2c) is
    // removed with the hop-by-hop headers and the request goes on as a
    // plain one.
    let upgrade = if !is_h2 && headers::is_upgrade_request(req.headers()) {
        headers::allowed_upgrade(req.headers(), &cfg.upgrade_protocols)
    } else {
        None
    };
    headers::remove_hop_by_hop(req.headers_mut(), upgrade.is_some());
    if let Some(protocols) = upgrade {
        req.headers_mut().insert(header::UPGRADE, protocols.clone());
        req.extensions_mut().insert(UpgradeRequested(protocols));
    }
    if is_h2 {
        // RFC 9113 §8.2.3: cookie crumbs are joined before HTTP/1.1.
        headers::join_cookies(req.headers_mut());
    } else if req.version() == Version::HTTP_10 && !req.headers().contains_key(header::HOST) {
        // Valid in HTTP/1.0, refused in the HTTP/1.1 the app receives: name
        // the address the client reached.
        if let Some(c) = &conn {
            req.headers_mut()
                .insert(header::HOST, headers::host_value(c.local));
        }
    }
    // hyper has already answered `Expect: 100-continue`; the app gets the body.
    req.headers_mut().remove(header::EXPECT);

    // Room for the forwarding headers and the request id added below: one
    // growth of the map instead of one per insert past hyper's exact fit.
    req.headers_mut().reserve(8);
    let client = match conn {
        Some(c) => {
            let host = req.headers().get(header::HOST).cloned();
            let ip = c.peer.ip();
            let facts = PeerFacts {
                value: &c.peer_value,
                port: &c.port_value,
                trusted: *c
                    .trusted
                    .get_or_init(|| headers::is_trusted(ip, &cfg.trusted_proxies)),
            };
            headers::apply_forwarded_with(
                req.headers_mut(),
                Peer {
                    ip,
                    local_port: c.local.port(),
                    tls: c.tls,
                },
                facts,
                &cfg.trusted_proxies,
                host,
            )
        }
        None => IpAddr::from([127, 0, 0, 1]),
    };
    req.headers_mut()
        .insert(cfg.request_id_header.clone(), request_id);
    Ok(client)
}

fn finish_response(resp: &mut Response<Body>, cfg: &NormalizeConfig, facts: RequestFacts) {
    // podgate's own error answers may carry `Connection: close` on purpose.
    if resp.extensions().get::<ErrorKind>().is_none() {
        let upgrading = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
        headers::remove_hop_by_hop(resp.headers_mut(), upgrading);
    }
    headers::hide(resp.headers_mut(), &cfg.hide_headers);
    resp.headers_mut()
        .insert(cfg.request_id_header.clone(), facts.request_id.clone());
    resp.extensions_mut().insert(facts);
}
