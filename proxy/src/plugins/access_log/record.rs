//! One access-log record: the fields, their JSON form and the `$name` template form.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

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
    /// The client address the proxy acted on (the peer, or what a trusted proxy forwarded).
    #[serde(serialize_with = "display")]
    pub client_ip: IpAddr,
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
    /// Request path and query, canonical (what routing, plugins and the upstream saw), with
    /// credential values redacted.
    pub path: &'a str,
    /// The path and query as received, when canonicalisation changed it (redacted the same way).
    pub original_path: Option<&'a str>,
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
    /// `$client_ip`
    ClientIp,
    /// `$original_path`
    OriginalPath,
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
    ("original_path", Field::OriginalPath),
    ("client_ip", Field::ClientIp),
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

/// A member's key as [`JsonObject::key`] writes it: `"name":`, made at compile time.
macro_rules! key {
    ($name:literal) => {
        concat!("\"", $name, "\":")
    };
}

/// A JSON object written key by key: keys as they are (the caller's keys need no escaping),
/// values by whoever writes into [`JsonObject::key`]'s buffer.
struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> JsonObject<'a> {
    /// An object written at the end of `out`.
    fn at_end_of(out: &'a mut Vec<u8>) -> Self {
        Self { out, empty: true }
    }

    /// Starts a member: `quoted_key` is its key as written (`"name":`, from [`key!`]); the
    /// buffer to write its value into.
    fn key(&mut self, quoted_key: &'static str) -> &mut Vec<u8> {
        self.out.push(if self.empty { b'{' } else { b',' });
        self.empty = false;
        self.out.extend_from_slice(quoted_key.as_bytes());
        self.out
    }

    /// Closes the object.
    fn finish(self) {
        self.out.push(b'}');
    }
}

/// Whether serde_json would escape something in `s` (control characters, `"`, `\\`).
fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Writes an IPv4 address digit by digit (what `Display` writes, at a tenth of its cost on a
/// request's path: the access log's addresses went through `fmt` before).
fn ipv4_text(ip: std::net::Ipv4Addr, out: &mut Vec<u8>) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if octet >= 100 {
            out.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            out.push(b'0' + octet / 10 % 10);
        }
        out.push(b'0' + octet % 10);
    }
}

/// `ip` as a JSON string (an address needs no escaping); IPv6 by `Display`.
fn ip_addr(out: &mut Vec<u8>, ip: IpAddr) -> serde_json::Result<()> {
    out.push(b'"');
    match ip {
        IpAddr::V4(v4) => ipv4_text(v4, out),
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            write!(out, "{v6}").map_err(serde_json::Error::io)?;
        }
    }
    out.push(b'"');
    Ok(())
}

/// `addr` (`ip:port`, `[v6]:port`) as a JSON string; IPv6 by `Display`.
fn socket_addr(out: &mut Vec<u8>, addr: SocketAddr) -> serde_json::Result<()> {
    match addr {
        SocketAddr::V4(v4) => {
            out.push(b'"');
            ipv4_text(*v4.ip(), out);
            out.push(b':');
            serde_json::to_writer(&mut *out, &v4.port())?;
            out.push(b'"');
            Ok(())
        }
        SocketAddr::V6(_) => display(&addr, &mut serde_json::Serializer::new(out)),
    }
}

/// `namespace/name` as a JSON string, or `null`.
fn object_key(out: &mut Vec<u8>, key: Option<&ObjectKey>) -> serde_json::Result<()> {
    match key {
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
        Some(k) if !needs_escape(&k.namespace) && !needs_escape(&k.name) => {
            out.push(b'"');
            out.extend_from_slice(k.namespace.as_bytes());
            out.push(b'/');
            out.extend_from_slice(k.name.as_bytes());
            out.push(b'"');
            Ok(())
        }
        Some(k) => display(k, &mut serde_json::Serializer::new(out)),
    }
}

impl Record<'_> {
    /// The JSON line (without the newline): the same text as serializing the record with
    /// serde (a test holds them equal), but the keys, which never need escaping, are written as
    /// they are; serde_json writes and escapes the values.
    pub fn to_json(&self) -> String {
        let mut line = Vec::with_capacity(512);
        self.write_json(&mut line);
        String::from_utf8(line).unwrap_or_default()
    }

    /// Appends [`to_json`](Self::to_json)'s line to `out` (UTF-8).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use serde_json::{to_writer, Serializer};
        let start = out.len();
        let mut line = JsonObject::at_end_of(out);
        let written: serde_json::Result<()> = (|| {
            to_writer(line.key(key!("time")), self.time)?;
            socket_addr(line.key(key!("client")), self.client)?;
            ip_addr(line.key(key!("client_ip")), self.client_ip)?;
            object_key(line.key(key!("route")), self.route)?;
            object_key(line.key(key!("service")), self.service)?;
            to_writer(line.key(key!("upstream_addr")), &self.upstream_addr)?;
            to_writer(line.key(key!("method")), self.method)?;
            to_writer(line.key(key!("host")), self.host)?;
            to_writer(line.key(key!("path")), self.path)?;
            to_writer(line.key(key!("original_path")), &self.original_path)?;
            to_writer(line.key(key!("status")), &self.status)?;
            to_writer(line.key(key!("bytes_in")), &self.bytes_in)?;
            to_writer(line.key(key!("bytes_out")), &self.bytes_out)?;
            to_writer(line.key(key!("duration_ms")), &self.duration_ms)?;
            to_writer(
                line.key(key!("upstream_duration_ms")),
                &self.upstream_duration_ms,
            )?;
            to_writer(line.key(key!("consumer")), &self.consumer)?;
            to_writer(line.key(key!("request_id")), &self.request_id)?;
            aliases(
                &self.plugins,
                &mut Serializer::new(line.key(key!("plugins"))),
            )?;
            to_writer(line.key(key!("error")), &self.error)?;
            to_writer(line.key(key!("client_aborted")), &self.client_aborted)
        })();
        match written {
            Ok(()) => line.finish(),
            Err(e) => {
                out.truncate(start);
                out.extend_from_slice(format!("{{\"log_error\":\"{e}\"}}").as_bytes());
            }
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
                    Field::ClientIp => {
                        let _ = write!(out, "{}", self.client_ip);
                    }
                    Field::OriginalPath => opt(&mut out, self.original_path),
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
    fn the_json_line_is_what_serde_writes() {
        let route = ObjectKey::new("apps", "web");
        let service = ObjectKey::new("apps", "api\"quoted\"");
        let plugins = PluginsRan::all(["log", "auth"]);
        let none = PluginsRan::default();
        let full = Record {
            time: "2026-12-03T14:00:00.123456789Z",
            client: "10.0.0.1:40000".parse().unwrap(),
            client_ip: "192.0.2.7".parse().unwrap(),
            route: Some(&route),
            service: Some(&service),
            upstream_addr: Some("10.1.0.2:8080"),
            method: "POST",
            host: "api.example.com",
            path: "/orders?q=\"x\"&n=\u{e9}\n\t\\",
            original_path: Some("/x/../orders?q=\"x\"&n=\u{e9}\n\t\\"),
            status: 201,
            bytes_in: 12,
            bytes_out: 345_678,
            duration_ms: 1.25,
            upstream_duration_ms: Some(0.5),
            consumer: Some("alice"),
            request_id: Some("req-1"),
            plugins: &plugins,
            error: Some("upstream error: reset \u{1}"),
            client_aborted: true,
        };
        let empty = Record {
            route: None,
            original_path: None,
            service: None,
            upstream_addr: None,
            upstream_duration_ms: None,
            consumer: None,
            request_id: None,
            plugins: &none,
            error: None,
            client_aborted: false,
            duration_ms: 0.0,
            ..full
        };
        let v6 = Record {
            client: "[2001:db8::1]:443".parse().unwrap(),
            client_ip: "::ffff:192.0.2.1".parse().unwrap(),
            ..full
        };
        let edges = Record {
            status: 0,
            bytes_in: u64::MAX,
            bytes_out: 10,
            client: "0.0.0.0:0".parse().unwrap(),
            client_ip: "255.10.100.9".parse().unwrap(),
            route: Some(&service),
            service: Some(&route),
            ..empty
        };
        for record in [&full, &empty, &v6, &edges] {
            let line = record.to_json();
            assert_eq!(line, serde_json::to_string(record).unwrap());
            let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(parsed["path"], record.path);
        }
    }

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
