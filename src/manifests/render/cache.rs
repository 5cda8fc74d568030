//! Rendered output by (revision, path, inputs) digest, the oldest dropped past a bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Renders kept at once.
const MAX_ENTRIES: usize = 256;

/// When an output was last used, and the output.
type Entry = (Instant, Arc<Vec<u8>>);

#[derive(Default)]
pub struct RenderCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl RenderCache {
    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<Vec<u8>>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get_mut(key)?;
        entry.0 = Instant::now();
        Some(entry.1.clone())
    }

    pub fn put(&self, key: [u8; 32], output: Arc<Vec<u8>>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES
            && let Some(oldest) = entries.iter().min_by_key(|(_, v)| v.0).map(|(k, _)| *k)
        {
            entries.remove(&oldest);
        }
        entries.insert(key, (Instant::now(), output));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_render_goes_first() {
        let cache = RenderCache::default();
        for i in 0..MAX_ENTRIES {
            cache.put([i as u8; 32], Arc::new(vec![i as u8]));
        }
        assert!(cache.get(&[0; 32]).is_some());
        cache.put([255; 32], Arc::new(vec![]));
        assert!(cache.get(&[0; 32]).is_some(), "recently used");
        assert!(cache.get(&[1; 32]).is_none(), "oldest dropped");
    }
}
