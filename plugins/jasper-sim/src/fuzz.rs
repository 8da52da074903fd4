//! Entry point for the fuzz target of the simulator's request parsing (`tests/fuzz`), behind
//! the `fuzzing` feature. Not part of the API (hidden from the docs, may change any time).

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use tower::ServiceExt as _;

use crate::{AppState, LimitSettings, SimConfig};

/// The simulator of every fuzz input: 3 SIMs, no rate limit, no faults.
fn config() -> SimConfig {
    SimConfig {
        sims: 3,
        limits: LimitSettings {
            enabled: false,
            ..LimitSettings::default()
        },
        ..SimConfig::default()
    }
}

/// The ICCIDs of the SIMs of [`request`]'s account (for seed inputs).
pub fn iccids() -> Vec<String> {
    AppState::new(&config())
        .map(|s| {
            s.account()
                .sim_views(AppState::now())
                .into_iter()
                .map(|v| v.iccid)
                .collect()
        })
        .unwrap_or_default()
}

/// Answers one request, given as text (any bytes), with a fresh simulated account (see
/// [`iccids`]), as the server would: its HTTP status. A panic is a bug.
///
/// The input is `METHOD PATH` on the first line, then `name: value` header lines, a blank line
/// and the body. An input whose first line is not of that shape is the body of a SOAP request
/// to `/ws/service/terminal` (so raw envelopes are inputs too).
pub fn request(data: &[u8]) -> u16 {
    respond(data).0
}

/// [`request`], with the body of the answer (0 and nothing for an input that is no HTTP
/// request, e.g. a path that is no URI).
pub fn respond(data: &[u8]) -> (u16, Vec<u8>) {
    let (method, path, headers, body) = split(data);
    let Ok(mut request) = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .body(Body::from(body.to_vec()))
    else {
        return (0, Vec::new());
    };
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name),
            axum::http::HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        request.headers_mut().append(name, value);
    }
    let Ok(state) = AppState::new(&config()) else {
        return (0, Vec::new());
    };
    let app = crate::app(Arc::new(state));
    runtime().block_on(async move {
        let response = match app.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status().as_u16();
        // The body is produced to the end, as the server would send it.
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        (status, body)
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    })
}

type Header<'a> = (&'a [u8], &'a [u8]);

/// Method, path, headers and body of a fuzz input.
fn split(data: &[u8]) -> (&[u8], &[u8], Vec<Header<'_>>, &[u8]) {
    let soap = |body| {
        let headers = vec![(&b"content-type"[..], &b"text/xml; charset=utf-8"[..])];
        (&b"POST"[..], &b"/ws/service/terminal"[..], headers, body)
    };
    let first_end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let first = data[..first_end]
        .strip_suffix(b"\r")
        .unwrap_or(&data[..first_end]);
    let Some(space) = first.iter().position(|&b| b == b' ') else {
        return soap(data);
    };
    let (method, path) = (&first[..space], &first[space + 1..]);
    if method.is_empty() || !method.iter().all(u8::is_ascii_uppercase) || !path.starts_with(b"/") {
        return soap(data);
    }
    let mut rest = data.get(first_end + 1..).unwrap_or_default();
    let mut headers = Vec::new();
    loop {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
        let next = rest.get(end + 1..).unwrap_or_default();
        if line.is_empty() {
            return (method, path, headers, next);
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let value = &line[colon + 1..];
            let value = value.strip_prefix(b" ").unwrap_or(value);
            headers.push((&line[..colon], value));
        }
        rest = next;
        if rest.is_empty() {
            return (method, path, headers, rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_split_into_a_request() {
        let (m, p, h, b) =
            split(b"PUT /rws/api/v1/devices/1\r\nContent-Type: application/json\n\n{}");
        assert_eq!(
            (m, p, b),
            (&b"PUT"[..], &b"/rws/api/v1/devices/1"[..], &b"{}"[..])
        );
        assert_eq!(h, vec![(&b"Content-Type"[..], &b"application/json"[..])]);
        let (m, p, _, b) = split(b"<Envelope/>");
        assert_eq!(
            (m, p, b),
            (
                &b"POST"[..],
                &b"/ws/service/terminal"[..],
                &b"<Envelope/>"[..]
            )
        );
    }

    #[test]
    fn requests_are_answered() {
        // Unauthenticated REST and an empty SOAP body: answered, not crashed.
        assert_eq!(
            request(b"GET /rws/api/v1/devices/8988216716970004975\n\n"),
            401
        );
        let status = request(b"");
        assert!((400..600).contains(&status), "{status}");
    }
}
