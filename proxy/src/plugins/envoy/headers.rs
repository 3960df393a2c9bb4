//! Envoy's header maps and header mutations ↔ `http` types.
//!
//! Values go out in both `value` (when UTF-8) and `raw_value` (servers read either, by Envoy
//! version); a value coming back is `raw_value` when set, else `value`. Pseudo-headers
//! (`:path`, `:authority`, `:method`, `:status`) are returned to the caller, which applies them
//! to the request or response head.

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{
    HeaderMap as PbHeaderMap, HeaderValue as PbHeaderValue, HeaderValueOption,
};
use http::{HeaderMap, HeaderName, HeaderValue};

/// One header for the wire.
pub(crate) fn pb_header(key: &str, value: &[u8]) -> PbHeaderValue {
    PbHeaderValue {
        key: key.to_string(),
        value: std::str::from_utf8(value).unwrap_or_default().to_string(),
        raw_value: value.to_vec(),
    }
}

/// `pseudo` (already `:`-named) then every header of `headers`.
pub(crate) fn pb_header_map(pseudo: &[(&str, &str)], headers: &HeaderMap) -> PbHeaderMap {
    let mut out = Vec::with_capacity(pseudo.len() + headers.len());
    out.extend(pseudo.iter().map(|(k, v)| pb_header(k, v.as_bytes())));
    out.extend(
        headers
            .iter()
            .map(|(k, v)| pb_header(k.as_str(), v.as_bytes())),
    );
    PbHeaderMap { headers: out }
}

/// The value a server wrote.
pub(crate) fn value_of(h: &PbHeaderValue) -> &[u8] {
    if h.raw_value.is_empty() {
        h.value.as_bytes()
    } else {
        &h.raw_value
    }
}

/// How a set header is applied when the option says nothing explicit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DefaultAction {
    /// `ext_authz`'s OK headers: Envoy documents `append` as defaulting to false there.
    Overwrite,
    /// `ext_proc`: the `append_action` enum's own default, `APPEND_IF_EXISTS_OR_ADD`.
    AppendAction,
}

/// A pseudo-header a mutation sets: `(":path", value)`.
pub(crate) type PseudoSet = (String, Bytes);

/// Applies `options` to `headers` (Envoy's `HeaderValueOption` semantics: the deprecated
/// `append` when set, else `append_action`); pseudo-headers are returned in order. A bad
/// header name or value is an error (a malformed reply).
pub(crate) fn apply_options(
    headers: &mut HeaderMap,
    options: &[HeaderValueOption],
    default: DefaultAction,
) -> Result<Vec<PseudoSet>, String> {
    let mut pseudo = Vec::new();
    for option in options {
        let Some(header) = &option.header else {
            return Err("a header option without a header".into());
        };
        let value = value_of(header);
        if value.is_empty() && !option.keep_empty_value {
            continue;
        }
        let key = header.key.to_ascii_lowercase();
        if key.starts_with(':') {
            pseudo.push((key, Bytes::copy_from_slice(value)));
            continue;
        }
        let name = HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| format!("invalid header name {:?}", header.key))?;
        let value = HeaderValue::from_bytes(value)
            .map_err(|_| format!("invalid value for header {:?}", header.key))?;
        #[allow(deprecated)]
        let action = match (option.append.as_ref().map(|b| b.value), default) {
            (Some(true), _) => HeaderAppendAction::AppendIfExistsOrAdd,
            (Some(false), _) => HeaderAppendAction::OverwriteIfExistsOrAdd,
            (None, DefaultAction::Overwrite)
                if option.append_action == HeaderAppendAction::AppendIfExistsOrAdd as i32 =>
            {
                HeaderAppendAction::OverwriteIfExistsOrAdd
            }
            (None, _) => HeaderAppendAction::try_from(option.append_action)
                .map_err(|_| format!("unknown append_action {}", option.append_action))?,
        };
        match action {
            HeaderAppendAction::AppendIfExistsOrAdd => {
                headers.append(name, value);
            }
            HeaderAppendAction::AddIfAbsent => {
                if !headers.contains_key(&name) {
                    headers.insert(name, value);
                }
            }
            HeaderAppendAction::OverwriteIfExistsOrAdd => {
                headers.insert(name, value);
            }
            HeaderAppendAction::OverwriteIfExists => {
                if headers.contains_key(&name) {
                    headers.insert(name, value);
                }
            }
        }
    }
    Ok(pseudo)
}

/// Removes `names` from `headers`; pseudo-headers and `host` cannot be removed (as in Envoy)
/// and are skipped, a bad name is an error.
pub(crate) fn remove(headers: &mut HeaderMap, names: &[String]) -> Result<(), String> {
    for name in names {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with(':') || lower == "host" {
            continue;
        }
        let name = HeaderName::from_bytes(lower.as_bytes())
            .map_err(|_| format!("invalid header name {name:?} to remove"))?;
        headers.remove(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::BoolValue;

    fn option(key: &str, value: &str, append: Option<bool>, action: i32) -> HeaderValueOption {
        #[allow(deprecated)]
        HeaderValueOption {
            header: Some(pb_header(key, value.as_bytes())),
            append: append.map(|value| BoolValue { value }),
            append_action: action,
            keep_empty_value: false,
        }
    }

    fn values(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    /// Each row: the option, the default, the values of `x` afterwards (it starts as `old`).
    #[test]
    fn header_value_option_table() {
        use DefaultAction::{AppendAction, Overwrite};
        let rows: [(HeaderValueOption, DefaultAction, &[&str]); 9] = [
            (option("x", "new", None, 0), AppendAction, &["old", "new"]),
            (option("x", "new", None, 0), Overwrite, &["new"]),
            (
                option("x", "new", Some(true), 0),
                Overwrite,
                &["old", "new"],
            ),
            (option("x", "new", Some(false), 0), AppendAction, &["new"]),
            (option("x", "new", None, 1), AppendAction, &["old"]),
            (option("x", "new", None, 2), AppendAction, &["new"]),
            (option("x", "new", None, 3), Overwrite, &["new"]),
            (option("X", "new", None, 2), AppendAction, &["new"]),
            (option("x", "", None, 2), AppendAction, &["old"]),
        ];
        for (i, (opt, default, want)) in rows.into_iter().enumerate() {
            let mut h = HeaderMap::new();
            h.insert("x", HeaderValue::from_static("old"));
            apply_options(&mut h, &[opt], default).unwrap();
            assert_eq!(values(&h, "x"), want, "row {i}");
        }
        // Absent headers: add-if-absent adds, overwrite-if-exists does not.
        let mut h = HeaderMap::new();
        apply_options(
            &mut h,
            &[option("a", "1", None, 1), option("b", "2", None, 3)],
            DefaultAction::AppendAction,
        )
        .unwrap();
        assert_eq!(values(&h, "a"), ["1"]);
        assert!(h.get("b").is_none());
    }

    #[test]
    fn pseudo_headers_are_returned_and_bad_ones_refused() {
        let mut h = HeaderMap::new();
        let pseudo = apply_options(
            &mut h,
            &[option(":path", "/new?q=1", None, 2)],
            DefaultAction::AppendAction,
        )
        .unwrap();
        assert_eq!(pseudo, [(":path".to_string(), Bytes::from("/new?q=1"))]);
        assert!(apply_options(
            &mut h,
            &[option("bad name", "v", None, 0)],
            DefaultAction::AppendAction
        )
        .is_err());
        assert!(apply_options(
            &mut h,
            &[option("x", "v", None, 9)],
            DefaultAction::AppendAction
        )
        .is_err());
        h.insert("host", HeaderValue::from_static("a"));
        h.insert("y", HeaderValue::from_static("b"));
        remove(&mut h, &["Y".into(), "host".into(), ":path".into()]).unwrap();
        assert!(h.get("y").is_none());
        assert!(h.get("host").is_some());
    }

    #[test]
    fn values_go_out_both_ways_and_come_back_from_either() {
        let mut h = HeaderMap::new();
        h.insert("a", HeaderValue::from_static("1"));
        let map = pb_header_map(&[(":method", "GET")], &h);
        assert_eq!(map.headers[0].key, ":method");
        assert_eq!(map.headers[1].value, "1");
        assert_eq!(map.headers[1].raw_value, b"1");
        let only_value = PbHeaderValue {
            key: "a".into(),
            value: "v".into(),
            raw_value: vec![],
        };
        assert_eq!(value_of(&only_value), b"v");
    }
}
