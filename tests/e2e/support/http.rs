//! reqwest for the tests. sigil builds reqwest without a crypto provider of its own (it takes the
//! process's rustls provider, ring), so every client here is built after installing it.

pub fn client() -> reqwest::Client {
    builder().build().expect("an HTTP client")
}

pub fn builder() -> reqwest::ClientBuilder {
    sigil::tls::install_crypto_provider();
    reqwest::Client::builder()
}

/// `GET url`, like `reqwest::get`.
pub async fn get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    client().get(url).send().await
}
