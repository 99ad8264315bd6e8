//! Passwords: the `Password` newtype (length and breached-list checks at the edge) and argon2id
//! hashing on a bounded blocking pool, so a login flood can neither exhaust memory (each hash
//! holds `memory_kib`) nor stall the async executor.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng as _;
use tokio::sync::Semaphore;

use super::error::AuthError;

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 1_024;

/// The 10,000 most common breached passwords (see `server/data/README.md`), lower case.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect()
});

/// A password a user may choose: 8–1,024 characters and not one of the common breached ones.
pub struct Password(String);

impl Password {
    /// Checks a new password (signup, change, reset).
    pub fn new_password(text: &str) -> Result<Password, AuthError> {
        let chars = text.chars().count();
        if chars > MAX_PASSWORD_CHARS {
            return Err(AuthError::invalid(format!(
                "the password must be at most {MAX_PASSWORD_CHARS} characters"
            )));
        }
        if chars < MIN_PASSWORD_CHARS {
            return Err(AuthError::invalid(format!(
                "the password must be at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        if is_common(text) {
            return Err(AuthError::invalid(
                "this password is one of the most common breached passwords; choose another",
            ));
        }
        Ok(Password(text.to_string()))
    }

    /// A password offered at login: only the upper bound is checked (hashing a megabyte would be
    /// a cheap denial of service); anything else is simply compared.
    pub fn offered(text: &str) -> Result<Password, AuthError> {
        if text.chars().count() > MAX_PASSWORD_CHARS {
            return Err(AuthError::invalid(format!(
                "the password must be at most {MAX_PASSWORD_CHARS} characters"
            )));
        }
        Ok(Password(text.to_string()))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(****)")
    }
}

pub fn is_common(text: &str) -> bool {
    COMMON_PASSWORDS.contains(text.to_lowercase().as_str())
}

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// Hashes and verifies passwords on at most `concurrency` blocking threads at a time.
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// Verified in place of a real hash when the email is unknown, so both cases cost the same.
    dummy_hash: String,
}

impl PasswordHasher {
    pub fn new(cost: HashCost, concurrency: usize) -> Result<PasswordHasher, AuthError> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| AuthError::internal(format!("invalid argon2 parameters: {e}")))?;
        let dummy_hash = hash_blocking(&params, "not a real password: dummy for unknown emails")?;
        Ok(PasswordHasher {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash,
        })
    }

    pub async fn hash(&self, password: &Password) -> Result<String, AuthError> {
        let params = self.params.clone();
        let text = password.0.clone();
        self.run(move || hash_blocking(&params, &text)).await?
    }

    /// Verifies `password` against `stored`; with no stored hash (unknown email, anonymous user)
    /// the dummy hash is verified instead and the answer is false.
    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<String>,
    ) -> Result<bool, AuthError> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let params = self.params.clone();
        let text = password.0.clone();
        let matches = self
            .run(move || {
                let parsed = PasswordHash::new(&hash)
                    .map_err(|e| AuthError::internal(format!("stored hash does not parse: {e}")))?;
                Ok::<bool, AuthError>(
                    argon2(&params)
                        .verify_password(text.as_bytes(), &parsed)
                        .is_ok(),
                )
            })
            .await??;
        Ok(known && matches)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| AuthError::internal(format!("hash pool closed: {e}")))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| AuthError::internal(format!("hash task failed: {e}")))
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, text: &str) -> Result<String, AuthError> {
    let salt_bytes: [u8; 16] = rand::rng().random();
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| AuthError::internal(format!("salt: {e}")))?;
    argon2(params)
        .hash_password(text.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AuthError::internal(format!("argon2: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost {
        memory_kib: 1_024,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn new_passwords_are_checked_for_length_and_commonness() {
        assert!(Password::new_password("short").is_err());
        assert!(Password::new_password(&"x".repeat(1_025)).is_err());
        assert!(Password::new_password(&"é".repeat(1_024)).is_ok());
        assert!(Password::new_password("password").is_err());
        assert!(
            Password::new_password("PASSWORD1").is_err(),
            "compared in lower case"
        );
        assert!(Password::new_password("correct horse battery staple").is_ok());
        assert!(Password::offered("short").is_ok());
        assert!(Password::offered(&"x".repeat(1_025)).is_err());
    }

    #[test]
    fn the_common_list_holds_ten_thousand_passwords() {
        assert_eq!(COMMON_PASSWORDS.len(), 10_000);
        assert!(is_common("qwerty123") || is_common("qwerty"));
    }

    #[tokio::test]
    async fn hashes_verify_only_the_right_password_and_unknown_users_never_match() {
        let hasher = PasswordHasher::new(CHEAP, 2).unwrap();
        let right = Password::new_password("a long enough secret").unwrap();
        let wrong = Password::offered("another secret").unwrap();
        let hash = hasher.hash(&right).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(hasher.verify(&right, Some(hash.clone())).await.unwrap());
        assert!(!hasher.verify(&wrong, Some(hash)).await.unwrap());
        assert!(!hasher.verify(&right, None).await.unwrap());
    }
}
