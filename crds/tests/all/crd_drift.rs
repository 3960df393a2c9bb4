//! The committed CRD YAML under charts/hookway/crds/ must be exactly what the types generate.
//! Regenerate with `cargo run -p hookway-controller -- crds --write charts/hookway/crds`.

use std::path::PathBuf;

#[test]
fn committed_crds_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/hookway/crds");
    for (file, generated) in hookway_crds::crdgen::crd_files() {
        let path = dir.join(file);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is missing ({e}); run `cargo run -p hookway-controller -- crds --write charts/hookway/crds`", path.display()));
        assert!(
            committed == generated,
            "{} differs from the types; run `cargo run -p hookway-controller -- crds --write charts/hookway/crds`",
            path.display()
        );
    }
}

#[test]
fn crds_carry_cel_rules_and_metadata() {
    let all = hookway_crds::crdgen::all_crds_yaml();
    for needle in [
        "x-kubernetes-validations",
        "config is required when status is global",
        "exactly one of backend, backends or nodes must be set",
        "path must start with /",
        "x-kubernetes-preserve-unknown-fields: true",
        "- hookway",
        "shortNames:",
        "- gwp",
        "- hsvc",
        "- hrt",
        "subresources:",
    ] {
        assert!(all.contains(needle), "generated CRDs lack {needle:?}");
    }
}
