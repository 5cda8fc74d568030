//! The HTTP front: authentication, routing, authorization, content negotiation,
//! and the mapping of verbs onto the store operations.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State as AxumState};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use super::auth::{self, User};
use super::convert::from_storage;
use super::delete::{self, DeleteOptions, Propagation};
use super::discovery;
use super::fields::FieldValidation;
use super::openapi;
use super::protobuf;
use super::rbac::{self, Attributes};
use super::read::{self, Filter, ListQuery};
use super::registry::{Builtin, ResourceType};
use super::request::{Query, ResourcePath, Target, parse_path};
use super::state::State;
use super::status::{ApiError, FieldError};
use super::strategy::Sub;
use super::table::{self, Include, Output};
use super::token::{Account, TokenIssuer};
use super::watch::{self, WatchRequest};
use super::write::{self, PatchRequest, PatchType, WriteOptions};

/// Largest request body accepted (the real server's limit).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// What every request handler shares.
pub struct Api {
    pub state: RwLock<State>,
    pub token: String,
    pub server_address: String,
    pub shutdown: CancellationToken,
    pub bookmark_interval: Duration,
    /// Signs `serviceaccounts/{name}/token` answers.
    pub tokens: TokenIssuer,
}

fn json_response(code: u16, body: &Value) -> Response {
    json_with_type(code, body, "application/json")
}

fn json_with_type(code: u16, body: &Value, content_type: &'static str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, content_type)],
        body.to_string(),
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The entry point for every request.
pub async fn handle(AxumState(api): AxumState<Arc<Api>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    if let Some(r) = open_endpoint(&parts.method, &path) {
        return r;
    }
    let user = match auth::authenticate(&parts.headers, &api.token) {
        Ok(u) => u,
        Err(e) => return error_response(&e),
    };
    let query = Query::parse(parts.uri.query());
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("Request entity too large: limit is {MAX_BODY}"),
            ));
        }
    };
    let result = match parse_path(&path) {
        Target::Resource(rp) => {
            resource(&api, &parts.method, rp, &query, &parts.headers, &user, body).await
        }
        target => non_resource(&api, &parts.method, &path, target, &parts.headers, &user).await,
    };
    result.unwrap_or_else(|e| error_response(&e))
}

/// Health endpoints and `/version`, open without credentials (like kubeadm's defaults).
fn open_endpoint(method: &Method, path: &str) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let health = ["/healthz", "/livez", "/readyz"];
    if health
        .iter()
        .any(|h| path == *h || path.starts_with(&format!("{h}/")))
    {
        return Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "ok",
            )
                .into_response(),
        );
    }
    if path == "/version" || path == "/version/" {
        return Some(json_response(200, &discovery::version()));
    }
    None
}

async fn non_resource(
    api: &Api,
    method: &Method,
    path: &str,
    target: Target,
    headers: &HeaderMap,
    user: &User,
) -> Result<Response, ApiError> {
    let st = api.state.read().await;
    let verb = match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    };
    if !rbac::allowed_path(&st, user, verb, path) {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "forbidden: User \"{}\" cannot {verb} path \"{path}\"",
                user.name
            ),
        ));
    }
    if verb != "get" {
        return Err(ApiError::method_not_allowed());
    }
    let accept = header_str(headers, &header::ACCEPT).unwrap_or("");
    let reg = &st.registry;
    let body = match target {
        Target::Root { legacy } => {
            if discovery::wants_aggregated(accept) {
                return Ok(json_with_type(
                    200,
                    &discovery::aggregated(reg, legacy),
                    discovery::AGGREGATED_V2,
                ));
            }
            if legacy {
                discovery::api_versions(&api.server_address)
            } else {
                discovery::api_group_list(reg)
            }
        }
        Target::Group(group) => {
            discovery::api_group(reg, &group).ok_or_else(ApiError::path_not_found)?
        }
        Target::GroupVersion { group, version } => {
            let types = reg.group_version(&group, &version);
            if types.is_empty() {
                return Err(ApiError::path_not_found());
            }
            discovery::api_resource_list(&types, &group, &version)
        }
        Target::Resource(_) | Target::Other => match path.trim_end_matches('/') {
            "/openapi/v3" => openapi::index(reg),
            "/openid/v1/jwks" => api.tokens.jwks(),
            "/.well-known/openid-configuration" => {
                TokenIssuer::openid_configuration(&api.server_address)
            }
            p if p.starts_with("/openapi/v3/") => {
                let rest = &p["/openapi/v3/".len()..];
                let (group, version) = match rest.split('/').collect::<Vec<_>>().as_slice() {
                    ["api", v] => (String::new(), v.to_string()),
                    ["apis", g, v] => (g.to_string(), v.to_string()),
                    _ => return Err(ApiError::path_not_found()),
                };
                let types = reg.group_version(&group, &version);
                if types.is_empty() {
                    return Err(ApiError::path_not_found());
                }
                openapi::document(&types)
            }
            _ => return Err(ApiError::path_not_found()),
        },
    };
    Ok(json_response(200, &body))
}

/// The verb a request means, for authorization and dispatch.
fn verb_of(method: &Method, has_name: bool, watch: bool) -> Option<&'static str> {
    Some(match (method.clone(), has_name) {
        (Method::GET | Method::HEAD, _) if watch => "watch",
        (Method::GET | Method::HEAD, true) => "get",
        (Method::GET | Method::HEAD, false) => "list",
        (Method::POST, false) => "create",
        (Method::PUT, true) => "update",
        (Method::PATCH, true) => "patch",
        (Method::DELETE, true) => "delete",
        (Method::DELETE, false) => "deletecollection",
        _ => return None,
    })
}

fn field_manager(q: &Query, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(m) = q.value("fieldManager") {
        if m.len() > 128 {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                vec![FieldError::invalid(
                    "fieldManager",
                    m,
                    "must be 128 characters or less",
                )],
            ));
        }
        return Ok(m.to_string());
    }
    let agent = header_str(headers, &header::USER_AGENT).unwrap_or("");
    let prefix: String = agent
        .split('/')
        .next()
        .unwrap_or("")
        .chars()
        .take(128)
        .collect();
    Ok(prefix)
}

fn field_validation(q: &Query) -> Result<FieldValidation, ApiError> {
    FieldValidation::parse(q.get("fieldValidation")).ok_or_else(|| {
        ApiError::bad_request(format!(
            "fieldValidation: Unsupported value: {:?}: supported values: \"Ignore\", \"Warn\", \"Strict\"",
            q.get("fieldValidation").unwrap_or_default()
        ))
    })
}

/// Options of a write request: dryRun, fieldValidation, the field manager.
fn write_options(q: &Query, manager: &str) -> Result<WriteOptions, ApiError> {
    Ok(WriteOptions {
        dry_run: q.dry_run()?,
        validation: field_validation(q)?,
        ..WriteOptions::new(manager)
    })
}

/// A JSON answer carrying the write's warnings as `Warning` headers.
fn written(code: u16, body: &Value, opts: &WriteOptions) -> Response {
    let mut resp = json_response(code, body);
    for w in opts.warnings.borrow().iter() {
        if let Ok(v) = http::HeaderValue::from_str(&format!("299 - {w:?}")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn decode_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let ct = header_str(headers, &header::CONTENT_TYPE).unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or("").trim();
    let value: Value = match media {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?,
        "application/yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
            bounded_yaml::from_str(text).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
        protobuf::MEDIA_TYPE => protobuf::decode(body).map_err(|e| match e {
            protobuf::ProtobufError::Malformed(_) => ApiError::bad_request(e.to_string()),
            protobuf::ProtobufError::Unsupported(_) => {
                ApiError::new(415, "UnsupportedMediaType", e.to_string())
            }
        })?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    Ok(value)
}

fn delete_options(q: &Query, headers: &HeaderMap, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    let doc = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        decode_body(headers, body)?
    };
    let invalid =
        |errs: Vec<FieldError>| ApiError::invalid("meta.k8s.io", "DeleteOptions", "", errs);
    let propagation_text = doc
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| q.value("propagationPolicy").map(String::from));
    let propagation = match propagation_text.as_deref() {
        None => None,
        Some(p) => Some(Propagation::parse(p).ok_or_else(|| {
            invalid(vec![FieldError::not_supported(
                "propagationPolicy",
                p,
                &["Foreground", "Background", "Orphan"],
            )])
        })?),
    };
    let orphan = match doc.get("orphanDependents").and_then(Value::as_bool) {
        Some(o) => Some(o),
        None => q.bool("orphanDependents")?,
    };
    if orphan.is_some() && propagation.is_some() {
        return Err(invalid(vec![FieldError::invalid(
            "propagationPolicy",
            propagation_text.unwrap_or_default(),
            "orphanDependents and deletionPropagation cannot be both set",
        )]));
    }
    let dry_run = doc
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|x| x == "All"))
        || q.dry_run()?;
    let pre = doc.get("preconditions");
    Ok(DeleteOptions {
        propagation,
        orphan_dependents: orphan,
        uid: pre
            .and_then(|p| p.get("uid"))
            .and_then(Value::as_str)
            .map(String::from),
        resource_version: pre
            .and_then(|p| p.get("resourceVersion"))
            .and_then(Value::as_str)
            .map(String::from),
        dry_run,
    })
}

fn shape_one(rt: &ResourceType, output: Output, obj: Value, include: Include) -> Value {
    match output {
        Output::Object => obj,
        Output::Metadata(v) => table::partial_metadata(&obj, v),
        Output::Table(v) => {
            let rv = obj["metadata"]["resourceVersion"].clone();
            table::table(rt, &[obj], include, v, json!({"resourceVersion": rv}))
        }
    }
}

fn shape_list(rt: &ResourceType, output: Output, page: &read::ListPage, include: Include) -> Value {
    match output {
        Output::Object => read::list_object(rt, page),
        Output::Metadata(v) => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": format!("meta.k8s.io/{v}"),
            "metadata": page.metadata(),
            "items": page.items.iter().map(|o| table::partial_metadata(o, v)).collect::<Vec<_>>(),
        }),
        Output::Table(v) => table::table(rt, &page.items, include, v, page.metadata()),
    }
}

/// Refuses what RBAC does not grant (members of `system:masters` pass).
async fn authorize(
    api: &Api,
    user: &User,
    rt: &ResourceType,
    attrs: &Attributes<'_>,
) -> Result<(), ApiError> {
    if user.is_master() || rbac::allowed(&*api.state.read().await, user, attrs) {
        return Ok(());
    }
    Err(ApiError::forbidden(
        &rt.gr(),
        attrs.name,
        &rbac::forbidden_reason(user, attrs),
    ))
}

/// `POST .../serviceaccounts/{name}/token`: a TokenRequest, answered and never stored.
async fn service_account_token(
    api: &Api,
    method: &Method,
    rt: &ResourceType,
    rp: &ResourcePath,
    headers: &HeaderMap,
    user: &User,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let (Some(namespace), Some(name)) = (rp.namespace.as_deref(), rp.name.as_deref()) else {
        return Err(ApiError::path_not_found());
    };
    if *method != Method::POST {
        return Err(ApiError::method_not_allowed());
    }
    let attrs = Attributes {
        verb: "create",
        group: &rt.group,
        resource: &rt.resource,
        subresource: Some("token"),
        namespace,
        name,
    };
    authorize(api, user, rt, &attrs).await?;
    let body = decode_body(headers, body)?;
    let st = api.state.read().await;
    let account = st
        .store
        .get(&rt.storage, namespace, name)
        .ok_or_else(|| ApiError::not_found(&rt.gr(), name))?;
    let answer = api.tokens.answer(
        &Account {
            namespace,
            name,
            uid: super::object::uid(&account),
        },
        &body,
        jiff::Timestamp::now().as_second(),
    )?;
    Ok(json_response(201, &answer))
}

async fn resource(
    api: &Api,
    method: &Method,
    rp: ResourcePath,
    q: &Query,
    headers: &HeaderMap,
    user: &User,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rt = {
        let st = api.state.read().await;
        st.registry
            .lookup(&rp.group, &rp.version, &rp.resource)
            .ok_or_else(ApiError::path_not_found)?
    };
    if rp.namespace.is_some() && !rt.namespaced {
        return Err(ApiError::path_not_found());
    }
    if rp.subresource.as_deref() == Some("token") && rt.is(Builtin::ServiceAccount) {
        return service_account_token(api, method, &rt, &rp, headers, user, &body).await;
    }
    let sub = match rp.subresource.as_deref() {
        None => Sub::Main,
        Some("status") if rt.status => Sub::Status,
        Some("finalize") if rt.is(Builtin::Namespace) => Sub::Finalize,
        Some(_) => return Err(ApiError::path_not_found()),
    };
    let watch = rp.watch_prefix || q.bool("watch")? == Some(true);
    let verb =
        verb_of(method, rp.name.is_some(), watch).ok_or_else(ApiError::method_not_allowed)?;
    if sub != Sub::Main && !matches!(verb, "get" | "update" | "patch") {
        return Err(ApiError::method_not_allowed());
    }
    if sub == Sub::Finalize && verb != "update" {
        return Err(ApiError::method_not_allowed());
    }
    let ns = rp.namespace.clone().unwrap_or_default();
    if rt.namespaced && ns.is_empty() && !matches!(verb, "list" | "watch") {
        return Err(if rp.name.is_some() {
            ApiError::path_not_found()
        } else {
            ApiError::method_not_allowed()
        });
    }
    let name = rp.name.clone().unwrap_or_default();
    tracing::debug!(verb, resource = %rt.resource, subresource = ?rp.subresource, namespace = %ns, name = %name, query = ?q, user = %user.name, "request");
    authorize(
        api,
        user,
        &rt,
        &Attributes {
            verb,
            group: &rt.group,
            resource: &rt.resource,
            subresource: rp.subresource.as_deref(),
            namespace: &ns,
            name: &name,
        },
    )
    .await?;
    if rt.is_review() {
        if verb != "create" {
            return Err(ApiError::method_not_allowed());
        }
        let body = decode_body(headers, &body)?;
        let st = api.state.read().await;
        let mut answer = if rt.is(Builtin::TokenReview) {
            api.tokens.review(
                &body,
                jiff::Timestamp::now().as_second(),
                |namespace, name| {
                    st.store
                        .get(
                            &(String::new(), "serviceaccounts".to_string()),
                            namespace,
                            name,
                        )
                        .map(|account| super::object::uid(&account).to_string())
                },
            )
        } else {
            rbac::review(&st, user, body, rt.is(Builtin::SelfSubjectAccessReview))
        };
        if let Some(obj) = answer.as_object_mut() {
            obj.insert("apiVersion".into(), json!(rt.api_version()));
            obj.insert("kind".into(), json!(rt.kind));
            obj.insert("metadata".into(), json!({"creationTimestamp": null}));
        }
        return Ok(json_response(201, &answer));
    }
    let output = table::negotiate(header_str(headers, &header::ACCEPT))
        .ok_or_else(ApiError::not_acceptable)?;
    let include = Include::parse(q.value("includeObject"));
    let ns_opt = rp.namespace.clone();
    match verb {
        // The lock is released before the answer is shaped and serialized, so writers do not wait on it.
        "get" => {
            let stored = api.state.read().await.store.get(&rt.storage, &ns, &name);
            let obj = stored.ok_or_else(|| ApiError::not_found(&rt.gr(), &name))?;
            let obj = from_storage(&rt, &obj);
            Ok(json_response(200, &shape_one(&rt, output, obj, include)))
        }
        "list" => {
            let lq = ListQuery::from_query(q, &rt)?;
            let page = read::list(&*api.state.read().await, &rt, ns_opt.as_deref(), &lq)?;
            Ok(json_response(200, &shape_list(&rt, output, &page, include)))
        }
        "watch" => {
            let mut filter = Filter::from_query(q, &rt)?;
            if let Some(n) = &rp.name {
                filter.fields.0.push(super::selector::FieldRequirement {
                    field: "metadata.name".into(),
                    value: n.clone(),
                    negate: false,
                });
            }
            let req = WatchRequest::from_query(q, rt.clone(), ns_opt, filter, output)?;
            watch::serve(&api.state, req, api.shutdown.clone(), api.bookmark_interval).await
        }
        "create" => {
            let obj = decode_body(headers, &body)?;
            let opts = write_options(q, &field_manager(q, headers)?)?;
            let mut st = api.state.write().await;
            let created = write::create(&mut st, &rt, &ns, obj, &opts)?;
            Ok(written(201, &created, &opts))
        }
        "update" => {
            let obj = decode_body(headers, &body)?;
            let opts = write_options(q, &field_manager(q, headers)?)?;
            let mut st = api.state.write().await;
            let w = write::update(&mut st, &rt, &ns, &name, obj, sub, &opts)?;
            Ok(written(if w.created { 201 } else { 200 }, &w.object, &opts))
        }
        "patch" => {
            let ct = header_str(headers, &header::CONTENT_TYPE).unwrap_or("");
            let patch_type = PatchType::from_content_type(ct).ok_or_else(|| {
                ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"),
                )
            })?;
            let manager = match (patch_type, q.value("fieldManager")) {
                (PatchType::Apply, None) => String::new(),
                _ => field_manager(q, headers)?,
            };
            let opts = write_options(q, &manager)?;
            let req = PatchRequest {
                patch_type,
                body: &body,
                force: q.bool("force")?,
            };
            let mut st = api.state.write().await;
            let w = write::patch(&mut st, &rt, &ns, &name, &req, sub, &opts)?;
            Ok(written(if w.created { 201 } else { 200 }, &w.object, &opts))
        }
        "delete" => {
            let opts = delete_options(q, headers, &body)?;
            let mut st = api.state.write().await;
            let d = delete::delete(&mut st, &rt, &ns, &name, &opts)?;
            Ok(json_response(d.code, &d.body))
        }
        "deletecollection" => {
            let opts = delete_options(q, headers, &body)?;
            let lq = ListQuery::from_query(q, &rt)?;
            let mut st = api.state.write().await;
            let page = read::list(
                &st,
                &rt,
                ns_opt.as_deref(),
                &ListQuery {
                    limit: None,
                    continue_token: None,
                    ..lq
                },
            )?;
            let mut deleted = Vec::new();
            for item in &page.items {
                let item_ns = super::object::namespace(item).to_string();
                let item_name = super::object::name(item).to_string();
                match delete::delete(&mut st, &rt, &item_ns, &item_name, &opts) {
                    Ok(_) => deleted.push(item.clone()),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let body = json!({
                "kind": rt.list_kind,
                "apiVersion": rt.api_version(),
                "metadata": {"resourceVersion": st.store.current_rv().to_string()},
                "items": deleted,
            });
            Ok(json_response(200, &body))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}
