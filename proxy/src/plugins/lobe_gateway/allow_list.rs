//! `allowed_client_urls`: the URL prefixes a payload's `indexUrl`, and the `api[].url`s of a
//! payload's `manifest`, must fall under before the gateway calls them.
//!
//! A prefix is compared by parts, never as text: same scheme, same host (ASCII
//! case-insensitive), same port (the scheme's default when absent), and a path that starts with
//! the prefix's path at a `/` boundary. So `https://plugins.example/` does not allow
//! `https://plugins.example.evil.test/`, nor `https://plugins.example/v1` allow `/v10`.

use http::Uri;

/// One allowed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Prefix {
    https: bool,
    host: String,
    port: u16,
    path: String,
}

fn parts(url: &str) -> Option<Prefix> {
    let uri: Uri = url.parse().ok()?;
    let https = match uri.scheme_str()? {
        "https" => true,
        "http" => false,
        _ => return None,
    };
    let host = uri.host()?.to_ascii_lowercase();
    if uri.authority()?.as_str().contains('@') {
        return None;
    }
    Some(Prefix {
        https,
        port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
        host,
        path: uri.path().to_string(),
    })
}

/// The parsed `allowed_client_urls`.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    prefixes: Vec<Prefix>,
}

impl AllowList {
    /// Parses every prefix (absolute http(s) URLs without user info).
    pub fn parse(urls: &[String]) -> Result<Self, String> {
        let prefixes = urls
            .iter()
            .enumerate()
            .map(|(i, u)| {
                parts(u).ok_or_else(|| {
                    format!("allowed_client_urls[{i}]: {u:?} is not an absolute http(s) URL")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { prefixes })
    }

    /// Whether no URL is allowed.
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// Whether `url` falls under one of the prefixes.
    pub fn allows(&self, url: &str) -> bool {
        let Some(u) = parts(url) else {
            return false;
        };
        self.prefixes.iter().any(|p| {
            p.https == u.https
                && p.host == u.host
                && p.port == u.port
                && (p.path.ends_with('/') && u.path.starts_with(&p.path)
                    || u.path == p.path
                    || u.path.starts_with(&p.path) && u.path[p.path.len()..].starts_with('/'))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_by_parts() {
        let list = AllowList::parse(&[
            "https://plugins.example/".into(),
            "http://127.0.0.1:8080/v1".into(),
        ])
        .unwrap();
        for (url, allowed) in [
            ("https://plugins.example/index.json", true),
            ("https://PLUGINS.example:443/a/b", true),
            ("https://plugins.example.evil.test/index.json", false),
            ("http://plugins.example/index.json", false),
            ("https://plugins.example:8443/index.json", false),
            ("https://user@plugins.example/index.json", false),
            ("http://127.0.0.1:8080/v1", true),
            ("http://127.0.0.1:8080/v1/index.json", true),
            ("http://127.0.0.1:8080/v10/index.json", false),
            ("http://127.0.0.1:8081/v1/index.json", false),
            ("ftp://plugins.example/x", false),
            ("not a url", false),
        ] {
            assert_eq!(list.allows(url), allowed, "{url}");
        }
        assert!(!AllowList::default().allows("https://plugins.example/"));
        assert!(AllowList::parse(&["/relative".into()])
            .unwrap_err()
            .contains("allowed_client_urls[0]"));
    }
}
