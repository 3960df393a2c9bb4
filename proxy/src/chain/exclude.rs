//! `exclude_paths`: per-link path patterns for which the link is skipped.
//!
//! A pattern is a path where `*` stands for any run of characters, `/` included
//! (`/health*`, `/api/*/public`, `*.png`). Everything else is literal and the whole path must
//! match. Patterns are compiled once, when the chain is built; matching allocates nothing.

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathPattern {
    /// No `*`: the path must equal it.
    Exact(Box<str>),
    /// Literal pieces between `*`s: the first is a prefix (empty when the pattern starts with
    /// `*`), the last a suffix (empty when it ends with `*`), the middle ones found in order.
    Glob(Box<[Box<str>]>),
}

impl PathPattern {
    /// Compiles `pattern`.
    pub(crate) fn new(pattern: &str) -> Self {
        if !pattern.contains('*') {
            return PathPattern::Exact(pattern.into());
        }
        // `**` yields an empty middle piece, which matches anywhere: the same as `*`.
        let pieces: Vec<Box<str>> = pattern.split('*').map(Into::into).collect();
        PathPattern::Glob(pieces.into())
    }

    /// Whether `path` matches.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(p) => **p == *path,
            PathPattern::Glob(pieces) => glob_matches(pieces, path),
        }
    }
}

/// `pieces` has at least two elements (a pattern with one `*` splits in two).
fn glob_matches(pieces: &[Box<str>], path: &str) -> bool {
    let (first, rest) = match pieces.split_first() {
        Some(split) => split,
        None => return false,
    };
    let (last, middle) = match rest.split_last() {
        Some(split) => split,
        None => return **first == *path,
    };
    if path.len() < first.len() + last.len()
        || !path.starts_with(&**first)
        || !path.ends_with(&**last)
    {
        return false;
    }
    // The middle pieces must appear in order between the prefix and the suffix; taking the
    // leftmost occurrence of each is optimal for `*`-only globs.
    let mut window = &path[first.len()..path.len() - last.len()];
    for piece in middle {
        match window.find(&**piece) {
            Some(at) => window = &window[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// The compiled `exclude_paths` of one link.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExcludePaths {
    patterns: Box<[PathPattern]>,
}

impl ExcludePaths {
    /// Compiles every pattern.
    pub(crate) fn new(patterns: &[String]) -> Self {
        Self {
            patterns: patterns.iter().map(|p| PathPattern::new(p)).collect(),
        }
    }

    /// Whether there is no pattern at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` matches one of the patterns.
    pub(crate) fn matches(&self, path: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_documented() {
        let table = [
            ("/healthz", "/healthz", true),
            ("/healthz", "/healthz/", false),
            ("/health*", "/healthz", true),
            ("/health*", "/health", true),
            ("/health*", "/heal", false),
            ("/api/*/public", "/api/v1/public", true),
            ("/api/*/public", "/api/v1/v2/public", true),
            ("/api/*/public", "/api/public", false),
            ("*.png", "/img/a.png", true),
            ("*.png", "/img/a.png.txt", false),
            ("*", "/anything", true),
            ("/a*b*c", "/abc", true),
            ("/a*b*c", "/a-c-b", false),
            ("/a*a", "/a", false),
            ("/a**", "/a/b", true),
        ];
        for (pattern, path, expected) in table {
            assert_eq!(
                PathPattern::new(pattern).matches(path),
                expected,
                "{pattern} vs {path}"
            );
        }
    }

    #[test]
    fn any_pattern_excludes() {
        let ex = ExcludePaths::new(&["/a".into(), "/b/*".into()]);
        assert!(ex.matches("/b/c"));
        assert!(ex.matches("/a"));
        assert!(!ex.matches("/c"));
        assert!(ExcludePaths::new(&[]).is_empty());
    }
}
