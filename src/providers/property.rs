//! Picking values out of JSON secrets: `remoteRef.property` (dotted paths,
//! `db.password`, array indexes `hosts.0`) and `dataFrom.extract` (every
//! top-level property becomes a key).
//!
//! Lookup follows External Secrets Operator: a property naming a top-level key
//! literally (even one containing dots) wins over a dotted path. Strings come out
//! as their UTF-8 bytes; numbers, booleans, arrays and objects as compact JSON;
//! `null` as an empty value.

use std::collections::BTreeMap;

use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

use super::{ProviderError, SecretValue};

/// A parsed JSON secret whose strings are wiped when it is dropped.
struct ScrubbedJson(Value);

impl Drop for ScrubbedJson {
    fn drop(&mut self) {
        scrub(&mut self.0);
    }
}

fn scrub(value: &mut Value) {
    match value {
        Value::String(text) => text.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => map.values_mut().for_each(scrub),
        _ => {}
    }
}

fn parse(value: &SecretValue, key: &str) -> Result<ScrubbedJson, ProviderError> {
    serde_json::from_slice(value.expose())
        .map(ScrubbedJson)
        .map_err(|e| ProviderError::Value {
            key: key.to_string(),
            message: format!(
                "value is not JSON (line {}, column {}), so properties cannot be read",
                e.line(),
                e.column()
            ),
        })
}

fn lookup<'v>(root: &'v Value, property: &str) -> Option<&'v Value> {
    if let Some(found) = root.as_object().and_then(|map| map.get(property)) {
        return Some(found);
    }
    property.split('.').try_fold(root, |node, part| match node {
        Value::Object(map) => map.get(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn render(value: &Value) -> Zeroizing<Vec<u8>> {
    match value {
        Value::String(text) => Zeroizing::new(text.as_bytes().to_vec()),
        Value::Null => Zeroizing::new(Vec::new()),
        other => Zeroizing::new(serde_json::to_vec(other).unwrap_or_default()),
    }
}

fn missing(key: &str, property: &str) -> ProviderError {
    ProviderError::Value {
        key: key.to_string(),
        message: format!("property {property:?} not found"),
    }
}

/// The whole value, or one property of it when `property` is set.
pub fn select(
    value: &SecretValue,
    property: Option<&str>,
    key: &str,
) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
    let Some(property) = property.filter(|p| !p.is_empty()) else {
        return Ok(Zeroizing::new(value.expose().to_vec()));
    };
    let json = parse(value, key)?;
    lookup(&json.0, property)
        .map(render)
        .ok_or_else(|| missing(key, property))
}

/// Every top-level property of a JSON object (or of the object at `property`).
pub fn extract(
    value: &SecretValue,
    property: Option<&str>,
    key: &str,
) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, ProviderError> {
    let json = parse(value, key)?;
    let node = match property.filter(|p| !p.is_empty()) {
        Some(property) => lookup(&json.0, property).ok_or_else(|| missing(key, property))?,
        None => &json.0,
    };
    let Value::Object(map) = node else {
        return Err(ProviderError::Value {
            key: key.to_string(),
            message: "value is not a JSON object, so it cannot be extracted into keys".to_string(),
        });
    };
    Ok(map.iter().map(|(k, v)| (k.clone(), render(v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> SecretValue {
        SecretValue::new(text.as_bytes().to_vec())
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).expect("utf8")
    }

    #[test]
    fn no_property_returns_the_raw_value_even_when_not_json() {
        let raw = SecretValue::new(vec![0, 159, 146, 150]);
        assert_eq!(
            &*select(&raw, None, "bin").expect("raw"),
            &[0, 159, 146, 150]
        );
    }

    #[test]
    fn dotted_paths_reach_nested_values_and_array_items() {
        let v = value(
            r#"{"db":{"user":"app","port":5432,"tls":true},"hosts":["a","b"],"a.b":"literal"}"#,
        );
        assert_eq!(
            text(&select(&v, Some("db.user"), "k").expect("nested")),
            "app"
        );
        assert_eq!(
            text(&select(&v, Some("db.port"), "k").expect("number")),
            "5432"
        );
        assert_eq!(
            text(&select(&v, Some("db.tls"), "k").expect("bool")),
            "true"
        );
        assert_eq!(text(&select(&v, Some("hosts.1"), "k").expect("index")), "b");
        assert_eq!(
            text(&select(&v, Some("a.b"), "k").expect("literal key wins")),
            "literal"
        );
        assert_eq!(
            text(&select(&v, Some("db"), "k").expect("object")),
            r#"{"port":5432,"tls":true,"user":"app"}"#
        );
    }

    #[test]
    fn missing_properties_and_non_json_name_the_key_but_not_the_value() {
        let v = value(r#"{"password":"s3cr3t"}"#);
        let error = select(&v, Some("user"), "prod/db").expect_err("missing");
        let message = error.to_string();
        assert!(
            message.contains("prod/db") && message.contains("user"),
            "{message}"
        );
        assert!(!message.contains("s3cr3t"));
        let error = select(&value("s3cr3t-not-json"), Some("x"), "k").expect_err("not json");
        assert!(!error.to_string().contains("s3cr3t"), "{error}");
    }

    #[test]
    fn extract_turns_top_level_properties_into_keys() {
        let v = value(r#"{"user":"app","port":5432,"nested":{"a":1},"empty":null}"#);
        let map = extract(&v, None, "k").expect("object");
        let shown: BTreeMap<&str, &str> = map.iter().map(|(k, v)| (k.as_str(), text(v))).collect();
        assert_eq!(
            shown,
            BTreeMap::from([
                ("empty", ""),
                ("nested", r#"{"a":1}"#),
                ("port", "5432"),
                ("user", "app")
            ])
        );
        let inner = extract(&v, Some("nested"), "k").expect("sub-object");
        assert_eq!(text(&inner["a"]), "1");
        assert!(extract(&value(r#"["x"]"#), None, "k").is_err());
    }
}
