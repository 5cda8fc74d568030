//! `sigil get`: every sigil object with its Ready state, on one screen (like `flux get all`).
//! One block per kind, each with the column that matters for it: the revision of a GitSource
//! or Sync, the key that opened a SealedSecret, the provider of a store, when an
//! ExternalSecret last refreshed.

use std::io::Write;

use kube::api::{DynamicObject, ListParams};
use serde_json::{Value, json};

use super::{
    Connection, Format, SigilKind, age_since, as_value, find_kind, kinds, parse_reference,
    ready_of, table, write_structured,
};

/// Arguments of `sigil get`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A kind (`sync`, `gitsource`, `sealedsecret`, `externalsecret`, `secretstore`,
    /// `clustersecretstore`, or `all`), or `KIND/NAME`. Default: all.
    pub kind: Option<String>,
    /// Only this object.
    pub name: Option<String>,
    /// Across all namespaces.
    #[arg(long, short = 'A')]
    pub all_namespaces: bool,
    /// `wide` adds SUSPENDED and MESSAGE; `yaml`/`json` print the objects as a List.
    #[arg(long, short = 'o', value_enum)]
    pub output: Option<Format>,
    #[command(flatten)]
    pub connection: Connection,
}

/// Runs `sigil get`, writing to stdout.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let (client, namespace) = args.connection.connect().await?;
    let text = get(&client, &namespace, &args).await?;
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

fn selection(args: &Args) -> anyhow::Result<(Vec<SigilKind>, Option<String>)> {
    match (args.kind.as_deref(), &args.name) {
        (None, None) | (Some("all"), None) => Ok((kinds(), None)),
        (Some(reference), None) if reference.contains('/') => {
            let (kind, name) = parse_reference(reference)?;
            Ok((vec![kind], Some(name)))
        }
        (Some(kind), name) if kind != "all" => Ok((vec![find_kind(kind)?], name.clone())),
        _ => anyhow::bail!("a NAME needs a KIND: sigil get sync NAME"),
    }
}

/// The objects of a kind, sorted by namespace and name.
async fn list(
    client: &kube::Client,
    kind: &SigilKind,
    namespace: Option<&str>,
    name: Option<&str>,
) -> anyhow::Result<Vec<DynamicObject>> {
    let api = kind.api(client, namespace);
    let mut objects = match name {
        Some(name) => vec![api.get(name).await.map_err(|e| match e {
            kube::Error::Api(status) if status.code == 404 => anyhow::anyhow!(
                "{} {name:?} not found{}",
                kind.kind(),
                namespace
                    .filter(|_| kind.namespaced)
                    .map(|ns| format!(" in namespace {ns}"))
                    .unwrap_or_default()
            ),
            other => anyhow::anyhow!("cannot get {} {name}: {other}", kind.kind()),
        })?],
        None => {
            api.list(&ListParams::default())
                .await
                .map_err(|e| anyhow::anyhow!("cannot list {}s: {e}", kind.kind()))?
                .items
        }
    };
    objects.sort_by_key(|o| (o.metadata.namespace.clone(), o.metadata.name.clone()));
    Ok(objects)
}

/// What `sigil get` prints.
pub async fn get(client: &kube::Client, namespace: &str, args: &Args) -> anyhow::Result<String> {
    let (selected, name) = selection(args)?;
    let scope = (!args.all_namespaces).then_some(namespace);
    let mut found: Vec<(SigilKind, Vec<DynamicObject>)> = Vec::new();
    for kind in selected {
        let objects = list(client, &kind, scope, name.as_deref()).await?;
        found.push((kind, objects));
    }
    if let Some(format @ (Format::Json | Format::Yaml)) = args.output {
        let items: Vec<Value> = found
            .iter()
            .flat_map(|(_, objects)| objects.iter().map(as_value))
            .collect();
        let value = match (&name, items.as_slice()) {
            (Some(_), [one]) => one.clone(),
            _ => {
                json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
            }
        };
        return write_structured(format, &value);
    }
    let wide = args.output == Some(Format::Wide);
    let several = found.len() > 1;
    let blocks: Vec<String> = found
        .iter()
        .filter(|(_, objects)| !objects.is_empty())
        .map(|(kind, objects)| block(kind, objects, args.all_namespaces, wide, several))
        .collect();
    if blocks.is_empty() {
        let place = if args.all_namespaces {
            String::new()
        } else {
            format!(" in {namespace} namespace")
        };
        eprintln!("No resources found{place}.");
    }
    Ok(blocks.join("\n"))
}

/// The kind-specific column.
fn detail(kind: &SigilKind, object: &Value) -> String {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match kind.kind() {
        "GitSource" => text("/status/artifact/revision"),
        "Sync" => text("/status/lastAppliedRevision"),
        "SealedSecret" => text("/status/keyFingerprint"),
        "ExternalSecret" => match object
            .pointer("/status/refreshTime")
            .and_then(Value::as_str)
        {
            Some(time) => format!("{} ago", age_since(Some(time))),
            None => "never".into(),
        },
        "SecretStore" | "ClusterSecretStore" => object
            .pointer("/spec/provider")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn block(
    kind: &SigilKind,
    objects: &[DynamicObject],
    all_namespaces: bool,
    wide: bool,
    prefixed: bool,
) -> String {
    let mut headers = Vec::new();
    if all_namespaces {
        headers.push("NAMESPACE");
    }
    headers.extend(["NAME", "READY", "REASON", kind.detail_header]);
    if wide && kind.suspendable {
        headers.push("SUSPENDED");
    }
    headers.push("AGE");
    if wide {
        headers.push("MESSAGE");
    }
    let rows: Vec<Vec<String>> = objects
        .iter()
        .map(|object| {
            let value = as_value(object);
            let (ready, reason, message) = ready_of(&value);
            let name = object.metadata.name.clone().unwrap_or_default();
            let mut row = Vec::new();
            if all_namespaces {
                row.push(object.metadata.namespace.clone().unwrap_or_default());
            }
            row.push(if prefixed {
                format!("{}/{name}", kind.short())
            } else {
                name
            });
            row.extend([ready, reason, detail(kind, &value)]);
            if wide && kind.suspendable {
                let suspended = value
                    .pointer("/spec/suspend")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                row.push(if suspended { "True" } else { "False" }.into());
            }
            row.push(age_since(
                object
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .as_deref(),
            ));
            if wide {
                row.push(message.replace('\n', " "));
            }
            row
        })
        .collect();
    table(&headers, &rows)
}
