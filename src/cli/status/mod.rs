//! The status commands (`sigil get`, `tree`, `reconcile`, `suspend`, `resume`): what sigil is
//! doing in the cluster, as `flux get`/`flux tree` show it, in kubectl's output style.
//!
//! This module holds what they share: sigil's kinds and their names on the command line,
//! `KIND/NAME` references, exit codes, kubectl-style tables and ages.

pub mod get;
pub mod reconcile;
pub mod suspend;
pub mod tree;

use std::path::{Path, PathBuf};

use kube::api::{Api, ApiResource, DynamicObject};
use kube::{CustomResourceExt, Resource};
use serde_json::Value;

use crate::api::{
    ClusterSecretStore, ExternalSecret, GitSource, ManifestSync, SealedSecret, SecretStore,
};

/// Exit code: the object is not Ready or not healthy.
pub const EXIT_NOT_READY: u8 = 3;
/// Exit code: the wait timed out.
pub const EXIT_TIMEOUT: u8 = 4;

/// A result scripts tell apart by the exit code (each command's `--help` lists them).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Verdict {
    pub code: u8,
    pub message: String,
}

impl Verdict {
    pub fn not_ready(message: impl Into<String>) -> anyhow::Error {
        Verdict {
            code: EXIT_NOT_READY,
            message: message.into(),
        }
        .into()
    }

    pub fn timeout(message: impl Into<String>) -> anyhow::Error {
        Verdict {
            code: EXIT_TIMEOUT,
            message: message.into(),
        }
        .into()
    }
}

/// The exit code for an error returned by a command (1 unless it is a [`Verdict`]).
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error.downcast_ref::<Verdict>().map_or(1, |v| v.code)
}

/// The connection flags every status command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// Path to a kubeconfig; without it, KUBECONFIG or the in-cluster config is used.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace (default: the kubeconfig context's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

impl Connection {
    /// A client and the namespace to use.
    pub async fn connect(&self) -> anyhow::Result<(kube::Client, String)> {
        let client =
            crate::cli::controller::client(self.kubeconfig.as_deref().map(Path::new)).await?;
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        Ok((client, namespace))
    }
}

/// One of sigil's kinds, as the status commands know it.
#[derive(Clone, Debug)]
pub struct SigilKind {
    pub resource: ApiResource,
    pub namespaced: bool,
    /// Names accepted on the command line (lowercase).
    aliases: Vec<String>,
    /// Header of the kind-specific column of `sigil get`.
    pub detail_header: &'static str,
    /// Has `spec.suspend`.
    pub suspendable: bool,
    /// Honours `sigil.dev/reconcile-requested-at`.
    pub reconcilable: bool,
}

fn kind_of<K>(detail_header: &'static str, suspendable: bool, reconcilable: bool) -> SigilKind
where
    K: Resource<DynamicType = ()> + CustomResourceExt,
{
    let crd = K::crd();
    let names = &crd.spec.names;
    let mut aliases = vec![
        names.kind.to_lowercase(),
        names.plural.clone(),
        names.singular.clone().unwrap_or_default(),
        format!("{}.{}", names.plural, crd.spec.group),
    ];
    aliases.extend(names.short_names.clone().unwrap_or_default());
    SigilKind {
        resource: ApiResource::erase::<K>(&()),
        namespaced: crd.spec.scope == "Namespaced",
        aliases,
        detail_header,
        suspendable,
        reconcilable,
    }
}

/// Every sigil kind, in the order `sigil get` shows them: sources first, then what they feed.
pub fn kinds() -> Vec<SigilKind> {
    vec![
        kind_of::<GitSource>("REVISION", true, true),
        kind_of::<ManifestSync>("REVISION", true, true),
        kind_of::<SealedSecret>("KEY", false, false),
        kind_of::<SecretStore>("PROVIDER", false, false),
        kind_of::<ClusterSecretStore>("PROVIDER", false, false),
        kind_of::<ExternalSecret>("REFRESHED", false, false),
    ]
}

impl SigilKind {
    pub fn kind(&self) -> &str {
        &self.resource.kind
    }

    /// `sync`, the lowercase kind used in `KIND/NAME`.
    pub fn short(&self) -> String {
        self.resource.kind.to_lowercase()
    }

    /// An API for this kind in `namespace` (or cluster-wide when `None` or cluster-scoped).
    pub fn api(&self, client: &kube::Client, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) if self.namespaced => Api::namespaced_with(client.clone(), ns, &self.resource),
            _ => Api::all_with(client.clone(), &self.resource),
        }
    }
}

/// The kind a command-line name means (`sync`, `syncs`, `gsync`, `syncs.sigil.dev`, ...).
pub fn find_kind(name: &str) -> anyhow::Result<SigilKind> {
    let wanted = name.to_lowercase();
    kinds()
        .into_iter()
        .find(|k| k.aliases.contains(&wanted))
        .ok_or_else(|| {
            let known: Vec<String> = kinds().iter().map(SigilKind::short).collect();
            anyhow::anyhow!(
                "unknown kind {name:?}: sigil's kinds are {}",
                known.join(", ")
            )
        })
}

/// `KIND/NAME` as the commands take it.
pub fn parse_reference(reference: &str) -> anyhow::Result<(SigilKind, String)> {
    let (kind, name) = reference
        .split_once('/')
        .filter(|(k, n)| !k.is_empty() && !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| anyhow::anyhow!("{reference:?}: expected KIND/NAME, like sync/apps"))?;
    Ok((find_kind(kind)?, name.to_string()))
}

/// An object as JSON, for reading status fields by pointer.
pub fn as_value(object: &DynamicObject) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// `(status, reason, message)` of the object's Ready condition (`Unknown` when absent).
pub fn ready_of(object: &Value) -> (String, String, String) {
    let ready = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        });
    let field = |name: &str| {
        ready
            .and_then(|c| c.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match ready {
        Some(_) => (field("status"), field("reason"), field("message")),
        None => ("Unknown".into(), String::new(), String::new()),
    }
}

/// Whether the controller has acted on the current spec (`status.observedGeneration`).
pub fn observed_current(object: &Value) -> bool {
    let generation = object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    let observed = object
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    generation.is_none() || observed >= generation
}

/// `kind.group/name`, as kubectl names an object in its messages.
pub fn display_name(kind: &SigilKind, name: &str) -> String {
    format!(
        "{}.{}/{name}",
        kind.resource.kind.to_lowercase(),
        kind.resource.group
    )
}

/// An age as kubectl prints it (`45s`, `3m12s`, `5h`, `12d`: apimachinery's HumanDuration).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{years}y")
}

/// The time since an RFC 3339 timestamp, kubectl-style; `<unknown>` when there is none.
pub fn age_since(timestamp: Option<&str>) -> String {
    timestamp
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| human_duration(jiff::Timestamp::now().as_second() - t.as_second()))
        .unwrap_or_else(|| "<unknown>".into())
}

/// Columns separated by three spaces, each as wide as its widest cell (kubectl's tabwriter).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] + 3 - cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Output formats of `-o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Wide,
    Yaml,
    Json,
}

/// Writes `value` as pretty JSON or YAML.
pub fn write_structured(format: Format, value: &Value) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        _ => crate::yaml::to_string(value)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        for (seconds, expected) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (59, "59s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 120, "3h2m"),
            (47 * 3600, "47h"),
            (3 * 86400 + 3600, "3d1h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(human_duration(seconds), expected, "{seconds}");
        }
    }

    #[test]
    fn kinds_are_found_by_every_name_kubectl_accepts() {
        for name in ["sync", "Sync", "syncs", "gsync", "syncs.sigil.dev"] {
            assert_eq!(find_kind(name).expect("known").kind(), "Sync", "{name}");
        }
        assert_eq!(find_kind("es").expect("known").kind(), "ExternalSecret");
        assert_eq!(
            find_kind("css").expect("known").kind(),
            "ClusterSecretStore"
        );
        assert!(!find_kind("css").expect("known").namespaced);
        let err = find_kind("deployment").expect_err("not sigil's");
        assert!(err.to_string().contains("gitsource, sync"), "{err}");
        let (kind, name) = parse_reference("sync/apps").expect("reference");
        assert_eq!((kind.kind(), name.as_str()), ("Sync", "apps"));
        for bad in ["sync", "sync/", "/apps", "sync/a/b"] {
            assert!(parse_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tables_align_columns_and_trim_the_last() {
        let out = table(
            &["NAME", "READY", "MESSAGE"],
            &[
                vec!["a".into(), "True".into(), "".into()],
                vec!["longer-name".into(), "False".into(), "boom".into()],
            ],
        );
        assert_eq!(
            out,
            "NAME          READY   MESSAGE\na             True\nlonger-name   False   boom\n"
        );
    }
}
