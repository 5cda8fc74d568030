//! Manifest parsing as a Sync reads a Git file: multi-document YAML (anchors, aliases, merge
//! keys, tags) and JSON, under the parse budgets. Never a panic, never unbounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil::manifests::parse::parse_file;
use sigil::manifests::source::SourceFile;

fuzz_target!(|data: &[u8]| {
    for path in ["clusters/dev/app.yaml", "clusters/dev/app.json"] {
        let file = SourceFile {
            path: path.to_string(),
            content: data.to_vec(),
        };
        if let Ok(manifests) = parse_file(&file) {
            for m in &manifests {
                let _ = (m.kind(), m.api_version(), m.name(), m.namespace(), m.location());
            }
        }
    }
    // The same bytes as the Secret manifest `sigil seal` reads.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sigil::crypto::manifest::parse_secret(text);
    }
});
