//! The template language of `spec.target.template.data`: a small, safe subset
//! of Go templates (what External Secrets Operator users write most), with no
//! loops, conditions, variables or calls out.
//!
//! * `{{ .name }}` — the fetched value `name` (names of letters, digits, `_`);
//!   `{{ index . "db-password" }}` for any other name.
//! * `{{ "text" }}` — a string literal.
//! * Pipes through functions: `{{ .password | b64enc }}`, or the call form
//!   `{{ upper .user }}`. Functions: `b64enc`, `b64dec`, `upper`, `lower`,
//!   `trim`, `quote`, `toString` (the value unchanged).
//! * `{{-` and `-}}` trim the whitespace before or after the action.
//!
//! Referring to a value that was not fetched is an error, as is anything else
//! outside this subset; errors quote the template (which is in the spec, not
//! secret), never a value.

use std::collections::BTreeMap;

use base64::Engine;
use zeroize::Zeroizing;

/// Why a template could not be parsed or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(String);

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Value(String),
    Literal(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    B64Enc,
    B64Dec,
    Upper,
    Lower,
    Trim,
    Quote,
    ToString,
}

impl Func {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "b64enc" => Self::B64Enc,
            "b64dec" => Self::B64Dec,
            "upper" => Self::Upper,
            "lower" => Self::Lower,
            "trim" => Self::Trim,
            "quote" => Self::Quote,
            "toString" => Self::ToString,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action { operand: Operand, funcs: Vec<Func> },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Splits on `sep` outside double-quoted strings.
fn split_outside_quotes(text: &str, sep: char) -> Vec<String> {
    let mut pieces = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        if quoted {
            escaped = !escaped && c == '\\';
            if c == '"' && !escaped {
                quoted = false;
            }
        } else if c == '"' {
            quoted = true;
        } else if c == sep || (sep == ' ' && c.is_whitespace()) {
            pieces.push(String::new());
            continue;
        }
        if let Some(last) = pieces.last_mut() {
            last.push(c);
        }
    }
    pieces
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty() || sep != ' ')
        .collect()
}

fn literal(token: &str) -> Option<String> {
    if token.len() >= 2 && token.starts_with('"') && token.ends_with('"') {
        serde_json::from_str::<String>(token).ok()
    } else {
        None
    }
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn operand(tokens: &[String], action: &str) -> Result<Operand, TemplateError> {
    let unsupported = || {
        TemplateError(format!(
            "{{{{{action}}}}}: unsupported; use .name, index . \"name\", a \"literal\" and the functions b64enc, b64dec, upper, lower, trim, quote, toString"
        ))
    };
    match tokens {
        [single] => {
            if let Some(name) = single.strip_prefix('.')
                && is_name(name)
            {
                return Ok(Operand::Value(name.to_string()));
            }
            literal(single)
                .map(Operand::Literal)
                .ok_or_else(unsupported)
        }
        [index, dot, key] if index == "index" && dot == "." => {
            literal(key).map(Operand::Value).ok_or_else(unsupported)
        }
        _ => Err(unsupported()),
    }
}

fn parse_action(action: &str) -> Result<Part, TemplateError> {
    let stages = split_outside_quotes(action, '|');
    let mut funcs = Vec::new();
    let mut operand_found = None;
    for (i, stage) in stages.iter().enumerate() {
        let tokens = split_outside_quotes(stage, ' ');
        if tokens.is_empty() {
            return Err(TemplateError(format!(
                "{{{{{action}}}}}: empty pipeline stage"
            )));
        }
        if i == 0 {
            // The call form: `upper .user`, `b64enc (index . "x")` is not supported.
            match Func::named(&tokens[0]) {
                Some(func) if tokens.len() > 1 => {
                    operand_found = Some(operand(&tokens[1..], action)?);
                    funcs.push(func);
                }
                _ => operand_found = Some(operand(&tokens, action)?),
            }
        } else {
            match (tokens.as_slice(), Func::named(&tokens[0])) {
                ([_], Some(func)) => funcs.push(func),
                _ => {
                    return Err(TemplateError(format!(
                        "{{{{{action}}}}}: unknown function {:?}",
                        tokens.join(" ")
                    )));
                }
            }
        }
    }
    let operand = operand_found.ok_or_else(|| TemplateError(format!("{{{{{action}}}}}: empty")))?;
    Ok(Part::Action { operand, funcs })
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut trim_next = false;
        while let Some(start) = rest.find("{{") {
            let mut before = &rest[..start];
            if trim_next {
                before = before.trim_start();
            }
            let after_open = &rest[start + 2..];
            let trim_before = after_open.starts_with("- ") || after_open.starts_with("-\t");
            if trim_before {
                before = before.trim_end();
            }
            if !before.is_empty() {
                parts.push(Part::Text(before.to_string()));
            }
            let end = after_open
                .find("}}")
                .ok_or_else(|| TemplateError("unclosed {{ in template".into()))?;
            let mut inner = &after_open[..end];
            if trim_before {
                inner = &inner[1..];
            }
            trim_next = inner.ends_with(" -") || inner.ends_with("\t-");
            if trim_next {
                inner = &inner[..inner.len() - 1];
            }
            parts.push(parse_action(inner.trim())?);
            rest = &after_open[end + 2..];
        }
        let tail = if trim_next { rest.trim_start() } else { rest };
        if tail.contains("}}") {
            return Err(TemplateError("}} without {{ in template".into()));
        }
        if !tail.is_empty() {
            parts.push(Part::Text(tail.to_string()));
        }
        Ok(Self { parts })
    }

    /// Whether the template is plain text (no actions).
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// Renders with the fetched values.
    pub fn render(
        &self,
        values: &BTreeMap<String, Zeroizing<Vec<u8>>>,
    ) -> Result<Zeroizing<Vec<u8>>, TemplateError> {
        let mut out = Zeroizing::new(Vec::new());
        for part in &self.parts {
            match part {
                Part::Text(text) => out.extend_from_slice(text.as_bytes()),
                Part::Action { operand, funcs } => {
                    let mut value = match operand {
                        Operand::Literal(text) => Zeroizing::new(text.as_bytes().to_vec()),
                        Operand::Value(name) => {
                            let found = values.get(name).ok_or_else(|| {
                                TemplateError(format!(
                                    "no fetched value named {name:?} (have: {})",
                                    values.keys().cloned().collect::<Vec<_>>().join(", ")
                                ))
                            })?;
                            Zeroizing::new(found.to_vec())
                        }
                    };
                    for func in funcs {
                        value = apply(*func, value, operand)?;
                    }
                    out.extend_from_slice(&value);
                }
            }
        }
        Ok(out)
    }
}

fn apply(
    func: Func,
    value: Zeroizing<Vec<u8>>,
    operand: &Operand,
) -> Result<Zeroizing<Vec<u8>>, TemplateError> {
    let name = match operand {
        Operand::Value(name) => name.as_str(),
        Operand::Literal(_) => "literal",
    };
    let text = |value: &[u8]| {
        std::str::from_utf8(value)
            .map(str::to_string)
            .map(Zeroizing::new)
            .map_err(|_| TemplateError(format!("value {name:?} is not UTF-8 text")))
    };
    Ok(match func {
        Func::ToString => value,
        Func::B64Enc => Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .encode(&*value)
                .into_bytes(),
        ),
        Func::B64Dec => Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(value.trim_ascii())
                .map_err(|_| TemplateError(format!("b64dec: value {name:?} is not base64")))?,
        ),
        Func::Upper => Zeroizing::new(text(&value)?.to_uppercase().into_bytes()),
        Func::Lower => Zeroizing::new(text(&value)?.to_lowercase().into_bytes()),
        Func::Trim => Zeroizing::new(text(&value)?.trim().as_bytes().to_vec()),
        Func::Quote => Zeroizing::new(
            serde_json::to_string(&*text(&value)?)
                .unwrap_or_default()
                .into_bytes(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<String, Zeroizing<Vec<u8>>> {
        [
            ("user", "app"),
            ("password", "p@ss word"),
            ("db-host", "db.internal"),
            ("encoded", "aGVsbG8="),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Zeroizing::new(v.as_bytes().to_vec())))
        .collect()
    }

    fn render(text: &str) -> Result<String, TemplateError> {
        let rendered = Template::parse(text)?.render(&values())?;
        Ok(String::from_utf8(rendered.to_vec()).expect("utf-8"))
    }

    #[test]
    fn substitutes_values_and_literals() {
        assert_eq!(
            render("postgres://{{ .user }}:{{.password}}@{{ index . \"db-host\" }}/app")
                .expect("renders"),
            "postgres://app:p@ss word@db.internal/app"
        );
        assert_eq!(render(r#"{{ "lit|eral" }}"#).expect("literal"), "lit|eral");
        assert_eq!(render("no actions").expect("static"), "no actions");
        assert!(Template::parse("plain").expect("parses").is_static());
    }

    #[test]
    fn applies_functions_in_pipes_and_call_form() {
        assert_eq!(render("{{ .user | upper }}").expect("upper"), "APP");
        assert_eq!(render("{{ upper .user }}").expect("call form"), "APP");
        assert_eq!(render("{{ .user | b64enc }}").expect("b64enc"), "YXBw");
        assert_eq!(
            render("{{ .encoded | b64dec | upper }}").expect("chain"),
            "HELLO"
        );
        assert_eq!(
            render("{{ .password | quote }}").expect("quote"),
            "\"p@ss word\""
        );
        assert_eq!(render("{{ .user | toString }}").expect("toString"), "app");
    }

    #[test]
    fn trim_markers_remove_surrounding_whitespace() {
        assert_eq!(render("a  {{- .user -}}  b").expect("trimmed"), "aappb");
        assert_eq!(render("a {{ .user }} b").expect("kept"), "a app b");
    }

    #[test]
    fn errors_name_the_problem_but_never_a_value() {
        let missing = render("{{ .nope }}").expect_err("missing");
        assert!(missing.to_string().contains("nope"), "{missing}");
        assert!(!missing.to_string().contains("p@ss"), "{missing}");
        for bad in [
            "{{ .user ",
            "{{ .user | exec }}",
            "{{ range .x }}",
            "{{ .a.b }}",
            "x }}",
            "{{ }}",
            "{{ printf \"%s\" .user }}",
        ] {
            assert!(render(bad).is_err(), "{bad} should fail");
        }
        let not_b64 = render("{{ .user | b64dec }}").expect_err("not base64");
        assert!(!not_b64.to_string().contains("app\""), "{not_b64}");
    }
}
