//! `access_log`: one structured line per request, written after the request completes —
//! errors, early answers and client aborts included. Never changes the response and never
//! blocks it: lines go through a bounded queue to a writer thread ([`writer`]); when the queue
//! is full the line is dropped and counted ([`dropped_lines_total`]).
//!
//! Put it first in the chain (lowest `order`) so its request hook sees the request as the
//! client sent it and every early answer of later plugins.

mod clock;
mod record;
mod redact;
mod writer;

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;

use hookway_crds::catalogue::PluginConfig;
use http::uri::PathAndQuery;
use http::{header, request, HeaderValue, Method};
use serde::Deserialize;

use crate::plugin::{BuildEnv, Completion, Ctx, Flow, Hook, Plugin, PluginError, PluginFactory};
pub use record::{parse_template, Field, Record, Segment};
pub use redact::{redact_query, DEFAULT_REDACTED, REDACTED};
pub use writer::{dropped_lines_total, request_reopen, LogWriter, Sink};

fn default_buffer() -> usize {
    8192
}

/// Line format.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line with every field.
    #[default]
    Json,
    /// The `template` with `$field` variables.
    Template,
}

/// Where lines go.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// Standard output.
    #[default]
    Stdout,
    /// The file at `path`.
    File,
}

/// The `access_log` config.
#[derive(Deserialize, Debug, Clone, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// `json` (default) or `template`.
    #[serde(default)]
    pub format: Format,
    /// The template for `format: template`, e.g. `$client "$method $path" $status $bytes_out`.
    #[serde(default)]
    pub template: Option<String>,
    /// `stdout` (default) or `file`.
    #[serde(default)]
    pub output: Output,
    /// The file for `output: file` (appended, created when missing, reopened after rotation).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Lines queued before new ones are dropped (default 8192).
    #[serde(default = "default_buffer")]
    pub buffer: usize,
    /// More query parameter names whose values are logged as `REDACTED` (beside
    /// [`DEFAULT_REDACTED`] and the parameters auth plugins read credentials from).
    #[serde(default)]
    pub redact: Vec<String>,
}

impl PluginConfig for AccessLogConfig {
    fn validate(&self) -> Result<(), String> {
        match (self.format, &self.template) {
            (Format::Template, None) => {
                return Err("template: required with format: template".into())
            }
            (Format::Json, Some(_)) => return Err("template: only with format: template".into()),
            (Format::Template, Some(t)) => {
                parse_template(t)?;
            }
            (Format::Json, None) => {}
        }
        match (self.output, &self.path) {
            (Output::File, None) => return Err("path: required with output: file".into()),
            (Output::File, Some(p)) if p.as_os_str().is_empty() => {
                return Err("path: must not be empty".into())
            }
            (Output::Stdout, Some(_)) => return Err("path: only with output: file".into()),
            _ => {}
        }
        if self.buffer == 0 || self.buffer > 1_000_000 {
            return Err(format!("buffer: {} is not in 1-1000000", self.buffer));
        }
        Ok(())
    }
}

/// The request line, captured before later plugins rewrite the request: shared copies of the
/// received values (no text copied per request).
#[derive(Clone)]
struct RequestLine {
    method: Method,
    host: Option<HeaderValue>,
    path: Option<PathAndQuery>,
}

/// A running `access_log`.
pub struct AccessLog {
    template: Option<Vec<Segment>>,
    writer: LogWriter,
    redact: Box<[Box<str>]>,
}

impl PluginFactory for AccessLog {
    const NAME: &'static str = "access_log";
    type Config = AccessLogConfig;

    fn build(c: Self::Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        let template = c.template.as_deref().map(parse_template).transpose()?;
        let sink = match c.path {
            Some(p) => Sink::File(p),
            None => Sink::Stdout,
        };
        let writer = LogWriter::start(sink.clone(), c.buffer)
            .map_err(|e| format!("access_log: cannot open {sink:?}: {e}"))?;
        let redact = c.redact.iter().map(|n| n.as_str().into()).collect();
        Ok(Arc::new(AccessLog {
            template,
            writer,
            redact,
        }))
    }
}

impl AccessLog {
    /// Lines this instance dropped because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.writer.dropped()
    }

    /// The line for one completed request.
    pub fn line(&self, ctx: &Ctx, completion: &Completion) -> String {
        self.with_record(ctx, completion, |record| match &self.template {
            Some(t) => record.render(t),
            None => record.to_json(),
        })
    }

    /// Calls `f` with the record of one completed request.
    fn with_record<R>(
        &self,
        ctx: &Ctx,
        completion: &Completion,
        f: impl FnOnce(&Record<'_>) -> R,
    ) -> R {
        let req = ctx.extensions.get::<RequestLine>();
        let mut time_buf = [0u8; 48];
        let time = clock::rfc3339(std::time::SystemTime::now(), &mut time_buf);
        let is_secret = |name: &str| {
            DEFAULT_REDACTED
                .iter()
                .copied()
                .chain(self.redact.iter().map(|n| &**n))
                .chain(
                    ctx.credential_params
                        .iter()
                        .flat_map(|p| p.iter().map(|n| &**n)),
                )
                .any(|secret| secret.eq_ignore_ascii_case(name))
        };
        let path = req.map(|r| {
            r.path
                .as_ref()
                .map_or(std::borrow::Cow::Borrowed(""), |pq| {
                    redact_query(pq.as_str(), is_secret)
                })
        });
        let original = ctx
            .original_target
            .as_ref()
            .map(|pq| redact_query(pq.as_str(), is_secret));
        let record = Record {
            time,
            client: ctx.peer_addr,
            client_ip: ctx.client_ip,
            route: ctx.route.as_deref(),
            service: ctx.upstream.as_deref(),
            upstream_addr: ctx.upstream_addr.as_ref().map(http::uri::Authority::as_str),
            method: req.map_or("-", |r| r.method.as_str()),
            host: req
                .and_then(|r| r.host.as_ref())
                .and_then(|h| h.to_str().ok())
                .unwrap_or("-"),
            path: path.as_deref().unwrap_or("-"),
            original_path: original.as_deref(),
            status: completion.status,
            bytes_in: completion.bytes_received,
            bytes_out: completion.bytes_sent,
            duration_ms: completion.duration.as_secs_f64() * 1000.0,
            upstream_duration_ms: completion
                .upstream_duration
                .map(|d| d.as_secs_f64() * 1000.0),
            consumer: ctx.consumer.as_ref().map(|c| c.id.as_str()),
            request_id: ctx.request_id.as_deref(),
            plugins: &ctx.plugins_ran,
            error: completion.error.as_deref(),
            client_aborted: completion.client_aborted,
        };
        f(&record)
    }

    /// Queues the line of one completed request. A JSON line is written into a buffer kept
    /// per thread and copied into the writer's batch: no allocation, and the writer's lock is
    /// held only for the copy.
    fn log(&self, ctx: &Ctx, completion: &Completion) -> bool {
        thread_local! {
            static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        self.with_record(ctx, completion, |record| match &self.template {
            Some(t) => self.writer.send(&record.render(t)),
            None => SCRATCH.with(|scratch| {
                let mut line = scratch.borrow_mut();
                line.clear();
                record.write_json(&mut line);
                let sent = self.writer.send_bytes(&line);
                if line.capacity() > SCRATCH_KEPT {
                    // A rare huge line (a long path) does not stay allocated.
                    *line = Vec::new();
                }
                sent
            }),
        })
    }
}

/// Largest line buffer a thread keeps between lines.
const SCRATCH_KEPT: usize = 16 * 1024;

impl Plugin for AccessLog {
    fn on_request<'a>(
        &'a self,
        req: &'a mut request::Parts,
        ctx: &'a mut Ctx,
    ) -> Hook<'a, Result<Flow, PluginError>> {
        if ctx.extensions.get::<RequestLine>().is_none() {
            let host = match req.headers.get(header::HOST) {
                Some(h) => Some(h.clone()),
                None => req
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
            };
            let path = match req.uri.path_and_query() {
                Some(pq) => Some(pq.clone()),
                // Authority-form (CONNECT) has no path: logged empty.
                None => match req.uri.path() {
                    "" => None,
                    path => PathAndQuery::try_from(path).ok(),
                },
            };
            ctx.extensions.insert(RequestLine {
                method: req.method.clone(),
                host,
                path,
            });
        }
        Hook::Ready(Ok(Flow::Continue))
    }

    fn on_complete(&self, ctx: &Ctx, completion: &Completion) {
        if !self.log(ctx, completion) {
            tracing::trace!("access_log: queue full, line dropped");
        }
    }
}

#[cfg(test)]
mod tests;
