//! The two ciphers of a SOPS file: the data key, age-encrypted (armored) to each recipient,
//! and every value, `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` under that key with the
//! value's key path as additional data.

use std::io::Read;

use aes_gcm::AesGcm;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::generic_array::typenum::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::node::Node;

/// AES-256-GCM with the 32-byte nonces SOPS writes.
type SopsCipher = AesGcm<Aes256, U32>;
const NONCE_SIZE: usize = 32;

/// The data key every value of a file is encrypted with.
pub type DataKey = Zeroizing<[u8; 32]>;

/// Opens one encrypted value; `additional` is the path of keys to it, each followed by `:`
/// (or `lastmodified` for the MAC). The empty string stands for itself, as in SOPS.
pub fn open_value(text: &str, key: &DataKey, additional: &str) -> Result<Node, &'static str> {
    if text.is_empty() {
        return Ok(Node::Str(String::new()));
    }
    let inner = text
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|t| t.strip_suffix(']'))
        .ok_or("not an ENC[AES256_GCM,...] value")?;
    let field = |name: &str| {
        inner
            .split(',')
            .find_map(|part| part.strip_prefix(name)?.strip_prefix(':'))
            .ok_or("malformed ENC value")
    };
    let decode = |v: &str| STANDARD.decode(v).map_err(|_| "malformed base64");
    let mut sealed = decode(field("data")?)?;
    let nonce = decode(field("iv")?)?;
    sealed.extend(decode(field("tag")?)?);
    let kind = field("type")?;
    if nonce.len() != NONCE_SIZE {
        return Err("the nonce is not 32 bytes");
    }
    let cipher = SopsCipher::new(GenericArray::from_slice(key.as_slice()));
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                GenericArray::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: additional.as_bytes(),
                },
            )
            .map_err(
                |_| "cannot be authenticated (tampered, or encrypted with another data key)",
            )?,
    );
    let text = std::str::from_utf8(&plain).map_err(|_| "not UTF-8")?;
    match kind {
        "str" | "bytes" | "comment" => Ok(Node::Str(text.to_string())),
        "int" | "int64" => text.parse().map(Node::Int).map_err(|_| "not an int"),
        "float" => text.parse().map(Node::Float).map_err(|_| "not a float"),
        // Go's strconv.ParseBool.
        "bool" => match text {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(Node::Bool(true)),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(Node::Bool(false)),
            _ => Err("not a bool"),
        },
        _ => Err("unknown value type"),
    }
}

/// The data key, opened from the first age stanza one of `identities` opens.
pub fn open_data_key(armored: &[&str], identities: &[age::x25519::Identity]) -> Option<DataKey> {
    armored.iter().find_map(|armored| {
        let reader = age::armor::ArmoredReader::new(armored.as_bytes());
        let decryptor = age::Decryptor::new_buffered(reader).ok()?;
        let mut stream = decryptor
            .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
            .ok()?;
        let mut plain = Zeroizing::new(Vec::new());
        stream.read_to_end(&mut plain).ok()?;
        let key: [u8; 32] = plain.as_slice().try_into().ok()?;
        Some(Zeroizing::new(key))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::AeadCore;

    fn seal(key: &DataKey, plain: &str, additional: &str, kind: &str) -> String {
        let cipher = SopsCipher::new(GenericArray::from_slice(key.as_slice()));
        let nonce = SopsCipher::generate_nonce(&mut aes_gcm::aead::OsRng);
        let out = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: additional.as_bytes(),
                },
            )
            .expect("seals");
        let (data, tag) = out.split_at(out.len() - 16);
        format!(
            "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
            STANDARD.encode(data),
            STANDARD.encode(nonce),
            STANDARD.encode(tag)
        )
    }

    #[test]
    fn values_open_with_their_path_only() {
        let key = Zeroizing::new([7u8; 32]);
        let sealed = seal(&key, "42", "data:port:", "int");
        assert!(open_value(&sealed, &key, "data:port:") == Ok(Node::Int(42)));
        assert!(open_value(&sealed, &key, "data:other:").is_err());
        let other = Zeroizing::new([8u8; 32]);
        assert!(open_value(&sealed, &other, "data:port:").is_err());
        let flag = seal(&key, "True", "a:", "bool");
        assert!(open_value(&flag, &key, "a:") == Ok(Node::Bool(true)));
        assert!(open_value("", &key, "a:") == Ok(Node::Str(String::new())));
        assert!(open_value("plain", &key, "a:").is_err());
    }
}
