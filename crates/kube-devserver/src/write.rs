//! create, update (PUT), patch (JSON, merge, strategic, apply): the generic
//! registry store's write paths, over the stored JSON.

use std::cell::RefCell;

use serde_json::{Value, json};

use super::clock;
use super::convert::{from_storage, to_storage};
use super::crd;
use super::fields::{FieldValidation, unknown_fields};
use super::names::generate_name;
use super::object;
use super::patch::{self, ApplyRequest, ListSemantics, PatchError};
use super::registry::{Builtin, ResourceType};
use super::state::State;
use super::status::{ApiError, FieldError, GroupResource};
use super::strategy::{self, Sub};

/// Options every write carries.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub dry_run: bool,
    /// What unknown fields in the request do.
    pub validation: FieldValidation,
    /// Warnings for the response's `Warning` headers.
    pub warnings: RefCell<Vec<String>>,
    /// The field manager (`fieldManager`, or the User-Agent's product token).
    pub manager: String,
    pub now: String,
}

impl WriteOptions {
    pub fn new(manager: &str) -> Self {
        Self {
            dry_run: false,
            validation: FieldValidation::Ignore,
            warnings: RefCell::new(Vec::new()),
            manager: manager.to_string(),
            now: clock::now(),
        }
    }
}

/// Whether managedFields still need recording by `track_update`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Managed {
    Track,
    /// Server-side apply already recorded them.
    Done,
}

/// The patch formats a PATCH may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// How lists merge for strategic merge patch, server-side apply and ownership:
/// the built-in kinds' table, or the CRD version's schema.
fn list_semantics(rt: &ResourceType) -> Box<dyn ListSemantics> {
    match rt.custom() {
        Some(c) => Box::new((*c.lists).clone()),
        None => {
            // Events of both APIs are tracked in their stored (core/v1) form.
            let group = if rt.is(Builtin::EventsV1) {
                ""
            } else {
                rt.group.as_str()
            };
            patch::builtin_list_semantics(group, &rt.kind)
        }
    }
}

fn track(rt: &ResourceType, old: Option<&Value>, new: &mut Value, sub: Sub, opts: &WriteOptions) {
    let lists = list_semantics(rt);
    patch::track_update_with(
        old,
        new,
        &opts.manager,
        sub.name(),
        &opts.now,
        lists.as_ref(),
    );
}

/// The result of a write: the object as the client's version shows it, and whether it was created.
#[derive(Debug)]
pub struct Written {
    pub object: Value,
    pub created: bool,
}

/// Checks `apiVersion`/`kind` of a request body against the endpoint.
fn check_type_meta(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "Object '{}' is invalid: the body must be a JSON object",
            rt.kind
        )));
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
        && av != rt.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    Ok(())
}

/// Server-side field validation of a request object (in the client's version).
fn validate_fields(
    rt: &ResourceType,
    obj: &mut Value,
    opts: &WriteOptions,
) -> Result<(), ApiError> {
    if opts.validation == FieldValidation::Ignore && rt.custom().is_some() {
        return Ok(());
    }
    let unknown = unknown_fields(rt, obj);
    if unknown.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    match opts.validation {
        FieldValidation::Strict => Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            rt.kind,
            rt.version,
            rt.kind,
            listed.join(", ")
        ))),
        FieldValidation::Warn => {
            opts.warnings.borrow_mut().extend(listed);
            Ok(())
        }
        FieldValidation::Ignore => Ok(()),
    }
}

/// The namespace a namespaced write lands in; the body's must match the URL's.
fn settle_namespace(rt: &ResourceType, url_ns: &str, obj: &mut Value) -> Result<(), ApiError> {
    let meta = object::meta_mut(obj);
    if !rt.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    match meta.get("namespace").and_then(Value::as_str) {
        Some(ns) if !ns.is_empty() && ns != url_ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            meta.insert("namespace".into(), url_ns.into());
            Ok(())
        }
    }
}

/// NamespaceLifecycle admission: the namespace must exist and not be terminating.
fn admit_namespace(st: &State, rt: &ResourceType, ns: &str, name: &str) -> Result<(), ApiError> {
    if !rt.namespaced {
        return Ok(());
    }
    let Some(namespace) = st.namespace(ns) else {
        return Err(ApiError::not_found(
            &GroupResource::new("", "namespaces"),
            ns,
        ));
    };
    if object::deletion_timestamp(&namespace).is_some() {
        let mut err = ApiError::forbidden(
            &rt.gr(),
            name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        );
        if let Some(d) = err.details.as_mut().and_then(Value::as_object_mut) {
            d.insert(
                "causes".into(),
                json!([{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]),
            );
        }
        return Err(err);
    }
    Ok(())
}

fn invalid(rt: &ResourceType, name: &str, errs: Vec<FieldError>) -> ApiError {
    ApiError::invalid(&rt.group, &rt.kind, name, errs)
}

fn patch_error(rt: &ResourceType, name: &str, err: PatchError) -> ApiError {
    match err {
        PatchError::Invalid(msg) => ApiError::new(422, "Invalid", msg),
        PatchError::Conflict(conflicts) => {
            let message = PatchError::Conflict(conflicts.clone()).to_string();
            let mut e = ApiError::conflict(&rt.gr(), name, "");
            e.message = message;
            if let Some(d) = e.details.as_mut().and_then(Value::as_object_mut) {
                d.insert(
                    "causes".into(),
                    Value::Array(
                        conflicts
                            .iter()
                            .map(|c| json!({"reason": "FieldManagerConflict", "message": c.cause_message(), "field": c.field}))
                            .collect(),
                    ),
                );
            }
            e
        }
    }
}

/// POST: create an object (from a request, or from server-side apply of a missing object).
pub fn create(
    st: &mut State,
    rt: &ResourceType,
    url_ns: &str,
    body: Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    check_type_meta(rt, &body)?;
    let mut body = body;
    validate_fields(rt, &mut body, opts)?;
    let obj = to_storage(rt, body);
    create_stored(st, rt, url_ns, obj, opts, Managed::Track)
}

fn create_stored(
    st: &mut State,
    rt: &ResourceType,
    url_ns: &str,
    mut obj: Value,
    opts: &WriteOptions,
    managed: Managed,
) -> Result<Value, ApiError> {
    settle_namespace(rt, url_ns, &mut obj)?;
    let requested = object::name(&obj).to_string();
    admit_namespace(st, rt, url_ns, &requested)?;
    if st.crd_terminating(rt) {
        return Err(ApiError::method_not_supported(&rt.gr(), "create")
            .with_message("create not allowed while custom resource definition is terminating"));
    }
    if !object::resource_version(&obj).is_empty() {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let generate = object::meta_str(&obj, "generateName")
        .unwrap_or("")
        .to_string();
    if requested.is_empty() {
        if generate.is_empty() {
            return Err(invalid(
                rt,
                "",
                vec![FieldError::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
        let mut name = generate_name(&generate);
        for _ in 0..16 {
            if st.store.get(&rt.storage, url_ns, &name).is_none() {
                break;
            }
            name = generate_name(&generate);
        }
        object::meta_mut(&mut obj).insert("name".into(), name.into());
    }
    let name = object::name(&obj).to_string();
    strategy::prepare_create(rt, &mut obj, &st.store)?;
    {
        let meta = object::meta_mut(&mut obj);
        meta.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
        meta.insert("creationTimestamp".into(), opts.now.clone().into());
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("selfLink");
        if meta
            .get("managedFields")
            .and_then(Value::as_array)
            .is_some_and(|m| m.len() == 1 && m[0] == json!({}))
        {
            meta.remove("managedFields");
        }
    }
    let errs = strategy::validate(rt, &obj, None);
    if !errs.is_empty() {
        return Err(invalid(rt, &name, errs));
    }
    if managed == Managed::Track {
        track(rt, None, &mut obj, Sub::Main, opts);
    }
    if let Some(existing) = st.store.get(&rt.storage, url_ns, &name) {
        let mut err = ApiError::already_exists(&rt.gr(), &name);
        if object::deletion_timestamp(&existing).is_some() {
            err.message = format!("object is being deleted: {}", err.message);
        }
        return Err(err);
    }
    if rt.is(Builtin::Crd) {
        let conflict = crd::name_conflict(&obj, &st.registry);
        let status = crd::compute_status(&obj, conflict.as_ref(), &opts.now);
        obj["status"] = status;
    }
    if opts.dry_run {
        return Ok(from_storage(rt, &obj));
    }
    let stored = st.store.create(&rt.storage, obj);
    if rt.is(Builtin::Crd) {
        st.sync_crd(&name);
    }
    Ok(from_storage(rt, &stored))
}

trait WithMessage {
    fn with_message(self, message: &str) -> Self;
}

impl WithMessage for ApiError {
    fn with_message(mut self, message: &str) -> Self {
        self.message = message.to_string();
        self
    }
}

/// PUT: replace an object (main resource, `status`, or `finalize`).
pub fn update(
    st: &mut State,
    rt: &ResourceType,
    url_ns: &str,
    url_name: &str,
    body: Value,
    sub: Sub,
    opts: &WriteOptions,
) -> Result<Written, ApiError> {
    check_type_meta(rt, &body)?;
    let mut body = body;
    validate_fields(rt, &mut body, opts)?;
    let mut obj = to_storage(rt, body);
    let body_name = object::name(&obj).to_string();
    if body_name.is_empty() {
        object::meta_mut(&mut obj).insert("name".into(), url_name.into());
    } else if body_name != url_name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
        )));
    }
    settle_namespace(rt, url_ns, &mut obj)?;
    let Some(old) = st.store.get(&rt.storage, url_ns, url_name) else {
        if sub == Sub::Main && rt.create_on_update() {
            object::meta_mut(&mut obj).remove("resourceVersion");
            let created = create_stored(st, rt, url_ns, obj, opts, Managed::Track)?;
            return Ok(Written {
                object: created,
                created: true,
            });
        }
        return Err(ApiError::not_found(&rt.gr(), url_name));
    };
    let new_rv = object::resource_version(&obj).to_string();
    if new_rv.is_empty() {
        if !rt.unconditional_update() {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.resource,
                url_name,
                vec![FieldError::invalid(
                    "metadata.resourceVersion",
                    0,
                    "must be specified for an update",
                )],
            ));
        }
        object::meta_mut(&mut obj).insert(
            "resourceVersion".into(),
            object::resource_version(&old).into(),
        );
    } else if new_rv != object::resource_version(&old) {
        return Err(ApiError::stale(&rt.gr(), url_name));
    }
    let uid = object::uid(&obj);
    if !uid.is_empty() && uid != object::uid(&old) {
        return Err(ApiError::conflict(
            &rt.gr(),
            url_name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                object::uid(&old)
            ),
        ));
    }
    let object = commit_update(st, rt, &old, obj, sub, opts, Managed::Track)?;
    Ok(Written {
        object,
        created: false,
    })
}

/// The shared tail of update and patch: strategy, validation, managedFields, no-op
/// detection, deletion when the last finalizer goes, and the store write.
fn commit_update(
    st: &mut State,
    rt: &ResourceType,
    old: &Value,
    mut obj: Value,
    sub: Sub,
    opts: &WriteOptions,
    managed: Managed,
) -> Result<Value, ApiError> {
    let name = object::name(old).to_string();
    let ns = object::namespace(old).to_string();
    {
        let old_meta = object::meta(old).cloned().unwrap_or_default();
        let meta = object::meta_mut(&mut obj);
        match meta.get("managedFields") {
            None | Some(Value::Null) => match old_meta.get("managedFields") {
                Some(mf) => {
                    meta.insert("managedFields".into(), mf.clone());
                }
                None => {
                    meta.remove("managedFields");
                }
            },
            Some(Value::Array(a)) if a.len() == 1 && a[0] == json!({}) => {
                meta.remove("managedFields");
            }
            Some(_) => {}
        }
        for key in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(key) {
                Some(v) => meta.insert(key.into(), v.clone()),
                None => meta.remove(key),
            };
        }
        meta.remove("selfLink");
    }
    strategy::prepare_update(rt, &mut obj, old, sub, &st.store)?;
    let mut errs = strategy::validate(rt, &obj, Some(old));
    if object::deletion_timestamp(old).is_some() {
        let before = object::finalizers(old);
        let added: Vec<String> = object::finalizers(&obj)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!("no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"),
            ));
        }
    }
    if !errs.is_empty() {
        return Err(invalid(rt, &name, errs));
    }
    if managed == Managed::Track {
        track(rt, Some(old), &mut obj, sub, opts);
    }
    if rt.is(Builtin::Crd) {
        let conflict = crd::name_conflict(&obj, &st.registry);
        obj["status"] = crd::compute_status(&obj, conflict.as_ref(), &opts.now);
    }
    object::meta_mut(&mut obj).insert(
        "resourceVersion".into(),
        object::resource_version(old).into(),
    );
    if obj == *old {
        return Ok(from_storage(rt, old));
    }
    // ShouldDeleteDuringUpdate; namespaces also wait for their spec.finalizers.
    let spec_finalizers = rt.is(Builtin::Namespace)
        && object::get_path(&obj, "spec.finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
    let finalized = object::deletion_timestamp(old).is_some()
        && object::finalizers(&obj).is_empty()
        && !spec_finalizers;
    if opts.dry_run {
        return Ok(from_storage(rt, &obj));
    }
    if finalized {
        st.store.remove(&rt.storage, &ns, &name);
        if rt.is(Builtin::Crd) {
            st.sync_crd(&name);
        }
        return Ok(from_storage(rt, &obj));
    }
    let stored = st.store.update(&rt.storage, obj);
    if rt.is(Builtin::Crd) {
        st.sync_crd(&name);
    }
    Ok(from_storage(rt, &stored))
}

/// What a PATCH asks for besides the body.
pub struct PatchRequest<'a> {
    pub patch_type: PatchType,
    pub body: &'a [u8],
    pub force: Option<bool>,
}

/// PATCH: json/merge/strategic patches of an existing object; apply creates when missing.
pub fn patch(
    st: &mut State,
    rt: &ResourceType,
    url_ns: &str,
    url_name: &str,
    req: &PatchRequest<'_>,
    sub: Sub,
    opts: &WriteOptions,
) -> Result<Written, ApiError> {
    if req.patch_type != PatchType::Apply && req.force.is_some() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![FieldError::forbidden(
                "force",
                "may not be specified for non-apply patch",
            )],
        ));
    }
    let old = st.store.get(&rt.storage, url_ns, url_name);
    if req.patch_type == PatchType::Apply {
        return apply(st, rt, url_ns, url_name, old.as_deref(), req, sub, opts);
    }
    let Some(old) = old else {
        return Err(ApiError::not_found(&rt.gr(), url_name));
    };
    let current = from_storage(rt, &old);
    let doc: Value = serde_json::from_slice(req.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let patched = match req.patch_type {
        PatchType::Json => {
            patch::json_patch(&current, &doc).map_err(|e| patch_error(rt, url_name, e))?
        }
        PatchType::Merge => {
            if !doc.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            patch::merge_patch(&current, &doc)
        }
        PatchType::Strategic => {
            if rt.custom().is_some() {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ));
            }
            patch::strategic_merge_patch(&current, &doc, list_semantics(rt).as_ref())
                .map_err(|e| patch_error(rt, url_name, e))?
        }
        PatchType::Apply => {
            return apply(st, rt, url_ns, url_name, Some(old.as_ref()), req, sub, opts);
        }
    };
    let mut patched = patched;
    if patched.is_object() {
        validate_fields(rt, &mut patched, opts)?;
    }
    patched_to_update(st, rt, &old, patched, url_name, sub, opts, Managed::Track)
}

#[expect(clippy::too_many_arguments)]
fn patched_to_update(
    st: &mut State,
    rt: &ResourceType,
    old: &Value,
    patched: Value,
    url_name: &str,
    sub: Sub,
    opts: &WriteOptions,
    managed: Managed,
) -> Result<Written, ApiError> {
    if !patched.is_object() {
        return Err(ApiError::bad_request(
            "the patched object must be a JSON object",
        ));
    }
    check_type_meta(rt, &patched)?;
    let mut obj = to_storage(rt, patched);
    if object::name(&obj) != url_name {
        return Err(invalid(
            rt,
            url_name,
            vec![FieldError::invalid(
                "metadata.name",
                object::name(&obj),
                "field is immutable",
            )],
        ));
    }
    if rt.namespaced && object::namespace(&obj) != object::namespace(old) {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let rv = object::resource_version(&obj).to_string();
    if rv.is_empty() {
        object::meta_mut(&mut obj).insert(
            "resourceVersion".into(),
            object::resource_version(old).into(),
        );
    } else if rv != object::resource_version(old) {
        return Err(ApiError::stale(&rt.gr(), url_name));
    }
    let uid = object::uid(&obj);
    if !uid.is_empty() && uid != object::uid(old) {
        return Err(ApiError::conflict(
            &rt.gr(),
            url_name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                object::uid(old)
            ),
        ));
    }
    let object = commit_update(st, rt, old, obj, sub, opts, managed)?;
    Ok(Written {
        object,
        created: false,
    })
}

#[expect(clippy::too_many_arguments)]
fn apply(
    st: &mut State,
    rt: &ResourceType,
    url_ns: &str,
    url_name: &str,
    old: Option<&Value>,
    req: &PatchRequest<'_>,
    sub: Sub,
    opts: &WriteOptions,
) -> Result<Written, ApiError> {
    if opts.manager.is_empty() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![FieldError::required(
                "fieldManager",
                "is required for apply patch",
            )],
        ));
    }
    let text = std::str::from_utf8(req.body)
        .map_err(|_| ApiError::bad_request("the apply patch must be UTF-8 YAML or JSON"))?;
    let mut applied: Value = bounded_yaml::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !applied.is_object() {
        return Err(ApiError::bad_request("the apply patch must be an object"));
    }
    validate_fields(rt, &mut applied, opts)?;
    for (field, want) in [("apiVersion", rt.api_version()), ("kind", rt.kind.clone())] {
        match applied.get(field).and_then(Value::as_str) {
            Some(v) if v == want => {}
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "{field} in the apply patch ({v}) does not match the endpoint ({want})"
                )));
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "invalid object type: {field} must be set in an apply patch"
                )));
            }
        }
    }
    let applied_name = object::name(&applied);
    if !applied_name.is_empty() && applied_name != url_name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({applied_name}) does not match the name on the URL ({url_name})"
        )));
    }
    let lists = list_semantics(rt);
    let apply_req = ApplyRequest {
        manager: &opts.manager,
        force: req.force.unwrap_or(false),
        subresource: sub.name(),
        lists: lists.as_ref(),
        now: &opts.now,
    };
    match old {
        None => {
            if sub != Sub::Main {
                return Err(ApiError::not_found(&rt.gr(), url_name));
            }
            let mut merged = patch::server_side_apply(None, &applied, &apply_req)
                .map_err(|e| patch_error(rt, url_name, e))?;
            object::meta_mut(&mut merged).insert("name".into(), url_name.into());
            let obj = to_storage(rt, merged);
            let created = create_stored(st, rt, url_ns, obj, opts, Managed::Done)?;
            Ok(Written {
                object: created,
                created: true,
            })
        }
        Some(old) => {
            let current = from_storage(rt, old);
            let merged = patch::server_side_apply(Some(&current), &applied, &apply_req)
                .map_err(|e| patch_error(rt, url_name, e))?;
            patched_to_update(st, rt, old, merged, url_name, sub, opts, Managed::Done)
        }
    }
}

/// Writes an object the server itself changes (garbage collector, namespace and CRD
/// cleanup) through `sub`; nothing is written when nothing changed. Returns whether
/// the stored state changed (written or removed).
pub fn system_update(
    st: &mut State,
    rt: &ResourceType,
    mut obj: Value,
    sub: Sub,
    manager: &str,
) -> bool {
    let ns = object::namespace(&obj).to_string();
    let name = object::name(&obj).to_string();
    let Some(old) = st.store.get(&rt.storage, &ns, &name) else {
        return false;
    };
    object::meta_mut(&mut obj).insert(
        "resourceVersion".into(),
        object::resource_version(&old).into(),
    );
    let opts = WriteOptions::new(manager);
    if commit_update(st, rt, &old, obj, sub, &opts, Managed::Track).is_err() {
        return false;
    }
    st.store
        .get(&rt.storage, &ns, &name)
        .is_none_or(|now| object::resource_version(&now) != object::resource_version(&old))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let mut st = State::new(100, 16);
        let ns = st.registry.lookup("", "v1", "namespaces").expect("served");
        create(
            &mut st,
            &ns,
            "",
            json!({"metadata": {"name": "default"}}),
            &WriteOptions::new("test"),
        )
        .expect("namespace");
        st
    }

    #[test]
    fn create_sets_system_fields_and_refuses_duplicates() {
        let mut st = state();
        let cm = st.registry.lookup("", "v1", "configmaps").expect("served");
        let out = create(
            &mut st,
            &cm,
            "default",
            json!({"metadata": {"generateName": "c-"}, "data": {"a": "1"}}),
            &WriteOptions::new("t"),
        )
        .expect("created");
        let name = object::name(&out).to_string();
        assert!(name.starts_with("c-") && name.len() == 7);
        assert!(!object::uid(&out).is_empty());
        assert!(
            object::meta(&out)
                .and_then(|m| m.get("generation"))
                .is_none()
        );
        assert_eq!(out["apiVersion"], "v1");
        let again = create(
            &mut st,
            &cm,
            "default",
            json!({"metadata": {"name": name}}),
            &WriteOptions::new("t"),
        )
        .expect_err("exists");
        assert_eq!(again.reason, "AlreadyExists");
        let missing = create(
            &mut st,
            &cm,
            "nope",
            json!({"metadata": {"name": "x"}}),
            &WriteOptions::new("t"),
        )
        .expect_err("no namespace");
        assert_eq!(missing.code, 404);
    }

    #[test]
    fn stale_updates_conflict_and_noops_keep_the_version() {
        let mut st = state();
        let cm = st.registry.lookup("", "v1", "configmaps").expect("served");
        let out = create(
            &mut st,
            &cm,
            "default",
            json!({"metadata": {"name": "c"}, "data": {"a": "1"}}),
            &WriteOptions::new("t"),
        )
        .expect("created");
        let rv = object::resource_version(&out).to_string();
        let same = update(
            &mut st,
            &cm,
            "default",
            "c",
            out.clone(),
            Sub::Main,
            &WriteOptions::new("t"),
        )
        .expect("noop");
        assert_eq!(object::resource_version(&same.object), rv);
        let mut changed = out.clone();
        changed["data"]["a"] = json!("2");
        let next = update(
            &mut st,
            &cm,
            "default",
            "c",
            changed.clone(),
            Sub::Main,
            &WriteOptions::new("t"),
        )
        .expect("updated");
        assert_ne!(object::resource_version(&next.object), rv);
        let err = update(
            &mut st,
            &cm,
            "default",
            "c",
            changed,
            Sub::Main,
            &WriteOptions::new("t"),
        )
        .expect_err("stale");
        assert_eq!((err.code, err.reason), (409, "Conflict"));
    }
}
