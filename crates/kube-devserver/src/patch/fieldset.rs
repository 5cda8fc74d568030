//! Field sets as structured-merge-diff keeps them: a trie of path elements,
//! serialised as `FieldsV1` in `metadata.managedFields`.
//!
//! A set holds *members* (paths that are owned) and *children* (paths under
//! which something is owned). `FieldsV1` writes a member as `"f:name": {}` and
//! a path that is both a member and has children with an extra `".": {}`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path into an object.
///
/// The derived order (field < key < value < index) is the order
/// structured-merge-diff sorts path elements in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of a struct or a key of a map: `f:name`.
    Field(String),
    /// An item of an associative list, by its key fields, as canonical JSON
    /// with the keys sorted: `k:{"name":"app"}`.
    Key(String),
    /// An item of a set list, by its value as canonical JSON: `v:"a"`.
    Value(String),
    /// An item of a list by position: `i:0`.
    Index(usize),
}

impl PathElement {
    /// The key of an associative-list item from its key fields.
    pub fn key(fields: &[(String, Value)]) -> Self {
        let map: Map<String, Value> = fields.iter().cloned().collect();
        PathElement::Key(Value::Object(map).to_string())
    }

    /// The key of a set-list item.
    pub fn value(v: &Value) -> Self {
        PathElement::Value(v.to_string())
    }

    /// The `FieldsV1` spelling of this element.
    pub fn to_fields_v1(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(json) => format!("k:{json}"),
            PathElement::Value(json) => format!("v:{json}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses one `FieldsV1` key (not `.`).
    pub fn from_fields_v1(s: &str) -> Result<Self, String> {
        let parse_json = |json: &str| -> Result<Value, String> {
            serde_json::from_str(json).map_err(|e| format!("invalid JSON in {s:?}: {e}"))
        };
        if let Some(name) = s.strip_prefix("f:") {
            Ok(PathElement::Field(name.to_string()))
        } else if let Some(json) = s.strip_prefix("k:") {
            match parse_json(json)? {
                // Re-serialising sorts the keys, so equal keys compare equal.
                v @ Value::Object(_) => Ok(PathElement::Key(v.to_string())),
                _ => Err(format!("key {s:?} is not a JSON object")),
            }
        } else if let Some(json) = s.strip_prefix("v:") {
            Ok(PathElement::Value(parse_json(json)?.to_string()))
        } else if let Some(i) = s.strip_prefix("i:") {
            i.parse()
                .map(PathElement::Index)
                .map_err(|e| format!("invalid index in {s:?}: {e}"))
        } else {
            Err(format!("unknown path element {s:?}"))
        }
    }
}

impl fmt::Display for PathElement {
    /// kubectl's notation, as structured-merge-diff prints conflict paths:
    /// `.name`, `[name="app"]`, `[="value"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(json) => {
                let parsed: Value = serde_json::from_str(json).unwrap_or(Value::Null);
                let parts: Vec<String> = parsed
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", value_to_string(v)))
                            .collect()
                    })
                    .unwrap_or_default();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(json) => {
                let parsed: Value = serde_json::from_str(json).unwrap_or(Value::Null);
                write!(f, "[={}]", value_to_string(&parsed))
            }
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// structured-merge-diff's `value.ToString`: strings quoted, the rest plain.
fn value_to_string(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => {
            format!(
                "[{}]",
                items
                    .iter()
                    .map(value_to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k}={}", value_to_string(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

/// A path from the object root.
pub type Path = Vec<PathElement>;

/// Formats a path the way conflicts name it: `.spec.containers[name="app"].image`.
pub fn path_to_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A set of paths, stored as a trie.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds `path` as a member (the empty path is ignored).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The subset below `pe`, if any.
    pub fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    pub fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.intersection(&other.members).cloned().collect();
        for (pe, child) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(pe.clone(), both);
                }
            }
        }
        out
    }

    /// Paths in `self` that are not in `other`. Not recursive: removing the
    /// member `a` keeps `a.b`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(pe.clone(), rest);
            }
        }
        out
    }

    /// Like [`difference`](Self::difference), but a member of `other` also
    /// removes everything below it.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (pe, child) in &self.children {
            if other.members.contains(pe) {
                continue;
            }
            let rest = match other.children.get(pe) {
                Some(theirs) => child.recursive_difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(pe.clone(), rest);
            }
        }
        out
    }

    /// Only the paths at or below `pe` (with `pe` kept as the first element).
    pub fn restricted_to(&self, pe: &PathElement) -> FieldSet {
        let mut out = FieldSet::new();
        if self.members.contains(pe) {
            out.members.insert(pe.clone());
        }
        if let Some(child) = self.children.get(pe) {
            out.children.insert(pe.clone(), child.clone());
        }
        out
    }

    /// Makes every field that has owned paths below it a member too, as
    /// structured-merge-diff's `EnsureNamedFieldsAreMembers` does for struct
    /// fields before pruning, so that an emptied parent can be removed.
    pub fn ensure_named_fields_are_members(&self) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.clone();
        for (pe, child) in &self.children {
            if matches!(pe, PathElement::Field(_)) {
                out.members.insert(pe.clone());
            }
            out.children
                .insert(pe.clone(), child.ensure_named_fields_are_members());
        }
        out
    }

    /// Every member path, in order (members of a level before its children).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for pe in &self.members {
            let mut p = prefix.clone();
            p.push(pe.clone());
            out.push(p);
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` JSON of this set.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for pe in keys {
            let node = match self.children.get(pe) {
                Some(child) => {
                    let mut inner = match child.to_fields_v1() {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    if self.members.contains(pe) {
                        inner.insert(".".to_string(), Value::Object(Map::new()));
                    }
                    Value::Object(inner)
                }
                None => Value::Object(Map::new()),
            };
            map.insert(pe.to_fields_v1(), node);
        }
        Value::Object(map)
    }

    /// Parses `FieldsV1` JSON.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        let Value::Object(map) = v else {
            return Err("fieldsV1 must be a JSON object".to_string());
        };
        let mut out = FieldSet::new();
        for (key, inner) in map {
            if key == "." {
                continue;
            }
            let pe = PathElement::from_fields_v1(key)?;
            let Value::Object(inner_map) = inner else {
                return Err(format!("fieldsV1 entry {key:?} must be a JSON object"));
            };
            if inner_map.is_empty() || inner_map.contains_key(".") {
                out.members.insert(pe.clone());
            }
            let child = FieldSet::from_fields_v1(inner)?;
            if !child.is_empty() {
                out.children.insert(pe, child);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    #[test]
    fn fields_v1_round_trip_with_dot_for_member_parents() {
        let mut set = FieldSet::new();
        set.insert(&[f("data"), f("key")]);
        set.insert(&[f("metadata"), f("labels")]);
        set.insert(&[f("metadata"), f("labels"), f("app")]);
        let item = PathElement::key(&[("name".to_string(), json!("app"))]);
        set.insert(&[f("spec"), f("containers"), item.clone()]);
        set.insert(&[f("spec"), f("containers"), item, f("image")]);
        let v1 = set.to_fields_v1();
        assert_eq!(
            v1,
            json!({
                "f:data": {"f:key": {}},
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}}}}
            })
        );
        assert_eq!(FieldSet::from_fields_v1(&v1), Ok(set));
    }

    #[test]
    fn key_parsing_canonicalises_key_order() {
        let a = PathElement::from_fields_v1(r#"k:{"protocol":"TCP","containerPort":80}"#);
        let b = PathElement::from_fields_v1(r#"k:{"containerPort":80,"protocol":"TCP"}"#);
        assert_eq!(a, b);
        assert!(PathElement::from_fields_v1("x:nope").is_err());
    }

    #[test]
    fn paths_print_like_kubectl_conflicts() {
        let item = PathElement::key(&[("name".to_string(), json!("app"))]);
        assert_eq!(
            path_to_string(&[f("spec"), f("containers"), item, f("image")]),
            r#".spec.containers[name="app"].image"#
        );
        let port = PathElement::key(&[
            ("containerPort".to_string(), json!(80)),
            ("protocol".to_string(), json!("TCP")),
        ]);
        assert_eq!(port.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
        assert_eq!(PathElement::value(&json!("x")).to_string(), r#"[="x"]"#);
    }

    #[test]
    fn difference_is_shallow_and_recursive_difference_is_deep() {
        let mut set = FieldSet::new();
        set.insert(&[f("a")]);
        set.insert(&[f("a"), f("b")]);
        let mut a = FieldSet::new();
        a.insert(&[f("a")]);
        let shallow = set.difference(&a);
        assert!(!shallow.has(&[f("a")]));
        assert!(shallow.has(&[f("a"), f("b")]));
        assert!(set.recursive_difference(&a).is_empty());
    }

    #[test]
    fn ensure_named_fields_marks_parents() {
        let mut set = FieldSet::new();
        set.insert(&[f("spec"), f("replicas")]);
        let e = set.ensure_named_fields_are_members();
        assert!(e.has(&[f("spec")]));
        assert!(e.has(&[f("spec"), f("replicas")]));
    }
}
