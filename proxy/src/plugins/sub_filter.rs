//! `sub_filter` (Pingap, nginx): find and replace in response bodies of chosen content types,
//! as the body streams. Text that could be the start of a match is held back until the next
//! chunk decides, so matches split across chunk boundaries are found.
//!
//! ```text
//!  carry + chunk ──▶ replace every match that ends before the hold-back window ──▶ out
//!                    └─ last `hold` bytes (or from the first undecided match) ──▶ carry
//! ```
//!
//! Hold-back: a literal needs `len - 1` bytes; a regex needs `window` bytes (its longest match;
//! longer matches can be missed across a boundary). At the end of the body everything is
//! decided.
//!
//! **Bounded look-behind**: a match that reaches into the hold-back window is held (with what
//! follows it) only while it starts at most `2 × hold` bytes before the end of the text seen;
//! a regex match still growing beyond that (`x+` over a long run of `x`) is decided as it
//! stands. So a response holds at most `2 × hold` bytes (≤ 128 KiB with `window: 65536`)
//! between chunks, whatever its body. Literal matches never reach that bound. Encoded (compressed) responses are left alone: put `compression` outside (lower
//! order than) `sub_filter`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use hookway_crds::catalogue::PluginConfig;
use http::{header, response};
use serde::Deserialize;

use crate::plugin::{BodyFilter, BuildEnv, Ctx, Plugin, PluginError, PluginFactory};

fn default_types() -> Vec<String> {
    vec!["text/html".into()]
}
fn default_window() -> usize {
    256
}

/// One find/replace rule.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The text (or regex with `regex: true`) to find.
    pub pattern: String,
    /// The replacement (`$1`, `${name}` groups for regexes).
    pub replacement: String,
    /// `pattern` is a regex (Rust `regex` syntax, on bytes).
    #[serde(default)]
    pub regex: bool,
    /// Replace only the first match in the body.
    #[serde(default)]
    pub once: bool,
}

/// The `sub_filter` config.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubFilterConfig {
    /// Rules; at each position the earliest match wins, ties go to the first rule.
    pub filters: Vec<Rule>,
    /// Media types filtered (prefix, case-insensitive). Default `text/html`.
    #[serde(default = "default_types")]
    pub types: Vec<String>,
    /// Longest regex match to expect across a chunk boundary (bytes).
    #[serde(default = "default_window")]
    pub window: usize,
}

enum Matcher {
    Literal(Box<memchr::memmem::Finder<'static>>, Vec<u8>),
    Regex(regex::bytes::Regex, Vec<u8>),
}

struct CompiledRule {
    matcher: Matcher,
    once: bool,
}

/// A running `sub_filter`.
pub struct SubFilter {
    rules: Arc<[CompiledRule]>,
    types: Vec<String>,
    hold: usize,
}

impl SubFilterConfig {
    fn compile(&self) -> Result<SubFilter, String> {
        if self.filters.is_empty() {
            return Err("filters: at least one rule".into());
        }
        if self.window == 0 || self.window > 64 * 1024 {
            return Err(format!("window: {} is not in 1-65536", self.window));
        }
        let mut rules = Vec::with_capacity(self.filters.len());
        let mut hold = 0;
        for (i, r) in self.filters.iter().enumerate() {
            if r.pattern.is_empty() {
                return Err(format!("filters[{i}].pattern: must not be empty"));
            }
            let matcher = if r.regex {
                let re = regex::bytes::Regex::new(&r.pattern)
                    .map_err(|e| format!("filters[{i}].pattern: {e}"))?;
                if re.is_match(b"") {
                    return Err(format!("filters[{i}].pattern: matches the empty string"));
                }
                hold = hold.max(self.window);
                Matcher::Regex(re, r.replacement.clone().into_bytes())
            } else {
                hold = hold.max(r.pattern.len() - 1);
                Matcher::Literal(
                    Box::new(memchr::memmem::Finder::new(r.pattern.as_bytes()).into_owned()),
                    r.replacement.clone().into_bytes(),
                )
            };
            rules.push(CompiledRule {
                matcher,
                once: r.once,
            });
        }
        for (i, t) in self.types.iter().enumerate() {
            if t.trim().is_empty() {
                return Err(format!("types[{i}]: empty content type"));
            }
        }
        Ok(SubFilter {
            rules: rules.into(),
            types: self
                .types
                .iter()
                .map(|t| t.trim().to_ascii_lowercase())
                .collect(),
            hold,
        })
    }
}

impl PluginConfig for SubFilterConfig {
    fn validate(&self) -> Result<(), String> {
        self.compile().map(|_| ())
    }
}

impl PluginFactory for SubFilter {
    const NAME: &'static str = "sub_filter";
    type Config = SubFilterConfig;

    fn build(config: Self::Config, _env: &BuildEnv<'_>) -> Result<Arc<dyn Plugin>, String> {
        Ok(Arc::new(config.compile()?))
    }
}

impl Plugin for SubFilter {
    fn response_body_filter(
        &self,
        resp: &response::Parts,
        _ctx: &mut Ctx,
    ) -> Option<Box<dyn BodyFilter>> {
        if resp.headers.contains_key(header::CONTENT_ENCODING) {
            return None;
        }
        let ct = resp.headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let media = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !self.types.iter().any(|t| media.starts_with(t.as_str())) {
            return None;
        }
        Some(Box::new(Replacer {
            rules: Arc::clone(&self.rules),
            used: vec![false; self.rules.len()],
            hold: self.hold,
            carry: BytesMut::new(),
        }))
    }
}

/// One response's streaming replacer.
struct Replacer {
    rules: Arc<[CompiledRule]>,
    /// `once` rules that already replaced.
    used: Vec<bool>,
    hold: usize,
    carry: BytesMut,
}

impl Replacer {
    /// The earliest match at or after `from`: (rule, start, end).
    fn next_match(&self, buf: &[u8], from: usize) -> Option<(usize, usize, usize)> {
        let mut best: Option<(usize, usize, usize)> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.once && self.used[i] {
                continue;
            }
            let found = match &rule.matcher {
                Matcher::Literal(f, _) => f
                    .find(&buf[from..])
                    .map(|s| (from + s, from + s + f.needle().len())),
                Matcher::Regex(re, _) => re.find_at(buf, from).map(|m| (m.start(), m.end())),
            };
            if let Some((s, e)) = found {
                if best.is_none_or(|(_, bs, _)| s < bs) {
                    best = Some((i, s, e));
                }
            }
        }
        best
    }

    fn replace_into(&self, rule: usize, buf: &[u8], start: usize, out: &mut Vec<u8>) {
        match &self.rules[rule].matcher {
            Matcher::Literal(_, rep) => out.extend_from_slice(rep),
            Matcher::Regex(re, rep) => {
                if let Some(caps) = re.captures_at(buf, start) {
                    caps.expand(rep, out);
                }
            }
        }
    }

    /// The most bytes kept between chunks (see the module documentation).
    fn max_carry(&self) -> usize {
        2 * self.hold
    }

    /// Processes the carry; keeps the undecided tail unless `end`.
    fn process(&mut self, end: bool) -> Bytes {
        let buf = std::mem::take(&mut self.carry).freeze();
        let mut safe_end = if end {
            buf.len()
        } else {
            buf.len().saturating_sub(self.hold)
        };
        let mut out = Vec::with_capacity(buf.len());
        let mut pos = 0;
        while pos < buf.len() {
            let Some((rule, s, e)) = self.next_match(&buf, pos) else {
                break;
            };
            // A match reaching into the hold-back window may still grow (or belong to a longer
            // match): decide it with the next chunk.
            if !end && e > safe_end && buf.len() - s <= self.max_carry() {
                safe_end = safe_end.min(s).max(pos);
                break;
            }
            out.extend_from_slice(&buf[pos..s]);
            self.replace_into(rule, &buf, s, &mut out);
            if self.rules[rule].once {
                self.used[rule] = true;
            }
            pos = e;
        }
        let safe_end = safe_end.max(pos);
        out.extend_from_slice(&buf[pos..safe_end]);
        self.carry.extend_from_slice(&buf[safe_end..]);
        Bytes::from(out)
    }
}

impl BodyFilter for Replacer {
    fn on_chunk(&mut self, chunk: Bytes) -> Result<Bytes, PluginError> {
        self.carry.extend_from_slice(&chunk);
        Ok(self.process(false))
    }

    fn on_end(&mut self) -> Result<Option<Bytes>, PluginError> {
        Ok(Some(self.process(true)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::harness::{build, concat, ctx, drive, response, validate};
    use serde_json::json;

    fn filtered(config: serde_json::Value, ct: &str, chunks: &[&[u8]]) -> Option<String> {
        filtered_by(&*build("sub_filter", config).unwrap(), ct, chunks)
    }

    /// What one built instance makes of a body arriving in `chunks` (building — validation
    /// included — is the slow part; tests that try many splits build once).
    fn filtered_by(plugin: &dyn Plugin, ct: &str, chunks: &[&[u8]]) -> Option<String> {
        let resp = response(200, &[("content-type", ct)]);
        let mut f = plugin.response_body_filter(&resp, &mut ctx())?;
        Some(String::from_utf8(concat(&drive(f.as_mut(), chunks).unwrap())).unwrap())
    }

    #[test]
    fn a_growing_regex_match_holds_back_a_bounded_tail() {
        let config: SubFilterConfig = serde_json::from_value(
            json!({"filters": [{"pattern": "x+", "replacement": "X", "regex": true}], "window": 8}),
        )
        .unwrap();
        let filter = config.compile().unwrap();
        let mut r = Replacer {
            rules: Arc::clone(&filter.rules),
            used: vec![false],
            hold: filter.hold,
            carry: BytesMut::new(),
        };
        let mut out = Vec::new();
        for _ in 0..1_000 {
            out.extend_from_slice(&r.on_chunk(Bytes::from(vec![b'x'; 100])).unwrap());
            assert!(r.carry.len() <= 16, "held {} bytes", r.carry.len());
        }
        out.extend_from_slice(&r.on_end().unwrap().unwrap_or_default());
        // The run was cut into decided matches, each replaced.
        assert!(out.iter().all(|b| *b == b'X'));
        assert!(!out.is_empty());
    }

    #[test]
    fn literal_across_every_split() {
        let body = b"<a href=\"http://old.example/x\">http://old.example</a>";
        let cfg = json!({"filters": [{"pattern": "http://old.example", "replacement": "https://new.example"}]});
        let expect = "<a href=\"https://new.example/x\">https://new.example</a>";
        let plugin = build("sub_filter", cfg).unwrap();
        for split in 0..=body.len() {
            for split2 in split..=body.len() {
                let out = filtered_by(
                    &*plugin,
                    "text/html; charset=utf-8",
                    &[&body[..split], &body[split..split2], &body[split2..]],
                )
                .unwrap();
                assert_eq!(out, expect, "split at {split}/{split2}");
            }
        }
    }

    #[test]
    fn regex_with_groups_across_chunks_and_once() {
        let cfg = json!({"filters": [{"pattern": "v(\\d+)\\.(\\d+)", "replacement": "version $1-$2", "regex": true}]});
        assert_eq!(
            filtered(cfg, "text/plain", &[b"use v1", b".2 and v3.", b"4!"]),
            None,
            "text/plain not listed"
        );
        let cfg = json!({"filters": [{"pattern": "v(\\d+)\\.(\\d+)", "replacement": "version $1-$2", "regex": true}], "types": ["text/"]});
        assert_eq!(
            filtered(cfg, "text/plain", &[b"use v1", b".2 and v3.", b"4!"]).unwrap(),
            "use version 1-2 and version 3-4!"
        );
        let once = json!({"filters": [{"pattern": "a", "replacement": "b", "once": true}], "types": ["text/"]});
        assert_eq!(filtered(once, "text/plain", &[b"aa", b"a"]).unwrap(), "baa");
    }

    #[test]
    fn several_rules_earliest_first_and_data_streams_out() {
        let cfg = json!({"filters": [{"pattern": "cat", "replacement": "dog"}, {"pattern": "ca", "replacement": "XX"}]});
        assert_eq!(
            filtered(cfg.clone(), "text/html", &[b"a cat, a car"]).unwrap(),
            "a dog, a XXr"
        );
        // Output is not held beyond the hold-back window.
        let plugin = build("sub_filter", cfg).unwrap();
        let mut f = plugin
            .response_body_filter(&response(200, &[("content-type", "text/html")]), &mut ctx())
            .unwrap();
        assert_eq!(
            f.on_chunk(Bytes::from_static(b"hello world")).unwrap(),
            "hello wor"
        );
    }

    #[test]
    fn encoded_or_other_types_are_left_alone() {
        let plugin = build(
            "sub_filter",
            json!({"filters": [{"pattern": "a", "replacement": "b"}]}),
        )
        .unwrap();
        assert!(plugin
            .response_body_filter(
                &response(
                    200,
                    &[("content-type", "text/html"), ("content-encoding", "gzip")]
                ),
                &mut ctx()
            )
            .is_none());
        assert!(plugin
            .response_body_filter(
                &response(200, &[("content-type", "application/json")]),
                &mut ctx()
            )
            .is_none());
        assert!(plugin
            .response_body_filter(&response(200, &[]), &mut ctx())
            .is_none());
    }

    #[test]
    fn config_errors_are_reported() {
        for (config, needle) in [
            (json!({"filters": []}), "at least one"),
            (
                json!({"filters": [{"pattern": "", "replacement": "x"}]}),
                "filters[0].pattern",
            ),
            (
                json!({"filters": [{"pattern": "(", "replacement": "x", "regex": true}]}),
                "filters[0].pattern",
            ),
            (
                json!({"filters": [{"pattern": "a*", "replacement": "x", "regex": true}]}),
                "empty string",
            ),
            (
                json!({"filters": [{"pattern": "a", "replacement": "x"}], "window": 0}),
                "window",
            ),
            (
                json!({"filters": [{"pattern": "a", "replacement": "x", "flags": "g"}]}),
                "unknown field",
            ),
        ] {
            let err = validate("sub_filter", config.clone()).unwrap_err();
            assert!(err.contains(needle), "{config}: {err}");
        }
    }
}
