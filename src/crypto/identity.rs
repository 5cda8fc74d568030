//! age identities (`AGE-SECRET-KEY-1…`) in the standard identity-file format.

use age::secrecy::ExposeSecret;
use age::x25519::Identity;
use zeroize::Zeroizing;

/// An identity file that cannot be used. Never carries key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("line {0}: not an X25519 age identity (`AGE-SECRET-KEY-1…`)")]
    InvalidLine(usize),
    #[error("no age identity found")]
    Empty,
}

/// Reads every identity of an identity file; blank lines and `#` comments are skipped.
pub fn parse_file(text: &str) -> Result<Vec<Identity>, IdentityError> {
    let mut identities = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let identity = line
            .parse::<Identity>()
            .map_err(|_| IdentityError::InvalidLine(index + 1))?;
        identities.push(identity);
    }
    if identities.is_empty() {
        return Err(IdentityError::Empty);
    }
    Ok(identities)
}

/// The time in the `# created: …` comment that `age-keygen` (and `sigil keygen`) write.
pub fn created_comment(text: &str) -> Option<jiff::Timestamp> {
    text.lines()
        .find_map(|line| line.trim().strip_prefix("# created:"))
        .and_then(|time| time.trim().parse().ok())
}

/// A new identity as the text `age-keygen` writes: creation time and public key
/// as comments, then the secret key. The text is wiped when dropped.
pub fn generate_file(created: jiff::Timestamp) -> (Identity, Zeroizing<String>) {
    let identity = Identity::generate();
    let text = to_file(&identity, created);
    (identity, text)
}

/// The identity-file text for one identity.
pub fn to_file(identity: &Identity, created: jiff::Timestamp) -> Zeroizing<String> {
    let secret = identity.to_string();
    let created = created.strftime("%Y-%m-%dT%H:%M:%SZ");
    Zeroizing::new(format!(
        "# created: {created}\n# public key: {}\n{}\n",
        identity.to_public(),
        secret.expose_secret()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_read_back() {
        let (identity, text) = generate_file(jiff::Timestamp::UNIX_EPOCH);
        assert!(text.starts_with("# created: 1970-01-01T00:00:00Z\n# public key: age1"));
        let read = parse_file(&text).expect("parses");
        assert_eq!(created_comment(&text), Some(jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(
            created_comment("# created: 2024-05-01T10:00:00+02:00\nAGE-SECRET-KEY-1X"),
            "2024-05-01T08:00:00Z".parse().ok()
        );
        assert_eq!(read.len(), 1);
        assert_eq!(
            read[0].to_public().to_string(),
            identity.to_public().to_string()
        );
    }

    #[test]
    fn refuses_garbage_without_echoing_it() {
        assert_eq!(
            parse_file("# only a comment\n").err(),
            Some(IdentityError::Empty)
        );
        let err = parse_file("\nAGE-SECRET-KEY-1TYPO\n")
            .err()
            .expect("refused");
        assert_eq!(err, IdentityError::InvalidLine(2));
        assert!(!err.to_string().contains("TYPO"));
    }
}
