//! Where an Envoy gRPC server is: a hookway Service (its endpoints, plain HTTP/2) or, where a
//! `PlatformPolicy` allows it, a URL (`http://` for HTTP/2 without TLS, `https://` with TLS and
//! ALPN `h2`). One lazily connected tonic channel per endpoint, picked round robin.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;
use tonic::transport::{Channel, Endpoint};

use hookway_crds::snapshot::Scheme;

use crate::plugin::BuildEnv;

/// The gRPC server a plugin talks to: exactly one of `service` and `address`.
#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// A hookway Service (`name`, or `namespace/name` where a grant allows it) whose endpoints
    /// serve gRPC over plain HTTP/2 (h2c).
    #[serde(default)]
    #[schemars(extend("x-hookway-ref" = "service"))]
    pub service: Option<String>,
    /// A URL, `http://host:port` (h2c) or `https://host:port` (TLS): the config chooses where
    /// the proxy connects, so outside the root namespace it needs a `PlatformPolicy`.
    #[serde(default)]
    #[schemars(extend("x-hookway-reaches-network" = true))]
    pub address: Option<String>,
    /// PEM certificates trusted for an `https://` address instead of the system roots.
    #[serde(default)]
    pub tls_ca: Option<String>,
}

impl Target {
    /// Exactly one of `service` / `address`, a parsable URL, a usable `tls_ca`.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.service, &self.address) {
            (Some(_), Some(_)) => Err("target: set either service or address, not both".into()),
            (None, None) => {
                Err("target: set service (a hookway Service) or address (a URL)".into())
            }
            (Some(s), None) if s.is_empty() => Err("target.service: must not be empty".into()),
            (Some(_), None) => {
                if self.tls_ca.is_some() {
                    return Err("target.tls_ca: only for an https:// address".into());
                }
                Ok(())
            }
            (None, Some(_)) => {
                self.address_uri()?;
                if self.tls_ca.is_some() {
                    crate::plugins::forward_auth::tls_config(self.tls_ca.as_deref())
                        .map_err(|e| format!("target.{e}"))?;
                }
                Ok(())
            }
        }
    }

    fn address_uri(&self) -> Result<Uri, String> {
        let address = self.address.as_deref().unwrap_or_default();
        let uri: Uri = address
            .parse()
            .map_err(|e| format!("target.address: {e}"))?;
        let path_ok = uri.path_and_query().is_none_or(|pq| pq.as_str() == "/");
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() || !path_ok {
            return Err(format!(
                "target.address: {address:?} must be http://host:port or https://host:port (no path)"
            ));
        }
        Ok(uri)
    }
}

/// The channels to a [`Target`]'s endpoints (connected on first use, then kept).
pub(crate) struct Channels {
    /// What the logs call the target (`Service apps/authz` or the URL).
    pub(crate) name: Arc<str>,
    uris: Vec<Uri>,
    connector: HttpsConnector<HttpConnector>,
    channels: OnceLock<Vec<Channel>>,
    next: AtomicUsize,
}

impl Channels {
    /// The channels for `target` as bound in `env`; connecting is bounded by
    /// `connect_timeout`.
    pub(crate) fn new(
        target: &Target,
        env: &BuildEnv<'_>,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        let (name, uris) = match &target.service {
            Some(service) => {
                let key = env.service(service)?;
                // A Service not in the snapshot (not found, not accepted) has no endpoint: the
                // plugin then fails every call, as its failure mode says.
                let uris = match env.snapshot.upstream(key) {
                    Some(u) if u.scheme == Scheme::Https => {
                        return Err(format!(
                            "Service {key} speaks https; for TLS use target.address https://..."
                        ))
                    }
                    Some(u) => u
                        .endpoints
                        .iter()
                        .filter(|e| e.weight > 0)
                        .filter_map(|e| {
                            let host = if e.address.contains(':') {
                                format!("[{}]", e.address)
                            } else {
                                e.address.clone()
                            };
                            format!("http://{host}:{}", e.port).parse().ok()
                        })
                        .collect(),
                    None => Vec::new(),
                };
                (format!("Service {key}"), uris)
            }
            None => (
                target.address.clone().unwrap_or_default(),
                vec![target.address_uri()?],
            ),
        };
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        // ALPN `h2` is set by the builder (`enable_http2`).
        let tls = crate::plugins::forward_auth::tls_config(target.tls_ca.as_deref())?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http2()
            .wrap_connector(http);
        Ok(Self {
            name: name.into(),
            uris,
            connector,
            channels: OnceLock::new(),
            next: AtomicUsize::new(0),
        })
    }

    /// A channel to the next endpoint, or `None` when the target has none. Must be called
    /// within the tokio runtime (the first call creates the channels).
    pub(crate) fn pick(&self) -> Option<Channel> {
        let channels = self.channels.get_or_init(|| {
            self.uris
                .iter()
                .map(|uri| {
                    Endpoint::from(uri.clone())
                        .tcp_nodelay(true)
                        .connect_with_connector_lazy(self.connector.clone())
                })
                .collect()
        });
        if channels.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % channels.len();
        Some(channels[i].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_table() {
        let t = |service: Option<&str>, address: Option<&str>, ca: Option<&str>| Target {
            service: service.map(Into::into),
            address: address.map(Into::into),
            tls_ca: ca.map(Into::into),
        };
        let cases: [(Target, Result<(), &str>); 8] = [
            (t(Some("authz"), None, None), Ok(())),
            (t(None, Some("http://authz.example:9001"), None), Ok(())),
            (t(None, Some("https://authz.example"), None), Ok(())),
            (t(None, None, None), Err("set service")),
            (t(Some("a"), Some("http://a:1"), None), Err("not both")),
            (t(Some(""), None, None), Err("must not be empty")),
            (t(None, Some("ftp://a:1"), None), Err("must be http")),
            (t(None, Some("http://a:1/check"), None), Err("no path")),
        ];
        for (target, want) in cases {
            match (target.validate(), want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(part)) => assert!(e.contains(part), "{target:?}: {e}"),
                (got, want) => panic!("{target:?}: got {got:?}, want {want:?}"),
            }
        }
        // What the compiler learns from the schema: a Service to resolve, or a URL that
        // needs a PlatformPolicy.
        let registry = crate::plugins::builtin();
        for kind in ["ext_authz", "ext_proc"] {
            let service = registry
                .catalogue()
                .validate(kind, &serde_json::json!({"target": {"service": "a"}}))
                .unwrap();
            assert_eq!(service.service_refs, ["a"], "{kind}");
            assert!(!service.reaches_network, "{kind}");
            let url = registry
                .catalogue()
                .validate(
                    kind,
                    &serde_json::json!({"target": {"address": "http://a:1"}}),
                )
                .unwrap();
            assert!(url.service_refs.is_empty() && url.reaches_network, "{kind}");
        }
    }
}
