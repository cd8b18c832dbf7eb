//! `STRATA_<SECTION>__<KEY>=value` environment overrides, applied to the parsed YAML document
//! before it is turned into typed configuration, so that every key can be overridden and type
//! errors are reported like errors in the file.

use serde_yaml::{Mapping, Value};

use super::ConfigError;

const PREFIX: &str = "STRATA_";

/// Applies every `STRATA_<SECTION>__<KEY>` variable. Variables with a single underscore part
/// (e.g. `STRATA_DEV`) are flags of the binary, not config keys, and are ignored here.
pub fn apply_env_overrides(
    doc: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(path) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if !path.contains("__") {
            continue;
        }
        let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
        if keys.iter().any(|k| k.is_empty()) {
            return Err(ConfigError::Invalid {
                key: name.clone(),
                reason: "empty key in environment override".into(),
            });
        }
        let value: Value = serde_yaml::from_str(&raw).unwrap_or(Value::String(raw.clone()));
        set(doc, &keys, value).map_err(|reason| ConfigError::Invalid {
            key: name.clone(),
            reason,
        })?;
    }
    Ok(())
}

fn set(doc: &mut Value, keys: &[String], value: Value) -> Result<(), String> {
    let Some((first, rest)) = keys.split_first() else {
        *doc = value;
        return Ok(());
    };
    if doc.is_null() {
        *doc = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(map) = doc else {
        return Err(format!(
            "cannot set `{first}` inside a value that is not a section"
        ));
    };
    let slot = map
        .entry(Value::String(first.clone()))
        .or_insert(Value::Null);
    set(slot, rest, value)
}
