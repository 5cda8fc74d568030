//! Per-kind rules of create and update (the real server's `rest.RESTCreateStrategy`
//! / `RESTUpdateStrategy`): what a write may set, defaulting, generation, and validation.

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::{Map, Value, json};

use super::crd;
use super::defaults;
use super::names::{config_key_problems, validate_annotations, validate_labels, validate_name};
use super::object;
use super::registry::{Builtin, ResourceType};
use super::schema;
use super::selector::LabelSelector;
use super::status::{ApiError, FieldError};
use super::store::Store;

/// Which endpoint a write came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sub {
    Main,
    Status,
    /// `namespaces/{name}/finalize`.
    Finalize,
}

impl Sub {
    /// The subresource name managedFields records.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Sub::Main => None,
            Sub::Status => Some("status"),
            Sub::Finalize => Some("finalize"),
        }
    }
}

fn set_or_remove(obj: &mut Value, key: &str, value: Option<Value>) {
    if let Some(map) = obj.as_object_mut() {
        match value {
            Some(v) => {
                map.insert(key.into(), v);
            }
            None => {
                map.remove(key);
            }
        }
    }
}

/// PrepareForCreate + defaulting.
pub fn prepare_create(rt: &ResourceType, obj: &mut Value, store: &Store) -> Result<(), ApiError> {
    if rt.status {
        set_or_remove(obj, "status", None);
    }
    if rt.tracks_generation() {
        object::meta_mut(obj).insert("generation".into(), json!(1));
    } else {
        object::meta_mut(obj).remove("generation");
    }
    match rt.builtin() {
        Some(Builtin::Namespace) => {
            set_or_remove(obj, "status", Some(json!({"phase": "Active"})));
            let spec = obj
                .as_object_mut()
                .map(|m| m.entry("spec").or_insert_with(|| json!({})));
            if let Some(spec) = spec.and_then(Value::as_object_mut) {
                let fins = spec.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(list) = fins.as_array_mut()
                    && !list.iter().any(|f| f == "kubernetes")
                {
                    list.push(json!("kubernetes"));
                }
            }
            namespace_label(obj);
        }
        Some(Builtin::Secret) => secret_data(rt, obj)?,
        Some(Builtin::ConfigMap) => check_binary_data(rt, obj)?,
        Some(Builtin::Service) => {
            defaults::service(obj);
            allocate_service(obj, None, store);
            set_or_remove(obj, "status", Some(json!({"loadBalancer": {}})));
        }
        Some(Builtin::Deployment) => {
            defaults::deployment(obj);
            set_or_remove(obj, "status", Some(json!({})));
        }
        Some(Builtin::StatefulSet) => {
            defaults::stateful_set(obj);
            set_or_remove(
                obj,
                "status",
                Some(json!({"replicas": 0, "availableReplicas": 0})),
            );
        }
        Some(Builtin::DaemonSet) => {
            defaults::daemon_set(obj);
            set_or_remove(
                obj,
                "status",
                Some(
                    json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0}),
                ),
            );
        }
        Some(Builtin::PodDisruptionBudget) => set_or_remove(
            obj,
            "status",
            Some(
                json!({"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0}),
            ),
        ),
        Some(Builtin::Crd) => crd::set_defaults(obj),
        _ => {}
    }
    structural_schema(rt, obj);
    Ok(())
}

/// PrepareForUpdate (by endpoint) + defaulting + generation.
pub fn prepare_update(
    rt: &ResourceType,
    obj: &mut Value,
    old: &Value,
    sub: Sub,
    store: &Store,
) -> Result<(), ApiError> {
    match sub {
        Sub::Status => {
            // A status write changes only status (and the managedFields recording it).
            let status = obj.get("status").cloned();
            let managed = object::meta(obj)
                .and_then(|m| m.get("managedFields"))
                .cloned();
            let rv = object::resource_version(obj).to_string();
            *obj = old.clone();
            set_or_remove(obj, "status", status);
            let m = object::meta_mut(obj);
            match managed {
                Some(mf) => m.insert("managedFields".into(), mf),
                None => m.remove("managedFields"),
            };
            m.insert("resourceVersion".into(), rv.into());
            return Ok(());
        }
        Sub::Finalize => {
            let finalizers = object::get_path(obj, "spec.finalizers").cloned();
            let managed = object::meta(obj)
                .and_then(|m| m.get("managedFields"))
                .cloned();
            *obj = old.clone();
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                match finalizers {
                    Some(f) => spec.insert("finalizers".into(), f),
                    None => spec.remove("finalizers"),
                };
            }
            if let Some(mf) = managed {
                object::meta_mut(obj).insert("managedFields".into(), mf);
            }
            return Ok(());
        }
        Sub::Main => {}
    }
    if rt.status {
        set_or_remove(obj, "status", old.get("status").cloned());
    }
    match rt.builtin() {
        Some(Builtin::Namespace) => {
            let fins = object::get_path(old, "spec.finalizers").cloned();
            let spec = obj
                .as_object_mut()
                .map(|m| m.entry("spec").or_insert_with(|| json!({})));
            if let Some(spec) = spec.and_then(Value::as_object_mut) {
                match fins {
                    Some(f) => spec.insert("finalizers".into(), f),
                    None => spec.remove("finalizers"),
                };
            }
            namespace_label(obj);
        }
        Some(Builtin::Secret) => secret_data(rt, obj)?,
        Some(Builtin::ConfigMap) => check_binary_data(rt, obj)?,
        Some(Builtin::Service) => {
            defaults::service(obj);
            allocate_service(obj, Some(old), store);
        }
        Some(Builtin::Deployment) => defaults::deployment(obj),
        Some(Builtin::StatefulSet) => defaults::stateful_set(obj),
        Some(Builtin::DaemonSet) => defaults::daemon_set(obj),
        Some(Builtin::Crd) => crd::set_defaults(obj),
        _ => {}
    }
    structural_schema(rt, obj);
    if rt.tracks_generation() {
        let mut generation = object::generation(old);
        if spec_changed(rt, obj, old) {
            generation += 1;
        }
        object::meta_mut(obj).insert("generation".into(), json!(generation));
    }
    Ok(())
}

/// Prunes unknown fields, then applies defaults, from a CRD's structural schema.
fn structural_schema(rt: &ResourceType, obj: &mut Value) {
    if let Some(custom) = rt.custom()
        && let Some(schema) = &custom.structural
    {
        if !custom.preserve_unknown_fields {
            schema::prune_unknown_fields(obj, schema);
        }
        schema::apply_defaults(obj, schema);
    }
}

/// Whether a write changes what `metadata.generation` tracks.
fn spec_changed(rt: &ResourceType, new: &Value, old: &Value) -> bool {
    match rt.builtin() {
        None => object::without_metadata(new, false) != object::without_metadata(old, false),
        Some(Builtin::Deployment) => {
            new.get("spec") != old.get("spec")
                || object::annotations(new) != object::annotations(old)
        }
        _ => new.get("spec") != old.get("spec"),
    }
}

fn namespace_label(obj: &mut Value) {
    let name = object::name(obj).to_string();
    let meta = object::meta_mut(obj);
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if let Some(labels) = labels.as_object_mut() {
        labels.insert("kubernetes.io/metadata.name".into(), name.into());
    }
}

fn decode_error(rt: &ResourceType, err: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!(
        "{} in version \"{}\" cannot be handled as a {}: {err}",
        rt.kind, rt.version, rt.kind
    ))
}

/// Secret: `stringData` merged into base64 `data` and dropped; `type` defaults to Opaque.
fn secret_data(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    let engine = base64::engine::general_purpose::STANDARD;
    let Some(map) = obj.as_object_mut() else {
        return Ok(());
    };
    if let Some(data) = map.get("data").and_then(Value::as_object) {
        for (key, value) in data {
            let text = value.as_str().ok_or_else(|| {
                decode_error(rt, format!("data[{key}]: expected a base64 string"))
            })?;
            engine.decode(text).map_err(|e| {
                decode_error(rt, format!("illegal base64 data in data[{key}]: {e}"))
            })?;
        }
    }
    if let Some(string_data) = map.remove("stringData") {
        let entries = match string_data {
            Value::Object(entries) => entries,
            Value::Null => Map::new(),
            _ => return Err(decode_error(rt, "stringData: expected an object")),
        };
        let data = map.entry("data").or_insert_with(|| json!({}));
        if data.is_null() {
            *data = json!({});
        }
        if let Some(data) = data.as_object_mut() {
            for (key, value) in entries {
                let text = value.as_str().ok_or_else(|| {
                    decode_error(rt, format!("stringData[{key}]: expected a string"))
                })?;
                data.insert(key, engine.encode(text.as_bytes()).into());
            }
        }
    }
    if map
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        map.insert("type".into(), "Opaque".into());
    }
    Ok(())
}

fn check_binary_data(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let engine = base64::engine::general_purpose::STANDARD;
    if let Some(data) = obj.get("binaryData").and_then(Value::as_object) {
        for (key, value) in data {
            let text = value.as_str().ok_or_else(|| {
                decode_error(rt, format!("binaryData[{key}]: expected a base64 string"))
            })?;
            engine.decode(text).map_err(|e| {
                decode_error(rt, format!("illegal base64 data in binaryData[{key}]: {e}"))
            })?;
        }
    }
    Ok(())
}

/// Cluster IPs come from 10.96.0.0/16 (10.96.0.1 is the `kubernetes` Service);
/// node ports from 30000-32767. Values a previous version had are kept.
fn allocate_service(obj: &mut Value, old: Option<&Value>, store: &Store) {
    let services = store.list(&(String::new(), "services".into()), None);
    let (mut used_ips, mut used_ports) = (BTreeSet::new(), BTreeSet::new());
    for s in &services {
        if let Some(ip) = object::get_path(s, "spec.clusterIP").and_then(Value::as_str) {
            used_ips.insert(ip.to_string());
        }
        for p in object::get_path(s, "spec.ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
                used_ports.insert(n);
            }
        }
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty == "ExternalName" {
        return;
    }
    let old_spec = old.and_then(|o| o.get("spec"));
    let given = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ip = if !given.is_empty() {
        given
    } else if let Some(prev) = old_spec
        .and_then(|s| s.get("clusterIP"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        prev.to_string()
    } else {
        (10..=65_534u32)
            .map(|n| format!("10.96.{}.{}", n / 256, n % 256))
            .find(|ip| !used_ips.contains(ip))
            .unwrap_or_else(|| "10.96.255.254".into())
    };
    spec.insert("clusterIP".into(), ip.clone().into());
    spec.insert("clusterIPs".into(), json!([ip]));
    spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
    spec.entry("ipFamilyPolicy")
        .or_insert_with(|| json!("SingleStack"));
    if ty == "NodePort" || ty == "LoadBalancer" {
        let old_ports: Vec<Value> = old_spec
            .and_then(|s| s.get("ports"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut() {
                let Some(pm) = p.as_object_mut() else {
                    continue;
                };
                if pm.get("nodePort").and_then(Value::as_i64).is_some() {
                    continue;
                }
                let prev = old_ports
                    .iter()
                    .find(|o| {
                        o.get("port") == pm.get("port") && o.get("protocol") == pm.get("protocol")
                    })
                    .and_then(|o| o.get("nodePort"))
                    .and_then(Value::as_i64);
                let n = prev.unwrap_or_else(|| {
                    let n = (30_000..=32_767)
                        .find(|n| !used_ports.contains(n))
                        .unwrap_or(32_767);
                    used_ports.insert(n);
                    n
                });
                pm.insert("nodePort".into(), json!(n));
            }
        }
    }
}

/// Validation of a create (`old` None) or update.
pub fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = object::name(obj);
    if old.is_none() {
        errs.extend(validate_name(rt.name_rule(), name, "metadata.name"));
    }
    if let Some(labels) = object::labels(obj) {
        errs.extend(validate_labels(labels));
    }
    if let Some(annotations) = object::annotations(obj) {
        errs.extend(validate_annotations(annotations));
    }
    errs.extend(validate_owner_references(obj));
    errs.extend(validate_finalizer_names(obj));
    match rt.builtin() {
        Some(Builtin::Secret) => errs.extend(validate_secret(obj, old)),
        Some(Builtin::ConfigMap) => errs.extend(validate_config_map(obj, old)),
        Some(Builtin::Service) => errs.extend(validate_service(obj, old)),
        Some(Builtin::Deployment | Builtin::StatefulSet | Builtin::DaemonSet) => {
            errs.extend(validate_workload(obj, old))
        }
        Some(Builtin::RoleBinding | Builtin::ClusterRoleBinding) => {
            if obj.get("roleRef").is_none_or(Value::is_null) {
                errs.push(FieldError::required("roleRef", ""));
            } else if let Some(old) = old
                && old.get("roleRef") != obj.get("roleRef")
            {
                errs.push(FieldError::invalid(
                    "roleRef",
                    obj["roleRef"].clone(),
                    "cannot change roleRef",
                ));
            }
        }
        Some(Builtin::Crd) => errs.extend(crd::validate(obj, old)),
        _ => {}
    }
    errs
}

fn validate_owner_references(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let refs = object::owner_references(obj);
    let mut controllers = 0;
    for (i, r) in refs.iter().enumerate() {
        for key in ["apiVersion", "kind", "name", "uid"] {
            if r.get(key).and_then(Value::as_str).is_none_or(str::is_empty) {
                let detail = if key == "apiVersion" || key == "kind" {
                    format!("{key} must not be empty")
                } else {
                    String::new()
                };
                let field = format!("metadata.ownerReferences[{i}].{key}");
                errs.push(if detail.is_empty() {
                    FieldError::required(&field, "")
                } else {
                    FieldError::invalid(&field, r.get(key).cloned().unwrap_or(json!("")), detail)
                });
            }
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        errs.push(FieldError::invalid(
            "metadata.ownerReferences",
            json!(refs),
            "Only one reference can have Controller set to true",
        ));
    }
    errs
}

fn validate_finalizer_names(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for f in object::finalizers(obj) {
        let syntax = serde_json::Map::from_iter([(f.clone(), json!(""))]);
        if !validate_labels(&syntax).is_empty() {
            errs.push(FieldError::invalid(
                "metadata.finalizers",
                f.as_str(),
                "a finalizer name must be a qualified name (an optional DNS subdomain prefix and '/', then a name)",
            ));
        }
    }
    errs
}

fn keys_of(obj: &Value, field: &str) -> Vec<String> {
    obj.get(field)
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// How the API server sizes a Secret or ConfigMap against its 1 MiB limit: the bytes of the
/// values (not the keys), a base64 field (`Secret.data`, `ConfigMap.binaryData`) decoded.
fn data_size(obj: &Value, fields: &[(&str, Encoding)]) -> usize {
    fields
        .iter()
        .filter_map(|(f, encoding)| Some((obj.get(*f)?.as_object()?, encoding)))
        .flat_map(|(m, encoding)| m.values().map(move |v| (v, encoding)))
        .map(|(v, encoding)| {
            let text = v.as_str().unwrap_or_default();
            match encoding {
                Encoding::Text => text.len(),
                Encoding::Base64 => text.trim_end_matches('=').len() * 3 / 4,
            }
        })
        .sum()
}

#[derive(Clone, Copy)]
enum Encoding {
    Text,
    Base64,
}

fn immutable_data(obj: &Value, old: Option<&Value>, fields: &[&str]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(old) = old else { return errs };
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return errs;
    }
    if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for f in fields {
        let empty = |v: Option<&Value>| {
            v.is_none_or(|v| v.is_null() || v.as_object().is_some_and(Map::is_empty))
        };
        let same = obj.get(*f) == old.get(*f) || (empty(obj.get(*f)) && empty(old.get(*f)));
        if !same {
            errs.push(FieldError::forbidden(
                f,
                "field is immutable when `immutable` is set",
            ));
        }
    }
    errs
}

fn validate_secret(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for key in keys_of(obj, "data") {
        for p in config_key_problems(&key) {
            errs.push(FieldError::invalid("data", key.as_str(), p));
        }
    }
    if data_size(obj, &[("data", Encoding::Base64)]) > 1024 * 1024 {
        errs.push(FieldError {
            kind: super::status::FieldErrorType::TooLong,
            field: "data".into(),
            value: None,
            detail: "may not be more than 1048576 bytes".into(),
        });
    }
    let ty = obj.get("type").and_then(Value::as_str).unwrap_or("Opaque");
    let keys = keys_of(obj, "data");
    let require = |errs: &mut Vec<FieldError>, key: &str| {
        if !keys.iter().any(|k| k == key) {
            errs.push(FieldError::required(&format!("data[{key}]"), ""));
        }
    };
    match ty {
        "kubernetes.io/tls" => {
            require(&mut errs, "tls.crt");
            require(&mut errs, "tls.key");
        }
        "kubernetes.io/dockerconfigjson" => require(&mut errs, ".dockerconfigjson"),
        "kubernetes.io/dockercfg" => require(&mut errs, ".dockercfg"),
        "kubernetes.io/ssh-auth" => require(&mut errs, "ssh-privatekey"),
        "kubernetes.io/basic-auth" if !keys.iter().any(|k| k == "username" || k == "password") => {
            errs.push(FieldError::required("data[username]", ""));
        }
        _ => {}
    }
    if let Some(old) = old {
        let old_ty = old.get("type").and_then(Value::as_str).unwrap_or("Opaque");
        if old_ty != ty {
            errs.push(FieldError::invalid("type", ty, "field is immutable"));
        }
    }
    errs.extend(immutable_data(obj, old, &["data"]));
    errs
}

fn validate_config_map(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let data = keys_of(obj, "data");
    for key in &data {
        for p in config_key_problems(key) {
            errs.push(FieldError::invalid("data", key.as_str(), p));
        }
    }
    for key in keys_of(obj, "binaryData") {
        for p in config_key_problems(&key) {
            errs.push(FieldError::invalid("binaryData", key.as_str(), p));
        }
        if data.contains(&key) {
            errs.push(FieldError::invalid(
                "data",
                key.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
    }
    if let Some(values) = obj.get("data").and_then(Value::as_object) {
        for (k, v) in values {
            if !v.is_string() {
                errs.push(FieldError::invalid(
                    &format!("data[{k}]"),
                    v.clone(),
                    "must be a string",
                ));
            }
        }
    }
    if data_size(
        obj,
        &[("data", Encoding::Text), ("binaryData", Encoding::Base64)],
    ) > 1024 * 1024
    {
        errs.push(FieldError {
            kind: super::status::FieldErrorType::TooLong,
            field: "".into(),
            value: None,
            detail: "may not be more than 1048576 bytes".into(),
        });
    }
    errs.extend(immutable_data(obj, old, &["data", "binaryData"]));
    errs
}

fn validate_service(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ty = object::get_path(obj, "spec.type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty) {
        errs.push(FieldError::not_supported(
            "spec.type",
            ty,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let ip = object::get_path(obj, "spec.clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ports = object::get_path(obj, "spec.ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() && ip != "None" && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    for (i, p) in ports.iter().enumerate() {
        match p.get("port").and_then(Value::as_i64) {
            Some(n) if (1..=65535).contains(&n) => {}
            other => errs.push(FieldError::invalid(
                &format!("spec.ports[{i}].port"),
                other.map_or(json!(0), |n| json!(n)),
                "must be between 1 and 65535, inclusive",
            )),
        }
        if ports.len() > 1
            && p.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            errs.push(FieldError::required(&format!("spec.ports[{i}].name"), ""));
        }
    }
    if let Some(old) = old {
        let old_ip = object::get_path(old, "spec.clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !old_ip.is_empty() && old_ip != ip && ty != "ExternalName" {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                ip,
                "may not change once set",
            ));
        }
    }
    errs
}

fn validate_workload(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let selector = object::get_path(obj, "spec.selector");
    match selector {
        None | Some(Value::Null) => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => match LabelSelector::from_object(sel) {
            Err(e) => errs.push(FieldError::invalid("spec.selector", sel.clone(), e)),
            Ok(parsed) if parsed.is_empty() => errs.push(FieldError::invalid(
                "spec.selector",
                sel.clone(),
                "empty selector is invalid for deployment",
            )),
            Ok(parsed) => {
                let labels = object::get_path(obj, "spec.template.metadata.labels")
                    .and_then(Value::as_object);
                if !parsed.matches(labels) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        labels.cloned().map(Value::Object).unwrap_or(json!({})),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        },
    }
    let containers = object::get_path(obj, "spec.template.spec.containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if containers.is_empty() {
        errs.push(FieldError::required("spec.template.spec.containers", ""));
    }
    for (i, c) in containers.iter().enumerate() {
        if c.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            errs.push(FieldError::required(
                &format!("spec.template.spec.containers[{i}].name"),
                "",
            ));
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            errs.push(FieldError::required(
                &format!("spec.template.spec.containers[{i}].image"),
                "",
            ));
        }
    }
    if let Some(old) = old
        && object::get_path(old, "spec.selector") != selector
    {
        errs.push(FieldError::invalid(
            "spec.selector",
            selector.cloned().unwrap_or(Value::Null),
            "field is immutable",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn rt(group: &str, resource: &str) -> std::sync::Arc<ResourceType> {
        Registry::with_builtins()
            .lookup(group, "v1", resource)
            .expect("built-in")
    }

    #[test]
    fn string_data_is_merged_into_data() {
        let store = Store::new(10, 16);
        let mut s =
            json!({"metadata": {"name": "s"}, "data": {"a": "YQ=="}, "stringData": {"b": "hello"}});
        prepare_create(&rt("", "secrets"), &mut s, &store).expect("valid");
        assert_eq!(s["data"]["b"], "aGVsbG8=");
        assert_eq!(s["data"]["a"], "YQ==");
        assert!(s.get("stringData").is_none());
        assert_eq!(s["type"], "Opaque");
    }

    #[test]
    fn bad_base64_is_a_bad_request() {
        let store = Store::new(10, 16);
        let mut s = json!({"metadata": {"name": "s"}, "data": {"a": "!!"}});
        let err = prepare_create(&rt("", "secrets"), &mut s, &store).expect_err("invalid");
        assert_eq!(err.code, 400);
    }

    #[test]
    fn secrets_and_config_maps_are_sized_as_the_api_server_sizes_them() {
        use base64::Engine;
        let encode = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        let limit = 1024 * 1024;
        // Decoded bytes count, keys do not: 1 MiB of data is 1.33 MiB of base64.
        let at_limit =
            json!({"metadata": {"name": "s"}, "data": {"a": encode(limit - 1), "b": encode(1)}});
        assert!(validate(&rt("", "secrets"), &at_limit, None).is_empty());
        let over = json!({"metadata": {"name": "s"}, "data": {"a": encode(limit), "b": encode(1)}});
        assert_eq!(validate(&rt("", "secrets"), &over, None)[0].field, "data");
        let text = "x".repeat(limit / 2);
        let config_map = json!({"metadata": {"name": "c"}, "data": {"a": text}, "binaryData": {"b": encode(limit / 2)}});
        assert!(validate(&rt("", "configmaps"), &config_map, None).is_empty());
        let over = json!({"metadata": {"name": "c"}, "data": {"a": text}, "binaryData": {"b": encode(limit / 2 + 1)}});
        assert_eq!(validate(&rt("", "configmaps"), &over, None).len(), 1);
    }

    #[test]
    fn immutable_config_maps_refuse_data_changes() {
        let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
        let new = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "2"}});
        let errs = validate(&rt("", "configmaps"), &new, Some(&old));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "data");
        let relabel = json!({"metadata": {"name": "c", "labels": {"x": "y"}}, "immutable": true, "data": {"a": "1"}});
        assert!(validate(&rt("", "configmaps"), &relabel, Some(&old)).is_empty());
    }

    #[test]
    fn generation_follows_spec_only() {
        let store = Store::new(10, 16);
        let d = rt("apps", "deployments");
        let old = json!({"metadata": {"name": "d", "generation": 1}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut same =
            json!({"metadata": {"name": "d", "labels": {"a": "b"}}, "spec": {"replicas": 1}});
        prepare_update(&d, &mut same, &old, Sub::Main, &store).expect("ok");
        let mut old_defaulted = old.clone();
        defaults::deployment(&mut old_defaulted);
        let mut relabel = json!({"metadata": {"name": "d", "labels": {"a": "b"}}, "spec": old_defaulted["spec"].clone()});
        prepare_update(&d, &mut relabel, &old_defaulted, Sub::Main, &store).expect("ok");
        assert_eq!(relabel["metadata"]["generation"], 1);
        assert_eq!(relabel["status"], old["status"]);
        let mut scaled = relabel.clone();
        scaled["spec"]["replicas"] = json!(3);
        prepare_update(&d, &mut scaled, &old_defaulted, Sub::Main, &store).expect("ok");
        assert_eq!(scaled["metadata"]["generation"], 2);
        let mut status = old_defaulted.clone();
        status["status"] = json!({"replicas": 3});
        status["spec"]["replicas"] = json!(9);
        prepare_update(&d, &mut status, &old_defaulted, Sub::Status, &store).expect("ok");
        assert_eq!(status["spec"]["replicas"], 1);
        assert_eq!(status["status"]["replicas"], 3);
        assert_eq!(status["metadata"]["generation"], 1);
    }

    #[test]
    fn services_get_a_cluster_ip() {
        let store = Store::new(10, 16);
        let mut s = json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}});
        prepare_create(&rt("", "services"), &mut s, &store).expect("ok");
        assert_eq!(s["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert!(validate(&rt("", "services"), &s, None).is_empty());
    }
}
