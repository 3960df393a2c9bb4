//! `rewrite-target`, `use-regex`, `upstream-vhost`, `app-root`, `server-alias`.
//!
//! As in ingress-nginx, `rewrite-target` implies `use-regex`: every path of the Ingress becomes
//! a case-insensitive regular expression matched at the start of the path. The rewrite replaces
//! the whole path with the target when the path's regex matches anywhere in it (nginx's
//! `rewrite "(?i)<path>" <target> break;`), `$1`… being the path's capture groups; the query
//! string is kept.

use super::{Annotations, Reader};

pub(super) fn parse(r: &mut Reader<'_>, out: &mut Annotations) {
    out.regex = r.bool("use-regex").unwrap_or(false);
    if let Some(target) = r.string("rewrite-target") {
        match replacement(&target) {
            Ok(t) => {
                out.rewrite_target = Some(t);
                out.regex = true;
            }
            Err(e) => r.error("rewrite-target", e),
        }
    }
    if let Some(host) = r.string("upstream-vhost") {
        if host.contains('$') {
            r.error("upstream-vhost", "nginx variables are not supported");
        } else if host.parse::<http::uri::Authority>().is_err() || host.contains('@') {
            r.error("upstream-vhost", format!("{host:?} is not a host name"));
        } else {
            out.upstream_vhost = Some(host);
        }
    }
    if let Some(root) = r.string("app-root") {
        if !root.starts_with('/') || root.parse::<http::uri::PathAndQuery>().is_err() {
            r.error(
                "app-root",
                format!("{root:?} is not a path starting with /"),
            );
        } else {
            out.app_root = Some(root);
        }
    }
    if let Some(aliases) = r.list("server-alias") {
        for alias in aliases {
            let host = alias.to_ascii_lowercase();
            if crate::compiler::valid_host(&host) {
                out.server_alias.push(host);
            } else {
                r.error("server-alias", format!("{alias:?} is not a host name"));
            }
        }
    }
}

/// The Rust-regex replacement for an nginx rewrite target: `$1` → `${1}` (so `$1abc` stays
/// group 1 followed by `abc`); nginx variables (`$host`, `$uri`…) are refused.
pub(crate) fn replacement(target: &str) -> Result<String, String> {
    let mut out = String::with_capacity(target.len() + 8);
    let mut chars = target.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        if digits.is_empty() {
            return Err(format!(
                "{target:?}: only capture groups ($1, $2 …) are supported, not nginx variables"
            ));
        }
        out.push_str(&format!("${{{digits}}}"));
    }
    if !out.starts_with('/') && !out.starts_with("${") {
        return Err(format!("{target:?} must start with / or a capture group"));
    }
    Ok(out)
}

/// The `regex_uri` pattern of `path` for the rewrite: the whole path is replaced when the
/// path's regex matches anywhere in it, as nginx's `rewrite` does.
pub(crate) fn rewrite_pattern(path: &str) -> String {
    format!("(?i)^.*?(?:{path}).*$")
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors, ok};
    use super::*;

    #[test]
    fn replacement_table() {
        #[rustfmt::skip]
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("/", Ok("/")),
            ("/$2", Ok("/${2}")),
            ("/v2/$1abc/$12", Ok("/v2/${1}abc/${12}")),
            ("$1", Ok("${1}")),
            ("/$host/x", Err("not nginx variables")),
            ("/a$", Err("not nginx variables")),
            ("v2", Err("must start with /")),
        ];
        for (target, want) in cases {
            match (replacement(target), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{target}"),
                (Err(e), Err(want)) => assert!(e.contains(want), "{target}: {e}"),
                (got, want) => panic!("{target}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn rewrite_pattern_replaces_the_whole_path_like_nginx() {
        #[rustfmt::skip]
        let cases = [
            ("/something(/|$)(.*)", "/${2}", "/something/new", "/new"),
            ("/something(/|$)(.*)", "/${2}", "/something", "/"),
            ("/SOMETHING(/|$)(.*)", "/${2}", "/something/a/b", "/a/b"),
            ("/api", "/", "/api/users", "/"),
            ("/api/(v[0-9]+)/(.*)", "/${2}?v=${1}", "/api/v2/x", "/x?v=v2"),
        ];
        for (path, target, input, want) in cases {
            let re = regex::Regex::new(&rewrite_pattern(path)).unwrap();
            assert_eq!(re.replace_all(input, target), want, "{path} on {input}");
        }
    }

    #[test]
    fn rewrite_annotations_table() {
        let a = ok(&[("rewrite-target", "/$1")]);
        assert!(a.regex, "rewrite-target implies use-regex");
        assert_eq!(a.rewrite_target.as_deref(), Some("/${1}"));
        assert!(ok(&[("use-regex", "true")]).regex);
        assert!(!ok(&[("use-regex", "false")]).regex);
        assert_eq!(
            ok(&[("app-root", "/app")]).app_root.as_deref(),
            Some("/app")
        );
        assert_eq!(
            ok(&[("server-alias", "a.example.com, B.example.com")]).server_alias,
            vec!["a.example.com", "b.example.com"]
        );
        assert_eq!(
            ok(&[("upstream-vhost", "internal.svc")])
                .upstream_vhost
                .as_deref(),
            Some("internal.svc")
        );
        #[rustfmt::skip]
        let bad: &[(&str, &str, &str)] = &[
            ("use-regex", "yes", "use-regex: \"yes\" is not \"true\" or \"false\""),
            ("rewrite-target", "/$uri", "rewrite-target: \"/$uri\": only capture groups"),
            ("app-root", "app", "app-root: \"app\" is not a path"),
            ("server-alias", "bad host", "server-alias: \"bad host\" is not a host name"),
            ("upstream-vhost", "$host", "upstream-vhost: nginx variables"),
        ];
        for (name, value, want) in bad {
            let e = errors(&[(name, value)]);
            assert!(e[0].contains(want), "{name}={value}: {e:?}");
        }
    }
}
