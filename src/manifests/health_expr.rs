//! `spec.healthCheckExprs`: the health of custom kinds judged by CEL expressions, as Flux's
//! kustomize-controller does (RFC-0009). The object's top-level fields (`metadata`, `spec`,
//! `status`, ...) are the expressions' variables. While `status.observedGeneration` differs from
//! `metadata.generation` the object is in progress; otherwise `inProgress`, `failed` and `current`
//! are evaluated in that order and the first that is true decides; when none is — or an
//! expression cannot be evaluated, e.g. `status` does not exist yet — the object is in progress.
//!
//! Expressions are compiled once per run, before anything is applied: an invalid one is an
//! error naming its field (`spec.healthCheckExprs[0].current`).

use serde_json::Value;

use super::health::{Health, assess, pending};
use super::object::group_of;
use crate::api::health_expr::HealthCheckExpr;

/// An expression that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ExprError {
    pub field: String,
    pub message: String,
}

/// Makes the health an expression means when it is true, from why.
type Verdict = fn(String) -> Health;

struct Expr {
    field: String,
    program: cel::Program,
}

impl Expr {
    fn compile(field: String, source: &str) -> Result<Self, ExprError> {
        match cel::Program::compile(source) {
            Ok(program) => Ok(Self { field, program }),
            Err(err) => Err(ExprError {
                field,
                message: format!("invalid CEL expression: {}", one_line(&err.to_string())),
            }),
        }
    }

    /// Whether the expression is true for the object's fields.
    fn holds(&self, context: &cel::Context) -> Result<bool, String> {
        match self.program.execute(context) {
            Ok(cel::Value::Bool(value)) => Ok(value),
            Ok(other) => Err(format!(
                "{} returned {}, not a bool",
                self.field,
                kind_of(&other)
            )),
            Err(err) => Err(format!("{}: {}", self.field, one_line(&err.to_string()))),
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn kind_of(value: &cel::Value) -> &'static str {
    match value {
        cel::Value::Int(_) | cel::Value::UInt(_) | cel::Value::Float(_) => "a number",
        cel::Value::String(_) => "a string",
        cel::Value::List(_) => "a list",
        cel::Value::Map(_) => "a map",
        cel::Value::Null => "null",
        _ => "a value",
    }
}

/// The expressions of one kind.
struct KindExprs {
    group: String,
    kind: String,
    /// In evaluation order, with the health each one means when true.
    checks: Vec<(Expr, Verdict)>,
    /// `spec.healthCheckExprs[i]`.
    field: String,
}

/// Every `spec.healthCheckExprs` entry, compiled.
#[derive(Default)]
pub struct HealthExprs(Vec<KindExprs>);

impl HealthExprs {
    /// Compiles every entry; the first invalid expression is the error.
    pub fn compile(entries: &[HealthCheckExpr]) -> Result<Self, ExprError> {
        let mut compiled = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let field = format!("spec.healthCheckExprs[{index}]");
            let group = group_of(&entry.api_version);
            if group.is_empty() && entry.kind == "Secret" {
                // An evaluation error can quote the values it met.
                return Err(ExprError {
                    field,
                    message: "Secrets cannot be judged by expressions".into(),
                });
            }
            let expressions: [(&str, Option<&str>, Verdict); 3] = [
                (
                    "inProgress",
                    entry.in_progress.as_deref(),
                    Health::InProgress,
                ),
                ("failed", entry.failed.as_deref(), Health::Failed),
                ("current", Some(entry.current.as_str()), Health::Current),
            ];
            let mut checks = Vec::new();
            for (name, source, health) in expressions {
                let Some(source) = source.filter(|s| !s.trim().is_empty()) else {
                    if name == "current" {
                        return Err(ExprError {
                            field: format!("{field}.current"),
                            message: "the expression is empty".into(),
                        });
                    }
                    continue;
                };
                checks.push((Expr::compile(format!("{field}.{name}"), source)?, health));
            }
            compiled.push(KindExprs {
                group: group.to_string(),
                kind: entry.kind.clone(),
                checks,
                field,
            });
        }
        Ok(Self(compiled))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The health of a live object (`None`: not found): by the expressions for its kind when
    /// there are, else by the kstatus rules.
    pub fn judge(&self, object: Option<&Value>) -> Health {
        object
            .and_then(|o| self.assess(o))
            .unwrap_or_else(|| assess(object))
    }

    /// The health of `object` by the first entry for its group and kind; None when no entry
    /// names them (the kstatus rules apply).
    pub fn assess(&self, object: &Value) -> Option<Health> {
        let api_version = object.get("apiVersion")?.as_str()?;
        let kind = object.get("kind")?.as_str()?;
        let group = group_of(api_version);
        let entry = self.0.iter().find(|e| e.group == group && e.kind == kind)?;
        if let Some(waiting) = pending(object) {
            return Some(waiting);
        }
        let context = match context_of(object) {
            Ok(context) => context,
            Err(why) => return Some(Health::InProgress(why)),
        };
        for (expr, health) in &entry.checks {
            match expr.holds(&context) {
                Ok(true) => return Some(health(format!("{} is true", expr.field))),
                Ok(false) => {}
                Err(why) => return Some(Health::InProgress(why)),
            }
        }
        Some(Health::InProgress(format!(
            "no expression of {} is true yet",
            entry.field
        )))
    }
}

/// A CEL context whose variables are the object's top-level fields.
fn context_of(object: &Value) -> Result<cel::Context<'static, 'static>, String> {
    let mut context = cel::Context::default();
    for (name, value) in object.as_object().into_iter().flatten() {
        context
            .add_variable(name.as_str(), value.clone())
            .map_err(|e| format!("field {name} cannot be evaluated: {e}"))?;
    }
    Ok(context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn widget_exprs() -> HealthExprs {
        HealthExprs::compile(&[HealthCheckExpr {
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
            in_progress: Some(
                "status.conditions.exists(e, e.type == 'Provisioning' && e.status == 'True')"
                    .into(),
            ),
            failed: Some(
                "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'False')".into(),
            ),
            current: "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')"
                .into(),
        }])
        .expect("valid expressions")
    }

    fn widget(generation: i64, status: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "generation": generation}, "status": status})
    }

    fn conditions(list: Value) -> Value {
        json!({"observedGeneration": 2, "conditions": list})
    }

    #[test]
    fn expressions_are_evaluated_in_progress_failed_current() {
        let exprs = widget_exprs();
        let provisioning = widget(
            2,
            conditions(json!([{"type": "Provisioning", "status": "True"},
                {"type": "Ready", "status": "True"}])),
        );
        assert_eq!(
            exprs.assess(&provisioning),
            Some(Health::InProgress(
                "spec.healthCheckExprs[0].inProgress is true".into()
            ))
        );
        let failed = widget(2, conditions(json!([{"type": "Ready", "status": "False"}])));
        assert_eq!(
            exprs.assess(&failed),
            Some(Health::Failed(
                "spec.healthCheckExprs[0].failed is true".into()
            ))
        );
        let ready = widget(2, conditions(json!([{"type": "Ready", "status": "True"}])));
        assert_eq!(
            exprs.assess(&ready),
            Some(Health::Current(
                "spec.healthCheckExprs[0].current is true".into()
            ))
        );
        let unknown = widget(
            2,
            conditions(json!([{"type": "Ready", "status": "Unknown"}])),
        );
        assert!(
            matches!(exprs.assess(&unknown), Some(Health::InProgress(m)) if m.contains("no expression"))
        );
    }

    #[test]
    fn a_stale_generation_or_a_missing_status_is_in_progress() {
        let exprs = widget_exprs();
        let stale = widget(3, conditions(json!([{"type": "Ready", "status": "True"}])));
        assert!(
            matches!(exprs.assess(&stale), Some(Health::InProgress(m)) if m.contains("generation 3"))
        );
        let fresh = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "generation": 1}});
        match exprs.assess(&fresh) {
            Some(Health::InProgress(why)) => {
                assert!(
                    why.starts_with("spec.healthCheckExprs[0].inProgress: "),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_the_named_group_and_kind_match_in_any_version() {
        let exprs = widget_exprs();
        let other_version = json!({"apiVersion": "example.com/v2", "kind": "Widget",
            "metadata": {"name": "w"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(exprs.assess(&other_version).is_some_and(|h| h.is_current()));
        let other_group = json!({"apiVersion": "other.io/v1", "kind": "Widget",
            "metadata": {"name": "w"}});
        assert_eq!(exprs.assess(&other_group), None);
        let other_kind = json!({"apiVersion": "example.com/v1", "kind": "Gadget",
            "metadata": {"name": "w"}});
        assert_eq!(exprs.assess(&other_kind), None);
        assert!(HealthExprs::default().is_empty());
        // Without an expression for the kind, the kstatus rules judge.
        assert!(exprs.judge(Some(&other_kind)).is_current());
        assert_eq!(exprs.judge(None), Health::InProgress("not found".into()));
    }

    #[test]
    fn a_non_boolean_result_waits_naming_the_expression() {
        let exprs = HealthExprs::compile(&[HealthCheckExpr {
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
            current: "status.phase".into(),
            ..Default::default()
        }])
        .expect("parses");
        let object = widget(1, json!({"phase": "Running"}));
        assert_eq!(
            exprs.assess(&object),
            Some(Health::InProgress(
                "spec.healthCheckExprs[0].current returned a string, not a bool".into()
            ))
        );
    }

    #[test]
    fn invalid_expressions_name_their_field() {
        let entry = |failed: &str, current: &str| HealthCheckExpr {
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
            failed: Some(failed.into()),
            current: current.into(),
            ..Default::default()
        };
        let good = "status.ready == true";
        let err = HealthExprs::compile(&[
            entry(good, good),
            entry(good, "status.conditions.filter(e, "),
        ])
        .err()
        .expect("invalid");
        assert_eq!(err.field, "spec.healthCheckExprs[1].current");
        assert!(
            err.to_string()
                .starts_with("spec.healthCheckExprs[1].current: invalid CEL expression"),
            "{err}"
        );
        let err = HealthExprs::compile(&[entry("status ==", good)])
            .err()
            .expect("invalid");
        assert_eq!(err.field, "spec.healthCheckExprs[0].failed");
        let err = HealthExprs::compile(&[entry(good, "  ")])
            .err()
            .expect("empty");
        assert_eq!(err.field, "spec.healthCheckExprs[0].current");
        let secret = HealthCheckExpr {
            api_version: "v1".into(),
            kind: "Secret".into(),
            current: good.into(),
            ..Default::default()
        };
        let err = HealthExprs::compile(&[secret]).err().expect("refused");
        assert_eq!(err.field, "spec.healthCheckExprs[0]");
    }
}
