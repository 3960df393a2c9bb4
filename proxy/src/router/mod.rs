//! Request routing: which Route serves a request.
//!
//! Index: hosts by hash (exact), wildcard hosts by suffix, then the any-host rules; inside each,
//! a [`HostTable`] ordered by path specificity. A request looks at the most specific host table
//! that has a matching rule, and inside it at few candidates: no scan over every route.
//! The full tie-breaking order is in `docs/routing.md`.

mod rule;
mod table;

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;

use hookway_crds::snapshot::{PathMatchType, RouteEntry};

use rule::{anchored, Conditions};
use table::HostTable;

/// A Route that cannot be compiled into the router.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A regular expression that does not compile.
    #[error("invalid regex in {what}: {message}")]
    Regex {
        /// Which match.
        what: String,
        /// The regex error.
        message: String,
    },
}

/// The compiled routing table of one snapshot.
#[derive(Default, Debug)]
pub struct Router {
    exact: HashMap<Box<str>, HostTable>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: HashMap<Box<str>, HostTable>,
    any: HostTable,
}

/// The parts of a request routing looks at.
pub struct RequestView<'a> {
    /// Host (from `:authority` or `Host`), any case, port allowed.
    pub host: Option<&'a str>,
    /// Method.
    pub method: &'a http::Method,
    /// Path (no query).
    pub path: &'a str,
    /// Query string, if any.
    pub query: Option<&'a str>,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// Whether the request arrived over TLS.
    pub tls: bool,
}

/// Lower-cases `host` and strips a port, without allocating when it is already lower-case.
pub(crate) fn normalise_host(host: &str) -> std::borrow::Cow<'_, str> {
    let host = if host.starts_with('[') {
        // IPv6 literal: keep up to the closing bracket.
        host.split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

impl Router {
    /// Compiles the routes of a snapshot (indices refer to `routes`), sorted by key as a
    /// snapshot holds them: between otherwise equal candidates the first by key wins.
    pub fn new<R: std::borrow::Borrow<RouteEntry>>(routes: &[R]) -> Result<Self, RouterError> {
        let mut router = Router::default();
        for (idx, route) in routes.iter().enumerate() {
            let route = route.borrow();
            for rule in &route.rules {
                let cond = Arc::new(Conditions::compile(idx, route, rule)?);
                let regex = match rule.path_type {
                    PathMatchType::Regex => {
                        Some(anchored(&rule.path).map_err(|e| RouterError::Regex {
                            what: format!("path of route {}", route.key),
                            message: e.to_string(),
                        })?)
                    }
                    _ => None,
                };
                if route.hosts.is_empty() {
                    add(
                        &mut router.any,
                        rule.path_type,
                        &rule.path,
                        regex.clone(),
                        cond.clone(),
                    );
                }
                for host in &route.hosts {
                    let host = host.to_ascii_lowercase();
                    let table = match host.strip_prefix("*.") {
                        Some(suffix) => router.wildcard.entry(suffix.into()).or_default(),
                        None => router.exact.entry(host.into()).or_default(),
                    };
                    add(
                        table,
                        rule.path_type,
                        &rule.path,
                        regex.clone(),
                        cond.clone(),
                    );
                }
            }
        }
        router.exact.values_mut().for_each(HostTable::finish);
        router.wildcard.values_mut().for_each(HostTable::finish);
        router.any.finish();
        Ok(router)
    }

    /// The index of the Route serving `req`, if any.
    pub fn find(&self, req: &RequestView<'_>) -> Option<usize> {
        let host = req.host.map(normalise_host);
        let name = host.as_deref().unwrap_or("");
        let find_in =
            |t: &HostTable| t.find(req.method, req.path, req.headers, req.query, req.tls, name);
        if let Some(host) = &host {
            if let Some(route) = self.exact.get(host.as_ref()).and_then(find_in) {
                return Some(route);
            }
            if !self.wildcard.is_empty() {
                // Longest wildcard suffix first: a.b.example.com -> b.example.com, example.com, com.
                let mut rest = host.as_ref();
                while let Some((_, suffix)) = rest.split_once('.') {
                    if let Some(route) = self.wildcard.get(suffix).and_then(find_in) {
                        return Some(route);
                    }
                    rest = suffix;
                }
            }
        }
        find_in(&self.any)
    }
}

fn add(
    table: &mut HostTable,
    kind: PathMatchType,
    path: &str,
    regex: Option<regex::Regex>,
    cond: Arc<Conditions>,
) {
    match (kind, regex) {
        (PathMatchType::Exact, _) => table.add_exact(path, cond),
        (PathMatchType::Prefix, _) => table.add_prefix(path, cond),
        (PathMatchType::Regex, Some(re)) => table.add_regex(re, cond),
        (PathMatchType::Regex, None) => {}
    }
}

#[cfg(test)]
mod tests;
