//! The synthetic Service's settings: `proxy-connect-timeout` (→ `timeout.connect`),
//! `proxy-read-timeout` (→ `timeout.request`, the wait for the response head), `backend-protocol`
//! (→ `scheme`). `proxy-send-timeout` has no hookway equivalent (warning). `HTTPS` backends are
//! not verified, as ingress-nginx does not verify them by default. `GRPC`/`GRPCS` need HTTP/2 to
//! upstreams, which is being added: until then they are served as HTTP/1.1 over `http`/`https`
//! with an `UnsupportedValue` warning.

use super::Reader;
use crate::api::service::Scheme;

/// How the synthetic Service talks to the backend.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Upstream {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `timeout.connect` (`5s`).
    pub connect: Option<String>,
    /// `timeout.request` (`60s`).
    pub request: Option<String>,
}

pub(super) fn parse(r: &mut Reader<'_>) -> Upstream {
    let mut out = Upstream {
        connect: seconds(r, "proxy-connect-timeout"),
        request: seconds(r, "proxy-read-timeout"),
        ..Upstream::default()
    };
    if r.raw("proxy-send-timeout").is_some() {
        r.warn(
            "proxy-send-timeout",
            "ignored: hookway bounds the wait for the response head (proxy-read-timeout), not each write",
        );
    }
    if let Some(p) = r.raw("backend-protocol") {
        out.scheme = match p.to_ascii_uppercase().as_str() {
            "HTTP" => Scheme::Http,
            "HTTPS" => Scheme::Https,
            "GRPC" | "GRPCS" | "AUTO_HTTP" => {
                let scheme = if p.eq_ignore_ascii_case("GRPCS") {
                    Scheme::Https
                } else {
                    Scheme::Http
                };
                r.warn(
                    "backend-protocol",
                    format!("UnsupportedValue: {p:?} needs HTTP/2 to upstreams, not available yet; served as HTTP/1.1"),
                );
                scheme
            }
            _ => {
                r.error(
                    "backend-protocol",
                    format!("{p:?} is not HTTP, HTTPS, GRPC, GRPCS or AUTO_HTTP"),
                );
                Scheme::Http
            }
        };
    }
    out
}

/// A timeout in seconds (`"60"` or `"60s"`), as a hookway duration.
fn seconds(r: &mut Reader<'_>, name: &str) -> Option<String> {
    let v = r.raw(name)?;
    let digits = v.strip_suffix('s').unwrap_or(v);
    match digits.parse::<u32>() {
        Ok(n) if (1..=86_400).contains(&n) => Some(format!("{n}s")),
        _ => {
            r.error(
                name,
                format!("{v:?} is not a number of seconds from 1 to 86400"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors, map, ok};
    use super::*;

    #[test]
    fn upstream_table() {
        let a = ok(&[
            ("proxy-connect-timeout", "3"),
            ("proxy-read-timeout", "120s"),
            ("backend-protocol", "HTTPS"),
        ]);
        assert_eq!(
            a.upstream,
            Upstream {
                scheme: Scheme::Https,
                connect: Some("3s".into()),
                request: Some("120s".into())
            }
        );
        assert_eq!(ok(&[]).upstream, Upstream::default());
        let (a, warnings) = super::super::parse(&map(&[("backend-protocol", "GRPC")]));
        assert_eq!(a.unwrap().upstream.scheme, Scheme::Http);
        assert!(warnings[0].contains("UnsupportedValue"), "{warnings:?}");
        #[rustfmt::skip]
        let bad: &[(&str, &str, &str)] = &[
            ("proxy-connect-timeout", "0", "proxy-connect-timeout: \"0\""),
            ("proxy-read-timeout", "1m", "proxy-read-timeout: \"1m\""),
            ("backend-protocol", "FCGI", "backend-protocol: \"FCGI\""),
        ];
        for (name, value, want) in bad {
            let e = errors(&[(name, value)]);
            assert!(e[0].contains(want), "{name}={value}: {e:?}");
        }
    }
}
