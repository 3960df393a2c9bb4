//! Doc comments as paragraphs.
//!
//! Field docs become CRD descriptions, and `kubectl explain` re-wraps each description line to
//! the terminal's width. A doc comment's own hard wraps (at 100 columns in this source) would
//! show as lines broken in mid-sentence, so they are joined as controller-gen joins Go comments:
//! the lines of a paragraph become one line, a blank line stays a paragraph break. Markdown that
//! needs its lines keeps them: each list item starts a line (its wrapped continuation is joined
//! to it), and fenced or indented code blocks stay verbatim.

/// Joins the hard-wrapped lines of `text` into paragraphs (see the module docs).
pub fn paragraphs(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    // Whether the next prose line continues the last output line.
    let mut continues = false;
    let mut fenced = false;
    for line in text.lines() {
        let line = line.trim_end();
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            out.push(line.to_string());
            continues = false;
        } else if fenced {
            out.push(line.to_string());
        } else if trimmed.is_empty() {
            if out.last().is_some_and(|l| !l.is_empty()) {
                out.push(String::new());
            }
            continues = false;
        } else if is_list_item(trimmed) {
            out.push(line.to_string());
            continues = true;
        } else if continues {
            let last = out.last_mut().expect("a line to continue");
            last.push(' ');
            last.push_str(trimmed);
        } else if line.starts_with("    ") {
            // An indented code block (it cannot interrupt a paragraph, as in Markdown).
            out.push(line.to_string());
        } else {
            out.push(trimmed.to_string());
            continues = true;
        }
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out.join("\n")
}

/// `- item`, `* item`, `+ item`, `1. item` or `1) item`.
fn is_list_item(line: &str) -> bool {
    if let Some(rest) = line.strip_prefix(['-', '*', '+']) {
        return rest.starts_with(' ');
    }
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    digits > 0 && {
        let rest = &line[digits..];
        (rest.starts_with(". ") || rest.starts_with(") ")) && digits <= 9
    }
}

#[cfg(test)]
mod tests {
    use super::paragraphs;

    #[test]
    fn hard_wraps_are_joined_and_paragraphs_kept() {
        let cases: &[(&str, &str, &str)] = &[
            ("one line", "TCP port.", "TCP port."),
            (
                "a wrapped sentence",
                "A request matches when its host matches (or `hosts` is empty) and it\nmatches a rule.",
                "A request matches when its host matches (or `hosts` is empty) and it matches a rule.",
            ),
            (
                "two paragraphs",
                "Routes requests.\n\nA request matches when\nits host matches.",
                "Routes requests.\n\nA request matches when its host matches.",
            ),
            (
                "runs of blank lines and trailing blanks collapse",
                "First.\n\n\n\nSecond\nline.\n\n",
                "First.\n\nSecond line.",
            ),
            (
                "trailing spaces are not doubled",
                "ends with a space \nand goes on",
                "ends with a space and goes on",
            ),
            (
                "a list keeps one item per line, continuations joined",
                "Tiers:\n- `route`: the Route\n  itself\n- `cluster`: the root\nnamespace\n\n1. first\n2) second",
                "Tiers:\n- `route`: the Route itself\n- `cluster`: the root namespace\n\n1. first\n2) second",
            ),
            (
                "a fenced block stays verbatim",
                "Example:\n```yaml\nhosts:\n  - a.example.com\n```\nAfter\nit.",
                "Example:\n```yaml\nhosts:\n  - a.example.com\n```\nAfter it.",
            ),
            (
                "an indented block after a blank line stays verbatim",
                "Example:\n\n    kubectl get hrt\n    kubectl get gwp\n\nDone.",
                "Example:\n\n    kubectl get hrt\n    kubectl get gwp\n\nDone.",
            ),
            (
                "a hyphen inside a sentence is not a list",
                "values from 1\n-5 and a\n-flag",
                "values from 1 -5 and a -flag",
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(paragraphs(input), *want, "{name}");
        }
    }
}
