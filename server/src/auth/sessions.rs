//! Sessions: opaque refresh tokens stored as SHA-256, grouped in families (one per sign-in),
//! rotated on every use. A rotated token used again within the grace (racing tabs) still gets a
//! new token of the same family; used later, it revokes the whole family (`TokenReused`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::Rng as _;

use super::error::AuthError;
use super::users::{
    decode, decode_last, families_prefix, family_key, put, refresh_key, revocation_key, AuthStore,
    FamilyRecord, OneTimeRecord, RefreshRecord, Revocation, Versioned,
};
use crate::store::{Space, WriteSet};

/// How sessions behave.
#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    pub refresh_ttl_ms: i64,
    pub reuse_grace_ms: i64,
}

/// A fresh refresh token and the session it belongs to.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub uid: String,
    pub family: String,
    pub auth_time: i64,
    pub refresh_token: String,
}

/// 32 random bytes, base64url: an opaque, unguessable token.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Adds a new refresh token of `family` to `write`.
fn add_refresh_token(
    write: &mut WriteSet,
    settings: &SessionSettings,
    uid: &str,
    family: &str,
    now_ms: i64,
) -> Result<String, AuthError> {
    let token = random_token();
    let record = RefreshRecord {
        uid: uid.to_string(),
        family: family.to_string(),
        expires_ms: now_ms + settings.refresh_ttl_ms,
        rotated_at_ms: None,
    };
    put(write, refresh_key(&token), &record, Some(None))?;
    Ok(token)
}

/// Adds a new session (family and first refresh token) for `uid` to `write`.
pub fn start_session(
    write: &mut WriteSet,
    settings: &SessionSettings,
    uid: &str,
    auth_time: i64,
    now_ms: i64,
) -> Result<Rotated, AuthError> {
    let family = random_token();
    let record = FamilyRecord {
        created_ms: now_ms,
        auth_time,
    };
    put(write, family_key(uid, &family), &record, Some(None))?;
    let refresh_token = add_refresh_token(write, settings, uid, &family, now_ms)?;
    Ok(Rotated {
        uid: uid.to_string(),
        family,
        auth_time,
        refresh_token,
    })
}

/// Exchanges `token` for a new one. Optimistic: reads the token, its family and the user's
/// revocation state, commits with version checks, and retries when a concurrent exchange won.
/// The uid a refresh token belongs to, if it is known (for per-account rate limits before any
/// state changes).
pub async fn owner_of(store: &AuthStore, token: &str) -> Result<Option<String>, AuthError> {
    Ok(store
        .get::<RefreshRecord>(refresh_key(token))
        .await?
        .map(|record| record.value.uid))
}

pub async fn rotate(
    store: &AuthStore,
    settings: &SessionSettings,
    token: &str,
    now_ms: impl Fn() -> i64,
) -> Result<Rotated, AuthError> {
    let invalid = || AuthError::unauthenticated("the refresh token is not valid");
    for _ in 0..16 {
        let now = now_ms();
        let Some(Versioned {
            version: token_version,
            value: record,
        }) = store.get::<RefreshRecord>(refresh_key(token)).await?
        else {
            return Err(invalid());
        };
        let fkey = family_key(&record.uid, &record.family);
        let mut values = store
            .get_many(vec![fkey.clone(), revocation_key(&record.uid)])
            .await?;
        let revocation = decode_last::<Revocation>(&mut values)?;
        let Some(family) = decode_last::<FamilyRecord>(&mut values)? else {
            return Err(invalid());
        };
        if record.expires_ms <= now || revocation.is_some_and(|r| r.value.disabled) {
            return Err(invalid());
        }
        let mut write = WriteSet::default();
        // The family must still exist when this commits (logout may race with refresh).
        write.check(
            Space::Auth,
            fkey.clone(),
            crate::store::Expect::Version(family.version),
        );
        match record.rotated_at_ms {
            Some(rotated) if now - rotated > settings.reuse_grace_ms => {
                // Reuse after the grace: the token was probably stolen. End the whole session.
                let mut revoke = WriteSet::default();
                revoke.delete(Space::Auth, fkey);
                store.commit(revoke).await?;
                tracing::warn!(uid = %record.uid, "refresh token reused after rotation: session revoked");
                return Err(AuthError::TokenReused);
            }
            Some(_) => {
                // A racing exchange of the same token within the grace: it gets its own token.
                write.check(
                    Space::Auth,
                    refresh_key(token),
                    crate::store::Expect::Version(token_version),
                );
            }
            None => {
                let rotated = RefreshRecord {
                    rotated_at_ms: Some(now),
                    ..record.clone()
                };
                put(
                    &mut write,
                    refresh_key(token),
                    &rotated,
                    Some(Some(token_version)),
                )?;
            }
        }
        let refresh_token =
            add_refresh_token(&mut write, settings, &record.uid, &record.family, now)?;
        if store.commit(write).await? {
            return Ok(Rotated {
                uid: record.uid,
                family: record.family,
                auth_time: family.value.auth_time,
                refresh_token,
            });
        }
    }
    Err(AuthError::internal("refresh kept conflicting; giving up"))
}

/// Ends the session `token` belongs to; unknown tokens are ignored. Returns the token's uid.
pub async fn end_session(store: &AuthStore, token: &str) -> Result<Option<String>, AuthError> {
    let Some(record) = store.get::<RefreshRecord>(refresh_key(token)).await? else {
        return Ok(None);
    };
    let mut write = WriteSet::default();
    write.delete(
        Space::Auth,
        family_key(&record.value.uid, &record.value.family),
    );
    store.commit(write).await?;
    Ok(Some(record.value.uid))
}

/// Adds the deletion of every session of `uid` to `write`.
pub async fn end_all_sessions(
    store: &AuthStore,
    write: &mut WriteSet,
    uid: &str,
) -> Result<(), AuthError> {
    let mut after = None;
    loop {
        let page = store
            .scan(families_prefix(uid), after.clone(), 1_000)
            .await?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = Some(last.clone());
        let full = page.len() == 1_000;
        for (key, _) in page {
            write.delete(Space::Auth, key);
        }
        if !full {
            return Ok(());
        }
    }
}

/// Entries read per page while sweeping.
const SWEEP_PAGE: usize = 1_000;

/// Deletes refresh tokens that expired or whose session ended, and expired one-time tokens.
/// Rotated tokens are kept until they expire: they are what reveals a reuse. Returns how many
/// records went.
pub async fn sweep_expired(store: &AuthStore, now_ms: i64) -> Result<usize, AuthError> {
    let mut deleted = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store
            .scan(b"t/".to_vec(), after.clone(), SWEEP_PAGE)
            .await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let mut records = Vec::with_capacity(page.len());
        for (key, bytes) in &page {
            records.push((key.clone(), decode::<RefreshRecord>(bytes)?.value));
        }
        let families = store
            .get_many(
                records
                    .iter()
                    .map(|(_, r)| family_key(&r.uid, &r.family))
                    .collect(),
            )
            .await?;
        let mut write = WriteSet::default();
        for ((key, record), family) in records.into_iter().zip(families) {
            if record.expires_ms <= now_ms || family.is_none() {
                write.delete(Space::Auth, key);
            }
        }
        deleted += commit_deletions(store, write).await?;
        if page.len() < SWEEP_PAGE {
            break;
        }
    }
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store
            .scan(b"o/".to_vec(), after.clone(), SWEEP_PAGE)
            .await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let mut write = WriteSet::default();
        for (key, bytes) in &page {
            if decode::<OneTimeRecord>(bytes)?.value.expires_ms <= now_ms {
                write.delete(Space::Auth, key.clone());
            }
        }
        deleted += commit_deletions(store, write).await?;
        if page.len() < SWEEP_PAGE {
            break;
        }
    }
    Ok(deleted)
}

async fn commit_deletions(store: &AuthStore, write: WriteSet) -> Result<usize, AuthError> {
    let count = write.ops.len();
    if count > 0 {
        store.commit(write).await?;
    }
    Ok(count)
}
