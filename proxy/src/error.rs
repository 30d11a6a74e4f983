//! Request-path errors and the one place that maps them to responses.

use crate::body::ResponseBody;
use http::{header, HeaderValue, Response, StatusCode};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route")]
    NoRoute,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request target is longer than `--max-uri-bytes`.
    #[error("request target too long")]
    UriTooLong,
    /// More header lines than `--max-request-headers`.
    #[error("too many request headers")]
    HeadersTooLarge,
    /// A transfer coding we do not implement (RFC 9112 §6.1).
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    #[error("backend {backend}: too many requests waiting for a ready endpoint")]
    Overflow { backend: String },
    #[error("backend {backend}: no ready endpoint within {seconds}s")]
    HoldTimeout { backend: String, seconds: u64 },
    #[error("route {route}: no split has weight")]
    NoSplit { route: String },
    #[error("upstream connect failed: {0}")]
    Connect(#[from] crate::upstream::ConnectError),
    /// The h2c exchange failed: a connection or stream error (`h2c.rs`).
    #[error("upstream: {0}")]
    H2(crate::h2c::H2Error),
    /// The HTTP/1.1 exchange failed: connection error, close before a response, or a
    /// misframed response (`h1::framing`).
    #[error("upstream: {0}")]
    H1(crate::h1::H1Error),
    /// The client sent no request body byte for the stream idle timeout.
    #[error("request body idle timeout")]
    RequestBodyTimeout,
    /// The client's request body failed while it was being sent on: an invalid chunk, or the
    /// client went away. Its error, not the upstream's.
    #[error("request body: {0}")]
    DownstreamBody(crate::downstream::ClientBodyError),
    #[error("upstream connections kept closing before the request was sent")]
    Unsendable,
    #[error("revision timeout: no response in time")]
    ResponseTimeout,
    /// `httpOption: Redirected` on a plaintext external listener: 301 to this location.
    #[error("redirect to https")]
    HttpsRedirect(HeaderValue),
}

impl From<crate::idle::RequestBodyError> for ProxyError {
    /// A failed request body is the client's fault: 408 when it stalled, 400 otherwise.
    fn from(error: crate::idle::RequestBodyError) -> Self {
        match error {
            crate::idle::RequestBodyError::Timeout(_) => ProxyError::RequestBodyTimeout,
            crate::idle::RequestBodyError::Client(e) => ProxyError::DownstreamBody(e),
        }
    }
}

impl From<crate::h2c::H2Error> for ProxyError {
    fn from(error: crate::h2c::H2Error) -> Self {
        match error {
            crate::h2c::H2Error::RequestBody(e) => e.into(),
            error => ProxyError::H2(error),
        }
    }
}

impl From<crate::h1::H1Error> for ProxyError {
    fn from(error: crate::h1::H1Error) -> Self {
        match error {
            crate::h1::H1Error::RequestBody(e) => e.into(),
            error => ProxyError::H1(error),
        }
    }
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::BadRequest(_) | ProxyError::DownstreamBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            // Like Envoy: no healthy upstream / connect failure is 503.
            ProxyError::Overflow { .. } | ProxyError::NoSplit { .. } | ProxyError::Connect(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::HttpsRedirect(_) => StatusCode::MOVED_PERMANENTLY,
            ProxyError::HoldTimeout { .. } | ProxyError::ResponseTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::H2(_) | ProxyError::H1(_) | ProxyError::Unsendable => {
                StatusCode::BAD_GATEWAY
            }
            // Envoy answers 408 when its stream idle timeout fires on a request body.
            ProxyError::RequestBodyTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// `httpOption: Redirected`: 301 to `https://<host><path?query>` (Envoy's `https_redirect`).
    /// `host` is already normalised (lower case, no port).
    pub fn https_redirect(host: &str, path_and_query: &str) -> ProxyError {
        match HeaderValue::try_from(format!("https://{host}{path_and_query}")) {
            Ok(location) => ProxyError::HttpsRedirect(location),
            Err(_) => ProxyError::BadRequest("invalid host"),
        }
    }

    /// A refusal of the request head itself: its body was not read, and the framing may be
    /// an attempt to smuggle a second request, so an HTTP/1 connection is closed after it.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::BadRequest(_)
                | ProxyError::DownstreamBody(_)
                | ProxyError::UriTooLong
                | ProxyError::HeadersTooLarge
                | ProxyError::NotImplemented(_)
        )
    }

    /// The fixed text an external listener answers: it names no backend, endpoint address or
    /// route, so a client learns nothing about the cluster (Envoy answers `no healthy upstream`
    /// the same way). The detail stays in debug logs and metrics.
    pub fn public_text(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no route\n",
            ProxyError::BadRequest(_) | ProxyError::DownstreamBody(_) => "bad request\n",
            ProxyError::UriTooLong => "uri too long\n",
            ProxyError::HeadersTooLarge => "request header fields too large\n",
            ProxyError::NotImplemented(_) => "not implemented\n",
            ProxyError::Overflow { .. } => "upstream overflow\n",
            ProxyError::NoSplit { .. } | ProxyError::Connect(_) => "no healthy upstream\n",
            ProxyError::HoldTimeout { .. } | ProxyError::ResponseTimeout => {
                "upstream request timeout\n"
            }
            ProxyError::H2(_) | ProxyError::H1(_) | ProxyError::Unsendable => {
                "upstream connect error or disconnect/reset before headers\n"
            }
            ProxyError::RequestBodyTimeout => "stream timeout\n",
            ProxyError::HttpsRedirect(_) => "",
        }
    }

    /// The response for this error. `detailed` (internal listeners only) puts the error's full
    /// text in the body; otherwise it is [`ProxyError::public_text`].
    pub fn into_response(self, detailed: bool) -> Response<ResponseBody> {
        if let ProxyError::HttpsRedirect(location) = self {
            let mut response = Response::new(ResponseBody::empty());
            *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
            response.headers_mut().insert(header::LOCATION, location);
            return response;
        }
        let status = self.status();
        let body = match &self {
            // Fixed text: nothing to format for the most common error, nor for a bad request
            // (its reason is static and names nothing internal).
            ProxyError::NoRoute => ResponseBody::full(&b"no route\n"[..]),
            ProxyError::BadRequest(_) | ProxyError::NotImplemented(_) => {
                ResponseBody::full(format!("{self}\n"))
            }
            other if detailed => ResponseBody::full(format!("{other}\n")),
            other => ResponseBody::full(other.public_text().as_bytes()),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}
