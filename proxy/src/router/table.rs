//! The candidates of one host (or of the any-host set), ordered by path specificity:
//! Exact paths by hash, Prefix paths in a segment trie (deepest first), Regex paths last.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use regex::Regex;

use super::rule::Conditions;

/// Candidates at one specificity level, sorted by [`Conditions::precedence`].
type Candidates = Vec<Arc<Conditions>>;

#[derive(Default, Debug)]
struct PrefixNode {
    children: HashMap<Box<str>, PrefixNode>,
    here: Candidates,
}

/// The rules that apply to one host.
#[derive(Default, Debug)]
pub struct HostTable {
    exact: HashMap<Box<str>, Candidates>,
    prefixes: PrefixNode,
    regexes: Vec<(Regex, Arc<Conditions>)>,
}

/// Non-empty segments of a path (`/a//b/` -> `a`, `b`).
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

impl HostTable {
    pub(super) fn add_exact(&mut self, path: &str, c: Arc<Conditions>) {
        self.exact.entry(path.into()).or_default().push(c);
    }

    pub(super) fn add_prefix(&mut self, path: &str, c: Arc<Conditions>) {
        let mut node = &mut self.prefixes;
        for seg in segments(path) {
            node = node.children.entry(seg.into()).or_default();
        }
        node.here.push(c);
    }

    pub(super) fn add_regex(&mut self, re: Regex, c: Arc<Conditions>) {
        self.regexes.push((re, c));
    }

    /// Sorts every candidate list by precedence; called once after all rules are added.
    pub(super) fn finish(&mut self) {
        fn sort(list: &mut Candidates) {
            list.sort_by(|a, b| a.precedence(b));
        }
        fn sort_node(node: &mut PrefixNode) {
            sort(&mut node.here);
            node.children.values_mut().for_each(sort_node);
        }
        self.exact.values_mut().for_each(sort);
        sort_node(&mut self.prefixes);
        self.regexes.sort_by(|a, b| a.1.precedence(&b.1));
    }

    /// The route of the best matching rule in this table.
    pub(super) fn find(
        &self,
        method: &http::Method,
        path: &str,
        headers: &HeaderMap,
        query: Option<&str>,
        tls: bool,
        host: &str,
    ) -> Option<usize> {
        let first = |list: &Candidates| {
            list.iter()
                .find(|c| c.matches(method, headers, query, tls, host))
                .map(|c| c.route)
        };
        if let Some(route) = self.exact.get(path).and_then(first) {
            return Some(route);
        }
        // Walk the trie along the path, remembering the nodes passed; try deepest first.
        let mut trail: [Option<&PrefixNode>; 16] = [None; 16];
        let mut depth = 0;
        let mut node = &self.prefixes;
        trail[0] = Some(node);
        let mut overflow: Vec<&PrefixNode> = Vec::new();
        for seg in segments(path) {
            match node.children.get(seg) {
                Some(next) => {
                    node = next;
                    depth += 1;
                    if depth < trail.len() {
                        trail[depth] = Some(node);
                    } else {
                        overflow.push(node);
                    }
                }
                None => break,
            }
        }
        for n in overflow.iter().rev() {
            if let Some(route) = first(&n.here) {
                return Some(route);
            }
        }
        for n in trail[..=depth.min(trail.len() - 1)].iter().rev().flatten() {
            if let Some(route) = first(&n.here) {
                return Some(route);
            }
        }
        self.regexes
            .iter()
            .find(|(re, c)| re.is_match(path) && c.matches(method, headers, query, tls, host))
            .map(|(_, c)| c.route)
    }
}
