//! Errors of the operator process itself (not of one reconcile).

/// Why the operator could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot serve HTTP on {addr}: {source}")]
    Serve {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("leadership lost to another replica; exiting so that only one replica writes")]
    LeadershipLost,
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
}
