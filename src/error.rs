//! Why a request failed, who is to blame, and the HTTP answer for it — in one
//! place, so every layer maps failures the same way.

use std::error::Error as StdError;
use std::io;

use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{self, Body, BoxError};
use crate::ctx::ErrorKind;
use crate::upstream::SendError;

/// A failure podgate answers for itself. The body of the answer is a short
/// text naming the cause; internals stay in the log.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    // The client's fault: 4xx.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("request target too long")]
    UriTooLong,
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("request body larger than the limit")]
    BodyTooLarge,
    #[error("client stopped sending the request body")]
    BodyTimeout,
    #[error("client request body failed")]
    ClientBody(#[source] BoxError),
    #[error("method not allowed")]
    MethodNotAllowed,

    // The app's fault: 502/503/504.
    #[error("app is not listening")]
    AppRefused(#[source] BoxError),
    #[error("app is starting")]
    AppStarting(#[source] BoxError),
    #[error("app did not accept the connection in time")]
    ConnectTimeout,
    #[error("app did not respond in time")]
    ResponseTimeout,
    #[error("app closed the connection without a response")]
    AppClosed(#[source] BoxError),
    #[error("app sent an invalid response")]
    BadResponse(#[source] BoxError),
    #[error("app is busy")]
    Overloaded,
    #[error("podgate's request buffer memory is full; retry shortly")]
    BufferFull,
    #[error("podgate is shutting down")]
    ShuttingDown,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        use ProxyError::*;
        match self {
            BadRequest(_) | ClientBody(_) => StatusCode::BAD_REQUEST,
            UriTooLong => StatusCode::URI_TOO_LONG,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppRefused(_) | AppClosed(_) | BadResponse(_) => StatusCode::BAD_GATEWAY,
            AppStarting(_) | Overloaded | BufferFull | ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ConnectTimeout | ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// True when the app (not the client) is to blame: worth a warning.
    pub fn is_upstream(&self) -> bool {
        self.status().is_server_error()
    }

    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        use ProxyError::*;
        match self {
            BadRequest(_) => "bad_request",
            UriTooLong => "uri_too_long",
            HeadersTooLarge => "headers_too_large",
            BodyTooLarge => "body_too_large",
            BodyTimeout => "body_timeout",
            ClientBody(_) => "client_body",
            MethodNotAllowed => "method_not_allowed",
            AppRefused(_) => "app_refused",
            AppStarting(_) => "app_starting",
            ConnectTimeout => "connect_timeout",
            ResponseTimeout => "response_timeout",
            AppClosed(_) => "app_closed",
            BadResponse(_) => "bad_response",
            Overloaded => "overloaded",
            BufferFull => "buffer_full",
            ShuttingDown => "shutting_down",
        }
    }

    pub fn to_response(&self) -> Response<Body> {
        let status = self.status();
        let mut text = self.to_string();
        text.push('\n');
        let mut resp = Response::new(body::full(text));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status.is_client_error() {
            // After a request podgate refused, the rest of the connection
            // cannot be trusted to be in sync (a CONNECT's payload, an unread
            // body): answer, then close.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let ProxyError::MethodNotAllowed = self {
            h.insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE"),
            );
        }
        resp.extensions_mut().insert(ErrorKind(self.kind()));
        resp
    }
}

/// Walks an error's source chain for a cause of type `T`.
pub fn find_cause<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

/// Classifies a failure to get a response from the app. Errors caused by
/// the client's own body (too large, too slow) are the client's fault, not
/// the app's.
pub fn classify_send_error(err: SendError, app_seen: bool) -> ProxyError {
    match err {
        SendError::Connect(io) => {
            if io.kind() == io::ErrorKind::TimedOut {
                return ProxyError::ConnectTimeout;
            }
            let detail: BoxError = Box::new(io);
            if app_seen {
                ProxyError::AppRefused(detail)
            } else {
                ProxyError::AppStarting(detail)
            }
        }
        SendError::Request { error, .. } => {
            if let Some(e) = body_cause(&error) {
                return e;
            }
            if error.is_parse() || error.is_parse_status() {
                return ProxyError::BadResponse(Box::new(error));
            }
            if error.is_user() {
                // A user error on the client side is the request body failing.
                return ProxyError::ClientBody(Box::new(error));
            }
            ProxyError::AppClosed(Box::new(error))
        }
    }
}

/// A failure of the client's request body found anywhere in an error chain:
/// over the limit (413) or stalled (408).
fn body_cause(err: &(dyn StdError + 'static)) -> Option<ProxyError> {
    if find_cause::<http_body_util::LengthLimitError>(err).is_some() {
        Some(ProxyError::BodyTooLarge)
    } else if find_cause::<crate::body::BodyStalled>(err).is_some() {
        Some(ProxyError::BodyTimeout)
    } else {
        None
    }
}

/// Classifies an error from reading the client's request body.
pub fn classify_body_error(e: BoxError) -> ProxyError {
    body_cause(&*e).unwrap_or(ProxyError::ClientBody(e))
}
