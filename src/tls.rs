//! Process-wide TLS set-up.
//!
//! ring is the only rustls crypto provider compiled in (kube, the AWS SDK's HTTP client, reqwest and
//! so gix and the Vault client all use it). reqwest is built without a provider of its own
//! (`rustls-no-provider`) and takes the process's: every entry point, and each place that builds a
//! reqwest client, calls [`install_crypto_provider`] first.

/// Installs ring as the process-wide rustls crypto provider. Idempotent.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
