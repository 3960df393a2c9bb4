//! `LabelSelector` matching against a namespace's labels (for `policy.namespaces`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Checks a selector is well-formed: known operators, values present for `In`/`NotIn` and
/// absent for `Exists`/`DoesNotExist`.
pub(crate) fn validate(selector: &LabelSelector) -> Result<(), String> {
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "policy.namespaces.matchExpressions[{i}]: operator {} needs values",
                    req.operator
                ))
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!(
                    "policy.namespaces.matchExpressions[{i}]: operator {} takes no values",
                    req.operator
                ))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(format!(
                    "policy.namespaces.matchExpressions[{i}]: unknown operator {other:?} (expected In, NotIn, Exists or DoesNotExist)"
                ))
            }
        }
    }
    Ok(())
}

/// Whether `labels` satisfy `selector` (every `matchLabels` pair and every expression). An
/// empty selector matches everything; an unknown operator matches nothing (fail closed).
pub(crate) fn matches(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let get = |key: &str| labels.and_then(|l| l.get(key));
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| get(k) == Some(v));
    labels_ok
        && selector.match_expressions.iter().flatten().all(|req| {
            let values = req.values.as_deref().unwrap_or_default();
            let value = get(&req.key);
            match req.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn table() {
        let team_a = labels(&[("team", "a"), ("env", "prod")]);
        let sel = |ml: &[(&str, &str)], ex: Vec<LabelSelectorRequirement>| LabelSelector {
            match_labels: (!ml.is_empty()).then(|| labels(ml)),
            match_expressions: (!ex.is_empty()).then_some(ex),
        };
        let cases = [
            (sel(&[], vec![]), Some(&team_a), true),
            (sel(&[], vec![]), None, true),
            (sel(&[("team", "a")], vec![]), Some(&team_a), true),
            (sel(&[("team", "b")], vec![]), Some(&team_a), false),
            (sel(&[("team", "a")], vec![]), None, false),
            (
                sel(&[], vec![expr("env", "In", &["prod", "stg"])]),
                Some(&team_a),
                true,
            ),
            (
                sel(&[], vec![expr("env", "In", &["stg"])]),
                Some(&team_a),
                false,
            ),
            (
                sel(&[], vec![expr("env", "NotIn", &["stg"])]),
                Some(&team_a),
                true,
            ),
            (sel(&[], vec![expr("env", "NotIn", &["stg"])]), None, true),
            (
                sel(&[], vec![expr("env", "Exists", &[])]),
                Some(&team_a),
                true,
            ),
            (
                sel(&[], vec![expr("x", "Exists", &[])]),
                Some(&team_a),
                false,
            ),
            (
                sel(&[], vec![expr("x", "DoesNotExist", &[])]),
                Some(&team_a),
                true,
            ),
            (
                sel(&[], vec![expr("x", "Bogus", &[])]),
                Some(&team_a),
                false,
            ),
        ];
        for (i, (s, l, want)) in cases.iter().enumerate() {
            assert_eq!(matches(s, *l), *want, "case {i}");
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let bad = LabelSelector {
            match_expressions: Some(vec![expr("x", "Bogus", &[])]),
            ..Default::default()
        };
        assert!(validate(&bad).unwrap_err().contains("unknown operator"));
        let no_values = LabelSelector {
            match_expressions: Some(vec![expr("x", "In", &[])]),
            ..Default::default()
        };
        assert!(validate(&no_values).unwrap_err().contains("needs values"));
    }
}
