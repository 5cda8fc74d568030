//! The value operations server-side apply is built from, after
//! structured-merge-diff's `typed` package: the field set of an object, the
//! comparison of two objects, merging an applied configuration into an
//! object, and removing a set of fields from an object.
//!
//! Schema knowledge comes from [`ListSemantics`]: which lists are associative
//! (and by which keys), which are sets, and which maps are atomic.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, Path, PathElement};
use super::{ListSemantics, ListType};

/// Added, changed and removed paths between two objects.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Keeps only what `scope` lets a request own (kube-apiserver excludes
    /// the reset fields from comparisons).
    pub fn exclude(&self, scope: &dyn Fn(&FieldSet) -> FieldSet) -> Comparison {
        Comparison {
            added: scope(&self.added),
            modified: scope(&self.modified),
            removed: scope(&self.removed),
        }
    }

    pub fn modified_or_added(&self) -> FieldSet {
        self.modified.union(&self.added)
    }
}

/// Walks objects with the schema knowledge of one kind.
pub struct Typed<'a> {
    lists: &'a dyn ListSemantics,
}

enum Shape {
    Object,
    Array,
    Scalar,
}

fn shape(v: &Value) -> Shape {
    match v {
        Value::Object(_) => Shape::Object,
        Value::Array(_) => Shape::Array,
        _ => Shape::Scalar,
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

/// Items of a list indexed by their path element, first occurrence first.
struct IndexedList<'v> {
    order: Vec<PathElement>,
    items: BTreeMap<PathElement, Vec<&'v Value>>,
}

impl<'a> Typed<'a> {
    pub fn new(lists: &'a dyn ListSemantics) -> Self {
        Typed { lists }
    }

    fn list_type(&self, fp: &[String]) -> ListType {
        let p: Vec<&str> = fp.iter().map(String::as_str).collect();
        self.lists.list_type(&p)
    }

    fn map_atomic(&self, fp: &[String]) -> bool {
        if fp.is_empty() {
            return false;
        }
        let p: Vec<&str> = fp.iter().map(String::as_str).collect();
        self.lists.map_is_atomic(&p)
    }

    /// The path element of one list item. Strict mode refuses items without
    /// their key fields (as the server refuses such an applied
    /// configuration); lenient mode, used on stored objects, keys them by
    /// `null`.
    fn item_element(
        &self,
        fp: &[String],
        list_type: &ListType,
        item: &Value,
        strict: bool,
    ) -> Result<PathElement, String> {
        match list_type {
            ListType::Map(keys) => {
                let mut fields = Vec::with_capacity(keys.len());
                for key in keys {
                    let value = match item.get(key) {
                        Some(v) if !v.is_null() => Some(v.clone()),
                        _ => {
                            let p: Vec<&str> = fp.iter().map(String::as_str).collect();
                            self.lists.key_default(&p, key)
                        }
                    };
                    match value {
                        Some(v) => fields.push((key.clone(), v)),
                        None if strict => {
                            return Err(format!(
                                ".{}: associative list with keys has an element that omits key field {key:?} (and doesn't have default value)",
                                fp.join(".")
                            ));
                        }
                        None => fields.push((key.clone(), Value::Null)),
                    }
                }
                Ok(PathElement::key(&fields))
            }
            ListType::Set | ListType::Atomic => Ok(PathElement::value(item)),
        }
    }

    fn index_list<'v>(
        &self,
        fp: &[String],
        list_type: &ListType,
        items: &'v [Value],
        strict: bool,
    ) -> Result<IndexedList<'v>, String> {
        let mut out = IndexedList {
            order: Vec::new(),
            items: BTreeMap::new(),
        };
        for item in items {
            let pe = self.item_element(fp, list_type, item, strict)?;
            let slot = out.items.entry(pe.clone()).or_default();
            if slot.is_empty() {
                out.order.push(pe.clone());
            } else if strict {
                return Err(format!(
                    ".{}: duplicate entries for key {}",
                    fp.join("."),
                    pe.to_fields_v1()
                        .trim_start_matches("k:")
                        .trim_start_matches("v:")
                ));
            }
            slot.push(item);
        }
        Ok(out)
    }

    /// The fields an object sets, as structured-merge-diff's `ToFieldSet`:
    /// scalars, atomic lists and maps, list items (which are members and may
    /// have children), and `null`. Empty maps and non-atomic empty lists
    /// own nothing.
    pub fn to_field_set(&self, v: &Value, strict: bool) -> Result<FieldSet, String> {
        let mut out = FieldSet::new();
        self.walk_set(v, &mut Vec::new(), &mut Vec::new(), &mut out, strict)?;
        Ok(out)
    }

    fn walk_set(
        &self,
        v: &Value,
        fp: &mut Vec<String>,
        pp: &mut Path,
        out: &mut FieldSet,
        strict: bool,
    ) -> Result<(), String> {
        match v {
            Value::Object(m) => {
                if !pp.is_empty() && self.map_atomic(fp) {
                    out.insert(pp);
                    return Ok(());
                }
                for (k, child) in m {
                    fp.push(k.clone());
                    pp.push(PathElement::Field(k.clone()));
                    let r = self.walk_set(child, fp, pp, out, strict);
                    pp.pop();
                    fp.pop();
                    r?;
                }
                Ok(())
            }
            Value::Array(items) => {
                let lt = self.list_type(fp);
                if lt == ListType::Atomic {
                    out.insert(pp);
                    return Ok(());
                }
                let indexed = self.index_list(fp, &lt, items, strict)?;
                for pe in &indexed.order {
                    pp.push(pe.clone());
                    out.insert(pp);
                    if let (ListType::Map(_), Some(Value::Object(fields))) =
                        (&lt, indexed.items.get(pe).and_then(|i| i.first().copied()))
                        && !self.map_atomic(fp)
                    {
                        for (k, child) in fields {
                            fp.push(k.clone());
                            pp.push(PathElement::Field(k.clone()));
                            let r = self.walk_set(child, fp, pp, out, strict);
                            pp.pop();
                            fp.pop();
                            r?;
                        }
                    }
                    pp.pop();
                }
                Ok(())
            }
            _ => {
                out.insert(pp);
                Ok(())
            }
        }
    }

    /// What changed from `old` to `new`, as structured-merge-diff's
    /// `Compare`: changed leaves are modified; a map or list item that
    /// appears or disappears is added or removed together with its leaves.
    pub fn compare(&self, old: &Value, new: &Value) -> Comparison {
        let mut c = Comparison::default();
        self.cmp(
            Some(old),
            Some(new),
            &mut Vec::new(),
            &mut Vec::new(),
            &mut c,
        );
        c
    }

    fn is_leaf(&self, l: Option<&Value>, r: Option<&Value>, fp: &[String], root: bool) -> bool {
        let present: Vec<&Value> = [l, r].into_iter().flatten().collect();
        if let [a, b] = present.as_slice()
            && std::mem::discriminant(&shape(a)) != std::mem::discriminant(&shape(b))
        {
            return true;
        }
        let Some(first) = present.first() else {
            return true;
        };
        match shape(first) {
            Shape::Scalar => true,
            Shape::Object => {
                (!root && self.map_atomic(fp)) || present.iter().all(|v| is_empty_container(v))
            }
            Shape::Array => {
                self.list_type(fp) == ListType::Atomic
                    || present.iter().all(|v| is_empty_container(v))
            }
        }
    }

    fn cmp(
        &self,
        l: Option<&Value>,
        r: Option<&Value>,
        fp: &mut Vec<String>,
        pp: &mut Path,
        c: &mut Comparison,
    ) {
        let root = pp.is_empty();
        if self.is_leaf(l, r, fp, root) {
            if root {
                return;
            }
            match (l, r) {
                (None, Some(_)) => c.added.insert(pp),
                (Some(_), None) => c.removed.insert(pp),
                (Some(a), Some(b)) if a != b => c.modified.insert(pp),
                _ => {}
            }
            return;
        }
        match l.or(r) {
            Some(Value::Object(_)) => {
                let empty = Map::new();
                let lm = l.and_then(Value::as_object).unwrap_or(&empty);
                let rm = r.and_then(Value::as_object).unwrap_or(&empty);
                let keys: BTreeSet<&String> = lm.keys().chain(rm.keys()).collect();
                for k in keys {
                    fp.push(k.clone());
                    pp.push(PathElement::Field(k.clone()));
                    self.cmp(lm.get(k.as_str()), rm.get(k.as_str()), fp, pp, c);
                    pp.pop();
                    fp.pop();
                }
            }
            Some(Value::Array(_)) => {
                let lt = self.list_type(fp);
                let no_items: Vec<Value> = Vec::new();
                let la = l.and_then(Value::as_array).unwrap_or(&no_items);
                let ra = r.and_then(Value::as_array).unwrap_or(&no_items);
                let (Ok(li), Ok(ri)) = (
                    self.index_list(fp, &lt, la, false),
                    self.index_list(fp, &lt, ra, false),
                ) else {
                    return;
                };
                let pes: BTreeSet<&PathElement> = li.order.iter().chain(ri.order.iter()).collect();
                for pe in pes {
                    let a = li.items.get(pe).and_then(|v| v.first().copied());
                    let b = ri.items.get(pe).and_then(|v| v.first().copied());
                    pp.push(pe.clone());
                    self.cmp(a, b, fp, pp, c);
                    pp.pop();
                }
            }
            _ => {}
        }
        if !root {
            match (l, r) {
                (None, Some(_)) => c.added.insert(pp),
                (Some(_), None) => c.removed.insert(pp),
                _ => {}
            }
        }
    }

    /// Merges an applied configuration into an object: the configuration
    /// wins on leaves; maps and associative/set lists merge item by item.
    /// A `null` in the configuration removes the field.
    pub fn merge(&self, live: &Value, config: &Value) -> Result<Value, String> {
        Ok(self
            .merge_node(Some(live), Some(config), &mut Vec::new(), true)?
            .unwrap_or_else(|| Value::Object(Map::new())))
    }

    fn merge_node(
        &self,
        l: Option<&Value>,
        r: Option<&Value>,
        fp: &mut Vec<String>,
        root: bool,
    ) -> Result<Option<Value>, String> {
        match (l, r) {
            (_, Some(Value::Null)) => Ok(None),
            (None, Some(r)) => Ok(Some(without_nulls(r))),
            (Some(l), None) => Ok(Some(l.clone())),
            (None, None) => Ok(None),
            (Some(Value::Object(lm)), Some(Value::Object(rm))) if root || !self.map_atomic(fp) => {
                let mut out = Map::new();
                let keys: BTreeSet<&String> = lm.keys().chain(rm.keys()).collect();
                for k in keys {
                    fp.push(k.clone());
                    let merged = self.merge_node(lm.get(k.as_str()), rm.get(k.as_str()), fp, false);
                    fp.pop();
                    if let Some(v) = merged? {
                        out.insert(k.clone(), v);
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            (Some(Value::Array(la)), Some(Value::Array(ra))) => {
                let lt = self.list_type(fp);
                if lt == ListType::Atomic {
                    return Ok(Some(without_nulls(&Value::Array(ra.clone()))));
                }
                self.merge_list(la, ra, &lt, fp)
                    .map(|v| Some(Value::Array(v)))
            }
            (Some(_), Some(r)) => Ok(Some(without_nulls(r))),
        }
    }

    /// structured-merge-diff's list merge: live items the configuration does
    /// not mention keep their place; configured items come in the
    /// configuration's order.
    fn merge_list(
        &self,
        la: &[Value],
        ra: &[Value],
        lt: &ListType,
        fp: &mut Vec<String>,
    ) -> Result<Vec<Value>, String> {
        let lhs = self.index_list(fp, lt, la, false)?;
        let rhs = self.index_list(fp, lt, ra, true)?;
        let in_rhs = |pe: &PathElement| rhs.items.contains_key(pe);
        let mut shared: std::collections::VecDeque<&PathElement> = rhs
            .order
            .iter()
            .filter(|pe| lhs.items.contains_key(*pe))
            .collect();
        let mut next_shared = shared.pop_front();
        let mut out = Vec::with_capacity(la.len().max(ra.len()));
        let (l_len, r_len) = (lhs.order.len(), rhs.order.len());
        let (mut li, mut ri) = (0, 0);
        let mut budget = l_len + r_len + 2;
        while li < l_len || ri < r_len {
            if budget == 0 {
                break;
            }
            budget -= 1;
            if li < l_len && ri < r_len {
                let pe = &lhs.order[li];
                if *pe == rhs.order[ri] {
                    self.push_merged(&mut out, &lhs, &rhs, pe, fp)?;
                    li += 1;
                    ri += 1;
                    next_shared = shared.pop_front();
                    continue;
                }
                if in_rhs(pe) && next_shared.is_some_and(|n| n != pe) {
                    li += 1;
                    continue;
                }
            }
            if li < l_len {
                let pe = &lhs.order[li];
                if !in_rhs(pe) {
                    if let Some(items) = lhs.items.get(pe) {
                        out.extend(items.iter().map(|v| (*v).clone()));
                    }
                    li += 1;
                    continue;
                }
            }
            if ri < r_len {
                let pe = &rhs.order[ri];
                self.push_merged(&mut out, &lhs, &rhs, pe, fp)?;
                ri += 1;
                if next_shared == Some(pe) {
                    next_shared = shared.pop_front();
                }
            }
        }
        Ok(out)
    }

    fn push_merged(
        &self,
        out: &mut Vec<Value>,
        lhs: &IndexedList<'_>,
        rhs: &IndexedList<'_>,
        pe: &PathElement,
        fp: &mut Vec<String>,
    ) -> Result<(), String> {
        let l = lhs.items.get(pe).and_then(|v| v.first().copied());
        let r = rhs.items.get(pe).and_then(|v| v.first().copied());
        if let Some(v) = self.merge_node(l, r, fp, false)? {
            out.push(v);
        }
        Ok(())
    }

    /// Removes the fields and items of `set` from `v`. A map or list that
    /// becomes empty this way disappears (the real server stores `null`,
    /// which reads back as absent).
    pub fn remove_items(&self, v: &Value, set: &FieldSet) -> Value {
        self.remove_node(v, set, &mut Vec::new(), true)
            .unwrap_or_else(|| Value::Object(Map::new()))
    }

    fn remove_node(
        &self,
        v: &Value,
        set: &FieldSet,
        fp: &mut Vec<String>,
        root: bool,
    ) -> Option<Value> {
        match v {
            Value::Object(m) if root || !self.map_atomic(fp) => {
                let mut out = Map::new();
                for (k, child) in m {
                    let pe = PathElement::Field(k.clone());
                    if set.has_member(&pe) {
                        continue;
                    }
                    match set.child(&pe) {
                        Some(sub) => {
                            fp.push(k.clone());
                            let kept = self.remove_node(child, sub, fp, false);
                            fp.pop();
                            if let Some(kept) = kept {
                                out.insert(k.clone(), kept);
                            }
                        }
                        None => {
                            out.insert(k.clone(), child.clone());
                        }
                    }
                }
                if out.is_empty() && !m.is_empty() {
                    None
                } else {
                    Some(Value::Object(out))
                }
            }
            Value::Array(items) => {
                let lt = self.list_type(fp);
                if lt == ListType::Atomic {
                    return Some(v.clone());
                }
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let Ok(pe) = self.item_element(fp, &lt, item, false) else {
                        out.push(item.clone());
                        continue;
                    };
                    if set.has_member(&pe) {
                        continue;
                    }
                    match set.child(&pe) {
                        Some(sub) => {
                            if let Some(kept) = self.remove_node(item, sub, fp, false) {
                                out.push(kept);
                            }
                        }
                        None => out.push(item.clone()),
                    }
                }
                if out.is_empty() && !items.is_empty() {
                    None
                } else {
                    Some(Value::Array(out))
                }
            }
            _ => Some(v.clone()),
        }
    }
}

/// A copy of `v` without `null` map entries (they mean "unset").
pub fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Lists;
    impl ListSemantics for Lists {
        fn list_type(&self, path: &[&str]) -> ListType {
            match path {
                ["items"] => ListType::Map(vec!["name".to_string()]),
                ["tags"] => ListType::Set,
                _ => ListType::Atomic,
            }
        }
        fn map_is_atomic(&self, path: &[&str]) -> bool {
            path == ["selector"]
        }
    }

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.to_string())
    }
    fn k(name: &str) -> PathElement {
        PathElement::key(&[("name".to_string(), json!(name))])
    }

    #[test]
    fn field_set_owns_leaves_items_and_atomics_but_not_struct_parents() {
        let t = Typed::new(&Lists);
        let set = t
            .to_field_set(
                &json!({
                    "spec": {"replicas": 1, "empty": {}},
                    "items": [{"name": "a", "v": 1}],
                    "tags": ["x"],
                    "args": ["a", "b"],
                    "selector": {"app": "x"}
                }),
                true,
            )
            .expect("valid object");
        assert!(set.has(&[f("spec"), f("replicas")]));
        assert!(!set.has(&[f("spec")]));
        assert!(!set.has(&[f("spec"), f("empty")]));
        assert!(set.has(&[f("items"), k("a")]));
        assert!(set.has(&[f("items"), k("a"), f("v")]));
        assert!(set.has(&[f("tags"), PathElement::value(&json!("x"))]));
        assert!(set.has(&[f("args")]));
        assert!(set.has(&[f("selector")]));
        assert!(!set.has(&[f("selector"), f("app")]));
    }

    #[test]
    fn strict_field_set_refuses_missing_keys_and_duplicates() {
        let t = Typed::new(&Lists);
        assert!(t.to_field_set(&json!({"items": [{"v": 1}]}), true).is_err());
        assert!(
            t.to_field_set(&json!({"items": [{"name": "a"}, {"name": "a"}]}), true)
                .is_err()
        );
        assert!(t.to_field_set(&json!({"items": [{"v": 1}]}), false).is_ok());
    }

    #[test]
    fn compare_marks_new_maps_and_items_as_added() {
        let t = Typed::new(&Lists);
        let c = t.compare(
            &json!({"a": 1, "gone": 2, "items": [{"name": "x", "v": 1}]}),
            &json!({"a": 2, "spec": {"b": 1}, "items": [{"name": "x", "v": 1}, {"name": "y"}]}),
        );
        assert!(c.modified.has(&[f("a")]));
        assert!(c.removed.has(&[f("gone")]));
        assert!(c.added.has(&[f("spec")]));
        assert!(c.added.has(&[f("spec"), f("b")]));
        assert!(c.added.has(&[f("items"), k("y")]));
        assert!(c.added.has(&[f("items"), k("y"), f("name")]));
        assert!(!c.modified.has(&[f("items"), k("x"), f("v")]));
    }

    #[test]
    fn merge_keeps_live_items_in_place_and_orders_configured_items() {
        let t = Typed::new(&Lists);
        let merged = t
            .merge(
                &json!({"items": [{"name": "a", "v": 1}, {"name": "b"}, {"name": "c"}], "args": ["x"]}),
                &json!({"items": [{"name": "c", "v": 3}, {"name": "a", "w": 2}], "args": ["y"], "gone": null}),
            )
            .expect("merge");
        assert_eq!(
            merged,
            json!({
                "items": [{"name": "b"}, {"name": "c", "v": 3}, {"name": "a", "v": 1, "w": 2}],
                "args": ["y"]
            })
        );
    }

    #[test]
    fn remove_items_drops_emptied_parents() {
        let t = Typed::new(&Lists);
        let mut set = FieldSet::new();
        set.insert(&[f("data"), f("k")]);
        set.insert(&[f("items"), k("a")]);
        let out = t.remove_items(
            &json!({"data": {"k": "v"}, "items": [{"name": "a"}, {"name": "b"}], "x": 1}),
            &set,
        );
        assert_eq!(out, json!({"items": [{"name": "b"}], "x": 1}));
    }
}
