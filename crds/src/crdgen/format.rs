//! Only the `format`s Kubernetes knows.
//!
//! schemars names Rust's integer widths (`uint16`, `uint32`, …); the API server accepts any format
//! but answers every write of a CRD carrying one it does not recognise with a
//! `Warning: unrecognized format "uint32"` header, which `kubectl apply` prints to every user.
//! The unknown integer formats become the smallest Kubernetes format that holds the Rust type
//! (`int32` or `int64`), and the type's range moves into `minimum`/`maximum` (intersected with the
//! bounds already declared), so the API server still refuses what the Rust type could not hold.
//! Other unknown formats are dropped.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;

/// The formats the Kubernetes API server recognises in CRD schemas (each one applied to a real
/// kube-apiserver without a warning; see `tests/tests/all/real_api.rs`).
pub const KNOWN: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "date",
    "date-time",
    "datetime",
    "duration",
    "password",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
];

/// What an integer format of Rust's becomes: the Kubernetes format and the type's own range.
fn integer_format(format: &str) -> Option<(&'static str, f64, Option<f64>)> {
    Some(match format {
        "int8" => ("int32", f64::from(i8::MIN), Some(f64::from(i8::MAX))),
        "int16" => ("int32", f64::from(i16::MIN), Some(f64::from(i16::MAX))),
        "uint8" => ("int32", 0.0, Some(f64::from(u8::MAX))),
        "uint16" => ("int32", 0.0, Some(f64::from(u16::MAX))),
        "uint32" => ("int64", 0.0, Some(f64::from(u32::MAX))),
        // Wider than int64: the lower bound is what can be said exactly.
        "uint64" | "uint" | "uint128" => ("int64", 0.0, None),
        _ => return None,
    })
}

/// Rewrites `schema.format` (this node only) to one Kubernetes recognises, or removes it.
pub fn kubernetes_format(schema: &mut JSONSchemaProps) {
    let Some(format) = schema.format.as_deref() else {
        return;
    };
    if KNOWN.contains(&format) {
        return;
    }
    match integer_format(format) {
        Some((known, min, max)) => {
            schema.format = Some(known.to_string());
            schema.minimum = Some(schema.minimum.map_or(min, |m| m.max(min)));
            if let Some(max) = max {
                schema.maximum = Some(schema.maximum.map_or(max, |m| m.min(max)));
            }
        }
        None => schema.format = None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(format: &str, minimum: Option<f64>, maximum: Option<f64>) -> JSONSchemaProps {
        JSONSchemaProps {
            type_: Some("integer".into()),
            format: Some(format.into()),
            minimum,
            maximum,
            ..Default::default()
        }
    }

    /// A format with its declared bounds, and what it becomes.
    struct Case {
        format: &'static str,
        declared: (Option<f64>, Option<f64>),
        want: (Option<&'static str>, Option<f64>, Option<f64>),
    }

    const fn case(
        format: &'static str,
        declared: (Option<f64>, Option<f64>),
        want: (Option<&'static str>, Option<f64>, Option<f64>),
    ) -> Case {
        Case {
            format,
            declared,
            want,
        }
    }

    #[test]
    fn unknown_formats_become_known_ones_keeping_the_bounds() {
        let cases = [
            case(
                "int32",
                (Some(1.0), Some(65535.0)),
                (Some("int32"), Some(1.0), Some(65535.0)),
            ),
            case("int64", (None, None), (Some("int64"), None, None)),
            case("date-time", (None, None), (Some("date-time"), None, None)),
            case(
                "uint32",
                (Some(0.0), None),
                (Some("int64"), Some(0.0), Some(4_294_967_295.0)),
            ),
            case(
                "uint32",
                (Some(0.0), Some(5.0)),
                (Some("int64"), Some(0.0), Some(5.0)),
            ),
            case(
                "uint16",
                (Some(0.0), Some(65535.0)),
                (Some("int32"), Some(0.0), Some(65535.0)),
            ),
            case(
                "uint16",
                (Some(100.0), Some(599.0)),
                (Some("int32"), Some(100.0), Some(599.0)),
            ),
            case(
                "uint8",
                (None, None),
                (Some("int32"), Some(0.0), Some(255.0)),
            ),
            case(
                "int8",
                (None, None),
                (Some("int32"), Some(-128.0), Some(127.0)),
            ),
            case(
                "int16",
                (Some(-5.0), None),
                (Some("int32"), Some(-5.0), Some(32767.0)),
            ),
            case(
                "uint64",
                (Some(0.0), None),
                (Some("int64"), Some(0.0), None),
            ),
            case(
                "uint",
                (None, Some(10.0)),
                (Some("int64"), Some(0.0), Some(10.0)),
            ),
            case("regex", (None, None), (None, None, None)),
        ];
        for Case {
            format,
            declared,
            want,
        } in cases
        {
            let mut schema = node(format, declared.0, declared.1);
            kubernetes_format(&mut schema);
            assert_eq!(
                (schema.format.as_deref(), schema.minimum, schema.maximum),
                want,
                "{format} {declared:?}"
            );
        }
    }

    #[test]
    fn a_node_without_format_is_left_alone() {
        let mut schema = JSONSchemaProps {
            type_: Some("string".into()),
            ..Default::default()
        };
        kubernetes_format(&mut schema);
        assert_eq!(
            schema,
            JSONSchemaProps {
                type_: Some("string".into()),
                ..Default::default()
            }
        );
    }
}
