//! `serviceaccounts/{name}/token`: the TokenRequest API (`authentication.k8s.io/v1`).
//!
//! Tokens are compact JWS with the claims the real server puts in bound
//! ServiceAccount tokens (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`, the
//! `kubernetes.io` block). The real kube-apiserver signs them with RS256 or
//! ES256 so that anyone can check them against its published JWKS; this
//! emulator signs with HMAC-SHA256 (`HS256`) under a key made per server start,
//! which is enough for clients that only pass the token on.

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::Sha256;

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

/// Signs ServiceAccount tokens with one key per server.
pub struct TokenIssuer {
    key: [u8; 32],
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
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Self { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key length")
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
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut mac = self.mac();
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    }

    /// Whether this server signed `token` (the claims are not checked).
    #[cfg(test)]
    fn verify(&self, token: &str) -> bool {
        let Some((input, signature)) = token.rsplit_once('.') else {
            return false;
        };
        let Ok(signature) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature)
        else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(input.as_bytes());
        mac.verify_slice(&signature).is_ok()
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
        let forged = format!("{head}.{}", b64(&[0u8; 32]));
        assert!(!issuer.verify(&forged));
        assert_eq!(
            answer["status"]["expirationTimestamp"],
            "2023-11-14T23:13:20Z"
        );
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
