//! Helpers for tests that drive an API server, behind the `testing` feature: an in-process
//! [`Cluster`] with an admin client, bounded polling ([`poll`], [`eventually`]) and asserting the
//! `Status` of a refused request ([`assert_api_error`]).

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};

use crate::{DevOptions, DevServer};

/// An in-process server and an admin client for it. Dropping it stops the server.
pub struct Cluster {
    pub server: DevServer,
    pub client: kube::Client,
}

/// Starts a server on 127.0.0.1, a port chosen at run time.
pub async fn start() -> Cluster {
    start_with(DevOptions::default()).await
}

/// Starts a server with `opts` (its listen address is forced to 127.0.0.1:0).
pub async fn start_with(opts: DevOptions) -> Cluster {
    // Err only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let opts = DevOptions {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..opts
    };
    let server = DevServer::start(opts)
        .await
        .expect("start the embedded API server");
    let client = server
        .client()
        .await
        .expect("client for the embedded API server");
    Cluster { server, client }
}

impl Cluster {
    /// A client acting as `user` (impersonation), e.g. `system:serviceaccount:ns:name`.
    pub async fn client_as(&self, user: &str) -> kube::Client {
        let mut kubeconfig = self.server.kubeconfig();
        for auth in &mut kubeconfig.auth_infos {
            if let Some(info) = auth.auth_info.as_mut() {
                info.impersonate = Some(user.to_string());
            }
        }
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("impersonating config");
        kube::Client::try_from(config).expect("impersonating client")
    }

    /// A client presenting `token` instead of the server's.
    pub async fn client_with_token(&self, token: &str) -> kube::Client {
        let mut kubeconfig = self.server.kubeconfig();
        for auth in &mut kubeconfig.auth_infos {
            if let Some(info) = auth.auth_info.as_mut() {
                info.token = Some(token.to_string().into());
            }
        }
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("config");
        kube::Client::try_from(config).expect("client")
    }

    /// Creates a namespace and waits until the in-process controllers have added its
    /// `default` ServiceAccount and `kube-root-ca.crt` ConfigMap, so tests start settled.
    pub async fn namespace(&self, name: &str) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        let configmaps: Api<ConfigMap> = Api::namespaced(self.client.clone(), name);
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), name);
        eventually("the namespace's default objects", || async {
            let cm = configmaps.get_opt("kube-root-ca.crt").await.ok().flatten();
            let sa = accounts.get_opt("default").await.ok().flatten();
            (cm.is_some() && sa.is_some()).then_some(())
        })
        .await;
    }
}

/// [`poll`]s `probe` every `every` for up to `within`; panics naming `what` when it never answered.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, every: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll(within, every, probe)
        .await
        .unwrap_or_else(|| panic!("timed out after {within:?} waiting for {what}"))
}

/// [`wait_for`] every 50 ms for up to 10 s.
pub async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for(
        what,
        Duration::from_secs(10),
        Duration::from_millis(50),
        probe,
    )
    .await
}

/// Calls `probe` every `every` until it returns `Some`, for at most `limit`; `None` when it never
/// did. The caller panics with what it waited for (and whatever log explains why).
pub async fn poll<T, F, Fut>(limit: Duration, every: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// [`poll`] for tests without a runtime: `probe` blocks, the wait sleeps the thread.
pub fn poll_blocking<T>(
    limit: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// The code, reason and `Status` of a request the API server refused; panics on success or a
/// transport error.
pub fn api_error<T: std::fmt::Debug>(result: kube::Result<T>) -> (u16, String, kube::core::Status) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone(), *status),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Asserts that the API server refused a request with `code` and `reason`; returns its `Status`
/// for checks of the message or details.
#[track_caller]
pub fn assert_api_error<T: std::fmt::Debug>(
    result: kube::Result<T>,
    code: u16,
    reason: &str,
) -> kube::core::Status {
    let (_, _, status) = api_error(result);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (code, reason),
        "{status:?}"
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn poll_returns_the_first_answer_or_none_after_the_limit() {
        let mut calls = 0;
        let found = poll(Duration::from_secs(5), Duration::from_millis(1), || {
            calls += 1;
            let answer = (calls == 3).then_some(calls);
            async move { answer }
        })
        .await;
        assert_eq!(found, Some(3));
        let started = Instant::now();
        let never: Option<()> = poll(
            Duration::from_millis(30),
            Duration::from_millis(5),
            || async { None },
        )
        .await;
        assert_eq!(never, None);
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn poll_blocking_gives_up_after_the_limit() {
        let mut calls = 0;
        let never: Option<()> =
            poll_blocking(Duration::from_millis(20), Duration::from_millis(5), || {
                calls += 1;
                None
            });
        assert_eq!(never, None);
        assert!(calls >= 2, "{calls}");
    }
}
