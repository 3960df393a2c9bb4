//! One access-log record: the fields, their JSON form and the `$name` template form.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;

use serde::{Serialize, Serializer};

use crate::plugin::PluginsRan;
use hookway_crds::snapshot::ObjectKey;

/// Serializes by `Display`, written straight into the output (no string in between).
fn display<T: fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn display_opt<T: fmt::Display, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => s.collect_str(value),
        None => s.serialize_none(),
    }
}

fn aliases<S: Serializer>(plugins: &&PluginsRan, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(plugins.iter())
}

/// The fields of one line. Borrowed from the request's context; built once per request.
#[derive(Serialize, Debug)]
pub struct Record<'a> {
    /// RFC 3339 UTC completion time.
    pub time: &'a str,
    /// Client address (`ip:port`).
    #[serde(serialize_with = "display")]
    pub client: SocketAddr,
    /// `namespace/name` of the Route, when one matched.
    #[serde(serialize_with = "display_opt")]
    pub route: Option<&'a ObjectKey>,
    /// `namespace/name` of the Service the request went to.
    #[serde(serialize_with = "display_opt")]
    pub service: Option<&'a ObjectKey>,
    /// The upstream node (`address:port`).
    pub upstream_addr: Option<&'a str>,
    /// Request method.
    pub method: &'a str,
    /// Request host (Host header or URI authority).
    pub host: &'a str,
    /// Request path and query as received.
    pub path: &'a str,
    /// Status sent.
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Total time, milliseconds.
    pub duration_ms: f64,
    /// Time to the upstream response head, milliseconds.
    pub upstream_duration_ms: Option<f64>,
    /// Authenticated consumer id.
    pub consumer: Option<&'a str>,
    /// Request id.
    pub request_id: Option<&'a str>,
    /// Aliases of the plugins whose request hook ran.
    #[serde(serialize_with = "aliases")]
    pub plugins: &'a PluginsRan,
    /// Error text, when the request failed.
    pub error: Option<&'a str>,
    /// The client went away before the response finished.
    pub client_aborted: bool,
}

/// A template variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `$time`
    Time,
    /// `$client`
    Client,
    /// `$route`
    Route,
    /// `$service`
    Service,
    /// `$upstream_addr`
    UpstreamAddr,
    /// `$method`
    Method,
    /// `$host`
    Host,
    /// `$path`
    Path,
    /// `$status`
    Status,
    /// `$bytes_in`
    BytesIn,
    /// `$bytes_out`
    BytesOut,
    /// `$duration_ms`
    DurationMs,
    /// `$upstream_duration_ms`
    UpstreamDurationMs,
    /// `$consumer`
    Consumer,
    /// `$request_id`
    RequestId,
    /// `$plugins` (comma-separated)
    Plugins,
    /// `$error`
    Error,
    /// `$client_aborted`
    ClientAborted,
}

const FIELDS: &[(&str, Field)] = &[
    ("upstream_duration_ms", Field::UpstreamDurationMs),
    ("upstream_addr", Field::UpstreamAddr),
    ("client_aborted", Field::ClientAborted),
    ("duration_ms", Field::DurationMs),
    ("request_id", Field::RequestId),
    ("bytes_out", Field::BytesOut),
    ("bytes_in", Field::BytesIn),
    ("consumer", Field::Consumer),
    ("service", Field::Service),
    ("plugins", Field::Plugins),
    ("client", Field::Client),
    ("method", Field::Method),
    ("status", Field::Status),
    ("route", Field::Route),
    ("error", Field::Error),
    ("time", Field::Time),
    ("host", Field::Host),
    ("path", Field::Path),
];

/// A parsed template: literal text and fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// Text copied as is.
    Literal(String),
    /// A field's value (`-` when absent).
    Field(Field),
}

/// Parses `"$method $path $status"`; `$$` is a literal `$`; `${name}` delimits a name.
pub fn parse_template(template: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        literal.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            literal.push('$');
            rest = after;
            continue;
        }
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("template: unclosed ${{ at {:?}", braced))?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        let field = FIELDS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                let known: Vec<_> = FIELDS.iter().map(|(n, _)| *n).collect();
                format!(
                    "template: unknown variable ${name} (known: {})",
                    known.join(", ")
                )
            })?;
        if !literal.is_empty() {
            segments.push(Segment::Literal(std::mem::take(&mut literal)));
        }
        segments.push(Segment::Field(field));
        rest = after;
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    Ok(segments)
}

fn opt(out: &mut String, v: Option<&str>) {
    out.push_str(v.unwrap_or("-"));
}

fn opt_display(out: &mut String, v: Option<impl fmt::Display>) {
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push('-'),
    }
}

impl Record<'_> {
    /// The JSON line (without the newline).
    pub fn to_json(&self) -> String {
        // Sized for a typical line, so that writing it rarely grows the buffer.
        let mut out = Vec::with_capacity(512);
        match serde_json::to_writer(&mut out, self) {
            Ok(()) => String::from_utf8(out).unwrap_or_default(),
            Err(e) => format!("{{\"log_error\":\"{e}\"}}"),
        }
    }

    /// The template line (without the newline); absent values are `-`.
    pub fn render(&self, template: &[Segment]) -> String {
        let mut out = String::with_capacity(128);
        for seg in template {
            match seg {
                Segment::Literal(s) => out.push_str(s),
                Segment::Field(f) => match f {
                    Field::Time => out.push_str(self.time),
                    Field::Client => {
                        let _ = write!(out, "{}", self.client);
                    }
                    Field::Route => opt_display(&mut out, self.route),
                    Field::Service => opt_display(&mut out, self.service),
                    Field::UpstreamAddr => opt(&mut out, self.upstream_addr),
                    Field::Method => out.push_str(self.method),
                    Field::Host => out.push_str(self.host),
                    Field::Path => out.push_str(self.path),
                    Field::Status => {
                        let _ = write!(out, "{}", self.status);
                    }
                    Field::BytesIn => {
                        let _ = write!(out, "{}", self.bytes_in);
                    }
                    Field::BytesOut => {
                        let _ = write!(out, "{}", self.bytes_out);
                    }
                    Field::DurationMs => {
                        let _ = write!(out, "{:.3}", self.duration_ms);
                    }
                    Field::UpstreamDurationMs => match self.upstream_duration_ms {
                        Some(d) => {
                            let _ = write!(out, "{d:.3}");
                        }
                        None => out.push('-'),
                    },
                    Field::Consumer => opt(&mut out, self.consumer),
                    Field::RequestId => opt(&mut out, self.request_id),
                    Field::Plugins => {
                        if self.plugins.iter().next().is_none() {
                            out.push('-');
                        }
                        for (i, p) in self.plugins.iter().enumerate() {
                            if i > 0 {
                                out.push(',');
                            }
                            out.push_str(p);
                        }
                    }
                    Field::Error => opt(&mut out, self.error),
                    Field::ClientAborted => {
                        out.push_str(if self.client_aborted { "true" } else { "false" })
                    }
                },
            }
        }
        // One record is one line, whatever the values contain.
        if out.contains(['\n', '\r']) {
            out = out.replace(['\n', '\r'], " ");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_fields_literals_and_escapes() {
        let t = parse_template("$method ${path}x $$ $status").unwrap();
        assert_eq!(
            t,
            vec![
                Segment::Field(Field::Method),
                Segment::Literal(" ".into()),
                Segment::Field(Field::Path),
                Segment::Literal("x $ ".into()),
                Segment::Field(Field::Status),
            ]
        );
    }

    #[test]
    fn unknown_variable_is_an_error() {
        let err = parse_template("$status $nope").unwrap_err();
        assert!(err.contains("$nope"), "{err}");
        assert!(parse_template("${status").unwrap_err().contains("unclosed"));
    }
}
