//! Built-in user auth: accounts (email/password and anonymous), sessions with rotating refresh
//! tokens, EdDSA access tokens, email verification and password reset by mail, rate limits and
//! the admin operations on users. `Auth` is the service the HTTP layer calls; each submodule
//! has one job.

pub mod email;
pub mod error;
pub mod mail;
pub mod password;
pub mod rate_limit;
pub mod sessions;
pub mod tokens;
pub mod users;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rand::Rng as _;
use serde_json::{json, Map, Value as Json};

pub use email::Email;
pub use error::AuthError;
pub use password::Password;
pub use tokens::Identity;

use crate::config::AuthSettings;
use crate::hooks::{AfterEvent, BeforeCall, EventKind, Hooks, OutboxAdditions};
use crate::model::timestamp::rfc3339_from_unix_ms;
use crate::store::{SharedStore, Space, WriteSet};
use mail::{Mail, Mailer, SmtpSettings};
use password::{HashCost, PasswordHasher};
use rate_limit::{Action, RateLimiter, RateLimits};
use sessions::{Rotated, SessionSettings};
use tokens::{TokenService, TokenSettings};
use users::{
    decode, decode_last, email_key, one_time_key, put, revocation_key, user_key, AuthStore,
    EmailRecord, OneTimeKind, OneTimeRecord, Revocation, UserRecord, Versioned,
};

/// Longest display name, in characters.
const MAX_DISPLAY_NAME_CHARS: usize = 256;
/// Largest custom claims object, as JSON bytes (Firebase's limit).
const MAX_CLAIMS_BYTES: usize = 1_000;
/// Optimistic commits retry this often before giving up.
const RETRIES: usize = 16;
/// How often expired refresh and one-time tokens are swept from the store.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);
/// How often the key file is checked for a rotation.
const KEY_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// A signed-in session as the client gets it.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: UserRecord,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
}

impl SignedIn {
    pub fn to_json(&self) -> Json {
        json!({
            "user": public_user(&self.user),
            "accessToken": self.access_token,
            "refreshToken": self.refresh_token,
            "expiresIn": self.expires_in,
        })
    }
}

/// The `user` shape of DESIGN.md §3.
pub fn public_user(user: &UserRecord) -> Json {
    json!({
        "uid": user.uid,
        "email": user.email,
        "emailVerified": user.email_verified,
        "displayName": user.display_name,
        "anonymous": user.anonymous,
        "createdAt": rfc3339_from_unix_ms(user.created_at_ms),
        "claims": user.claims,
    })
}

/// The user as the admin API shows it: the public shape plus `disabled`.
pub fn admin_user(user: &UserRecord) -> Json {
    let mut value = public_user(user);
    value["disabled"] = json!(user.disabled);
    value
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

fn now_secs() -> i64 {
    now_ms() / 1_000
}

fn new_uid() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..28)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// A uid given by an admin: 1–128 characters, no `/`, no control characters.
pub fn check_uid(uid: &str) -> Result<(), AuthError> {
    if uid.is_empty()
        || uid.chars().count() > 128
        || uid.contains('/')
        || uid.chars().any(char::is_control)
    {
        return Err(AuthError::invalid(
            "uid must be 1–128 characters without '/' or control characters",
        ));
    }
    Ok(())
}

/// Custom claims: an object of at most 1,000 bytes that uses no reserved claim name.
pub fn check_claims(claims: &Json) -> Result<Map<String, Json>, AuthError> {
    let Json::Object(map) = claims else {
        return Err(AuthError::invalid("claims must be a JSON object"));
    };
    if let Some(name) = map
        .keys()
        .find(|name| tokens::RESERVED_CLAIMS.contains(&name.as_str()))
    {
        return Err(AuthError::invalid(format!(
            "claim '{name}' is reserved and set by the server"
        )));
    }
    if claims.to_string().len() > MAX_CLAIMS_BYTES {
        return Err(AuthError::invalid(format!(
            "claims must be at most {MAX_CLAIMS_BYTES} bytes of JSON"
        )));
    }
    Ok(map.clone())
}

fn check_display_name(name: &Json) -> Result<Option<String>, AuthError> {
    match name {
        Json::Null => Ok(None),
        Json::String(text) if text.chars().count() <= MAX_DISPLAY_NAME_CHARS => {
            Ok(Some(text.clone()))
        }
        _ => Err(AuthError::invalid(format!(
            "displayName must be a string of at most {MAX_DISPLAY_NAME_CHARS} characters or null"
        ))),
    }
}

/// A change of the signed-in user (`PATCH /v1/auth/user`); absent fields stay as they are.
#[derive(Debug, Default)]
pub struct UserUpdate {
    pub display_name: Option<Json>,
    pub email: Option<String>,
    pub password: Option<String>,
    pub current_password: Option<String>,
}

/// A change an admin makes to a user; absent fields stay as they are.
#[derive(Debug, Default)]
pub struct AdminUserUpdate {
    pub disabled: Option<bool>,
    pub display_name: Option<Json>,
    pub email_verified: Option<bool>,
    pub claims: Option<Json>,
}

/// A user an admin creates.
#[derive(Debug, Default)]
pub struct NewUser {
    pub email: Option<String>,
    pub password: Option<String>,
    pub display_name: Option<Json>,
    pub email_verified: bool,
    pub claims: Option<Json>,
}

pub struct Auth {
    store: AuthStore,
    /// Swapped when `hearth keys rotate` changes the key file (see `watch_keys`).
    tokens: Arc<RwLock<Arc<TokenService>>>,
    hasher: PasswordHasher,
    mailer: Mailer,
    limiter: RateLimiter,
    trusted_proxies: Vec<IpAddr>,
    sessions: SessionSettings,
    verify_ttl_ms: i64,
    reset_ttl_ms: i64,
    action_url: Option<String>,
    /// Access tokens whose signature and claims were already verified, until they expire. An
    /// EdDSA verification costs more than the rest of a small read; the revocation check still
    /// runs on every request, so disabling or revoking takes effect at once.
    verified: std::sync::Mutex<HashMap<String, Identity>>,
    /// `auth.signup` / `auth.login` hooks.
    hooks: Arc<Hooks>,
}

/// Verified access tokens remembered at most; the cache is cleared when full.
const VERIFIED_TOKENS_CACHED: usize = 4_096;

impl Auth {
    /// Loads (or on first start creates) the signing keys and sets up hashing, mail and limits.
    /// `issuer` is `auth.issuer`, or the server's own URL when that is not set.
    pub fn open(
        store: SharedStore,
        settings: &AuthSettings,
        data_dir: &Path,
        issuer: String,
        hooks: Arc<Hooks>,
    ) -> Result<Auth, AuthError> {
        let keys = tokens::load_or_create_keys(data_dir, now_secs())?;
        let token_settings = TokenSettings {
            issuer,
            audience: settings.audience.clone(),
            access_ttl_secs: i64::try_from(settings.access_token_ttl_secs)
                .map_err(AuthError::internal)?,
            leeway_secs: settings.token_leeway_secs,
        };
        let tokens = Arc::new(RwLock::new(Arc::new(TokenService::new(
            token_settings.clone(),
            &keys,
        )?)));
        let concurrency = match settings.hash_concurrency {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let hasher = PasswordHasher::new(
            HashCost {
                memory_kib: settings.argon2_memory_kib,
                iterations: settings.argon2_iterations,
                parallelism: settings.argon2_parallelism,
            },
            concurrency,
        )?;
        let smtp = settings.smtp_host.as_ref().map(|host| SmtpSettings {
            host: host.clone(),
            port: settings.smtp_port,
            security: settings.smtp_security,
            username: settings.smtp_username.clone(),
            password: settings.smtp_password.clone(),
        });
        let mailer = Mailer::new(&settings.mail_from, smtp, data_dir.to_path_buf())?;
        let limiter = RateLimiter::new(RateLimits {
            enabled: settings.rate_limits,
            per_ip_per_minute: settings.rate_limit_per_ip_per_minute,
            per_account_per_minute: settings.rate_limit_per_account_per_minute,
        });
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1_000)).unwrap_or(i64::MAX);
        let store = AuthStore::new(store);
        // Inside a runtime (the server), sweep expired tokens in the background for as long as
        // the runtime lives.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep_forever(store.clone()));
            runtime.spawn(watch_keys(
                tokens.clone(),
                token_settings,
                data_dir.to_path_buf(),
            ));
        }
        Ok(Auth {
            store,
            tokens,
            hasher,
            mailer,
            limiter,
            trusted_proxies: rate_limit::parse_trusted(&settings.trusted_proxies),
            sessions: SessionSettings {
                refresh_ttl_ms: ms(settings.refresh_token_ttl_secs),
                reuse_grace_ms: i64::try_from(settings.refresh_reuse_grace_ms).unwrap_or(i64::MAX),
            },
            verify_ttl_ms: ms(settings.verify_email_ttl_secs),
            reset_ttl_ms: ms(settings.password_reset_ttl_secs),
            action_url: settings.action_url.clone(),
            verified: std::sync::Mutex::new(HashMap::new()),
            hooks,
        })
    }

    /// Runs the `before` hooks of an auth event (they may allow or reject, not change the
    /// user) and adds the `after` hooks' outbox entries to `write`.
    async fn auth_hooks(
        &self,
        kind: EventKind,
        user: &UserRecord,
        write: &mut WriteSet,
    ) -> Result<OutboxAdditions, AuthError> {
        let subject = format!("users/{}", user.uid);
        let auth = match kind {
            EventKind::AuthLogin => json!({"uid": user.uid, "token": null}),
            _ => Json::Null,
        };
        if self.hooks.has_before(kind) {
            let call = BeforeCall {
                kind,
                subject: subject.clone(),
                before: Json::Null,
                after: public_user(user),
                auth: auth.clone(),
            };
            self.hooks
                .run_before(call, &|_| Err("auth events take no data".into()))
                .await
                .map_err(AuthError::Hook)?;
        }
        let mut additions = OutboxAdditions::default();
        if self.hooks.has_after(kind) {
            let now = rfc3339_from_unix_ms(now_ms());
            let data = json!({"before": null, "after": public_user(user), "auth": auth});
            let event = AfterEvent {
                index: 0,
                kind,
                subject: &subject,
                time: &now,
                data: &data,
            };
            self.hooks.add_after_entries(write, &mut additions, event);
        }
        Ok(additions)
    }

    /// Verifies an access token, or recalls an earlier verification while the token is unexpired.
    fn verify_token(&self, token: &str) -> Result<Identity, AuthError> {
        let unexpired = |identity: &Identity| {
            identity
                .claims
                .get("exp")
                .and_then(Json::as_i64)
                .is_some_and(|exp| exp > now_secs())
        };
        if let Ok(cache) = self.verified.lock() {
            if let Some(identity) = cache.get(token).filter(|i| unexpired(i)) {
                return Ok(identity.clone());
            }
        }
        let identity = self.tokens().verify(token)?;
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= VERIFIED_TOKENS_CACHED {
                cache.clear();
            }
            cache.insert(token.to_string(), identity.clone());
        }
        Ok(identity)
    }

    /// The current token service (a rotation swaps it).
    pub fn tokens(&self) -> Arc<TokenService> {
        match self.tokens.read() {
            Ok(tokens) => tokens.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The client address rate limits count (see `rate_limit::client_ip`).
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        rate_limit::client_ip(peer, forwarded_for, &self.trusted_proxies)
    }

    // ----- identity of a request -----

    /// Verifies an access token and rejects it when its user is disabled, deleted or had every
    /// session revoked after the token was issued.
    pub async fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let identity = self.verify_token(token)?;
        if let Some(revocation) = self.revocation(&identity.uid).await? {
            if revocation.value.disabled {
                return Err(AuthError::unauthenticated("this account is disabled"));
            }
            if identity.issued_at < revocation.value.valid_after {
                return Err(AuthError::unauthenticated(
                    "the access token was revoked; sign in again",
                ));
            }
        }
        Ok(identity)
    }

    async fn revocation(&self, uid: &str) -> Result<Option<Versioned<Revocation>>, AuthError> {
        self.store.get(revocation_key(uid)).await
    }

    // ----- sign-up and sign-in -----

    pub async fn signup(
        &self,
        email: &str,
        password: &str,
        display_name: Option<&Json>,
        ip: IpAddr,
    ) -> Result<SignedIn, AuthError> {
        self.limiter.check_ip(Action::Signup, ip)?;
        let email = Email::parse(email)?;
        let password = Password::new_password(password)?;
        let display_name = display_name.map(check_display_name).transpose()?.flatten();
        self.limiter
            .check_account(Action::Signup, email.as_str(), ip)?;
        if self
            .store
            .get::<EmailRecord>(email_key(email.as_str()))
            .await?
            .is_some()
        {
            return Err(email_taken());
        }
        let hash = self.hasher.hash(&password).await?;
        let user = UserRecord {
            uid: new_uid(),
            email: Some(email.as_str().to_string()),
            email_verified: false,
            display_name,
            anonymous: false,
            created_at_ms: now_ms(),
            password_hash: Some(hash),
            claims: Map::new(),
            disabled: false,
        };
        let mut write = WriteSet::default();
        put(
            &mut write,
            email_key(email.as_str()),
            &EmailRecord {
                uid: user.uid.clone(),
            },
            Some(None),
        )?;
        self.create_with_session(write, user).await
    }

    pub async fn anonymous(&self, ip: IpAddr) -> Result<SignedIn, AuthError> {
        self.limiter.check_ip(Action::Anonymous, ip)?;
        let user = UserRecord {
            uid: new_uid(),
            email: None,
            email_verified: false,
            display_name: None,
            anonymous: true,
            created_at_ms: now_ms(),
            password_hash: None,
            claims: Map::new(),
            disabled: false,
        };
        self.create_with_session(WriteSet::default(), user).await
    }

    async fn create_with_session(
        &self,
        mut write: WriteSet,
        user: UserRecord,
    ) -> Result<SignedIn, AuthError> {
        put(&mut write, user_key(&user.uid), &user, Some(None))?;
        let now = now_ms();
        let session =
            sessions::start_session(&mut write, &self.sessions, &user.uid, now / 1_000, now)?;
        let additions = self
            .auth_hooks(EventKind::AuthSignup, &user, &mut write)
            .await?;
        if !self.store.commit(write).await? {
            return Err(email_taken());
        }
        self.hooks.committed(additions);
        self.signed_in(user, session, None)
    }

    pub async fn login(
        &self,
        email: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<SignedIn, AuthError> {
        self.limiter.check_ip(Action::Login, ip)?;
        let password = Password::offered(password)?;
        let email = Email::parse(email)?;
        self.limiter
            .check_account(Action::Login, email.as_str(), ip)?;
        let user = self.user_by_email(&email).await?;
        let hash = user.as_ref().and_then(|u| u.value.password_hash.clone());
        // Unknown emails verify a dummy hash, so both failures cost the same.
        if !self.hasher.verify(&password, hash).await? {
            return Err(AuthError::InvalidCredentials);
        }
        let Some(Versioned { value: user, .. }) = user else {
            return Err(AuthError::InvalidCredentials);
        };
        if user.disabled {
            return Err(AuthError::PermissionDenied(
                "this account is disabled".into(),
            ));
        }
        self.new_session(user).await
    }

    async fn user_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<Versioned<UserRecord>>, AuthError> {
        let Some(entry) = self
            .store
            .get::<EmailRecord>(email_key(email.as_str()))
            .await?
        else {
            return Ok(None);
        };
        self.store.get(user_key(&entry.value.uid)).await
    }

    async fn new_session(&self, user: UserRecord) -> Result<SignedIn, AuthError> {
        let mut write = WriteSet::default();
        let now = now_ms();
        let session =
            sessions::start_session(&mut write, &self.sessions, &user.uid, now / 1_000, now)?;
        let additions = self
            .auth_hooks(EventKind::AuthLogin, &user, &mut write)
            .await?;
        self.store.commit(write).await?;
        self.hooks.committed(additions);
        let revocation = self.revocation(&user.uid).await?;
        self.signed_in(user, session, revocation.map(|r| r.value))
    }

    /// Signs the access token of a session. Its `iat` is at least the user's revoke-all time, so
    /// a token issued in the same second as a revocation (e.g. right after a password change)
    /// is not mistaken for one issued before it.
    fn signed_in(
        &self,
        user: UserRecord,
        session: Rotated,
        revocation: Option<Revocation>,
    ) -> Result<SignedIn, AuthError> {
        let issued_at = now_secs().max(revocation.map_or(0, |r| r.valid_after));
        let access_token = self.tokens().sign(
            &user.uid,
            issued_at,
            access_claims(&user, session.auth_time),
        )?;
        Ok(SignedIn {
            user,
            access_token,
            refresh_token: session.refresh_token,
            expires_in: self.tokens().settings().access_ttl_secs,
        })
    }

    pub async fn refresh(&self, token: &str, ip: IpAddr) -> Result<SignedIn, AuthError> {
        self.limiter.check_ip(Action::Refresh, ip)?;
        // Limit per account before rotating: a refused refresh must leave the token usable.
        if let Some(uid) = sessions::owner_of(&self.store, token).await? {
            self.limiter.check_account(Action::Refresh, &uid, ip)?;
        }
        let session = sessions::rotate(&self.store, &self.sessions, token, now_ms).await?;
        let mut values = self
            .store
            .get_many(vec![user_key(&session.uid), revocation_key(&session.uid)])
            .await?;
        let revocation = decode_last::<Revocation>(&mut values)?;
        let user = decode_last::<UserRecord>(&mut values)?
            .ok_or_else(|| AuthError::unauthenticated("the refresh token is not valid"))?;
        if user.value.disabled {
            return Err(AuthError::unauthenticated("this account is disabled"));
        }
        self.signed_in(user.value, session, revocation.map(|r| r.value))
    }

    /// Ends the session of `refresh_token` and, with `everywhere`, every session of the user
    /// (whose access tokens then stop working too).
    pub async fn logout(
        &self,
        identity: Option<&Identity>,
        refresh_token: Option<&str>,
        everywhere: bool,
    ) -> Result<(), AuthError> {
        let mut uid = identity.map(|i| i.uid.clone());
        if let Some(token) = refresh_token {
            let owner = sessions::end_session(&self.store, token).await?;
            uid = uid.or(owner);
        } else if identity.is_none() {
            return Err(AuthError::unauthenticated(
                "logout needs a refreshToken or an access token",
            ));
        }
        if everywhere {
            let uid = uid.ok_or_else(|| {
                AuthError::unauthenticated("logout everywhere needs a valid token")
            })?;
            self.revoke_all(&uid).await?;
        }
        Ok(())
    }

    /// Ends every session of `uid` and invalidates its access tokens issued until now.
    pub async fn revoke_all(&self, uid: &str) -> Result<(), AuthError> {
        self.change_revocation(uid, |_| {}).await
    }

    async fn change_revocation(
        &self,
        uid: &str,
        change: impl Fn(&mut Revocation),
    ) -> Result<(), AuthError> {
        for _ in 0..RETRIES {
            if self
                .try_change_revocation(uid, WriteSet::default(), &change)
                .await?
            {
                return Ok(());
            }
        }
        Err(AuthError::internal(
            "revocation kept conflicting; giving up",
        ))
    }

    /// One attempt to commit `write` together with the deletion of every session of `uid`, a
    /// new revoke-all time and `change` applied to the revocation record. False on conflict.
    async fn try_change_revocation(
        &self,
        uid: &str,
        mut write: WriteSet,
        change: impl Fn(&mut Revocation),
    ) -> Result<bool, AuthError> {
        let current = self.revocation(uid).await?;
        sessions::end_all_sessions(&self.store, &mut write, uid).await?;
        let mut revocation = current
            .as_ref()
            .map(|r| r.value.clone())
            .unwrap_or_default();
        // Tokens issued in this second count as issued before the revocation.
        revocation.valid_after = revocation.valid_after.max(now_secs() + 1);
        change(&mut revocation);
        put(
            &mut write,
            revocation_key(uid),
            &revocation,
            Some(current.map(|r| r.version)),
        )?;
        self.store.commit(write).await
    }

    // ----- the signed-in user -----

    pub async fn get_user(&self, uid: &str) -> Result<UserRecord, AuthError> {
        self.store
            .get::<UserRecord>(user_key(uid))
            .await?
            .map(|u| u.value)
            .ok_or_else(|| AuthError::NotFound(format!("no user with uid '{uid}'")))
    }

    /// Applies `update` to the signed-in user. A password change needs the current password,
    /// ends every session and returns a fresh one for the caller; an email change needs
    /// re-verification.
    pub async fn update_user(
        &self,
        identity: &Identity,
        update: UserUpdate,
    ) -> Result<(UserRecord, Option<SignedIn>), AuthError> {
        let display_name = update
            .display_name
            .as_ref()
            .map(check_display_name)
            .transpose()?;
        let email = update.email.as_deref().map(Email::parse).transpose()?;
        let new_password = update
            .password
            .as_deref()
            .map(Password::new_password)
            .transpose()?;
        let mut new_hash = None;
        if let Some(password) = &new_password {
            let current = update
                .current_password
                .as_deref()
                .ok_or_else(|| AuthError::invalid("changing the password needs currentPassword"))?;
            let current = Password::offered(current)?;
            let user = self.get_user(&identity.uid).await?;
            if user.anonymous || user.password_hash.is_none() {
                return Err(AuthError::FailedPrecondition(
                    "this account has no password; link an email and password first".into(),
                ));
            }
            if !self.hasher.verify(&current, user.password_hash).await? {
                return Err(AuthError::InvalidCredentials);
            }
            new_hash = Some(self.hasher.hash(password).await?);
        }
        for _ in 0..RETRIES {
            let Some(Versioned {
                version,
                value: mut user,
            }) = self
                .store
                .get::<UserRecord>(user_key(&identity.uid))
                .await?
            else {
                return Err(AuthError::NotFound(
                    "the signed-in user no longer exists".into(),
                ));
            };
            let mut write = WriteSet::default();
            if let Some(name) = &display_name {
                user.display_name = name.clone();
            }
            if let Some(email) = &email {
                if user.anonymous {
                    return Err(AuthError::FailedPrecondition(
                        "an anonymous user gets an email through link".into(),
                    ));
                }
                if user.email.as_deref() != Some(email.as_str()) {
                    if let Some(old) = &user.email {
                        write.delete(Space::Auth, email_key(old));
                    }
                    put(
                        &mut write,
                        email_key(email.as_str()),
                        &EmailRecord {
                            uid: user.uid.clone(),
                        },
                        Some(None),
                    )?;
                    user.email = Some(email.as_str().to_string());
                    user.email_verified = false;
                }
            }
            if let Some(hash) = &new_hash {
                user.password_hash = Some(hash.clone());
            }
            put(&mut write, user_key(&user.uid), &user, Some(Some(version)))?;
            if new_hash.is_some() {
                if !self.try_change_revocation(&user.uid, write, |_| {}).await? {
                    continue;
                }
                let session = self.new_session(user.clone()).await?;
                return Ok((user, Some(session)));
            }
            if self.store.commit(write).await? {
                return Ok((user, None));
            }
            if let Some(email) = &email {
                if self
                    .user_by_email(email)
                    .await?
                    .is_some_and(|u| u.value.uid != user.uid)
                {
                    return Err(email_taken());
                }
            }
        }
        Err(AuthError::internal(
            "user update kept conflicting; giving up",
        ))
    }

    /// Deletes a user, its email, its sessions; its access tokens stop working.
    pub async fn delete_user(&self, uid: &str) -> Result<(), AuthError> {
        let Some(Versioned {
            version,
            value: user,
        }) = self.store.get::<UserRecord>(user_key(uid)).await?
        else {
            return Err(AuthError::NotFound(format!("no user with uid '{uid}'")));
        };
        let mut write = WriteSet::default();
        write.check(
            Space::Auth,
            user_key(uid),
            crate::store::Expect::Version(version),
        );
        write.delete(Space::Auth, user_key(uid));
        if let Some(email) = &user.email {
            write.delete(Space::Auth, email_key(email));
        }
        if self
            .try_change_revocation(uid, write, |r| r.disabled = false)
            .await?
        {
            Ok(())
        } else {
            Err(AuthError::Aborted(
                "the user changed concurrently; try again".into(),
            ))
        }
    }

    /// Upgrades an anonymous user to email and password, keeping its uid; answers a new session.
    pub async fn link(
        &self,
        identity: &Identity,
        email: &str,
        password: &str,
    ) -> Result<SignedIn, AuthError> {
        let email = Email::parse(email)?;
        let password = Password::new_password(password)?;
        let user = self.get_user(&identity.uid).await?;
        if !user.anonymous {
            return Err(AuthError::FailedPrecondition(
                "only an anonymous user can be linked to an email and password".into(),
            ));
        }
        if self.user_by_email(&email).await?.is_some() {
            return Err(email_taken());
        }
        let hash = self.hasher.hash(&password).await?;
        for _ in 0..RETRIES {
            let Some(Versioned {
                version,
                value: mut user,
            }) = self
                .store
                .get::<UserRecord>(user_key(&identity.uid))
                .await?
            else {
                return Err(AuthError::NotFound(
                    "the signed-in user no longer exists".into(),
                ));
            };
            if !user.anonymous {
                return Err(AuthError::FailedPrecondition(
                    "only an anonymous user can be linked to an email and password".into(),
                ));
            }
            user.anonymous = false;
            user.email = Some(email.as_str().to_string());
            user.email_verified = false;
            user.password_hash = Some(hash.clone());
            let mut write = WriteSet::default();
            put(&mut write, user_key(&user.uid), &user, Some(Some(version)))?;
            put(
                &mut write,
                email_key(email.as_str()),
                &EmailRecord {
                    uid: user.uid.clone(),
                },
                Some(None),
            )?;
            if self.store.commit(write).await? {
                return self.new_session(user).await;
            }
            if self.user_by_email(&email).await?.is_some() {
                return Err(email_taken());
            }
        }
        Err(AuthError::internal("link kept conflicting; giving up"))
    }

    // ----- email flows -----

    /// Mails the signed-in user a one-time token that verifies its current email.
    pub async fn send_verification(
        &self,
        identity: &Identity,
        ip: IpAddr,
    ) -> Result<(), AuthError> {
        self.limiter.check_ip(Action::VerifyEmail, ip)?;
        self.limiter
            .check_account(Action::VerifyEmail, &identity.uid, ip)?;
        let user = self.get_user(&identity.uid).await?;
        let Some(email) = user.email.clone() else {
            return Err(AuthError::FailedPrecondition(
                "this user has no email".into(),
            ));
        };
        let token = self
            .one_time_token(
                OneTimeKind::VerifyEmail,
                &user.uid,
                &email,
                self.verify_ttl_ms,
            )
            .await?;
        self.mailer
            .send(Mail {
                to: email,
                subject: "Verify your email address".into(),
                body: self.mail_body("verify your email address", "verify-email", &token),
            })
            .await
    }

    pub async fn confirm_verification(&self, token: &str) -> Result<UserRecord, AuthError> {
        for _ in 0..RETRIES {
            let (record, mut write) = self.take_one_time(token, OneTimeKind::VerifyEmail).await?;
            let Some(Versioned {
                version,
                value: mut user,
            }) = self.store.get::<UserRecord>(user_key(&record.uid)).await?
            else {
                return Err(invalid_one_time());
            };
            if user.email.as_deref() != Some(record.email.as_str()) {
                return Err(invalid_one_time());
            }
            user.email_verified = true;
            put(&mut write, user_key(&user.uid), &user, Some(Some(version)))?;
            if self.store.commit(write).await? {
                return Ok(user);
            }
        }
        Err(AuthError::internal(
            "verification kept conflicting; giving up",
        ))
    }

    /// The checks of a reset request that may answer the client: rate limits and syntax.
    pub fn check_password_reset(&self, email: &str, ip: IpAddr) -> Result<(), AuthError> {
        self.limiter.check_ip(Action::PasswordReset, ip)?;
        let email = Email::parse(email)?;
        self.limiter
            .check_account(Action::PasswordReset, email.as_str(), ip)
    }

    /// Mails a reset token when `email` belongs to a user with a password; otherwise does
    /// nothing. Run after answering, so the answer never depends on it.
    pub async fn send_password_reset(&self, email: &str) -> Result<(), AuthError> {
        let email = Email::parse(email)?;
        let Some(user) = self.user_by_email(&email).await? else {
            return Ok(());
        };
        if user.value.password_hash.is_none() {
            return Ok(());
        }
        let token = self
            .one_time_token(
                OneTimeKind::PasswordReset,
                &user.value.uid,
                email.as_str(),
                self.reset_ttl_ms,
            )
            .await?;
        let mail = Mail {
            to: email.as_str().to_string(),
            subject: "Reset your password".into(),
            body: self.mail_body("choose a new password", "reset-password", &token),
        };
        self.mailer.send(mail).await
    }

    /// Sets a new password with a reset token; ends every session of the user.
    pub async fn confirm_password_reset(
        &self,
        token: &str,
        new_password: &str,
    ) -> Result<(), AuthError> {
        let password = Password::new_password(new_password)?;
        // Check the token before spending a hash on it.
        self.take_one_time(token, OneTimeKind::PasswordReset)
            .await?;
        let hash = self.hasher.hash(&password).await?;
        for _ in 0..RETRIES {
            let (record, mut write) = self
                .take_one_time(token, OneTimeKind::PasswordReset)
                .await?;
            let Some(Versioned {
                version,
                value: mut user,
            }) = self.store.get::<UserRecord>(user_key(&record.uid)).await?
            else {
                return Err(invalid_one_time());
            };
            user.password_hash = Some(hash.clone());
            if user.email.as_deref() == Some(record.email.as_str()) {
                // Following the mailed link proves the inbox is the user's.
                user.email_verified = true;
            }
            put(&mut write, user_key(&user.uid), &user, Some(Some(version)))?;
            if self.try_change_revocation(&user.uid, write, |_| {}).await? {
                return Ok(());
            }
        }
        Err(AuthError::internal(
            "password reset kept conflicting; giving up",
        ))
    }

    async fn one_time_token(
        &self,
        kind: OneTimeKind,
        uid: &str,
        email: &str,
        ttl_ms: i64,
    ) -> Result<String, AuthError> {
        let token = sessions::random_token();
        let record = OneTimeRecord {
            kind,
            uid: uid.to_string(),
            email: email.to_string(),
            expires_ms: now_ms() + ttl_ms,
        };
        let mut write = WriteSet::default();
        put(&mut write, one_time_key(&token), &record, Some(None))?;
        self.store.commit(write).await?;
        Ok(token)
    }

    /// Reads a one-time token and starts a write that consumes it (checked, so it is used once).
    async fn take_one_time(
        &self,
        token: &str,
        kind: OneTimeKind,
    ) -> Result<(OneTimeRecord, WriteSet), AuthError> {
        let Some(Versioned { version, value }) =
            self.store.get::<OneTimeRecord>(one_time_key(token)).await?
        else {
            return Err(invalid_one_time());
        };
        if value.kind != kind || value.expires_ms <= now_ms() {
            return Err(invalid_one_time());
        }
        let mut write = WriteSet::default();
        write.check(
            Space::Auth,
            one_time_key(token),
            crate::store::Expect::Version(version),
        );
        write.delete(Space::Auth, one_time_key(token));
        Ok((value, write))
    }

    fn mail_body(&self, purpose: &str, page: &str, token: &str) -> String {
        let link = match &self.action_url {
            Some(base) => format!(
                "Open this link to {purpose}:\r\n{}/{page}?token={token}\r\n\r\n",
                base.trim_end_matches('/')
            ),
            None => String::new(),
        };
        format!(
            "Hello,\r\n\r\n{link}Or enter this token in the app to {purpose}:\r\n\r\ntoken: {token}\r\n\r\nIf you did not ask for this, ignore this mail.\r\n"
        )
    }

    // ----- admin -----

    /// Mints an access token for any uid (registered or not) with extra claims.
    pub fn mint(&self, uid: &str, claims: Option<&Json>) -> Result<(String, i64), AuthError> {
        check_uid(uid)?;
        let mut claims = claims.map(check_claims).transpose()?.unwrap_or_default();
        claims.insert("sign_in_provider".into(), json!("custom"));
        claims.insert("auth_time".into(), json!(now_secs()));
        let token = self.tokens().sign(uid, now_secs(), claims)?;
        Ok((token, self.tokens().settings().access_ttl_secs))
    }

    /// A page of users in uid order, after `page_token` (a uid).
    pub async fn list_users(
        &self,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<(Vec<UserRecord>, Option<String>), AuthError> {
        let after = page_token.map(user_key);
        let entries = self.store.scan(b"u/".to_vec(), after, limit).await?;
        let users = entries
            .iter()
            .map(|(_, bytes)| decode::<UserRecord>(bytes).map(|u| u.value))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if users.len() == limit {
            users.last().map(|u| u.uid.clone())
        } else {
            None
        };
        Ok((users, next))
    }

    pub async fn create_user(&self, new: NewUser) -> Result<UserRecord, AuthError> {
        let email = new.email.as_deref().map(Email::parse).transpose()?;
        let password = new
            .password
            .as_deref()
            .map(Password::new_password)
            .transpose()?;
        let display_name = new
            .display_name
            .as_ref()
            .map(check_display_name)
            .transpose()?
            .flatten();
        let claims = new
            .claims
            .as_ref()
            .map(check_claims)
            .transpose()?
            .unwrap_or_default();
        if password.is_some() && email.is_none() {
            return Err(AuthError::invalid("a password needs an email"));
        }
        let password_hash = match &password {
            Some(password) => Some(self.hasher.hash(password).await?),
            None => None,
        };
        let user = UserRecord {
            uid: new_uid(),
            email: email.as_ref().map(|e| e.as_str().to_string()),
            email_verified: new.email_verified,
            display_name,
            anonymous: email.is_none(),
            created_at_ms: now_ms(),
            password_hash,
            claims,
            disabled: false,
        };
        let mut write = WriteSet::default();
        if let Some(email) = &email {
            put(
                &mut write,
                email_key(email.as_str()),
                &EmailRecord {
                    uid: user.uid.clone(),
                },
                Some(None),
            )?;
        }
        put(&mut write, user_key(&user.uid), &user, Some(None))?;
        if !self.store.commit(write).await? {
            return Err(email_taken());
        }
        Ok(user)
    }

    /// Disables or enables a user, changes its name, verification or custom claims. Disabling
    /// ends every session and rejects its access tokens at once.
    pub async fn admin_update_user(
        &self,
        uid: &str,
        update: AdminUserUpdate,
    ) -> Result<UserRecord, AuthError> {
        let display_name = update
            .display_name
            .as_ref()
            .map(check_display_name)
            .transpose()?;
        let claims = update.claims.as_ref().map(check_claims).transpose()?;
        for _ in 0..RETRIES {
            let Some(Versioned {
                version,
                value: mut user,
            }) = self.store.get::<UserRecord>(user_key(uid)).await?
            else {
                return Err(AuthError::NotFound(format!("no user with uid '{uid}'")));
            };
            if let Some(name) = &display_name {
                user.display_name = name.clone();
            }
            if let Some(verified) = update.email_verified {
                user.email_verified = verified;
            }
            if let Some(claims) = &claims {
                user.claims = claims.clone();
            }
            if let Some(disabled) = update.disabled {
                user.disabled = disabled;
            }
            let mut write = WriteSet::default();
            put(&mut write, user_key(uid), &user, Some(Some(version)))?;
            match update.disabled {
                Some(true) => {
                    if self
                        .try_change_revocation(uid, write, |r| r.disabled = true)
                        .await?
                    {
                        return Ok(user);
                    }
                    continue;
                }
                Some(false) => {
                    let current = self.revocation(uid).await?;
                    if let Some(current) = current {
                        let mut revocation = current.value;
                        revocation.disabled = false;
                        put(
                            &mut write,
                            revocation_key(uid),
                            &revocation,
                            Some(Some(current.version)),
                        )?;
                    }
                }
                None => {}
            }
            if self.store.commit(write).await? {
                return Ok(user);
            }
        }
        Err(AuthError::internal(
            "user update kept conflicting; giving up",
        ))
    }
}

/// Reloads the signing keys when the key file changes (`hearth keys rotate` on a running
/// server): checked every `KEY_POLL`; a file that does not load leaves the current keys in use.
async fn watch_keys(
    tokens: Arc<RwLock<Arc<TokenService>>>,
    settings: TokenSettings,
    data_dir: std::path::PathBuf,
) {
    let path = tokens::KeyFile::path(&data_dir);
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut seen = modified(&path);
    let mut interval = tokio::time::interval(KEY_POLL);
    loop {
        interval.tick().await;
        let now = modified(&path);
        if now == seen {
            continue;
        }
        seen = now;
        let reloaded = tokens::KeyFile::load(&data_dir).and_then(|file| match file {
            Some(file) => TokenService::new(settings.clone(), &file),
            None => Err(AuthError::internal("the key file is gone")),
        });
        match (reloaded, tokens.write()) {
            (Ok(service), Ok(mut current)) => {
                *current = Arc::new(service);
                tracing::info!("signing keys reloaded");
            }
            (Err(err), _) => tracing::error!(error = %err, "cannot reload the signing keys"),
            (_, Err(_)) => tracing::error!("token service lock poisoned"),
        }
    }
}

async fn sweep_forever(store: AuthStore) {
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match sessions::sweep_expired(&store, now_ms()).await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "swept expired auth tokens"),
            Err(err) => tracing::warn!(error = %err, "sweeping expired auth tokens failed"),
        }
    }
}

fn email_taken() -> AuthError {
    AuthError::AlreadyExists("an account with this email already exists".into())
}

fn invalid_one_time() -> AuthError {
    AuthError::unauthenticated("the token is invalid, expired or already used")
}

/// The identity claims of a user's access token, plus its custom claims.
fn access_claims(user: &UserRecord, auth_time: i64) -> Map<String, Json> {
    let mut claims = user.claims.clone();
    claims.insert("auth_time".into(), json!(auth_time));
    if let Some(email) = &user.email {
        claims.insert("email".into(), json!(email));
    }
    claims.insert("email_verified".into(), json!(user.email_verified));
    claims.insert(
        "sign_in_provider".into(),
        json!(if user.anonymous {
            "anonymous"
        } else {
            "password"
        }),
    );
    claims
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::redb_store::GroupCommitLimits;
    use crate::store::RedbStore;

    fn open(dir: &Path) -> (Auth, SharedStore) {
        let store: SharedStore = Arc::new(
            RedbStore::open(
                dir,
                GroupCommitLimits::default(),
                Arc::new(Metrics::default()),
            )
            .unwrap(),
        );
        let settings = AuthSettings {
            argon2_memory_kib: 1_024,
            argon2_iterations: 1,
            refresh_token_ttl_secs: 60,
            rate_limits: false,
            ..AuthSettings::default()
        };
        let hooks = Hooks::open(store.clone(), crate::config::HookSettings::default()).unwrap();
        let auth = Auth::open(store.clone(), &settings, dir, "http://test".into(), hooks).unwrap();
        (auth, store)
    }

    fn count(store: &SharedStore, prefix: &[u8]) -> usize {
        let view = store.read().unwrap();
        view.scan(
            Space::Auth,
            &crate::store::KeyRange::prefix(prefix),
            10_000,
            false,
        )
        .unwrap()
        .len()
    }

    #[tokio::test]
    async fn the_sweep_removes_expired_and_orphaned_tokens_and_keeps_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, store) = open(dir.path());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let live = auth.anonymous(ip).await.unwrap();
        let rotated = auth.refresh(&live.refresh_token, ip).await.unwrap();
        let ended = auth.anonymous(ip).await.unwrap();
        auth.logout(None, Some(&ended.refresh_token), false)
            .await
            .unwrap();
        assert_eq!(count(&store, b"t/"), 3);

        // Now: only the ended session's token goes; the rotated one stays to reveal reuse.
        let deleted = sessions::sweep_expired(&auth.store, now_ms())
            .await
            .unwrap();
        assert_eq!(deleted, 1);
        assert_eq!(count(&store, b"t/"), 2);
        assert!(auth.refresh(&rotated.refresh_token, ip).await.is_ok());

        // Past every refresh expiry: every refresh token goes.
        let later = now_ms() + 61_000;
        sessions::sweep_expired(&auth.store, later).await.unwrap();
        assert_eq!(count(&store, b"t/"), 0);

        // One-time tokens go once expired (verification: 24 hours).
        let user = auth
            .signup("sweep@example.com", "a long enough secret", None, ip)
            .await
            .unwrap();
        let identity = auth.authenticate(&user.access_token).await.unwrap();
        auth.send_verification(&identity, ip).await.unwrap();
        assert_eq!(count(&store, b"o/"), 1);
        sessions::sweep_expired(&auth.store, later).await.unwrap();
        assert_eq!(count(&store, b"o/"), 1);
        sessions::sweep_expired(&auth.store, now_ms() + 25 * 3_600_000)
            .await
            .unwrap();
        assert_eq!(count(&store, b"o/"), 0);
        store.close();
    }
}
