//! The embedded API server's patch and apply: a live object and a patch (two JSON documents
//! separated by a NUL byte) through JSON patch, merge patch, strategic merge patch and
//! server-side apply with managedFields. Never a panic.
#![no_main]

use kube_devserver::patch::{self, ApplyRequest, builtin_list_semantics};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(at) = data.iter().position(|b| *b == 0) else {
        return;
    };
    let (Ok(live), Ok(change)) = (
        serde_json::from_slice::<serde_json::Value>(&data[..at]),
        serde_json::from_slice::<serde_json::Value>(&data[at + 1..]),
    ) else {
        return;
    };
    let _ = patch::json_patch(&live, &change);
    let _ = patch::merge_patch(&live, &change);
    for (group, kind) in [("apps", "Deployment"), ("", "ConfigMap"), ("", "Pod")] {
        let lists = builtin_list_semantics(group, kind);
        let _ = patch::strategic_merge_patch(&live, &change, lists.as_ref());
        let request = ApplyRequest {
            manager: "fuzz",
            force: false,
            subresource: None,
            lists: lists.as_ref(),
            now: "2026-01-01T00:00:00Z",
        };
        if let Ok(mut applied) = patch::server_side_apply(Some(&live), &change, &request) {
            patch::track_update(Some(&live), &mut applied, "other", None, "2026-01-01T00:00:01Z");
        }
    }
});
