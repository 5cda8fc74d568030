//! Bearer-token authentication and user impersonation (`Impersonate-*` headers).

use http::HeaderMap;

use super::status::ApiError;

/// The user the admin token authenticates as.
pub const ADMIN_USER: &str = "kube-devserver-admin";

/// Who a request acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn admin() -> Self {
        Self {
            name: ADMIN_USER.into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    /// Members of `system:masters` bypass authorization, as in the real server.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }

    /// `(namespace, name)` when the user is a service account.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        let rest = self.name.strip_prefix("system:serviceaccount:")?;
        rest.split_once(':')
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Authenticates the bearer token, then applies impersonation headers.
pub fn authenticate(headers: &HeaderMap, token: &str) -> Result<User, ApiError> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .ok_or_else(ApiError::unauthorized)?;
    if !constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        return Err(ApiError::unauthorized());
    }
    impersonate(headers, User::admin())
}

fn impersonate(headers: &HeaderMap, authenticated: User) -> Result<User, ApiError> {
    let user = headers
        .get("Impersonate-User")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let groups: Vec<String> = headers
        .get_all("Impersonate-Group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let Some(name) = user else {
        if !groups.is_empty() {
            return Err(ApiError::bad_request(
                "requested [impersonated groups] without impersonating a user",
            ));
        }
        return Ok(authenticated);
    };
    let mut groups = groups;
    if let Some(rest) = name.strip_prefix("system:serviceaccount:") {
        let Some((ns, _)) = rest.split_once(':') else {
            return Err(ApiError::bad_request(format!(
                "invalid service account username {name:?}"
            )));
        };
        if groups.is_empty() {
            groups = vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
            ];
        }
    }
    if name != "system:anonymous" && !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    Ok(User { name, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn token_is_required() {
        assert_eq!(
            authenticate(&headers(&[]), "t").expect_err("none").code,
            401
        );
        let wrong = headers(&[("authorization", "Bearer x")]);
        assert_eq!(authenticate(&wrong, "t").expect_err("wrong").code, 401);
        let right = headers(&[("authorization", "Bearer t")]);
        assert!(authenticate(&right, "t").expect("admin").is_master());
    }

    #[test]
    fn service_accounts_get_their_groups() {
        let h = headers(&[
            ("authorization", "Bearer t"),
            ("impersonate-user", "system:serviceaccount:apps:deployer"),
        ]);
        let u = authenticate(&h, "t").expect("impersonated");
        assert_eq!(u.service_account(), Some(("apps", "deployer")));
        assert!(
            u.groups
                .contains(&"system:serviceaccounts:apps".to_string())
        );
        assert!(!u.is_master());
    }
}
