//! Strategic merge patch as kube-apiserver applies it
//! (`strategicpatch.StrategicMergeMapPatch`, with `MergeParallelList` and
//! `IgnoreUnmatchedNulls`). The Go struct tags it reads (`patchStrategy`,
//! `patchMergeKey`) come from [`ListSemantics`] here: `Map` lists merge on
//! their first key, `Set` lists are merged primitive lists, `Atomic` lists
//! are replaced.

use serde_json::{Map, Value};

use super::{ListSemantics, ListType};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

type Result<T> = std::result::Result<T, String>;

pub fn apply(live: &Value, patch: &Value, lists: &dyn ListSemantics) -> Result<Value> {
    let Value::Object(patch) = patch else {
        return Err("strategic merge patch must be a JSON object".to_string());
    };
    let original = match live {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err("the object to patch is not a JSON object".to_string()),
    };
    let merger = Merger { lists };
    merger
        .merge_map(original, patch.clone(), &mut Vec::new())
        .map(Value::Object)
}

/// How a field's list merges.
enum Strategy {
    Replace,
    Merge { key: Option<String> },
}

struct Merger<'a> {
    lists: &'a dyn ListSemantics,
}

fn bad_patch_type(directive: &Value, m: &Map<String, Value>) -> String {
    format!(
        "unknown patch type: {} in map: {}",
        display(directive),
        Value::Object(m.clone())
    )
}

fn no_merge_key(m: &Value, key: &str) -> String {
    format!("map: {m} does not contain declared merge key: {key}")
}

fn display(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

impl Merger<'_> {
    fn strategy(&self, fp: &[String]) -> Strategy {
        let p: Vec<&str> = fp.iter().map(String::as_str).collect();
        match self.lists.list_type(&p) {
            ListType::Atomic => Strategy::Replace,
            ListType::Set => Strategy::Merge { key: None },
            ListType::Map(keys) => Strategy::Merge {
                key: keys.first().cloned(),
            },
        }
    }

    fn merge_map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        fp: &mut Vec<String>,
    ) -> Result<Map<String, Value>> {
        if let Some(directive) = patch.get(DIRECTIVE) {
            return match directive.as_str() {
                Some("replace") => {
                    patch.remove(DIRECTIVE);
                    Ok(patch)
                }
                Some("delete") => Ok(Map::new()),
                _ => Err(bad_patch_type(directive, &patch)),
            };
        }
        apply_retain_keys(&mut original, &mut patch)?;
        self.merge_set_element_order(&mut original, &mut patch, fp)?;

        // Deletion lists first: Go iterates the patch in random order, and
        // removing before adding is the order a client's patch means.
        let mut keys: Vec<String> = patch.keys().cloned().collect();
        keys.sort_by_key(|k| !k.starts_with(DELETE_FROM_PRIMITIVE_LIST));
        for key in keys {
            let Some(patch_value) = patch.remove(&key) else {
                continue;
            };
            let (key, is_delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
                Some(rest) => match rest.strip_prefix('/') {
                    Some(k) => (k.to_string(), true),
                    None => return Err("invalid patch format of primitive list".to_string()),
                },
                None => (key, false),
            };
            if patch_value.is_null() {
                original.remove(&key);
                continue;
            }
            let Some(current) = original.remove(&key) else {
                if !is_delete_list && let Some(v) = clean_new_value(patch_value) {
                    original.insert(key, v);
                }
                continue;
            };
            fp.push(key.clone());
            let merged = match (current, patch_value) {
                (Value::Object(o), Value::Object(p)) => self.merge_map(o, p, fp).map(Value::Object),
                (Value::Array(o), Value::Array(p)) => self
                    .merge_slice_handler(o, p, fp, is_delete_list)
                    .map(Value::Array),
                // A deletion list for something that is not a list: no-op.
                (current, _) if is_delete_list => Ok(current),
                (_, patch_value) => Ok(clean_new_value(patch_value).unwrap_or(Value::Null)),
            };
            fp.pop();
            let merged = merged?;
            if !merged.is_null() || is_delete_list {
                original.insert(key, merged);
            }
        }
        Ok(original)
    }

    fn merge_slice_handler(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        fp: &mut Vec<String>,
        is_delete_list: bool,
    ) -> Result<Vec<Value>> {
        match self.strategy(fp) {
            Strategy::Merge { key } => {
                self.merge_slice(original, patch, key.as_deref(), fp, is_delete_list)
            }
            Strategy::Replace if is_delete_list => {
                self.merge_slice(original, patch, None, fp, true)
            }
            Strategy::Replace => Ok(clean_list(patch)),
        }
    }

    fn merge_slice(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        merge_key: Option<&str>,
        fp: &mut Vec<String>,
        is_delete_list: bool,
    ) -> Result<Vec<Value>> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        let of_maps = element_kind(&original, &patch)?;
        let (original, patch, merged) = if !of_maps {
            if is_delete_list {
                return Ok(original
                    .into_iter()
                    .filter(|v| !patch.contains(v))
                    .collect());
            }
            let mut merged = original.clone();
            merged.extend(patch.iter().cloned());
            dedup(&mut merged);
            (original, patch, merged)
        } else {
            let Some(key) = merge_key else {
                return Err(format!(
                    "cannot merge lists without merge key for {}",
                    fp.join(".")
                ));
            };
            let (original, patch) = merge_slice_with_special_elements(original, patch, key)?;
            let merged =
                self.merge_slice_without_special_elements(original.clone(), &patch, key, fp)?;
            (original, patch, merged)
        };
        let key = if of_maps { merge_key } else { None };
        let (patch_items, server_only) = partition(merged, &patch, key)?;
        normalize_element_order(patch_items, server_only, &patch, &original, key)
    }

    fn merge_slice_without_special_elements(
        &self,
        mut original: Vec<Value>,
        patch: &[Value],
        key: &str,
        fp: &mut Vec<String>,
    ) -> Result<Vec<Value>> {
        for item in patch {
            let Some(key_value) = item.get(key) else {
                return Err(no_merge_key(item, key));
            };
            match find_by_key(&original, key, key_value)? {
                Some(i) => {
                    let current = std::mem::take(&mut original[i]);
                    let (Value::Object(o), Value::Object(p)) = (current, item.clone()) else {
                        return Err(format!("value for key {i} is not a map"));
                    };
                    original[i] = Value::Object(self.merge_map(o, p, fp)?);
                }
                None => {
                    if let Some(v) = clean_new_value(item.clone()) {
                        original.push(v);
                    }
                }
            }
        }
        Ok(original)
    }

    /// `$setElementOrder/<field>`: merges the field's patch list and orders
    /// the result (order list, then patch list, then live list).
    fn merge_set_element_order(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        fp: &mut Vec<String>,
    ) -> Result<()> {
        let order_keys: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
            .cloned()
            .collect();
        for order_key in order_keys {
            let order = patch.remove(&order_key).unwrap_or(Value::Null);
            let Value::Array(order) = order else {
                return Err("invalid patch format of setElementOrder list".to_string());
            };
            let field = match order_key.split_once('/') {
                Some((SET_ELEMENT_ORDER, field)) => field.to_string(),
                _ => return Err("invalid patch format of setElementOrder list".to_string()),
            };
            let original_list = match original.get(&field) {
                None => None,
                Some(Value::Array(a)) => Some(a.clone()),
                Some(other) => return Err(format!("expected a list at {field}, found {other}")),
            };
            let patch_list = match patch.get(&field) {
                None => None,
                Some(Value::Array(a)) => Some(a.clone()),
                Some(other) => return Err(format!("expected a list at {field}, found {other}")),
            };
            fp.push(field.clone());
            let strategy = self.strategy(fp);
            let merge_key = match &strategy {
                Strategy::Merge { key } => key.clone(),
                Strategy::Replace => None,
            };
            let result = (|| -> Result<Option<Vec<Value>>> {
                validate_patch_with_set_order(
                    patch_list.as_deref().unwrap_or(&[]),
                    &order,
                    merge_key.as_deref(),
                )?;
                let merged = match (&original_list, &patch_list) {
                    (Some(o), None) => o.clone(),
                    (None, Some(p)) => clean_list(p.clone()),
                    (Some(o), Some(p)) => {
                        self.merge_slice_handler(o.clone(), p.clone(), fp, false)?
                    }
                    (None, None) => return Ok(None),
                };
                let of_maps = element_kind(
                    original_list.as_deref().unwrap_or(&[]),
                    patch_list.as_deref().unwrap_or(&[]),
                )
                .unwrap_or(false);
                let key = if of_maps { merge_key.as_deref() } else { None };
                let (patch_items, server_only) = partition(merged, &order, key)?;
                normalize_element_order(
                    patch_items,
                    server_only,
                    &order,
                    original_list.as_deref().unwrap_or(&[]),
                    key,
                )
                .map(Some)
            })();
            fp.pop();
            if let Some(both) = result? {
                original.insert(field.clone(), Value::Array(both));
            }
            patch.remove(&field);
        }
        Ok(())
    }
}

/// `$retainKeys`: clears the fields of `original` the list does not name.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<()> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err("invalid patch format of retainKeys".to_string());
    };
    let retained: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !retained.contains(&k.as_str()) {
            return Err("invalid patch format of retainKeys".to_string());
        }
    }
    original.retain(|k, _| retained.contains(&k.as_str()));
    Ok(())
}

/// Handles `$patch: delete` and `$patch: replace` items of a merged list.
fn merge_slice_with_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Value::Object(m) = &item else {
            return Err(format!("expected a map in the patch list, found {item}"));
        };
        match m.get(DIRECTIVE) {
            None => plain.push(item),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let Some(key_value) = m.get(key) else {
                        return Err(no_merge_key(&item, key));
                    };
                    original.retain(|o| o.get(key) != Some(key_value));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err("merging lists cannot yet be specified in the patch".to_string());
                }
                _ => return Err(bad_patch_type(d, m)),
            },
        }
    }
    if replace {
        Ok((clean_list(plain), Vec::new()))
    } else {
        Ok((original, plain))
    }
}

fn find_by_key(list: &[Value], key: &str, value: &Value) -> Result<Option<usize>> {
    for (i, item) in list.iter().enumerate() {
        let Value::Object(m) = item else {
            return Err(format!("value for key {i} is not a map"));
        };
        if m.get(key) == Some(value) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Whether the elements are maps; lists of lists and mixed lists are refused.
fn element_kind(a: &[Value], b: &[Value]) -> Result<bool> {
    let mut kind: Option<u8> = None;
    for v in a.iter().chain(b) {
        let k = match v {
            Value::Object(_) => 0,
            Value::Array(_) => return Err("lists of lists are not supported".to_string()),
            Value::String(_) => 1,
            Value::Number(_) => 2,
            Value::Bool(_) => 3,
            Value::Null => 4,
        };
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => {
                return Err("list element types are not identical".to_string());
            }
            _ => {}
        }
    }
    Ok(kind == Some(0))
}

fn dedup(list: &mut Vec<Value>) {
    let mut seen: Vec<Value> = Vec::with_capacity(list.len());
    list.retain(|v| {
        if seen.contains(v) {
            false
        } else {
            seen.push(v.clone());
            true
        }
    });
}

/// The identity of an item for ordering: its merge key value, or itself.
fn identity<'v>(item: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(k) => item.get(k),
        None => Some(item),
    }
}

fn index_in(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let wanted = identity(item, key);
    list.iter().position(|v| identity(v, key) == wanted)
}

/// Splits `merged` into items present in `by` and server-only items.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut in_patch = Vec::new();
    let mut server_only = Vec::new();
    for item in merged {
        if let Some(k) = key
            && item.get(k).is_none()
        {
            return Err(no_merge_key(&item, k));
        }
        if index_in(by, &item, key).is_some() {
            in_patch.push(item);
        } else {
            server_only.push(item);
        }
    }
    Ok((in_patch, server_only))
}

fn sort_by_order(items: &mut [Value], order: &[Value], key: Option<&str>) {
    items.sort_by_key(|item| index_in(order, item, key).unwrap_or(usize::MAX));
}

/// Orders patch items as `patch_order` and server-only items as
/// `server_order`, then interleaves them keeping both relative orders.
fn normalize_element_order(
    mut patch: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>> {
    if let Some(k) = key {
        for item in patch
            .iter()
            .chain(&server_only)
            .chain(patch_order)
            .chain(server_order)
        {
            if item.get(k).is_none() && item.get(DIRECTIVE).is_none() {
                return Err(no_merge_key(item, k));
            }
        }
    }
    sort_by_order(&mut patch, patch_order, key);
    sort_by_order(&mut server_only, server_order, key);
    Ok(merge_sorted(server_only, patch, server_order, key))
}

/// strategicpatch's `mergeSortedSlice`: a server-only item goes first only
/// when both it and the next patch item are in the live list and it comes
/// earlier there.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    index_in(server_order, l, key),
                    index_in(server_order, r, key),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// The items of the patch list must appear in the order list, in order.
fn validate_patch_with_set_order(
    patch: &[Value],
    order: &[Value],
    key: Option<&str>,
) -> Result<()> {
    if order.is_empty() || patch.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = patch
        .iter()
        .filter(|v| key.is_none() || v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"))
        .collect();
    let (mut pi, mut oi) = (0, 0);
    while pi < non_delete.len() && oi < order.len() {
        if non_delete[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        if identity(non_delete[pi], key) == identity(&order[oi], key) {
            pi += 1;
        }
        oi += 1;
    }
    if pi < non_delete.len() && oi >= order.len() {
        return Err(format!(
            "the order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}",
            Value::Array(patch.to_vec()),
            Value::Array(order.to_vec())
        ));
    }
    Ok(())
}

/// A value the patch adds where the live object has nothing: directives go
/// (a map carrying `$patch` is dropped whole, as kube-apiserver's
/// `removeDirectives` does) and so do `null`s and the parallel-list keys the
/// typed decoding would drop.
fn clean_new_value(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            let out: Map<String, Value> = m
                .into_iter()
                .filter(|(k, v)| !v.is_null() && !k.starts_with('$'))
                .filter_map(|(k, v)| clean_new_value(v).map(|v| (k, v)))
                .collect();
            Some(Value::Object(out))
        }
        Value::Array(items) => Some(Value::Array(clean_list(items))),
        Value::Null => None,
        other => Some(other),
    }
}

fn clean_list(items: Vec<Value>) -> Vec<Value> {
    items.into_iter().filter_map(clean_new_value).collect()
}

#[cfg(test)]
mod tests;
