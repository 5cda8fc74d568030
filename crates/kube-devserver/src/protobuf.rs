//! Request bodies in `application/vnd.kubernetes.protobuf`, which client-go's
//! typed clients (kubectl's `create` commands, helm's release storage) send for
//! built-in kinds: the `k8s\0` envelope, `runtime.Unknown`, and the messages of
//! the kinds below, decoded to the same JSON a JSON client would have sent.
//!
//! Only the messages in the table are known. A field number the table lacks is
//! refused (415) when it carries a value, so nothing is silently lost; with its
//! zero value it is skipped, as JSON would omit it (Go encodes every non-pointer
//! field). Responses are always JSON (client-go accepts it alongside protobuf).

use base64::Engine;
use serde_json::{Map, Value, json};

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, Copy, Debug)]
enum Ty {
    Str,
    Bool,
    Int,
    Msg(&'static [F]),
    MapStr,
    MapBytes,
    Time,
    MicroTime,
    FieldsV1,
    /// `intstr.IntOrString`.
    IntOrStr,
    /// `map<string, resource.Quantity>`.
    MapQuantity,
}

/// One field: number, JSON name, type, repeated, and whether Go keeps it as a
/// pointer (then a zero value is meaningful and kept).
#[derive(Clone, Copy, Debug)]
struct F {
    num: u64,
    name: &'static str,
    ty: Ty,
    repeated: bool,
    pointer: bool,
}

const fn f(num: u64, name: &'static str, ty: Ty) -> F {
    F {
        num,
        name,
        ty,
        repeated: false,
        pointer: false,
    }
}
const fn p(num: u64, name: &'static str, ty: Ty) -> F {
    F {
        num,
        name,
        ty,
        repeated: false,
        pointer: true,
    }
}
const fn r(num: u64, name: &'static str, ty: Ty) -> F {
    F {
        num,
        name,
        ty,
        repeated: true,
        pointer: false,
    }
}

use Ty::*;

const OWNER_REFERENCE: &[F] = &[
    f(5, "apiVersion", Str),
    f(1, "kind", Str),
    f(3, "name", Str),
    f(4, "uid", Str),
    p(6, "controller", Bool),
    p(7, "blockOwnerDeletion", Bool),
];
const MANAGED_FIELDS_ENTRY: &[F] = &[
    f(1, "manager", Str),
    f(2, "operation", Str),
    f(3, "apiVersion", Str),
    f(4, "time", Time),
    f(6, "fieldsType", Str),
    f(7, "fieldsV1", FieldsV1),
    f(8, "subresource", Str),
];
const OBJECT_META: &[F] = &[
    f(1, "name", Str),
    f(2, "generateName", Str),
    f(3, "namespace", Str),
    f(4, "selfLink", Str),
    f(5, "uid", Str),
    f(6, "resourceVersion", Str),
    f(7, "generation", Int),
    f(8, "creationTimestamp", Time),
    f(9, "deletionTimestamp", Time),
    p(10, "deletionGracePeriodSeconds", Int),
    f(11, "labels", MapStr),
    f(12, "annotations", MapStr),
    r(13, "ownerReferences", Msg(OWNER_REFERENCE)),
    r(14, "finalizers", Str),
    r(17, "managedFields", Msg(MANAGED_FIELDS_ENTRY)),
];
const LABEL_SELECTOR_REQUIREMENT: &[F] =
    &[f(1, "key", Str), f(2, "operator", Str), r(3, "values", Str)];
const LABEL_SELECTOR: &[F] = &[
    f(1, "matchLabels", MapStr),
    r(2, "matchExpressions", Msg(LABEL_SELECTOR_REQUIREMENT)),
];
const PRECONDITIONS: &[F] = &[p(1, "uid", Str), p(2, "resourceVersion", Str)];
const DELETE_OPTIONS: &[F] = &[
    p(1, "gracePeriodSeconds", Int),
    p(2, "preconditions", Msg(PRECONDITIONS)),
    p(3, "orphanDependents", Bool),
    p(4, "propagationPolicy", Str),
    r(5, "dryRun", Str),
    p(6, "ignoreStoreReadErrorWithClusterBreakingPotential", Bool),
];

const NAMESPACE_CONDITION: &[F] = &[
    f(1, "type", Str),
    f(2, "status", Str),
    f(4, "lastTransitionTime", Time),
    f(5, "reason", Str),
    f(6, "message", Str),
];
const NAMESPACE: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(&[r(1, "finalizers", Str)])),
    f(
        3,
        "status",
        Msg(&[
            f(1, "phase", Str),
            r(2, "conditions", Msg(NAMESPACE_CONDITION)),
        ]),
    ),
];
const SECRET: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "data", MapBytes),
    f(3, "type", Str),
    f(4, "stringData", MapStr),
    p(5, "immutable", Bool),
];
const CONFIG_MAP: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "data", MapStr),
    f(3, "binaryData", MapBytes),
    p(4, "immutable", Bool),
];
const OBJECT_REFERENCE: &[F] = &[
    f(1, "kind", Str),
    f(2, "namespace", Str),
    f(3, "name", Str),
    f(4, "uid", Str),
    f(5, "apiVersion", Str),
    f(6, "resourceVersion", Str),
    f(7, "fieldPath", Str),
];
const SERVICE_ACCOUNT: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    r(2, "secrets", Msg(OBJECT_REFERENCE)),
    r(3, "imagePullSecrets", Msg(&[f(1, "name", Str)])),
    p(4, "automountServiceAccountToken", Bool),
];
const CORE_EVENT_SERIES: &[F] = &[f(1, "count", Int), f(2, "lastObservedTime", MicroTime)];
const CORE_EVENT: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "involvedObject", Msg(OBJECT_REFERENCE)),
    f(3, "reason", Str),
    f(4, "message", Str),
    f(
        5,
        "source",
        Msg(&[f(1, "component", Str), f(2, "host", Str)]),
    ),
    f(6, "firstTimestamp", Time),
    f(7, "lastTimestamp", Time),
    f(8, "count", Int),
    f(9, "type", Str),
    f(10, "eventTime", MicroTime),
    p(11, "series", Msg(CORE_EVENT_SERIES)),
    f(12, "action", Str),
    p(13, "related", Msg(OBJECT_REFERENCE)),
    f(14, "reportingComponent", Str),
    f(15, "reportingInstance", Str),
];
const EVENTS_V1_EVENT: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "eventTime", MicroTime),
    p(3, "series", Msg(CORE_EVENT_SERIES)),
    f(4, "reportingController", Str),
    f(5, "reportingInstance", Str),
    f(6, "action", Str),
    f(7, "reason", Str),
    f(8, "regarding", Msg(OBJECT_REFERENCE)),
    p(9, "related", Msg(OBJECT_REFERENCE)),
    f(10, "note", Str),
    f(11, "type", Str),
    p(
        12,
        "deprecatedSource",
        Msg(&[f(1, "component", Str), f(2, "host", Str)]),
    ),
    f(13, "deprecatedFirstTimestamp", Time),
    f(14, "deprecatedLastTimestamp", Time),
    f(15, "deprecatedCount", Int),
];
const LEASE: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Msg(&[
            p(1, "holderIdentity", Str),
            p(2, "leaseDurationSeconds", Int),
            p(3, "acquireTime", MicroTime),
            p(4, "renewTime", MicroTime),
            p(5, "leaseTransitions", Int),
            p(6, "strategy", Str),
            p(7, "preferredHolder", Str),
        ]),
    ),
];
const POLICY_RULE: &[F] = &[
    r(1, "verbs", Str),
    r(2, "apiGroups", Str),
    r(3, "resources", Str),
    r(4, "resourceNames", Str),
    r(5, "nonResourceURLs", Str),
];
const ROLE: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    r(2, "rules", Msg(POLICY_RULE)),
];
const CLUSTER_ROLE: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    r(2, "rules", Msg(POLICY_RULE)),
    p(
        3,
        "aggregationRule",
        Msg(&[r(1, "clusterRoleSelectors", Msg(LABEL_SELECTOR))]),
    ),
];
const SUBJECT: &[F] = &[
    f(1, "kind", Str),
    f(2, "apiGroup", Str),
    f(3, "name", Str),
    f(4, "namespace", Str),
];
const ROLE_REF: &[F] = &[f(1, "apiGroup", Str), f(2, "kind", Str), f(3, "name", Str)];
const ROLE_BINDING: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    r(2, "subjects", Msg(SUBJECT)),
    f(3, "roleRef", Msg(ROLE_REF)),
];

const RESOURCE_ATTRIBUTES: &[F] = &[
    f(1, "namespace", Str),
    f(2, "verb", Str),
    f(3, "group", Str),
    f(4, "version", Str),
    f(5, "resource", Str),
    f(6, "subresource", Str),
    f(7, "name", Str),
];
const NON_RESOURCE_ATTRIBUTES: &[F] = &[f(1, "path", Str), f(2, "verb", Str)];
const ACCESS_REVIEW_STATUS: &[F] = &[
    f(1, "allowed", Bool),
    f(2, "reason", Str),
    f(3, "evaluationError", Str),
    f(4, "denied", Bool),
];
const SELF_SUBJECT_ACCESS_REVIEW: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Msg(&[
            p(1, "resourceAttributes", Msg(RESOURCE_ATTRIBUTES)),
            p(2, "nonResourceAttributes", Msg(NON_RESOURCE_ATTRIBUTES)),
        ]),
    ),
    f(3, "status", Msg(ACCESS_REVIEW_STATUS)),
];
const SUBJECT_ACCESS_REVIEW: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Msg(&[
            p(1, "resourceAttributes", Msg(RESOURCE_ATTRIBUTES)),
            p(2, "nonResourceAttributes", Msg(NON_RESOURCE_ATTRIBUTES)),
            f(3, "user", Str),
            r(4, "groups", Str),
            f(6, "uid", Str),
        ]),
    ),
    f(3, "status", Msg(ACCESS_REVIEW_STATUS)),
];

const QUANTITY: &[F] = &[f(1, "string", Str)];
const INT_OR_STRING: &[F] = &[f(1, "type", Int), f(2, "intVal", Int), f(3, "strVal", Str)];
const CONTAINER_PORT: &[F] = &[
    f(1, "name", Str),
    f(2, "hostPort", Int),
    f(3, "containerPort", Int),
    f(4, "protocol", Str),
    f(5, "hostIP", Str),
];
const CONTAINER: &[F] = &[
    f(1, "name", Str),
    f(2, "image", Str),
    r(3, "command", Str),
    r(4, "args", Str),
    f(5, "workingDir", Str),
    r(6, "ports", Msg(CONTAINER_PORT)),
    r(7, "env", Msg(&[f(1, "name", Str), f(2, "value", Str)])),
    f(
        8,
        "resources",
        Msg(&[f(1, "limits", MapQuantity), f(2, "requests", MapQuantity)]),
    ),
    f(13, "terminationMessagePath", Str),
    f(14, "imagePullPolicy", Str),
    f(20, "terminationMessagePolicy", Str),
];
const POD_SPEC: &[F] = &[
    r(2, "containers", Msg(CONTAINER)),
    f(3, "restartPolicy", Str),
    p(4, "terminationGracePeriodSeconds", Int),
    f(6, "dnsPolicy", Str),
    f(7, "nodeSelector", MapStr),
    f(8, "serviceAccountName", Str),
    r(15, "imagePullSecrets", Msg(&[f(1, "name", Str)])),
    f(19, "schedulerName", Str),
    r(20, "initContainers", Msg(CONTAINER)),
];
const POD_TEMPLATE_SPEC: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(POD_SPEC)),
];
const DEPLOYMENT: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Msg(&[
            p(1, "replicas", Int),
            p(2, "selector", Msg(LABEL_SELECTOR)),
            f(3, "template", Msg(POD_TEMPLATE_SPEC)),
            f(
                4,
                "strategy",
                Msg(&[
                    f(1, "type", Str),
                    p(
                        2,
                        "rollingUpdate",
                        Msg(&[p(1, "maxUnavailable", IntOrStr), p(2, "maxSurge", IntOrStr)]),
                    ),
                ]),
            ),
            f(5, "minReadySeconds", Int),
            p(6, "revisionHistoryLimit", Int),
            f(7, "paused", Bool),
            p(9, "progressDeadlineSeconds", Int),
        ]),
    ),
    f(3, "status", Msg(&[])),
];
const SERVICE_PORT: &[F] = &[
    f(1, "name", Str),
    f(2, "protocol", Str),
    f(3, "port", Int),
    f(4, "targetPort", IntOrStr),
    f(5, "nodePort", Int),
    p(6, "appProtocol", Str),
];
const SERVICE: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Msg(&[
            r(1, "ports", Msg(SERVICE_PORT)),
            f(2, "selector", MapStr),
            f(3, "clusterIP", Str),
            f(4, "type", Str),
            r(5, "externalIPs", Str),
            f(7, "sessionAffinity", Str),
            f(10, "externalName", Str),
            f(11, "externalTrafficPolicy", Str),
            f(13, "publishNotReadyAddresses", Bool),
        ]),
    ),
    f(3, "status", Msg(&[])),
];

/// The message of a top-level kind.
fn root(group: &str, kind: &str) -> Option<&'static [F]> {
    Some(match (group, kind) {
        ("", "Namespace") => NAMESPACE,
        ("", "Secret") => SECRET,
        ("", "ConfigMap") => CONFIG_MAP,
        ("", "ServiceAccount") => SERVICE_ACCOUNT,
        ("", "Service") => SERVICE,
        ("apps", "Deployment") => DEPLOYMENT,
        ("", "Event") => CORE_EVENT,
        ("events.k8s.io", "Event") => EVENTS_V1_EVENT,
        ("coordination.k8s.io", "Lease") => LEASE,
        ("rbac.authorization.k8s.io", "Role") => ROLE,
        ("rbac.authorization.k8s.io", "ClusterRole") => CLUSTER_ROLE,
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => ROLE_BINDING,
        ("meta.k8s.io", "DeleteOptions") | ("", "DeleteOptions") => DELETE_OPTIONS,
        ("authorization.k8s.io", "SelfSubjectAccessReview") => SELF_SUBJECT_ACCESS_REVIEW,
        ("authorization.k8s.io", "SubjectAccessReview") => SUBJECT_ACCESS_REVIEW,
        _ => return None,
    })
}

/// Why a protobuf body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("the body is not valid Kubernetes protobuf: {0}")]
    Malformed(String),
    #[error("kube-devserver cannot read {0} in protobuf; send it as application/json")]
    Unsupported(String),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| ProtobufError::Malformed("truncated varint".into()))?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(ProtobufError::Malformed("varint too long".into()))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtobufError> {
        let len = usize::try_from(self.varint()?)
            .map_err(|_| ProtobufError::Malformed("length".into()))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| ProtobufError::Malformed("truncated field".into()))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, wire: u64) -> Result<(), ProtobufError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.advance(8),
            2 => self.bytes().map(|_| ()),
            5 => self.advance(4),
            w => Err(ProtobufError::Malformed(format!("wire type {w}"))),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), ProtobufError> {
        if self.pos + n > self.buf.len() {
            return Err(ProtobufError::Malformed("truncated fixed field".into()));
        }
        self.pos += n;
        Ok(())
    }
}

/// Iterates (field number, wire type) over one message, calling `each` with the reader positioned at the value.
fn for_each_field<'a>(
    buf: &'a [u8],
    mut each: impl FnMut(u64, u64, &mut Reader<'a>) -> Result<(), ProtobufError>,
) -> Result<(), ProtobufError> {
    let mut rd = Reader { buf, pos: 0 };
    while !rd.done() {
        let key = rd.varint()?;
        each(key >> 3, key & 7, &mut rd)?;
    }
    Ok(())
}

fn text(b: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(b.to_vec())
        .map_err(|_| ProtobufError::Malformed("invalid UTF-8 in a string".into()))
}

fn timestamp(buf: &[u8], micro: bool) -> Result<Value, ProtobufError> {
    let (mut seconds, mut nanos) = (0i64, 0i64);
    for_each_field(buf, |num, wire, rd| {
        match (num, wire) {
            (1, 0) => seconds = rd.varint()? as i64,
            (2, 0) => nanos = rd.varint()? as i64,
            (_, w) => rd.skip(w)?,
        }
        Ok(())
    })?;
    if (seconds == 0 && nanos == 0) || seconds == -62_135_596_800 {
        return Ok(Value::Null);
    }
    let ts = jiff::Timestamp::new(seconds, nanos as i32)
        .map_err(|e| ProtobufError::Malformed(e.to_string()))?;
    Ok(json!(if micro {
        ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
    } else {
        ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }))
}

fn map_entry(buf: &[u8], bytes_value: bool) -> Result<(String, Value), ProtobufError> {
    let (mut key, mut value) = (String::new(), json!(""));
    for_each_field(buf, |num, wire, rd| {
        match (num, wire) {
            (1, 2) => key = text(rd.bytes()?)?,
            (2, 2) => {
                let b = rd.bytes()?;
                value = if bytes_value {
                    json!(base64::engine::general_purpose::STANDARD.encode(b))
                } else {
                    json!(text(b)?)
                };
            }
            (_, w) => rd.skip(w)?,
        }
        Ok(())
    })?;
    Ok((key, value))
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Array(a) => a.is_empty(),
        Value::Object(_) => false,
    }
}

fn message(buf: &[u8], fields: &'static [F], path: &str) -> Result<Value, ProtobufError> {
    let mut out = Map::new();
    for_each_field(buf, |num, wire, rd| {
        let Some(field) = fields.iter().find(|fd| fd.num == num) else {
            let zero = match wire {
                0 => rd.varint()? == 0,
                2 => rd.bytes()?.is_empty(),
                w => {
                    rd.skip(w)?;
                    false
                }
            };
            if zero {
                return Ok(());
            }
            return Err(ProtobufError::Unsupported(format!("field {num} of {path}")));
        };
        let name = field.name;
        let value = match (field.ty, wire) {
            (Str, 2) => json!(text(rd.bytes()?)?),
            (Bool, 0) => json!(rd.varint()? != 0),
            (Int, 0) => json!(rd.varint()? as i64),
            (Msg(inner), 2) => message(rd.bytes()?, inner, &format!("{path}.{name}"))?,
            (MapStr | MapBytes, 2) => {
                let (k, v) = map_entry(rd.bytes()?, matches!(field.ty, MapBytes))?;
                let entry = out.entry(name).or_insert_with(|| json!({}));
                if let Some(m) = entry.as_object_mut() {
                    m.insert(k, v);
                }
                return Ok(());
            }
            (IntOrStr, 2) => {
                let v = message(rd.bytes()?, INT_OR_STRING, path)?;
                if v["type"] == 1 {
                    v.get("strVal").cloned().unwrap_or(json!(""))
                } else {
                    v.get("intVal").cloned().unwrap_or(json!(0))
                }
            }
            (MapQuantity, 2) => {
                let mut key = String::new();
                let mut quantity = json!("");
                for_each_field(rd.bytes()?, |n, w, entry| {
                    match (n, w) {
                        (1, 2) => key = text(entry.bytes()?)?,
                        (2, 2) => {
                            quantity = message(entry.bytes()?, QUANTITY, path)?
                                .get("string")
                                .cloned()
                                .unwrap_or(json!(""))
                        }
                        (_, w) => entry.skip(w)?,
                    }
                    Ok(())
                })?;
                let map = out.entry(name).or_insert_with(|| json!({}));
                if let Some(m) = map.as_object_mut() {
                    m.insert(key, quantity);
                }
                return Ok(());
            }
            (Time, 2) => timestamp(rd.bytes()?, false)?,
            (MicroTime, 2) => timestamp(rd.bytes()?, true)?,
            (FieldsV1, 2) => {
                let mut raw = Value::Null;
                for_each_field(rd.bytes()?, |n, w, inner| {
                    if (n, w) == (1, 2) {
                        raw = serde_json::from_slice(inner.bytes()?)
                            .map_err(|e| ProtobufError::Malformed(e.to_string()))?;
                    } else {
                        inner.skip(w)?;
                    }
                    Ok(())
                })?;
                raw
            }
            (_, w) => {
                return Err(ProtobufError::Malformed(format!(
                    "{path}.{name}: unexpected wire type {w}"
                )));
            }
        };
        if field.repeated {
            let entry = out.entry(name).or_insert_with(|| json!([]));
            if let Some(list) = entry.as_array_mut() {
                list.push(value);
            }
        } else if !value.is_null() {
            out.insert(name.to_string(), value);
        }
        Ok(())
    })?;
    // Go value fields are always encoded; JSON omits their zero values.
    out.retain(|k, v| {
        let pointer = fields.iter().any(|fd| fd.name == k && fd.pointer);
        !is_zero(v) || (pointer && !v.is_null())
    });
    Ok(Value::Object(out))
}

/// Decodes a protobuf request body into the JSON object it encodes.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| ProtobufError::Malformed("missing the k8s protobuf prefix".into()))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for_each_field(unknown, |num, wire, rd| {
        match (num, wire) {
            (1, 2) => for_each_field(rd.bytes()?, |n, w, tm| {
                match (n, w) {
                    (1, 2) => api_version = text(tm.bytes()?)?,
                    (2, 2) => kind = text(tm.bytes()?)?,
                    (_, w) => tm.skip(w)?,
                }
                Ok(())
            })?,
            (2, 2) => raw = rd.bytes()?,
            (_, w) => rd.skip(w)?,
        }
        Ok(())
    })?;
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let fields = root(group, &kind)
        .ok_or_else(|| ProtobufError::Unsupported(format!("{api_version} {kind}")))?;
    let mut obj = message(raw, fields, &kind)?;
    if let Some(m) = obj.as_object_mut()
        && kind != "DeleteOptions"
    {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field(num: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(num << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    #[test]
    fn decodes_a_secret_like_client_go_sends_it() {
        let mut meta = Vec::new();
        field(1, b"db", &mut meta);
        field(2, b"", &mut meta);
        let mut label = Vec::new();
        field(1, b"app", &mut label);
        field(2, b"web", &mut label);
        field(11, &label, &mut meta);
        meta.extend_from_slice(&[7 << 3, 0]);
        let mut secret = Vec::new();
        field(1, &meta, &mut secret);
        let mut entry = Vec::new();
        field(1, b"password", &mut entry);
        field(2, b"hunter2", &mut entry);
        field(2, &entry, &mut secret);
        field(3, b"Opaque", &mut secret);
        let mut type_meta = Vec::new();
        field(1, b"v1", &mut type_meta);
        field(2, b"Secret", &mut type_meta);
        let mut unknown = Vec::new();
        field(1, &type_meta, &mut unknown);
        field(2, &secret, &mut unknown);
        let mut body = MAGIC.to_vec();
        body.extend(unknown);
        let obj = decode(&body).expect("decodes");
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "labels": {"app": "web"}},
                   "data": {"password": "aHVudGVyMg=="}, "type": "Opaque"})
        );
    }

    #[test]
    fn unknown_fields_are_refused_not_dropped() {
        let mut cm = Vec::new();
        field(9, b"x", &mut cm);
        let mut type_meta = Vec::new();
        field(1, b"v1", &mut type_meta);
        field(2, b"ConfigMap", &mut type_meta);
        let mut unknown = Vec::new();
        field(1, &type_meta, &mut unknown);
        field(2, &cm, &mut unknown);
        let mut body = MAGIC.to_vec();
        body.extend(unknown);
        assert!(matches!(decode(&body), Err(ProtobufError::Unsupported(_))));
    }
}
