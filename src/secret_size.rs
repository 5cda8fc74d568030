//! Kubernetes' limit on the size of a Secret, checked before sigil writes or seals one: a Secret
//! over it is refused naming the field it came from and its largest key, instead of by the API
//! server after the fact (or, for `sigil seal`, never, leaving a SealedSecret that cannot open).

/// The most bytes a Secret's data may hold (the API server's `MaxSecretSize`, 1 MiB). Keys are
/// counted too, which keeps sigil on the safe side of every API server's way of counting.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// A Secret's data is over [`MAX_SECRET_BYTES`]. Holds sizes and a key name, never a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{field}: the Secret would hold {total} bytes, over Kubernetes' limit of {MAX_SECRET_BYTES} for a Secret (largest: key {largest:?}, {largest_bytes} bytes)"
)]
pub struct SecretTooLarge {
    pub field: String,
    pub total: usize,
    pub largest: String,
    pub largest_bytes: usize,
}

/// Checks the data of a Secret given as (key, value length) pairs; `field` names where the data
/// came from in messages.
pub fn check<'a>(
    field: &str,
    data: impl IntoIterator<Item = (&'a str, usize)>,
) -> Result<(), SecretTooLarge> {
    let mut total = 0;
    let mut largest = ("", 0);
    for (key, len) in data {
        total += key.len() + len;
        if len > largest.1 {
            largest = (key, len);
        }
    }
    if total <= MAX_SECRET_BYTES {
        return Ok(());
    }
    Err(SecretTooLarge {
        field: field.to_string(),
        total,
        largest: largest.0.to_string(),
        largest_bytes: largest.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_at_the_limit_passes_and_one_byte_more_is_refused() {
        let at_limit = MAX_SECRET_BYTES - "k".len();
        assert_eq!(check("data", [("k", at_limit)]), Ok(()));
        let err = check("data", [("a", 10), ("k", at_limit)]).expect_err("over");
        assert_eq!(err.total, MAX_SECRET_BYTES + 11);
        assert_eq!((err.largest.as_str(), err.largest_bytes), ("k", at_limit));
        let message = err.to_string();
        assert!(
            message.starts_with("data: the Secret would hold"),
            "{message}"
        );
        assert!(message.contains("largest: key \"k\""), "{message}");
    }

    #[test]
    fn an_empty_secret_passes() {
        assert_eq!(check("data", []), Ok(()));
    }
}
