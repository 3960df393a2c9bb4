//! A server's answers applied to hookway's request and response heads: header mutations
//! (pseudo-headers included: `:path`, `:authority`, `:method` on a request, `:status` on a
//! response), body mutations and immediate responses.

use bytes::Bytes;
use envoy_types::pb::envoy::service::ext_proc::v3::body_mutation::Mutation;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyMutation, HeaderMutation, ImmediateResponse,
};
use http::uri::PathAndQuery;
use http::{header, request, response, HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};

use crate::plugin::{respond, ProxyBody};
use crate::plugins::envoy::headers::{self, DefaultAction, PseudoSet};

/// Applies `mutation` to `headers`; the pseudo-headers it sets are returned.
fn apply(headers: &mut HeaderMap, mutation: &HeaderMutation) -> Result<Vec<PseudoSet>, String> {
    let pseudo =
        headers::apply_options(headers, &mutation.set_headers, DefaultAction::AppendAction)?;
    headers::remove(headers, &mutation.remove_headers)?;
    Ok(pseudo)
}

/// Applies `mutation` to a request head.
pub(super) fn request(req: &mut request::Parts, mutation: &HeaderMutation) -> Result<(), String> {
    for (name, value) in apply(&mut req.headers, mutation)? {
        match name.as_str() {
            ":path" => {
                let pq = PathAndQuery::try_from(value.as_ref())
                    .ok()
                    .filter(|pq| pq.path().starts_with('/'))
                    .ok_or_else(|| format!("invalid :path {value:?}"))?;
                let mut parts = req.uri.clone().into_parts();
                parts.path_and_query = Some(pq);
                req.uri = Uri::from_parts(parts).map_err(|e| format!(":path: {e}"))?;
            }
            ":authority" => {
                let host = HeaderValue::from_maybe_shared(value)
                    .map_err(|_| "invalid :authority".to_string())?;
                req.headers.insert(header::HOST, host);
            }
            ":method" => {
                req.method =
                    Method::from_bytes(&value).map_err(|_| format!("invalid :method {value:?}"))?;
            }
            // `:scheme` and unknown pseudo-headers are not the server's to change (as in
            // Envoy's default mutation rules).
            _ => {}
        }
    }
    Ok(())
}

/// Applies `mutation` to a response head.
pub(super) fn response(
    resp: &mut response::Parts,
    mutation: &HeaderMutation,
) -> Result<(), String> {
    for (name, value) in apply(&mut resp.headers, mutation)? {
        if name == ":status" {
            resp.status = std::str::from_utf8(&value)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .filter(|&c| c >= 200)
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| format!("invalid :status {value:?}"))?;
        }
    }
    Ok(())
}

/// Applies `mutation` to trailers (pseudo-headers are refused).
pub(super) fn trailers(trailers: &mut HeaderMap, mutation: &HeaderMutation) -> Result<(), String> {
    match apply(trailers, mutation)?.first() {
        Some((name, _)) => Err(format!("cannot set {name} in trailers")),
        None => Ok(()),
    }
}

/// What a body mutation leaves of `original`.
pub(super) fn body(original: Bytes, mutation: Option<&BodyMutation>) -> Bytes {
    match mutation.and_then(|m| m.mutation.as_ref()) {
        None => original,
        Some(Mutation::Body(body)) => Bytes::copy_from_slice(body),
        Some(Mutation::ClearBody(true)) => Bytes::new(),
        Some(Mutation::ClearBody(false)) => original,
        Some(Mutation::StreamedResponse(streamed)) => Bytes::copy_from_slice(&streamed.body),
    }
}

/// The status of an `immediate_response` (200 when it sets none, as in Envoy).
fn immediate_status(ir: &ImmediateResponse) -> StatusCode {
    ir.status
        .as_ref()
        .and_then(|s| u16::try_from(s.code).ok())
        .filter(|&c| c >= 200)
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK)
}

/// The head of an `immediate_response` applied to `resp` (its headers replace the old ones).
pub(super) fn immediate_head(
    resp: &mut response::Parts,
    ir: &ImmediateResponse,
) -> Result<(), String> {
    resp.status = immediate_status(ir);
    resp.headers.clear();
    if let Some(mutation) = &ir.headers {
        apply(&mut resp.headers, mutation)?;
    }
    Ok(())
}

/// An `immediate_response` as a whole answer.
pub(super) fn immediate(ir: &ImmediateResponse) -> Result<Response<ProxyBody>, String> {
    let mut resp = Response::new(respond::full(Bytes::copy_from_slice(&ir.body)));
    let (mut parts, body) = resp.into_parts();
    immediate_head(&mut parts, ir)?;
    resp = Response::from_parts(parts, body);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::envoy::headers::pb_header;
    use envoy_types::pb::envoy::config::core::v3::HeaderValueOption;
    use envoy_types::pb::envoy::r#type::v3::HttpStatus;

    fn set(key: &str, value: &str) -> HeaderValueOption {
        HeaderValueOption {
            header: Some(pb_header(key, value.as_bytes())),
            append_action: 2,
            ..Default::default()
        }
    }

    #[test]
    fn request_mutations_table() {
        // (set, remove, check)
        type Check = fn(&request::Parts) -> bool;
        type Row = (
            Vec<HeaderValueOption>,
            Vec<String>,
            Result<Check, &'static str>,
        );
        let rows: Vec<Row> = vec![
            (
                vec![set("x-a", "1")],
                vec![],
                Ok(|r| r.headers["x-a"] == "1"),
            ),
            (
                vec![],
                vec!["x-old".into()],
                Ok(|r| r.headers.get("x-old").is_none()),
            ),
            (
                vec![set(":path", "/v2/a?b=1")],
                vec![],
                Ok(|r| r.uri == "/v2/a?b=1"),
            ),
            (
                vec![set(":authority", "other.test")],
                vec![],
                Ok(|r| r.headers["host"] == "other.test"),
            ),
            (
                vec![set(":method", "PUT")],
                vec![],
                Ok(|r| r.method == Method::PUT),
            ),
            (vec![set(":scheme", "https")], vec![], Ok(|r| r.uri == "/a")),
            (vec![set(":path", "no-slash")], vec![], Err(":path")),
            (vec![set("bad name", "v")], vec![], Err("header name")),
        ];
        for (i, (sets, removes, want)) in rows.into_iter().enumerate() {
            let mut req =
                crate::plugins::testing::parts("GET", "/a", &[("x-old", "o"), ("host", "h.test")]);
            let m = HeaderMutation {
                set_headers: sets,
                remove_headers: removes,
            };
            match (request(&mut req, &m), want) {
                (Ok(()), Ok(check)) => assert!(check(&req), "row {i}: {req:?}"),
                (Err(e), Err(part)) => assert!(e.contains(part), "row {i}: {e}"),
                (got, _) => panic!("row {i}: {got:?}"),
            }
        }
    }

    #[test]
    fn immediate_answers_and_status_rewrites() {
        let ir = ImmediateResponse {
            status: Some(HttpStatus { code: 418 }),
            headers: Some(HeaderMutation {
                set_headers: vec![set("x-why", "teapot")],
                remove_headers: vec![],
            }),
            body: b"short and stout".to_vec(),
            ..Default::default()
        };
        let resp = immediate(&ir).unwrap();
        assert_eq!(resp.status(), 418);
        assert_eq!(resp.headers()["x-why"], "teapot");
        assert_eq!(immediate_status(&ImmediateResponse::default()), 200);

        let mut head = Response::new(()).into_parts().0;
        response(
            &mut head,
            &HeaderMutation {
                set_headers: vec![set(":status", "201"), set("x-b", "2")],
                remove_headers: vec![],
            },
        )
        .unwrap();
        assert_eq!(head.status, 201);
        assert_eq!(head.headers["x-b"], "2");
        let bad = HeaderMutation {
            set_headers: vec![set(":status", "abc")],
            remove_headers: vec![],
        };
        assert!(response(&mut head, &bad).is_err());
        assert!(trailers(&mut HeaderMap::new(), &bad).is_err());
    }

    #[test]
    fn body_mutations() {
        let orig = Bytes::from_static(b"orig");
        let m = |mutation| BodyMutation {
            mutation: Some(mutation),
        };
        assert_eq!(body(orig.clone(), None), "orig");
        assert_eq!(
            body(orig.clone(), Some(&m(Mutation::Body(b"new".to_vec())))),
            "new"
        );
        assert_eq!(body(orig.clone(), Some(&m(Mutation::ClearBody(true)))), "");
        assert_eq!(body(orig, Some(&m(Mutation::ClearBody(false)))), "orig");
    }
}
