//! Ingress paths → hookway path matches.
//!
//! | pathType                 | hookway                                                     |
//! |--------------------------|-------------------------------------------------------------|
//! | `Exact`                  | `Exact` (always, even in regex mode, like ingress-nginx)    |
//! | `Prefix`                 | `Prefix`, by whole segments as the Ingress spec says (`/foo` matches `/foo` and `/foo/x`, not `/foox`; a trailing `/` is ignored) |
//! | `ImplementationSpecific` | `Prefix` as above                                           |
//! | regex mode (`use-regex`, `rewrite-target`, on any Ingress of the host), `Prefix` or `ImplementationSpecific` | `Regex` `(?i)<path>.*`: case-insensitive, matched at the start of the path, as nginx's `location ~* ^<path>` |

use crate::api::route::{PathMatch, PathMatchType};

/// The hookway path match of an Ingress path.
pub(crate) fn lower(path: Option<&str>, path_type: &str, regex: bool) -> Result<PathMatch, String> {
    let value = path.filter(|p| !p.is_empty()).unwrap_or("/");
    let kind = match path_type {
        "Exact" => PathMatchType::Exact,
        "Prefix" | "ImplementationSpecific" if regex => PathMatchType::Regex,
        "Prefix" | "ImplementationSpecific" => PathMatchType::Prefix,
        other => {
            return Err(format!(
                "pathType {other:?} is not Exact, Prefix or ImplementationSpecific"
            ))
        }
    };
    if kind != PathMatchType::Regex && !value.starts_with('/') {
        return Err(format!("path {value:?} must start with /"));
    }
    let value = match kind {
        PathMatchType::Regex => format!("(?i){value}.*"),
        PathMatchType::Prefix if value.len() > 1 => value.trim_end_matches('/').to_string(),
        _ => value.to_string(),
    };
    let value = if value.is_empty() { "/".into() } else { value };
    Ok(PathMatch { kind, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Want<'a> = Result<(PathMatchType, &'a str), &'a str>;

    #[test]
    fn path_table() {
        use PathMatchType::*;
        #[rustfmt::skip]
        let cases: &[(Option<&str>, &str, bool, Want)] = &[
            (Some("/foo"), "Exact", false, Ok((Exact, "/foo"))),
            (Some("/foo/"), "Exact", false, Ok((Exact, "/foo/"))),
            (Some("/foo"), "Exact", true, Ok((Exact, "/foo"))),
            (Some("/foo"), "Prefix", false, Ok((Prefix, "/foo"))),
            (Some("/foo/"), "Prefix", false, Ok((Prefix, "/foo"))),
            (Some("//"), "Prefix", false, Ok((Prefix, "/"))),
            (Some("/"), "Prefix", false, Ok((Prefix, "/"))),
            (None, "ImplementationSpecific", false, Ok((Prefix, "/"))),
            (Some("/app"), "ImplementationSpecific", false, Ok((Prefix, "/app"))),
            (Some("/api(/|$)(.*)"), "ImplementationSpecific", true, Ok((Regex, "(?i)/api(/|$)(.*).*"))),
            (Some("/api"), "Prefix", true, Ok((Regex, "(?i)/api.*"))),
            (Some("foo"), "Prefix", false, Err("must start with /")),
            (Some("/x"), "Regex", false, Err("pathType \"Regex\"")),
        ];
        for (path, kind, regex, want) in cases {
            let got = lower(*path, kind, *regex).map(|p| (p.kind, p.value));
            match (got, want) {
                (Ok(got), Ok((k, v))) => assert_eq!(got, (*k, v.to_string()), "{path:?} {kind}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{path:?} {kind}: {e}"),
                (got, want) => panic!("{path:?} {kind}: got {got:?}, want {want:?}"),
            }
        }
    }
}
