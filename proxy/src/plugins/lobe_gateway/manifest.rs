//! Plugin manifests and the market index: shapes, checks, and JSON Schema validation of
//! settings and arguments.

use serde_json::{Map, Value};

use super::error::{ErrorType, GatewayError};

/// Checks the required shape of a manifest: `identifier`, `meta`, `api[]` of
/// `{name, description, parameters: {type: object, properties}}`.
pub fn check_manifest(m: &Value) -> Result<(), String> {
    let obj = m.as_object().ok_or("manifest is not an object")?;
    match obj.get("identifier") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Err("manifest.identifier: required string".into()),
    }
    if !obj.get("meta").is_some_and(Value::is_object) {
        return Err("manifest.meta: required object".into());
    }
    let api = obj
        .get("api")
        .and_then(Value::as_array)
        .ok_or("manifest.api: required array")?;
    for (i, a) in api.iter().enumerate() {
        if !a.get("name").is_some_and(Value::is_string) {
            return Err(format!("manifest.api[{i}].name: required string"));
        }
        if !a.get("description").is_some_and(Value::is_string) {
            return Err(format!("manifest.api[{i}].description: required string"));
        }
        let params = a
            .get("parameters")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("manifest.api[{i}].parameters: required object"))?;
        if params.get("type").and_then(Value::as_str) != Some("object") {
            return Err(format!(
                "manifest.api[{i}].parameters.type: must be \"object\""
            ));
        }
        if !params.get("properties").is_some_and(Value::is_object) {
            return Err(format!(
                "manifest.api[{i}].parameters.properties: required object"
            ));
        }
        if let Some(url) = a.get("url") {
            if !url.is_string() {
                return Err(format!("manifest.api[{i}].url: must be a string"));
            }
        }
    }
    if let Some(s) = obj.get("settings") {
        if !s.is_object() {
            return Err("manifest.settings: must be a JSON Schema object".into());
        }
    }
    Ok(())
}

/// The manifest URL of plugin `identifier` in a market index `{plugins: [{identifier,
/// manifest}]}`.
pub fn find_in_index(index: &Value, identifier: &str) -> Result<String, GatewayError> {
    let plugins = index
        .get("plugins")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            GatewayError::new(
                ErrorType::PluginMarketIndexInvalid,
                "index has no plugins array",
            )
        })?;
    let meta = plugins
        .iter()
        .find(|p| p.get("identifier").and_then(Value::as_str) == Some(identifier))
        .ok_or_else(|| {
            GatewayError::new(
                ErrorType::PluginMetaNotFound,
                format!("no plugin {identifier:?} in the market index"),
            )
        })?;
    meta.get("manifest")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .ok_or_else(|| GatewayError::with_body(ErrorType::PluginMetaInvalid, meta.clone()))
}

/// Validates `instance` against `schema`; the error lists every failure with its path.
pub fn validate(schema: &Value, instance: &Value) -> Result<(), Value> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| serde_json::json!({"message": format!("invalid schema: {e}")}))?;
    let errors: Vec<Value> = validator
        .iter_errors(instance)
        .map(|e| {
            serde_json::json!({
                "path": e.instance_path().as_str(),
                "message": e.to_string(),
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(serde_json::json!({"message": "validation failed", "errors": errors}))
    }
}

/// Settings: the schema's property defaults, overridden by the client's settings.
pub fn merge_settings(schema: Option<&Value>, client: Option<Value>) -> Value {
    let mut merged = Map::new();
    if let Some(props) = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    {
        for (k, p) in props {
            if let Some(d) = p.get("default") {
                merged.insert(k.clone(), d.clone());
            }
        }
    }
    if let Some(Value::Object(c)) = client {
        merged.extend(c);
    }
    Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest() -> Value {
        json!({"identifier": "clock", "meta": {"title": "Clock"}, "api": [
            {"name": "now", "description": "time", "url": "http://x/now",
             "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}]})
    }

    #[test]
    fn manifest_shape() {
        check_manifest(&manifest()).unwrap();
        for (edit, needle) in [
            (json!({"identifier": ""}), "identifier"),
            (json!({"meta": 1}), "meta"),
            (json!({"api": {}}), "api"),
            (
                json!({"api": [{"name": "a", "description": "d", "parameters": {"type": "array", "properties": {}}}]}),
                "parameters.type",
            ),
            (json!({"settings": []}), "settings"),
        ] {
            let mut m = manifest();
            for (k, v) in edit.as_object().unwrap() {
                m[k] = v.clone();
            }
            assert!(check_manifest(&m).unwrap_err().contains(needle), "{needle}");
        }
    }

    #[test]
    fn schema_validation_reports_paths() {
        let schema = &manifest()["api"][0]["parameters"];
        validate(schema, &json!({"tz": "UTC"})).unwrap();
        let err = validate(schema, &json!({"tz": 5})).unwrap_err();
        assert_eq!(err["errors"][0]["path"], "/tz");
        assert!(validate(schema, &json!({})).is_err());
    }

    #[test]
    fn settings_defaults_then_client() {
        let schema =
            json!({"type": "object", "properties": {"a": {"default": 1}, "b": {"default": 2}}});
        assert_eq!(
            merge_settings(Some(&schema), Some(json!({"b": 3, "c": 4}))),
            json!({"a": 1, "b": 3, "c": 4})
        );
        assert_eq!(merge_settings(None, None), json!({}));
    }

    #[test]
    fn index_lookup_errors() {
        let index = json!({"plugins": [{"identifier": "a", "manifest": "http://m/a.json"}, {"identifier": "b"}]});
        assert_eq!(find_in_index(&index, "a").unwrap(), "http://m/a.json");
        assert_eq!(
            find_in_index(&index, "b").unwrap_err().kind,
            ErrorType::PluginMetaInvalid
        );
        assert_eq!(
            find_in_index(&index, "c").unwrap_err().kind,
            ErrorType::PluginMetaNotFound
        );
        assert_eq!(
            find_in_index(&json!([]), "a").unwrap_err().kind,
            ErrorType::PluginMarketIndexInvalid
        );
    }
}
