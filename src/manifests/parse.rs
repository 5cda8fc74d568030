//! Manifest files → documents, each with the file and line it starts at.
//!
//! YAML streams are split at their `---` markers so every document knows its line, then each
//! part is parsed with [`crate::yaml::documents`] (bounded aliases and nesting). A document
//! marker cannot occur inside a YAML scalar, so the split is exact. JSON files are one document.
//! `kind: List` (and `*List`) documents are flattened into their items.

use serde_json::Value;

use super::source::SourceFile;

/// One document of a manifest file.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub file: String,
    /// 1-based line of the document's first content line.
    pub line: usize,
    pub object: Value,
}

impl Manifest {
    /// `file:line`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    pub fn kind(&self) -> &str {
        self.object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn api_version(&self) -> &str {
        self.object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
    }
}

/// A file that is not valid YAML or JSON.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Parses every file; returns the documents of the good files and an error per bad file.
pub fn parse_files(files: &[SourceFile]) -> (Vec<Manifest>, Vec<ParseError>) {
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match parse_file(file) {
            Ok(docs) => manifests.extend(docs),
            Err(err) => errors.push(err),
        }
    }
    (manifests, errors)
}

/// The documents of one file.
pub fn parse_file(file: &SourceFile) -> Result<Vec<Manifest>, ParseError> {
    let error = |line: usize, message: String| ParseError {
        file: file.path.clone(),
        line,
        message,
    };
    let text =
        std::str::from_utf8(&file.content).map_err(|e| error(1, format!("not UTF-8: {e}")))?;
    let mut out = Vec::new();
    if file.path.to_ascii_lowercase().ends_with(".json") {
        let object: Value = serde_json::from_str(text)
            .map_err(|e| error(e.line().max(1), format!("invalid JSON: {e}")))?;
        push_flattened(&mut out, &file.path, 1, object);
        return Ok(out);
    }
    for part in split_documents(text) {
        let docs =
            crate::yaml::documents(part.text).map_err(|e| error(part.line, e.to_string()))?;
        for doc in docs {
            push_flattened(&mut out, &file.path, part.line, doc);
        }
    }
    Ok(out)
}

fn push_flattened(out: &mut Vec<Manifest>, file: &str, line: usize, object: Value) {
    let is_list = object
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && object.get("items").is_some_and(Value::is_array);
    if is_list {
        if let Some(Value::Array(items)) = object.get("items") {
            for item in items {
                out.push(Manifest {
                    file: file.to_string(),
                    line,
                    object: item.clone(),
                });
            }
        }
        return;
    }
    out.push(Manifest {
        file: file.to_string(),
        line,
        object,
    });
}

struct Part<'a> {
    text: &'a str,
    /// Line of the first content line (or of the part's start when it has none).
    line: usize,
}

fn is_marker(line: &str) -> bool {
    let line = line.trim_end_matches(['\n', '\r']);
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

fn is_content(line: &str) -> bool {
    let trimmed = line.trim();
    if is_marker(line) {
        let rest = trimmed[3..].trim_start();
        return !(rest.is_empty() || rest.starts_with('#'));
    }
    !(trimmed.is_empty()
        || trimmed.starts_with('#')
        || trimmed.starts_with('%')
        || trimmed == "...")
}

/// Splits a YAML stream before each `---` line. Parts holding only directives or comments are
/// merged into the next part, so `%YAML 1.2` stays with its document.
fn split_documents(text: &str) -> Vec<Part<'_>> {
    let mut starts = vec![0usize];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset > 0 && is_marker(line) {
            starts.push(offset);
        }
        offset += line.len();
    }
    starts.push(text.len());
    let mut parts = Vec::new();
    let mut pending_start: Option<usize> = None;
    for window in starts.windows(2) {
        let (start, end) = (pending_start.unwrap_or(window[0]), window[1]);
        let chunk = &text[window[0]..end];
        let first_content = chunk.split_inclusive('\n').position(is_content);
        let directives_only =
            first_content.is_none() && chunk.lines().any(|l| l.trim_start().starts_with('%'));
        if directives_only {
            pending_start.get_or_insert(start);
            continue;
        }
        pending_start = None;
        let line_before = text[..window[0]].matches('\n').count();
        parts.push(Part {
            text: &text[start..end],
            line: line_before + 1 + first_content.unwrap_or(0),
        });
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str) -> SourceFile {
        SourceFile::new(path, content)
    }

    #[test]
    fn documents_know_their_lines() {
        let text = "# leading comment\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\n# c\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n---\n---\nkind: X\n";
        let docs = parse_file(&file("m.yaml", text)).expect("parses");
        let found: Vec<(usize, &str)> = docs.iter().map(|d| (d.line, d.kind())).collect();
        assert_eq!(found, [(2, "Namespace"), (8, "ConfigMap"), (13, "X")]);
        assert_eq!(docs[1].location(), "m.yaml:8");
    }

    #[test]
    fn markers_with_content_and_directives() {
        let text = "%YAML 1.2\n--- {kind: A}\n--- # comment\nkind: B\n";
        let docs = parse_file(&file("m.yaml", text)).expect("parses");
        let found: Vec<(usize, &str)> = docs.iter().map(|d| (d.line, d.kind())).collect();
        assert_eq!(found, [(2, "A"), (4, "B")]);
    }

    #[test]
    fn block_scalars_keep_dashes() {
        let text = "kind: ConfigMap\ndata:\n  script: |\n    ---\n    echo hi\n";
        let docs = parse_file(&file("m.yaml", text)).expect("parses");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].object["data"]["script"], "---\necho hi\n");
    }

    #[test]
    fn lists_are_flattened_and_json_is_read() {
        let json = r#"{"apiVersion":"v1","kind":"List","items":[{"kind":"A"},{"kind":"B"}]}"#;
        let docs = parse_file(&file("l.json", json)).expect("parses");
        let kinds: Vec<&str> = docs.iter().map(Manifest::kind).collect();
        assert_eq!(kinds, ["A", "B"]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let text = "kind: A\n---\nkind: [unclosed\n";
        let err = parse_file(&file("bad.yaml", text)).expect_err("invalid");
        assert_eq!(err.file, "bad.yaml");
        assert_eq!(err.line, 3);
        let (docs, errors) = parse_files(&[file("bad.yaml", text), file("ok.yaml", "kind: B\n")]);
        assert_eq!(docs.len(), 1);
        assert_eq!(errors.len(), 1);
    }
}
