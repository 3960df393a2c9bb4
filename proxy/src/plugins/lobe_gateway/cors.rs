//! `cors_origins`: which browser origins get CORS headers on the gateway's answers. None by
//! default (no `Access-Control-Allow-Origin` at all); `"*"` must be listed to allow any origin.
//! A listed origin is echoed back with `Vary: Origin`.

use http::{header, HeaderMap, HeaderValue};

/// The parsed `cors_origins`.
#[derive(Debug, Clone, Default)]
pub struct CorsOrigins {
    any: bool,
    origins: Vec<String>,
}

impl CorsOrigins {
    /// Parses the list: `*` or `scheme://host[:port]` origins.
    pub fn parse(origins: &[String]) -> Result<Self, String> {
        let mut parsed = Self::default();
        for (i, o) in origins.iter().enumerate() {
            if o == "*" {
                parsed.any = true;
                continue;
            }
            let uri: http::Uri = o
                .parse()
                .map_err(|_| format!("cors_origins[{i}]: {o:?} is not an origin"))?;
            let bare = uri.path_and_query().is_none_or(|p| p.as_str() == "/") && !o.ends_with('/');
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() || !bare
            {
                return Err(format!(
                    "cors_origins[{i}]: {o:?} is not an origin (scheme://host[:port])"
                ));
            }
            parsed.origins.push(o.to_ascii_lowercase());
        }
        Ok(parsed)
    }

    /// The `Access-Control-Allow-Origin` value for a request with `headers`, if any.
    pub fn allow_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?.to_ascii_lowercase();
        self.origins.contains(&text).then(|| origin.clone())
    }

    /// Adds the CORS headers to an answer to a request with `request`.
    pub fn apply(&self, request: &HeaderMap, answer: &mut HeaderMap) {
        if !self.any {
            answer.append(header::VARY, HeaderValue::from_static("origin"));
        }
        if let Some(value) = self.allow_origin(request) {
            answer.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_origins_are_allowed() {
        let with = |origin: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
            h
        };
        let none = CorsOrigins::default();
        assert_eq!(none.allow_origin(&with("https://chat.example")), None);
        let listed = CorsOrigins::parse(&["https://chat.example".into()]).unwrap();
        assert_eq!(
            listed.allow_origin(&with("https://chat.example")).unwrap(),
            "https://chat.example"
        );
        assert_eq!(listed.allow_origin(&with("https://evil.example")), None);
        assert_eq!(listed.allow_origin(&HeaderMap::new()), None);
        let any = CorsOrigins::parse(&["*".into()]).unwrap();
        assert_eq!(any.allow_origin(&HeaderMap::new()).unwrap(), "*");
        for bad in ["chat.example", "https://chat.example/path", "ftp://x"] {
            assert!(CorsOrigins::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
