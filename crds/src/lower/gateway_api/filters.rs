//! A rule's filters → route-level plugin instances of built-in kinds, or references to
//! GatewayPlugins (`ExtensionRef`).
//!
//! | filter                  | plugin            |
//! |-------------------------|-------------------|
//! | RequestHeaderModifier   | `headers` (request side)  |
//! | ResponseHeaderModifier  | `headers` (response side) |
//! | RequestRedirect         | `request_redirect` |
//! | URLRewrite              | `proxy_rewrite` (`host`, `uri`, `replace_prefix`) |
//! | CORS                    | `cors`            |
//! | RequestMirror           | `request_mirror` (to a synthetic Service of the mirror backend) |
//! | ExtensionRef            | the GatewayPlugin alias it names (group `hookway.dev`, kind `GatewayPlugin`) |

use serde_json::{json, Map, Value};

use super::sources::RouteKind;
use crate::gateway_api::http_route::{HTTPHeaderFilter, HTTPPathModifier, HTTPRouteFilter};

/// The filter types of a GRPCRoute (the rest are HTTPRoute's only).
const GRPC_FILTERS: &[&str] = &[
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "ExtensionRef",
];

/// Order of the synthetic plugins: redirects answer before anything else of the route runs,
/// CORS preflights next; the rest in the middle of the default order (1000).
pub(crate) const REDIRECT_ORDER: i32 = 100;
const CORS_ORDER: i32 = 200;
const DEFAULT_ORDER: i32 = 1000;

/// One lowered filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lowered {
    /// A synthetic GatewayPlugin of a built-in kind.
    Plugin {
        /// Plugin kind.
        kind: &'static str,
        /// Its config.
        config: Value,
        /// Its order.
        order: i32,
    },
    /// A reference to the GatewayPlugin alias.
    Extension(String),
    /// A `request_mirror` to the backend (the caller makes it a Service): the share mirrored.
    Mirror {
        /// `numerator / denominator` of the requests.
        numerator: i32,
        /// See `numerator`.
        denominator: i32,
    },
}

/// Why a filter cannot be lowered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Problem {
    /// `Accepted=False`, `UnsupportedValue`: the rule is not served.
    Unsupported(String),
    /// `ResolvedRefs=False`, `InvalidKind`: the rule answers 500.
    InvalidKind(String),
}

/// Lowers one filter of a route of `kind`. `prefix` is the match's path prefix (for
/// `ReplacePrefixMatch`).
pub(crate) fn lower(
    f: &HTTPRouteFilter,
    prefix: Option<&str>,
    kind: RouteKind,
) -> Result<Lowered, Problem> {
    if kind == RouteKind::Grpc && !GRPC_FILTERS.contains(&f.kind.as_str()) {
        return Err(Problem::Unsupported(format!(
            "filter type {:?} is not supported on a GRPCRoute",
            f.kind
        )));
    }
    let missing =
        || Problem::Unsupported(format!("filter {} has no {} field", f.kind, field(&f.kind)));
    let plugin = |kind, config, order| {
        Ok(Lowered::Plugin {
            kind,
            config,
            order,
        })
    };
    match f.kind.as_str() {
        "RequestHeaderModifier" => {
            let h = f.request_header_modifier.as_ref().ok_or_else(missing)?;
            plugin(
                "headers",
                json!({ "request": header_ops(h) }),
                DEFAULT_ORDER,
            )
        }
        "ResponseHeaderModifier" => {
            let h = f.response_header_modifier.as_ref().ok_or_else(missing)?;
            plugin(
                "headers",
                json!({ "response": header_ops(h) }),
                DEFAULT_ORDER,
            )
        }
        "RequestRedirect" => {
            let r = f.request_redirect.as_ref().ok_or_else(missing)?;
            let mut config = Map::new();
            if let Some(s) = &r.scheme {
                config.insert("scheme".into(), json!(s));
            }
            if let Some(h) = &r.hostname {
                config.insert("hostname".into(), json!(h));
            }
            if let Some(p) = r.port {
                config.insert("port".into(), json!(p));
            }
            if let Some(p) = &r.path {
                config.insert("path".into(), path(p, prefix)?);
            }
            config.insert("status".into(), json!(r.status_code.unwrap_or(302)));
            plugin("request_redirect", Value::Object(config), REDIRECT_ORDER)
        }
        "URLRewrite" => {
            let r = f.url_rewrite.as_ref().ok_or_else(missing)?;
            let mut config = Map::new();
            if let Some(h) = &r.hostname {
                config.insert("host".into(), json!(h));
            }
            if let Some(p) = &r.path {
                let p = path(p, prefix)?;
                match p.get("type").and_then(Value::as_str) {
                    Some("ReplaceFullPath") => config.insert("uri".into(), p["value"].clone()),
                    _ => config.insert(
                        "replace_prefix".into(),
                        json!({ "prefix": p["prefix"], "with": p["value"] }),
                    ),
                };
            }
            plugin("proxy_rewrite", Value::Object(config), DEFAULT_ORDER)
        }
        "CORS" => {
            let c = f.cors.as_ref().ok_or_else(missing)?;
            let mut config = Map::new();
            // Empty lists: nothing is allowed (the spec), not the plugin's `*` defaults.
            config.insert("allow_origins".into(), json!(c.allow_origins));
            config.insert("allow_methods".into(), json!(c.allow_methods));
            config.insert("allow_headers".into(), json!(c.allow_headers));
            config.insert("expose_headers".into(), json!(c.expose_headers));
            config.insert(
                "allow_credentials".into(),
                json!(c.allow_credentials.unwrap_or(false)),
            );
            config.insert("max_age".into(), json!(c.max_age.unwrap_or(5).max(0)));
            plugin("cors", Value::Object(config), CORS_ORDER)
        }
        "RequestMirror" => {
            let m = f.request_mirror.as_ref().ok_or_else(missing)?;
            let (numerator, denominator) = match (&m.fraction, m.percent) {
                (Some(f), _) => (f.numerator, f.denominator.unwrap_or(100)),
                (None, Some(p)) => (p, 100),
                (None, None) => (100, 100),
            };
            if denominator <= 0 || !(0..=denominator).contains(&numerator) {
                return Err(Problem::Unsupported(format!(
                    "requestMirror: {numerator}/{denominator} is not a fraction between 0 and 1"
                )));
            }
            Ok(Lowered::Mirror {
                numerator,
                denominator,
            })
        }
        "ExtensionRef" => {
            let e = f.extension_ref.as_ref().ok_or_else(missing)?;
            if e.group != crate::GROUP || e.kind != "GatewayPlugin" {
                return Err(Problem::InvalidKind(format!(
                    "ExtensionRef {}/{} {}: hookway supports group {} kind GatewayPlugin",
                    e.group,
                    e.kind,
                    e.name,
                    crate::GROUP
                )));
            }
            Ok(Lowered::Extension(e.name.clone()))
        }
        other => Err(Problem::Unsupported(format!(
            "filter type {other:?} is not supported"
        ))),
    }
}

fn field(kind: &str) -> String {
    let mut chars = kind.chars();
    match kind {
        "URLRewrite" => "urlRewrite".into(),
        "CORS" => "cors".into(),
        _ => chars
            .next()
            .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
            .unwrap_or_default(),
    }
}

fn header_ops(h: &HTTPHeaderFilter) -> Value {
    let map = |list: &[crate::gateway_api::http_route::HTTPHeader]| {
        Value::Object(
            list.iter()
                .map(|x| (x.name.to_ascii_lowercase(), json!(x.value)))
                .collect(),
        )
    };
    json!({ "set": map(&h.set), "add": map(&h.add), "remove": h.remove })
}

/// `{type, value, prefix}` of a path modifier.
fn path(p: &HTTPPathModifier, prefix: Option<&str>) -> Result<Value, Problem> {
    match p.kind.as_str() {
        "ReplaceFullPath" => {
            let v = p.replace_full_path.as_ref().ok_or_else(|| {
                Problem::Unsupported("path.replaceFullPath is required for ReplaceFullPath".into())
            })?;
            Ok(json!({ "type": "ReplaceFullPath", "value": v }))
        }
        "ReplacePrefixMatch" => {
            let v = p.replace_prefix_match.as_ref().ok_or_else(|| {
                Problem::Unsupported(
                    "path.replacePrefixMatch is required for ReplacePrefixMatch".into(),
                )
            })?;
            let prefix = prefix.ok_or_else(|| {
                Problem::Unsupported("ReplacePrefixMatch needs a PathPrefix match".into())
            })?;
            Ok(json!({ "type": "ReplacePrefixMatch", "value": v, "prefix": prefix }))
        }
        other => Err(Problem::Unsupported(format!(
            "path.type {other:?} is not supported"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: Value) -> HTTPRouteFilter {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn filters_lower_to_plugins() {
        let cases: Vec<(Value, Option<&str>, Result<Lowered, Problem>)> = vec![
            (
                json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "X-A", "value": "1"}], "remove": ["x-b"]}}),
                None,
                Ok(Lowered::Plugin { kind: "headers", config: json!({"request": {"set": {"x-a": "1"}, "add": {}, "remove": ["x-b"]}}), order: 1000 }),
            ),
            (
                json!({"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}),
                None,
                Ok(Lowered::Plugin { kind: "request_redirect", config: json!({"scheme": "https", "status": 301}), order: 100 }),
            ),
            (
                json!({"type": "RequestRedirect", "requestRedirect": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}),
                Some("/old"),
                Ok(Lowered::Plugin { kind: "request_redirect", config: json!({"path": {"type": "ReplacePrefixMatch", "value": "/new", "prefix": "/old"}, "status": 302}), order: 100 }),
            ),
            (
                json!({"type": "URLRewrite", "urlRewrite": {"hostname": "h", "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}),
                Some("/strip"),
                Ok(Lowered::Plugin { kind: "proxy_rewrite", config: json!({"host": "h", "replace_prefix": {"prefix": "/strip", "with": "/"}}), order: 1000 }),
            ),
            (
                json!({"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/x"}}}),
                None,
                Ok(Lowered::Plugin { kind: "proxy_rewrite", config: json!({"uri": "/x"}), order: 1000 }),
            ),
            (
                json!({"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/x"}}}),
                None,
                Err(Problem::Unsupported("ReplacePrefixMatch needs a PathPrefix match".into())),
            ),
            (
                json!({"type": "ExtensionRef", "extensionRef": {"group": "hookway.dev", "kind": "GatewayPlugin", "name": "rl"}}),
                None,
                Ok(Lowered::Extension("rl".into())),
            ),
            (
                json!({"type": "ExtensionRef", "extensionRef": {"group": "example.com", "kind": "Thing", "name": "t"}}),
                None,
                Err(Problem::InvalidKind("ExtensionRef example.com/Thing t: hookway supports group hookway.dev kind GatewayPlugin".into())),
            ),
            (
                json!({"type": "RequestHeaderModifier"}),
                None,
                Err(Problem::Unsupported("filter RequestHeaderModifier has no requestHeaderModifier field".into())),
            ),
        ];
        for (filter, prefix, want) in cases {
            assert_eq!(
                lower(&f(filter.clone()), prefix, RouteKind::Http),
                want,
                "{filter}"
            );
        }
        // GRPCRoute: the header modifiers, mirrors and ExtensionRefs only.
        let grpc = |v: Value| lower(&f(v), None, RouteKind::Grpc);
        assert!(matches!(
            grpc(
                json!({"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "a", "value": "1"}]}})
            ),
            Ok(Lowered::Plugin {
                kind: "headers",
                ..
            })
        ));
        assert_eq!(
            grpc(json!({"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}})),
            Err(Problem::Unsupported(
                "filter type \"RequestRedirect\" is not supported on a GRPCRoute".into()
            ))
        );
    }
}
