//! Route specs: hosts and rules validated and normalised into snapshot matchers, and the
//! detection of Routes that match exactly the same requests.

use std::borrow::Borrow;
use std::collections::HashMap;

use crate::api::route::{RouteRule, ValueMatch};
use crate::snapshot::{
    ObjectKey, PathMatchType, RouteEntry, RuleEntry, ValueMatchEntry, ValueMatchType,
};
use crate::RouteSpec;

/// Lower-cased, validated hosts (exact or `*.` wildcard).
pub(crate) fn hosts(spec: &RouteSpec) -> Result<Vec<String>, String> {
    host_list(&spec.hosts, "spec.hosts")
}

/// Lower-cases and validates `hosts` (the list at `field`), sorted and deduplicated.
pub(crate) fn host_list(hosts: &[String], field: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(hosts.len());
    for (i, host) in hosts.iter().enumerate() {
        let host = host.to_ascii_lowercase();
        if !valid_host(&host) {
            return Err(format!(
                "{field}[{i}]: {host:?} is not a host name (exact like api.example.com, or a leading wildcard like *.example.com)"
            ));
        }
        out.push(host);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Whether `host` is an exact host name or a leading `*.` wildcard, lower-case.
pub(crate) fn valid_host(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Validated rules; empty rules become one `Prefix /` rule.
pub(crate) fn rules(spec: &RouteSpec) -> Result<Vec<RuleEntry>, String> {
    if spec.rules.is_empty() {
        return Ok(vec![RuleEntry {
            path_type: PathMatchType::Prefix,
            path: "/".into(),
            methods: Vec::new(),
            headers: Vec::new(),
            query: Vec::new(),
            tls: None,
            isolation: None,
        }]);
    }
    spec.rules
        .iter()
        .enumerate()
        .map(|(i, rule)| compile_rule(rule).map_err(|e| format!("spec.rules[{i}].{e}")))
        .collect()
}

fn compile_rule(rule: &RouteRule) -> Result<RuleEntry, String> {
    let (path_type, path) = match &rule.path {
        None => (PathMatchType::Prefix, "/".to_string()),
        Some(p) => {
            match p.kind {
                PathMatchType::Regex => {
                    check_regex(&p.value).map_err(|e| format!("path.value: {e}"))?
                }
                PathMatchType::Exact | PathMatchType::Prefix if !p.value.starts_with('/') => {
                    return Err(format!("path.value: {:?} must start with /", p.value))
                }
                _ => {}
            }
            (p.kind, p.value.clone())
        }
    };
    let mut methods = rule.methods.clone();
    methods.sort();
    methods.dedup();
    let headers = values(&rule.headers, true).map_err(|e| format!("headers{e}"))?;
    let query = values(&rule.query, false).map_err(|e| format!("query{e}"))?;
    Ok(RuleEntry {
        path_type,
        path,
        methods,
        headers,
        query,
        tls: None,
        isolation: None,
    })
}

fn values(matches: &[ValueMatch], lower_names: bool) -> Result<Vec<ValueMatchEntry>, String> {
    matches
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if m.name.is_empty() {
                return Err(format!("[{i}].name must not be empty"));
            }
            let value = match (m.kind, &m.value) {
                (ValueMatchType::Present, _) => String::new(),
                (_, None) => return Err(format!("[{i}].value is required unless type is Present")),
                (ValueMatchType::Regex, Some(v)) => {
                    check_regex(v).map_err(|e| format!("[{i}].value: {e}"))?;
                    v.clone()
                }
                (ValueMatchType::Exact, Some(v)) => v.clone(),
            };
            Ok(ValueMatchEntry {
                name: if lower_names {
                    m.name.to_ascii_lowercase()
                } else {
                    m.name.clone()
                },
                kind: m.kind,
                value,
            })
        })
        .collect()
}

/// Checks that `pattern` compiles as an anchored regular expression (`^(?:…)$`), as the proxy
/// will compile it.
pub(crate) fn check_regex(pattern: &str) -> Result<(), String> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
        .map(drop)
        .map_err(|e| format!("regular expression {pattern:?} does not compile: {e}"))
}

/// Routes that match exactly the same requests.
///
/// Two served Routes that share a host (or both have no hosts) and an identical rule are a
/// conflict. Both stay in the snapshot — the proxy's router picks the winner by higher
/// `priority`, then older `created`, then `namespace/name` — and every loser gets a
/// `Conflicted` warning naming the winner. Nothing is rejected: rejecting one would make the
/// outcome depend on which Route the operator happened to apply last.
///
/// Returns `(loser index, message)` pairs (indices into `routes`).
pub(crate) fn conflicts<E: Borrow<RouteEntry>>(routes: &[E]) -> Vec<(usize, String)> {
    let mut groups: HashMap<(&str, &RuleEntry), Vec<usize>> = HashMap::new();
    for (i, route) in routes.iter().enumerate() {
        let route = route.borrow();
        let any = route.hosts.is_empty().then_some("");
        let hosts = route.hosts.iter().map(String::as_str).chain(any);
        for host in hosts {
            for rule in &route.rules {
                groups.entry((host, rule)).or_default().push(i);
            }
        }
    }
    let mut out = Vec::new();
    for ((host, rule), members) in groups.into_iter().filter(|(_, m)| m.len() > 1) {
        let Some(&winner) = members
            .iter()
            .min_by(|&&a, &&b| rank(routes[a].borrow()).cmp(&rank(routes[b].borrow())))
        else {
            continue;
        };
        for &loser in members.iter().filter(|&&m| m != winner) {
            out.push((
                loser,
                conflict_message(host, rule, &routes[winner].borrow().key),
            ));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Sort key of the winner among equal matches: higher priority, then older, then smaller key.
fn rank(r: &RouteEntry) -> (i64, i64, &ObjectKey) {
    (-i64::from(r.priority), r.created, &r.key)
}

fn conflict_message(host: &str, rule: &RuleEntry, winner: &ObjectKey) -> String {
    let host = if host.is_empty() { "any host" } else { host };
    format!(
        "{host}, {:?} {} matches exactly the same requests as Route {winner}, which wins (higher priority, then older, then namespace/name)",
        rule.path_type, rule.path
    )
}
