//! Public age recipients (`age1…`): parsing, recipients files, fingerprints.

use age::x25519::Recipient;
use sha2::{Digest, Sha256};

/// A recipient string that is not an X25519 age recipient.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecipientError {
    #[error("invalid age recipient {0:?}: expected an X25519 recipient `age1…`")]
    Invalid(String),
    #[error("line {line}: invalid age recipient {text:?}: expected an X25519 recipient `age1…`")]
    InvalidLine { line: usize, text: String },
    #[error("no recipients given")]
    Empty,
}

/// Parses one `age1…` recipient.
pub fn parse(text: &str) -> Result<Recipient, RecipientError> {
    let text = text.trim();
    text.parse::<Recipient>()
        .map_err(|_| RecipientError::Invalid(shorten(text)))
}

/// Parses a recipients file: one `age1…` per line; blank lines and `#` comments are skipped.
pub fn parse_list(text: &str) -> Result<Vec<Recipient>, RecipientError> {
    let mut recipients = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let recipient = line
            .parse::<Recipient>()
            .map_err(|_| RecipientError::InvalidLine {
                line: index + 1,
                text: shorten(line),
            })?;
        recipients.push(recipient);
    }
    Ok(dedup(recipients))
}

/// Drops repeated recipients, keeping the first occurrence's position.
pub fn dedup(recipients: Vec<Recipient>) -> Vec<Recipient> {
    let mut seen = std::collections::HashSet::new();
    recipients
        .into_iter()
        .filter(|r| seen.insert(r.to_string()))
        .collect()
}

/// Short fingerprint of a recipient: the first 8 bytes of SHA-256 of its `age1…`
/// string, in hex. It is what `status.keyFingerprint` and metrics show.
pub fn fingerprint(recipient: &Recipient) -> String {
    let digest = Sha256::digest(recipient.to_string().as_bytes());
    hex::encode(&digest[..8])
}

/// Recipients in the text form published in the ConfigMap and on `/v1/recipients`.
pub fn to_text(recipients: &[Recipient]) -> String {
    recipients.iter().map(|r| format!("{r}\n")).collect()
}

// A mistyped line could be an identity pasted by mistake; never echo more than a prefix.
fn shorten(text: &str) -> String {
    if text.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
        return "AGE-SECRET-KEY-… (an identity, not a recipient)".to_string();
    }
    let mut out: String = text.chars().take(16).collect();
    if text.chars().count() > 16 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const R1: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    #[test]
    fn parses_files_with_comments_and_duplicates() {
        let text = format!("# cluster\n{R1}\n\n  {R1}  \n");
        let list = parse_list(&text).expect("parses");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].to_string(), R1);
        assert_eq!(to_text(&list), format!("{R1}\n"));
    }

    #[test]
    fn refuses_bad_lines_naming_the_line() {
        let err = parse_list(&format!("{R1}\nnot-a-key\n")).expect_err("refused");
        assert!(err.to_string().starts_with("line 2:"), "{err}");
        let err = parse("AGE-SECRET-KEY-1QQQQ").expect_err("refused");
        assert!(!err.to_string().contains("1QQQQ"), "{err}");
    }

    #[test]
    fn fingerprint_is_16_hex_of_sha256() {
        let recipient = parse(R1).expect("valid");
        let fp = fingerprint(&recipient);
        assert_eq!(fp.len(), 16);
        let full = hex::encode(Sha256::digest(R1.as_bytes()));
        assert_eq!(fp, full[..16]);
    }
}
