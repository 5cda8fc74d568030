//! ExternalSecret templates (`spec.target.template`): any text parsed and rendered against
//! fetched values. Never a panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use sigil::controller::external_secret::template::Template;
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    // First line: a fetched value's bytes; the rest: the template.
    let (value, template) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    let Ok(text) = std::str::from_utf8(template) else {
        return;
    };
    let Ok(parsed) = Template::parse(text) else {
        return;
    };
    let _ = parsed.is_static();
    let mut values = BTreeMap::new();
    values.insert("password".to_string(), Zeroizing::new(value.to_vec()));
    values.insert("user".to_string(), Zeroizing::new(b"admin".to_vec()));
    let _ = parsed.render(&values);
});
