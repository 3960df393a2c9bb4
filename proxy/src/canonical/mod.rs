//! One request, one meaning: the request target and authority are made canonical once, before
//! routing, `excludePaths`, any plugin and the upstream, and every consumer reads the result.
//!
//! After [`canonicalize`] the request's URI is origin-form (canonical path and the query as
//! received) and its `Host` header is the canonical authority; the original target is kept for
//! the access log. The rules are in [`path`] and [`authority`], the table of inputs and results
//! in `docs/routing.md`.

pub mod authority;
pub mod path;

use http::uri::PathAndQuery;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};

pub use authority::{canonical_authority, Authority, AuthorityError};
pub use path::{canonical_path, EscapedSlashes, PathError, PathOptions};

/// Why a request was refused before routing.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// The path cannot be made canonical.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The authority is missing, ambiguous or invalid.
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    /// The canonical target is not a valid URI (cannot happen for paths from a parsed URI; kept
    /// as an answer rather than a panic).
    #[error("invalid request target")]
    Target,
}

impl Rejection {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

/// Makes `req`'s target and authority canonical in place. Returns the original path and query
/// when the path changed (for the access log).
pub fn canonicalize<B>(
    req: &mut Request<B>,
    tls: bool,
    options: PathOptions,
) -> Result<Option<PathAndQuery>, Rejection> {
    let authority = canonical_authority(req.version(), req.uri(), req.headers(), tls)?;
    let host = match authority {
        Some(a) if !a.is_unchanged() => {
            Some(HeaderValue::from_str(a.as_str()).map_err(|_| AuthorityError::Invalid)?)
        }
        _ => None,
    };
    if let Some(host) = host {
        req.headers_mut().insert(header::HOST, host);
    }
    if req.method() == Method::CONNECT || req.uri().path() == "*" {
        // Authority-form (CONNECT) and asterisk-form (`OPTIONS *`) have no path to normalise.
        return Ok(None);
    }
    let uri = req.uri();
    let canonical = canonical_path(uri.path(), options)?;
    let changed = matches!(canonical, std::borrow::Cow::Owned(_));
    if !changed && uri.scheme().is_none() && uri.authority().is_none() {
        return Ok(None);
    }
    let target = match (changed, uri.query()) {
        (false, _) => uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
        (true, None) => {
            PathAndQuery::try_from(canonical.as_ref()).map_err(|_| Rejection::Target)?
        }
        (true, Some(q)) => {
            PathAndQuery::try_from(format!("{canonical}?{q}")).map_err(|_| Rejection::Target)?
        }
    };
    let original = changed.then(|| uri.path_and_query().cloned()).flatten();
    *req.uri_mut() = Uri::from(target);
    Ok(original)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        version: http::Version,
        uri: &str,
        host: Option<&str>,
    ) -> (Result<Option<String>, String>, String, Option<String>) {
        let mut builder = Request::builder().version(version).uri(uri);
        if let Some(h) = host {
            builder = builder.header(header::HOST, h);
        }
        let mut req = builder.body(()).unwrap();
        let result = canonicalize(&mut req, false, PathOptions::default())
            .map(|o| o.map(|pq| pq.to_string()))
            .map_err(|e| e.to_string());
        let host = req
            .headers()
            .get(header::HOST)
            .map(|h| h.to_str().unwrap().to_owned());
        (result, req.uri().to_string(), host)
    }

    /// Version, target, `Host`, outcome (original target or error), target and `Host` after.
    type Case = (
        http::Version,
        &'static str,
        Option<&'static str>,
        Result<Option<&'static str>, &'static str>,
        &'static str,
        Option<&'static str>,
    );

    #[test]
    fn target_and_host_are_rewritten_once() {
        use http::Version as V;
        let table: &[Case] = &[
            (
                V::HTTP_11,
                "/a/b?x=1",
                Some("h"),
                Ok(None),
                "/a/b?x=1",
                Some("h"),
            ),
            (
                V::HTTP_11,
                "/public/../admin?q=/../x",
                Some("H.example"),
                Ok(Some("/public/../admin?q=/../x")),
                "/admin?q=/../x",
                Some("h.example"),
            ),
            (
                V::HTTP_11,
                "http://Other.example/p/%2e%2e/q",
                Some("h.example"),
                Ok(Some("/p/%2e%2e/q")),
                "/q",
                Some("other.example"),
            ),
            (
                V::HTTP_2,
                "http://h.example/a",
                None,
                Ok(None),
                "/a",
                Some("h.example"),
            ),
            (
                V::HTTP_11,
                "/public/..%2fadmin",
                Some("h"),
                Err("encoded slash or backslash in the request path"),
                "/public/..%2fadmin",
                Some("h"),
            ),
            (V::HTTP_11, "/", None, Err("missing Host header"), "/", None),
        ];
        for (version, uri, host, result, target, sent_host) in table {
            let (got, got_target, got_host) = run(*version, uri, *host);
            assert_eq!(
                got.as_ref().map(|o| o.as_deref()).map_err(String::as_str),
                result.map_err(|e| e),
                "{uri}"
            );
            assert_eq!(got_target, *target, "{uri}");
            assert_eq!(got_host.as_deref(), *sent_host, "{uri}");
        }
    }
}
