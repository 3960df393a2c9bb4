//! `permanent-redirect` (+ `-code`, default 301) and `temporal-redirect` (+ `-code`, default
//! 302): every request is answered with a redirect to the fixed URL (nginx `return <code>
//! <url>`), as a route-level `mock` answer. `temporal-redirect` wins when both are set, as in
//! ingress-nginx. (`ssl-redirect` and `force-ssl-redirect` are read in `mod.rs` and applied per
//! host, since they depend on the host's TLS.)

use serde_json::json;

use super::{Annotations, Reader};
use crate::lower::ingress::plugins::REDIRECT;

pub(super) fn parse(r: &mut Reader<'_>, out: &mut Annotations) {
    let temporal = redirect(r, "temporal-redirect", 302);
    let permanent = redirect(r, "permanent-redirect", 301);
    let chosen = match (temporal, permanent) {
        (Some(t), Some(_)) => {
            r.warn(
                "permanent-redirect",
                "ignored: temporal-redirect is set too and wins",
            );
            Some(t)
        }
        (t, p) => t.or(p),
    };
    if let Some((url, code)) = chosen {
        out.plugins.push((
            &REDIRECT,
            json!({"status": code, "headers": {"Location": url}, "body": ""}),
        ));
    }
}

/// The URL and status of `<name>` and `<name>-code`.
fn redirect(r: &mut Reader<'_>, name: &str, default: u16) -> Option<(String, u16)> {
    let code_name = format!("{name}-code");
    let code = match r.raw(&code_name) {
        None => default,
        Some(v) => match v.parse::<u16>() {
            Ok(c @ (301 | 302 | 303 | 307 | 308)) => c,
            _ => {
                r.error(
                    &code_name,
                    format!("{v:?} is not 301, 302, 303, 307 or 308"),
                );
                default
            }
        },
    };
    let url = r.string(name)?;
    let valid = url
        .parse::<http::Uri>()
        .ok()
        .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if !valid {
        r.error(name, format!("{url:?} is not an absolute http(s) URL"));
        return None;
    }
    Some((url, code))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, errors, ok};
    use serde_json::json;

    type Pairs<'a> = &'a [(&'a str, &'a str)];

    #[test]
    fn redirect_table() {
        #[rustfmt::skip]
        let cases: &[(Pairs, u16, &str)] = &[
            (&[("permanent-redirect", "https://new.example.com/x")], 301, "https://new.example.com/x"),
            (&[("permanent-redirect", "https://a.example.com"), ("permanent-redirect-code", "308")], 308, "https://a.example.com"),
            (&[("temporal-redirect", "http://b.example.com/")], 302, "http://b.example.com/"),
            (&[("temporal-redirect", "http://b.example.com/"), ("temporal-redirect-code", "307")], 307, "http://b.example.com/"),
            (&[("temporal-redirect", "http://t.example.com/"), ("permanent-redirect", "http://p.example.com/")], 302, "http://t.example.com/"),
        ];
        for (pairs, status, url) in cases {
            let a = ok(pairs);
            assert_eq!(
                config(&a, "ingress#redirect"),
                Some(json!({"status": status, "headers": {"Location": url}, "body": ""})),
                "{pairs:?}"
            );
        }
        assert_eq!(config(&ok(&[]), "ingress#redirect"), None);
    }

    #[test]
    fn bad_redirects_name_the_annotation() {
        #[rustfmt::skip]
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("permanent-redirect", "/relative")], "permanent-redirect: \"/relative\" is not an absolute"),
            (&[("permanent-redirect", "ftp://x.example.com")], "permanent-redirect: \"ftp://x.example.com\""),
            (&[("permanent-redirect", "https://a.example.com"), ("permanent-redirect-code", "200")], "permanent-redirect-code: \"200\""),
            (&[("temporal-redirect", "https://a.example.com"), ("temporal-redirect-code", "x")], "temporal-redirect-code: \"x\""),
            (&[("ssl-redirect", "on")], "ssl-redirect: \"on\""),
        ];
        for (pairs, want) in cases {
            let e = errors(pairs);
            assert!(e.iter().any(|e| e.contains(want)), "{pairs:?}: {e:?}");
        }
    }
}
