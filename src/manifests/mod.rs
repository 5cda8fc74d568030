//! Manifests from Git to the cluster: parse, validate (all before applying any), order, apply
//! with server-side apply, keep an inventory, prune, diff, and refuse plaintext Secrets.
//!
//! The pieces, in the order a Sync uses them:
//! * [`source`]: which files are manifests, and reading them from a local folder;
//! * [`parse`]: files → documents with their file and line (`kind: List` flattened);
//! * [`plaintext`]: the guard against `kind: Secret` with values in Git;
//! * [`plan`]: every document validated against discovery, namespaces defaulted, ownership
//!   labels added, ordered CRDs → Namespaces → the rest;
//! * [`apply`]: server-side apply as `sigil`, no write when a dry run equals the live object
//!   (and no dry run when [`fields`] shows from `managedFields` that nothing would change);
//! * [`prune`]: deleting what left Git, with its guards;
//! * [`ignore`], [`ssa`]: fields left to other controllers (`spec.ignore[]`) and per-object
//!   apply policies (`sigil.dev/ssa`, `sigil.dev/force`); [`selector`]: label selectors; [`pointer`]:
//!   JSON pointers;
//! * [`health`]: kstatus rules, whether an applied object reached what its spec asks for;
//! * [`health_expr`]: `spec.healthCheckExprs`, CEL expressions that judge custom kinds instead;
//! * [`substitute`]: Flux's post-build `${var}` substitution, with the variables [`variables`]
//!   reads from `spec.postBuild`;
//! * [`wait`]: polling applied objects until they are healthy, within a timeout;
//! * [`diff`]: a readable diff of live against the dry-run result, Secret values masked.

pub mod apply;
pub mod client;
pub mod diff;
pub mod discovery;
pub mod fields;
pub mod health;
pub mod health_expr;
pub mod ignore;
pub mod object;
pub mod parse;
pub mod pipeline;
pub mod plaintext;
pub mod plan;
pub mod pointer;
pub mod prune;
pub mod render;
pub mod selector;
pub mod sops;
pub mod source;
pub mod ssa;
pub mod substitute;
pub mod variables;
pub mod wait;

pub use apply::{Applied, ApplyReport, Mode, Outcome};
pub use client::Target;
pub use discovery::Resolver;
pub use object::Owner;
pub use parse::{Manifest, ParseError};
pub use plan::{Desired, Plan, PlanOptions, Problem, Problems};

/// Label naming the Sync that applied an object.
pub const SYNC_NAME_LABEL: &str = "sigil.dev/sync-name";
/// Label naming the namespace of the Sync that applied an object.
pub const SYNC_NAMESPACE_LABEL: &str = "sigil.dev/sync-namespace";
/// `disabled` on an object (in Git or live): the Sync neither applies, heals nor prunes it.
pub const RECONCILE_ANNOTATION: &str = "sigil.dev/reconcile";
/// On a Namespace or CRD: `"true"` lets prune delete it; on anything: `"false"` keeps it.
pub const PRUNE_ANNOTATION: &str = "sigil.dev/prune";
/// `Merge`, `IfNotPresent` or `Ignore` on a manifest: how it is applied (see [`ssa`]).
pub const SSA_ANNOTATION: &str = "sigil.dev/ssa";
/// `enabled` on a manifest: an immutable-field error deletes and recreates the object.
pub const FORCE_ANNOTATION: &str = "sigil.dev/force";
