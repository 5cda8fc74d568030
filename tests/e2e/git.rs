//! Fetching with gix from repositories made by the real `git`: over `file://`, over smart HTTP
//! (`git http-backend` behind a small server with basic auth) and over ssh (a loopback `sshd`).

use std::time::Duration;

use sigil::git::{Auth, Cache, Credentials, FetchError, Reference, TreeError, TreeLimits};

use crate::support::git_repo::GitRepo;

const TIMEOUT: Duration = Duration::from_secs(60);

fn yaml_only(path: &str) -> bool {
    path.ends_with(".yaml")
}

fn manifest_repo(dir: &std::path::Path) -> GitRepo {
    let repo = GitRepo::init(dir);
    repo.write("clusters/dev/ns.yaml", "kind: Namespace\n")
        .write("clusters/dev/app/cm.yaml", "kind: ConfigMap\n")
        .write("clusters/dev/README.md", "not a manifest\n")
        .write("clusters/dev/.hidden/x.yaml", "kind: Hidden\n")
        .write("clusters/prod/ns.yaml", "kind: Namespace # prod\n");
    repo
}

async fn fetch(
    cache: &Cache,
    repo_dir: &std::path::Path,
    url: &str,
    reference: Reference,
) -> Result<sigil::git::Fetched, FetchError> {
    cache
        .fetch(
            repo_dir.to_path_buf(),
            url.to_string(),
            reference,
            Credentials::default(),
            TIMEOUT,
        )
        .await
}

#[tokio::test]
async fn file_fetch_reads_a_folder_and_skips_an_unmoved_ref() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = manifest_repo(&tmp.path().join("origin"));
    let first = repo.commit("first");
    let cache = Cache::new(tmp.path().join("cache"));
    let dir = cache.repo_dir("default", "src", &repo.url());

    let fetched = fetch(&cache, &dir, &repo.url(), Reference::Branch("main".into()))
        .await
        .expect("fetch");
    assert_eq!(fetched.commit, first);
    assert_eq!(fetched.revision, format!("main@sha1:{first}"));
    assert!(fetched.downloaded);
    assert!(
        dir.join("shallow").exists(),
        "depth-1 fetch leaves a shallow file"
    );

    let files = cache
        .read_folder(
            dir.clone(),
            first.clone(),
            "./clusters/dev".into(),
            yaml_only,
            TreeLimits::default(),
        )
        .await
        .expect("read");
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["clusters/dev/app/cm.yaml", "clusters/dev/ns.yaml"]);
    assert_eq!(files[1].content, b"kind: Namespace\n");

    let again = fetch(&cache, &dir, &repo.url(), Reference::Branch("main".into()))
        .await
        .expect("second fetch");
    assert_eq!(again.commit, first);
    assert!(
        !again.downloaded,
        "the remote ref did not move: no pack fetched"
    );

    repo.write("clusters/dev/ns.yaml", "kind: Namespace # v2\n");
    let second = repo.commit("second");
    let moved = fetch(&cache, &dir, &repo.url(), Reference::Branch("main".into()))
        .await
        .expect("third fetch");
    assert_eq!(moved.commit, second);
    assert!(moved.downloaded);
    let files = cache
        .read_folder(
            dir.clone(),
            second,
            "clusters/dev".into(),
            yaml_only,
            TreeLimits::default(),
        )
        .await
        .expect("read");
    assert_eq!(files[1].content, b"kind: Namespace # v2\n");
}

#[tokio::test]
async fn file_fetch_of_tags_and_commits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = manifest_repo(&tmp.path().join("origin"));
    let first = repo.commit("first");
    repo.git(&["tag", "-a", "v1", "-m", "release 1"]);
    repo.write("clusters/dev/ns.yaml", "kind: Namespace # later\n");
    let second = repo.commit("second");
    let cache = Cache::new(tmp.path().join("cache"));

    let dir = cache.repo_dir("default", "tag", &repo.url());
    let tag = fetch(&cache, &dir, &repo.url(), Reference::Tag("v1".into()))
        .await
        .expect("tag fetch");
    assert_eq!(
        tag.commit, first,
        "an annotated tag is peeled to its commit"
    );
    assert_eq!(tag.revision, format!("v1@sha1:{first}"));

    let dir = cache.repo_dir("default", "commit", &repo.url());
    let pinned = fetch(&cache, &dir, &repo.url(), Reference::Commit(first.clone()))
        .await
        .expect("commit fetch");
    assert_eq!(pinned.commit, first);
    assert_eq!(pinned.revision, format!("sha1:{first}"));
    let files = cache
        .read_folder(
            dir.clone(),
            first.clone(),
            "clusters/dev".into(),
            yaml_only,
            TreeLimits::default(),
        )
        .await
        .expect("read");
    assert_eq!(files[1].content, b"kind: Namespace\n");
    // The tip is not in this cache: only the pinned commit was fetched.
    let tip = cache
        .read_folder(
            dir,
            second,
            "clusters/dev".into(),
            yaml_only,
            TreeLimits::default(),
        )
        .await;
    assert!(
        matches!(tip, Err(TreeError::MissingCommit { .. })),
        "{tip:?}"
    );
}

#[tokio::test]
async fn file_fetch_failures_have_reasons() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = manifest_repo(&tmp.path().join("origin"));
    repo.commit("first");
    let cache = Cache::new(tmp.path().join("cache"));

    let dir = cache.repo_dir("default", "a", &repo.url());
    let err = fetch(&cache, &dir, &repo.url(), Reference::Branch("nope".into()))
        .await
        .expect_err("no such branch");
    assert_eq!(err.reason(), "RefNotFound", "{err}");

    let missing = format!("file://{}/missing", tmp.path().display());
    let dir = cache.repo_dir("default", "b", &missing);
    let err = fetch(&cache, &dir, &missing, Reference::Branch("main".into()))
        .await
        .expect_err("no such repository");
    assert_eq!(err.reason(), "NotFound", "{err}");
}

#[tokio::test]
async fn symlinks_never_leave_the_tree_and_caps_hold() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("origin"));
    repo.write("shared/base.yaml", "kind: Shared\n")
        .write("app/own.yaml", "kind: Own\n")
        .symlink("app/linked.yaml", "../shared/base.yaml")
        .symlink("app/shared-dir", "../shared")
        .symlink("app/loop", ".");
    let inside = repo.commit("inside links");
    let cache = Cache::new(tmp.path().join("cache"));
    let dir = cache.repo_dir("default", "links", &repo.url());
    fetch(&cache, &dir, &repo.url(), Reference::Branch("main".into()))
        .await
        .expect("fetch");
    let read = |commit: String, limits: TreeLimits| {
        cache.read_folder(dir.clone(), commit, "app".into(), yaml_only, limits)
    };
    let err = read(inside.clone(), TreeLimits::default())
        .await
        .expect_err("the `loop -> .` link recurses until the depth cap");
    assert!(matches!(err, TreeError::InvalidPath { .. }), "{err}");

    repo.remove("app/loop");
    let inside = repo.commit("no loop");
    fetch(&cache, &dir, &repo.url(), Reference::Branch("main".into()))
        .await
        .expect("fetch");
    let files = read(inside.clone(), TreeLimits::default())
        .await
        .expect("read");
    let found: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| (f.path.as_str(), f.content.as_slice()))
        .collect();
    assert_eq!(
        found,
        [
            ("app/linked.yaml", b"kind: Shared\n".as_slice()),
            ("app/own.yaml", b"kind: Own\n".as_slice()),
            ("app/shared-dir/base.yaml", b"kind: Shared\n".as_slice()),
        ]
    );

    let tight = TreeLimits {
        max_file_bytes: 5,
        ..TreeLimits::default()
    };
    let err = read(inside.clone(), tight).await.expect_err("file cap");
    assert!(matches!(err, TreeError::FileTooLarge { .. }), "{err}");
    let tight = TreeLimits {
        max_total_bytes: 20,
        ..TreeLimits::default()
    };
    let err = read(inside.clone(), tight).await.expect_err("tree cap");
    assert!(matches!(err, TreeError::TreeTooLarge { .. }), "{err}");
    let tight = TreeLimits {
        max_files: 2,
        ..TreeLimits::default()
    };
    let err = read(inside, tight).await.expect_err("count cap");
    assert!(matches!(err, TreeError::TooManyFiles { .. }), "{err}");

    repo.symlink("app/escape.yaml", "../../../../etc/passwd");
    let escaping = repo.commit("escaping link");
    fetch(&cache, &dir, &repo.url(), Reference::Branch("main".into()))
        .await
        .expect("fetch");
    let err = read(escaping.clone(), TreeLimits::default())
        .await
        .expect_err("escaping link");
    assert!(matches!(err, TreeError::SymlinkEscapes { .. }), "{err}");
    repo.remove("app/escape.yaml");
    repo.symlink("app/abs.yaml", "/etc/passwd");
    let absolute = repo.commit("absolute link");
    fetch(&cache, &dir, &repo.url(), Reference::Branch("main".into()))
        .await
        .expect("fetch");
    let err = read(absolute, TreeLimits::default())
        .await
        .expect_err("absolute link");
    assert!(matches!(err, TreeError::SymlinkEscapes { .. }), "{err}");
}

fn with_ca(auth: Auth, ca_pem: &str) -> Credentials {
    Credentials {
        auth,
        ca_pem: Some(ca_pem.as_bytes().to_vec()),
    }
}

fn basic(username: &str, password: &str) -> Auth {
    Auth::Basic {
        username: username.to_string(),
        password: secrecy::SecretString::from(password.to_string()),
    }
}

#[tokio::test]
async fn smart_https_with_basic_auth_and_bearer_tokens() {
    use crate::support::git_http::GitHttpServer;
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("served");
    let repo = manifest_repo(&root.join("fleet"));
    let first = repo.commit("first");
    let server = GitHttpServer::start(&root, "gitops", "t0ken-value").await;
    let url = server.url("fleet");
    let cache = Cache::new(tmp.path().join("cache"));
    let dir = cache.repo_dir("default", "http", &url);
    let main = || Reference::Branch("main".into());

    let err = cache
        .fetch(
            dir.clone(),
            url.clone(),
            main(),
            basic("gitops", "t0ken-value").into(),
            TIMEOUT,
        )
        .await
        .expect_err("a server certificate from an unknown CA is refused");
    assert_eq!(err.reason(), "FetchFailed", "{err}");
    assert_eq!(
        server.unauthorized(),
        0,
        "nothing was sent before TLS verified"
    );
    let err = cache
        .fetch(
            dir.clone(),
            url.clone(),
            main(),
            with_ca(Auth::None, &server.ca_pem),
            TIMEOUT,
        )
        .await
        .expect_err("anonymous is refused");
    assert_eq!(err.reason(), "AuthFailed", "{err}");
    let err = cache
        .fetch(
            dir.clone(),
            url.clone(),
            main(),
            with_ca(basic("gitops", "wrong-password"), &server.ca_pem),
            TIMEOUT,
        )
        .await
        .expect_err("wrong password is refused");
    assert_eq!(err.reason(), "AuthFailed", "{err}");
    assert!(!err.to_string().contains("wrong-password"), "{err}");
    assert!(server.unauthorized() >= 2);

    let fetched = cache
        .fetch(
            dir.clone(),
            url.clone(),
            main(),
            with_ca(basic("gitops", "t0ken-value"), &server.ca_pem),
            TIMEOUT,
        )
        .await
        .expect("basic auth fetch");
    assert_eq!(fetched.commit, first);
    assert!(fetched.downloaded);
    assert_eq!(server.pack_requests(), 1);

    let again = cache
        .fetch(
            dir.clone(),
            url.clone(),
            main(),
            with_ca(basic("gitops", "t0ken-value"), &server.ca_pem),
            TIMEOUT,
        )
        .await
        .expect("second fetch");
    assert!(!again.downloaded);
    assert_eq!(server.pack_requests(), 1, "an unmoved ref asks for no pack");

    repo.write("clusters/dev/new.yaml", "kind: New\n");
    let second = repo.commit("second");
    let token = with_ca(
        Auth::Bearer(secrecy::SecretString::from("t0ken-value".to_string())),
        &server.ca_pem,
    );
    let moved = cache
        .fetch(dir.clone(), url.clone(), main(), token, TIMEOUT)
        .await
        .expect("bearer fetch");
    assert_eq!(moved.commit, second);
    assert_eq!(server.pack_requests(), 2);
    let files = cache
        .read_folder(
            dir,
            second,
            "clusters/dev".into(),
            yaml_only,
            TreeLimits::default(),
        )
        .await
        .expect("read");
    assert!(files.iter().any(|f| f.path == "clusters/dev/new.yaml"));
}

#[tokio::test]
async fn ssh_with_a_key_and_verified_known_hosts() {
    use crate::support::sshd::Sshd;
    let tmp = tempfile::tempdir().expect("tempdir");
    let sshd = match Sshd::start(&tmp.path().join("sshd")) {
        Ok(sshd) => sshd,
        Err(reason) => {
            // Under CI the tool is required: a runner that cannot start sshd fails, not skips.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "sshd is required under CI=true and cannot run: {reason}"
            );
            eprintln!("SKIPPED ssh_with_a_key_and_verified_known_hosts: sshd cannot run: {reason}");
            return;
        }
    };
    let repo = manifest_repo(&tmp.path().join("origin"));
    let first = repo.commit("first");
    let url = sshd.url(&repo.dir);
    let cache = Cache::new(tmp.path().join("cache"));
    let dir = cache.repo_dir("default", "ssh", &url);
    let key = |known_hosts: &str, identity: &str| -> Credentials {
        Auth::Ssh {
            identity: secrecy::SecretBox::new(Box::new(identity.as_bytes().to_vec())),
            known_hosts: known_hosts.to_string(),
        }
        .into()
    };
    let main = || Reference::Branch("main".into());

    let err = cache
        .fetch(
            dir.clone(),
            url.clone(),
            main(),
            key(&sshd.wrong_known_hosts, &sshd.client_key),
            TIMEOUT,
        )
        .await
        .expect_err("an unknown host key is refused");
    assert_eq!(err.reason(), "HostKeyFailed", "{err}");

    let fetched = cache
        .fetch(
            dir.clone(),
            url.clone(),
            main(),
            key(&sshd.known_hosts, &sshd.client_key),
            TIMEOUT,
        )
        .await
        .expect("ssh fetch");
    assert_eq!(fetched.commit, first);
    assert!(fetched.downloaded);
    let files = cache
        .read_folder(
            dir.clone(),
            first,
            "clusters/prod".into(),
            yaml_only,
            TreeLimits::default(),
        )
        .await
        .expect("read");
    assert_eq!(files.len(), 1);

    let stranger = tmp.path().join("stranger");
    let status = std::process::Command::new(crate::support::tools::tool("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let stranger_key = std::fs::read_to_string(&stranger).expect("key");
    let other_dir = cache.repo_dir("default", "ssh-other", &url);
    let err = cache
        .fetch(
            other_dir,
            url,
            main(),
            key(&sshd.known_hosts, &stranger_key),
            TIMEOUT,
        )
        .await
        .expect_err("a key not in authorized_keys is refused");
    assert_eq!(err.reason(), "AuthFailed", "{err}");
}
