//! The envelope: the plaintext inside every sealed age file.
//!
//! Layout, version 1 (documented in SECURITY.md):
//!
//! ```text
//! sigil.dev/envelope/v1 SP scope [SP namespace [SP name]] LF value...
//! ```
//!
//! One header line of printable ASCII words separated by single spaces and ended
//! by a line feed, then the value's bytes up to the end of the file. `strict`
//! carries namespace and name, `namespace` the namespace, `cluster` nothing.
//! The header never holds secret bytes, so it may appear in errors; the value
//! never does. A version other than `v1` is refused.

use secrecy::SecretSlice;
use zeroize::Zeroizing;

use super::binding::{Binding, InvalidName, parse_scope, scope_name};

/// The first word of every version-1 envelope.
pub const MAGIC_V1: &str = "sigil.dev/envelope/v1";
const MAGIC_PREFIX: &str = "sigil.dev/envelope/";
/// An upper bound on the header line (magic + scope + namespace + name + separators).
const MAX_HEADER_LEN: usize = 512;

/// Why a decrypted file is not a valid envelope. Never carries decrypted bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a sigil envelope (the decrypted file does not start with `{MAGIC_V1}`)")]
    NotEnvelope,
    #[error("unsupported sigil envelope version (this sigil reads `{MAGIC_V1}`)")]
    UnsupportedVersion,
    #[error("malformed sigil envelope header: {0}")]
    Malformed(&'static str),
    #[error("malformed sigil envelope header: {0}")]
    InvalidName(InvalidName),
}

/// The header line (with its line feed) for a binding.
pub fn header(binding: &Binding) -> String {
    let scope = scope_name(binding.scope());
    match binding {
        Binding::Strict { namespace, name } => format!("{MAGIC_V1} {scope} {namespace} {name}\n"),
        Binding::Namespace { namespace } => format!("{MAGIC_V1} {scope} {namespace}\n"),
        Binding::Cluster => format!("{MAGIC_V1} {scope}\n"),
    }
}

/// Builds the envelope plaintext in a buffer that is wiped when dropped.
pub fn encode(binding: &Binding, value: &[u8]) -> Zeroizing<Vec<u8>> {
    let header = header(binding);
    let mut out = Zeroizing::new(Vec::with_capacity(header.len() + value.len()));
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(value);
    out
}

/// Splits an envelope into its binding and value. The value is copied into a
/// zeroizing secret; the caller wipes `plaintext`.
pub fn decode(plaintext: &[u8]) -> Result<(Binding, SecretSlice<u8>), EnvelopeError> {
    if !plaintext.starts_with(MAGIC_PREFIX.as_bytes()) {
        return Err(EnvelopeError::NotEnvelope);
    }
    let window = &plaintext[..plaintext.len().min(MAX_HEADER_LEN + 1)];
    let end = window
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(EnvelopeError::Malformed("no end of header line"))?;
    let line = std::str::from_utf8(&plaintext[..end])
        .ok()
        .filter(|l| l.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .ok_or(EnvelopeError::Malformed("header is not printable ASCII"))?;
    let mut words = line.split(' ');
    if words.next() != Some(MAGIC_V1) {
        return Err(EnvelopeError::UnsupportedVersion);
    }
    let scope = words
        .next()
        .and_then(parse_scope)
        .ok_or(EnvelopeError::Malformed("unknown scope"))?;
    let rest: Vec<&str> = words.collect();
    let expected = match scope {
        crate::api::sealed_secret::Scope::Strict => 2,
        crate::api::sealed_secret::Scope::Namespace => 1,
        crate::api::sealed_secret::Scope::Cluster => 0,
    };
    if rest.len() != expected {
        return Err(EnvelopeError::Malformed(
            "wrong number of fields for the scope",
        ));
    }
    let binding = Binding::new(scope, rest.first().copied(), rest.get(1).copied())
        .map_err(EnvelopeError::InvalidName)?;
    let value = SecretSlice::from(plaintext[end + 1..].to_vec());
    Ok((binding, value))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::api::sealed_secret::Scope;

    fn strict() -> Binding {
        Binding::new(Scope::Strict, Some("prod"), Some("db")).expect("valid")
    }

    #[test]
    fn layout_is_the_documented_one() {
        assert_eq!(
            encode(&strict(), b"s3cret\n").as_slice(),
            b"sigil.dev/envelope/v1 strict prod db\ns3cret\n"
        );
        let namespace = Binding::new(Scope::Namespace, Some("prod"), None).expect("valid");
        assert_eq!(
            encode(&namespace, b"").as_slice(),
            b"sigil.dev/envelope/v1 namespace prod\n"
        );
        assert_eq!(
            encode(&Binding::Cluster, b"x").as_slice(),
            b"sigil.dev/envelope/v1 cluster\nx"
        );
    }

    #[test]
    fn round_trips_binary_values() {
        let value: Vec<u8> = (0..=255u8).chain([b'\n', 0, b'\n']).collect();
        for binding in [
            strict(),
            Binding::Namespace {
                namespace: "prod".into(),
            },
            Binding::Cluster,
        ] {
            let (decoded, opened) = decode(&encode(&binding, &value)).expect("decodes");
            assert_eq!(decoded, binding);
            assert_eq!(opened.expose_secret(), value.as_slice());
        }
    }

    #[test]
    fn refuses_what_is_not_an_envelope() {
        assert_eq!(
            decode(b"hunter2").map(|(b, _)| b),
            Err(EnvelopeError::NotEnvelope)
        );
        assert_eq!(
            decode(b"sigil.dev/envelope/v2 cluster\nx").map(|(b, _)| b),
            Err(EnvelopeError::UnsupportedVersion)
        );
        let bad = [
            &b"sigil.dev/envelope/v1 cluster"[..],
            b"sigil.dev/envelope/v1 galaxy\nx",
            b"sigil.dev/envelope/v1 strict prod\nx",
            b"sigil.dev/envelope/v1 cluster prod\nx",
            b"sigil.dev/envelope/v1 namespace  prod\nx",
            b"sigil.dev/envelope/v1 strict prod db\t\nx",
            b"sigil.dev/envelope/v1 namespace Prod\nx",
        ];
        for input in bad {
            assert!(
                decode(input).is_err(),
                "{:?} should be refused",
                String::from_utf8_lossy(input)
            );
        }
        let mut long = b"sigil.dev/envelope/v1 strict prod ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 600));
        long.push(b'\n');
        assert_eq!(
            decode(&long).map(|(b, _)| b),
            Err(EnvelopeError::Malformed("no end of header line"))
        );
    }

    #[test]
    fn errors_never_echo_decrypted_bytes() {
        let secret = "sigil.dev/envelope/hunter2 cluster\nx";
        let err = decode(secret.as_bytes())
            .map(|(b, _)| b)
            .expect_err("refused");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
