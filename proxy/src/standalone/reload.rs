//! Watching the manifest folder: recompile on change and publish every change, file by file
//! and object by object.
//!
//! Failure stays local, as with a controller: a file that cannot be decoded is reported and its
//! last good version is used (nothing from it if it never loaded); an object the compiler
//! rejects is reported and left out with what depends on it; every other change in the folder
//! applies. Identical results (same content hash) are not re-published. New problems are logged
//! once, at `error` level; problems that persist are not logged again on every reload.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hookway_crds::compiler::{Compiled, ObjectId};
use hookway_crds::{Catalogue, Snapshot};
use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch as watch_channel};
use tracing::{error, info, warn};

use super::{BrokenFile, Folder, LoadError, StandaloneOptions};

/// How long to wait for a burst of file events to settle before reloading.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// Polling period when the OS file-event API is unavailable.
const POLL_EVERY: Duration = Duration::from_secs(2);

/// What the watcher published last, and the problems it reported.
#[derive(Debug, Default)]
pub struct Applied {
    /// Version of the published snapshot (0: none yet).
    pub version: u64,
    /// Its content hash.
    pub hash: String,
    /// Objects rejected in the last compile.
    pub rejected: BTreeSet<ObjectId>,
    /// Broken files reported by the last reload (`path: error`).
    pub broken: BTreeSet<String>,
}

/// The outcome of a reload.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Publish the new snapshot.
    Apply,
    /// Same content as the published snapshot.
    Unchanged,
}

/// Decides whether `compiled` is published: whenever its content differs from what is.
pub fn decide(applied: &Applied, compiled: &Compiled) -> Decision {
    if applied.version > 0 && compiled.snapshot.hash == applied.hash {
        Decision::Unchanged
    } else {
        Decision::Apply
    }
}

/// Logs the objects the compiler rejected that `applied` did not already report (at `error`
/// level, with the reason), and every warning of a newly rejected or changed compile.
pub fn log_reports(applied: &Applied, compiled: &Compiled) {
    for (id, report) in &compiled.reports {
        let object = format!("{:?} {}", id.kind, id.key);
        let known = applied.rejected.contains(id);
        if !report.accepted.status && !known {
            error!(%object, reason = %report.accepted.reason, "rejected and left out: {}", report.accepted.message);
        } else if !report.resolved_refs.status && !known {
            error!(%object, reason = %report.resolved_refs.reason, "unresolved and left out: {}", report.resolved_refs.message);
        }
        for warning in &report.warnings {
            info!(%object, "warning: {warning}");
        }
    }
}

/// Logs the broken files `applied` did not already report; returns the set now reported.
fn log_broken(applied: &Applied, broken: &[BrokenFile]) -> BTreeSet<String> {
    let now: BTreeSet<String> = broken
        .iter()
        .map(|b| format!("{}: {}", b.path.display(), b.error))
        .collect();
    for b in broken {
        if !applied
            .broken
            .contains(&format!("{}: {}", b.path.display(), b.error))
        {
            error!(file = %b.path.display(), kept_previous = b.kept_previous, "manifest file not applied: {b}");
        }
    }
    now
}

/// Loads `dir`, publishes its snapshot, then watches the folder and publishes every change
/// until `tx` has no receivers. Fails only when the folder cannot be listed at first.
pub async fn watch(
    dir: PathBuf,
    options: StandaloneOptions,
    catalogue: Catalogue,
    tx: watch_channel::Sender<Option<Arc<Snapshot>>>,
) -> Result<(), LoadError> {
    let mut applied = Applied::default();
    let mut folder = Folder::default();
    let (compiled, broken) = folder.compile(&dir, &options, &catalogue)?;
    applied.broken = log_broken(&applied, &broken);
    log_reports(&applied, &compiled);
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
        reload(&dir, &options, &catalogue, &mut folder, &mut applied, &tx);
    }
    Ok(())
}

fn reload(
    dir: &Path,
    options: &StandaloneOptions,
    catalogue: &Catalogue,
    folder: &mut Folder,
    applied: &mut Applied,
    tx: &watch_channel::Sender<Option<Arc<Snapshot>>>,
) {
    let (compiled, broken) = match folder.compile(dir, options, catalogue) {
        Ok(result) => result,
        Err(e) => {
            warn!(dir = %dir.display(), version = applied.version, "cannot list the manifest folder; keeping the published snapshot: {e}");
            return;
        }
    };
    applied.broken = log_broken(applied, &broken);
    match decide(applied, &compiled) {
        Decision::Apply => {
            log_reports(applied, &compiled);
            publish(applied, compiled, tx);
        }
        Decision::Unchanged => {}
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
    applied.rejected = compiled
        .reports
        .iter()
        .filter(|(_, r)| !r.is_ok())
        .map(|(id, _)| id.clone())
        .collect();
    info!(version = snapshot.version, hash = %snapshot.hash, routes = snapshot.routes.len(), rejected = applied.rejected.len(), "snapshot compiled from manifests");
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
            broken: BTreeSet::new(),
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
                "a newly rejected object does not hold back the other changes",
                applied("a", &[]),
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
