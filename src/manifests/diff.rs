//! A readable diff of a live object against what applying Git would make of it, as YAML lines.
//! Secret values never appear: each is shown as `***`, marked `(changed)` when it differs.

use serde_json::Value;

/// What every write changes by itself, or what only the server sets: not worth showing.
fn strip_server_fields(object: &Value) -> Value {
    let mut out = super::object::comparable(object);
    if let Some(metadata) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["uid", "creationTimestamp"] {
            metadata.remove(field);
        }
    }
    out
}

fn is_secret(object: &Value) -> bool {
    object["apiVersion"] == "v1" && object["kind"] == "Secret"
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Replaces every value of a Secret's `data`/`stringData` (and kubectl's last-applied
/// annotation, which copies them) by `***`, or `*** (changed)` when `other` has another value.
fn mask(object: &mut Value, other: Option<&Value>) {
    if !is_secret(object) {
        return;
    }
    for field in ["data", "stringData"] {
        let theirs = other.and_then(|o| o.get(field)).cloned();
        if let Some(Value::Object(values)) = object.get_mut(field) {
            for (key, value) in values.iter_mut() {
                let same = theirs.as_ref().and_then(|t| t.get(key)) == Some(&*value);
                *value = Value::String(if same || theirs.is_none() {
                    "***".to_string()
                } else {
                    "*** (changed)".to_string()
                });
            }
        }
    }
    if let Some(annotations) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        && let Some(value) = annotations.get_mut(LAST_APPLIED)
    {
        *value = Value::String("***".to_string());
    }
}

fn to_yaml(object: &Value) -> String {
    crate::yaml::to_string(object).unwrap_or_else(|e| format!("<cannot render: {e}>\n"))
}

/// The diff of `live` (None: the object is new) against `result`, Secret values masked.
pub fn object_diff(live: Option<&Value>, result: &Value) -> String {
    let mut new = strip_server_fields(result);
    let mut old = live.map(strip_server_fields);
    mask(&mut new, old.as_ref());
    if let Some(old) = old.as_mut() {
        mask(old, None);
    }
    let old_text = old.as_ref().map(to_yaml).unwrap_or_default();
    unified(&old_text, &to_yaml(&new), 3)
}

/// The YAML of an object about to be deleted, Secret values masked, every line prefixed `-`.
pub fn removal(live: &Value) -> String {
    let mut old = strip_server_fields(live);
    mask(&mut old, None);
    unified(&to_yaml(&old), "", 3)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Keep,
    Remove,
    Add,
}

/// Line operations turning `a` into `b` (longest common subsequence on the part between the
/// common prefix and suffix; a middle too large for that is shown as removed then added).
fn operations<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<(Op, &'a str)> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops: Vec<(Op, &str)> = a[..prefix].iter().map(|l| (Op::Keep, *l)).collect();
    if am.len().saturating_mul(bm.len()) > 4_000_000 {
        ops.extend(am.iter().map(|l| (Op::Remove, *l)));
        ops.extend(bm.iter().map(|l| (Op::Add, *l)));
    } else {
        let (n, m) = (am.len(), bm.len());
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * (m + 1) + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * (m + 1) + j + 1] + 1
                } else {
                    lcs[(i + 1) * (m + 1) + j].max(lcs[i * (m + 1) + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                ops.push((Op::Keep, am[i]));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[(i + 1) * (m + 1) + j] >= lcs[i * (m + 1) + j + 1]) {
                ops.push((Op::Remove, am[i]));
                i += 1;
            } else {
                ops.push((Op::Add, bm[j]));
                j += 1;
            }
        }
    }
    ops.extend(a[a.len() - suffix..].iter().map(|l| (Op::Keep, *l)));
    ops
}

/// A unified-style line diff with `context` unchanged lines around each change.
pub fn unified(old: &str, new: &str, context: usize) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = operations(&a, &b);
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| *op != Op::Keep)
        .map(|(i, _)| i)
        .collect();
    let mut out = String::new();
    let mut last_shown: Option<usize> = None;
    for (index, (op, line)) in ops.iter().enumerate() {
        let near = changed
            .iter()
            .any(|&c| index + context >= c && index <= c + context);
        if !near {
            continue;
        }
        if last_shown.is_some_and(|l| index > l + 1) || (last_shown.is_none() && index > 0) {
            out.push_str("  ...\n");
        }
        let mark = match op {
            Op::Keep => ' ',
            Op::Remove => '-',
            Op::Add => '+',
        };
        out.push(mark);
        out.push(' ');
        out.push_str(line);
        out.push('\n');
        last_shown = Some(index);
    }
    if last_shown.is_some_and(|l| l + 1 < ops.len()) {
        out.push_str("  ...\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn line_diff_shows_changes_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\n";
        assert_eq!(unified(old, new, 1), "  ...\n  d\n- e\n+ E\n  f\n  ...\n");
        assert_eq!(unified("", "x\ny\n", 3), "+ x\n+ y\n");
        assert_eq!(unified("same\n", "same\n", 3), "");
    }

    #[test]
    fn secret_values_are_masked() {
        let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "resourceVersion": "9",
            "annotations": {LAST_APPLIED: "{\"data\":{\"a\":\"c2VjcmV0\"}}"}},
            "data": {"a": "c2VjcmV0", "b": "b2xk"}});
        let result = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "resourceVersion": "10",
            "annotations": {LAST_APPLIED: "{\"data\":{\"a\":\"c2VjcmV0\"}}"}},
            "data": {"a": "c2VjcmV0", "b": "bmV3"}});
        let diff = object_diff(Some(&live), &result);
        for value in ["c2VjcmV0", "b2xk", "bmV3"] {
            assert!(!diff.contains(value), "{diff}");
        }
        assert_eq!(diff.matches("(changed)").count(), 1, "{diff}");
        assert_eq!(
            diff.lines().filter(|l| l.starts_with('-')).count(),
            1,
            "{diff}"
        );
        assert!(!diff.contains("resourceVersion"), "{diff}");
        let gone = removal(&live);
        assert!(!gone.contains("c2VjcmV0"), "{gone}");
        assert!(gone.lines().all(|l| l.starts_with('-')), "{gone}");
    }
}
