//! YAML in and out, with parse budgets.
//!
//! Every manifest sigil reads may be hostile (it comes from Git or a user's
//! pipe), so parsing goes through serde-saphyr's budgets: alias expansion,
//! nesting depth, node and document counts are all capped.

use serde::{Serialize, de::DeserializeOwned};

/// A YAML document could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("invalid YAML: {0}")]
    Parse(String),
    #[error("cannot write YAML: {0}")]
    Write(String),
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_depth = 64;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // An error names the line and column only: a snippet of the input would quote it, and the
    // input may hold secret values (a plaintext Secret manifest, a decrypted SOPS document).
    options.with_snippet = false;
    options
}

/// Parses one YAML (or JSON, a subset of YAML) document.
pub fn from_str<T: DeserializeOwned>(input: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(input, options())
        .map_err(|e| YamlError::Parse(e.to_string()))
}

/// Parses a multi-document YAML stream into JSON values, dropping empty documents.
pub fn documents(input: &str) -> Result<Vec<serde_json::Value>, YamlError> {
    let docs: Vec<serde_json::Value> = documents_as(input)?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Parses every document of a multi-document YAML stream as a `T`.
pub fn documents_as<T: DeserializeOwned>(input: &str) -> Result<Vec<T>, YamlError> {
    serde_saphyr::from_multiple_with_options(input, options())
        .map_err(|e| YamlError::Parse(e.to_string()))
}

/// Writes one value as a YAML document (no leading `---`).
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_saphyr::to_string(value).map_err(|e| YamlError::Write(e.to_string()))
}

/// Writes several values as one multi-document YAML stream.
pub fn to_multi_string<T: Serialize>(values: &[T]) -> Result<String, YamlError> {
    let mut out = String::new();
    for value in values {
        out.push_str("---\n");
        out.push_str(&to_string(value)?);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_multi_document_streams_and_skips_empty_ones() {
        let docs = documents("---\na: 1\n---\n---\nb: [x, z]\n").expect("parses");
        assert_eq!(
            docs,
            vec![
                serde_json::json!({"a": 1}),
                serde_json::json!({"b": ["x", "z"]})
            ]
        );
    }

    #[test]
    fn resolves_scalars_like_kubectl_does() {
        // kubectl's YAML (go-yaml v2) is YAML 1.1: `yes`, `on` and `y` are booleans.
        let doc: serde_json::Value =
            from_str("a: yes\nb: on\nc: \"yes\"\nd: 1.5\n").expect("parses");
        assert_eq!(
            doc,
            serde_json::json!({"a": true, "b": true, "c": "yes", "d": 1.5})
        );
    }

    #[test]
    fn refuses_alias_bombs() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(documents(&bomb).is_err());
    }

    #[test]
    fn errors_name_the_place_but_never_quote_the_input() {
        let secret = "s3cr3t-value-in-the-input";
        for input in [
            format!("a: {secret}\nb: [unclosed\n"),
            format!(
                "a: &x [{secret}, *x, *x]\n{}",
                "b: [*x, *x, *x, *x]\n".repeat(400)
            ),
            format!("key: \"{secret}\n"),
        ] {
            let message = documents(&input).expect_err("invalid").to_string();
            assert!(!message.contains(secret), "{message}");
            assert!(message.contains("line "), "{message}");
        }
    }

    #[test]
    fn round_trips_through_yaml() {
        let value = serde_json::json!({"kind": "Secret", "data": {"k": "dg=="}, "list": [1, 2]});
        let text = to_string(&value).expect("writes");
        assert_eq!(from_str::<serde_json::Value>(&text).expect("reads"), value);
    }
}
