//! `hookway-proxy --manifests DIR --check`: compile a folder and print every object's conditions
//! and every Route's effective chain; fail when anything is rejected. The JSON shape
//! (`--output json`) is documented in docs/check.md.

use std::io::Write;
use std::path::Path;

use hookway_crds::compiler::{Compiled, ObjectId, ObjectReport};
use hookway_crds::Catalogue;
use serde::Serialize;

use super::{compile_dir, LoadError, StandaloneOptions};

/// How `--check` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people.
    #[default]
    Text,
    /// For scripts (docs/check.md).
    Json,
}

/// The JSON document `--check --output json` prints.
#[derive(Serialize, Debug)]
pub struct CheckOutput<'a> {
    /// True when every object is accepted with every reference resolved, and every manifest read.
    pub ok: bool,
    /// Manifest errors (then `objects` is empty).
    pub errors: Vec<String>,
    /// Documents skipped (other kinds).
    pub notes: Vec<String>,
    /// Snapshot summary (absent on manifest errors).
    pub snapshot: Option<SnapshotSummary>,
    /// Every GatewayPlugin, Service and Route, sorted by kind, namespace, name.
    pub objects: Vec<ObjectEntry<'a>>,
}

/// Counts of what the snapshot holds.
#[derive(Serialize, Debug)]
pub struct SnapshotSummary {
    /// Content hash.
    pub hash: String,
    /// Served Routes.
    pub routes: usize,
    /// Upstreams.
    pub upstreams: usize,
    /// TLS certificates.
    pub certificates: usize,
    /// Plugins on the no-route chain.
    pub default_chain: usize,
}

/// One object's report.
#[derive(Serialize, Debug)]
pub struct ObjectEntry<'a> {
    /// Kind, namespace, name.
    #[serde(flatten)]
    pub id: &'a ObjectId,
    /// Conditions, warnings, chain, counts.
    #[serde(flatten)]
    pub report: &'a ObjectReport,
}

/// Compiles `dir` and prints the result to `out`. Returns whether everything is accepted.
pub fn check(
    dir: &Path,
    options: &StandaloneOptions,
    catalogue: &Catalogue,
    format: OutputFormat,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    match compile_dir(dir, options, catalogue) {
        Ok((compiled, loaded)) => {
            let ok = compiled.rejected().next().is_none();
            let output = CheckOutput {
                ok,
                errors: Vec::new(),
                notes: loaded.notes,
                snapshot: Some(summary(&compiled)),
                objects: compiled
                    .reports
                    .iter()
                    .map(|(id, report)| ObjectEntry { id, report })
                    .collect(),
            };
            print(&output, format, out)?;
            Ok(ok)
        }
        Err(e) => {
            let errors = match e {
                LoadError::Manifests(errs) => errs.iter().map(ToString::to_string).collect(),
                other => vec![other.to_string()],
            };
            let output = CheckOutput {
                ok: false,
                errors,
                notes: Vec::new(),
                snapshot: None,
                objects: Vec::new(),
            };
            print(&output, format, out)?;
            Ok(false)
        }
    }
}

fn summary(compiled: &Compiled) -> SnapshotSummary {
    let s = &compiled.snapshot;
    SnapshotSummary {
        hash: s.hash.clone(),
        routes: s.routes.len(),
        upstreams: s.upstreams.len(),
        certificates: s.certificates.len(),
        default_chain: s.default_chain.len(),
    }
}

fn print(
    output: &CheckOutput<'_>,
    format: OutputFormat,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, output)?;
            writeln!(out)
        }
        OutputFormat::Text => print_text(output, out),
    }
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "True"
    } else {
        "False"
    }
}

fn print_text(output: &CheckOutput<'_>, out: &mut dyn Write) -> std::io::Result<()> {
    for error in &output.errors {
        writeln!(out, "error: {error}")?;
    }
    for note in &output.notes {
        writeln!(out, "note: {note}")?;
    }
    for ObjectEntry { id, report } in &output.objects {
        writeln!(out, "{:?} {}", id.kind, id.key)?;
        for (name, c) in [
            ("Accepted", &report.accepted),
            ("ResolvedRefs", &report.resolved_refs),
        ] {
            writeln!(
                out,
                "  {name}={} {}: {}",
                mark(c.status),
                c.reason,
                c.message
            )?;
        }
        for warning in &report.warnings {
            writeln!(out, "  warning: {warning}")?;
        }
        if !report.chain.is_empty() {
            writeln!(out, "  chain:")?;
            for (i, e) in report.chain.iter().enumerate() {
                writeln!(
                    out,
                    "    {}. {} ({}) from {} tier, order {}, instance {}/{}",
                    i + 1,
                    e.alias,
                    e.plugin,
                    e.tier,
                    e.order,
                    e.namespace,
                    e.alias
                )?;
            }
        }
    }
    if let Some(s) = &output.snapshot {
        writeln!(
            out,
            "snapshot {}: {} routes, {} upstreams, {} certificates, {} plugins on the no-route chain",
            &s.hash[..s.hash.len().min(12)],
            s.routes,
            s.upstreams,
            s.certificates,
            s.default_chain
        )?;
    }
    writeln!(
        out,
        "{}",
        if output.ok {
            "OK"
        } else {
            "FAILED: some objects are rejected or unresolved"
        }
    )
}
