//! Process-wide TLS set-up.
//!
//! The dependency tree enables both of rustls' crypto back ends (ring through
//! kube, aws-lc-rs through the AWS SDK), so rustls cannot pick one by itself:
//! every entry point calls [`install_crypto_provider`] before any TLS is used.

/// Installs ring as the process-wide rustls crypto provider. Idempotent.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
