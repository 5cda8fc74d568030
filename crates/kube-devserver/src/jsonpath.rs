//! The JSONPath subset CRD printer columns use: `.a.b`, `['a.b']`, `[0]`, `[*]`,
//! and filters `[?(@.type=="Ready")]`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter {
        path: Vec<String>,
        value: String,
        negate: bool,
    },
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let chars: Vec<char> = p.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
            }
            '[' => {
                let end = chars[i..].iter().position(|c| *c == ']').map(|e| e + i)?;
                let inner: String = chars[i + 1..end].iter().collect();
                let inner = inner.trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                    let (lhs, rhs, negate) = if let Some((l, r)) = f.split_once("!=") {
                        (l, r, true)
                    } else {
                        let (l, r) = f.split_once("==")?;
                        (l, r, false)
                    };
                    let path = lhs
                        .trim()
                        .strip_prefix('@')?
                        .split('.')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                    let value = rhs.trim().trim_matches('"').trim_matches('\'').to_string();
                    steps.push(Step::Filter {
                        path,
                        value,
                        negate,
                    });
                } else if let Ok(n) = inner.parse::<i64>() {
                    steps.push(Step::Index(n));
                } else {
                    steps.push(Step::Field(
                        inner.trim_matches('\'').trim_matches('"').to_string(),
                    ));
                }
                i = end + 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                steps.push(Step::Field(chars[start..i].iter().collect()));
            }
        }
    }
    Some(steps)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every value the path selects (empty when the path does not parse or matches nothing).
pub fn find<'a>(root: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse(path) else {
        return Vec::new();
    };
    let mut current = vec![root];
    for step in &steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(f) => next.extend(v.get(f.as_str())),
                Step::Index(n) => {
                    if let Some(a) = v.as_array() {
                        let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                        if idx >= 0 {
                            next.extend(a.get(idx as usize));
                        }
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter {
                    path,
                    value,
                    negate,
                } => {
                    for item in v.as_array().into_iter().flatten() {
                        let got = path.iter().try_fold(item, |cur, k| cur.get(k.as_str()));
                        let equal = got.is_some_and(|g| scalar(g) == *value);
                        if equal != *negate {
                            next.push(item);
                        }
                    }
                }
            }
        }
        current = next;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn printer_column_paths() {
        let obj = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "Synced"},
            {"type": "Other", "status": "False"}
        ]}, "spec": {"items": [1, 2], "a.b": "dotted"}});
        assert_eq!(
            find(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![&json!("True")]
        );
        assert_eq!(find(&obj, ".spec.items[*]").len(), 2);
        assert_eq!(find(&obj, ".spec.items[-1]"), vec![&json!(2)]);
        assert_eq!(find(&obj, ".spec['a.b']"), vec![&json!("dotted")]);
        assert!(find(&obj, ".spec.missing").is_empty());
    }
}
