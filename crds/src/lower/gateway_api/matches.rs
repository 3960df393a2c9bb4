//! HTTPRoute matches → hookway Route rules (one rule per lowered Route).

use crate::api::route::{Method, PathMatch, PathMatchType, RouteRule, ValueMatch, ValueMatchType};
use crate::gateway_api::http_route::{HTTPRouteMatch, HTTPValueMatch};

/// The lowered rule and, for `PathPrefix` matches, the matched prefix (what
/// `ReplacePrefixMatch` replaces). `Err` is an `UnsupportedValue` message.
pub(crate) fn rule(m: &HTTPRouteMatch) -> Result<(RouteRule, Option<String>), String> {
    let path = m.path.as_ref();
    let value = path
        .and_then(|p| p.value.clone())
        .unwrap_or_else(|| "/".into());
    let (kind, value, prefix) = match path.and_then(|p| p.kind.as_deref()).unwrap_or("PathPrefix") {
        "Exact" => (PathMatchType::Exact, value, None),
        "PathPrefix" => {
            // A trailing slash is not significant: `/foo/` matches `/foo` and `/foo/bar`.
            let trimmed = match value.trim_end_matches('/') {
                "" => "/".to_string(),
                t => t.to_string(),
            };
            (PathMatchType::Prefix, trimmed.clone(), Some(trimmed))
        }
        "RegularExpression" => (PathMatchType::Regex, value, None),
        other => return Err(format!("path.type {other:?} is not supported")),
    };
    let method = match &m.method {
        None => Vec::new(),
        Some(name) => {
            vec![
                serde_json::from_value::<Method>(serde_json::Value::String(name.clone()))
                    .map_err(|_| format!("method {name:?} is not supported"))?,
            ]
        }
    };
    Ok((
        RouteRule {
            path: Some(PathMatch { kind, value }),
            methods: method,
            headers: values(&m.headers, "headers")?,
            query: values(&m.query_params, "queryParams")?,
        },
        prefix,
    ))
}

fn values(list: &[HTTPValueMatch], field: &str) -> Result<Vec<ValueMatch>, String> {
    list.iter()
        .map(|v| {
            let kind = match v.kind.as_deref().unwrap_or("Exact") {
                "Exact" => ValueMatchType::Exact,
                "RegularExpression" => ValueMatchType::Regex,
                other => return Err(format!("{field}[].type {other:?} is not supported")),
            };
            Ok(ValueMatch {
                name: v.name.clone(),
                kind,
                value: Some(v.value.clone()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(json: serde_json::Value) -> HTTPRouteMatch {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn matches_lower_to_rules() {
        use serde_json::json;
        let (r, prefix) = rule(&m(json!({}))).unwrap();
        assert_eq!(r.path.unwrap().value, "/");
        assert_eq!(prefix.as_deref(), Some("/"));
        let (r, prefix) =
            rule(&m(json!({"path": {"type": "PathPrefix", "value": "/v2/"}}))).unwrap();
        assert_eq!(
            r.path,
            Some(PathMatch {
                kind: PathMatchType::Prefix,
                value: "/v2".into()
            })
        );
        assert_eq!(prefix.as_deref(), Some("/v2"));
        let (r, prefix) = rule(&m(json!({"path": {"type": "Exact", "value": "/one"}, "method": "POST",
            "headers": [{"name": "Version", "value": "two"}, {"type": "RegularExpression", "name": "x", "value": "a+"}],
            "queryParams": [{"name": "q", "value": "1"}]}))).unwrap();
        assert_eq!(prefix, None);
        assert_eq!(r.methods, vec![Method::Post]);
        assert_eq!(r.headers[1].kind, ValueMatchType::Regex);
        assert_eq!(r.query[0].value.as_deref(), Some("1"));
        assert!(rule(&m(json!({"method": "BREW"}))).is_err());
        assert!(rule(&m(json!({"path": {"type": "Glob", "value": "/x"}}))).is_err());
    }
}
