//! SOPS files as a Sync's decrypt stage sees them: any bytes parsed as a manifest file, then its
//! SOPS documents opened with the demo age identity (the seed is a real `sops`-encrypted file
//! to it, so mutations reach the MAC and value checks). Never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sigil::manifests::parse::parse_file;
use sigil::manifests::source::SourceFile;
use sigil::manifests::sops::{Keys, open_manifests};

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let identities =
            sigil::crypto::identity::parse_file(include_str!("../../examples/sops/demo.agekey"))
                .expect("the demo identity parses");
        Keys::new(identities)
    })
}

fuzz_target!(|data: &[u8]| {
    for path in ["secret.sops.yaml", "secret.sops.json"] {
        let file = SourceFile::new(path, data.to_vec());
        if let Ok(manifests) = parse_file(&file) {
            let _ = open_manifests(manifests, std::slice::from_ref(&file), Some(keys()));
        }
    }
});
