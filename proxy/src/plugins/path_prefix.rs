//! Replacing a matched path prefix (the Gateway API's `ReplacePrefixMatch`), shared by
//! `request_redirect` and `proxy_rewrite`.

/// `path` with its leading `prefix` (matched by whole segments) replaced by `with`. A path the
/// prefix does not match is returned unchanged. One slash is kept between the replacement and
/// the rest: `/foo` → `/xyz/` on `/foo/bar` gives `/xyz/bar`; `/foo` → `/` on `/foo` gives `/`.
pub fn replace(path: &str, prefix: &str, with: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() && path == "/" {
        return if with.is_empty() {
            "/".into()
        } else {
            with.to_string()
        };
    }
    let Some(rest) = path.strip_prefix(prefix) else {
        return path.to_string();
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return path.to_string();
    }
    let head = with.trim_end_matches('/');
    let out = match (head.is_empty(), rest.is_empty()) {
        (true, true) => "/".to_string(),
        (_, true) if with.ends_with('/') && with.len() > 1 => format!("{head}/"),
        _ => format!("{head}{rest}"),
    };
    if out.starts_with('/') {
        out
    } else {
        format!("/{out}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replace_prefix_table() {
        // (path, prefix, replacement, expected) — cases from the Gateway API spec and conformance.
        let cases = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "/", "/bar"),
            ("/foo", "/foo", "/", "/"),
            ("/strip-prefix/three", "/strip-prefix", "/", "/three"),
            ("/prefix/one/two", "/prefix/one", "/one", "/one/two"),
            ("/foobar", "/foo", "/xyz", "/foobar"),
            ("/", "/", "/x", "/x"),
            ("/a", "/", "/x", "/x/a"),
        ];
        for (path, prefix, with, want) in cases {
            assert_eq!(
                super::replace(path, prefix, with),
                want,
                "{path} {prefix} {with}"
            );
        }
    }
}
