//! `serviceaccounts/{name}/token`: the TokenRequest API (`authentication.k8s.io/v1`).
//!
//! Tokens are compact JWS with the claims the real server puts in bound
//! ServiceAccount tokens (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`, the
//! `kubernetes.io` block), signed like the real kube-apiserver's with an
//! asymmetric key (here ES256, a P-256 key made per server start) whose public
//! half is published at `/openid/v1/jwks` (and as PEM through
//! [`crate::DevServer::service_account_public_key_pem`]) so that anyone can
//! check them: Vault's and OpenBao's JWT auth with `jwt_validation_pubkeys`, and
//! TokenReview (`authentication.k8s.io/v1`), which this server answers for the
//! tokens it issued, as Vault's and OpenBao's Kubernetes auth call it.

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::clock;
use super::status::{ApiError, FieldError};

/// The issuer (and default audience) of a kubeadm cluster.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// `spec.expirationSeconds` when the request leaves it out.
const DEFAULT_EXPIRATION: i64 = 3600;
/// The shortest lifetime the API server grants.
const MIN_EXPIRATION: i64 = 600;
/// The longest (`1 << 32` seconds).
const MAX_EXPIRATION: i64 = 1 << 32;

/// The DER prefix of a P-256 SubjectPublicKeyInfo; the 65-byte uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Signs ServiceAccount tokens with one key per server.
pub struct TokenIssuer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The key id, as the real server makes it: the SHA-256 of the public key's DER, base64url.
    kid: String,
}

/// The ServiceAccount a token is for.
pub struct Account<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl TokenIssuer {
    pub fn random() -> Self {
        let rng = SystemRandom::new();
        // Generating and reading back a fresh P-256 key fails only without an entropy source.
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("the system's random source works");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("a key ring just generated parses");
        let mut issuer = Self {
            key,
            rng,
            kid: String::new(),
        };
        issuer.kid = b64(&Sha256::digest(issuer.public_key_der()));
        issuer
    }

    fn public_key_der(&self) -> Vec<u8> {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.key.public_key().as_ref());
        der
    }

    /// The public key tokens are signed with, as a PEM `PUBLIC KEY`.
    pub fn public_key_pem(&self) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(self.public_key_der());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// `/openid/v1/jwks`: the public key as a JSON Web Key Set.
    pub fn jwks(&self) -> Value {
        let point = self.key.public_key().as_ref();
        json!({"keys": [{
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": "ES256",
            "x": b64(&point[1..33]),
            "y": b64(&point[33..65]),
        }]})
    }

    /// `/.well-known/openid-configuration` of a server reachable at `address`.
    pub fn openid_configuration(address: &str) -> Value {
        json!({
            "issuer": ISSUER,
            "jwks_uri": format!("https://{address}/openid/v1/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    /// Answers a TokenRequest body for an existing account at `now` (Unix seconds).
    pub fn answer(&self, account: &Account<'_>, body: &Value, now: i64) -> Result<Value, ApiError> {
        let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
        let expiration = match spec.get("expirationSeconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRATION,
            Some(v) => v.as_i64().ok_or_else(|| {
                invalid(
                    account,
                    "spec.expirationSeconds",
                    v.clone(),
                    "must be an integer",
                )
            })?,
        };
        if expiration < MIN_EXPIRATION {
            return Err(invalid(
                account,
                "spec.expirationSeconds",
                json!(expiration),
                "may not specify a duration less than 10 minutes",
            ));
        }
        if expiration > MAX_EXPIRATION {
            return Err(invalid(
                account,
                "spec.expirationSeconds",
                json!(expiration),
                "may not specify a duration larger than 2^32 seconds",
            ));
        }
        let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => list
                .iter()
                .map(|a| a.as_str().map(String::from))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    invalid(account, "spec.audiences", json!(list), "must be strings")
                })?,
            _ => vec![ISSUER.to_string()],
        };
        let exp = now + expiration;
        let token = self.sign(&json!({
            "iss": ISSUER,
            "sub": format!("system:serviceaccount:{}:{}", account.namespace, account.name),
            "aud": audiences,
            "exp": exp,
            "iat": now,
            "nbf": now,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": {
                "namespace": account.namespace,
                "serviceaccount": {"name": account.name, "uid": account.uid},
            },
        }));
        let expires = jiff::Timestamp::from_second(exp)
            .map(clock::format_time)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {
                "name": account.name,
                "namespace": account.namespace,
                "creationTimestamp": null,
            },
            "spec": {
                "audiences": audiences,
                "expirationSeconds": expiration,
                "boundObjectRef": spec.get("boundObjectRef").cloned().unwrap_or(Value::Null),
            },
            "status": {"token": token, "expirationTimestamp": expires},
        }))
    }

    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        // ECDSA signing fails only without an entropy source.
        let signature = self
            .key
            .sign(&self.rng, input.as_bytes())
            .expect("the system's random source works");
        format!("{input}.{}", b64(signature.as_ref()))
    }

    /// Whether this server signed `token` (the claims are not checked).
    fn verify(&self, token: &str) -> bool {
        let Some((input, signature)) = token.rsplit_once('.') else {
            return false;
        };
        let Ok(signature) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature)
        else {
            return false;
        };
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(input.as_bytes(), &signature)
            .is_ok()
    }

    /// Answers a TokenReview body at `now`: `authenticated` only for a token this
    /// server signed, not expired, for one of the requested audiences (the
    /// issuer's when none are asked for), whose ServiceAccount still exists with
    /// the uid in the token (`account_uid(namespace, name)` looks it up).
    pub fn review(
        &self,
        body: &Value,
        now: i64,
        account_uid: impl Fn(&str, &str) -> Option<String>,
    ) -> Value {
        let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
        let wanted: Vec<String> = spec
            .get("audiences")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|a| a.as_str().map(String::from))
                    .collect()
            })
            .filter(|list: &Vec<String>| !list.is_empty())
            .unwrap_or_else(|| vec![ISSUER.to_string()]);
        let token = spec
            .get("token")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let status = match self.authenticate(token, &wanted, now, account_uid) {
            Ok((user, audiences)) => json!({
                "authenticated": true,
                "user": user,
                "audiences": audiences,
            }),
            Err(why) => json!({
                "authenticated": false,
                "user": {},
                "error": why,
            }),
        };
        json!({
            "spec": spec,
            "status": status,
        })
    }

    /// The reviewed token's user and the audiences it was accepted for, or why not.
    fn authenticate(
        &self,
        token: &str,
        wanted: &[String],
        now: i64,
        account_uid: impl Fn(&str, &str) -> Option<String>,
    ) -> Result<(Value, Vec<String>), String> {
        const INVALID: &str = "invalid bearer token";
        if !self.verify(token) {
            return Err(INVALID.into());
        }
        let claims = token
            .split('.')
            .nth(1)
            .and_then(|part| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .ok()
            })
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .ok_or(INVALID)?;
        let exp = claims["exp"].as_i64().unwrap_or(0);
        let nbf = claims["nbf"].as_i64().unwrap_or(0);
        if now >= exp || now < nbf {
            return Err(format!("{INVALID}, token has expired"));
        }
        let granted: Vec<String> = claims["aud"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|a| a.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let audiences: Vec<String> = wanted
            .iter()
            .filter(|a| granted.contains(a))
            .cloned()
            .collect();
        if audiences.is_empty() {
            return Err(format!(
                "{INVALID}, token audiences {granted:?} is invalid for the target audiences {wanted:?}"
            ));
        }
        let info = &claims["kubernetes.io"];
        let namespace = info["namespace"].as_str().ok_or(INVALID)?;
        let name = info["serviceaccount"]["name"].as_str().ok_or(INVALID)?;
        let uid = info["serviceaccount"]["uid"].as_str().ok_or(INVALID)?;
        match account_uid(namespace, name) {
            Some(current) if current == uid => {}
            Some(_) => {
                return Err(format!(
                    "{INVALID}, service account UID ({uid}) does not match claim"
                ));
            }
            None => {
                return Err(format!(
                    "{INVALID}, service account {namespace}/{name} has been deleted"
                ));
            }
        }
        let user = json!({
            "username": format!("system:serviceaccount:{namespace}:{name}"),
            "uid": uid,
            "groups": [
                "system:serviceaccounts",
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated",
            ],
        });
        Ok((user, audiences))
    }
}

fn invalid(account: &Account<'_>, field: &str, value: Value, detail: &str) -> ApiError {
    ApiError::invalid(
        "authentication.k8s.io",
        "TokenRequest",
        account.name,
        vec![FieldError::invalid(field, value, detail)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: Account<'static> = Account {
        namespace: "team",
        name: "reader",
        uid: "uid-1",
    };

    fn token(answer: &Value) -> &str {
        answer["status"]["token"].as_str().expect("token")
    }

    #[test]
    fn tokens_verify_only_under_their_servers_key() {
        let issuer = TokenIssuer::random();
        let answer = issuer
            .answer(
                &ACCOUNT,
                &json!({"spec": {"audiences": ["vault"]}}),
                1_700_000_000,
            )
            .expect("answer");
        let jwt = token(&answer);
        assert!(issuer.verify(jwt));
        assert!(!TokenIssuer::random().verify(jwt), "another server's key");
        let (head, _) = jwt.rsplit_once('.').expect("three parts");
        let forged = format!("{head}.{}", b64(&[0u8; 64]));
        assert!(!issuer.verify(&forged));
        assert_eq!(
            answer["status"]["expirationTimestamp"],
            "2023-11-14T23:13:20Z"
        );
    }

    #[test]
    fn reviews_authenticate_only_live_tokens_for_their_audiences() {
        let issuer = TokenIssuer::random();
        let answer = issuer
            .answer(
                &ACCOUNT,
                &json!({"spec": {"audiences": ["vault"], "expirationSeconds": 600}}),
                1_000,
            )
            .expect("answer");
        let jwt = token(&answer);
        let live = |_: &str, _: &str| Some("uid-1".to_string());
        let review = |token: &str,
                      audiences: Value,
                      now: i64,
                      uid: &dyn Fn(&str, &str) -> Option<String>| {
            issuer.review(
                &json!({"spec": {"token": token, "audiences": audiences}}),
                now,
                uid,
            )["status"]
                .clone()
        };
        let ok = review(jwt, json!(["vault"]), 1_100, &live);
        assert_eq!(ok["authenticated"], true, "{ok}");
        assert_eq!(ok["user"]["username"], "system:serviceaccount:team:reader");
        assert_eq!(ok["user"]["uid"], "uid-1");
        assert_eq!(ok["audiences"], json!(["vault"]));
        assert!(
            ok["user"]["groups"]
                .as_array()
                .expect("groups")
                .contains(&json!("system:serviceaccounts:team"))
        );
        for (why, status) in [
            ("issuer audience", review(jwt, Value::Null, 1_100, &live)),
            ("other audience", review(jwt, json!(["sts"]), 1_100, &live)),
            ("expired", review(jwt, json!(["vault"]), 1_600, &live)),
            ("account deleted", review(jwt, json!(["vault"]), 1_100, &|_: &str, _: &str| None)),
            ("account recreated", review(jwt, json!(["vault"]), 1_100, &|_: &str, _: &str| Some("uid-2".into()))),
            ("another server", TokenIssuer::random().review(&json!({"spec": {"token": jwt}}), 1_100, live)["status"].clone()),
            ("garbage", review("a.b.c", json!(["vault"]), 1_100, &live)),
        ] {
            assert_eq!(status["authenticated"], false, "{why}: {status}");
            assert!(status["error"].as_str().is_some_and(|e| e.starts_with("invalid bearer token")), "{why}: {status}");
        }
    }

    #[test]
    fn lifetimes_are_bounded_like_the_api_server() {
        let issuer = TokenIssuer::random();
        for (seconds, ok) in [
            (599, false),
            (600, true),
            (1 << 32, true),
            ((1i64 << 32) + 1, false),
        ] {
            let result = issuer.answer(
                &ACCOUNT,
                &json!({"spec": {"expirationSeconds": seconds}}),
                0,
            );
            assert_eq!(result.is_ok(), ok, "{seconds}");
        }
        let bad = issuer
            .answer(&ACCOUNT, &json!({"spec": {"audiences": [1]}}), 0)
            .expect_err("numbers are not audiences");
        assert_eq!(bad.code, 422);
    }
}
