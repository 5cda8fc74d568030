//! The embedded API server (`kube_devserver`) driven with the kube client, checked
//! against the Kubernetes API conventions: status codes and reasons, resource
//! versions and conflicts, watch semantics, apply, deletion and garbage
//! collection, CRDs, RBAC for impersonated users.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, Preconditions, VersionMatch, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube_devserver::DevOptions;
use serde_json::{Value, json};

use crate::support::dev::{self, Cluster, api_error, eventually};

const NS: &str = "apps";

fn obj<K: serde::de::DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("valid object")
}

fn cm(name: &str, data: Value) -> ConfigMap {
    obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}))
}

async fn cluster() -> Cluster {
    let c = dev::start().await;
    c.namespace(NS).await;
    c
}

fn configmaps(c: &Cluster) -> Api<ConfigMap> {
    Api::namespaced(c.client.clone(), NS)
}

fn rv_of<K: kube::Resource>(k: &K) -> String {
    k.meta().resource_version.clone().expect("resourceVersion")
}

/// A raw request: status code, content type and body.
async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, String, Value) {
    let mut req = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let req = req.body(kube::client::Body::from(body)).expect("request");
    let resp = client.send(req).await.expect("send");
    let code = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = resp.into_body().collect_bytes().await.expect("body");
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (code, ct, value)
}

async fn next_event<K, S>(stream: &mut S) -> WatchEvent<K>
where
    S: Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a watch event within 10 s")
        .expect("the watch stays open")
        .expect("a decodable watch event")
}

/// The next event that is not a bookmark.
async fn next_change<K, S>(stream: &mut S) -> WatchEvent<K>
where
    S: Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    loop {
        match next_event(stream).await {
            WatchEvent::Bookmark(_) => continue,
            other => return other,
        }
    }
}

fn name_of(event: &WatchEvent<ConfigMap>) -> (&'static str, String) {
    match event {
        WatchEvent::Added(o) => ("ADDED", o.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Modified(o) => ("MODIFIED", o.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Deleted(o) => ("DELETED", o.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Bookmark(_) => ("BOOKMARK", String::new()),
        WatchEvent::Error(e) => ("ERROR", e.message.clone()),
    }
}

// ---------------------------------------------------------------- transport

#[tokio::test]
async fn requests_need_the_bearer_token_but_health_checks_do_not() {
    let c = cluster().await;
    let wrong = c.client_with_token("not-the-token").await;
    let (code, reason, _) = api_error(
        Api::<ConfigMap>::all(wrong.clone())
            .list(&ListParams::default())
            .await,
    );
    assert_eq!((code, reason.as_str()), (401, "Unauthorized"));
    for path in ["/healthz", "/livez", "/readyz"] {
        let req = http::Request::get(path).body(Vec::new()).expect("request");
        assert_eq!(wrong.request_text(req).await.expect("health check"), "ok");
    }
    configmaps(&c)
        .list(&ListParams::default())
        .await
        .expect("the token is accepted");
}

#[tokio::test]
async fn tls_offers_http2_and_http1_with_a_certificate_for_the_loopback_address() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let c = cluster().await;
    let kubeconfig = c.server.kubeconfig();
    let ca_data = kubeconfig.clusters[0]
        .cluster
        .as_ref()
        .and_then(|cl| cl.certificate_authority_data.clone())
        .expect("CA data in the kubeconfig");
    let pem = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, ca_data)
        .expect("base64 CA");
    let addr = c.server.addr();
    tokio::task::spawn_blocking(move || {
        for (offer, expected) in [
            (vec![b"h2".to_vec(), b"http/1.1".to_vec()], b"h2".to_vec()),
            (vec![b"http/1.1".to_vec()], b"http/1.1".to_vec()),
        ] {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots
                    .add(cert.expect("PEM certificate"))
                    .expect("trust the CA");
            }
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            config.alpn_protocols = offer;
            let name = ServerName::try_from("127.0.0.1").expect("server name");
            let mut conn =
                rustls::ClientConnection::new(Arc::new(config), name).expect("client connection");
            let mut sock = std::net::TcpStream::connect(addr).expect("connect");
            while conn.is_handshaking() {
                conn.complete_io(&mut sock)
                    .expect("TLS handshake verifies against the kubeconfig's CA");
            }
            assert_eq!(conn.alpn_protocol(), Some(expected.as_slice()));
        }
    })
    .await
    .expect("handshake task");
}

// ---------------------------------------------------------------- discovery

#[tokio::test]
async fn discovery_lists_builtins_and_installed_crds() {
    let c = dev::start_with(DevOptions {
        install_crds: sigil::api::crds(),
        ..DevOptions::default()
    })
    .await;
    let version = c.client.apiserver_version().await.expect("/version");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "35")
    );

    let discovery = kube::Discovery::new(c.client.clone())
        .run()
        .await
        .expect("discovery");
    for (group, version, kind, plural) in [
        ("", "v1", "ConfigMap", "configmaps"),
        ("apps", "v1", "Deployment", "deployments"),
        ("events.k8s.io", "v1", "Event", "events"),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
        ),
        ("sigil.dev", "v1alpha1", "SealedSecret", "sealedsecrets"),
        (
            "sigil.dev",
            "v1alpha1",
            "ClusterSecretStore",
            "clustersecretstores",
        ),
    ] {
        let (ar, caps) = discovery
            .resolve_gvk(&GroupVersionKind::gvk(group, version, kind))
            .unwrap_or_else(|| panic!("{kind} is discoverable"));
        assert_eq!(ar.plural, plural);
        assert_eq!(
            caps.scope == kube::discovery::Scope::Cluster,
            matches!(kind, "ClusterRoleBinding" | "ClusterSecretStore")
        );
    }

    let (code, ct, body) = raw(
        &c.client,
        "GET",
        "/apis",
        &[(
            "Accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )],
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        ct.contains("as=APIGroupDiscoveryList") && ct.contains("v=v2"),
        "{ct}"
    );
    assert_eq!(body["kind"], "APIGroupDiscoveryList");
    let apps = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|g| g["metadata"]["name"] == "apps")
        .expect("apps group");
    let deploy = apps["versions"][0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["resource"] == "deployments")
        .expect("deployments");
    assert_eq!(deploy["shortNames"], json!(["deploy"]));
    assert_eq!(deploy["subresources"][0]["subresource"], "status");

    let (code, ct, body) = raw(
        &c.client,
        "GET",
        "/api",
        &[("Accept", "application/json")],
        None,
    )
    .await;
    assert_eq!((code, ct.as_str()), (200, "application/json"));
    assert_eq!(body["kind"], "APIVersions");

    let (code, _, index) = raw(&c.client, "GET", "/openapi/v3", &[], None).await;
    assert_eq!(code, 200);
    let url = index["paths"]["apis/sigil.dev/v1alpha1"]["serverRelativeURL"]
        .as_str()
        .expect("sigil.dev in the OpenAPI index")
        .to_string();
    let (code, _, doc) = raw(&c.client, "GET", &url, &[], None).await;
    assert_eq!(code, 200);
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    assert!(
        schemas
            .values()
            .any(|s| s["x-kubernetes-group-version-kind"][0]["kind"] == "SealedSecret")
    );
}

// ---------------------------------------------------------------- create / get / errors

#[tokio::test]
async fn create_fills_system_metadata_and_get_returns_it() {
    let c = cluster().await;
    let api = configmaps(&c);
    let created = api
        .create(&PostParams::default(), &cm("app", json!({"a": "1"})))
        .await
        .expect("create");
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    assert!(
        meta.resource_version
            .as_deref()
            .is_some_and(|rv| rv.parse::<u64>().is_ok())
    );
    assert_eq!(meta.generation, None, "ConfigMaps do not track generation");
    assert_eq!(meta.namespace.as_deref(), Some(NS));
    let fetched = api.get("app").await.expect("get");
    assert_eq!(fetched.metadata.uid, meta.uid);
    assert_eq!(fetched.data, created.data);
    let managed = fetched
        .metadata
        .managed_fields
        .expect("managedFields recorded on create");
    assert_eq!(managed[0].operation.as_deref(), Some("Update"));

    let generated = api
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"generateName": "job-"}, "data": {}})),
        )
        .await
        .expect("generateName");
    let name = generated.metadata.name.expect("a generated name");
    assert!(name.starts_with("job-") && name.len() == 9, "{name}");

    let (code, reason, status) = api_error(
        api.create(&PostParams::default(), &cm("app", json!({})))
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(status.message, "configmaps \"app\" already exists");

    let (code, reason, status) = api_error(api.get("missing").await);
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    let details = status.details.expect("details");
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("missing", "configmaps")
    );

    let (code, reason, status) = api_error(
        api.create(&PostParams::default(), &cm("Bad_Name", json!({})))
            .await,
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    let causes = status.details.expect("details").causes;
    assert_eq!(causes[0].field, "metadata.name");
    assert_eq!(causes[0].reason, "FieldValueInvalid");

    let (code, reason, _) = api_error(
        api.create(&PostParams::default(), &obj(json!({"metadata": {}})))
            .await,
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
}

#[tokio::test]
async fn namespaced_objects_need_a_live_namespace() {
    let c = cluster().await;
    let missing: Api<ConfigMap> = Api::namespaced(c.client.clone(), "nowhere");
    let (code, reason, status) = api_error(
        missing
            .create(&PostParams::default(), &cm("x", json!({})))
            .await,
    );
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    assert_eq!(status.details.expect("details").kind, "namespaces");

    c.namespace("doomed").await;
    let doomed: Api<ConfigMap> = Api::namespaced(c.client.clone(), "doomed");
    doomed
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})),
        )
        .await
        .expect("create");
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("delete namespace");
    let (code, reason, status) = api_error(
        doomed
            .create(&PostParams::default(), &cm("late", json!({})))
            .await,
    );
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert!(
        status.message.contains("because it is being terminated"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn method_not_allowed_and_not_acceptable() {
    let c = cluster().await;
    let (code, _, status) = raw(
        &c.client,
        "PATCH",
        "/api/v1/namespaces/apps/configmaps",
        &[("Content-Type", "application/merge-patch+json")],
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );
    let (code, _, status) = raw(
        &c.client,
        "POST",
        "/api/v1/configmaps",
        &[("Content-Type", "application/json")],
        Some(json!({"metadata": {"name": "x"}})),
    )
    .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );
    let (code, _, status) = raw(
        &c.client,
        "GET",
        "/api/v1/namespaces/apps/configmaps",
        &[("Accept", "application/vnd.kubernetes.protobuf")],
        None,
    )
    .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (406, Some("NotAcceptable"))
    );
    let (code, _, status) = raw(
        &c.client,
        "GET",
        "/apis/nothing.example.com/v1/things",
        &[],
        None,
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));
}

#[tokio::test]
async fn tables_for_kubectl_get() {
    let c = cluster().await;
    configmaps(&c)
        .create(
            &PostParams::default(),
            &cm("app", json!({"a": "1", "b": "2"})),
        )
        .await
        .expect("create");
    let (code, _, table) = raw(
        &c.client,
        "GET",
        "/api/v1/namespaces/apps/configmaps?labelSelector=",
        &[(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )],
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Name", "Data", "Age"]);
    let row = table["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["cells"][0] == "app")
        .expect("row for app");
    assert_eq!(row["cells"][1], 2);
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
}

// ---------------------------------------------------------------- update

#[tokio::test]
async fn stale_updates_conflict_and_unchanged_writes_keep_the_version() {
    let c = cluster().await;
    let api = configmaps(&c);
    let v1 = api
        .create(&PostParams::default(), &cm("app", json!({"a": "1"})))
        .await
        .expect("create");
    let mut v2 = v1.clone();
    v2.data = Some([("a".to_string(), "2".to_string())].into());
    let v2 = api
        .replace("app", &PostParams::default(), &v2)
        .await
        .expect("update");
    assert_ne!(rv_of(&v2), rv_of(&v1));

    let mut stale = v1.clone();
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    let (code, reason, status) =
        api_error(api.replace("app", &PostParams::default(), &stale).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(
        status.message.contains("the object has been modified"),
        "{}",
        status.message
    );
    assert_eq!(status.details.expect("details").name, "app");

    let same = api
        .replace("app", &PostParams::default(), &v2)
        .await
        .expect("no-op update");
    assert_eq!(
        rv_of(&same),
        rv_of(&v2),
        "a write that changes nothing keeps the resourceVersion"
    );

    let mut unconditional = v2.clone();
    unconditional.metadata.resource_version = None;
    unconditional.data = Some([("a".to_string(), "4".to_string())].into());
    api.replace("app", &PostParams::default(), &unconditional)
        .await
        .expect("ConfigMaps allow unconditional updates");

    let (code, _, _) = api_error(
        api.replace("ghost", &PostParams::default(), &cm("ghost", json!({})))
            .await,
    );
    assert_eq!(code, 404, "ConfigMaps are not created by PUT");
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), NS);
    let lease: Lease =
        obj(json!({"metadata": {"name": "leader"}, "spec": {"holderIdentity": "me"}}));
    let created = leases
        .replace("leader", &PostParams::default(), &lease)
        .await
        .expect("Leases are created by PUT");
    assert_eq!(
        created.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("me")
    );
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let c = cluster().await;
    let api = configmaps(&c);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answer = api
        .create(&dry, &cm("app", json!({"a": "1"})))
        .await
        .expect("dry-run create");
    assert_eq!(answer.metadata.name.as_deref(), Some("app"));
    assert!(api.get_opt("app").await.expect("get").is_none());

    api.create(&PostParams::default(), &cm("app", json!({"a": "1"})))
        .await
        .expect("create");
    let patched = api
        .patch(
            "app",
            &PatchParams::default().dry_run(),
            &Patch::Merge(json!({"data": {"a": "2"}})),
        )
        .await
        .expect("dry-run patch");
    assert_eq!(patched.data.expect("data")["a"], "2");
    assert_eq!(
        api.get("app").await.expect("get").data.expect("data")["a"],
        "1"
    );
    api.delete("app", &DeleteParams::default().dry_run())
        .await
        .expect("dry-run delete");
    assert!(api.get_opt("app").await.expect("get").is_some());
}

// ---------------------------------------------------------------- patch / apply

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let c = cluster().await;
    let api = configmaps(&c);
    api.create(
        &PostParams::default(),
        &cm("app", json!({"a": "1", "b": "2"})),
    )
    .await
    .expect("create");
    let merged = api
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .expect("merge");
    assert_eq!(
        merged
            .data
            .clone()
            .expect("data")
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        ["b", "c"]
    );
    let strategic = api
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("strategic");
    assert_eq!(strategic.metadata.labels.expect("labels")["x"], "y");
    let (code, _, patched) = raw(
        &c.client,
        "PATCH",
        "/api/v1/namespaces/apps/configmaps/app",
        &[("Content-Type", "application/json-patch+json")],
        Some(json!([{"op": "test", "path": "/data/b", "value": "2"}, {"op": "replace", "path": "/data/b", "value": "20"}])),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(patched["data"]["b"], "20");
    let (code, _, failed) = raw(
        &c.client,
        "PATCH",
        "/api/v1/namespaces/apps/configmaps/app",
        &[("Content-Type", "application/json-patch+json")],
        Some(json!([{"op": "test", "path": "/data/b", "value": "nope"}])),
    )
    .await;
    assert_eq!((code, failed["reason"].as_str()), (422, Some("Invalid")));
    let stale_rv = Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"d": "4"}}));
    let (code, reason, _) = api_error(api.patch("app", &PatchParams::default(), &stale_rv).await);
    assert_eq!(
        (code, reason.as_str()),
        (409, "Conflict"),
        "a resourceVersion in a patch is a precondition"
    );
    let (code, _, _) = api_error(
        api.patch("ghost", &PatchParams::default(), &Patch::Merge(json!({})))
            .await,
    );
    assert_eq!(code, 404);
}

#[tokio::test]
async fn server_side_apply_tracks_owners_and_conflicts() {
    let c = cluster().await;
    let api = configmaps(&c);
    let intent = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"x": "1", "y": "2"}});
    let created = api
        .patch("app", &PatchParams::apply("alice"), &Patch::Apply(&intent))
        .await
        .expect("apply creates");
    let managers: Vec<(Option<String>, Option<String>)> = created
        .metadata
        .managed_fields
        .clone()
        .expect("managedFields")
        .into_iter()
        .map(|m| (m.manager, m.operation))
        .collect();
    assert_eq!(managers, [(Some("alice".into()), Some("Apply".into()))]);

    let bob = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"y": "bob"}});
    let (code, reason, status) = api_error(
        api.patch("app", &PatchParams::apply("bob"), &Patch::Apply(&bob))
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let cause = &status.details.expect("details").causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.field.as_str()),
        ("FieldManagerConflict", ".data.y")
    );
    assert!(status.message.contains("alice"), "{}", status.message);

    let forced = api
        .patch(
            "app",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&bob),
        )
        .await
        .expect("forced apply");
    assert_eq!(forced.data.expect("data")["y"], "bob");

    let alice_less =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {}});
    let after = api
        .patch(
            "app",
            &PatchParams::apply("alice"),
            &Patch::Apply(&alice_less),
        )
        .await
        .expect("apply");
    let data = after.data.unwrap_or_default();
    assert!(
        !data.contains_key("x"),
        "a field its only manager stops applying is removed: {data:?}"
    );
    assert_eq!(
        data.get("y").map(String::as_str),
        Some("bob"),
        "a field another manager owns stays"
    );

    let (code, _, status) = raw(
        &c.client,
        "PATCH",
        "/api/v1/namespaces/apps/configmaps/app",
        &[("Content-Type", "application/apply-patch+yaml")],
        Some(intent),
    )
    .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (422, Some("Invalid")),
        "apply needs a fieldManager: {status}"
    );
}

// ---------------------------------------------------------------- list

#[tokio::test]
async fn label_and_field_selectors() {
    let c = cluster().await;
    let api = configmaps(&c);
    for (name, labels) in [
        ("a", json!({"env": "prod", "tier": "web"})),
        ("b", json!({"env": "dev"})),
        ("c", json!({"tier": "db"})),
    ] {
        api.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": name, "labels": labels}})),
        )
        .await
        .expect("create");
    }
    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect()
    };
    let cases = [
        ("env=prod", vec!["a"]),
        ("env in (prod, dev)", vec!["a", "b"]),
        ("env notin (prod),tier", vec!["c"]),
        ("!env,tier", vec!["c"]),
        ("env,env!=dev", vec!["a"]),
        ("tier in (web,db),!missing", vec!["a", "c"]),
    ];
    for (selector, expected) in cases {
        let got = names(
            api.list(&ListParams::default().labels(selector))
                .await
                .expect("list"),
        );
        assert_eq!(got, expected, "labelSelector {selector}");
    }
    let by_name = names(
        api.list(&ListParams::default().fields("metadata.name=b"))
            .await
            .expect("list"),
    );
    assert_eq!(by_name, ["b"]);
    let all: Api<ConfigMap> = Api::all(c.client.clone());
    let in_ns = names(
        all.list(
            &ListParams::default()
                .fields("metadata.namespace=apps,metadata.name!=kube-root-ca.crt"),
        )
        .await
        .expect("list"),
    );
    assert_eq!(in_ns, ["a", "b", "c"]);

    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), NS);
    secrets.create(&PostParams::default(), &obj(json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}))).await.expect("tls secret");
    secrets
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "plain"}, "stringData": {"k": "v"}})),
        )
        .await
        .expect("opaque secret");
    let tls = secrets
        .list(&ListParams::default().fields("type=kubernetes.io/tls"))
        .await
        .expect("list");
    assert_eq!(tls.items.len(), 1);

    let (code, reason, status) = api_error(
        api.list(&ListParams::default().fields("spec.nothing=1"))
            .await,
    );
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    assert!(
        status.message.contains("field label not supported"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn limit_and_continue_page_through_one_snapshot() {
    let c = cluster().await;
    let api = configmaps(&c);
    for i in 0..7 {
        api.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": format!("cm-{i}"), "labels": {"page": "yes"}}})),
        )
        .await
        .expect("create");
    }
    let lp = ListParams::default().labels("page=yes").limit(3);
    let first = api.list(&lp).await.expect("page 1");
    assert_eq!(first.items.len(), 3);
    let token = first.metadata.continue_.clone().expect("a continue token");
    api.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "cm-late", "labels": {"page": "yes"}}})),
    )
    .await
    .expect("create during paging");
    let second = api
        .list(&lp.clone().continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(second.items.len(), 3);
    assert_eq!(
        second.metadata.resource_version, first.metadata.resource_version,
        "pages share one resourceVersion"
    );
    let third = api
        .list(
            &lp.clone()
                .continue_token(second.metadata.continue_.as_deref().expect("token")),
        )
        .await
        .expect("page 3");
    assert_eq!(third.items.len(), 1);
    assert!(
        third
            .metadata
            .continue_
            .as_deref()
            .is_none_or(str::is_empty)
    );
    let all: Vec<String> = [first, second, third]
        .into_iter()
        .flat_map(|p| p.items)
        .filter_map(|o| o.metadata.name)
        .collect();
    assert_eq!(
        all,
        (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>(),
        "the object created while paging is not in this list"
    );

    let unlabeled = api
        .list(&ListParams::default().limit(2))
        .await
        .expect("list");
    assert!(
        unlabeled
            .metadata
            .remaining_item_count
            .is_some_and(|n| n > 0),
        "remainingItemCount without selectors"
    );

    let before = api
        .list(&ListParams::default().labels("page=yes"))
        .await
        .expect("list");
    let rv = before
        .metadata
        .resource_version
        .clone()
        .expect("list resourceVersion");
    api.delete("cm-0", &DeleteParams::default())
        .await
        .expect("delete");
    let exact = api
        .list(
            &ListParams::default()
                .labels("page=yes")
                .at(&rv)
                .matching(VersionMatch::Exact),
        )
        .await
        .expect("exact list");
    assert_eq!(
        exact.items.len(),
        before.items.len(),
        "an exact list shows the state at that resourceVersion"
    );
}

// ---------------------------------------------------------------- watch

#[tokio::test]
async fn watch_replays_changes_after_a_resource_version() {
    let c = cluster().await;
    let api = configmaps(&c);
    let created = api
        .create(&PostParams::default(), &cm("app", json!({"a": "1"})))
        .await
        .expect("create");
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "2"}})),
    )
    .await
    .expect("patch");
    api.delete("app", &DeleteParams::default())
        .await
        .expect("delete");
    let mut stream = api
        .watch(&WatchParams::default(), &rv_of(&created))
        .await
        .expect("watch")
        .boxed();
    assert_eq!(
        name_of(&next_change(&mut stream).await),
        ("MODIFIED", "app".into())
    );
    let deleted = next_change(&mut stream).await;
    assert_eq!(name_of(&deleted), ("DELETED", "app".into()));
    api.create(&PostParams::default(), &cm("later", json!({})))
        .await
        .expect("create");
    assert_eq!(
        name_of(&next_change(&mut stream).await),
        ("ADDED", "later".into())
    );
}

#[tokio::test]
async fn watch_from_an_expired_resource_version_is_gone() {
    let c = dev::start_with(DevOptions {
        event_history: 8,
        ..DevOptions::default()
    })
    .await;
    c.namespace(NS).await;
    let api = configmaps(&c);
    let first = api
        .create(&PostParams::default(), &cm("first", json!({})))
        .await
        .expect("create");
    for i in 0..20 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), json!({})))
            .await
            .expect("create");
    }
    let mut stream = api
        .watch(&WatchParams::default(), &rv_of(&first))
        .await
        .expect("watch starts")
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Error(e) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(
                e.message.contains("too old resource version"),
                "{}",
                e.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {:?}", name_of(&other)),
    }
}

#[tokio::test]
async fn watch_without_a_version_starts_with_the_current_state() {
    let c = cluster().await;
    let api = configmaps(&c);
    api.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "a", "labels": {"w": "1"}}})),
    )
    .await
    .expect("create");
    api.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "b", "labels": {"w": "1"}}})),
    )
    .await
    .expect("create");
    let wp = WatchParams::default().labels("w=1");
    let mut stream = api.watch(&wp, "0").await.expect("watch").boxed();
    assert_eq!(
        name_of(&next_change(&mut stream).await),
        ("ADDED", "a".into())
    );
    assert_eq!(
        name_of(&next_change(&mut stream).await),
        ("ADDED", "b".into())
    );
}

#[tokio::test]
async fn streaming_lists_end_the_initial_events_with_a_bookmark() {
    let c = cluster().await;
    let api = configmaps(&c);
    for name in ["a", "b"] {
        api.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": name, "labels": {"s": "1"}}})),
        )
        .await
        .expect("create");
    }
    let wp = WatchParams::streaming_lists().labels("s=1");
    let mut stream = api.watch(&wp, "0").await.expect("watch").boxed();
    assert_eq!(
        name_of(&next_event(&mut stream).await),
        ("ADDED", "a".into())
    );
    assert_eq!(
        name_of(&next_event(&mut stream).await),
        ("ADDED", "b".into())
    );
    match next_event(&mut stream).await {
        WatchEvent::Bookmark(b) => {
            assert_eq!(
                b.metadata
                    .annotations
                    .get("k8s.io/initial-events-end")
                    .map(String::as_str),
                Some("true")
            );
            assert!(!b.metadata.resource_version.is_empty());
        }
        other => panic!(
            "expected the initial-events-end bookmark, got {:?}",
            name_of(&other)
        ),
    }
    let (code, _, status) = raw(
        &c.client,
        "GET",
        "/api/v1/namespaces/apps/configmaps?watch=true&sendInitialEvents=true",
        &[],
        None,
    )
    .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (422, Some("Invalid")),
        "sendInitialEvents needs resourceVersionMatch=NotOlderThan"
    );
}

#[tokio::test]
async fn bookmarks_arrive_and_timeouts_end_the_watch() {
    let c = dev::start_with(DevOptions {
        bookmark_interval: Duration::from_millis(200),
        ..DevOptions::default()
    })
    .await;
    c.namespace(NS).await;
    let api = configmaps(&c);
    let list = api.list(&ListParams::default()).await.expect("list");
    let rv = list
        .metadata
        .resource_version
        .expect("list resourceVersion");
    let started = std::time::Instant::now();
    let mut stream = api
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .expect("watch")
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Bookmark(b) => assert!(b.metadata.resource_version.parse::<u64>().is_ok()),
        other => panic!("expected a bookmark, got {:?}", name_of(&other)),
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while stream.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the watch ends after timeoutSeconds");
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn selector_watches_see_objects_enter_and_leave() {
    let c = cluster().await;
    let api = configmaps(&c);
    let created = api
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "app", "labels": {"app": "web"}}})),
        )
        .await
        .expect("create");
    let mut stream = api
        .watch(&WatchParams::default().labels("app=web"), &rv_of(&created))
        .await
        .expect("watch")
        .boxed();
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": null}}})),
    )
    .await
    .expect("unlabel");
    assert_eq!(
        name_of(&next_change(&mut stream).await),
        ("DELETED", "app".into())
    );
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .expect("unrelated change");
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .expect("relabel");
    assert_eq!(
        name_of(&next_change(&mut stream).await),
        ("ADDED", "app".into())
    );
}

#[tokio::test]
async fn kube_runtime_watchers_list_then_follow() {
    let c = cluster().await;
    let api = configmaps(&c);
    api.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .expect("create");
    for config in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let mut events = watcher(api.clone(), config).boxed();
        let mut initial = Vec::new();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .expect("watcher event")
                .expect("stream open")
                .expect("no watcher error");
            match event {
                watcher::Event::Init => {}
                watcher::Event::InitApply(o) => initial.push(o.metadata.name.unwrap_or_default()),
                watcher::Event::InitDone => break,
                other => panic!("unexpected event before InitDone: {other:?}"),
            }
        }
        assert!(initial.contains(&"before".to_string()), "{initial:?}");
        let name = format!("after-{}", initial.len());
        api.create(&PostParams::default(), &cm(&name, json!({})))
            .await
            .expect("create");
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .expect("event")
                .expect("open")
                .expect("ok");
            if let watcher::Event::Apply(o) = event
                && o.metadata.name.as_deref() == Some(name.as_str())
            {
                break;
            }
        }
    }
}

// ---------------------------------------------------------------- kinds

#[tokio::test]
async fn secrets_merge_string_data_and_immutability_is_enforced() {
    let c = cluster().await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), NS);
    let s = secrets
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": "s"}, "data": {"a": "YQ=="}, "stringData": {"b": "bee"}, "immutable": true})))
        .await
        .expect("create");
    let data = s.data.expect("data");
    assert_eq!(data["a"].0, b"a".to_vec());
    assert_eq!(data["b"].0, b"bee".to_vec());
    assert!(s.string_data.is_none());
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    let (code, reason, status) = api_error(
        secrets
            .patch(
                "s",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"b": "changed"}})),
            )
            .await,
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        status
            .message
            .contains("field is immutable when `immutable` is set"),
        "{}",
        status.message
    );
    secrets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"ok": "yes"}}})),
        )
        .await
        .expect("metadata may change");

    let tls = secrets.create(&PostParams::default(), &obj(json!({"metadata": {"name": "t"}, "type": "kubernetes.io/tls", "data": {"tls.crt": ""}}))).await;
    let (code, _, status) = api_error(tls);
    assert_eq!(code, 422);
    assert_eq!(
        status.details.expect("details").causes[0].field,
        "data[tls.key]"
    );
}

#[tokio::test]
async fn generation_follows_spec_and_status_writes_leave_spec_alone() {
    let c = cluster().await;
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), NS);
    let d: Deployment = obj(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
        "status": {"replicas": 99}
    }));
    let created = deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    let spec = created.spec.clone().expect("spec");
    assert_eq!(spec.replicas, Some(1), "defaulted");
    assert_eq!(
        created.status.and_then(|s| s.replicas),
        None,
        "status is not set on create"
    );

    let status = deployments
        .patch_status("web", &PatchParams::default(), &Patch::Merge(json!({"status": {"replicas": 1, "observedGeneration": 1}, "spec": {"replicas": 5}})))
        .await
        .expect("status patch");
    assert_eq!(status.metadata.generation, Some(1));
    assert_eq!(
        status.spec.expect("spec").replicas,
        Some(1),
        "a status write ignores spec"
    );
    assert_eq!(status.status.and_then(|s| s.replicas), Some(1));

    let relabeled = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("label");
    assert_eq!(
        relabeled.metadata.generation,
        Some(1),
        "labels are not spec"
    );
    let scaled = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}, "status": {"replicas": 7}})),
        )
        .await
        .expect("scale");
    assert_eq!(scaled.metadata.generation, Some(2));
    assert_eq!(
        scaled.status.and_then(|s| s.replicas),
        Some(1),
        "a spec write ignores status"
    );

    let bad: Deployment = obj(
        json!({"metadata": {"name": "bad"}, "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
    );
    let (code, _, status) = api_error(deployments.create(&PostParams::default(), &bad).await);
    assert_eq!(code, 422);
    assert!(
        status
            .message
            .contains("`selector` does not match template `labels`"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn events_are_one_resource_in_two_apis() {
    let c = cluster().await;
    let v1: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.client.clone(), NS);
    let event = obj(json!({
        "metadata": {"name": "e1"},
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "reportingController": "sigil.dev/controller",
        "reportingInstance": "sigil-0",
        "action": "Reconcile",
        "reason": "Synced",
        "note": "all good",
        "type": "Normal",
        "regarding": {"kind": "ConfigMap", "name": "app", "namespace": NS}
    }));
    v1.create(&PostParams::default(), &event)
        .await
        .expect("create events.k8s.io/v1 Event");
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c.client.clone(), NS);
    let seen = core
        .get("e1")
        .await
        .expect("the same Event through core/v1");
    assert_eq!(seen.message.as_deref(), Some("all good"));
    assert_eq!(seen.involved_object.name.as_deref(), Some("app"));
    assert_eq!(
        seen.reporting_component.as_deref(),
        Some("sigil.dev/controller")
    );
}

// ---------------------------------------------------------------- delete

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let c = cluster().await;
    let api = configmaps(&c);
    api.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})),
    )
    .await
    .expect("create");
    let answer = api
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    let deleting = answer
        .left()
        .expect("an object with finalizers is returned, not a Status");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert!(
        api.get("held")
            .await
            .expect("still there")
            .metadata
            .deletion_timestamp
            .is_some()
    );
    let (code, _, status) = api_error(
        api.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}}),
            ),
        )
        .await,
    );
    assert_eq!(code, 422);
    assert!(
        status.message.contains("no new finalizers can be added"),
        "{}",
        status.message
    );
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove finalizer");
    assert!(
        api.get_opt("held").await.expect("get").is_none(),
        "gone once its last finalizer is removed"
    );

    api.create(&PostParams::default(), &cm("plain", json!({})))
        .await
        .expect("create");
    let answer = api
        .delete("plain", &DeleteParams::default())
        .await
        .expect("delete");
    let status = answer
        .right()
        .expect("a plain ConfigMap delete answers a Status");
    assert_eq!(status.details.expect("details").name, "plain");

    let sa: Api<ServiceAccount> = Api::namespaced(c.client.clone(), NS);
    sa.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "bot"}})),
    )
    .await
    .expect("create");
    assert!(
        sa.delete("bot", &DeleteParams::default())
            .await
            .expect("delete")
            .is_left(),
        "ServiceAccount deletes return the object"
    );
}

#[tokio::test]
async fn delete_preconditions_and_collections() {
    let c = cluster().await;
    let api = configmaps(&c);
    let created = api
        .create(&PostParams::default(), &cm("app", json!({})))
        .await
        .expect("create");
    let wrong_uid = DeleteParams::default().preconditions(Preconditions {
        uid: Some("not-it".into()),
        resource_version: None,
    });
    let (code, reason, _) = api_error(api.delete("app", &wrong_uid).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let right = DeleteParams::default().preconditions(Preconditions {
        uid: created.metadata.uid.clone(),
        resource_version: created.metadata.resource_version.clone(),
    });
    api.delete("app", &right)
        .await
        .expect("delete with matching preconditions");

    for (name, tier) in [("a", "x"), ("b", "x"), ("c", "y")] {
        api.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": name, "labels": {"tier": tier}}})),
        )
        .await
        .expect("create");
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("tier=x"),
    )
    .await
    .expect("deletecollection");
    let left: Vec<String> = api
        .list(&ListParams::default().labels("tier"))
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    assert_eq!(left, ["c"]);
}

fn owned(name: &str, owner: &ConfigMap, block: bool, finalizers: &[&str]) -> ConfigMap {
    obj(json!({"metadata": {
        "name": name,
        "finalizers": finalizers,
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid, "blockOwnerDeletion": block}]
    }}))
}

#[tokio::test]
async fn garbage_collection_background_and_orphan() {
    let c = cluster().await;
    let api = configmaps(&c);
    let owner = api
        .create(&PostParams::default(), &cm("owner", json!({})))
        .await
        .expect("owner");
    api.create(&PostParams::default(), &owned("child", &owner, false, &[]))
        .await
        .expect("dependent");
    api.delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");
    eventually("the dependent is collected", || async {
        api.get_opt("child")
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;

    let owner = api
        .create(&PostParams::default(), &cm("owner2", json!({})))
        .await
        .expect("owner");
    let other = api
        .create(&PostParams::default(), &cm("other", json!({})))
        .await
        .expect("second owner");
    let mut shared = owned("shared", &owner, false, &[]);
    if let Some(refs) = shared.metadata.owner_references.as_mut() {
        refs.push(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "other".into(),
                uid: other.metadata.uid.clone().expect("uid"),
                ..Default::default()
            },
        );
    }
    api.create(&PostParams::default(), &shared)
        .await
        .expect("dependent of two owners");
    api.create(&PostParams::default(), &owned("orphan", &owner, false, &[]))
        .await
        .expect("dependent");
    api.delete("owner2", &DeleteParams::orphan())
        .await
        .expect("orphaning delete");
    let orphan = eventually("the owner is deleted after orphaning", || async {
        match api.get_opt("owner2").await.expect("get") {
            None => Some(api.get("orphan").await.expect("the orphan stays")),
            Some(_) => None,
        }
    })
    .await;
    assert!(
        orphan
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "its owner reference is removed"
    );
    let shared = api
        .get("shared")
        .await
        .expect("a dependent with another owner stays");
    let refs = shared.metadata.owner_references.unwrap_or_default();
    assert_eq!(
        refs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["other"]
    );
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let c = cluster().await;
    let api = configmaps(&c);
    let owner = api
        .create(&PostParams::default(), &cm("owner", json!({})))
        .await
        .expect("owner");
    api.create(
        &PostParams::default(),
        &owned("blocker", &owner, true, &["example.com/hold"]),
    )
    .await
    .expect("blocking dependent");
    let answer = api
        .delete("owner", &DeleteParams::foreground())
        .await
        .expect("foreground delete");
    let deleting = answer
        .left()
        .expect("foreground deletion returns the object");
    assert!(
        deleting
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"foregroundDeletion".to_string())
    );
    eventually("the dependent is being deleted", || async {
        api.get("blocker")
            .await
            .expect("get")
            .metadata
            .deletion_timestamp
            .is_some()
            .then_some(())
    })
    .await;
    assert!(
        api.get_opt("owner").await.expect("get").is_some(),
        "the owner waits for its blocking dependent"
    );
    api.patch(
        "blocker",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    eventually("owner and dependent are gone", || async {
        (api.get_opt("owner").await.expect("get").is_none()
            && api.get_opt("blocker").await.expect("get").is_none())
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn namespace_deletion_removes_content_then_the_namespace() {
    let c = cluster().await;
    c.namespace("tmp").await;
    let sa: Api<ServiceAccount> = Api::namespaced(c.client.clone(), "tmp");
    eventually("the default ServiceAccount", || async {
        sa.get_opt("default").await.expect("get")
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), "tmp");
    eventually("kube-root-ca.crt", || async {
        api.get_opt("kube-root-ca.crt").await.expect("get")
    })
    .await;
    api.create(&PostParams::default(), &cm("plain", json!({})))
        .await
        .expect("create");
    api.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})),
    )
    .await
    .expect("create");
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    let answer = namespaces
        .delete("tmp", &DeleteParams::default())
        .await
        .expect("delete namespace");
    let ns = answer
        .left()
        .expect("namespace deletion returns the namespace");
    assert_eq!(
        ns.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    eventually("the namespace's other content is removed", || async {
        let left: Vec<String> = api
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect();
        (left == ["held"]).then_some(())
    })
    .await;
    let stuck = eventually(
        "the namespace reports the finalizer it waits for",
        || async {
            let ns = namespaces
                .get("tmp")
                .await
                .expect("the namespace waits for finalizers of its content");
            let conditions = ns.status.and_then(|s| s.conditions).unwrap_or_default();
            conditions
                .into_iter()
                .find(|c| c.type_ == "NamespaceFinalizersRemaining" && c.status == "True")
        },
    )
    .await;
    assert!(
        stuck
            .message
            .unwrap_or_default()
            .contains("example.com/hold in 1 resource instances")
    );
    let (code, reason, _) = api_error(namespaces.delete("tmp", &DeleteParams::default()).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    eventually("the namespace is gone", || async {
        namespaces
            .get_opt("tmp")
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
}

// ---------------------------------------------------------------- CRDs

fn widget_crd() -> CustomResourceDefinition {
    let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"size": {"type": "integer", "default": 3}, "color": {"type": "string"}}},
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
    }});
    obj(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}, "schema": {"openAPIV3Schema": schema},
                 "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]},
                {"name": "v1beta1", "served": true, "storage": false, "schema": {"openAPIV3Schema": schema}}
            ]
        }
    }))
}

#[tokio::test]
async fn crds_serve_their_resources_until_deleted() {
    let c = cluster().await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    crds.create(&PostParams::default(), &widget_crd())
        .await
        .expect("create CRD");
    let established = eventually("the CRD is established", || async {
        let crd = crds.get("widgets.example.com").await.expect("get CRD");
        let conditions = crd
            .status
            .clone()
            .and_then(|s| s.conditions)
            .unwrap_or_default();
        let ok = |t: &str| {
            conditions
                .iter()
                .any(|c| c.type_ == t && c.status == "True")
        };
        (ok("Established") && ok("NamesAccepted")).then_some(crd)
    })
    .await;
    assert_eq!(
        established.status.and_then(|s| s.stored_versions),
        Some(vec!["v1".to_string()])
    );

    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), NS, &ar);
    let w = DynamicObject::new("w1", &ar)
        .data(json!({"spec": {"color": "red", "bogus": true}, "status": {"ready": true}}));
    let created = widgets
        .create(&PostParams::default(), &w)
        .await
        .expect("create Widget");
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.data["spec"]["size"], 3, "schema defaults apply");
    assert!(
        created.data["spec"].get("bogus").is_none(),
        "unknown fields are pruned"
    );
    assert!(
        created.data.get("status").is_none(),
        "status is not set through the main resource"
    );

    let with_status = widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}})),
        )
        .await
        .expect("status");
    assert_eq!(with_status.metadata.generation, Some(1));
    assert_eq!(with_status.data["status"]["ready"], true);
    let changed = widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 5}})),
        )
        .await
        .expect("spec");
    assert_eq!(changed.metadata.generation, Some(2));
    let (code, _, _) = api_error(
        widgets
            .patch(
                "w1",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"size": 6}})),
            )
            .await,
    );
    assert_eq!(
        code, 415,
        "custom resources do not take strategic merge patches"
    );

    let mut no_rv = changed.clone();
    no_rv.metadata.resource_version = None;
    let (code, reason, _) = api_error(widgets.replace("w1", &PostParams::default(), &no_rv).await);
    assert_eq!(
        (code, reason.as_str()),
        (422, "Invalid"),
        "custom resources need a resourceVersion on update"
    );

    let beta = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1beta1", "Widget"),
        "widgets",
    );
    let old_api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), NS, &beta);
    let seen = old_api
        .get("w1")
        .await
        .expect("the same object through v1beta1");
    assert_eq!(
        seen.types.expect("type meta").api_version,
        "example.com/v1beta1"
    );

    let (code, _, list) = raw(&c.client, "GET", "/apis/example.com/v1", &[], None).await;
    assert_eq!(code, 200);
    let res = list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "widgets")
        .expect("widgets");
    assert_eq!(res["shortNames"], json!(["wd"]));

    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .expect("delete CRD");
    eventually("the CRD and its objects are gone", || async {
        crds.get_opt("widgets.example.com")
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
    let (code, _, _) = raw(
        &c.client,
        "GET",
        "/apis/example.com/v1/namespaces/apps/widgets",
        &[],
        None,
    )
    .await;
    assert_eq!(code, 404, "the resource is no longer served");
    crds.create(&PostParams::default(), &widget_crd())
        .await
        .expect("create the CRD again");
    eventually("served again, empty", || async {
        let list = widgets.list(&ListParams::default()).await.ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn invalid_crds_are_refused() {
    let c = cluster().await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    let mut crd = widget_crd();
    crd.metadata.name = Some("wrong.example.com".into());
    let (code, reason, status) = api_error(crds.create(&PostParams::default(), &crd).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        status
            .message
            .contains("must be spec.names.plural+\".\"+spec.group"),
        "{}",
        status.message
    );
}

// ---------------------------------------------------------------- RBAC / impersonation

#[tokio::test]
async fn impersonated_service_accounts_get_what_rbac_grants() {
    let c = cluster().await;
    let api = configmaps(&c);
    api.create(&PostParams::default(), &cm("app", json!({})))
        .await
        .expect("create");
    let user = "system:serviceaccount:apps:deployer";
    let as_sa = c.client_as(user).await;
    let sa_api: Api<ConfigMap> = Api::namespaced(as_sa.clone(), NS);
    let (code, reason, status) = api_error(sa_api.get("app").await);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        status.message,
        "configmaps \"app\" is forbidden: User \"system:serviceaccount:apps:deployer\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"apps\""
    );

    let roles: Api<Role> = Api::namespaced(c.client.clone(), NS);
    roles
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": "cm-reader"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["allowed"], "verbs": ["get"]}
        ]})))
        .await
        .expect("role");
    let bindings: Api<RoleBinding> = Api::namespaced(c.client.clone(), NS);
    bindings
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": "deployer-reads"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": "apps"}]})))
        .await
        .expect("binding");
    sa_api.get("app").await.expect("allowed after the binding");
    sa_api
        .list(&ListParams::default())
        .await
        .expect("list allowed");
    let (code, _, _) = api_error(sa_api.delete("app", &DeleteParams::default()).await);
    assert_eq!(code, 403, "delete is not granted");
    let other_ns: Api<ConfigMap> = Api::namespaced(as_sa.clone(), "default");
    let (code, _, _) = api_error(other_ns.list(&ListParams::default()).await);
    assert_eq!(code, 403, "the binding is namespaced");
    let secrets: Api<Secret> = Api::namespaced(as_sa.clone(), NS);
    let (code, _, _) = api_error(secrets.get("allowed").await);
    assert_eq!(
        code, 404,
        "resourceNames grant the named Secret (which does not exist)"
    );
    let (code, _, _) = api_error(secrets.get("other").await);
    assert_eq!(code, 403);
    as_sa
        .apiserver_version()
        .await
        .expect("discovery stays open");
}

#[tokio::test]
async fn field_validation_strict_refuses_and_warn_drops_unknown_fields() {
    let c = cluster().await;
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "typo"}, "datax": {"a": "1"}});
    let (code, _, status) = raw(
        &c.client,
        "POST",
        "/api/v1/namespaces/apps/configmaps?fieldValidation=Strict",
        &[("Content-Type", "application/json")],
        Some(body.clone()),
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")));
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("strict decoding error: unknown field \"datax\"")),
        "{status}"
    );

    let req = http::Request::post("/api/v1/namespaces/apps/configmaps")
        .header("Content-Type", "application/json")
        .body(kube::client::Body::from(body.to_string().into_bytes()))
        .expect("request");
    let resp = c.client.send(req).await.expect("send");
    assert_eq!(
        resp.status().as_u16(),
        201,
        "the default (Warn) accepts the object"
    );
    let warning = resp
        .headers()
        .get("warning")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        warning.starts_with("299 - ") && warning.contains("unknown field"),
        "{warning}"
    );
    let stored = configmaps(&c).get("typo").await.expect("stored");
    assert!(
        serde_json::to_value(&stored)
            .expect("json")
            .get("datax")
            .is_none(),
        "unknown fields are dropped"
    );

    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    crds.create(&PostParams::default(), &widget_crd())
        .await
        .expect("CRD");
    let (code, _, status) = raw(
        &c.client,
        "POST",
        "/apis/example.com/v1/namespaces/apps/widgets?fieldValidation=Strict",
        &[("Content-Type", "application/json")],
        Some(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"colour": "red"}})),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown field \"spec.colour\"")),
        "{status}"
    );
}

#[tokio::test]
async fn metadata_only_lists_and_gets() {
    let c = cluster().await;
    let api = configmaps(&c);
    api.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "app", "labels": {"m": "1"}}, "data": {"big": "x"}})),
    )
    .await
    .expect("create");
    let list = api
        .list_metadata(&ListParams::default().labels("m=1"))
        .await
        .expect("metadata list");
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("app"));
    assert!(list.metadata.resource_version.is_some());
    let one = api.get_metadata("app").await.expect("metadata get");
    assert_eq!(one.metadata.labels.expect("labels")["m"], "1");
    let mut stream = api
        .watch_metadata(&WatchParams::default().labels("m=1"), "0")
        .await
        .expect("metadata watch")
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Added(o) => assert_eq!(o.metadata.name.as_deref(), Some("app")),
        other => panic!("expected ADDED, got {other:?}"),
    }
}

#[tokio::test]
async fn crds_with_conflicting_names_are_not_established() {
    let c = cluster().await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    crds.create(&PostParams::default(), &widget_crd())
        .await
        .expect("first CRD");
    let mut twin = widget_crd();
    twin.metadata.name = Some("gadgets.example.com".into());
    twin.spec.names.plural = "gadgets".into();
    twin.spec.names.singular = Some("gadget".into());
    twin.spec.names.short_names = Some(vec!["gd".into()]);
    let created = crds
        .create(&PostParams::default(), &twin)
        .await
        .expect("the CRD is stored");
    let conditions = created
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    let names = conditions
        .iter()
        .find(|c| c.type_ == "NamesAccepted")
        .expect("NamesAccepted");
    assert_eq!(
        (names.status.as_str(), names.reason.as_deref()),
        ("False", Some("KindConflict"))
    );
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "False")
    );
    let (code, _, _) = raw(
        &c.client,
        "GET",
        "/apis/example.com/v1/namespaces/apps/gadgets",
        &[],
        None,
    )
    .await;
    assert_eq!(
        code, 404,
        "a CRD whose names are not accepted is not served"
    );
}

/// The parts of a compact JWS: decoded header and claims, raw signature bytes.
fn jwt_parts(token: &str) -> (Value, Value, Vec<u8>) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "header.payload.signature: {}", parts.len());
    let decode = |p: &str| b64.decode(p).expect("base64url without padding");
    let header = serde_json::from_slice(&decode(parts[0])).expect("header JSON");
    let claims = serde_json::from_slice(&decode(parts[1])).expect("claims JSON");
    (header, claims, decode(parts[2]))
}

#[tokio::test]
async fn service_account_tokens_are_signed_jwts_for_existing_accounts() {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    let c = cluster().await;
    let accounts: Api<ServiceAccount> = Api::namespaced(c.client.clone(), NS);
    let sa = accounts
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "reader"}})),
        )
        .await
        .expect("ServiceAccount");
    let request = |spec: Value| -> TokenRequest {
        obj(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}))
    };

    let answer = accounts
        .create_token_request(
            "reader",
            &PostParams::default(),
            &request(json!({"audiences": ["sts.amazonaws.com"], "expirationSeconds": 900})),
        )
        .await
        .expect("token");
    assert_eq!(answer.spec.expiration_seconds, Some(900));
    assert_eq!(answer.spec.audiences, ["sts.amazonaws.com"]);
    let status = answer.status.expect("status");
    let (header, claims, signature) = jwt_parts(&status.token);
    // Signed like the real server's, with an asymmetric key it publishes (here ES256).
    assert_eq!(header["alg"], "ES256", "{header}");
    assert_eq!(signature.len(), 64, "an ES256 signature (r || s)");
    let get_json = |path: &'static str| {
        let client = c.client.clone();
        async move {
            let request = http::Request::get(path).body(Vec::new()).expect("request");
            let text = client.request_text(request).await.expect(path);
            serde_json::from_str::<Value>(&text).expect(path)
        }
    };
    let jwks = get_json("/openid/v1/jwks").await;
    assert_eq!(jwks["keys"][0]["kid"], header["kid"], "{jwks}");
    assert_eq!(jwks["keys"][0]["crv"], "P-256", "{jwks}");
    let discovery = get_json("/.well-known/openid-configuration").await;
    assert_eq!(discovery["issuer"], claims["iss"], "{discovery}");
    assert_eq!(claims["sub"], "system:serviceaccount:apps:reader");
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));
    assert!(
        claims["iss"]
            .as_str()
            .is_some_and(|s| s.starts_with("https://")),
        "{claims}"
    );
    let iat = claims["iat"].as_i64().expect("iat");
    let exp = claims["exp"].as_i64().expect("exp");
    assert_eq!(exp - iat, 900);
    let now = jiff::Timestamp::now().as_second();
    assert!((now - 5..=now + 5).contains(&iat), "iat {iat} now {now}");
    assert_eq!(claims["nbf"], claims["iat"]);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let k8s = &claims["kubernetes.io"];
    assert_eq!(k8s["namespace"], NS);
    assert_eq!(k8s["serviceaccount"]["name"], "reader");
    assert_eq!(
        k8s["serviceaccount"]["uid"].as_str(),
        sa.metadata.uid.as_deref()
    );
    assert_eq!(status.expiration_timestamp.0.as_second(), exp);

    // Defaults: the API server's own audience, one hour.
    let defaulted = accounts
        .create_token_request("reader", &PostParams::default(), &request(json!({})))
        .await
        .expect("token with defaults");
    assert_eq!(defaulted.spec.expiration_seconds, Some(3600));
    let (_, claims2, _) = jwt_parts(&defaulted.status.expect("status").token);
    assert_eq!(claims2["aud"], json!([claims["iss"]]));
    assert_eq!(
        claims2["exp"].as_i64().expect("exp") - claims2["iat"].as_i64().expect("iat"),
        3600
    );
    assert_ne!(claims2["jti"], claims["jti"], "each token is new");

    let (code, reason, status) = api_error(
        accounts
            .create_token_request("ghost", &PostParams::default(), &request(json!({})))
            .await,
    );
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    assert_eq!(status.message, "serviceaccounts \"ghost\" not found");

    let (code, reason, status) = api_error(
        accounts
            .create_token_request(
                "reader",
                &PostParams::default(),
                &request(json!({"expirationSeconds": 60})),
            )
            .await,
    );
    assert_eq!(
        (code, reason.as_str()),
        (422, "Invalid"),
        "{}",
        status.message
    );
    assert!(
        status.message.contains("spec.expirationSeconds") && status.message.contains("10 minutes"),
        "{}",
        status.message
    );

    let path = format!("/api/v1/namespaces/{NS}/serviceaccounts/reader/token");
    let (code, _, _) = raw(&c.client, "GET", &path, &[], None).await;
    assert_eq!(code, 405, "token is create-only");

    // Discovery lists the subresource with its own kind.
    let (_, _, list) = raw(&c.client, "GET", "/api/v1", &[], None).await;
    let token = list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "serviceaccounts/token")
        .expect("serviceaccounts/token listed")
        .clone();
    assert_eq!(token["verbs"], json!(["create"]));
    assert_eq!(token["kind"], "TokenRequest");
    assert_eq!(token["group"], "authentication.k8s.io");
    assert_eq!(token["version"], "v1");

    // RBAC: `create` on `serviceaccounts/token`.
    let as_sa = c.client_as("system:serviceaccount:apps:controller").await;
    let sa_accounts: Api<ServiceAccount> = Api::namespaced(as_sa, NS);
    let (code, _, status) = api_error(
        sa_accounts
            .create_token_request("reader", &PostParams::default(), &request(json!({})))
            .await,
    );
    assert_eq!(code, 403);
    assert!(
        status.message.contains("serviceaccounts/token"),
        "{}",
        status.message
    );
    let roles: Api<Role> = Api::namespaced(c.client.clone(), NS);
    roles
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "tokens"}, "rules": [
                {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}
            ]})),
        )
        .await
        .expect("role");
    let bindings: Api<RoleBinding> = Api::namespaced(c.client.clone(), NS);
    bindings
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "tokens"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tokens"},
            "subjects": [{"kind": "ServiceAccount", "name": "controller", "namespace": NS}]})),
        )
        .await
        .expect("binding");
    sa_accounts
        .create_token_request("reader", &PostParams::default(), &request(json!({})))
        .await
        .expect("allowed after the binding");
}
