//! One plugin kind as data: the JSON Schema of its config, compiled once, and what the schema
//! says a config references.
//!
//! A config field that names a Secret or a Service carries `x-hookway-ref: secret` or
//! `x-hookway-ref: service` in the schema (the built-ins' typed configs say so with
//! `#[schemars(extend("x-hookway-ref" = "secret"))]`); a kind whose configs make the proxy call
//! addresses the config chooses carries `x-hookway-reaches-network: true` at the schema's root,
//! and a kind where only some field does (a URL beside a Service reference) carries it on that
//! field: a config that sets the field reaches the network.
//! The compiler learns everything it needs from these, so the controller validates plugin
//! configs without linking the code that runs them.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::Value;

use super::Validated;

/// The schema extension that marks a field naming a Secret or a Service.
pub const REF_KEYWORD: &str = "x-hookway-ref";
/// The schema extension of kinds (at the root) or fields (set in the config) that make the
/// proxy call addresses the config chooses.
pub const REACHES_NETWORK_KEYWORD: &str = "x-hookway-reaches-network";

/// The schema extension (at the root) naming the config fields of a blob pinned by digest (a
/// `wasm` module): `{"sha256": FIELD, "key": FIELD, "file": FIELD, "secret": FIELD,
/// "config_map": FIELD, "url": FIELD}`, every source optional. A config sets exactly one
/// source: a Secret's or ConfigMap's value at `key`, a URL the controller fetches, or (standalone
/// only) a file. The compiler reads the blob and checks that its SHA-256 is the config's `sha256`,
/// so a wrong pin is reported on the object and never reaches a proxy; ConfigMap and URL blobs
/// travel in the snapshot's `blobs`.
pub const PINNED_BLOB_KEYWORD: &str = "x-hookway-pinned-blob";

/// The schema extension (at the root) of kinds whose config may declare the JSON Schema of
/// another of its fields: `{"schema": FIELD, "instance": FIELD}`. When a config sets `schema`
/// (a JSON Schema, draft 2020-12 unless its `$schema` says otherwise), its `instance` field must
/// be valid against it: a Wasm filter's `configuration`, ext_authz's `context_extensions`. A
/// schema that does not compile is an error too. Only local `$ref`s resolve (nothing is
/// fetched).
pub const CONFIGURATION_SCHEMA_KEYWORD: &str = "x-hookway-configuration-schema";

/// How many errors of one config are reported.
const MAX_ERRORS: usize = 5;

/// Where a config's pinned blob comes from ([`PINNED_BLOB_KEYWORD`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobSource<'c> {
    /// A file of the proxy's file system (standalone mode).
    File(&'c str),
    /// A Secret (name as written) and key.
    Secret {
        /// The Secret's name.
        name: &'c str,
        /// The key.
        key: &'c str,
    },
    /// A ConfigMap (name as written) and key of its `binaryData` or `data`.
    ConfigMap {
        /// The ConfigMap's name.
        name: &'c str,
        /// The key.
        key: &'c str,
    },
    /// An `http://` or `https://` URL the controller fetches.
    Url(&'c str),
}

/// A config's pinned blob: its source and the digest it must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedBlob<'c> {
    /// Where the bytes come from.
    pub source: BlobSource<'c>,
    /// Lowercase hex SHA-256 the bytes must have.
    pub sha256: &'c str,
}

/// `schema` compiled.
fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| format!("invalid schema: {e}"))
}

/// How deep the reference walk follows `$ref`s and nesting before it gives up (schemas of
/// recursive types would otherwise never end; no built-in comes close).
const MAX_DEPTH: usize = 64;

/// A config schema, compiled on first use.
pub struct KindSchema {
    schema: Value,
    /// Compiled when a config of the kind is first validated: a compiled validator is several
    /// times its schema (the 24 built-in kinds' take 1.1 MiB), and a cluster uses a few kinds,
    /// so the controller keeps only those (`controller/tests/heap.rs`).
    validator: OnceLock<jsonschema::Validator>,
}

impl std::fmt::Debug for KindSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KindSchema")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl KindSchema {
    /// Checks that `schema` compiles (JSON Schema, draft 2020-12 unless `$schema` says
    /// otherwise); it is compiled again, and kept, when first used.
    pub fn new(schema: Value) -> Result<Self, String> {
        compile(&schema)?;
        Ok(Self {
            schema,
            validator: OnceLock::new(),
        })
    }

    /// The compiled validator.
    fn validator(&self) -> &jsonschema::Validator {
        self.validator.get_or_init(|| {
            // `new` compiled this very schema, and compiling is deterministic.
            compile(&self.schema).expect("the schema compiled when the kind was made")
        })
    }

    /// The schema as given.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Validates `config`; on success returns the Secrets and Services it names.
    pub fn validate(&self, config: &Value) -> Result<Validated, String> {
        let errors: Vec<String> = self
            .validator()
            .iter_errors(config)
            .take(MAX_ERRORS)
            .map(|e| {
                let path = e.instance_path().as_str().to_string();
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!("{}: {e}", dotted(&path))
                }
            })
            .collect();
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        self.check_declared_schema(config)?;
        let mut refs = Refs::default();
        walk(&self.schema, &self.schema, config, &mut refs, 0);
        Ok(Validated {
            secret_refs: refs.secrets.into_iter().collect(),
            service_refs: refs.services.into_iter().collect(),
            reaches_network: refs.reaches_network,
        })
    }
}

impl KindSchema {
    /// Checks the field a config declared a schema for against that schema
    /// ([`CONFIGURATION_SCHEMA_KEYWORD`]); errors name the failing path inside the field.
    fn check_declared_schema(&self, config: &Value) -> Result<(), String> {
        let Some(declaration) = self.schema.get(CONFIGURATION_SCHEMA_KEYWORD) else {
            return Ok(());
        };
        let field = |name: &str| declaration.get(name).and_then(Value::as_str);
        let (Some(schema_field), Some(instance_field)) = (field("schema"), field("instance"))
        else {
            return Ok(());
        };
        let Some(declared) = config.get(schema_field).filter(|v| !v.is_null()) else {
            return Ok(());
        };
        let validator = jsonschema::validator_for(declared)
            .map_err(|e| format!("{schema_field}: invalid schema: {e}"))?;
        let instance = config.get(instance_field).unwrap_or(&Value::Null);
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .take(MAX_ERRORS)
            .map(|e| {
                let path = dotted(e.instance_path().as_str());
                let at = match path.chars().next() {
                    None => instance_field.to_string(),
                    Some('[') => format!("{instance_field}{path}"),
                    Some(_) => format!("{instance_field}.{path}"),
                };
                format!("{at}: {e} (per {schema_field})")
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// The pinned blob a valid `config` loads ([`PINNED_BLOB_KEYWORD`]): `None` when the kind
    /// declares none; an error when the config sets no source or more than one, or a Secret or
    /// ConfigMap without `key`.
    pub fn pinned_blob<'c>(&self, config: &'c Value) -> Result<Option<PinnedBlob<'c>>, String> {
        let Some(fields) = self.schema.get(PINNED_BLOB_KEYWORD) else {
            return Ok(None);
        };
        let field = |name: &str| {
            fields
                .get(name)
                .and_then(Value::as_str)
                .and_then(|f| config.get(f))
                .and_then(Value::as_str)
        };
        let name_of = |name: &str| {
            fields
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_string()
        };
        let key = field("key");
        let keyed =
            |name: &str| key.ok_or_else(|| format!("{} needs {}", name_of(name), name_of("key")));
        let mut sources = Vec::new();
        if let Some(path) = field("file") {
            sources.push(BlobSource::File(path));
        }
        if let Some(name) = field("secret") {
            sources.push(BlobSource::Secret {
                name,
                key: keyed("secret")?,
            });
        }
        if let Some(name) = field("config_map") {
            sources.push(BlobSource::ConfigMap {
                name,
                key: keyed("config_map")?,
            });
        }
        if let Some(url) = field("url") {
            sources.push(BlobSource::Url(url));
        }
        let [source] = sources[..] else {
            let names: Vec<String> = ["file", "secret", "config_map", "url"]
                .into_iter()
                .filter(|n| fields.get(*n).is_some())
                .map(name_of)
                .collect();
            return Err(format!("set exactly one of {}", names.join(", ")));
        };
        Ok(Some(PinnedBlob {
            source,
            sha256: field("sha256").unwrap_or_default(),
        }))
    }

    /// The checks the schema declares on the Secrets a valid `config` names: a pinned blob
    /// held in a Secret ([`PINNED_BLOB_KEYWORD`]) has the pinned digest.
    pub fn check_secrets(
        &self,
        config: &Value,
        secrets: &super::ResolvedSecrets,
    ) -> Result<(), String> {
        let Some(PinnedBlob {
            source: BlobSource::Secret { name, key },
            sha256,
        }) = self.pinned_blob(config)?
        else {
            return Ok(());
        };
        let secret = secrets
            .get(name)
            .ok_or_else(|| format!("Secret {name:?} not resolved"))?;
        let bytes = secret_blob(secret, key)?;
        check_sha256(&bytes, sha256)
    }
}

/// The blob a Secret holds at `key`: base64-encoded (whitespace ignored), or raw when it starts
/// with the Wasm magic `\0asm` (the snapshot carries Secret data as UTF-8 text).
pub fn secret_blob(secret: &crate::snapshot::SecretEntry, key: &str) -> Result<Vec<u8>, String> {
    let value = secret
        .data
        .get(key)
        .ok_or_else(|| format!("Secret {} has no key {key:?}", secret.key))?;
    text_blob(value).map_err(|e| format!("Secret {} key {key:?}: {e}", secret.key))
}

/// A blob written as text (a Secret's value, a ConfigMap's `data`): base64-encoded (whitespace
/// ignored), or raw when it starts with the Wasm magic `\0asm`.
pub fn text_blob(value: &str) -> Result<Vec<u8>, String> {
    if value.as_bytes().starts_with(b"\0asm") {
        return Ok(value.as_bytes().to_vec());
    }
    use base64::Engine as _;
    let compact: String = value.split_ascii_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("not a base64-encoded module: {e}"))
}

/// The lowercase hex SHA-256 of `bytes` (what a config pins).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Whether `bytes` hash to `pinned` (lowercase hex SHA-256).
pub fn check_sha256(bytes: &[u8], pinned: &str) -> Result<(), String> {
    let actual = sha256_hex(bytes);
    if actual != pinned {
        return Err(format!(
            "sha256 mismatch: the module's digest is {actual}, the config pins {pinned}"
        ));
    }
    Ok(())
}

/// `/credentials/0/secret` → `credentials[0].secret`, the shape serde's paths have.
fn dotted(pointer: &str) -> String {
    let mut out = String::with_capacity(pointer.len());
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&part);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part);
        }
    }
    out
}

#[derive(Default)]
struct Refs {
    secrets: BTreeSet<String>,
    services: BTreeSet<String>,
    reaches_network: bool,
}

/// Follows `instance` through `schema` (a valid instance: validation ran first) and collects
/// the strings at fields marked with [`REF_KEYWORD`], and whether a schema node the instance
/// fills carries [`REACHES_NETWORK_KEYWORD`].
fn walk(root: &Value, schema: &Value, instance: &Value, refs: &mut Refs, depth: usize) {
    if depth > MAX_DEPTH || instance.is_null() {
        return;
    }
    let Some(schema) = schema.as_object() else {
        return;
    };
    if schema.get(REACHES_NETWORK_KEYWORD).and_then(Value::as_bool) == Some(true) {
        refs.reaches_network = true;
    }
    if let Some(kind) = schema.get(REF_KEYWORD).and_then(Value::as_str) {
        let set = match kind {
            "secret" => &mut refs.secrets,
            "service" => &mut refs.services,
            _ => return,
        };
        match instance {
            Value::String(s) => {
                set.insert(s.clone());
            }
            Value::Array(items) => {
                set.extend(items.iter().filter_map(Value::as_str).map(str::to_string));
            }
            _ => {}
        }
        return;
    }
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        if let Some(resolved) = resolve(root, target) {
            walk(root, resolved, instance, refs, depth + 1);
        }
    }
    for keyword in ["allOf", "anyOf", "oneOf"] {
        for branch in schema
            .get(keyword)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if keyword == "allOf" || discriminators_match(root, branch, instance) {
                walk(root, branch, instance, refs, depth + 1);
            }
        }
    }
    match instance {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (name, value) in fields {
                match properties.and_then(|p| p.get(name)) {
                    Some(sub) => walk(root, sub, value, refs, depth + 1),
                    None => {
                        if let Some(sub) = additional {
                            walk(root, sub, value, refs, depth + 1);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for item in items {
                    walk(root, sub, item, refs, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// Whether a `oneOf`/`anyOf` branch can describe `instance`: every property the branch pins
/// with `const` or a one-value `enum` (serde's internally tagged enums) has that value. A
/// branch that pins nothing may describe anything.
fn discriminators_match(root: &Value, branch: &Value, instance: &Value) -> bool {
    let branch = match branch.get("$ref").and_then(Value::as_str) {
        Some(target) => resolve(root, target).unwrap_or(branch),
        None => branch,
    };
    if branch.get("type").and_then(Value::as_str) == Some("string") && !instance.is_string() {
        return false;
    }
    let Some(properties) = branch.get("properties").and_then(Value::as_object) else {
        return true;
    };
    properties.iter().all(|(name, sub)| {
        let pinned = sub.get("const").or_else(|| {
            sub.get("enum")
                .and_then(Value::as_array)
                .filter(|values| values.len() == 1)
                .and_then(|values| values.first())
        });
        match pinned {
            Some(value) => instance.get(name) == Some(value),
            None => true,
        }
    })
}

/// Resolves a local reference (`#/$defs/Name`, `#/definitions/Name`).
fn resolve<'a>(root: &'a Value, target: &str) -> Option<&'a Value> {
    root.pointer(target.strip_prefix('#')?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_schema_is_checked_when_made_and_compiled_when_first_used() {
        let bad = KindSchema::new(json!({"type": "no-such-type"}));
        assert!(
            bad.is_err_and(|e| e.starts_with("invalid schema")),
            "an invalid schema is refused when the kind is made"
        );
        let kind = schema();
        assert!(kind.validator.get().is_none(), "not compiled before use");
        assert!(kind.validate(&json!({"credentials": []})).is_ok());
        assert!(kind.validator.get().is_some(), "kept once used");
        assert!(
            kind.validate(&json!({"nope": 1})).is_err(),
            "the kept validator still refuses"
        );
    }

    fn schema() -> KindSchema {
        KindSchema::new(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "credentials": {"type": "array", "items": {"$ref": "#/$defs/Credential"}},
                "mirror": {"type": ["string", "null"], "x-hookway-ref": "service"},
                "limit": {"type": "integer", "minimum": 1}
            },
            "$defs": {
                "Credential": {"oneOf": [
                    {"type": "object", "properties": {
                        "type": {"const": "apikey"},
                        "secret": {"type": "string", "x-hookway-ref": "secret"}
                    }, "required": ["type", "secret"]},
                    {"type": "object", "properties": {
                        "type": {"const": "static"},
                        "secret": {"type": "string"}
                    }, "required": ["type", "secret"]}
                ]}
            }
        }))
        .unwrap()
    }

    #[test]
    fn references_are_collected_by_table() {
        let cases = [
            (json!({}), vec![], vec![]),
            (json!({"mirror": "ns/svc"}), vec![], vec!["ns/svc"]),
            (json!({"mirror": null}), vec![], vec![]),
            (
                json!({"credentials": [
                    {"type": "apikey", "secret": "b"},
                    {"type": "apikey", "secret": "a"},
                    {"type": "apikey", "secret": "a"}
                ]}),
                vec!["a", "b"],
                vec![],
            ),
            // The branch whose discriminator does not match marks nothing.
            (
                json!({"credentials": [{"type": "static", "secret": "literal"}]}),
                vec![],
                vec![],
            ),
        ];
        for (config, secrets, services) in cases {
            let validated = schema().validate(&config).unwrap();
            assert_eq!(validated.secret_refs, secrets, "{config}");
            assert_eq!(validated.service_refs, services, "{config}");
            assert!(!validated.reaches_network);
        }
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"limit": 0}), "limit: "),
            (json!({"limit": "x"}), "limit: "),
            (
                json!({"credentials": [{"type": "apikey"}]}),
                "credentials[0]: ",
            ),
            (json!({"nope": 1}), "nope"),
        ];
        for (config, needle) in cases {
            let err = schema().validate(&config).unwrap_err();
            assert!(err.contains(needle), "{config}: {err}");
        }
    }

    #[test]
    fn reaches_network_is_read_from_the_root() {
        let kind =
            KindSchema::new(json!({"type": "object", "x-hookway-reaches-network": true})).unwrap();
        assert!(kind.validate(&json!({})).unwrap().reaches_network);
    }

    #[test]
    fn pinned_blob_sources_by_table() {
        let kind = KindSchema::new(json!({
            "type": "object",
            "x-hookway-pinned-blob": {"sha256": "sha256", "key": "key", "file": "file",
                "secret": "secret", "config_map": "config_map", "url": "url"}
        }))
        .unwrap();
        let sha = "ab";
        let cases: [(Value, Result<BlobSource<'static>, &str>); 7] = [
            (json!({"file": "f.wasm"}), Ok(BlobSource::File("f.wasm"))),
            (
                json!({"secret": "s", "key": "k"}),
                Ok(BlobSource::Secret {
                    name: "s",
                    key: "k",
                }),
            ),
            (
                json!({"config_map": "c", "key": "k"}),
                Ok(BlobSource::ConfigMap {
                    name: "c",
                    key: "k",
                }),
            ),
            (
                json!({"url": "https://x/m"}),
                Ok(BlobSource::Url("https://x/m")),
            ),
            (json!({"config_map": "c"}), Err("config_map needs key")),
            (
                json!({}),
                Err("set exactly one of file, secret, config_map, url"),
            ),
            (
                json!({"url": "https://x/m", "file": "f"}),
                Err("set exactly one"),
            ),
        ];
        for (mut config, want) in cases {
            config["sha256"] = json!(sha);
            let got = kind.pinned_blob(&config);
            match want {
                Ok(source) => assert_eq!(
                    got,
                    Ok(Some(PinnedBlob {
                        source,
                        sha256: sha
                    })),
                    "{config}"
                ),
                Err(needle) => {
                    let e = got.unwrap_err();
                    assert!(e.contains(needle), "{config}: {e}");
                }
            }
        }
        let plain = KindSchema::new(json!({"type": "object"})).unwrap();
        assert_eq!(plain.pinned_blob(&json!({"url": "x"})), Ok(None));
    }

    #[test]
    fn declared_configuration_schemas_by_table() {
        let kind = KindSchema::new(json!({
            "type": "object",
            "x-hookway-configuration-schema": {"schema": "configuration_schema", "instance": "configuration"}
        }))
        .unwrap();
        let greeting = json!({
            "type": "object",
            "required": ["greeting"],
            "properties": {
                "greeting": {"type": "string", "minLength": 1},
                "paths": {"type": "array", "items": {"type": "string", "pattern": "^/"}}
            },
            "additionalProperties": false
        });
        let cases: [(Value, Result<(), &str>); 9] = [
            // No declared schema: passed through as today.
            (json!({"configuration": 42}), Ok(())),
            (
                json!({"configuration": 42, "configuration_schema": null}),
                Ok(()),
            ),
            (
                json!({"configuration": {"greeting": "hi"}, "configuration_schema": greeting}),
                Ok(()),
            ),
            (
                json!({"configuration": {"greeting": ""}, "configuration_schema": greeting}),
                Err("configuration.greeting: "),
            ),
            (
                json!({"configuration": {"greeting": "hi", "paths": ["/a", "b"]}, "configuration_schema": greeting}),
                Err("configuration.paths[1]: "),
            ),
            (
                json!({"configuration_schema": greeting}),
                Err("configuration: null is not of type \"object\" (per configuration_schema)"),
            ),
            (
                json!({"configuration": "text", "configuration_schema": {"type": "string", "maxLength": 2}}),
                Err("configuration: "),
            ),
            (
                json!({"configuration": {}, "configuration_schema": {"type": 12}}),
                Err("configuration_schema: invalid schema"),
            ),
            // Only local references resolve: nothing is fetched.
            (
                json!({"configuration": {}, "configuration_schema": {"$ref": "http://127.0.0.1:1/schema.json"}}),
                Err("configuration_schema: invalid schema"),
            ),
        ];
        for (config, want) in cases {
            match (kind.validate(&config), want) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(needle)) => assert!(e.contains(needle), "{config}: {e}"),
                (got, want) => panic!("{config}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_broken_schema_is_refused() {
        assert!(KindSchema::new(json!({"type": 12})).is_err());
    }

    #[test]
    fn pointers_become_serde_paths() {
        for (pointer, path) in [
            ("/a", "a"),
            ("/a/0/b", "a[0].b"),
            ("/0", "[0]"),
            ("/a~1b", "a/b"),
        ] {
            assert_eq!(dotted(pointer), path);
        }
    }
}
