//! `metadata.managedFields`: decoding the entries into field sets per
//! manager, and encoding them back, as kube-apiserver's `managedfields`
//! package does (entry identity, sort order, the cap on update entries).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::FieldConflict;
use super::fieldset::{FieldSet, PathElement, path_to_string};

/// Update entries beyond this many are merged into `ancient-changes`.
const MAX_UPDATE_MANAGERS: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// What makes two entries the same owner. Appliers are one owner whatever
/// API version they apply with; updaters are one owner per version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ManagerId {
    pub manager: String,
    pub operation: Operation,
    pub api_version: Option<String>,
    pub subresource: Option<String>,
}

impl ManagerId {
    pub fn new(
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: Option<&str>,
    ) -> Self {
        let manager = if manager.is_empty() {
            "unknown"
        } else {
            manager
        };
        ManagerId {
            manager: manager.to_string(),
            operation,
            api_version: (operation == Operation::Update).then(|| api_version.to_string()),
            subresource: subresource.filter(|s| !s.is_empty()).map(str::to_string),
        }
    }

    /// The conflict this owner has on `path`.
    pub fn conflict(&self, path: &[PathElement]) -> FieldConflict {
        FieldConflict {
            manager: self.manager.clone(),
            field: path_to_string(path),
            update_api_version: self.api_version.clone(),
            subresource: self.subresource.clone(),
        }
    }
}

/// One owner's fields.
#[derive(Clone, Debug)]
pub struct Entry {
    pub set: FieldSet,
    pub api_version: String,
    pub time: Option<String>,
}

/// All owners of an object.
#[derive(Clone, Debug, Default)]
pub struct Managed {
    pub entries: BTreeMap<ManagerId, Entry>,
}

impl Managed {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops owners that own nothing.
    pub fn drop_empty(&mut self) {
        self.entries.retain(|_, e| !e.set.is_empty());
    }

    /// Decodes `metadata.managedFields`; absent or `null` is empty. Any
    /// malformed entry fails the whole list, as in kube-apiserver.
    pub fn decode(obj: &Value) -> Result<Managed, String> {
        let mut out = Managed::default();
        let Some(list) = managed_fields_of(obj) else {
            return Ok(out);
        };
        let Value::Array(entries) = list else {
            return Err("metadata.managedFields must be a list".to_string());
        };
        for (i, entry) in entries.iter().enumerate() {
            let field = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or_default();
            let operation = match field("operation") {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return Err("operation must be `Apply` or `Update`".to_string()),
            };
            let api_version = field("apiVersion");
            if api_version.is_empty() {
                return Err("apiVersion must not be empty".to_string());
            }
            match field("fieldsType") {
                "FieldsV1" => {}
                "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
                other => {
                    return Err(format!(
                        "invalid fieldsType {other:?} in managed fields entry {i}"
                    ));
                }
            }
            let set = match entry.get("fieldsV1") {
                None | Some(Value::Null) => FieldSet::new(),
                Some(v) => FieldSet::from_fields_v1(v)
                    .map_err(|e| format!("error decoding managed fields entry {i}: {e}"))?,
            };
            let sub = entry.get("subresource").and_then(Value::as_str);
            let id = ManagerId::new(field("manager"), operation, api_version, sub);
            let time = entry
                .get("time")
                .and_then(Value::as_str)
                .map(str::to_string);
            out.entries.insert(
                id,
                Entry {
                    set,
                    api_version: api_version.to_string(),
                    time,
                },
            );
        }
        Ok(out)
    }

    /// The `metadata.managedFields` list, sorted as kube-apiserver sorts it
    /// (Apply before Update, then by time, manager, version, subresource).
    pub fn encode(&self) -> Vec<Value> {
        let mut entries: Vec<(&ManagerId, &Entry)> = self.entries.iter().collect();
        entries.sort_by(|(a, ea), (b, eb)| {
            a.operation
                .cmp(&b.operation)
                .then(seconds(ea.time.as_deref()).cmp(&seconds(eb.time.as_deref())))
                .then(a.manager.cmp(&b.manager))
                .then(ea.api_version.cmp(&eb.api_version))
                .then(a.subresource.cmp(&b.subresource))
        });
        entries
            .into_iter()
            .map(|(id, e)| {
                let mut m = Map::new();
                m.insert("manager".into(), json!(id.manager));
                m.insert("operation".into(), json!(id.operation.as_str()));
                m.insert("apiVersion".into(), json!(e.api_version));
                if let Some(t) = &e.time {
                    m.insert("time".into(), json!(t));
                }
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), e.set.to_fields_v1());
                if let Some(s) = &id.subresource {
                    m.insert("subresource".into(), json!(s));
                }
                Value::Object(m)
            })
            .collect()
    }

    /// Writes the entries into `obj.metadata.managedFields` (removing the
    /// field when there are none).
    pub fn write_to(&self, obj: &mut Value) {
        let encoded = self.encode();
        let Some(Value::Object(meta)) = obj.get_mut("metadata") else {
            if encoded.is_empty() {
                return;
            }
            if let Value::Object(root) = obj {
                root.insert("metadata".into(), json!({"managedFields": encoded}));
            }
            return;
        };
        if encoded.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(encoded));
        }
    }

    /// Keeps at most ten update entries, merging the oldest into
    /// `ancient-changes` buckets per API version, as kube-apiserver's
    /// `capManagersManager` does.
    pub fn cap_update_managers(&mut self) {
        let mut updaters: Vec<ManagerId> = self
            .entries
            .keys()
            .filter(|id| id.operation == Operation::Update)
            .cloned()
            .collect();
        if updaters.len() <= MAX_UPDATE_MANAGERS {
            return;
        }
        updaters.sort_by(|a, b| {
            let ta = seconds(self.entries.get(a).and_then(|e| e.time.as_deref()));
            let tb = seconds(self.entries.get(b).and_then(|e| e.time.as_deref()));
            ta.cmp(&tb).then_with(|| identifier(a).cmp(&identifier(b)))
        });
        let mut first_per_version: BTreeMap<String, ManagerId> = BTreeMap::new();
        let mut count = updaters.len();
        for id in updaters {
            if count <= MAX_UPDATE_MANAGERS {
                break;
            }
            let Some(entry) = self.entries.get(&id).cloned() else {
                continue;
            };
            let bucket = ManagerId::new(
                "ancient-changes",
                Operation::Update,
                &entry.api_version,
                None,
            );
            match first_per_version.get(&entry.api_version) {
                Some(first) => {
                    if !self.entries.contains_key(&bucket)
                        && let Some(first_entry) = self.entries.remove(first)
                    {
                        self.entries.insert(bucket.clone(), first_entry);
                    }
                    if let Some(b) = self.entries.get_mut(&bucket) {
                        b.set = entry.set.union(&b.set);
                        b.time = entry.time.clone();
                    }
                    self.entries.remove(&id);
                    count -= 1;
                }
                None => {
                    first_per_version.insert(entry.api_version.clone(), id);
                }
            }
        }
    }
}

/// The JSON identity kube-apiserver sorts update managers by.
fn identifier(id: &ManagerId) -> String {
    let mut m = Map::new();
    m.insert("manager".into(), json!(id.manager));
    m.insert("operation".into(), json!(id.operation.as_str()));
    if let Some(v) = &id.api_version {
        m.insert("apiVersion".into(), json!(v));
    }
    if let Some(s) = &id.subresource {
        m.insert("subresource".into(), json!(s));
    }
    Value::Object(m).to_string()
}

fn seconds(time: Option<&str>) -> i64 {
    time.and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_second())
        .unwrap_or(0)
}

/// `metadata.managedFields` of an object, unless absent or `null`.
pub fn managed_fields_of(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?
        .get("managedFields")
        .filter(|v| !v.is_null())
}

/// Removes `metadata.managedFields` from an object.
pub fn strip_managed_fields(obj: &mut Value) {
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        meta.remove("managedFields");
    }
}

/// `[]` or `[{}]`: the client asks to clear ownership.
pub fn is_reset(obj: &Value) -> bool {
    match managed_fields_of(obj) {
        Some(Value::Array(list)) => match list.as_slice() {
            [] => true,
            [only] => only.as_object().is_some_and(Map::is_empty),
            _ => false,
        },
        _ => false,
    }
}

/// Paths that never belong to anyone (kube-apiserver's `stripMetaManager`).
pub fn strip_meta(set: &FieldSet) -> FieldSet {
    let f = |s: &str| PathElement::Field(s.to_string());
    let mut strip = FieldSet::new();
    strip.insert(&[f("apiVersion")]);
    strip.insert(&[f("kind")]);
    strip.insert(&[f("metadata")]);
    for field in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        strip.insert(&[f("metadata"), f(field)]);
    }
    set.difference(&strip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(manager: &str, op: &str, time: &str, fields: Value) -> Value {
        json!({"manager": manager, "operation": op, "apiVersion": "v1", "time": time,
               "fieldsType": "FieldsV1", "fieldsV1": fields})
    }

    #[test]
    fn decode_encode_round_trip_sorts_apply_first_then_time() {
        let obj = json!({"metadata": {"managedFields": [
            entry("b", "Update", "2024-01-01T00:00:02Z", json!({"f:data": {"f:x": {}}})),
            entry("a", "Update", "2024-01-01T00:00:03Z", json!({"f:data": {"f:y": {}}})),
            entry("z", "Apply", "2024-01-01T00:00:09Z", json!({"f:data": {"f:z": {}}})),
        ]}});
        let managed = Managed::decode(&obj).expect("valid managedFields");
        let names: Vec<String> = managed
            .encode()
            .iter()
            .map(|e| e["manager"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(names, ["z", "b", "a"]);
    }

    #[test]
    fn decode_refuses_bad_operation_and_fields_type() {
        let bad_op = json!({"metadata": {"managedFields": [
            {"manager": "m", "operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"}]}});
        assert!(Managed::decode(&bad_op).is_err());
        let bad_type = json!({"metadata": {"managedFields": [
            {"manager": "m", "operation": "Update", "apiVersion": "v1"}]}});
        assert!(Managed::decode(&bad_type).is_err());
    }

    #[test]
    fn reset_is_empty_list_or_one_empty_entry() {
        assert!(is_reset(&json!({"metadata": {"managedFields": []}})));
        assert!(is_reset(&json!({"metadata": {"managedFields": [{}]}})));
        assert!(!is_reset(&json!({"metadata": {}})));
        assert!(!is_reset(
            &json!({"metadata": {"managedFields": [{"manager": "x"}]}})
        ));
    }

    #[test]
    fn cap_merges_oldest_updates_into_ancient_changes() {
        let mut managed = Managed::default();
        for i in 0..12 {
            let mut set = FieldSet::new();
            set.insert(&[PathElement::Field(format!("f{i}"))]);
            managed.entries.insert(
                ManagerId::new(&format!("m{i:02}"), Operation::Update, "v1", None),
                Entry {
                    set,
                    api_version: "v1".into(),
                    time: Some(format!("2024-01-01T00:00:{i:02}Z")),
                },
            );
        }
        managed.cap_update_managers();
        assert_eq!(managed.entries.len(), 10);
        let bucket = ManagerId::new("ancient-changes", Operation::Update, "v1", None);
        let merged = &managed.entries[&bucket].set;
        for i in 0..3 {
            assert!(
                merged.has(&[PathElement::Field(format!("f{i}"))]),
                "f{i} kept"
            );
        }
        assert!(!managed.entries.contains_key(&ManagerId::new(
            "m00",
            Operation::Update,
            "v1",
            None
        )));
    }
}
