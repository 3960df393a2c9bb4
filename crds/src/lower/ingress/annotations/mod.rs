//! The annotations of an Ingress, read and checked once: the ingress-nginx ones hookway
//! translates (one file per family), `hookway.dev/plugins`, and warnings for the rest.
//!
//! Every value is checked when the Ingress is lowered; a bad value is an error naming the
//! annotation (the Ingress is then not served: an auth or allow-list annotation that cannot be
//! honoured must not leave the routes open). Docs: docs/migrating-from-ingress-nginx.md.

mod access;
mod auth;
mod canary;
mod cors;
mod limits;
mod redirect;
mod rewrite;
mod unsupported;
mod upstream;

use std::collections::{BTreeMap, HashSet};

pub(crate) use canary::Canary;
pub(crate) use rewrite::rewrite_pattern;
pub(crate) use upstream::Upstream;

use super::plugins::Synthetic;

/// The prefix of ingress-nginx annotations.
pub(crate) const NGINX: &str = "nginx.ingress.kubernetes.io/";
/// `hookway.dev/plugins: "alias-a, alias-b"`: route-level references to GatewayPlugins.
pub(crate) const PLUGINS: &str = "hookway.dev/plugins";

/// Reads annotation values, collecting errors that name the annotation.
pub(crate) struct Reader<'a> {
    map: &'a BTreeMap<String, String>,
    /// The Ingress's namespace (for `namespace/name` references).
    pub namespace: &'a str,
    /// `annotation <name>: <why>` for each bad value.
    pub errors: Vec<String>,
    /// Non-fatal findings.
    pub warnings: Vec<String>,
}

impl<'a> Reader<'a> {
    /// A reader of `map`.
    pub fn new(map: &'a BTreeMap<String, String>, namespace: &'a str) -> Self {
        Self {
            map,
            namespace,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The trimmed value of `nginx.ingress.kubernetes.io/<name>`, if set.
    pub fn raw(&self, name: &str) -> Option<&'a str> {
        self.map.get(&format!("{NGINX}{name}")).map(|v| v.trim())
    }

    /// Records a bad value of `name`.
    pub fn error(&mut self, name: &str, why: impl std::fmt::Display) {
        self.errors.push(format!("annotation {NGINX}{name}: {why}"));
    }

    /// Records a non-fatal finding about `name`.
    pub fn warn(&mut self, name: &str, why: impl std::fmt::Display) {
        self.warnings
            .push(format!("annotation {NGINX}{name}: {why}"));
    }

    /// A non-empty string value.
    pub fn string(&mut self, name: &str) -> Option<String> {
        let v = self.raw(name)?;
        if v.is_empty() {
            self.error(name, "must not be empty");
            return None;
        }
        Some(v.to_string())
    }

    /// `"true"` or `"false"`.
    pub fn bool(&mut self, name: &str) -> Option<bool> {
        match self.raw(name)? {
            "true" => Some(true),
            "false" => Some(false),
            other => {
                self.error(name, format!("{other:?} is not \"true\" or \"false\""));
                None
            }
        }
    }

    /// A whole number in `min..=max`.
    pub fn number(&mut self, name: &str, min: u64, max: u64) -> Option<u64> {
        let v = self.raw(name)?;
        match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    name,
                    format!("{v:?} is not a whole number from {min} to {max}"),
                );
                None
            }
        }
    }

    /// A comma-separated list (items trimmed, empty items dropped).
    pub fn list(&mut self, name: &str) -> Option<Vec<String>> {
        let v = self.raw(name)?;
        let items: Vec<String> = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if items.is_empty() {
            self.error(name, "must list at least one value");
            return None;
        }
        Some(items)
    }
}

/// Everything the annotations of one Ingress ask for.
#[derive(Debug, Default)]
pub(crate) struct Annotations {
    /// Paths are case-insensitive regular expressions (`use-regex`, implied by `rewrite-target`).
    pub regex: bool,
    /// `rewrite-target`, with `$1` turned into `${1}`.
    pub rewrite_target: Option<String>,
    /// `upstream-vhost`: the Host sent upstream.
    pub upstream_vhost: Option<String>,
    /// `app-root`: `/` is redirected (302) here.
    pub app_root: Option<String>,
    /// `server-alias`: more hosts served like each rule's host.
    pub server_alias: Vec<String>,
    /// Redirects, CORS, access and limits: plugin configs that apply to every path.
    pub plugins: Vec<(&'static Synthetic, serde_json::Value)>,
    /// `ssl-redirect` (default true: for hosts with TLS) and `force-ssl-redirect` (every host).
    pub ssl_redirect: bool,
    /// `force-ssl-redirect`.
    pub force_ssl_redirect: bool,
    /// The synthetic Service's settings.
    pub upstream: Upstream,
    /// `canary: "true"` and its settings.
    pub canary: Option<Canary>,
    /// `hookway.dev/plugins`.
    pub references: Vec<String>,
}

/// Reads every annotation of an Ingress (tests: in namespace `default`). `Err` lists every bad value (each naming its
/// annotation); warnings (unsupported annotations, approximations) come either way.
#[cfg(test)]
pub(crate) fn parse(
    map: &BTreeMap<String, String>,
) -> (Result<Annotations, Vec<String>>, Vec<String>) {
    parse_in(map, "default")
}

/// [`parse`] for an Ingress of `namespace`.
pub(crate) fn parse_in(
    map: &BTreeMap<String, String>,
    namespace: &str,
) -> (Result<Annotations, Vec<String>>, Vec<String>) {
    let mut r = Reader::new(map, namespace);
    let mut out = Annotations {
        ssl_redirect: r.bool("ssl-redirect").unwrap_or(true),
        force_ssl_redirect: r.bool("force-ssl-redirect").unwrap_or(false),
        ..Annotations::default()
    };
    rewrite::parse(&mut r, &mut out);
    redirect::parse(&mut r, &mut out);
    access::parse(&mut r, &mut out);
    cors::parse(&mut r, &mut out);
    limits::parse(&mut r, &mut out);
    auth::parse(&mut r, &mut out);
    out.upstream = upstream::parse(&mut r);
    out.canary = canary::parse(&mut r);
    out.references = references(map, &mut r);
    unsupported::check(map, &mut r);
    let Reader {
        errors, warnings, ..
    } = r;
    if errors.is_empty() {
        (Ok(out), warnings)
    } else {
        (Err(errors), warnings)
    }
}

/// The aliases of `hookway.dev/plugins` (comma-separated, each a GatewayPlugin name).
fn references(map: &BTreeMap<String, String>, r: &mut Reader<'_>) -> Vec<String> {
    let Some(value) = map.get(PLUGINS) else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for alias in value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let valid = alias.len() <= 253
            && alias
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            r.errors.push(format!(
                "annotation {PLUGINS}: {alias:?} is not a GatewayPlugin name"
            ));
        } else if seen.insert(alias) {
            out.push(alias.to_string());
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An annotation map from `(name, value)` pairs; names without a `/` get the nginx prefix.
    pub(crate) fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| {
                let k = if k.contains('/') {
                    k.to_string()
                } else {
                    format!("{NGINX}{k}")
                };
                (k, v.to_string())
            })
            .collect()
    }

    /// The parsed annotations, panicking on errors.
    pub(crate) fn ok(pairs: &[(&str, &str)]) -> Annotations {
        match parse(&map(pairs)).0 {
            Ok(a) => a,
            Err(e) => panic!("{pairs:?}: {e:?}"),
        }
    }

    /// The errors of a bad set of annotations.
    pub(crate) fn errors(pairs: &[(&str, &str)]) -> Vec<String> {
        match parse(&map(pairs)).0 {
            Ok(_) => panic!("{pairs:?} accepted"),
            Err(e) => e,
        }
    }

    /// The config of the synthetic plugin `alias`.
    pub(crate) fn config(a: &Annotations, alias: &str) -> Option<serde_json::Value> {
        a.plugins
            .iter()
            .find(|(s, _)| s.alias == alias)
            .map(|(_, c)| c.clone())
    }

    #[test]
    fn plugins_annotation_table() {
        #[rustfmt::skip]
        let cases: &[(&str, Result<Vec<&str>, &str>)] = &[
            ("a", Ok(vec!["a"])),
            (" a , b,,a ", Ok(vec!["a", "b"])),
            ("", Ok(vec![])),
            ("Bad_Name", Err("\"Bad_Name\" is not a GatewayPlugin name")),
        ];
        for (value, want) in cases {
            let got = parse(&map(&[(PLUGINS, value)])).0;
            match (got, want) {
                (Ok(a), Ok(want)) => assert_eq!(a.references, *want, "{value:?}"),
                (Err(e), Err(want)) => assert!(e[0].contains(want), "{value:?}: {e:?}"),
                (got, want) => panic!(
                    "{value:?}: got {:?}, want {want:?}",
                    got.map(|a| a.references)
                ),
            }
        }
    }

    #[test]
    fn reader_values_table() {
        let m = map(&[("b", "yes"), ("n", "12"), ("big", "1000"), ("l", " , ")]);
        let mut r = Reader::new(&m, "default");
        assert_eq!(r.bool("b"), None);
        assert_eq!(r.number("n", 1, 100), Some(12));
        assert_eq!(r.number("big", 1, 100), None);
        assert_eq!(r.list("l"), None);
        assert_eq!(r.bool("missing"), None);
        assert_eq!(r.errors.len(), 3, "{:?}", r.errors);
        assert!(r.errors[0].starts_with("annotation nginx.ingress.kubernetes.io/b: "));
    }
}
