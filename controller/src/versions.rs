//! The last [`WINDOW`] snapshot versions this replica published, with their content hashes.
//!
//! Two uses:
//! - **lag**: how many published versions are newer than the one a proxy applied
//!   ([`Published::lag`]); a proxy older than the window reports `WINDOW` ("that many or more"),
//!   a proxy that applied nothing reports every version in the window;
//! - **translation**: replicas compile independently, so the same content carries different
//!   version numbers on each of them. A proxy connected to another replica is matched by the
//!   content hash it applied ([`Published::version_of`]).

use std::collections::VecDeque;

/// How many published versions are remembered.
pub const WINDOW: usize = 64;

/// The last published versions, oldest first. Cheap to clone (at most [`WINDOW`] entries).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    versions: VecDeque<(u64, String)>,
}

impl Published {
    /// Records a published snapshot. Versions only grow; an older or repeated one is ignored.
    pub fn push(&mut self, version: u64, hash: &str) {
        if self.versions.back().is_some_and(|(v, _)| *v >= version) {
            return;
        }
        if self.versions.len() == WINDOW {
            self.versions.pop_front();
        }
        self.versions.push_back((version, hash.to_string()));
    }

    /// The newest published version.
    pub fn current(&self) -> Option<u64> {
        self.versions.back().map(|(v, _)| *v)
    }

    /// Published versions newer than `applied` (all of them when nothing was applied).
    /// At most [`WINDOW`]: a proxy older than the window is "`WINDOW` or more" behind.
    pub fn lag(&self, applied: Option<u64>) -> u64 {
        let newer = match applied {
            None => self.versions.len(),
            Some(applied) => self.versions.iter().filter(|(v, _)| *v > applied).count(),
        };
        newer as u64
    }

    /// The newest version this replica published with content `hash`, if still in the window.
    pub fn version_of(&self, hash: &str) -> Option<u64> {
        self.versions
            .iter()
            .rev()
            .find(|(_, h)| h == hash)
            .map(|(v, _)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(versions: impl IntoIterator<Item = u64>) -> Published {
        let mut p = Published::default();
        for v in versions {
            p.push(v, &format!("h{v}"));
        }
        p
    }

    #[test]
    fn lag_counts_newer_published_versions() {
        let w = window([10, 20, 30, 40]);
        for (applied, want, why) in [
            (Some(40), 0, "holds the current version"),
            (Some(45), 0, "newer than anything published here"),
            (Some(30), 1, "one behind"),
            (Some(25), 2, "between two versions (skipped one)"),
            (Some(10), 3, "oldest in the window"),
            (Some(5), 4, "older than every version published here"),
            (None, 4, "applied nothing"),
        ] {
            assert_eq!(w.lag(applied), want, "{why}");
        }
    }

    #[test]
    fn the_window_keeps_the_last_versions_only() {
        let w = window(1..=(WINDOW as u64 + 10));
        assert_eq!(
            w.lag(Some(1)),
            WINDOW as u64,
            "older than the window: WINDOW+"
        );
        assert_eq!(w.lag(None), WINDOW as u64);
        assert_eq!(w.current(), Some(WINDOW as u64 + 10));
        assert_eq!(w.version_of("h1"), None, "fell out of the window");
        assert_eq!(w.version_of("h20"), Some(20));
    }

    #[test]
    fn versions_only_grow_and_the_newest_hash_wins() {
        let mut w = window([10, 20]);
        w.push(15, "late");
        w.push(20, "again");
        assert_eq!(w.lag(Some(10)), 1, "stale and repeated versions ignored");
        w.push(30, "h10");
        assert_eq!(w.version_of("h10"), Some(30), "same content republished");
    }
}
