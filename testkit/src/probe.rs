//! Knative's network probe handler (`knative.dev/networking/pkg/http/probe`), shared by every server.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::{self, BoxBody};

/// Request header that marks a Knative network probe (lowercase, as `http` stores names).
pub const PROBE_HEADER: &str = "k-network-probe";
/// The value of [`PROBE_HEADER`] that the probe handler answers instead of the application.
pub const PROBE_VALUE: &str = "probe";
/// Request header carrying the ingress hash, echoed in the response header of the same name.
pub const HASH_HEADER: &str = "k-network-hash";

const EMPTY_HASH: &str = "a probe request must contain a non-empty \"K-Network-Hash\" header\n";

/// Answers a probe, or prepares a normal request for the application.
///
/// Mirrors upstream: when `K-Network-Probe` (first value) is `probe`, the reply is 400 if
/// `K-Network-Hash` is missing or empty and 200 with that hash echoed otherwise. Any other request
/// has `K-Network-Hash` removed and goes on to the application (`None`).
pub(crate) fn intercept(headers: &mut HeaderMap) -> Option<Response<BoxBody>> {
    if headers.get(PROBE_HEADER).map(HeaderValue::as_bytes) != Some(PROBE_VALUE.as_bytes()) {
        headers.remove(HASH_HEADER);
        return None;
    }
    match headers.get(HASH_HEADER).filter(|hash| !hash.is_empty()) {
        None => {
            let mut response = Response::new(body::full(EMPTY_HASH));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Some(response)
        }
        Some(hash) => {
            let mut response = Response::new(body::empty());
            response.headers_mut().insert(HASH_HEADER, hash.clone());
            Some(response)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    http::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    /// Request headers, the status answered (`None`: passed to the app), the hash echoed.
    type Case = (
        &'static [(&'static str, &'static str)],
        Option<u16>,
        Option<&'static str>,
    );

    #[test]
    fn probe_outcomes() {
        let cases: &[Case] = &[
            (
                &[("k-network-probe", "probe"), ("k-network-hash", "abc")],
                Some(200),
                Some("abc"),
            ),
            (
                &[("k-network-probe", "probe"), ("k-network-hash", "")],
                Some(400),
                None,
            ),
            (&[("k-network-probe", "probe")], Some(400), None),
            (
                &[("k-network-probe", "queue"), ("k-network-hash", "abc")],
                None,
                None,
            ),
            (&[("k-network-hash", "abc")], None, None),
            (&[], None, None),
        ];
        for (request, status, hash) in cases {
            let mut request = headers(request);
            let response = intercept(&mut request);
            assert_eq!(
                response.as_ref().map(|r| r.status().as_u16()),
                *status,
                "{request:?}"
            );
            let echoed = response
                .as_ref()
                .and_then(|r| r.headers().get(HASH_HEADER))
                .and_then(|v| v.to_str().ok());
            assert_eq!(echoed, *hash, "{request:?}");
            if response.is_none() {
                assert!(request.get(HASH_HEADER).is_none(), "hash must be stripped");
            }
        }
    }
}
