//! Watching the manifest folder: recompile on change, swap the snapshot when the change is good.
//!
//! A change is applied when it loads and compiles without rejecting any object that the applied
//! snapshot did not already reject; otherwise the last good snapshot stays and each new rejection
//! is logged with its reason. Identical results (same content hash) are not re-published.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hookway_crds::compiler::{Compiled, ObjectId};
use hookway_crds::{Catalogue, Snapshot};
use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch as watch_channel};
use tracing::{error, info, warn};

use super::{compile_dir, LoadError, StandaloneOptions};

/// How long to wait for a burst of file events to settle before reloading.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// Polling period when the OS file-event API is unavailable.
const POLL_EVERY: Duration = Duration::from_secs(2);

/// What the watcher applied last.
#[derive(Debug, Default)]
pub struct Applied {
    /// Version of the published snapshot (0: none yet).
    pub version: u64,
    /// Its content hash.
    pub hash: String,
    /// Objects rejected in that compile.
    pub rejected: BTreeSet<ObjectId>,
    /// Hash of the last compile that was refused (so it is reported once, not on every event).
    pub refused_hash: Option<String>,
}

/// The outcome of a reload.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Publish the new snapshot.
    Apply,
    /// Same content as the applied snapshot.
    Unchanged,
    /// These objects would newly be rejected: keep the applied snapshot.
    Keep(Vec<ObjectId>),
}

/// Decides whether `compiled` may replace what is applied.
pub fn decide(applied: &Applied, compiled: &Compiled) -> Decision {
    let newly: Vec<ObjectId> = compiled
        .rejected()
        .map(|(id, _)| id.clone())
        .filter(|id| !applied.rejected.contains(id))
        .collect();
    if applied.version > 0 && !newly.is_empty() {
        Decision::Keep(newly)
    } else if compiled.snapshot.hash == applied.hash {
        Decision::Unchanged
    } else {
        Decision::Apply
    }
}

/// Logs every object the compiler rejected or warned about.
pub fn log_reports(compiled: &Compiled) {
    for (id, report) in &compiled.reports {
        let object = format!("{:?} {}", id.kind, id.key);
        if !report.accepted.status {
            warn!(%object, reason = %report.accepted.reason, "rejected: {}", report.accepted.message);
        } else if !report.resolved_refs.status {
            warn!(%object, reason = %report.resolved_refs.reason, "unresolved: {}", report.resolved_refs.message);
        }
        for warning in &report.warnings {
            info!(%object, "warning: {warning}");
        }
    }
}

/// Loads `dir`, publishes its snapshot, then watches the folder and publishes every good change
/// until `tx` has no receivers. Fails only when the first load fails.
pub async fn watch(
    dir: PathBuf,
    options: StandaloneOptions,
    catalogue: Catalogue,
    tx: watch_channel::Sender<Option<Arc<Snapshot>>>,
) -> Result<(), LoadError> {
    let mut applied = Applied::default();
    let (compiled, _) = compile_dir(&dir, &options, &catalogue)?;
    log_reports(&compiled);
    publish(&mut applied, compiled, &tx);

    let (events_tx, mut events) = mpsc::channel::<()>(1);
    let _watcher = start_watcher(&dir, events_tx);
    while events.recv().await.is_some() {
        // Let a burst of writes (editors, `cp -r`, ConfigMap symlink swaps) settle.
        tokio::time::sleep(DEBOUNCE).await;
        while events.try_recv().is_ok() {}
        if tx.is_closed() {
            break;
        }
        reload(&dir, &options, &catalogue, &mut applied, &tx);
    }
    Ok(())
}

fn reload(
    dir: &Path,
    options: &StandaloneOptions,
    catalogue: &Catalogue,
    applied: &mut Applied,
    tx: &watch_channel::Sender<Option<Arc<Snapshot>>>,
) {
    let compiled = match compile_dir(dir, options, catalogue) {
        Ok((compiled, _)) => compiled,
        Err(e) => {
            error!(dir = %dir.display(), version = applied.version, "change not applied, keeping the last good snapshot: {e}");
            return;
        }
    };
    match decide(applied, &compiled) {
        Decision::Apply => {
            log_reports(&compiled);
            publish(applied, compiled, tx);
        }
        Decision::Unchanged => {}
        Decision::Keep(_)
            if applied.refused_hash.as_deref() == Some(compiled.snapshot.hash.as_str()) => {}
        Decision::Keep(newly) => {
            applied.refused_hash = Some(compiled.snapshot.hash.clone());
            log_reports(&compiled);
            let objects: Vec<String> = newly
                .iter()
                .map(|id| format!("{:?} {}", id.kind, id.key))
                .collect();
            error!(version = applied.version, rejected = ?objects, "change not applied, keeping the last good snapshot");
        }
    }
}

fn publish(
    applied: &mut Applied,
    compiled: Compiled,
    tx: &watch_channel::Sender<Option<Arc<Snapshot>>>,
) {
    let mut snapshot = compiled.snapshot;
    applied.version += 1;
    snapshot.version = applied.version;
    applied.hash = snapshot.hash.clone();
    applied.refused_hash = None;
    applied.rejected = compiled
        .reports
        .iter()
        .filter(|(_, r)| !r.is_ok())
        .map(|(id, _)| id.clone())
        .collect();
    info!(version = snapshot.version, hash = %snapshot.hash, routes = snapshot.routes.len(), "snapshot compiled from manifests");
    tx.send_replace(Some(Arc::new(snapshot)));
}

/// Whether a file event may change what the folder compiles to.
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
    )
}

/// Starts an OS file watcher on `dir`, falling back to polling; events become `()` pokes.
fn start_watcher(dir: &Path, events: mpsc::Sender<()>) -> Option<Box<dyn Watcher + Send>> {
    // Only changes count: our own reads of the folder raise access events.
    let poke = move |res: notify::Result<notify::Event>| {
        if matches!(res, Ok(ref e) if is_change(&e.kind)) {
            let _ = events.try_send(());
        }
    };
    let recommended = notify::recommended_watcher(poke.clone()).and_then(|mut w| {
        w.watch(dir, RecursiveMode::NonRecursive)?;
        Ok(Box::new(w) as Box<dyn Watcher + Send>)
    });
    match recommended {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(dir = %dir.display(), "file events unavailable ({e}); polling every {POLL_EVERY:?}");
            let config = notify::Config::default().with_poll_interval(POLL_EVERY);
            match notify::PollWatcher::new(poke, config).and_then(|mut w| {
                w.watch(dir, RecursiveMode::NonRecursive)?;
                Ok(w)
            }) {
                Ok(w) => Some(Box::new(w)),
                Err(e) => {
                    error!(dir = %dir.display(), "cannot watch the manifest folder, reloads disabled: {e}");
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookway_crds::compiler::{ConditionResult, Kind, ObjectReport};
    use hookway_crds::snapshot::ObjectKey;

    fn id(name: &str) -> ObjectId {
        ObjectId {
            kind: Kind::Route,
            key: ObjectKey::new("default", name),
        }
    }

    fn report(ok: bool) -> ObjectReport {
        let cond = if ok {
            ConditionResult::ok("Accepted", "")
        } else {
            ConditionResult::fail("InvalidSpec", "bad")
        };
        ObjectReport {
            generation: 1,
            accepted: cond,
            resolved_refs: ConditionResult::ok("ResolvedRefs", ""),
            warnings: vec![],
            chain: vec![],
            routes: 0,
            endpoints: 0,
        }
    }

    fn compiled(hash: &str, objects: &[(&str, bool)]) -> Compiled {
        let mut c = Compiled::default();
        c.snapshot.hash = hash.into();
        for (name, ok) in objects {
            c.reports.insert(id(name), report(*ok));
        }
        c
    }

    fn applied(hash: &str, rejected: &[&str]) -> Applied {
        Applied {
            version: 3,
            hash: hash.into(),
            rejected: rejected.iter().map(|n| id(n)).collect(),
            refused_hash: None,
        }
    }

    #[test]
    fn decisions() {
        let table: Vec<(&str, Applied, Compiled, Decision)> = vec![
            (
                "good change applies",
                applied("a", &[]),
                compiled("b", &[("r", true)]),
                Decision::Apply,
            ),
            (
                "same content is not re-published",
                applied("a", &[]),
                compiled("a", &[("r", true)]),
                Decision::Unchanged,
            ),
            (
                "a newly rejected object keeps the last snapshot",
                applied("a", &[]),
                compiled("b", &[("r", true), ("bad", false)]),
                Decision::Keep(vec![id("bad")]),
            ),
            (
                "an object already rejected does not block other changes",
                applied("a", &["bad"]),
                compiled("b", &[("r", true), ("bad", false)]),
                Decision::Apply,
            ),
            (
                "first load applies even with rejections",
                Applied::default(),
                compiled("b", &[("bad", false)]),
                Decision::Apply,
            ),
        ];
        for (name, applied, compiled, want) in table {
            assert_eq!(decide(&applied, &compiled), want, "{name}");
        }
    }

    #[test]
    fn only_changes_trigger_reloads() {
        use notify::event::{AccessKind, CreateKind, ModifyKind, RemoveKind};
        use notify::EventKind;
        assert!(!is_change(&EventKind::Access(AccessKind::Any)));
        assert!(is_change(&EventKind::Modify(ModifyKind::Any)));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Remove(RemoveKind::File)));
    }

    #[test]
    fn publish_bumps_version_and_records_rejections() {
        let (tx, rx) = watch_channel::channel(None);
        let mut state = Applied::default();
        publish(&mut state, compiled("h1", &[("bad", false)]), &tx);
        publish(&mut state, compiled("h2", &[("bad", false)]), &tx);
        let snapshot = rx.borrow().clone().expect("published");
        assert_eq!((snapshot.version, snapshot.hash.as_str()), (2, "h2"));
        assert!(state.rejected.contains(&id("bad")));
    }
}
