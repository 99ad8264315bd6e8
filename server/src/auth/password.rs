//! Passwords: the `Password` newtype (length and breached-list checks at the edge) and argon2id
//! hashing on a bounded pool of dedicated threads, so a login flood can neither exhaust memory
//! (each hash holds `memory_kib`) nor stall the async executor.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use rand::Rng as _;
use tokio::sync::{mpsc, oneshot};

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

/// A unit of hashing work, run on a hashing thread with that thread's reusable memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Jobs waiting for a hashing thread at most; more callers wait (asynchronously) to enqueue.
const QUEUE: usize = 1_024;

/// Hashes and verifies passwords on `concurrency` dedicated threads. Each thread keeps one
/// argon2 memory buffer and reuses it, so hashing holds at most `concurrency × memory_kib` however
/// many logins arrive at once, and never runs on the async executor.
pub struct PasswordHasher {
    params: Params,
    jobs: mpsc::Sender<Job>,
    /// Verified in place of a real hash when the email is unknown, so both cases cost the same.
    dummy_hash: String,
}

impl PasswordHasher {
    pub fn new(cost: HashCost, concurrency: usize) -> Result<PasswordHasher, AuthError> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| AuthError::internal(format!("invalid argon2 parameters: {e}")))?;
        let dummy_hash = hash_with_memory(
            &params,
            "not a real password: dummy for unknown emails",
            &mut Vec::new(),
        )?;
        let (jobs, receiver) = mpsc::channel::<Job>(QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..concurrency.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("hearth-argon2-{i}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        // One idle thread waits on the queue at a time; the lock is released as
                        // soon as it has a job.
                        let job = match receiver.lock() {
                            Ok(mut queue) => queue.blocking_recv(),
                            Err(_) => None,
                        };
                        match job {
                            Some(job) => job(&mut memory),
                            None => return,
                        }
                    }
                })
                .map_err(|e| AuthError::internal(format!("cannot start a hashing thread: {e}")))?;
        }
        Ok(PasswordHasher {
            params,
            jobs,
            dummy_hash,
        })
    }

    pub async fn hash(&self, password: &Password) -> Result<String, AuthError> {
        let params = self.params.clone();
        let text = password.0.clone();
        self.run(move |memory| hash_with_memory(&params, &text, memory))
            .await?
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
        let text = password.0.clone();
        let matches = self
            .run(move |memory| verify_with_memory(&hash, &text, memory))
            .await??;
        Ok(known && matches)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(move |memory| {
                let _ = reply.send(work(memory));
            }))
            .await
            .map_err(|_| AuthError::internal("the hashing threads stopped"))?;
        answer
            .await
            .map_err(|_| AuthError::internal("a hashing job was dropped"))
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// Hashes into a PHC string (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`) using `memory`.
fn hash_with_memory(
    params: &Params,
    text: &str,
    memory: &mut Vec<Block>,
) -> Result<String, AuthError> {
    let salt: [u8; 16] = rand::rng().random();
    let mut output = [0u8; 32];
    memory.resize(params.block_count(), Block::default());
    argon2(params)
        .hash_password_into_with_memory(text.as_bytes(), &salt, &mut output, &mut memory[..])
        .map_err(|e| AuthError::internal(format!("argon2: {e}")))?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(output)
    ))
}

/// Checks `text` against a stored PHC string (whatever cost it was made with) using `memory`.
fn verify_with_memory(
    stored: &str,
    text: &str,
    memory: &mut Vec<Block>,
) -> Result<bool, AuthError> {
    let corrupt = |what: &str| AuthError::internal(format!("stored password hash: {what}"));
    let parsed = PasswordHash::new(stored).map_err(|e| corrupt(&e.to_string()))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(corrupt("not argon2id"));
    }
    let params = Params::try_from(&parsed).map_err(|e| corrupt(&e.to_string()))?;
    let mut salt = [0u8; 64];
    let salt = parsed
        .salt
        .ok_or_else(|| corrupt("no salt"))?
        .decode_b64(&mut salt)
        .map_err(|e| corrupt(&e.to_string()))?;
    let expected = parsed.hash.ok_or_else(|| corrupt("no hash"))?;
    let expected = expected.as_bytes();
    let mut output = vec![0u8; expected.len()];
    memory.resize(params.block_count(), Block::default());
    argon2(&params)
        .hash_password_into_with_memory(text.as_bytes(), salt, &mut output, &mut memory[..])
        .map_err(|e| AuthError::internal(format!("argon2: {e}")))?;
    // Constant time: the comparison must not reveal how many leading bytes matched.
    let difference = output
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    Ok(difference == 0 && output.len() == expected.len())
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

    #[tokio::test]
    async fn hashes_interoperate_with_the_reference_phc_implementation() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, SaltString};
        let hasher = PasswordHasher::new(CHEAP, 1).unwrap();
        let password = Password::new_password("interoperable secret").unwrap();
        let ours = hasher.hash(&password).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        let params = Params::new(1_024, 1, 1, None).unwrap();
        assert!(argon2(&params)
            .verify_password(b"interoperable secret", &parsed)
            .is_ok());
        let salt = SaltString::encode_b64(&[9u8; 16]).unwrap();
        let theirs = argon2(&params)
            .hash_password(b"interoperable secret", &salt)
            .unwrap()
            .to_string();
        assert!(hasher
            .verify(&password, Some(theirs.clone()))
            .await
            .unwrap());
        let wrong = Password::offered("interoperable secreT").unwrap();
        assert!(!hasher.verify(&wrong, Some(theirs)).await.unwrap());
    }
}
