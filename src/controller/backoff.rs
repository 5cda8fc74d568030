//! Retry delays of failing reconciles.

use std::time::Duration;

/// `first` after the first failure, doubling with each consecutive one up to `cap`.
pub fn exponential(first: Duration, cap: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    first.saturating_mul(1 << doublings).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_a_cap() {
        let second = Duration::from_secs(1);
        let cap = Duration::from_secs(300);
        assert_eq!(exponential(second, cap, 0), second);
        assert_eq!(exponential(second, cap, 1), second);
        assert_eq!(exponential(second, cap, 2), Duration::from_secs(2));
        assert_eq!(exponential(second, cap, 6), Duration::from_secs(32));
        assert_eq!(exponential(second, cap, 10), cap);
        assert_eq!(exponential(second, cap, u32::MAX), cap);
    }
}
