//! `enable-cors` with `cors-allow-origin`, `-methods`, `-headers`, `-credentials`, `-max-age`,
//! `-expose-headers`, as a route-level `cors` instance with ingress-nginx's defaults (origins
//! `*`, methods `GET, PUT, POST, DELETE, PATCH, OPTIONS`, its header list, credentials `true`,
//! max age 1728000 s, no exposed headers). Preflights are answered 204 without the upstream.
//!
//! With origin `*`, credentials are not announced (hookway refuses the combination; browsers
//! ignore credentials with a `*` origin anyway).

use serde_json::json;

use super::{Annotations, Reader};
use crate::lower::ingress::plugins::CORS;

const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Authorization";
const DEFAULT_MAX_AGE: u64 = 1_728_000;

pub(super) fn parse(r: &mut Reader<'_>, out: &mut Annotations) {
    if r.bool("enable-cors") != Some(true) {
        return;
    }
    let split = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let origins = r
        .list("cors-allow-origin")
        .unwrap_or_else(|| vec!["*".into()]);
    for o in &origins {
        let ok = o == "*"
            || o.parse::<http::Uri>()
                .is_ok_and(|u| u.scheme().is_some() && u.authority().is_some() && u.path() == "/")
            || o.replacen("*.", "", 1).parse::<http::Uri>().is_ok() && o.contains("://*.");
        if !ok {
            r.error(
                "cors-allow-origin",
                format!("{o:?} is not * or an origin like https://app.example.com"),
            );
        }
    }
    let methods = split(r.raw("cors-allow-methods").unwrap_or(DEFAULT_METHODS));
    for m in &methods {
        if !m.bytes().all(|b| b.is_ascii_alphabetic()) {
            r.error("cors-allow-methods", format!("{m:?} is not a method"));
        }
    }
    let headers = split(r.raw("cors-allow-headers").unwrap_or(DEFAULT_HEADERS));
    let expose = split(r.raw("cors-expose-headers").unwrap_or(""));
    for h in headers.iter().chain(&expose) {
        if h != "*" && http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            r.error("cors-allow-headers", format!("{h:?} is not a header name"));
        }
    }
    let credentials = r.bool("cors-allow-credentials").unwrap_or(true);
    let max_age = r
        .number("cors-max-age", 0, u64::from(u32::MAX))
        .unwrap_or(DEFAULT_MAX_AGE);
    let any_origin = origins.iter().any(|o| o == "*");
    out.plugins.push((
        &CORS,
        json!({
            "allow_origins": origins,
            "allow_methods": methods.iter().map(|m| m.to_ascii_uppercase()).collect::<Vec<_>>(),
            "allow_headers": headers,
            "expose_headers": expose,
            "allow_credentials": credentials && !any_origin,
            "max_age": max_age,
        }),
    ));
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, errors, ok};
    use serde_json::json;

    #[test]
    fn cors_defaults_are_ingress_nginx_ones() {
        let a = ok(&[("enable-cors", "true")]);
        let c = config(&a, "ingress#cors").unwrap();
        assert_eq!(c["allow_origins"], json!(["*"]));
        assert_eq!(
            c["allow_methods"],
            json!(["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"])
        );
        assert_eq!(c["allow_headers"].as_array().unwrap().len(), 8);
        assert_eq!(c["expose_headers"], json!([]));
        assert_eq!(c["allow_credentials"], json!(false), "never with *");
        assert_eq!(c["max_age"], json!(1_728_000));
        assert_eq!(
            config(
                &ok(&[("cors-allow-origin", "https://a.example.com")]),
                "ingress#cors"
            ),
            None,
            "needs enable-cors"
        );
    }

    #[test]
    fn cors_settings_table() {
        let a = ok(&[
            ("enable-cors", "true"),
            (
                "cors-allow-origin",
                "https://a.example.com, https://*.b.example.com",
            ),
            ("cors-allow-methods", "get,POST"),
            ("cors-allow-headers", "X-Token"),
            ("cors-expose-headers", "X-Total"),
            ("cors-allow-credentials", "true"),
            ("cors-max-age", "600"),
        ]);
        assert_eq!(
            config(&a, "ingress#cors"),
            Some(json!({
                "allow_origins": ["https://a.example.com", "https://*.b.example.com"],
                "allow_methods": ["GET", "POST"],
                "allow_headers": ["X-Token"],
                "expose_headers": ["X-Total"],
                "allow_credentials": true,
                "max_age": 600,
            }))
        );
        #[rustfmt::skip]
        let bad: &[(&str, &str, &str)] = &[
            ("cors-allow-origin", "a.example.com", "cors-allow-origin: \"a.example.com\""),
            ("cors-allow-methods", "GET,P-UT", "cors-allow-methods: \"P-UT\""),
            ("cors-allow-headers", "bad header", "cors-allow-headers: \"bad header\""),
            ("cors-allow-credentials", "1", "cors-allow-credentials: \"1\""),
            ("cors-max-age", "-1", "cors-max-age: \"-1\""),
        ];
        for (name, value, want) in bad {
            let e = errors(&[("enable-cors", "true"), (name, value)]);
            assert!(e[0].contains(want), "{name}={value}: {e:?}");
        }
    }
}
