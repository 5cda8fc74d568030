//! From fetched values to the data of the Secret: `dataFrom` first (in order),
//! then `data` (a later key wins), then `target.template`.
//!
//! `dataFrom.find` names keys after the remote secrets with `/` replaced by
//! `_` (External Secrets Operator's default). With `template.data`, the Secret
//! holds only the rendered keys; the fetched values feed the templates.

use std::collections::{BTreeMap, HashMap};

use zeroize::Zeroizing;

use super::template::Template;
use crate::api::external_secret::{ExternalSecretSpec, FindRef, MetadataPolicy, RemoteRef};
use crate::providers::{FindQuery, ProviderError, RemoteKey, SecretValue, property};

/// Values one refresh read, shared by every ExternalSecret of the round.
pub type FetchedValues = HashMap<RemoteKey, Result<SecretValue, ProviderError>>;
/// `find` results of the round.
pub type FoundValues = HashMap<FindQuery, Result<Vec<(String, SecretValue)>, ProviderError>>;

/// The Secret an ExternalSecret asks for.
pub struct Desired {
    pub data: BTreeMap<String, Zeroizing<Vec<u8>>>,
    pub type_: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Why no Secret could be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// Every remote value is gone (the deletion policy decides).
    AllMissing(String),
    /// A value could not be read or used; `transient` when retrying may help.
    Failed { message: String, transient: bool },
    /// The spec itself is wrong (retrying without a change cannot help).
    Invalid(String),
}

/// The key and version to read for a remote ref.
pub fn remote_key(remote: &RemoteRef) -> RemoteKey {
    RemoteKey {
        metadata: remote.metadata_policy == Some(MetadataPolicy::Fetch),
        ..RemoteKey::new(remote.key.clone(), remote.version.clone())
    }
}

pub fn find_query(find: &FindRef) -> FindQuery {
    FindQuery {
        path: find.path.clone(),
        name_regexp: find.name.as_ref().map(|n| n.regexp.clone()),
        tags: find.tags.clone(),
    }
}

/// Every secret the spec reads (duplicates included; callers deduplicate).
pub fn remote_keys(spec: &ExternalSecretSpec) -> Vec<RemoteKey> {
    let from_data = spec.data.iter().map(|d| remote_key(&d.remote_ref));
    let from_extract = spec
        .data_from
        .iter()
        .filter_map(|d| d.extract.as_ref())
        .map(remote_key);
    from_data.chain(from_extract).collect()
}

/// Every `find` the spec runs.
pub fn find_queries(spec: &ExternalSecretSpec) -> Vec<FindQuery> {
    spec.data_from
        .iter()
        .filter_map(|d| d.find.as_ref())
        .map(find_query)
        .collect()
}

/// Checks the parts of a spec that need no backend.
pub fn validate(spec: &ExternalSecretSpec) -> Result<(), BuildError> {
    if spec.data.is_empty() && spec.data_from.is_empty() {
        let static_template = spec
            .target
            .template
            .as_ref()
            .is_some_and(|t| !t.data.is_empty());
        if !static_template {
            return Err(BuildError::Invalid(
                "spec: set data, dataFrom or target.template.data".into(),
            ));
        }
    }
    for (i, item) in spec.data.iter().enumerate() {
        check_key(&item.secret_key).map_err(|why| {
            BuildError::Invalid(format!(
                "spec.data[{i}].secretKey {:?}: {why}",
                item.secret_key
            ))
        })?;
        if item.remote_ref.key.is_empty() {
            return Err(BuildError::Invalid(format!(
                "spec.data[{i}].remoteRef.key: must not be empty"
            )));
        }
    }
    for (i, item) in spec.data_from.iter().enumerate() {
        match (&item.extract, &item.find) {
            (Some(extract), None) if !extract.key.is_empty() => {}
            (Some(_), None) => {
                return Err(BuildError::Invalid(format!(
                    "spec.dataFrom[{i}].extract.key: must not be empty"
                )));
            }
            (None, Some(find)) => {
                if find.path.is_none() && find.name.is_none() && find.tags.is_empty() {
                    return Err(BuildError::Invalid(format!(
                        "spec.dataFrom[{i}].find: set path, name.regexp or tags"
                    )));
                }
                if find.path.as_deref().is_some_and(|p| p.trim().is_empty()) {
                    return Err(BuildError::Invalid(format!(
                        "spec.dataFrom[{i}].find.path: must not be empty"
                    )));
                }
                if let Some(name) = &find.name {
                    regex::Regex::new(&name.regexp).map_err(|e| {
                        BuildError::Invalid(format!("spec.dataFrom[{i}].find.name.regexp: {e}"))
                    })?;
                }
            }
            _ => {
                return Err(BuildError::Invalid(format!(
                    "spec.dataFrom[{i}]: set exactly one of extract, find (a sourceRef.generatorRef must be the only dataFrom entry)"
                )));
            }
        }
    }
    validate_template(spec)
}

/// Secret data keys: `[-._a-zA-Z0-9]+`, at most 253 characters.
fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() || key.len() > 253 {
        return Err("must be 1 to 253 characters");
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("may only hold letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

fn failed(field: &str, error: &ProviderError) -> BuildError {
    BuildError::Failed {
        message: format!("{field}: {error}"),
        transient: error.is_transient(),
    }
}

/// Builds the Secret's data from the round's values.
pub fn build(
    spec: &ExternalSecretSpec,
    fetched: &FetchedValues,
    found: &FoundValues,
) -> Result<Desired, BuildError> {
    validate(spec)?;
    let mut data: BTreeMap<String, Zeroizing<Vec<u8>>> = BTreeMap::new();
    let mut sources = 0usize;
    let mut missing = Vec::new();
    let lookup = |key: &RemoteKey| -> Result<&SecretValue, ProviderError> {
        match fetched.get(key) {
            Some(Ok(value)) => Ok(value),
            Some(Err(error)) => Err(error.clone()),
            None => Err(ProviderError::Backend(format!(
                "{key}: not read this round"
            ))),
        }
    };

    for (i, item) in spec.data_from.iter().enumerate() {
        sources += 1;
        if let Some(extract) = &item.extract {
            let field = format!("spec.dataFrom[{i}].extract");
            let value = match lookup(&remote_key(extract)) {
                Ok(value) => value,
                Err(ProviderError::NotFound { key }) => {
                    missing.push(key);
                    continue;
                }
                Err(error) => return Err(failed(&field, &error)),
            };
            let map = property::extract(value, extract.property.as_deref(), &extract.key)
                .map_err(|e| failed(&field, &e))?;
            for (key, value) in map {
                check_key(&key).map_err(|why| BuildError::Failed {
                    message: format!(
                        "{field}: {}: property {key:?} cannot be a Secret key: {why}",
                        extract.key
                    ),
                    transient: false,
                })?;
                data.insert(key, value);
            }
        } else if let Some(find) = &item.find {
            let field = format!("spec.dataFrom[{i}].find");
            let results = match found.get(&find_query(find)) {
                Some(Ok(results)) => results,
                Some(Err(error)) => return Err(failed(&field, error)),
                None => {
                    return Err(BuildError::Failed {
                        message: format!("{field}: not read this round"),
                        transient: true,
                    });
                }
            };
            if results.is_empty() {
                missing.push(format!("{field} (no match)"));
            }
            for (name, value) in results {
                let key = name.trim_start_matches('/').replace('/', "_");
                check_key(&key).map_err(|why| BuildError::Failed {
                    message: format!("{field}: secret {name:?} cannot be a Secret key: {why}"),
                    transient: false,
                })?;
                data.insert(key, Zeroizing::new(value.expose().to_vec()));
            }
        }
    }

    for (i, item) in spec.data.iter().enumerate() {
        sources += 1;
        let field = format!("spec.data[{i}] (secretKey {})", item.secret_key);
        let remote = &item.remote_ref;
        let value = match lookup(&remote_key(remote)) {
            Ok(value) => value,
            Err(ProviderError::NotFound { key }) => {
                missing.push(key);
                continue;
            }
            Err(error) => return Err(failed(&field, &error)),
        };
        let selected = property::select(value, remote.property.as_deref(), &remote.key)
            .map_err(|e| failed(&field, &e))?;
        data.insert(item.secret_key.clone(), selected);
    }

    if !missing.is_empty() {
        let list = missing.join(", ");
        if missing.len() == sources {
            return Err(BuildError::AllMissing(format!(
                "not found in the store: {list}"
            )));
        }
        return Err(BuildError::Failed {
            message: format!("not found in the store: {list}"),
            transient: false,
        });
    }

    finish(spec, data)
}

/// The Secret's data from the values a generator issued (a JSON object whose
/// top-level properties become keys), through `target.template` as [`build`] does.
pub fn from_generated(
    spec: &ExternalSecretSpec,
    values: &SecretValue,
    field: &str,
) -> Result<Desired, BuildError> {
    let map = property::extract(values, None, field).map_err(|e| failed(field, &e))?;
    let mut data = BTreeMap::new();
    for (key, value) in map {
        check_key(&key).map_err(|why| BuildError::Failed {
            message: format!("{field}: property {key:?} cannot be a Secret key: {why}"),
            transient: false,
        })?;
        data.insert(key, value);
    }
    finish(spec, data)
}

/// Checks an ExternalSecret whose values come from a generator: one
/// `dataFrom[].sourceRef.generatorRef` naming a `VaultDynamicSecret`, and nothing else to read.
pub fn validate_generated(spec: &ExternalSecretSpec) -> Result<(), BuildError> {
    let invalid = |message: &str| Err(BuildError::Invalid(message.to_string()));
    if !spec.data.is_empty() || spec.data_from.len() != 1 {
        return invalid(
            "spec: an ExternalSecret reading a generator has exactly one dataFrom entry (its sourceRef.generatorRef) and no data",
        );
    }
    let Some(generator) = spec.generator_refs().next() else {
        return invalid("spec.dataFrom[0].sourceRef: set generatorRef");
    };
    if generator.api_version != format!("{}/{}", crate::api::GROUP, crate::api::VERSION)
        || generator.kind != "VaultDynamicSecret"
    {
        return Err(BuildError::Invalid(format!(
            "spec.dataFrom[0].sourceRef.generatorRef: {}/{} is not a generator sigil knows; use apiVersion {}/{}, kind VaultDynamicSecret",
            generator.api_version,
            generator.kind,
            crate::api::GROUP,
            crate::api::VERSION
        )));
    }
    if generator.name.is_empty() {
        return invalid("spec.dataFrom[0].sourceRef.generatorRef.name: must not be empty");
    }
    validate_template(spec)
}

fn validate_template(spec: &ExternalSecretSpec) -> Result<(), BuildError> {
    if let Some(template) = &spec.target.template {
        for (key, text) in &template.data {
            check_key(key).map_err(|why| {
                BuildError::Invalid(format!("spec.target.template.data.{key}: {why}"))
            })?;
            Template::parse(text).map_err(|e| {
                BuildError::Invalid(format!("spec.target.template.data.{key}: {e}"))
            })?;
        }
    }
    Ok(())
}

/// `target.template` over the values, the size limit, and the Secret's metadata.
fn finish(
    spec: &ExternalSecretSpec,
    mut data: BTreeMap<String, Zeroizing<Vec<u8>>>,
) -> Result<Desired, BuildError> {
    let template = spec.target.template.clone().unwrap_or_default();
    if !template.data.is_empty() {
        let mut rendered = BTreeMap::new();
        for (key, text) in &template.data {
            let value = Template::parse(text)
                .and_then(|t| t.render(&data))
                .map_err(|e| {
                    BuildError::Invalid(format!("spec.target.template.data.{key}: {e}"))
                })?;
            rendered.insert(key.clone(), value);
        }
        data = rendered;
    }
    let field = if template.data.is_empty() {
        "spec.data, spec.dataFrom"
    } else {
        "spec.target.template.data"
    };
    crate::secret_size::check(field, data.iter().map(|(k, v)| (k.as_str(), v.len()))).map_err(
        |e| BuildError::Failed {
            message: e.to_string(),
            transient: false,
        },
    )?;
    let metadata = template.metadata.unwrap_or_default();
    Ok(Desired {
        data,
        type_: template.type_.unwrap_or_else(|| "Opaque".to_string()),
        labels: metadata.labels,
        annotations: metadata.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::TemplateMetadata;
    use crate::api::external_secret::{
        ExternalSecretData, ExternalSecretDataFrom, ExternalSecretTemplate, FindName,
    };

    fn value(text: &str) -> Result<SecretValue, ProviderError> {
        Ok(SecretValue::new(text.as_bytes().to_vec()))
    }

    fn data(secret_key: &str, key: &str, property: Option<&str>) -> ExternalSecretData {
        ExternalSecretData {
            secret_key: secret_key.into(),
            remote_ref: RemoteRef {
                key: key.into(),
                property: property.map(str::to_string),
                version: None,
                metadata_policy: None,
            },
        }
    }

    fn shown(desired: &Desired) -> BTreeMap<&str, &str> {
        desired
            .data
            .iter()
            .map(|(k, v)| (k.as_str(), std::str::from_utf8(v).expect("utf-8")))
            .collect()
    }

    fn fetched() -> FetchedValues {
        HashMap::from([
            (
                RemoteKey::new("db", None),
                value(r#"{"user":"app","password":"pw"}"#),
            ),
            (RemoteKey::new("api", None), value("token-1")),
            (
                RemoteKey::new("gone", None),
                Err(ProviderError::NotFound { key: "gone".into() }),
            ),
        ])
    }

    #[test]
    fn data_and_extract_merge_with_data_winning() {
        let spec = ExternalSecretSpec {
            data: vec![
                data("api-token", "api", None),
                data("user", "db", Some("password")),
            ],
            data_from: vec![ExternalSecretDataFrom {
                extract: Some(RemoteRef {
                    key: "db".into(),
                    ..Default::default()
                }),
                find: None,
                source_ref: None,
            }],
            ..Default::default()
        };
        let desired = build(&spec, &fetched(), &FoundValues::new()).expect("builds");
        assert_eq!(
            shown(&desired),
            BTreeMap::from([("api-token", "token-1"), ("password", "pw"), ("user", "pw")])
        );
        assert_eq!(desired.type_, "Opaque");
    }

    #[test]
    fn find_results_become_keys_with_slashes_replaced() {
        let find = FindRef {
            name: Some(FindName {
                regexp: "^team/".into(),
            }),
            ..Default::default()
        };
        let spec = ExternalSecretSpec {
            data_from: vec![ExternalSecretDataFrom {
                extract: None,
                find: Some(find.clone()),
                source_ref: None,
            }],
            ..Default::default()
        };
        let found = FoundValues::from([(
            find_query(&find),
            Ok(vec![
                ("team/a".to_string(), SecretValue::new(b"1".to_vec())),
                ("team/b".to_string(), SecretValue::new(b"2".to_vec())),
            ]),
        )]);
        let desired = build(&spec, &FetchedValues::new(), &found).expect("builds");
        assert_eq!(
            shown(&desired),
            BTreeMap::from([("team_a", "1"), ("team_b", "2")])
        );
    }

    #[test]
    fn templates_replace_the_data_and_set_metadata() {
        let spec = ExternalSecretSpec {
            data: vec![
                data("user", "db", Some("user")),
                data("password", "db", Some("password")),
            ],
            target: crate::api::external_secret::ExternalSecretTarget {
                template: Some(ExternalSecretTemplate {
                    type_: Some("kubernetes.io/basic-auth".into()),
                    metadata: Some(TemplateMetadata {
                        labels: BTreeMap::from([("team".into(), "a".into())]),
                        annotations: BTreeMap::new(),
                    }),
                    data: BTreeMap::from([(
                        "url".into(),
                        "postgres://{{ .user }}:{{ .password }}@db".into(),
                    )]),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let desired = build(&spec, &fetched(), &FoundValues::new()).expect("builds");
        assert_eq!(
            shown(&desired),
            BTreeMap::from([("url", "postgres://app:pw@db")])
        );
        assert_eq!(desired.type_, "kubernetes.io/basic-auth");
        assert_eq!(desired.labels["team"], "a");
    }

    #[test]
    fn missing_values_distinguish_all_gone_from_some_gone() {
        let all_gone = ExternalSecretSpec {
            data: vec![data("x", "gone", None)],
            ..Default::default()
        };
        assert!(matches!(
            build(&all_gone, &fetched(), &FoundValues::new()),
            Err(BuildError::AllMissing(_))
        ));
        let some_gone = ExternalSecretSpec {
            data: vec![data("x", "gone", None), data("y", "api", None)],
            ..Default::default()
        };
        assert!(matches!(
            build(&some_gone, &fetched(), &FoundValues::new()),
            Err(BuildError::Failed {
                transient: false,
                ..
            })
        ));
    }

    #[test]
    fn errors_name_fields_but_not_values() {
        let spec = ExternalSecretSpec {
            data: vec![data("x", "db", Some("nope"))],
            ..Default::default()
        };
        let Err(BuildError::Failed { message, .. }) = build(&spec, &fetched(), &FoundValues::new())
        else {
            panic!("expected a failure");
        };
        assert!(
            message.contains("spec.data[0]") && message.contains("nope"),
            "{message}"
        );
        assert!(!message.contains("pw"), "{message}");
        let bad_key = ExternalSecretSpec {
            data: vec![data("no/slash", "db", None)],
            ..Default::default()
        };
        assert!(
            matches!(validate(&bad_key), Err(BuildError::Invalid(m)) if m.contains("secretKey"))
        );
        let empty = ExternalSecretSpec::default();
        assert!(matches!(validate(&empty), Err(BuildError::Invalid(_))));
    }

    fn generated_spec(kind: &str) -> ExternalSecretSpec {
        ExternalSecretSpec {
            data_from: vec![ExternalSecretDataFrom {
                source_ref: Some(crate::api::external_secret::DataFromSourceRef {
                    generator_ref: Some(crate::api::external_secret::GeneratorRef {
                        api_version: "sigil.dev/v1alpha1".into(),
                        kind: kind.into(),
                        name: "pg".into(),
                    }),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn generator_specs_name_one_known_generator_and_nothing_else() {
        assert_eq!(
            validate_generated(&generated_spec("VaultDynamicSecret")),
            Ok(())
        );
        let unknown = validate_generated(&generated_spec("Password"));
        assert!(
            matches!(&unknown, Err(BuildError::Invalid(m)) if m.contains("Password")),
            "{unknown:?}"
        );
        let mut mixed = generated_spec("VaultDynamicSecret");
        mixed.data.push(data("extra", "db", None));
        assert!(matches!(
            validate_generated(&mixed),
            Err(BuildError::Invalid(_))
        ));
        assert!(
            matches!(validate(&generated_spec("VaultDynamicSecret")), Err(BuildError::Invalid(m)) if m.contains("sourceRef")),
            "the store loop refuses generator entries"
        );
    }

    #[test]
    fn generated_values_become_keys_through_the_template() {
        let issued = SecretValue::new(br#"{"username":"v-app-1","password":"pw"}"#.to_vec());
        let plain =
            from_generated(&generated_spec("VaultDynamicSecret"), &issued, "g").expect("object");
        assert_eq!(
            shown(&plain),
            BTreeMap::from([("password", "pw"), ("username", "v-app-1")])
        );
        let mut templated = generated_spec("VaultDynamicSecret");
        templated.target.template = Some(ExternalSecretTemplate {
            data: BTreeMap::from([(
                "url".to_string(),
                "postgres://{{ .username }}:{{ .password }}@db".to_string(),
            )]),
            ..Default::default()
        });
        let rendered = from_generated(&templated, &issued, "g").expect("renders");
        assert_eq!(
            shown(&rendered),
            BTreeMap::from([("url", "postgres://v-app-1:pw@db")])
        );
        let not_object = SecretValue::new(b"\"text\"".to_vec());
        assert!(from_generated(&generated_spec("VaultDynamicSecret"), &not_object, "g").is_err());
    }
}
