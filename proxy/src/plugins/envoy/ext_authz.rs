//! `ext_authz`: asks an Envoy external authorization server (`envoy.service.auth.v3`
//! `Authorization/Check`, gRPC) whether a request may pass — the gRPC sibling of
//! `forward_auth`. See `docs/plugins/ext_authz.md`.
//!
//! The `CheckRequest` carries the client (source) and listener (destination) addresses, the
//! request id, method, path (with query), query, host, scheme, protocol, size, headers
//! (`allowed_headers`, all by default, plus `:authority`, `:method`, `:path`), the configured
//! `context_extensions` and, with `with_request_body`, the body. An OK answer lets the request
//! through, applying its `headers` (set, or append when asked), `headers_to_remove` and, on the
//! response, `response_headers_to_add`; a denial is answered with its status (403 by default),
//! headers and body. A failure (no answer within `timeout`, unreachable, a gRPC error, a
//! malformed or `error_response` answer) follows `failure_mode_allow`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address, Address, HeaderValueOption, SocketAddress,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Peer, Request as AttrRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse,
};
use http::{header, request, response, HeaderMap, HeaderName, Response, StatusCode};
use serde::Deserialize;

use hookway_crds::catalogue::PluginConfig;

use super::failure::{Failure, FailureMode, Reason, RequestInfo};
use super::headers::{self, DefaultAction};
use super::target::{Channels, Target};
use crate::plugin::{
    respond, BuildEnv, Ctx, Flow, Hook, HookResult, Phases, Plugin, PluginError, PluginFactory,
};
use crate::plugins::decisions::{self, Decision};

fn default_timeout() -> String {
    "200ms".into()
}

fn forbidden() -> u16 {
    403
}

/// Sending the request body in the `CheckRequest` (Envoy's `with_request_body`).
#[derive(Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WithRequestBody {
    /// The body is buffered up to this many bytes; a longer one is answered 413 (Envoy's
    /// `allow_partial_message: false`).
    pub max_request_bytes: u32,
    /// Send the body as bytes (`raw_body`) instead of text (`body`).
    #[serde(default)]
    pub pack_as_bytes: bool,
}

/// Config of `ext_authz`.
#[derive(Deserialize, Clone, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    "x-hookway-configuration-schema" = {"schema": "configuration_schema", "instance": "context_extensions"}
))]
pub struct Config {
    /// The authorization server.
    pub target: Target,
    /// Bound on one Check call, connecting included (Envoy's default, 200ms).
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Let the request through when the server fails (default: refuse).
    #[serde(default)]
    pub failure_mode_allow: bool,
    /// The status answered when the server fails and `failure_mode_allow` is false.
    #[serde(default = "forbidden")]
    pub status_on_error: u16,
    /// Request headers sent to the server (case-insensitive names); absent: all of them.
    #[serde(default)]
    pub allowed_headers: Option<Vec<String>>,
    /// Send the request body too (buffered up to a limit).
    #[serde(default)]
    pub with_request_body: Option<WithRequestBody>,
    /// Sent as `context_extensions` in every `CheckRequest`.
    #[serde(default)]
    pub context_extensions: BTreeMap<String, String>,
    /// JSON Schema `context_extensions` must be valid against (the server's contract for them),
    /// checked by the controller and by `--check`; absent: not checked.
    #[serde(default)]
    pub configuration_schema: Option<serde_json::Value>,
}

pub(super) fn timeout_of(field: &str, value: &str) -> Result<Duration, String> {
    let t = hookway_crds::duration::parse(value).map_err(|e| format!("{field}: {e}"))?;
    if t.is_zero() {
        return Err(format!("{field} must be positive"));
    }
    Ok(t)
}

pub(super) fn error_status(field: &str, code: u16) -> Result<StatusCode, String> {
    StatusCode::from_u16(code)
        .ok()
        .filter(|s| s.as_u16() >= 200)
        .ok_or_else(|| format!("{field}: {code} is not an HTTP status"))
}

impl Config {
    fn allowed(&self) -> Result<Option<Vec<HeaderName>>, String> {
        self.allowed_headers
            .as_ref()
            .map(|list| {
                list.iter()
                    .map(|h| {
                        HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                            .map_err(|_| format!("allowed_headers: invalid header name {h:?}"))
                    })
                    .collect()
            })
            .transpose()
    }
}

impl PluginConfig for Config {
    fn validate(&self) -> Result<(), String> {
        self.target.validate()?;
        timeout_of("timeout", &self.timeout)?;
        error_status("status_on_error", self.status_on_error)?;
        self.allowed()?;
        if self
            .with_request_body
            .as_ref()
            .is_some_and(|b| b.max_request_bytes == 0)
        {
            return Err("with_request_body.max_request_bytes must be positive".into());
        }
        Ok(())
    }
}

/// The `ext_authz` plugin kind.
pub struct ExtAuthz {
    channels: Channels,
    timeout: Duration,
    failure: FailureMode,
    allowed: Option<Vec<HeaderName>>,
    with_body: Option<WithRequestBody>,
    context_extensions: std::collections::HashMap<String, String>,
}

/// The OK answer's `response_headers_to_add`, per alias, until the response head.
#[derive(Default)]
struct ResponseHeadersToAdd(Vec<(Arc<str>, Vec<HeaderValueOption>)>);

impl PluginFactory for ExtAuthz {
    const NAME: &'static str = "ext_authz";
    type Config = Config;
    const PHASES: Phases = Phases::REQUEST_BODY;

    fn build(config: Config, env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        let timeout = timeout_of("timeout", &config.timeout)?;
        let channels = Channels::new(&config.target, env, timeout)?;
        Ok(Arc::new(ExtAuthz {
            failure: FailureMode {
                kind: Self::NAME,
                alias: env.alias.into(),
                target: channels.name.clone(),
                allow: config.failure_mode_allow,
                status: error_status("status_on_error", config.status_on_error)?,
            },
            channels,
            timeout,
            allowed: config.allowed()?,
            with_body: config.with_request_body,
            context_extensions: config.context_extensions.into_iter().collect(),
        }))
    }
}

fn peer(addr: SocketAddr) -> Peer {
    Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: addr.ip().to_canonical().to_string(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(addr.port().into())),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

/// `HTTP/1.1`, `HTTP/2`, ... as Envoy writes the protocol.
pub(super) fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// The request's authority: `Host`, else the URI's.
pub(super) fn authority(req: &request::Parts) -> &str {
    req.headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

impl ExtAuthz {
    fn check_request(&self, req: &request::Parts, ctx: &Ctx, body: Option<&Bytes>) -> CheckRequest {
        let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let host = authority(req);
        let mut headers = std::collections::HashMap::new();
        headers.insert(":authority".to_string(), host.to_string());
        headers.insert(":method".to_string(), req.method.to_string());
        headers.insert(":path".to_string(), path.to_string());
        for name in req.headers.keys() {
            if self.allowed.as_ref().is_some_and(|a| !a.contains(name)) {
                continue;
            }
            let joined = req
                .headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .collect::<Vec<_>>()
                .join(",");
            headers.insert(name.as_str().to_string(), joined);
        }
        let size = req
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(-1);
        let mut http = HttpRequest {
            id: ctx.request_id.as_deref().unwrap_or_default().to_string(),
            method: req.method.to_string(),
            path: path.to_string(),
            host: host.to_string(),
            scheme: if ctx.tls { "https" } else { "http" }.into(),
            query: req.uri.query().unwrap_or_default().to_string(),
            size,
            protocol: protocol(req.version).into(),
            ..Default::default()
        };
        if let (Some(with), Some(body)) = (&self.with_body, body) {
            headers.insert("x-envoy-auth-partial-body".into(), "false".into());
            if with.pack_as_bytes {
                http.raw_body = body.to_vec();
            } else {
                http.body = String::from_utf8_lossy(body).into_owned();
            }
        }
        http.headers = headers;
        let client = SocketAddr::new(ctx.client_ip, ctx.peer_addr.port());
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(peer(client)),
                destination: Some(peer(ctx.local_addr)),
                request: Some(AttrRequest {
                    time: None,
                    http: Some(http),
                }),
                context_extensions: self.context_extensions.clone(),
                ..Default::default()
            }),
        }
    }

    /// One Check call, bounded by the timeout.
    async fn call(&self, check: CheckRequest) -> Result<CheckResponse, Failure> {
        let Some(channel) = self.channels.pick() else {
            return Err(Failure::new(
                Reason::Unavailable,
                "the target has no endpoint",
            ));
        };
        let mut request = tonic::Request::new(check);
        request.set_timeout(self.timeout);
        let mut client = AuthorizationClient::new(channel);
        match tokio::time::timeout(self.timeout, client.check(request)).await {
            Err(_) => Err(Failure::new(
                Reason::Timeout,
                format!("no answer within {:?}", self.timeout),
            )),
            Ok(Err(status)) => Err(Failure::from_status(&status)),
            Ok(Ok(answer)) => Ok(answer.into_inner()),
        }
    }

    /// Asks the server and applies its answer.
    async fn authorize(
        &self,
        req: &mut request::Parts,
        ctx: &mut Ctx,
        body: Option<&Bytes>,
    ) -> Result<Flow, PluginError> {
        let check = self.check_request(req, ctx, body);
        let answer = match self.call(check).await {
            Ok(answer) => answer,
            Err(failure) => return Ok(self.failed(&failure, ctx)),
        };
        let code = answer.status.as_ref().map_or(0, |s| s.code);
        match (code, answer.http_response) {
            (_, Some(HttpResponse::ErrorResponse(error))) => {
                let failure = Failure::new(Reason::Status, "the server answered error_response");
                match self
                    .failure
                    .fail(&failure, "request", &RequestInfo::of(ctx))
                {
                    None => Ok(Flow::Continue),
                    Some(_) => Ok(Flow::Respond(denied(error, self.failure.status)?)),
                }
            }
            (0, ok) => {
                let Some(HttpResponse::OkResponse(ok)) = ok else {
                    return Ok(Flow::Continue);
                };
                let applied =
                    headers::apply_options(&mut req.headers, &ok.headers, DefaultAction::Overwrite)
                        .and_then(|pseudo| {
                            // `:path` etc. are not the authorization server's to change.
                            if let Some((name, _)) = pseudo.first() {
                                return Err(format!("cannot set pseudo-header {name}"));
                            }
                            headers::remove(&mut req.headers, &ok.headers_to_remove)
                        });
                if let Err(e) = applied {
                    return Ok(self.failed(&Failure::malformed(e), ctx));
                }
                if !ok.response_headers_to_add.is_empty() {
                    ctx.extensions
                        .get_or_insert_default::<ResponseHeadersToAdd>()
                        .0
                        .push((self.failure.alias.clone(), ok.response_headers_to_add));
                }
                Ok(Flow::Continue)
            }
            (_, denial) => {
                decisions::record(ExtAuthz::NAME, ctx.route.as_deref(), Decision::Denied);
                let denial = match denial {
                    Some(HttpResponse::DeniedResponse(d)) => d,
                    _ => DeniedHttpResponse::default(),
                };
                match denied(denial, StatusCode::FORBIDDEN) {
                    Ok(resp) => Ok(Flow::Respond(resp)),
                    Err(e) => Ok(self.failed(&Failure::malformed(e.message), ctx)),
                }
            }
        }
    }

    fn failed(&self, failure: &Failure, ctx: &Ctx) -> Flow {
        match self.failure.fail(failure, "request", &RequestInfo::of(ctx)) {
            None => Flow::Continue,
            Some(resp) => Flow::Respond(resp),
        }
    }
}

/// The answer for a `DeniedHttpResponse` (`default` when it sets no status).
fn denied(
    d: DeniedHttpResponse,
    default: StatusCode,
) -> Result<Response<crate::plugin::ProxyBody>, PluginError> {
    let status = d
        .status
        .and_then(|s| u16::try_from(s.code).ok())
        .filter(|&c| c >= 200)
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(default);
    let mut resp = respond::with_body(status, "text/plain", d.body);
    let mut headers = HeaderMap::new();
    headers::apply_options(&mut headers, &d.headers, DefaultAction::Overwrite)
        .map_err(|e| PluginError::internal(format!("ext_authz denial: {e}")))?;
    for (name, value) in headers.iter() {
        if name == header::CONTENT_TYPE {
            resp.headers_mut().insert(name, value.clone());
        } else {
            resp.headers_mut().append(name, value.clone());
        }
    }
    Ok(resp)
}

impl Plugin for ExtAuthz {
    fn phases(&self) -> Phases {
        if self.with_body.is_some() {
            Phases::REQUEST_BODY
        } else {
            Phases::HEADS
        }
    }

    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        if self.with_body.is_some() {
            // Asked from the whole body, in `on_request_body`.
            return Hook::Ready(Ok(Flow::Continue));
        }
        Hook::from_async(self.authorize(req, ctx, None))
    }

    fn request_body_limit(&self, _req: &request::Parts, _ctx: &Ctx) -> Option<usize> {
        self.with_body
            .as_ref()
            .map(|b| b.max_request_bytes as usize)
    }

    fn on_request_body<'a>(
        &'a self,
        req: &'a mut request::Parts,
        body: &'a mut Bytes,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        Hook::from_async(self.authorize(req, ctx, Some(body)))
    }

    fn on_response<'a>(
        &'a self,
        resp: &'a mut response::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, HookResult> {
        let Some(added) = ctx.extensions.get_mut::<ResponseHeadersToAdd>() else {
            return Hook::Ready(Ok(()));
        };
        let Some(i) = added.0.iter().position(|(a, _)| *a == self.failure.alias) else {
            return Hook::Ready(Ok(()));
        };
        let (_, options) = added.0.swap_remove(i);
        // Envoy appends these to the response.
        let result =
            headers::apply_options(&mut resp.headers, &options, DefaultAction::AppendAction)
                .map(drop)
                .map_err(|e| {
                    PluginError::internal(format!("ext_authz response_headers_to_add: {e}"))
                });
        Hook::Ready(result)
    }
}

#[cfg(test)]
mod tests {

    use crate::plugins::harness::validate;
    use serde_json::json;

    #[test]
    fn config_table() {
        let ok = [
            json!({"target": {"service": "authz"}}),
            json!({"target": {"address": "http://authz.test:9001"}, "timeout": "1s",
                   "failure_mode_allow": true, "status_on_error": 500,
                   "allowed_headers": ["Authorization", "cookie"],
                   "with_request_body": {"max_request_bytes": 1024, "pack_as_bytes": true},
                   "context_extensions": {"tenant": "a"}}),
            json!({"target": {"service": "authz"}, "context_extensions": {"tenant": "a"},
                   "configuration_schema": {"type": "object", "required": ["tenant"]}}),
        ];
        for c in ok {
            assert!(validate("ext_authz", c.clone()).is_ok(), "{c}");
        }
        let bad = [
            (json!({}), "target"),
            (json!({"target": {}}), "set service"),
            (
                json!({"target": {"service": "a"}, "timeout": "0s"}),
                "timeout",
            ),
            (
                json!({"target": {"service": "a"}, "timeout": "soon"}),
                "timeout",
            ),
            (
                json!({"target": {"service": "a"}, "status_on_error": 99}),
                "status_on_error",
            ),
            (
                json!({"target": {"service": "a"}, "allowed_headers": ["a b"]}),
                "allowed_headers",
            ),
            (
                json!({"target": {"service": "a"}, "with_request_body": {"max_request_bytes": 0}}),
                "max_request_bytes",
            ),
            (
                json!({"target": {"service": "a"}, "extra": 1}),
                "unknown field",
            ),
            // The declared contract of the server's context_extensions.
            (
                json!({"target": {"service": "a"}, "context_extensions": {"team": "a"},
                       "configuration_schema": {"type": "object", "required": ["tenant"]}}),
                "context_extensions: \"tenant\" is a required property",
            ),
            (
                json!({"target": {"service": "a"}, "context_extensions": {"tenant": "a b"},
                       "configuration_schema": {"properties": {"tenant": {"pattern": "^[a-z]+$"}}}}),
                "context_extensions.tenant: ",
            ),
            (
                json!({"target": {"service": "a"}, "configuration_schema": {"type": "nonsense"}}),
                "configuration_schema: invalid schema",
            ),
        ];
        for (c, part) in bad {
            let err = validate("ext_authz", c.clone()).unwrap_err();
            assert!(err.contains(part), "{c}: {err}");
        }
    }

    #[test]
    fn only_an_address_reaches_the_network() {
        let reg = crate::plugins::builtin();
        let v = reg
            .catalogue()
            .validate("ext_authz", &json!({"target": {"service": "ns/authz"}}))
            .unwrap();
        assert_eq!(v.service_refs, ["ns/authz"]);
        assert!(!v.reaches_network);
        let v = reg
            .catalogue()
            .validate("ext_authz", &json!({"target": {"address": "http://a:1"}}))
            .unwrap();
        assert!(v.reaches_network);
    }
}
