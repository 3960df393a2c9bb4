//! `auth-url` (+ `auth-response-headers`): external authentication as a route-level
//! `forward_auth` instance — a 2xx answer lets the request through with the listed headers
//! copied onto it, any other answer goes back to the client. The client's `Authorization` and
//! `Cookie` headers are sent to the auth service (ingress-nginx sends every header).
//!
//! `auth-signin` (+ `auth-signin-redirect-param`): a 401 from the auth service becomes a 302 to
//! the sign-in page with the original URL in `rd`, unless the URL sets it (the oauth2-proxy form
//! `https://$host/oauth2/start?rd=$escaped_request_uri` works).
//!
//! `auth-type: basic` + `auth-secret` (+ `auth-secret-type`, `auth-realm`): HTTP Basic against
//! the htpasswd Secret, as a route-level `htpasswd_auth` instance (bcrypt, APR1/MD5-crypt,
//! `{SHA}`, `{PLAIN}` hashes; others are refused when the Secret is checked). `digest` is
//! refused: serving the routes without the protection they ask for is not an option.

use serde_json::json;

use super::{Annotations, Reader};
use crate::lower::ingress::plugins::{AUTH_URL, BASIC_AUTH};

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
            let mut config = json!({
                "address": url,
                "auth_request_headers": ["Authorization", "Cookie"],
                "auth_response_headers": response_headers,
            });
            if let Some(signin) = r.string("auth-signin") {
                match signin_url(&signin) {
                    Ok(()) => config["signin_url"] = json!(signin),
                    Err(e) => r.error("auth-signin", e),
                }
                if let Some(param) = r.string("auth-signin-redirect-param") {
                    config["signin_redirect_param"] = json!(param);
                }
            }
            out.plugins.push((&AUTH_URL, config));
        }
    }
    match r.raw("auth-type") {
        None => {}
        Some("basic") => basic(r, out),
        Some("digest") => r.error(
            "auth-type",
            "UnsupportedValue: digest authentication is not supported; use basic",
        ),
        Some(other) => r.error("auth-type", format!("{other:?} is not basic or digest")),
    }
}

/// `auth-type: basic` with `auth-secret` (`name` or `<own namespace>/name`), `auth-secret-type`
/// (`auth-file`: key `auth` holds an htpasswd file; `auth-map`: user → hash) and `auth-realm`.
fn basic(r: &mut Reader<'_>, out: &mut Annotations) {
    let Some(secret) = r.string("auth-secret") else {
        r.error("auth-secret", "is required with auth-type: basic");
        return;
    };
    let name = match secret.split_once('/') {
        None => secret.clone(),
        Some((ns, name)) if ns == r.namespace => name.to_string(),
        Some((ns, _)) => {
            r.error(
                "auth-secret",
                format!("{secret:?}: the Secret must be in the Ingress's namespace, not {ns:?}"),
            );
            return;
        }
    };
    let secret_type = match r.raw("auth-secret-type").unwrap_or("auth-file") {
        t @ ("auth-file" | "auth-map") => t,
        other => {
            r.error(
                "auth-secret-type",
                format!("{other:?} is not auth-file or auth-map"),
            );
            return;
        }
    };
    let mut config = json!({"secret": name, "secret_type": secret_type});
    if let Some(realm) = r.string("auth-realm") {
        config["realm"] = json!(realm);
    }
    out.plugins.push((&BASIC_AUTH, config));
}

/// Checks an `auth-signin` URL: absolute http(s), nginx variables limited to `$host`,
/// `$scheme`, `$request_uri`, `$escaped_request_uri` (expanded per request by `forward_auth`).
fn signin_url(url: &str) -> Result<(), String> {
    let mut plain = url.to_string();
    for v in ["$escaped_request_uri", "$request_uri", "$scheme", "$host"] {
        plain = plain.replace(v, "x");
    }
    if plain.contains('$') {
        return Err(format!(
            "{url:?}: only the nginx variables $host, $scheme, $request_uri and $escaped_request_uri are supported"
        ));
    }
    let valid = plain
        .parse::<http::Uri>()
        .ok()
        .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if !valid {
        return Err(format!("{url:?} is not an absolute http(s) URL"));
    }
    Ok(())
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
            config(&a, "ingress#auth-url"),
            Some(json!({
                "address": "http://auth.example.com/check",
                "auth_request_headers": ["Authorization", "Cookie"],
                "auth_response_headers": ["X-User", "X-Email"],
            }))
        );
        let a = ok(&[
            ("auth-url", "http://auth.example.com/check"),
            (
                "auth-signin",
                "https://$host/oauth2/start?rd=$escaped_request_uri",
            ),
            ("auth-signin-redirect-param", "next"),
        ]);
        let c = config(&a, "ingress#auth-url").unwrap();
        assert_eq!(
            c["signin_url"],
            "https://$host/oauth2/start?rd=$escaped_request_uri"
        );
        assert_eq!(c["signin_redirect_param"], "next");
        #[rustfmt::skip]
        let bad: &[(&[(&str, &str)], &str)] = &[
            (&[("auth-url", "/check")], "auth-url: \"/check\" is not an absolute"),
            (&[("auth-url", "http://$host/auth")], "auth-url: nginx variables"),
            (&[("auth-url", "http://a.example.com"), ("auth-response-headers", "bad header")], "auth-response-headers: \"bad header\""),
            (&[("auth-type", "digest"), ("auth-secret", "s")], "auth-type: UnsupportedValue"),
            (&[("auth-type", "basic")], "auth-secret: is required"),
            (&[("auth-type", "basic"), ("auth-secret", "other/s")], "auth-secret: \"other/s\": the Secret must be in the Ingress's namespace"),
            (&[("auth-type", "basic"), ("auth-secret", "s"), ("auth-secret-type", "file")], "auth-secret-type: \"file\""),
            (&[("auth-type", "jwt")], "auth-type: \"jwt\""),
            (&[("auth-url", "http://a.example.com"), ("auth-signin", "https://$http_host/start")], "auth-signin: \"https://$http_host/start\": only the nginx variables"),
            (&[("auth-url", "http://a.example.com"), ("auth-signin", "/start")], "auth-signin: \"/start\" is not an absolute"),
        ];
        for (pairs, want) in bad {
            let e = errors(pairs);
            assert!(e.iter().any(|e| e.contains(want)), "{pairs:?}: {e:?}");
        }
    }
}
