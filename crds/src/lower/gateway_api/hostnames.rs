//! Host names: validation and the intersection of a listener's hostname with a route's
//! hostnames (Gateway API spec, `HTTPRoute.spec.hostnames`, `GRPCRoute.spec.hostnames`).

/// Whether `pattern` (exact or `*.` wildcard) matches host `host` (exact or wildcard): a
/// wildcard matches one or more labels in front of its suffix, never the suffix itself.
pub(crate) fn covers(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        None => pattern == host,
        Some(suffix) => {
            let name = host.strip_prefix("*.").unwrap_or(host);
            if host.starts_with("*.") {
                // A wildcard is covered by a wildcard whose suffix is its own or shorter.
                name == suffix || name.ends_with(&format!(".{suffix}"))
            } else {
                name.ends_with(&format!(".{suffix}"))
            }
        }
    }
}

/// The hosts a route serves through a listener: `None` means every host; `Some(empty)` means
/// no intersection (the route does not attach to that listener).
pub(crate) fn intersect(listener: Option<&str>, route: &[String]) -> Option<Vec<String>> {
    let route: Vec<String> = route.iter().map(|h| h.to_ascii_lowercase()).collect();
    let Some(listener) = listener.map(str::to_ascii_lowercase) else {
        return (!route.is_empty()).then_some(route);
    };
    if route.is_empty() {
        return Some(vec![listener]);
    }
    let mut out: Vec<String> = Vec::new();
    for host in &route {
        let common = if covers(&listener, host) {
            Some(host.clone())
        } else if covers(host, &listener) {
            Some(listener.clone())
        } else {
            None
        };
        if let Some(h) = common.filter(|h| !out.contains(h)) {
            out.push(h);
        }
    }
    Some(out)
}

/// Whether two host sets (`None` = every host) share a host: some host of one covers, or is
/// covered by, some host of the other.
pub(crate) fn overlap(a: &Option<Vec<String>>, b: &Option<Vec<String>>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return true;
    };
    a.iter()
        .any(|x| b.iter().any(|y| x == y || covers(x, y) || covers(y, x)))
}

/// Union of host sets (`None` = every host absorbs everything).
pub(crate) fn union(a: Option<Vec<String>>, b: Option<Vec<String>>) -> Option<Vec<String>> {
    let (mut a, b) = (a?, b?);
    for h in b {
        if !a.contains(&h) {
            a.push(h);
        }
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn intersection_follows_the_spec() {
        // (listener, route hostnames, expected)
        type Case<'a> = (Option<&'a str>, &'a [&'a str], Option<&'a [&'a str]>);
        let cases: &[Case<'_>] = &[
            (None, &[], None),
            (None, &["a.com"], Some(&["a.com"])),
            (Some("a.com"), &[], Some(&["a.com"])),
            (
                Some("very.specific.com"),
                &[
                    "non.matching.com",
                    "*.nonmatchingwildcard.io",
                    "very.specific.com",
                ],
                Some(&["very.specific.com"]),
            ),
            (
                Some("*.wildcard.io"),
                &[
                    "non.matching.com",
                    "wildcard.io",
                    "foo.wildcard.io",
                    "bar.wildcard.io",
                    "foo.bar.wildcard.io",
                ],
                Some(&["foo.wildcard.io", "bar.wildcard.io", "foo.bar.wildcard.io"]),
            ),
            (
                Some("*.anotherwildcard.io"),
                &["*.anotherwildcard.io"],
                Some(&["*.anotherwildcard.io"]),
            ),
            (
                Some("*.anotherwildcard.io"),
                &["*.io"],
                Some(&["*.anotherwildcard.io"]),
            ),
            (
                Some("very.specific.com"),
                &["*.specific.com"],
                Some(&["very.specific.com"]),
            ),
            (Some("*.a.io"), &["*.b.a.io"], Some(&["*.b.a.io"])),
            (Some("a.io"), &["*.a.io"], Some(&[])),
            (Some("*.a.io"), &["a.io"], Some(&[])),
            (Some("A.COM"), &["a.com"], Some(&["a.com"])),
        ];
        for (listener, route, want) in cases {
            let got = intersect(*listener, &s(route));
            assert_eq!(got, want.map(s), "listener {listener:?}, route {route:?}");
        }
    }

    #[test]
    fn overlap_of_host_sets() {
        type Case<'a> = (Option<&'a [&'a str]>, Option<&'a [&'a str]>, bool);
        let cases: &[Case<'_>] = &[
            (None, Some(&["a.com"]), true),
            (Some(&["a.com"]), Some(&["a.com"]), true),
            (Some(&["a.com"]), Some(&["b.com"]), false),
            (Some(&["*.a.com"]), Some(&["x.a.com"]), true),
            (Some(&["x.a.com"]), Some(&["*.a.com"]), true),
            (Some(&["*.a.com"]), Some(&["a.com"]), false),
            (Some(&["*.a.com"]), Some(&["*.b.a.com"]), true),
        ];
        for (a, b, want) in cases {
            assert_eq!(overlap(&a.map(s), &b.map(s)), *want, "{a:?} {b:?}");
        }
    }

    #[test]
    fn union_of_any_is_any() {
        assert_eq!(union(None, Some(s(&["a"]))), None);
        assert_eq!(
            union(Some(s(&["a"])), Some(s(&["b", "a"]))),
            Some(s(&["a", "b"]))
        );
    }
}
