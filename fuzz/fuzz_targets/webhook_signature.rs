//! The webhook receiver's signature check (GitHub HMAC-SHA256 or GitLab token): arbitrary
//! header values and bodies. Never a panic, and a forged signature never matches.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil::server::hooks::signature_matches;

const TOKEN: &[u8] = b"fuzz-webhook-token";

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &data[..0]),
    };
    let Ok(value) = http::HeaderValue::from_bytes(header) else {
        return;
    };
    for name in ["x-hub-signature-256", "x-gitlab-token"] {
        let mut headers = http::HeaderMap::new();
        headers.insert(name, value.clone());
        let matched = signature_matches(TOKEN, &headers, body);
        if matched && name == "x-gitlab-token" {
            assert_eq!(header, TOKEN, "only the token itself matches");
        }
    }
});
