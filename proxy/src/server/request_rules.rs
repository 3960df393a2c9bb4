//! Proxy-wide rules for reading a request before routing: how paths are canonicalised and
//! whose forwarding headers (`X-Forwarded-*`, `Forwarded`) are believed.

use crate::canonical::PathOptions;
use crate::plugins::client_ip::ClientIp;

/// The rules as configured (`--merge-slashes`, `--escaped-slashes`, `--trusted-proxies`).
#[derive(Clone, Debug, Default)]
pub struct RequestRules {
    /// Path canonicalisation.
    pub path: PathOptions,
    /// Addresses and CIDRs of proxies in front of hookway whose `X-Forwarded-For` is believed.
    /// Empty (the default): every peer is the client, and what it sent in `X-Forwarded-*`,
    /// `Forwarded` and `X-Real-IP` is overwritten or removed before the upstream.
    pub trusted_proxies: Vec<String>,
}

/// [`RequestRules`] compiled for the request path.
#[derive(Clone, Debug)]
pub struct CompiledRules {
    /// Path canonicalisation.
    pub path: PathOptions,
    /// The client address of a request.
    pub client_ip: ClientIp,
}

impl RequestRules {
    /// Compiles the rules; a bad CIDR is named in the error.
    pub fn compile(&self) -> Result<CompiledRules, String> {
        Ok(CompiledRules {
            path: self.path,
            client_ip: ClientIp::new(&self.trusted_proxies, None)?,
        })
    }
}
