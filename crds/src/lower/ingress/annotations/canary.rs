//! `canary: "true"` with `canary-weight` (+ `canary-weight-total`), `canary-by-header`
//! (+ `canary-by-header-value`) and `canary-by-cookie`. A canary Ingress serves nothing itself:
//! its backend is added to the main Ingress of the same namespace, host and path as a
//! route-level `traffic_splitting` instance. Requests whose header has the value (default
//! `always`) or whose cookie is `always` go to the canary, and `weight` % of the others.
//! (ingress-nginx's `never` value, which keeps a request off the canary whatever the weight, is
//! not expressible: such requests take part in the weighted split.)

use serde_json::json;

use super::Reader;

/// A canary Ingress's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Canary {
    /// Percentage of requests (0-100).
    pub weight: u64,
    /// Header name and the values that select the canary.
    pub header: Option<(String, Vec<String>)>,
    /// Cookie name (value `always` selects the canary).
    pub cookie: Option<String>,
}

impl Canary {
    /// The `traffic_splitting` config sending this canary's share to `service`; `None` when
    /// it sends nothing.
    pub fn config(&self, service: &str) -> Option<serde_json::Value> {
        if self.weight == 0 && self.header.is_none() && self.cookie.is_none() {
            return None;
        }
        let mut c = json!({"service": service, "weight": self.weight});
        if let Some((name, values)) = &self.header {
            c["header"] = json!({"name": name, "values": values});
        }
        if let Some(name) = &self.cookie {
            c["cookie"] = json!({"name": name, "values": ["always"]});
        }
        Some(c)
    }
}

pub(super) fn parse(r: &mut Reader<'_>) -> Option<Canary> {
    if r.bool("canary") != Some(true) {
        return None;
    }
    let total = r.number("canary-weight-total", 1, 1_000_000).unwrap_or(100);
    let weight = r.number("canary-weight", 0, total).unwrap_or(0);
    let header = r.string("canary-by-header").map(|name| {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            r.error("canary-by-header", format!("{name:?} is not a header name"));
        }
        let value = r
            .string("canary-by-header-value")
            .unwrap_or_else(|| "always".into());
        (name, vec![value])
    });
    if r.raw("canary-by-header-pattern").is_some() {
        r.warn(
            "canary-by-header-pattern",
            "not translated: only exact header values select the canary",
        );
    }
    let cookie = r.string("canary-by-cookie");
    Some(Canary {
        weight: (weight * 100 + total / 2) / total,
        header,
        cookie,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors, ok};
    use serde_json::json;

    type Pairs<'a> = &'a [(&'a str, &'a str)];

    #[test]
    fn canary_table() {
        #[rustfmt::skip]
        let cases: &[(Pairs, Option<serde_json::Value>)] = &[
            (&[("canary", "true"), ("canary-weight", "20")], Some(json!({"service": "s", "weight": 20}))),
            (&[("canary", "true"), ("canary-weight", "1"), ("canary-weight-total", "4")], Some(json!({"service": "s", "weight": 25}))),
            (&[("canary", "true"), ("canary-by-header", "X-Canary")], Some(json!({"service": "s", "weight": 0, "header": {"name": "X-Canary", "values": ["always"]}}))),
            (&[("canary", "true"), ("canary-by-header", "X-Canary"), ("canary-by-header-value", "yes")], Some(json!({"service": "s", "weight": 0, "header": {"name": "X-Canary", "values": ["yes"]}}))),
            (&[("canary", "true"), ("canary-by-cookie", "beta")], Some(json!({"service": "s", "weight": 0, "cookie": {"name": "beta", "values": ["always"]}}))),
            (&[("canary", "true")], None),
        ];
        for (pairs, want) in cases {
            let canary = ok(pairs).canary.expect("a canary");
            assert_eq!(canary.config("s"), *want, "{pairs:?}");
        }
        assert_eq!(
            ok(&[("canary-weight", "20")]).canary,
            None,
            "needs canary: true"
        );
        #[rustfmt::skip]
        let bad: &[(&[(&str, &str)], &str)] = &[
            (&[("canary", "yes")], "canary: \"yes\""),
            (&[("canary", "true"), ("canary-weight", "101")], "canary-weight: \"101\""),
            (&[("canary", "true"), ("canary-by-header", "bad header")], "canary-by-header: \"bad header\""),
        ];
        for (pairs, want) in bad {
            let e = errors(pairs);
            assert!(e.iter().any(|e| e.contains(want)), "{pairs:?}: {e:?}");
        }
    }
}
