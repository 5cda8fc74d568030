//! Label selectors in their string form, as `kubectl -l` and kustomize's `labelSelector` /
//! `annotationSelector` write them: `app=web,tier!=db,env in (a,b),env notin (c),legacy,!old`,
//! matched against an object's labels or annotations.

use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    NotExists,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

/// A parsed selector; every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

/// The terms of a selector: split at commas outside parentheses.
fn terms(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn key(text: &str) -> Result<String, String> {
    let key = text.trim();
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if valid {
        Ok(key.to_string())
    } else {
        Err(format!("{key:?} is not a label key"))
    }
}

fn set(text: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("{text:?}: a set is written (a,b)"))?;
    Ok(inner
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect())
}

fn requirement(term: &str) -> Result<Requirement, String> {
    let make = |key: String, op, values| Requirement { key, op, values };
    if let Some(rest) = term.strip_prefix('!') {
        return Ok(make(key(rest)?, Op::NotExists, Vec::new()));
    }
    for (word, op) in [(" notin ", Op::NotIn), (" in ", Op::In)] {
        if let Some((k, values)) = term.split_once(word) {
            return Ok(make(key(k)?, op, set(values)?));
        }
    }
    for (sign, op) in [("!=", Op::NotIn), ("==", Op::In), ("=", Op::In)] {
        if let Some((k, value)) = term.split_once(sign) {
            return Ok(make(key(k)?, op, vec![value.trim().to_string()]));
        }
    }
    Ok(make(key(term)?, Op::Exists, Vec::new()))
}

impl Selector {
    /// Parses a selector; the empty string selects everything.
    pub fn parse(text: &str) -> Result<Self, String> {
        terms(text)
            .into_iter()
            .map(requirement)
            .collect::<Result<Vec<_>, _>>()
            .map(Selector)
            .map_err(|e| format!("selector {text:?}: {e}"))
    }

    /// Whether a map of labels (or annotations) satisfies every requirement.
    pub fn matches(&self, map: Option<&Map<String, Value>>) -> bool {
        self.0.iter().all(|r| {
            let value = map.and_then(|m| m.get(&r.key)).and_then(Value::as_str);
            match r.op {
                Op::Exists => value.is_some(),
                Op::NotExists => value.is_none(),
                Op::In => value.is_some_and(|v| r.values.iter().any(|w| w == v)),
                Op::NotIn => value.is_none_or(|v| r.values.iter().all(|w| w != v)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn matches(selector: &str, labels: Value) -> bool {
        Selector::parse(selector)
            .expect("valid")
            .matches(labels.as_object())
    }

    #[test]
    fn equality_and_set_based_terms() {
        let labels = json!({"app": "web", "tier": "front", "env": "prod"});
        assert!(matches("", labels.clone()));
        assert!(matches("app=web", labels.clone()));
        assert!(matches("app==web,tier!=db", labels.clone()));
        assert!(!matches("app=db", labels.clone()));
        assert!(matches("env in (prod, staging),tier", labels.clone()));
        assert!(!matches("env notin (prod)", labels.clone()));
        assert!(matches("!legacy,missing!=x", labels.clone()));
        assert!(!matches("!app", labels.clone()));
        assert!(!matches("app", json!(null)));
        assert!(Selector::parse("a in b").is_err());
        assert!(Selector::parse("bad key=x").is_err());
    }
}
