//! GRPCRoute matches → hookway Route rules. A gRPC call is `POST /<service>/<method>`, so a
//! method match is a path match:
//!
//! | `method` match | path |
//! |---|---|
//! | none | `Prefix /` (every call) |
//! | `Exact`, service and method | `Exact /<service>/<method>` |
//! | `Exact`, service only | `Prefix /<service>` (by whole segment: `/<service>/…`) |
//! | `Exact`, method only | `Regex /[^/]+/<method>` |
//! | `RegularExpression` | `Regex /(?:<service>)/(?:<method>)` (an absent side is `[^/]+`) |
//!
//! The router's tie-breaking then gives the spec's GRPCRoute precedence: an exact
//! service and method (an `Exact` path) before a service alone (a `Prefix`) before a method
//! alone or a regular expression (a `Regex`), then the most header matches, the oldest route,
//! `namespace/name` and rule order. Header matches are HTTPRoute's (`Exact`,
//! `RegularExpression`); a repeated header name counts only its first entry, as the spec says.

use crate::api::route::{PathMatch, PathMatchType, RouteRule, ValueMatch, ValueMatchType};
use crate::gateway_api::grpc_route::{GRPCMethodMatch, GRPCRouteMatch};

/// The lowered rule, or an `UnsupportedValue` message.
pub(crate) fn rule(m: &GRPCRouteMatch) -> Result<RouteRule, String> {
    let path = match &m.method {
        None => PathMatch {
            kind: PathMatchType::Prefix,
            value: "/".into(),
        },
        Some(method) => path(method)?,
    };
    let mut headers: Vec<ValueMatch> = Vec::new();
    for h in &m.headers {
        if headers.iter().any(|x| x.name.eq_ignore_ascii_case(&h.name)) {
            continue;
        }
        let kind = match h.kind.as_deref().unwrap_or("Exact") {
            "Exact" => ValueMatchType::Exact,
            "RegularExpression" => ValueMatchType::Regex,
            other => return Err(format!("headers[].type {other:?} is not supported")),
        };
        headers.push(ValueMatch {
            name: h.name.clone(),
            kind,
            value: Some(h.value.clone()),
        });
    }
    Ok(RouteRule {
        path: Some(path),
        methods: Vec::new(),
        headers,
        query: Vec::new(),
    })
}

/// Whether `s` is a valid `Exact` service or method name (the CRD's patterns: dotted
/// identifiers for a service, an identifier for a method).
fn identifier(s: &str, dots: bool) -> bool {
    let s = if dots {
        s.strip_prefix('.').unwrap_or(s)
    } else {
        s
    };
    !s.is_empty()
        && s.split('.').all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        && (dots || !s.contains('.'))
}

fn path(m: &GRPCMethodMatch) -> Result<PathMatch, String> {
    let service = m.service.as_deref().filter(|s| !s.is_empty());
    let method = m.method.as_deref().filter(|s| !s.is_empty());
    if service.is_none() && method.is_none() {
        return Err("method: at least one of service and method must be set".into());
    }
    match m.kind.as_deref().unwrap_or("Exact") {
        "Exact" => {
            if let Some(s) = service.filter(|s| !identifier(s, true)) {
                return Err(format!(
                    "method.service {s:?} is not a valid gRPC service name"
                ));
            }
            if let Some(x) = method.filter(|x| !identifier(x, false)) {
                return Err(format!(
                    "method.method {x:?} is not a valid gRPC method name"
                ));
            }
            Ok(match (service, method) {
                (Some(s), Some(x)) => PathMatch {
                    kind: PathMatchType::Exact,
                    value: format!("/{s}/{x}"),
                },
                (Some(s), None) => PathMatch {
                    kind: PathMatchType::Prefix,
                    value: format!("/{s}"),
                },
                (None, Some(x)) => PathMatch {
                    kind: PathMatchType::Regex,
                    value: format!("/[^/]+/{}", regex::escape(x)),
                },
                (None, None) => unreachable!("checked above"),
            })
        }
        "RegularExpression" => {
            let side =
                |v: Option<&str>| v.map_or_else(|| "[^/]+".to_string(), |v| format!("(?:{v})"));
            Ok(PathMatch {
                kind: PathMatchType::Regex,
                value: format!("/{}/{}", side(service), side(method)),
            })
        }
        other => Err(format!("method.type {other:?} is not supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn method_matches_lower_to_paths() {
        // (match, Ok((path type, path)) or the error's start)
        type Want = Result<(PathMatchType, &'static str), &'static str>;
        let cases: Vec<(serde_json::Value, Want)> = vec![
            (json!({}), Ok((PathMatchType::Prefix, "/"))),
            (
                json!({"method": {"service": "pkg.Svc", "method": "Get"}}),
                Ok((PathMatchType::Exact, "/pkg.Svc/Get")),
            ),
            (
                json!({"method": {"type": "Exact", "service": "pkg.Svc"}}),
                Ok((PathMatchType::Prefix, "/pkg.Svc")),
            ),
            (
                json!({"method": {"method": "Get"}}),
                Ok((PathMatchType::Regex, "/[^/]+/Get")),
            ),
            (
                json!({"method": {"type": "RegularExpression", "service": "pkg\\.v[0-9]+\\.Svc"}}),
                Ok((PathMatchType::Regex, "/(?:pkg\\.v[0-9]+\\.Svc)/[^/]+")),
            ),
            (
                json!({"method": {"type": "RegularExpression", "service": "a.B", "method": "Get|Put"}}),
                Ok((PathMatchType::Regex, "/(?:a.B)/(?:Get|Put)")),
            ),
            (json!({"method": {}}), Err("method: at least one")),
            (
                json!({"method": {"service": "a/b"}}),
                Err("method.service \"a/b\" is not"),
            ),
            (
                json!({"method": {"service": "a", "method": "x.y"}}),
                Err("method.method \"x.y\" is not"),
            ),
            (
                json!({"method": {"type": "Prefix", "service": "a"}}),
                Err("method.type \"Prefix\" is not supported"),
            ),
        ];
        for (m, want) in cases {
            let got = rule(&serde_json::from_value(m.clone()).unwrap());
            match (got, want) {
                (Ok(r), Ok((kind, value))) => {
                    assert_eq!(
                        r.path,
                        Some(PathMatch {
                            kind,
                            value: value.into()
                        }),
                        "{m}"
                    );
                    assert!(r.methods.is_empty(), "{m}");
                }
                (Err(e), Err(start)) => assert!(e.starts_with(start), "{m}: {e}"),
                (got, want) => panic!("{m}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn header_matches_keep_the_first_of_a_name() {
        let r = rule(
            &serde_json::from_value(json!({"headers": [
                {"name": "Version", "value": "one"},
                {"name": "version", "value": "two"},
                {"type": "RegularExpression", "name": "color", "value": "bl.*"}
            ]}))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.headers[0].value.as_deref(), Some("one"));
        assert_eq!(r.headers[1].kind, ValueMatchType::Regex);
        let bad = serde_json::from_value(
            json!({"headers": [{"type": "Prefix", "name": "a", "value": "b"}]}),
        )
        .unwrap();
        assert!(rule(&bad).is_err());
    }
}
