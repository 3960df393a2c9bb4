//! `auth-url` (+ `auth-response-headers`): external authentication as a route-level
//! `forward_auth` instance — a 2xx answer lets the request through with the listed headers
//! copied onto it, any other answer goes back to the client. The client's `Authorization` and
//! `Cookie` headers are sent to the auth service (ingress-nginx sends every header).
//!
//! `auth-signin` (a redirect to a login page on 401) is not translated yet: the 401 reaches the
//! client (warning). `auth-type: basic` with an htpasswd `auth-secret` is refused: hookway's
//! `auth` plugin does not read htpasswd hashes yet, and serving the routes without the
//! protection they ask for is not an option.

use serde_json::json;

use super::{Annotations, Reader};
use crate::lower::ingress::plugins::AUTH_URL;

pub(super) fn parse(r: &mut Reader<'_>, out: &mut Annotations) {
    if let Some(url) = r.string("auth-url") {
        let valid = url.parse::<http::Uri>().ok().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
        });
        if url.contains('$') {
            r.error("auth-url", "nginx variables are not supported");
        } else if !valid {
            r.error(
                "auth-url",
                format!("{url:?} is not an absolute http(s) URL"),
            );
        } else {
            let response_headers = r.list("auth-response-headers").unwrap_or_default();
            for h in &response_headers {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    r.error(
                        "auth-response-headers",
                        format!("{h:?} is not a header name"),
                    );
                }
            }
            out.plugins.push((
                &AUTH_URL,
                json!({
                    "address": url,
                    "auth_request_headers": ["Authorization", "Cookie"],
                    "auth_response_headers": response_headers,
                }),
            ));
        }
        if r.raw("auth-signin").is_some() {
            r.warn(
                "auth-signin",
                "not translated yet: a 401 from auth-url reaches the client instead of a redirect to the sign-in page",
            );
        }
    }
    match r.raw("auth-type") {
        None => {}
        Some("basic" | "digest") => r.error(
            "auth-type",
            "UnsupportedValue: htpasswd Secrets (auth-secret) are not supported yet; use the hookway.dev/plugins annotation with an auth GatewayPlugin (type basic) instead",
        ),
        Some(other) => r.error("auth-type", format!("{other:?} is not basic or digest")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, errors, ok};
    use serde_json::json;

    #[test]
    fn auth_url_table() {
        let a = ok(&[
            ("auth-url", "http://auth.example.com/check"),
            ("auth-response-headers", "X-User, X-Email"),
        ]);
        assert_eq!(
            config(&a, "ingress:auth-url"),
            Some(json!({
                "address": "http://auth.example.com/check",
                "auth_request_headers": ["Authorization", "Cookie"],
                "auth_response_headers": ["X-User", "X-Email"],
            }))
        );
        #[rustfmt::skip]
        let bad: &[(&[(&str, &str)], &str)] = &[
            (&[("auth-url", "/check")], "auth-url: \"/check\" is not an absolute"),
            (&[("auth-url", "http://$host/auth")], "auth-url: nginx variables"),
            (&[("auth-url", "http://a.example.com"), ("auth-response-headers", "bad header")], "auth-response-headers: \"bad header\""),
            (&[("auth-type", "basic"), ("auth-secret", "s")], "auth-type: UnsupportedValue"),
            (&[("auth-type", "jwt")], "auth-type: \"jwt\""),
        ];
        for (pairs, want) in bad {
            let e = errors(pairs);
            assert!(e.iter().any(|e| e.contains(want)), "{pairs:?}: {e:?}");
        }
    }
}
