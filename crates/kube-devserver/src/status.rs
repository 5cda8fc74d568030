//! API errors as `Status` objects, worded like apimachinery's `k8s.io/apimachinery/pkg/api/errors`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use serde_json::{Value, json};

/// A group + resource pair as errors name it (`deployments.apps`, `configmaps`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

impl std::fmt::Display for GroupResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// The kind of one field validation error (`field.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorType {
    Invalid,
    Required,
    Forbidden,
    Duplicate,
    NotSupported,
    TooLong,
}

impl FieldErrorType {
    fn cause(self) -> &'static str {
        match self {
            Self::Invalid => "FieldValueInvalid",
            Self::Required => "FieldValueRequired",
            Self::Forbidden => "FieldValueForbidden",
            Self::Duplicate => "FieldValueDuplicate",
            Self::NotSupported => "FieldValueNotSupported",
            Self::TooLong => "FieldValueTooLong",
        }
    }

    fn phrase(self) -> &'static str {
        match self {
            Self::Invalid => "Invalid value",
            Self::Required => "Required value",
            Self::Forbidden => "Forbidden",
            Self::Duplicate => "Duplicate value",
            Self::NotSupported => "Unsupported value",
            Self::TooLong => "Too long",
        }
    }
}

/// One field validation error (`field.Error`).
#[derive(Clone, Debug)]
pub struct FieldError {
    pub kind: FieldErrorType,
    pub field: String,
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    pub fn invalid(field: &str, value: impl Into<Value>, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorType::Invalid,
            field: field.to_string(),
            value: Some(value.into()),
            detail: detail.into(),
        }
    }

    pub fn required(field: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorType::Required,
            field: field.to_string(),
            value: None,
            detail: detail.into(),
        }
    }

    pub fn forbidden(field: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorType::Forbidden,
            field: field.to_string(),
            value: None,
            detail: detail.into(),
        }
    }

    pub fn duplicate(field: &str, value: impl Into<Value>) -> Self {
        Self {
            kind: FieldErrorType::Duplicate,
            field: field.to_string(),
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    pub fn not_supported(field: &str, value: impl Into<Value>, supported: &[&str]) -> Self {
        let quoted: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Self {
            kind: FieldErrorType::NotSupported,
            field: field.to_string(),
            value: Some(value.into()),
            detail: format!("supported values: {}", quoted.join(", ")),
        }
    }

    /// The message without the field path (`ErrorBody`).
    pub fn body(&self) -> String {
        let mut out = self.kind.phrase().to_string();
        if let Some(value) = &self.value {
            out.push_str(": ");
            out.push_str(&render_value(value));
        }
        if !self.detail.is_empty() {
            out.push_str(": ");
            out.push_str(&self.detail);
        }
        out
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// An API error answered as a `Status` object.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

fn details(gr: &GroupResource, name: &str) -> Value {
    let mut d = serde_json::Map::new();
    if !name.is_empty() {
        d.insert("name".into(), name.into());
    }
    if !gr.group.is_empty() {
        d.insert("group".into(), gr.group.clone().into());
    }
    d.insert("kind".into(), gr.resource.clone().into());
    Value::Object(d)
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(gr: &GroupResource, name: &str) -> Self {
        Self {
            code: 404,
            reason: "NotFound",
            message: format!("{gr} \"{name}\" not found"),
            details: Some(details(gr, name)),
        }
    }

    /// The answer for a path no resource serves.
    pub fn path_not_found() -> Self {
        Self {
            code: 404,
            reason: "NotFound",
            message: "the server could not find the requested resource".into(),
            details: Some(json!({})),
        }
    }

    pub fn already_exists(gr: &GroupResource, name: &str) -> Self {
        Self {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{gr} \"{name}\" already exists"),
            details: Some(details(gr, name)),
        }
    }

    pub fn conflict(gr: &GroupResource, name: &str, why: &str) -> Self {
        Self {
            code: 409,
            reason: "Conflict",
            message: format!("Operation cannot be fulfilled on {gr} \"{name}\": {why}"),
            details: Some(details(gr, name)),
        }
    }

    /// The optimistic-concurrency conflict of a stale resourceVersion.
    pub fn stale(gr: &GroupResource, name: &str) -> Self {
        Self::conflict(
            gr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid; `kind` is the object's kind (`ConfigMap`), `group` its API group.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: Vec<FieldError>) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let aggregate = match errors.as_slice() {
            [one] => one.to_string(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.cause(), "message": e.body(), "field": e.field}))
            .collect();
        let mut d = serde_json::Map::new();
        if !name.is_empty() {
            d.insert("name".into(), name.into());
        }
        if !group.is_empty() {
            d.insert("group".into(), group.into());
        }
        d.insert("kind".into(), kind.into());
        d.insert("causes".into(), Value::Array(causes));
        Self {
            code: 422,
            reason: "Invalid",
            message: format!("{qualified} \"{name}\" is invalid: {aggregate}"),
            details: Some(Value::Object(d)),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn forbidden(gr: &GroupResource, name: &str, why: &str) -> Self {
        let message = if name.is_empty() {
            format!("{gr} is forbidden: {why}")
        } else {
            format!("{gr} \"{name}\" is forbidden: {why}")
        };
        Self {
            code: 403,
            reason: "Forbidden",
            message,
            details: Some(details(gr, name)),
        }
    }

    /// 410 with reason `Expired`: a resourceVersion or continue token older than the history kept.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn method_not_supported(gr: &GroupResource, action: &str) -> Self {
        Self {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!("{action} is not supported on resources of kind \"{gr}\""),
            details: Some(details(gr, "")),
        }
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            code: 500,
            reason: "InternalError",
            message: format!("Internal error occurred: {message}"),
            details: Some(json!({"causes": [{"message": message}]})),
        }
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"
            ),
        )
    }

    pub fn not_acceptable() -> Self {
        Self::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/yaml",
        )
    }

    /// The error as a `Status` object.
    pub fn to_status(&self) -> Value {
        to_value(&Status {
            status: Some("Failure".to_string()),
            message: Some(self.message.clone()),
            reason: Some(self.reason.to_string()),
            code: Some(i32::from(self.code)),
            details: self
                .details
                .clone()
                .and_then(|d| serde_json::from_value(d).ok()),
            ..Status::default()
        })
    }
}

/// The `Status` a successful delete answers with when the store does not return the object.
pub fn delete_success(gr: &GroupResource, name: &str, uid: &str) -> Value {
    let mut d = details(gr, name);
    if let Some(obj) = d.as_object_mut() {
        obj.insert("uid".into(), uid.into());
    }
    to_value(&Status {
        status: Some("Success".to_string()),
        details: serde_json::from_value(d).ok(),
        ..Status::default()
    })
}

fn to_value(status: &Status) -> Value {
    // A Status of strings and numbers always serializes.
    serde_json::to_value(status).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_group_and_resource() {
        let e = ApiError::not_found(&GroupResource::new("apps", "deployments"), "web");
        assert_eq!(e.message, "deployments.apps \"web\" not found");
        let s = e.to_status();
        assert_eq!(
            s["details"],
            json!({"name": "web", "group": "apps", "kind": "deployments"})
        );
        assert_eq!(s["code"], 404);
    }

    #[test]
    fn invalid_aggregates_field_errors_like_apimachinery() {
        let e = ApiError::invalid(
            "",
            "ConfigMap",
            "Bad",
            vec![FieldError::invalid(
                "metadata.name",
                "Bad",
                "must be lowercase",
            )],
        );
        assert_eq!(
            e.message,
            "ConfigMap \"Bad\" is invalid: metadata.name: Invalid value: \"Bad\": must be lowercase"
        );
        let s = e.to_status();
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueInvalid");
        assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
        let two = ApiError::invalid(
            "",
            "Secret",
            "s",
            vec![
                FieldError::required("data[tls.crt]", ""),
                FieldError::required("data[tls.key]", ""),
            ],
        );
        assert_eq!(
            two.message,
            "Secret \"s\" is invalid: [data[tls.crt]: Required value, data[tls.key]: Required value]"
        );
    }
}
