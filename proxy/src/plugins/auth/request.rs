//! Reading and removing credentials in a request: headers, query parameters, cookies.

use http::header::{self, HeaderMap};
use http::uri::{PathAndQuery, Uri};

/// The value of query parameter `name` (not percent-decoded: credentials are plain tokens).
pub fn query_param<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Removes every `name=...` query parameter from `uri`.
pub fn remove_query_param(uri: &mut Uri, name: &str) {
    let Some(query) = uri.query() else { return };
    if query_param(uri, name).is_none() {
        return;
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect();
    let path_and_query = if kept.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = PathAndQuery::try_from(path_and_query).ok();
    // Rebuilding from valid parts cannot fail; keep the original if it somehow does.
    if let Ok(new) = Uri::from_parts(parts) {
        *uri = new;
    }
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// Removes cookie `name` from the `Cookie` headers (dropping headers left empty).
pub fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    if cookie(headers, name).is_none() {
        return;
    }
    let rest: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.split_once('=').map_or(*c, |(k, _)| k) != name)
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if !rest.is_empty() {
        if let Ok(v) = rest.join("; ").parse() {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// The token after a case-insensitive `scheme ` prefix (e.g. `Bearer`).
pub fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.trim().split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_read_and_removed() {
        let mut uri: Uri = "/a/b?x=1&apikey=secret&y=2".parse().unwrap();
        assert_eq!(query_param(&uri, "apikey"), Some("secret"));
        remove_query_param(&mut uri, "apikey");
        assert_eq!(uri.to_string(), "/a/b?x=1&y=2");
        let mut uri: Uri = "/p?apikey=s".parse().unwrap();
        remove_query_param(&mut uri, "apikey");
        assert_eq!(uri.to_string(), "/p");
        let mut uri: Uri = "http://h:8/p?a=1".parse().unwrap();
        remove_query_param(&mut uri, "zz");
        assert_eq!(uri.to_string(), "http://h:8/p?a=1");
    }

    #[test]
    fn cookies_read_and_removed() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; jwt=tok".parse().unwrap());
        h.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&h, "jwt"), Some("tok"));
        remove_cookie(&mut h, "jwt");
        assert_eq!(h[header::COOKIE], "a=1; b=2");
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "jwt=tok".parse().unwrap());
        remove_cookie(&mut h, "jwt");
        assert!(h.get(header::COOKIE).is_none());
    }

    #[test]
    fn schemes() {
        assert_eq!(strip_scheme("Bearer abc", "bearer"), Some("abc"));
        assert_eq!(strip_scheme("Basic abc", "bearer"), None);
        assert_eq!(strip_scheme("abc", "bearer"), None);
    }
}
