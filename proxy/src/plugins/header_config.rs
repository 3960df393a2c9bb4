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
