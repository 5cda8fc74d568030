//! Post-build variable substitution (`spec.postBuild`), as Flux's kustomize-controller does it:
//! each object is written as YAML, `${var}` references are replaced in that text, and the result
//! is read back — so `replicas: ${replicas}` becomes a number, exactly as under Flux.
//!
//! Flux's rules, kept here:
//! * only the braced form is a reference: `$var` stays as it is, `$${var}` writes `${var}`;
//! * `${var:=default}` (also `:-`, `=`, `-`) uses the default when the variable is unset or
//!   empty; `${var:offset}`, `${var:offset:length}`, `${var/from/to}` and `${var//from/to}` as
//!   in bash; an unset variable without a default becomes empty;
//! * variable names match `^[_[:alpha:]][_[:alpha:][:digit:]]*$`; values lose their newlines;
//!   `substitute` overrides `substituteFrom`, later `substituteFrom` entries override earlier;
//! * nothing is substituted when no variable is defined;
//! * an object labelled or annotated `kustomize.toolkit.fluxcd.io/substitute: disabled` (or
//!   `sigil.dev/substitute: disabled`) is left alone.
//!
//! Ciphertext is never touched: a SOPS-encrypted document (top-level `sops`) and a SealedSecret
//! (whose values are sealed to its namespace and name) are skipped whole. Errors name the
//! reference or the variable, never a value (values may come from Secrets).

use std::collections::BTreeMap;

use serde_json::Value;

/// The opt-out key Flux users already write.
pub const FLUX_SUBSTITUTE_KEY: &str = "kustomize.toolkit.fluxcd.io/substitute";
/// sigil's own name for the same opt-out.
pub const SUBSTITUTE_KEY: &str = "sigil.dev/substitute";

/// Why substitution failed; names the variable or the reference, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstituteError {
    #[error("'{0}' var name is invalid, must match '^[_[:alpha:]][_[:alpha:][:digit:]]*$'")]
    InvalidName(String),
    #[error("variable substitution failed: unclosed reference starting at byte {0}")]
    Unclosed(usize),
    #[error("variable substitution failed: bad substitution ${{{0}}}")]
    BadSubstitution(String),
    /// The parser's message is not kept: it may quote the substituted text.
    #[error("variable substitution failed: the result is not valid YAML (quote the reference?)")]
    Yaml,
}

/// The variables of one Sync, merged in Flux's order. Values may come from Secrets: they are
/// zeroized when dropped and never shown (`Debug` lists the names only).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Variables(BTreeMap<String, String>);

impl std::fmt::Debug for Variables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

impl Variables {
    /// Adds (or overrides with) a set of variables, checking names and removing newlines.
    pub fn extend<'a>(
        &mut self,
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), SubstituteError> {
        for (name, value) in vars {
            if !valid_name(name) {
                return Err(SubstituteError::InvalidName(name.to_string()));
            }
            self.0.insert(name.to_string(), value.replace('\n', ""));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }
}

impl Drop for Variables {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.0.values_mut().for_each(Zeroize::zeroize);
    }
}

/// Whether an object opts out by label or annotation.
pub fn disabled(object: &Value) -> bool {
    ["labels", "annotations"].iter().any(|field| {
        let Some(map) = object.get("metadata").and_then(|m| m.get(field)) else {
            return false;
        };
        [FLUX_SUBSTITUTE_KEY, SUBSTITUTE_KEY]
            .iter()
            .any(|key| map.get(key).and_then(Value::as_str) == Some("disabled"))
    })
}

/// Ciphertext: a SOPS document or a SealedSecret (sigil's or Bitnami's).
fn is_ciphertext(object: &Value) -> bool {
    object.get("sops").is_some()
        || object.get("kind").and_then(Value::as_str) == Some("SealedSecret")
}

/// Whether substitution applies to an object at all.
pub fn applies(object: &Value, vars: &Variables) -> bool {
    !vars.is_empty() && !disabled(object) && !is_ciphertext(object)
}

/// Substitutes the variables into one object; None when substitution does not apply to it or
/// changes nothing.
pub fn substitute_object(
    object: &Value,
    vars: &Variables,
) -> Result<Option<Value>, SubstituteError> {
    if !applies(object, vars) {
        return Ok(None);
    }
    let text = crate::yaml::to_string(object).map_err(|_| SubstituteError::Yaml)?;
    let replaced = zeroize::Zeroizing::new(substitute_text(&text, vars)?);
    if *replaced == text {
        return Ok(None);
    }
    crate::yaml::from_str(&replaced)
        .map(Some)
        .map_err(|_| SubstituteError::Yaml)
}

/// Replaces every `${...}` reference in `input` (Flux's envsubst, braced form only).
pub fn substitute_text(input: &str, vars: &Variables) -> Result<String, SubstituteError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let position = input.len() - after.len();
        if let Some(escaped) = after.strip_prefix("$$")
            && escaped.starts_with('{')
        {
            // `$${var}` is the escape for a literal `${var}`.
            let close = matching_brace(&escaped[1..]).ok_or(SubstituteError::Unclosed(position))?;
            out.push('$');
            out.push_str(&escaped[..close + 2]);
            rest = &escaped[close + 2..];
        } else if let Some(body) = after.strip_prefix("${") {
            let close = matching_brace(body).ok_or(SubstituteError::Unclosed(position))?;
            out.push_str(&expand(&body[..close], vars)?);
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` closing a reference body, counting nested `${`.
fn matching_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            b'\n' => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// One reference body (what is between `${` and `}`).
fn expand(body: &str, vars: &Variables) -> Result<String, SubstituteError> {
    let bad = || SubstituteError::BadSubstitution(body.to_string());
    let name_len = body
        .char_indices()
        .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(body.len(), |(i, _)| i);
    let (name, op) = body.split_at(name_len);
    if name.is_empty() {
        return Err(bad());
    }
    let value = vars.get(name);
    if op.is_empty() {
        return Ok(value.to_string());
    }
    for default_op in [":=", ":-", "=", "-"] {
        if let Some(default) = op.strip_prefix(default_op) {
            return if value.is_empty() {
                substitute_text(default, vars)
            } else {
                Ok(value.to_string())
            };
        }
    }
    if let Some(range) = op.strip_prefix(':') {
        return substring(value, range).ok_or_else(bad);
    }
    if let Some(all) = op.strip_prefix("//") {
        let (from, to) = all.split_once('/').unwrap_or((all, ""));
        return Ok(if from.is_empty() {
            value.to_string()
        } else {
            value.replace(from, to)
        });
    }
    if let Some(once) = op.strip_prefix('/') {
        let (from, to) = once.split_once('/').unwrap_or((once, ""));
        return Ok(if from.is_empty() {
            value.to_string()
        } else {
            value.replacen(from, to, 1)
        });
    }
    Err(bad())
}

/// `${var:offset}` and `${var:offset:length}`, counted in characters.
fn substring(value: &str, range: &str) -> Option<String> {
    let (start, length) = match range.split_once(':') {
        Some((start, length)) => (start, Some(length)),
        None => (range, None),
    };
    let chars: Vec<char> = value.chars().collect();
    let start: usize = start.trim().parse().ok()?;
    let start = start.min(chars.len());
    let end = match length {
        Some(length) => {
            let length: usize = length.trim().parse().ok()?;
            (start + length).min(chars.len())
        }
        None => chars.len(),
    };
    Some(chars[start..end].iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The object after substitution (itself when nothing applied or changed).
    fn substituted(object: &Value, vars: &Variables) -> Value {
        substitute_object(object, vars)
            .expect("substitutes")
            .unwrap_or_else(|| object.clone())
    }

    fn vars(pairs: &[(&str, &str)]) -> Variables {
        let mut vars = Variables::default();
        vars.extend(pairs.iter().copied()).expect("valid names");
        vars
    }

    #[test]
    fn braced_references_defaults_and_escapes() {
        let v = vars(&[
            ("cluster_env", "prod"),
            ("region", "eu-central-1"),
            ("empty", ""),
        ]);
        let cases = [
            ("env: ${cluster_env}", "env: prod"),
            ("env: $cluster_env", "env: $cluster_env"),
            ("env: $${cluster_env}", "env: ${cluster_env}"),
            ("size: ${cluster_size:=small}", "size: small"),
            ("size: ${cluster_env:=small}", "size: prod"),
            ("size: ${empty:=small}", "size: small"),
            ("size: ${empty:-small}", "size: small"),
            ("size: ${unset=small}", "size: small"),
            ("size: ${unset-small}", "size: small"),
            ("gone: ${unset}", "gone: "),
            ("cut: ${region:0:2}", "cut: eu"),
            ("tail: ${region:3}", "tail: central-1"),
            ("one: ${region/-/_}", "one: eu_central-1"),
            ("all: ${region//-/_}", "all: eu_central_1"),
            ("nested: ${unset:=${region}}", "nested: eu-central-1"),
            ("price: $5 and ${cluster_env}", "price: $5 and prod"),
            ("two: ${cluster_env}-${region}", "two: prod-eu-central-1"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                substitute_text(input, &v).as_deref(),
                Ok(expected),
                "{input}"
            );
        }
    }

    #[test]
    fn malformed_references_and_names_are_errors() {
        let v = vars(&[("a", "1")]);
        assert_eq!(
            substitute_text("x: ${a", &v),
            Err(SubstituteError::Unclosed(3))
        );
        assert!(matches!(
            substitute_text("x: ${a.b}", &v),
            Err(SubstituteError::BadSubstitution(_))
        ));
        assert!(matches!(
            substitute_text("x: ${}", &v),
            Err(SubstituteError::BadSubstitution(_))
        ));
        let mut bad = Variables::default();
        assert_eq!(
            bad.extend([("cluster-env", "x")]),
            Err(SubstituteError::InvalidName("cluster-env".into()))
        );
        assert!(bad.extend([("1abc", "x")]).is_err());
        assert!(bad.extend([("_ok9", "x")]).is_ok());
    }

    #[test]
    fn later_sources_override_and_newlines_are_removed() {
        let mut v = Variables::default();
        v.extend([("a", "from-configmap"), ("b", "line1\nline2\n")])
            .expect("names");
        v.extend([("a", "inline")]).expect("names");
        assert_eq!(
            substitute_text("${a} ${b}", &v).as_deref(),
            Ok("inline line1line2")
        );
    }

    #[test]
    fn objects_are_substituted_through_yaml_so_numbers_stay_numbers() {
        let v = vars(&[("replicas", "3"), ("app", "web")]);
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "${app}", "labels": {"tier": "${tier:=frontend}"}},
            "spec": {"replicas": "${replicas}"}});
        let result = substituted(&object, &v);
        assert_eq!(
            result,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"tier": "frontend"}},
                "spec": {"replicas": 3}})
        );
    }

    #[test]
    fn no_variables_means_no_substitution() {
        let object = json!({"kind": "ConfigMap", "data": {"x": "${unset}"}});
        assert_eq!(substitute_object(&object, &Variables::default()), Ok(None));
    }

    #[test]
    fn opted_out_objects_are_left_alone() {
        let v = vars(&[("a", "1")]);
        for key in [FLUX_SUBSTITUTE_KEY, SUBSTITUTE_KEY] {
            for field in ["labels", "annotations"] {
                let object = json!({"kind": "ConfigMap",
                    "metadata": {"name": "script", field: {key: "disabled"}},
                    "data": {"run.sh": "echo ${a}"}});
                assert_eq!(substitute_object(&object, &v), Ok(None));
            }
        }
    }

    #[test]
    fn ciphertext_is_never_substituted() {
        let v = vars(&[("ns", "prod"), ("x", "SUBSTITUTED")]);
        let sops = json!({"kind": "Secret", "metadata": {"name": "db"},
            "data": {"password": "ENC[AES256_GCM,data:${x},type:str]"},
            "sops": {"mac": "ENC[...]", "age": []}});
        assert_eq!(substitute_object(&sops, &v), Ok(None));
        let armored =
            "-----BEGIN AGE ENCRYPTED FILE-----\n${x}\n-----END AGE ENCRYPTED FILE-----\n";
        // Sealed to its namespace and name: substituting either would only break it.
        for api_version in ["sigil.dev/v1alpha1", "bitnami.com/v1alpha1"] {
            let sealed = json!({"apiVersion": api_version, "kind": "SealedSecret",
                "metadata": {"name": "db", "namespace": "${ns}"},
                "spec": {"encryptedData": {"password": armored}}});
            assert_eq!(substitute_object(&sealed, &v), Ok(None));
        }
    }

    #[test]
    fn values_that_break_the_yaml_are_reported() {
        let v = vars(&[("bad", "[unclosed")]);
        let object = json!({"kind": "ConfigMap", "data": {"x": "${bad}"}});
        assert!(matches!(
            substitute_object(&object, &v),
            Err(SubstituteError::Yaml)
        ));
    }
}
