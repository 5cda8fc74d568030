//! Process-wide TLS set-up.
//!
//! ring is the only rustls crypto provider compiled in (kube, the AWS SDK's HTTP client, reqwest and
//! so gix and the Vault client all use it); installing it explicitly at every entry point keeps it
//! so even if a dependency later enables a second one, which would leave rustls unable to pick.

/// Installs ring as the process-wide rustls crypto provider. Idempotent.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
