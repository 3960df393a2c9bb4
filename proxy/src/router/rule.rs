//! One compiled rule of a Route: the non-path conditions (methods, headers, query) and the key
//! that orders equally specific candidates.

use std::cmp::Ordering;

use http::HeaderMap;
use regex::Regex;

use hookway_crds::snapshot::{Method, RouteEntry, RuleEntry, ValueMatchEntry, ValueMatchType};

use super::RouterError;

/// A header or query condition, compiled.
#[derive(Debug)]
enum ValueCond {
    Exact(String),
    Regex(Regex),
    Present,
}

impl ValueCond {
    fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueCond::Present => true,
            ValueCond::Exact(want) => want.as_bytes() == value,
            ValueCond::Regex(re) => std::str::from_utf8(value).is_ok_and(|v| re.is_match(v)),
        }
    }
}

/// A named condition.
#[derive(Debug)]
struct ValueMatch {
    name: String,
    cond: ValueCond,
}

/// Bit set of [`Method`]s (0 = any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSet(u16);

impl MethodSet {
    fn from_methods(methods: &[Method]) -> Self {
        Self(methods.iter().fold(0, |acc, m| acc | method_bit(*m)))
    }

    fn contains(self, method: &http::Method) -> bool {
        if self.0 == 0 {
            return true;
        }
        http_method_bit(method).is_some_and(|bit| self.0 & bit != 0)
    }
}

fn method_bit(m: Method) -> u16 {
    1 << match m {
        Method::Get => 0,
        Method::Head => 1,
        Method::Post => 2,
        Method::Put => 3,
        Method::Patch => 4,
        Method::Delete => 5,
        Method::Options => 6,
        Method::Connect => 7,
        Method::Trace => 8,
    }
}

fn http_method_bit(m: &http::Method) -> Option<u16> {
    let snap = match *m {
        http::Method::GET => Method::Get,
        http::Method::HEAD => Method::Head,
        http::Method::POST => Method::Post,
        http::Method::PUT => Method::Put,
        http::Method::PATCH => Method::Patch,
        http::Method::DELETE => Method::Delete,
        http::Method::OPTIONS => Method::Options,
        http::Method::CONNECT => Method::Connect,
        http::Method::TRACE => Method::Trace,
        _ => return None,
    };
    Some(method_bit(snap))
}

/// A rule's conditions beyond the path, and its place among equally specific candidates.
#[derive(Debug)]
pub struct Conditions {
    /// Index of the Route in the snapshot. A snapshot's Routes are sorted by key (namespace,
    /// then name), so the index is also the last tie-break of docs/routing.md: ordering by it
    /// orders by namespace and name without keeping a copy of them per rule (about 0.1 KiB per
    /// Route at 10,000 Routes, bench/CONTROLLER.md).
    pub route: usize,
    methods: MethodSet,
    headers: Vec<ValueMatch>,
    query: Vec<ValueMatch>,
    /// Only TLS (`Some(true)`) or only plain HTTP (`Some(false)`) requests.
    tls: Option<bool>,
    /// Hosts left to more specific Gateway listeners (`RuleEntry::isolation`).
    isolation: Option<Box<hookway_crds::snapshot::HostIsolation>>,
    // Tie-break key (see docs/routing.md).
    priority: i32,
    created: i64,
}

/// An anchored regex (`^(?:re)$`) so the whole value must match.
pub(super) fn anchored(re: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{re})$"))
}

fn compile_values(list: &[ValueMatchEntry], what: &str) -> Result<Vec<ValueMatch>, RouterError> {
    list.iter()
        .map(|v| {
            let cond = match v.kind {
                ValueMatchType::Exact => ValueCond::Exact(v.value.clone()),
                ValueMatchType::Present => ValueCond::Present,
                ValueMatchType::Regex => {
                    ValueCond::Regex(anchored(&v.value).map_err(|e| RouterError::Regex {
                        what: format!("{what} {}", v.name),
                        message: e.to_string(),
                    })?)
                }
            };
            Ok(ValueMatch {
                name: v.name.clone(),
                cond,
            })
        })
        .collect()
}

impl Conditions {
    /// Compiles the conditions of `rule` of route number `route`.
    pub fn compile(
        route: usize,
        entry: &RouteEntry,
        rule: &RuleEntry,
    ) -> Result<Self, RouterError> {
        Ok(Self {
            route,
            methods: MethodSet::from_methods(&rule.methods),
            headers: compile_values(&rule.headers, "header")?,
            query: compile_values(&rule.query, "query")?,
            tls: rule.tls,
            isolation: rule.isolation.clone(),
            priority: entry.priority,
            created: entry.created,
        })
    }

    /// Whether the request's method, headers, query, transport (`tls`) and host (lower-case,
    /// no port; for listener isolation) satisfy this rule.
    pub fn matches(
        &self,
        method: &http::Method,
        headers: &HeaderMap,
        query: Option<&str>,
        tls: bool,
        host: &str,
    ) -> bool {
        if self.tls.is_some_and(|want| want != tls) || !self.methods.contains(method) {
            return false;
        }
        if self.isolation.as_ref().is_some_and(|i| i.excludes(host)) {
            return false;
        }
        let headers_ok = self.headers.iter().all(|h| {
            headers
                .get_all(h.name.as_str())
                .iter()
                .any(|v| h.cond.matches(v.as_bytes()))
        });
        if !headers_ok {
            return false;
        }
        self.query.iter().all(|q| {
            query.is_some_and(|qs| {
                qs.split('&').any(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    k == q.name && q.cond.matches(v.as_bytes())
                })
            })
        })
    }

    /// Orders candidates of the same path specificity: the first one is tried first.
    pub fn precedence(&self, other: &Self) -> Ordering {
        let has_methods = |c: &Self| c.methods.0 != 0;
        has_methods(other)
            .cmp(&has_methods(self))
            .then(other.headers.len().cmp(&self.headers.len()))
            .then(other.query.len().cmp(&self.query.len()))
            .then(other.priority.cmp(&self.priority))
            .then(self.created.cmp(&other.created))
            .then(self.route.cmp(&other.route))
    }
}
