//! Which optional phases a plugin implements, so the chain can skip the others.
//!
//! The request and response head hooks are always called. The body hooks and the completion
//! hook cost something per request even when a plugin leaves them at their no-op defaults: the
//! runner asks every plugin for body filters, and keeps a completion tracker (and its timer) on
//! every response. A plugin that declares it has none of them is skipped there; with no
//! completion hook among the plugins that ran, the response body goes to the client untouched.
//!
//! The default, [`Phases::ALL`], is always correct. Debug builds check part of a narrower
//! declaration: a plugin that declares no body phase but returns a body filter or a body limit
//! fails an assertion.

use std::ops::BitOr;

/// A set of optional phases (empty, i.e. [`Phases::HEADS`], by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phases(u8);

impl Phases {
    /// Only the head hooks (`on_request`, `on_response`).
    pub const HEADS: Phases = Phases(0);
    /// `request_body_filter`, `request_body_stream`, `request_body_limit` / `on_request_body`.
    pub const REQUEST_BODY: Phases = Phases(1);
    /// `response_body_filter`, `response_body_stream`.
    pub const RESPONSE_BODY: Phases = Phases(1 << 1);
    /// `on_complete`.
    pub const COMPLETE: Phases = Phases(1 << 2);
    /// Everything (the default).
    pub const ALL: Phases = Phases(0b111);

    /// Every phase of `self` and of `other` (`|` in const contexts).
    pub const fn union(self, other: Phases) -> Phases {
        Phases(self.0 | other.0)
    }

    /// Whether every phase of `other` is in `self`.
    pub const fn contains(self, other: Phases) -> bool {
        self.0 & other.0 == other.0
    }

    /// The hooks of this set by name, in run order, as the catalogue document lists them: the
    /// head hooks (`request_head`, `response_head`), always called, then `request_body`,
    /// `response_body` and `completion` when in the set.
    pub fn names(self) -> Vec<&'static str> {
        let mut names = vec!["request_head"];
        if self.contains(Phases::REQUEST_BODY) {
            names.push("request_body");
        }
        names.push("response_head");
        if self.contains(Phases::RESPONSE_BODY) {
            names.push("response_body");
        }
        if self.contains(Phases::COMPLETE) {
            names.push("completion");
        }
        names
    }
}

impl BitOr for Phases {
    type Output = Phases;

    fn bitor(self, rhs: Phases) -> Phases {
        Phases(self.0 | rhs.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_combine_and_contain() {
        let body = Phases::REQUEST_BODY | Phases::RESPONSE_BODY;
        assert!(body.contains(Phases::REQUEST_BODY));
        assert!(body.contains(Phases::RESPONSE_BODY));
        assert!(!body.contains(Phases::COMPLETE));
        assert!(Phases::ALL.contains(body | Phases::COMPLETE));
        assert!(Phases::HEADS.contains(Phases::HEADS));
        assert!(!Phases::HEADS.contains(Phases::COMPLETE));
        for (phases, names) in [
            (Phases::HEADS, &["request_head", "response_head"][..]),
            (
                Phases::REQUEST_BODY,
                &["request_head", "request_body", "response_head"],
            ),
            (
                Phases::ALL,
                &[
                    "request_head",
                    "request_body",
                    "response_head",
                    "response_body",
                    "completion",
                ],
            ),
        ] {
            assert_eq!(phases.names(), names, "{phases:?}");
        }
    }
}
