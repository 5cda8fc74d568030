//! The keyring: every identity that may open sealed values, the newest being
//! the active key new values are sealed to.

use std::time::Duration;

use age::x25519::{Identity, Recipient};

use super::recipients::fingerprint;
use super::sealing::{self, OpenError, Opened};

/// One sealing identity and what is known about it.
#[derive(Clone)]
pub struct SealingKey {
    identity: Identity,
    recipient: Recipient,
    fingerprint: String,
    created: Option<jiff::Timestamp>,
    source: String,
}

impl SealingKey {
    /// `source` names where the key came from (a Secret, a file) for messages.
    pub fn new(identity: Identity, created: Option<jiff::Timestamp>, source: String) -> Self {
        let recipient = identity.to_public();
        Self {
            fingerprint: fingerprint(&recipient),
            identity,
            recipient,
            created,
            source,
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn recipient(&self) -> &Recipient {
        &self.recipient
    }

    /// The short fingerprint (see [`fingerprint`]).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn created(&self) -> Option<jiff::Timestamp> {
        self.created
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingKey")
            .field("recipient", &self.recipient.to_string())
            .field("fingerprint", &self.fingerprint)
            .field("created", &self.created)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// A value opened by the keyring, with the key that opened it.
#[derive(Debug)]
pub struct KeyOpened {
    pub opened: Opened,
    pub fingerprint: String,
}

/// Every key that may open values, oldest first; the newest is active.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    keys: Vec<SealingKey>,
}

impl Keyring {
    /// Orders keys by creation (unknown first, then oldest to newest) and drops
    /// duplicates of the same identity.
    pub fn new(mut keys: Vec<SealingKey>) -> Self {
        keys.sort_by(|a, b| {
            (a.created, &a.fingerprint, &a.source).cmp(&(b.created, &b.fingerprint, &b.source))
        });
        let mut seen = std::collections::HashSet::new();
        keys.retain(|k| seen.insert(k.fingerprint.clone()));
        Self { keys }
    }

    /// A keyring of identities read from a file (no creation times).
    pub fn from_identities(identities: Vec<Identity>, source: &str) -> Self {
        Self::new(
            identities
                .into_iter()
                .map(|identity| SealingKey::new(identity, None, source.to_string()))
                .collect(),
        )
    }

    pub fn keys(&self) -> &[SealingKey] {
        &self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key new values are sealed to: the newest one.
    pub fn active(&self) -> Option<&SealingKey> {
        self.keys.last()
    }

    /// The key with this fingerprint.
    pub fn by_fingerprint(&self, fingerprint: &str) -> Option<&SealingKey> {
        self.keys.iter().find(|k| k.fingerprint == fingerprint)
    }

    /// Position of a key from oldest (0) to newest.
    pub fn age_rank(&self, fingerprint: &str) -> Option<usize> {
        self.keys.iter().position(|k| k.fingerprint == fingerprint)
    }

    /// Opens a value for object `namespace`/`name`, newest key first.
    pub fn open(&self, armored: &str, namespace: &str, name: &str) -> Result<KeyOpened, OpenError> {
        let identities: Vec<&Identity> = self.keys.iter().rev().map(|k| &k.identity).collect();
        let opened = sealing::open(armored, &identities, namespace, name)?;
        let key = &self.keys[self.keys.len() - 1 - opened.identity];
        Ok(KeyOpened {
            fingerprint: key.fingerprint.clone(),
            opened,
        })
    }

    /// When the active key is due to be replaced; `None` when renewal is off
    /// (`period` zero) or the active key's age is unknown.
    pub fn next_renewal(&self, period: Duration) -> Option<jiff::Timestamp> {
        if period.is_zero() {
            return None;
        }
        let created = self.active()?.created?;
        let period = jiff::SignedDuration::try_from(period).ok()?;
        created.checked_add(period).ok()
    }

    /// Whether a new key must be generated now: there is none, or the active key
    /// is older than `period`.
    pub fn needs_new_key(&self, now: jiff::Timestamp, period: Duration) -> bool {
        if self.is_empty() {
            return true;
        }
        self.next_renewal(period).is_some_and(|due| due <= now)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::api::sealed_secret::Scope;
    use crate::crypto::binding::Binding;

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(seconds).expect("valid time")
    }

    fn key(created: i64) -> SealingKey {
        SealingKey::new(
            Identity::generate(),
            Some(at(created)),
            format!("k{created}"),
        )
    }

    #[test]
    fn newest_key_is_active_and_any_key_opens() {
        let old = key(100);
        let new = key(200);
        let keyring = Keyring::new(vec![new.clone(), old.clone()]);
        assert_eq!(
            keyring.active().map(SealingKey::fingerprint),
            Some(new.fingerprint())
        );
        let binding = Binding::new(Scope::Strict, Some("ns"), Some("db")).expect("valid");
        let sealed_old = sealing::seal(b"v1", &binding, &[old.recipient().clone()]).expect("seals");
        let opened = keyring.open(&sealed_old, "ns", "db").expect("opens");
        assert_eq!(opened.fingerprint, old.fingerprint());
        assert_eq!(opened.opened.value.expose_secret(), b"v1");
        let sealed_new = sealing::seal(b"v2", &binding, &[new.recipient().clone()]).expect("seals");
        assert_eq!(
            keyring
                .open(&sealed_new, "ns", "db")
                .expect("opens")
                .fingerprint,
            new.fingerprint()
        );
        let stranger = Keyring::new(vec![key(300)]);
        assert_eq!(
            stranger
                .open(&sealed_new, "ns", "db")
                .map(|o| o.fingerprint),
            Err(OpenError::NoMatchingKey)
        );
    }

    #[test]
    fn duplicate_keys_are_kept_once() {
        let k = key(5);
        let copy = SealingKey::new(k.identity().clone(), Some(at(9)), "copy".into());
        assert_eq!(Keyring::new(vec![k, copy]).len(), 1);
    }

    #[test]
    fn renewal_schedule() {
        let day = Duration::from_secs(86_400);
        assert!(Keyring::default().needs_new_key(at(0), day));
        let keyring = Keyring::new(vec![key(0)]);
        assert!(!keyring.needs_new_key(at(86_399), day));
        assert!(keyring.needs_new_key(at(86_400), day));
        assert_eq!(keyring.next_renewal(day), Some(at(86_400)));
        assert_eq!(keyring.next_renewal(Duration::ZERO), None);
        assert!(!keyring.needs_new_key(at(10_000_000), Duration::ZERO));
    }

    #[test]
    fn debug_never_shows_the_identity() {
        let k = key(1);
        let secret = k.identity().to_string();
        let shown = format!("{k:?} {:?}", Keyring::new(vec![k.clone()]));
        assert!(!shown.contains(secret.expose_secret()), "{shown}");
        assert!(!shown.to_uppercase().contains("AGE-SECRET-KEY"), "{shown}");
    }
}
