//! Storage of the auth layer in `Space::Auth`: records, their keys (one prefix per kind) and
//! reads off the executor. Every record is JSON after an 8-byte version stamp, so a commit can
//! check that nothing changed since it was read (`Expect::Version`).
//!
//! Key layout (`uid`s never contain `/`):
//! - `u/{uid}` → `UserRecord`
//! - `e/{normalised email}` → `EmailRecord` (uniqueness: created with `Expect::Absent`)
//! - `r/{uid}` → `Revocation` (read on every request that carries an access token)
//! - `f/{uid}/{family}` → `FamilyRecord` (one per session; deleting it ends the session)
//! - `t/{sha256(refresh token)}` → `RefreshRecord`
//! - `o/{sha256(one-time token)}` → `OneTimeRecord` (email verification, password reset)

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use sha2::{Digest as _, Sha256};

use super::error::AuthError;
use crate::store::{Expect, KeyRange, SharedStore, Space, WriteSet};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserRecord {
    pub uid: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub display_name: Option<String>,
    pub anonymous: bool,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    pub password_hash: Option<String>,
    /// Custom claims, copied into every access token.
    pub claims: Map<String, Json>,
    pub disabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmailRecord {
    pub uid: String,
}

/// Access tokens of `uid` issued before `valid_after` (Unix seconds) or while `disabled` are
/// rejected. Kept after a user is deleted, so the deleted user's tokens stay dead.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Revocation {
    pub valid_after: i64,
    pub disabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FamilyRecord {
    pub created_ms: i64,
    /// When the user signed in (Unix seconds): the `auth_time` of every token of the session.
    pub auth_time: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub uid: String,
    pub family: String,
    pub expires_ms: i64,
    /// Set when the token was exchanged; a later use within the grace still succeeds (racing
    /// tabs), after it revokes the family.
    pub rotated_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OneTimeKind {
    VerifyEmail,
    PasswordReset,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OneTimeRecord {
    pub kind: OneTimeKind,
    pub uid: String,
    /// The address the mail went to: verification only counts while it is still the user's.
    pub email: String,
    pub expires_ms: i64,
}

pub fn user_key(uid: &str) -> Vec<u8> {
    format!("u/{uid}").into_bytes()
}

pub fn email_key(email: &str) -> Vec<u8> {
    format!("e/{email}").into_bytes()
}

pub fn revocation_key(uid: &str) -> Vec<u8> {
    format!("r/{uid}").into_bytes()
}

pub fn family_key(uid: &str, family: &str) -> Vec<u8> {
    format!("f/{uid}/{family}").into_bytes()
}

pub fn families_prefix(uid: &str) -> Vec<u8> {
    format!("f/{uid}/").into_bytes()
}

/// Secrets are stored only as their SHA-256: a leaked database holds no usable token.
pub fn refresh_key(token: &str) -> Vec<u8> {
    hashed_key(b"t/", token)
}

pub fn one_time_key(token: &str) -> Vec<u8> {
    hashed_key(b"o/", token)
}

fn hashed_key(prefix: &[u8], token: &str) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&Sha256::digest(token.as_bytes()));
    key
}

/// A record read with the version that last wrote it.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub version: u64,
    pub value: T,
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, AuthError> {
    let mut bytes = vec![0u8; 8];
    serde_json::to_writer(&mut bytes, value).map_err(AuthError::internal)?;
    Ok(bytes)
}

/// Takes the last value of a `get_many` answer and decodes it, if there was one.
pub fn decode_last<T: DeserializeOwned>(
    values: &mut Vec<Option<Vec<u8>>>,
) -> Result<Option<Versioned<T>>, AuthError> {
    values
        .pop()
        .flatten()
        .map(|bytes| decode(&bytes))
        .transpose()
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<Versioned<T>, AuthError> {
    let (head, body) = bytes
        .split_at_checked(8)
        .ok_or_else(|| AuthError::internal("auth record shorter than its version stamp"))?;
    let mut version = [0u8; 8];
    version.copy_from_slice(head);
    let value = serde_json::from_slice(body)
        .map_err(|e| AuthError::internal(format!("auth record does not decode: {e}")))?;
    Ok(Versioned {
        version: u64::from_be_bytes(version),
        value,
    })
}

/// Puts `value` (version-stamped) and, when `previous` is given, checks the key still holds
/// that version — or is absent when `previous` is `Some(None)`.
pub fn put<T: Serialize>(
    write: &mut WriteSet,
    key: Vec<u8>,
    value: &T,
    previous: Option<Option<u64>>,
) -> Result<(), AuthError> {
    match previous {
        Some(Some(version)) => write.check(Space::Auth, key.clone(), Expect::Version(version)),
        Some(None) => write.check(Space::Auth, key.clone(), Expect::Absent),
        None => {}
    }
    write.put_versioned(Space::Auth, key, encode(value)?);
    Ok(())
}

/// Reads of the auth space, each on a blocking thread.
#[derive(Clone)]
pub struct AuthStore {
    store: SharedStore,
}

impl AuthStore {
    pub fn new(store: SharedStore) -> AuthStore {
        AuthStore { store }
    }

    pub fn shared(&self) -> &SharedStore {
        &self.store
    }

    /// Raw values of `keys`, from one consistent snapshot.
    pub async fn get_many(&self, keys: Vec<Vec<u8>>) -> Result<Vec<Option<Vec<u8>>>, AuthError> {
        let store = self.store.clone();
        crate::store::pool::run(move || {
            let view = store.read()?;
            Ok(view.get_many(Space::Auth, &keys)?)
        })
        .await
        .map_err(|e| AuthError::internal(format!("read task failed: {e}")))?
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        key: Vec<u8>,
    ) -> Result<Option<Versioned<T>>, AuthError> {
        decode_last(&mut self.get_many(vec![key]).await?)
    }

    /// Up to `limit` entries whose key starts with `prefix` and sorts after `after`.
    pub async fn scan(
        &self,
        prefix: Vec<u8>,
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, AuthError> {
        let store = self.store.clone();
        crate::store::pool::run(move || {
            let mut range = KeyRange::prefix(&prefix);
            if let Some(after) = after {
                range = range.after(&after);
            }
            let view = store.read()?;
            Ok(view.scan(Space::Auth, &range, limit, false)?)
        })
        .await
        .map_err(|e| AuthError::internal(format!("read task failed: {e}")))?
    }

    /// Commits; a failed check comes back as `Ok(false)` so callers can re-read and retry.
    pub async fn commit(&self, write: WriteSet) -> Result<bool, AuthError> {
        match crate::store::commit(self.store.as_ref(), write).await {
            Ok(_) => Ok(true),
            Err(crate::store::CommitError::Conflict) => Ok(false),
            Err(crate::store::CommitError::Store(err)) => Err(err.into()),
        }
    }
}
