//! SealedSecret → Secret: any JSON document through the controller's path (document → typed
//! SealedSecret → identity → open every value → Secret manifest). Never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sigil::crypto::{manifest, sealed_data, Keyring};

fn keyring() -> &'static Keyring {
    static KEYS: OnceLock<Keyring> = OnceLock::new();
    KEYS.get_or_init(|| Keyring::from_identities(vec![age::x25519::Identity::generate()], "fuzz"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = manifest::is_sealed_secret(&document);
    let Ok(sealed) = manifest::sealed_from_document(&document) else {
        return;
    };
    let Ok((namespace, name)) = manifest::sealed_identity(&sealed) else {
        return;
    };
    if let Ok(opened) =
        sealed_data::open_all(&sealed.spec.encrypted_data, keyring(), &namespace, &name)
    {
        let mut secret = manifest::secret_manifest(&sealed, &opened);
        manifest::wipe_secret_manifest(&mut secret);
    }
});
