//! Every `nginx.ingress.kubernetes.io/*` annotation hookway does not translate is named in a
//! warning; `*-snippet` annotations (raw nginx configuration) are never executed, and say so.

use std::collections::BTreeMap;

use super::{Reader, NGINX};

/// The annotations translated (or deliberately refused with an error) somewhere in this module.
pub(crate) const TRANSLATED: &[&str] = &[
    "app-root",
    "allowlist-source-range",
    "auth-response-headers",
    "auth-secret",
    "auth-secret-type",
    "auth-realm",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-type",
    "auth-url",
    "backend-protocol",
    "canary",
    "canary-by-cookie",
    "canary-by-header",
    "canary-by-header-pattern",
    "canary-by-header-value",
    "canary-weight",
    "canary-weight-total",
    "cors-allow-credentials",
    "cors-allow-headers",
    "cors-allow-methods",
    "cors-allow-origin",
    "cors-expose-headers",
    "cors-max-age",
    "denylist-source-range",
    "enable-cors",
    "force-ssl-redirect",
    "limit-connections",
    "limit-rpm",
    "limit-rps",
    "permanent-redirect",
    "permanent-redirect-code",
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "rewrite-target",
    "server-alias",
    "ssl-redirect",
    "temporal-redirect",
    "temporal-redirect-code",
    "upstream-vhost",
    "use-regex",
    "whitelist-source-range",
];

pub(super) fn check(map: &BTreeMap<String, String>, r: &mut Reader<'_>) {
    for key in map.keys() {
        let Some(name) = key.strip_prefix(NGINX) else {
            continue;
        };
        if name.ends_with("-snippet") || name == "configuration-snippet" {
            r.warnings.push(format!(
                "annotation {key}: snippet annotations are never executed by hookway (raw nginx configuration); ignored"
            ));
        } else if !TRANSLATED.contains(&name) {
            r.warnings.push(format!(
                "annotation {key}: not supported by hookway; ignored (see docs/migrating-from-ingress-nginx.md)"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::map;

    #[test]
    fn unsupported_and_snippet_annotations_warn_by_name() {
        let (result, warnings) = super::super::parse(&map(&[
            ("configuration-snippet", "more_set_headers \"x: y\";"),
            ("server-snippet", "location /x {}"),
            ("proxy-buffering", "on"),
            ("ssl-redirect", "false"),
            ("other.io/annotation", "x"),
        ]));
        assert!(result.is_ok());
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings[0].contains("configuration-snippet: snippet annotations are never executed")
        );
        assert!(warnings[1].contains("proxy-buffering: not supported by hookway"));
        assert!(warnings[2].contains("server-snippet: snippet annotations are never executed"));
    }
}
