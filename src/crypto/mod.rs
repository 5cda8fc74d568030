//! Sealing with age: the envelope that binds each value to its scope, the
//! keyring of cluster identities, recipients and their fingerprints.
//!
//! Every value in a SealedSecret's `spec.encryptedData` is one ASCII-armored age
//! file ([`sealing`]) whose plaintext is an [`envelope`] recording the value's
//! [`binding::Binding`]. Opening checks that binding against the object the value
//! actually sits in. Plaintext only ever lives in `secrecy`/`zeroize` types.

pub mod binding;
pub mod envelope;
pub mod identity;
pub mod keyring;
pub mod manifest;
pub mod recipients;
pub mod sealed_data;
pub mod sealing;

pub use binding::Binding;
pub use keyring::{Keyring, SealingKey};
pub use sealing::{OpenError, SealError, open, seal};
