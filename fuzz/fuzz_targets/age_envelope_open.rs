//! Armored age parsing and the envelope: arbitrary text as a sealed value, arbitrary bytes as
//! the plaintext of a real age file (so the envelope decoder sees every shape), and the envelope
//! decoder on its own. Never a panic; only values sealed for ns/name open there.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sigil::crypto::{envelope, sealing, Keyring};

fn identity() -> &'static age::x25519::Identity {
    static ID: OnceLock<age::x25519::Identity> = OnceLock::new();
    ID.get_or_init(age::x25519::Identity::generate)
}

fuzz_target!(|data: &[u8]| {
    let id = identity();
    if let Ok(text) = std::str::from_utf8(data) {
        let keyring = Keyring::from_identities(vec![id.clone()], "fuzz");
        let _ = keyring.open(text, "ns", "name");
    }
    let _ = envelope::decode(data);
    if let Ok(armored) = sealing::encrypt_armored(data, &[id.to_public()]) {
        let _ = sealing::open(&armored, &[id], "ns", "name");
    }
});
