//! Name, label and annotation syntax, with apimachinery's messages.

use std::sync::LazyLock;

use regex::Regex;

use super::status::FieldError;

const DNS1123_LABEL: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

fn anchored(re: &str) -> Regex {
    Regex::new(&format!("^(?:{re})$")).expect("static regex compiles")
}

static LABEL_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_LABEL));
static SUBDOMAIN_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_SUBDOMAIN));
static DNS1035_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1035_LABEL));
static QUALIFIED_RE: LazyLock<Regex> = LazyLock::new(|| anchored(QUALIFIED_NAME));
static LABEL_VALUE_RE: LazyLock<Regex> = LazyLock::new(|| anchored(LABEL_VALUE));

/// How a kind's names are validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds).
    Subdomain,
    /// RFC 1123 label (namespaces).
    Label,
    /// RFC 1035 label (services).
    Dns1035,
    /// Any path segment (RBAC kinds allow `system:foo`).
    PathSegment,
}

/// Problems with a name, as detail strings (empty when valid).
pub fn name_problems(rule: NameRule, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    match rule {
        NameRule::Subdomain => {
            if name.len() > 253 {
                out.push("must be no more than 253 characters".into());
            }
            if !SUBDOMAIN_RE.is_match(name) {
                out.push(format!("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{DNS1123_SUBDOMAIN}')"));
            }
        }
        NameRule::Label => {
            if name.len() > 63 {
                out.push("must be no more than 63 characters".into());
            }
            if !LABEL_RE.is_match(name) {
                out.push(format!("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{DNS1123_LABEL}')"));
            }
        }
        NameRule::Dns1035 => {
            if name.len() > 63 {
                out.push("must be no more than 63 characters".into());
            }
            if !DNS1035_RE.is_match(name) {
                out.push(format!("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '{DNS1035_LABEL}')"));
            }
        }
        NameRule::PathSegment => {
            if name == "." || name == ".." {
                out.push(format!("may not be '{name}'"));
            }
            for bad in ["/", "%"] {
                if name.contains(bad) {
                    out.push(format!("may not contain '{bad}'"));
                }
            }
        }
    }
    out
}

/// Field errors for a name at `field` (for example `metadata.name`).
pub fn validate_name(rule: NameRule, name: &str, field: &str) -> Vec<FieldError> {
    name_problems(rule, name)
        .into_iter()
        .map(|p| FieldError::invalid(field, name, p))
        .collect()
}

/// Problems with a qualified key (`prefix/name`) as labels and annotations use.
fn qualified_name_problems(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            out.push("prefix part must be non-empty".into());
        } else {
            for p in name_problems(NameRule::Subdomain, prefix) {
                out.push(format!("prefix part {p}"));
            }
        }
    }
    if name.is_empty() {
        out.push("name part must be non-empty".into());
    } else {
        if name.len() > 63 {
            out.push("name part must be no more than 63 characters".into());
        }
        if !QUALIFIED_RE.is_match(name) {
            out.push(format!("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED_NAME}')"));
        }
    }
    if key.matches('/').count() > 1 {
        out.push("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into());
    }
    out
}

/// Validates `metadata.labels`.
pub fn validate_labels(labels: &serde_json::Map<String, serde_json::Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (key, value) in labels {
        for p in qualified_name_problems(key) {
            errs.push(FieldError::invalid("metadata.labels", key.as_str(), p));
        }
        let Some(value) = value.as_str() else {
            errs.push(FieldError::invalid(
                "metadata.labels",
                value.clone(),
                "label values must be strings",
            ));
            continue;
        };
        if value.len() > 63 {
            errs.push(FieldError::invalid(
                "metadata.labels",
                value,
                "must be no more than 63 characters",
            ));
        }
        if !LABEL_VALUE_RE.is_match(value) {
            errs.push(FieldError::invalid("metadata.labels", value, format!("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '{LABEL_VALUE}')")));
        }
    }
    errs
}

/// Validates `metadata.annotations` keys and the 256 KiB total.
pub fn validate_annotations(
    annotations: &serde_json::Map<String, serde_json::Value>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (key, value) in annotations {
        for p in qualified_name_problems(&key.to_lowercase()) {
            errs.push(FieldError::invalid("metadata.annotations", key.as_str(), p));
        }
        match value.as_str() {
            Some(v) => total += key.len() + v.len(),
            None => errs.push(FieldError::invalid(
                "metadata.annotations",
                value.clone(),
                "annotation values must be strings",
            )),
        }
    }
    if total > 256 * 1024 {
        errs.push(FieldError {
            kind: super::status::FieldErrorType::TooLong,
            field: "metadata.annotations".into(),
            value: None,
            detail: "may not be more than 262144 bytes".into(),
        });
    }
    errs
}

/// A key of ConfigMap/Secret data: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.`/`..`.
pub fn config_key_problems(key: &str) -> Vec<String> {
    static KEY_RE: LazyLock<Regex> = LazyLock::new(|| anchored("[-._a-zA-Z0-9]+"));
    let mut out = Vec::new();
    if key.len() > 253 {
        out.push("must be no more than 253 characters".into());
    }
    if !KEY_RE.is_match(key) {
        out.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".into());
    }
    if key == "." || key == ".." {
        out.push(format!("must not be '{key}'"));
    } else if key.starts_with("..") {
        out.push("must not start with '..'".into());
    }
    out
}

/// `metadata.generateName` + 5 random characters, as `names.SimpleNameGenerator` does.
pub fn generate_name(base: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut base = base.to_string();
    if base.len() > 58 {
        let mut cut = 58;
        while !base.is_char_boundary(cut) {
            cut -= 1;
        }
        base.truncate(cut);
    }
    let mut rng = rand::thread_rng();
    for _ in 0..5 {
        base.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_and_labels() {
        assert!(name_problems(NameRule::Subdomain, "a.b-c").is_empty());
        assert!(!name_problems(NameRule::Subdomain, "Bad_Name").is_empty());
        assert!(!name_problems(NameRule::Label, "a.b").is_empty());
        assert!(!name_problems(NameRule::Dns1035, "1abc").is_empty());
        assert!(name_problems(NameRule::PathSegment, "system:admin").is_empty());
        assert!(!name_problems(NameRule::PathSegment, "a/b").is_empty());
    }

    #[test]
    fn label_keys_and_values() {
        let ok = serde_json::json!({"app.kubernetes.io/name": "web", "x": ""});
        assert!(validate_labels(ok.as_object().expect("object")).is_empty());
        let bad = serde_json::json!({"-x": "v", "y": "white space"});
        assert_eq!(validate_labels(bad.as_object().expect("object")).len(), 2);
    }

    #[test]
    fn generated_names_keep_the_prefix() {
        let n = generate_name("web-");
        assert!(n.starts_with("web-") && n.len() == 9, "{n}");
        assert!(name_problems(NameRule::Subdomain, &n).is_empty());
    }
}
