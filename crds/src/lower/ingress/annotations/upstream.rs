//! The synthetic Service's settings: `proxy-connect-timeout` (→ `timeout.connect`),
//! `proxy-read-timeout` (→ `timeout.request`, the wait for the response head), `backend-protocol`
//! (→ `scheme` and `http2`). `proxy-send-timeout` has no hookway equivalent (warning). `HTTPS`
//! backends are not verified, as ingress-nginx does not verify them by default. `GRPC` is
//! prior-knowledge HTTP/2 (h2c, `http2: always`), `GRPCS` HTTP/2 over TLS (ALPN `h2` only),
//! `AUTO_HTTP` plain HTTP with `http2: auto` (h2c when the port's `appProtocol` says so).

use super::Reader;
use crate::api::service::{Http2, Scheme};

/// How the synthetic Service talks to the backend.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Upstream {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// HTTP/2 to the backend (`always` for gRPC).
    pub http2: Http2,
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
            "GRPC" => {
                out.http2 = Http2::Always;
                Scheme::Http
            }
            "GRPCS" => {
                out.http2 = Http2::Always;
                Scheme::Https
            }
            "AUTO_HTTP" => Scheme::Http,
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
                http2: Http2::Auto,
                connect: Some("3s".into()),
                request: Some("120s".into())
            }
        );
        assert_eq!(ok(&[]).upstream, Upstream::default());
        for (protocol, scheme, http2) in [
            ("GRPC", Scheme::Http, Http2::Always),
            ("grpcs", Scheme::Https, Http2::Always),
            ("AUTO_HTTP", Scheme::Http, Http2::Auto),
            ("HTTP", Scheme::Http, Http2::Auto),
        ] {
            let (a, warnings) = super::super::parse(&map(&[("backend-protocol", protocol)]));
            let upstream = a.unwrap().upstream;
            assert_eq!(
                (upstream.scheme, upstream.http2),
                (scheme, http2),
                "{protocol}"
            );
            assert!(warnings.is_empty(), "{protocol}: {warnings:?}");
        }
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
