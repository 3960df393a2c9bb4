//! Header names and values from plugin configs, parsed once at build time so nothing can fail
//! per request. Errors name the config field (`request.set.X-Foo: ...`).

use http::{HeaderName, HeaderValue};

/// Parses a header name written in a config at `field`.
pub(crate) fn name(field: &str, name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{field}: {name:?} is not a valid header name"))
}

/// Parses a header value written in a config at `field`.
pub(crate) fn value(field: &str, value: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(value)
        .map_err(|_| format!("{field}: {value:?} is not a valid header value (visible ASCII only)"))
}

/// Parses a `name: value` map written at `field`; names are case-insensitive, so two keys
/// differing only in case are refused.
pub(crate) fn pairs<'a>(
    field: &str,
    map: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for (k, v) in map {
        let at = format!("{field}.{k}");
        let n = name(&at, k)?;
        if out.iter().any(|(seen, _)| *seen == n) {
            return Err(format!(
                "{at}: header given twice (names are case-insensitive)"
            ));
        }
        out.push((n, value(&at, v)?));
    }
    Ok(out)
}

/// Whether `name` is a hop-by-hop field (one the upstream call removes from a request head:
/// `Connection`, `Keep-Alive`, `Proxy-Authenticate`, `Proxy-Authorization`,
/// `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`) or `Host`: a plugin
/// that changes one of these in a request cannot [keep them](crate::plugin::Plugin::keeps_hop_by_hop).
pub(crate) fn is_hop_by_hop_or_host(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderName, HeaderValue};

    use super::is_hop_by_hop_or_host;
    use crate::upstream::headers::remove_hop_by_hop;

    /// The list agrees with what the upstream call removes (`Host` aside, which it keeps).
    #[test]
    fn hop_by_hop_names_are_those_the_upstream_removes() {
        let names = [
            "connection",
            "keep-alive",
            "proxy-authenticate",
            "proxy-authorization",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "host",
            "x-env",
            "accept",
            "authorization",
            "content-length",
            "cookie",
            "forwarded",
            "x-forwarded-for",
            "via",
            "proxy-status",
            "strict-transport-security",
        ];
        for name in names {
            let name = HeaderName::from_static(name);
            let mut headers = HeaderMap::new();
            headers.insert(name.clone(), HeaderValue::from_static("x"));
            remove_hop_by_hop(&mut headers, false);
            let removed = !headers.contains_key(&name);
            assert_eq!(
                is_hop_by_hop_or_host(&name),
                removed || name == http::header::HOST,
                "{name}"
            );
        }
    }
}
