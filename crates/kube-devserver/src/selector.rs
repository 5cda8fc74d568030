//! Label selectors (`labelSelector=` and `metav1.LabelSelector` objects) and field selectors.

use serde_json::{Map, Value};

/// One label requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelRequirement {
    Exists(String),
    DoesNotExist(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed label selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<LabelRequirement>);

fn label_of<'a>(labels: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a str> {
    labels.and_then(|l| l.get(key)).and_then(Value::as_str)
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.0.iter().all(|req| match req {
            LabelRequirement::Exists(k) => label_of(labels, k).is_some(),
            LabelRequirement::DoesNotExist(k) => label_of(labels, k).is_none(),
            LabelRequirement::Equals(k, v) => label_of(labels, k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => label_of(labels, k) != Some(v.as_str()),
            LabelRequirement::In(k, vs) => {
                label_of(labels, k).is_some_and(|have| vs.iter().any(|v| v == have))
            }
            LabelRequirement::NotIn(k, vs) => {
                label_of(labels, k).is_none_or(|have| !vs.iter().any(|v| v == have))
            }
            LabelRequirement::GreaterThan(k, n) => label_of(labels, k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            LabelRequirement::LessThan(k, n) => label_of(labels, k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        })
    }

    /// Parses the `labelSelector` query syntax (`a=b,c!=d,e in (f,g),!h,i`).
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(input)? {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(Self(reqs))
    }

    /// Builds a selector from a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    pub fn from_object(selector: &Value) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("matchLabels[{k}] must be a string"))?;
                reqs.push(LabelRequirement::Equals(k.clone(), v.to_string()));
            }
        }
        if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or("matchExpressions: key is required")?
                    .to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|vs| {
                        vs.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = e.get("operator").and_then(Value::as_str).unwrap_or("");
                reqs.push(match op {
                    "In" => LabelRequirement::In(key, values),
                    "NotIn" => LabelRequirement::NotIn(key, values),
                    "Exists" => LabelRequirement::Exists(key),
                    "DoesNotExist" => LabelRequirement::DoesNotExist(key),
                    other => {
                        return Err(format!(
                            "\"{other}\" is not a valid label selector operator"
                        ));
                    }
                });
            }
        }
        Ok(Self(reqs))
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(input: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!(
                        "unable to parse requirement: unexpected ')' in {input:?}"
                    ));
                }
            }
            ',' if depth == 0 => {
                out.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!(
            "unable to parse requirement: unclosed '(' in {input:?}"
        ));
    }
    out.push(&input[start..]);
    Ok(out)
}

fn check_key(key: &str) -> Result<String, String> {
    let key = key.trim();
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(format!(
            "unable to parse requirement: invalid label key {key:?}"
        ));
    }
    Ok(key.to_string())
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            format!("unable to parse requirement: expected '(' ... ')', found {rest:?}")
        })?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

fn parse_requirement(part: &str) -> Result<LabelRequirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(LabelRequirement::DoesNotExist(check_key(key)?));
    }
    for (op, f) in [
        (
            "!=",
            LabelRequirement::NotEquals as fn(String, String) -> LabelRequirement,
        ),
        ("==", LabelRequirement::Equals),
        ("=", LabelRequirement::Equals),
    ] {
        if let Some((k, v)) = part.split_once(op) {
            return Ok(f(check_key(k)?, v.trim().to_string()));
        }
    }
    for (op, gt) in [(">", true), ("<", false)] {
        if let Some((k, v)) = part.split_once(op) {
            let n: i64 = v
                .trim()
                .parse()
                .map_err(|_| format!("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer, got {:?}", v.trim()))?;
            let k = check_key(k)?;
            return Ok(if gt {
                LabelRequirement::GreaterThan(k, n)
            } else {
                LabelRequirement::LessThan(k, n)
            });
        }
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default().trim_start();
    if let Some(set) = rest.strip_prefix("notin") {
        return Ok(LabelRequirement::NotIn(check_key(key)?, parse_set(set)?));
    }
    if let Some(set) = rest.strip_prefix("in") {
        return Ok(LabelRequirement::In(check_key(key)?, parse_set(set)?));
    }
    if rest.is_empty() {
        return Ok(LabelRequirement::Exists(check_key(key)?));
    }
    Err(format!(
        "unable to parse requirement: found '{rest}', expected: in, notin, =, ==, !=, gt, lt"
    ))
}

/// One field selector term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

/// A parsed field selector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

impl FieldSelector {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `a=b,c!=d` with `\,` `\=` `\\` escapes.
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in split_escaped(input, ',') {
            if term.is_empty() {
                continue;
            }
            let (field, value, negate) = split_field_term(&term)
                .ok_or_else(|| format!("invalid selector: '{input}'; can't understand '{term}'"))?;
            reqs.push(FieldRequirement {
                field: unescape(&field),
                value: unescape(&value),
                negate,
            });
        }
        Ok(Self(reqs))
    }

    /// Whether the object satisfies every term; `get` reads a field's value.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| {
            let have = get(&r.field).unwrap_or_default();
            (have == r.value) != r.negate
        })
    }
}

fn split_escaped(input: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in input.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

fn split_field_term(term: &str) -> Option<(String, String, bool)> {
    let chars: Vec<char> = term.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' {
            i += 2;
            continue;
        }
        if chars[i] == '!' && chars.get(i + 1) == Some(&'=') {
            return Some((
                chars[..i].iter().collect(),
                chars[i + 2..].iter().collect(),
                true,
            ));
        }
        if chars[i] == '=' {
            let skip = if chars.get(i + 1) == Some(&'=') { 2 } else { 1 };
            return Some((
                chars[..i].iter().collect(),
                chars[i + skip..].iter().collect(),
                false,
            ));
        }
        i += 1;
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn set_based_requirements() {
        let l = labels(json!({"env": "prod", "tier": "web"}));
        let m = |s: &str| LabelSelector::parse(s).expect("parses").matches(Some(&l));
        assert!(m("env=prod"));
        assert!(m("env==prod,tier"));
        assert!(m("env in (prod, staging)"));
        assert!(!m("env notin (prod)"));
        assert!(m("!missing"));
        assert!(!m("!env"));
        assert!(m("missing!=x"));
        assert!(m("missing notin (x)"));
        assert!(!m("missing in (x)"));
        assert!(m("env in (prod),tier notin (db),!gone"));
        assert!(LabelSelector::parse("env in prod").is_err());
    }

    #[test]
    fn label_selector_objects() {
        let sel = LabelSelector::from_object(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]
        }))
        .expect("valid");
        assert!(sel.matches(Some(&labels(json!({"app": "web", "tier": "a"})))));
        assert!(!sel.matches(Some(&labels(json!({"app": "web"})))));
    }

    #[test]
    fn field_selectors_with_escapes() {
        let s = FieldSelector::parse("metadata.name=a\\,b,metadata.namespace!=kube-system")
            .expect("parses");
        assert_eq!(s.0[0].value, "a,b");
        assert!(s.matches(|f| match f {
            "metadata.name" => Some("a,b".into()),
            _ => Some("default".into()),
        }));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
