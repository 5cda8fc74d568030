//! `sigil tree sync/NAME`: a Sync's inventory as a tree with each object's health (kstatus
//! rules, [`crate::manifests::health`], or the Sync's `healthCheckExprs` for the kinds they
//! name), descending into Syncs it applied, like `flux tree ks`.

use std::collections::HashSet;
use std::io::Write;

use serde_json::{Value, json};

use super::{Connection, Format, Verdict, as_value, parse_reference, ready_of, write_structured};
use crate::api::sync::InventoryEntry;
use crate::manifests::health::{Health, assess};
use crate::manifests::health_expr::HealthExprs;
use crate::manifests::object::group_of;
use crate::manifests::wait::live_health;
use crate::manifests::{Resolver, Target};

/// How deep nested Syncs are followed.
const MAX_DEPTH: usize = 8;

/// Arguments of `sigil tree`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `sync/NAME`.
    pub reference: String,
    /// `yaml`/`json`: the tree as nested objects (`wide` is the default view).
    #[arg(long, short = 'o', value_enum)]
    pub output: Option<Format>,
    #[command(flatten)]
    pub connection: Connection,
}

/// One object of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// `Kind/namespace/name` or `Kind/name`.
    pub name: String,
    pub health: Health,
    pub children: Vec<Node>,
}

impl Node {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "health": self.health.label(),
            "message": self.health.message(),
            "children": self.children.iter().map(Node::to_json).collect::<Vec<_>>(),
        })
    }

    /// Every node that is not Current, with its path.
    fn unhealthy(&self) -> Vec<&Node> {
        let mut out: Vec<&Node> = Vec::new();
        if !self.health.is_current() {
            out.push(self);
        }
        for child in &self.children {
            out.extend(child.unhealthy());
        }
        out
    }
}

/// Runs `sigil tree`; exits 3 when an object is not Current.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let (client, namespace) = args.connection.connect().await?;
    let (kind, name) = parse_reference(&args.reference)?;
    anyhow::ensure!(
        kind.kind() == "Sync",
        "sigil tree shows a Sync's inventory: expected sync/NAME, got {}",
        args.reference
    );
    let resolver = Resolver::new(client.clone());
    let mut seen = HashSet::new();
    let root = sync_node(&client, &resolver, &namespace, &name, 0, &mut seen).await?;
    let text = match args.output {
        Some(format @ (Format::Json | Format::Yaml)) => write_structured(format, &root.to_json())?,
        _ => render(&root),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    let unhealthy = root.unhealthy();
    if let Some(first) = unhealthy.first() {
        return Err(Verdict::not_ready(format!(
            "{} object(s) not Current, first {}: {}",
            unhealthy.len(),
            first.name,
            first.health
        )));
    }
    Ok(())
}

fn sync_health(sync: &Value) -> Health {
    let (status, reason, message) = ready_of(sync);
    let text = if reason.is_empty() {
        message
    } else {
        format!("{reason}: {message}")
    };
    // A Sync is judged like any object with conditions (Reconciling/Stalled/Ready).
    match assess(Some(sync)) {
        Health::Current(_) if status == "True" => Health::Current(text),
        other => other,
    }
}

async fn sync_node(
    client: &kube::Client,
    resolver: &Resolver,
    namespace: &str,
    name: &str,
    depth: usize,
    seen: &mut HashSet<(String, String)>,
) -> anyhow::Result<Node> {
    let kind = super::find_kind("sync")?;
    let object = kind
        .api(client, Some(namespace))
        .get_opt(name)
        .await
        .map_err(|e| anyhow::anyhow!("cannot get Sync {namespace}/{name}: {e}"))?
        .ok_or_else(|| anyhow::anyhow!("Sync {namespace}/{name} not found"))?;
    let value = as_value(&object);
    seen.insert((namespace.to_string(), name.to_string()));
    let inventory: Vec<InventoryEntry> = value
        .pointer("/status/inventory")
        .cloned()
        .map(serde_json::from_value)
        .transpose()?
        .unwrap_or_default();
    // An invalid expression is the Sync's own failure (its Ready says so); kstatus judges then.
    let exprs = value
        .pointer("/spec/healthCheckExprs")
        .and_then(|e| serde_json::from_value(e.clone()).ok())
        .and_then(|e: Vec<_>| HealthExprs::compile(&e).ok())
        .unwrap_or_default();
    let mut children = Vec::new();
    for entry in inventory {
        let node = entry_node(client, resolver, &entry, &exprs, depth, seen);
        children.push(Box::pin(node).await);
    }
    Ok(Node {
        name: format!("Sync/{namespace}/{name}"),
        health: sync_health(&value),
        children,
    })
}

fn entry_name(entry: &InventoryEntry) -> String {
    if entry.namespace.is_empty() {
        format!("{}/{}", entry.kind, entry.name)
    } else {
        format!("{}/{}/{}", entry.kind, entry.namespace, entry.name)
    }
}

async fn entry_node(
    client: &kube::Client,
    resolver: &Resolver,
    entry: &InventoryEntry,
    exprs: &HealthExprs,
    depth: usize,
    seen: &mut HashSet<(String, String)>,
) -> Node {
    let is_sync = group_of(&entry.api_version) == crate::api::GROUP && entry.kind == "Sync";
    let key = (entry.namespace.clone(), entry.name.clone());
    if is_sync && depth < MAX_DEPTH && !seen.contains(&key) {
        return match sync_node(
            client,
            resolver,
            &entry.namespace,
            &entry.name,
            depth + 1,
            seen,
        )
        .await
        {
            Ok(node) => node,
            Err(e) => Node {
                name: entry_name(entry),
                health: Health::InProgress(e.to_string()),
                children: Vec::new(),
            },
        };
    }
    Node {
        name: entry_name(entry),
        health: live_health(&Target::new(client.clone()), resolver, entry, exprs).await,
        children: Vec::new(),
    }
}

/// The tree as text: names drawn with box characters, health aligned in a column after them.
pub fn render(root: &Node) -> String {
    let mut lines: Vec<(String, &Node)> = Vec::new();
    lines.push((root.name.clone(), root));
    walk(root, "", &mut lines);
    let width = lines
        .iter()
        .map(|(left, _)| left.chars().count())
        .max()
        .unwrap_or(0);
    let label_width = lines
        .iter()
        .map(|(_, n)| n.health.label().len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (left, node) in lines {
        let pad = width + 3 - left.chars().count();
        let label = node.health.label();
        let line = format!(
            "{left}{}{label}{}{}",
            " ".repeat(pad),
            " ".repeat(label_width + 3 - label.len()),
            node.health.message().replace('\n', " ")
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn walk<'n>(node: &'n Node, prefix: &str, lines: &mut Vec<(String, &'n Node)>) {
    let count = node.children.len();
    for (i, child) in node.children.iter().enumerate() {
        let last = i + 1 == count;
        let branch = if last { "└── " } else { "├── " };
        lines.push((format!("{prefix}{branch}{}", child.name), child));
        let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
        walk(child, &deeper, lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(name: &str, health: Health) -> Node {
        Node {
            name: name.into(),
            health,
            children: Vec::new(),
        }
    }

    #[test]
    fn trees_draw_like_flux_tree() {
        let root = Node {
            name: "Sync/gitops/apps".into(),
            health: Health::Current("ReconciliationSucceeded: applied".into()),
            children: vec![
                leaf("Namespace/apps", Health::Current("exists".into())),
                Node {
                    name: "Sync/apps/web".into(),
                    health: Health::Current("ok".into()),
                    children: vec![leaf(
                        "Deployment/apps/web",
                        Health::InProgress("ready replicas: 1/3".into()),
                    )],
                },
                leaf("ConfigMap/apps/settings", Health::Current("exists".into())),
            ],
        };
        let expected = "\
Sync/gitops/apps              Current      ReconciliationSucceeded: applied
├── Namespace/apps            Current      exists
├── Sync/apps/web             Current      ok
│   └── Deployment/apps/web   InProgress   ready replicas: 1/3
└── ConfigMap/apps/settings   Current      exists
";
        assert_eq!(render(&root), expected);
        let unhealthy = root.unhealthy();
        assert_eq!(unhealthy.len(), 1);
        assert_eq!(unhealthy[0].name, "Deployment/apps/web");
    }
}
