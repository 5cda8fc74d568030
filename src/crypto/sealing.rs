//! Sealing and opening one value: an envelope inside an ASCII-armored age file.

use std::io::{Read, Write};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::x25519::{Identity, Recipient};
use secrecy::SecretSlice;
use zeroize::Zeroizing;

use super::binding::Binding;
use super::envelope::{self, EnvelopeError};

/// The first line of every ASCII-armored age file.
pub const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
/// The last line of every ASCII-armored age file.
pub const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";
/// The largest armored value accepted: a Secret holds at most 1 MiB, and armor
/// adds a third plus the header.
pub const MAX_ARMORED_LEN: usize = 2 * 1024 * 1024;

/// A value could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("no recipients to seal to")]
    NoRecipients,
    #[error("age encryption failed: {0}")]
    Age(Box<age::EncryptError>),
    #[error("age encryption failed: {0}")]
    Io(#[from] std::io::Error),
}

impl From<age::EncryptError> for SealError {
    fn from(error: age::EncryptError) -> Self {
        Self::Age(Box::new(error))
    }
}

/// Why a sealed value was refused. None of these carry decrypted bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not an ASCII-armored age file (expected `{ARMOR_BEGIN}`)")]
    NotArmored,
    #[error("sealed value is larger than {MAX_ARMORED_LEN} bytes")]
    TooLarge,
    #[error("malformed age file: {0}")]
    Malformed(String),
    #[error("the age file is truncated")]
    Truncated,
    #[error("no available key can open it (it was sealed to other recipients)")]
    NoMatchingKey,
    #[error("integrity check failed: the sealed value was modified")]
    Tampered,
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("sealed for {sealed}, but used in {namespace}/{name}")]
    ScopeMismatch {
        sealed: Binding,
        namespace: String,
        name: String,
    },
}

impl OpenError {
    /// The `Ready` condition reason this refusal maps to.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ScopeMismatch { .. } => "ScopeMismatch",
            _ => "DecryptFailed",
        }
    }
}

/// Seals `value` for `binding` to every recipient, as one ASCII-armored age file.
pub fn seal(
    value: &[u8],
    binding: &Binding,
    recipients: &[Recipient],
) -> Result<String, SealError> {
    let plaintext = envelope::encode(binding, value);
    encrypt_armored(&plaintext, recipients)
}

/// Encrypts bytes as they are (no envelope) into an ASCII-armored age file.
pub fn encrypt_armored(plaintext: &[u8], recipients: &[Recipient]) -> Result<String, SealError> {
    if recipients.is_empty() {
        return Err(SealError::NoRecipients);
    }
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))?;
    let mut armored = Vec::with_capacity(plaintext.len() * 4 / 3 + 512);
    let mut writer = encryptor.wrap_output(ArmoredWriter::wrap_output(
        &mut armored,
        Format::AsciiArmor,
    )?)?;
    writer.write_all(plaintext)?;
    writer.finish()?.finish()?;
    // ArmoredWriter writes only ASCII.
    String::from_utf8(armored).map_err(|_| SealError::Io(std::io::ErrorKind::InvalidData.into()))
}

/// A value opened and checked against the object it sits in.
pub struct Opened {
    pub value: SecretSlice<u8>,
    /// The scope recorded inside the value.
    pub binding: Binding,
    /// Index (into the identities given) of the identity that opened it.
    pub identity: usize,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("value", &"[REDACTED]")
            .field("binding", &self.binding)
            .field("identity", &self.identity)
            .finish()
    }
}

/// Opens an armored value with the first identity that can, decodes the
/// envelope, and checks its binding against `namespace`/`name`.
pub fn open(
    armored: &str,
    identities: &[&Identity],
    namespace: &str,
    name: &str,
) -> Result<Opened, OpenError> {
    let (plaintext, identity) = decrypt_armored(armored, identities)?;
    let (binding, value) = envelope::decode(&plaintext)?;
    if !binding.permits(namespace, name) {
        return Err(OpenError::ScopeMismatch {
            sealed: binding,
            namespace: namespace.to_string(),
            name: name.to_string(),
        });
    }
    Ok(Opened {
        value,
        binding,
        identity,
    })
}

/// Decrypts an armored age file with the first identity that matches. Returns
/// the plaintext (wiped on drop) and which identity opened it.
pub fn decrypt_armored(
    armored: &str,
    identities: &[&Identity],
) -> Result<(Zeroizing<Vec<u8>>, usize), OpenError> {
    if armored.len() > MAX_ARMORED_LEN {
        return Err(OpenError::TooLarge);
    }
    // YAML block scalars and editors add whitespace around the armor.
    let armored = armored.trim();
    if !armored.starts_with(ARMOR_BEGIN) {
        return Err(OpenError::NotArmored);
    }
    if !armored.ends_with(ARMOR_END) {
        return Err(OpenError::Truncated);
    }
    // Trying one identity at a time tells which key opened the value; a key that
    // does not match fails at the header, before any payload is read.
    for (index, identity) in identities.iter().enumerate() {
        let decryptor = age::Decryptor::new_buffered(ArmoredReader::new(armored.as_bytes()))
            .map_err(classify)?;
        let mut reader = match decryptor.decrypt(std::iter::once(*identity as &dyn age::Identity)) {
            Ok(reader) => reader,
            Err(age::DecryptError::NoMatchingKeys) => continue,
            Err(e) => return Err(classify(e)),
        };
        // The armored text bounds the plaintext, so the buffer never reallocates
        // (a reallocation would leave an unwiped copy behind).
        let mut plaintext = Zeroizing::new(Vec::with_capacity(armored.len()));
        reader
            .read_to_end(&mut plaintext)
            .map_err(|e| classify(age::DecryptError::Io(e)))?;
        return Ok((plaintext, index));
    }
    Err(OpenError::NoMatchingKey)
}

/// Maps age's errors onto the refusals sigil reports.
fn classify(error: age::DecryptError) -> OpenError {
    match error {
        age::DecryptError::NoMatchingKeys => OpenError::NoMatchingKey,
        age::DecryptError::InvalidMac | age::DecryptError::DecryptionFailed => OpenError::Tampered,
        age::DecryptError::Io(e) => classify_io(&e),
        other => OpenError::Malformed(other.to_string()),
    }
}

fn classify_io(error: &std::io::Error) -> OpenError {
    use std::io::ErrorKind;
    if let Some(armor) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<age::armor::ArmoredReadError>())
    {
        return OpenError::Malformed(armor.to_string());
    }
    match error.kind() {
        ErrorKind::UnexpectedEof => OpenError::Truncated,
        // The STREAM payload fails authentication: a flipped bit, or chunks cut off.
        ErrorKind::InvalidData => {
            if error.to_string().contains("last chunk") {
                OpenError::Truncated
            } else {
                OpenError::Tampered
            }
        }
        _ => OpenError::Malformed(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::api::sealed_secret::Scope;

    struct Keys {
        cluster: Identity,
        recovery: Identity,
        stranger: Identity,
    }

    fn keys() -> Keys {
        Keys {
            cluster: Identity::generate(),
            recovery: Identity::generate(),
            stranger: Identity::generate(),
        }
    }

    fn strict() -> Binding {
        Binding::new(Scope::Strict, Some("prod"), Some("db")).expect("valid")
    }

    fn sealed(keys: &Keys, value: &[u8]) -> String {
        seal(
            value,
            &strict(),
            &[keys.cluster.to_public(), keys.recovery.to_public()],
        )
        .expect("seals")
    }

    fn open_err(armored: &str, identity: &Identity) -> OpenError {
        open(armored, &[identity], "prod", "db").expect_err("refused")
    }

    /// The base64 body lines of an armored file, as (start, end) byte ranges.
    fn body_lines(armored: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut pos = 0;
        for line in armored.split_inclusive('\n') {
            let text = line.trim_end();
            if !text.starts_with("-----") && !text.is_empty() {
                out.push((pos, pos + text.len()));
            }
            pos += line.len();
        }
        out
    }

    #[test]
    fn round_trips_utf8_and_binary_values() {
        let keys = keys();
        let binary: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
        for value in [&b""[..], "pässwörd ✓\n".as_bytes(), &binary] {
            let armored = sealed(&keys, value);
            assert!(armored.starts_with(ARMOR_BEGIN));
            assert!(armored.trim_end().ends_with(ARMOR_END));
            let opened = open(&armored, &[&keys.cluster], "prod", "db").expect("opens");
            assert_eq!(opened.value.expose_secret(), value);
            assert_eq!(opened.binding, strict());
            assert_eq!(opened.identity, 0);
        }
    }

    #[test]
    fn every_recipient_opens_and_reports_which_identity() {
        let keys = keys();
        let armored = sealed(&keys, b"v");
        let opened = open(&armored, &[&keys.stranger, &keys.recovery], "prod", "db")
            .expect("the recovery key opens it");
        assert_eq!(opened.identity, 1);
        assert_eq!(opened.value.expose_secret(), b"v");
        assert!(open(&armored, &[&keys.cluster], "prod", "db").is_ok());
    }

    #[test]
    fn recovery_key_alone_opens_every_value() {
        let keys = keys();
        for scope in [Scope::Strict, Scope::Namespace, Scope::Cluster] {
            let binding = Binding::new(scope, Some("prod"), Some("db")).expect("valid");
            let armored = seal(
                b"dr",
                &binding,
                &[keys.cluster.to_public(), keys.recovery.to_public()],
            )
            .expect("seals");
            let opened = open(&armored, &[&keys.recovery], "prod", "db").expect("opens");
            assert_eq!(opened.value.expose_secret(), b"dr");
            assert_eq!(opened.binding.scope(), scope);
        }
    }

    #[test]
    fn wrong_key_is_refused() {
        let keys = keys();
        assert_eq!(
            open_err(&sealed(&keys, b"v"), &keys.stranger),
            OpenError::NoMatchingKey
        );
        assert_eq!(
            open(&sealed(&keys, b"v"), &[], "prod", "db").map(|o| o.identity),
            Err(OpenError::NoMatchingKey)
        );
    }

    #[test]
    fn out_of_scope_is_refused_whatever_the_object_claims() {
        let keys = keys();
        let armored = sealed(&keys, b"v");
        for (namespace, name) in [("dev", "db"), ("prod", "other"), ("dev", "other")] {
            let err = open(&armored, &[&keys.cluster], namespace, name).expect_err("refused");
            assert!(matches!(err, OpenError::ScopeMismatch { .. }), "{err}");
            assert_eq!(err.reason(), "ScopeMismatch");
            assert_eq!(
                err.to_string(),
                format!("sealed for strict scope prod/db, but used in {namespace}/{name}")
            );
        }
        let namespaced = seal(
            b"v",
            &Binding::new(Scope::Namespace, Some("prod"), None).expect("valid"),
            &[keys.cluster.to_public()],
        )
        .expect("seals");
        assert!(open(&namespaced, &[&keys.cluster], "prod", "any").is_ok());
        assert!(matches!(
            open(&namespaced, &[&keys.cluster], "dev", "any"),
            Err(OpenError::ScopeMismatch { .. })
        ));
        let cluster = seal(b"v", &Binding::Cluster, &[keys.cluster.to_public()]).expect("seals");
        assert!(open(&cluster, &[&keys.cluster], "anywhere", "any").is_ok());
    }

    #[test]
    fn tampered_payload_is_refused() {
        let keys = keys();
        let armored = sealed(&keys, &[7u8; 100]);
        let lines = body_lines(&armored);
        // The second-to-last line is a full one inside the payload (132 bytes, ~176 base64
        // characters). The last line may be a few characters whose final symbol only carries
        // padding bits, where a flip is a base64 error instead of a tampered ciphertext.
        let (start, end) = lines[lines.len() - 2];
        // Flip one base64 character in the middle of it.
        let at = start + (end - start) / 2;
        let mut bytes = armored.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ASCII");
        let err = open_err(&tampered, &keys.cluster);
        assert_eq!(err, OpenError::Tampered);
        assert_eq!(err.reason(), "DecryptFailed");
    }

    #[test]
    fn tampered_header_is_refused() {
        let keys = keys();
        let armored = sealed(&keys, b"v");
        let (start, _) = body_lines(&armored)[0];
        let mut bytes = armored.into_bytes();
        // Inside "YWdlLWVuY3J5cHRpb24..." (base64 of "age-encryption.org/v1").
        bytes[start + 2] = if bytes[start + 2] == b'd' { b'e' } else { b'd' };
        let err = open_err(&String::from_utf8(bytes).expect("ASCII"), &keys.cluster);
        assert!(matches!(err, OpenError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn truncated_files_are_refused() {
        let keys = keys();
        let armored = sealed(&keys, &[1u8; 5000]);
        let lines = body_lines(&armored);
        // Cut after a full body line: the end marker is gone.
        let (_, end) = lines[lines.len() / 2];
        assert_eq!(
            open_err(&armored[..end + 1], &keys.cluster),
            OpenError::Truncated
        );
        // Drop body lines but keep the end marker: inside one STREAM chunk this
        // cannot be told from tampering, and is refused as such.
        let (cut_from, _) = lines[lines.len() - 3];
        let (_, cut_to) = lines[lines.len() - 2];
        let spliced = format!("{}{}", &armored[..cut_from], &armored[cut_to + 1..]);
        let err = open_err(&spliced, &keys.cluster);
        assert_eq!(err, OpenError::Tampered);
        assert_eq!(err.reason(), "DecryptFailed");
    }

    #[test]
    fn files_cut_at_a_chunk_boundary_are_truncated() {
        let keys = keys();
        let envelope = envelope::encode(&strict(), &[9u8; 100_000]);
        let binary = age::encrypt(&keys.cluster.to_public(), &envelope).expect("encrypts");
        let mac_line = binary
            .windows(5)
            .position(|w| w == b"\n--- ")
            .expect("header MAC line");
        let header_end = mac_line
            + 1
            + binary[mac_line + 1..]
                .iter()
                .position(|&b| b == b'\n')
                .expect("end of header")
            + 1;
        // Header, 16-byte nonce, then the first full 64 KiB chunk and its tag only.
        let cut = &binary[..header_end + 16 + 65_536 + 16];
        let mut armored = Vec::new();
        let mut writer =
            ArmoredWriter::wrap_output(&mut armored, Format::AsciiArmor).expect("armor");
        writer.write_all(cut).expect("writes");
        writer.finish().expect("finishes");
        let armored = String::from_utf8(armored).expect("ASCII");
        assert_eq!(open_err(&armored, &keys.cluster), OpenError::Truncated);
    }

    #[test]
    fn refuses_what_is_not_armored_age() {
        let keys = keys();
        assert_eq!(open_err("hunter2", &keys.cluster), OpenError::NotArmored);
        let binary = age::encrypt(&keys.cluster.to_public(), b"x").expect("encrypts");
        assert_eq!(
            open_err(&String::from_utf8_lossy(&binary), &keys.cluster),
            OpenError::NotArmored
        );
        let huge = format!("{ARMOR_BEGIN}\n{}", "A".repeat(MAX_ARMORED_LEN));
        assert_eq!(open_err(&huge, &keys.cluster), OpenError::TooLarge);
    }

    #[test]
    fn age_files_without_an_envelope_are_refused() {
        let keys = keys();
        let raw = encrypt_armored(b"hunter2", &[keys.cluster.to_public()]).expect("encrypts");
        let err = open_err(&raw, &keys.cluster);
        assert_eq!(err, OpenError::Envelope(EnvelopeError::NotEnvelope));
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn surrounding_whitespace_is_tolerated() {
        let keys = keys();
        let armored = format!("\n  {}\n\n", sealed(&keys, b"v"));
        assert!(open(&armored, &[&keys.cluster], "prod", "db").is_ok());
    }

    #[test]
    fn sealing_needs_a_recipient() {
        assert!(matches!(
            seal(b"v", &strict(), &[]),
            Err(SealError::NoRecipients)
        ));
    }

    #[test]
    fn debug_of_an_opened_value_is_redacted() {
        let keys = keys();
        let opened =
            open(&sealed(&keys, b"hunter2"), &[&keys.cluster], "prod", "db").expect("opens");
        let shown = format!("{opened:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
