//! Access tokens: EdDSA (Ed25519) JWTs with a `kid` and `typ: at+jwt`, the signing keys (made on
//! first start, kept in `auth_keys.json` in the data dir, rotatable), the JWKS and the checks a
//! presented token must pass. Only EdDSA verifies; `iss`, `aud`, `exp`, `nbf` and `typ` are checked.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};
use sha2::{Digest as _, Sha256};

use super::error::AuthError;

/// The header `typ` of every access token (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// The file in the data dir that holds the signing keys (mode 0600).
pub const KEY_FILE: &str = "auth_keys.json";

/// Claims the server sets itself; custom claims may not use these names.
pub const RESERVED_CLAIMS: [&str; 14] = [
    "iss",
    "aud",
    "sub",
    "iat",
    "exp",
    "nbf",
    "jti",
    "auth_time",
    "email",
    "email_verified",
    "sign_in_provider",
    "firebase",
    "uid",
    "token",
];

/// The PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// One signing key as stored in the key file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredKey {
    pub kid: String,
    /// Unix seconds.
    pub created: i64,
    /// The 32-byte Ed25519 seed, base64url.
    pub seed: String,
    /// The public key, base64url (the JWK `x`).
    pub x: String,
    /// When a newer key took over signing (Unix seconds); the key still verifies until tokens it
    /// signed have expired.
    #[serde(default)]
    pub retired: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyFile {
    /// Newest first: the first key signs.
    pub keys: Vec<StoredKey>,
}

impl KeyFile {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(KEY_FILE)
    }

    pub fn load(data_dir: &Path) -> Result<Option<KeyFile>, AuthError> {
        let path = KeyFile::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| AuthError::internal(format!("{} is invalid: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AuthError::internal(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Writes the file atomically (temp file, fsync, rename), readable by the owner only.
    pub fn save(&self, data_dir: &Path) -> Result<(), AuthError> {
        use std::io::Write as _;
        let path = KeyFile::path(data_dir);
        let temp = data_dir.join(format!("{KEY_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).map_err(AuthError::internal)?;
        let write = || -> std::io::Result<()> {
            let _ = std::fs::remove_file(&temp);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut file = options.open(&temp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)
        };
        write().map_err(|e| AuthError::internal(format!("cannot write {}: {e}", path.display())))
    }

    /// Adds a new signing key in front and retires the previous one; drops keys retired longer
    /// ago than `keep_retired_secs` (no token they signed can still be valid).
    pub fn rotate(&mut self, now: i64, keep_retired_secs: i64) {
        for key in &mut self.keys {
            key.retired.get_or_insert(now);
        }
        self.keys
            .retain(|key| key.retired.is_none_or(|at| at + keep_retired_secs > now));
        self.keys.insert(0, new_key(now));
    }
}

fn new_key(now: i64) -> StoredKey {
    let seed: [u8; 32] = rand::rng().random();
    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(public)[..12]);
    StoredKey {
        kid,
        created: now,
        seed: URL_SAFE_NO_PAD.encode(seed),
        x: URL_SAFE_NO_PAD.encode(public),
        retired: None,
    }
}

/// Loads the key file, creating it with one key on first start.
pub fn load_or_create_keys(data_dir: &Path, now: i64) -> Result<KeyFile, AuthError> {
    if let Some(file) = KeyFile::load(data_dir)? {
        if !file.keys.is_empty() {
            return Ok(file);
        }
    }
    let file = KeyFile {
        keys: vec![new_key(now)],
    };
    file.save(data_dir)?;
    Ok(file)
}

/// `hearth keys rotate`: adds a new signing key to the key file (creating it if needed). Keys
/// retired longer ago than an access token lives (plus the leeway) are dropped.
pub fn rotate_keys(
    data_dir: &Path,
    settings: &crate::config::AuthSettings,
) -> Result<String, AuthError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut file = KeyFile::load(data_dir)?.unwrap_or_default();
    let keep = i64::try_from(settings.access_token_ttl_secs + settings.token_leeway_secs)
        .map_err(AuthError::internal)?;
    file.rotate(now, keep);
    file.save(data_dir)?;
    file.keys
        .first()
        .map(|key| key.kid.clone())
        .ok_or_else(|| AuthError::internal("rotation left no key"))
}

struct VerifyingKey {
    kid: String,
    x: String,
    key: DecodingKey,
}

/// What a valid access token says: the uid and every claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub uid: String,
    /// Issued-at, Unix seconds (checked against the user's revoke-all time).
    pub issued_at: i64,
    /// All claims of the token, standard and custom (rules read them as `request.auth.token`).
    pub claims: Map<String, Json>,
}

/// Token settings.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl_secs: i64,
    pub leeway_secs: u64,
}

/// Signs access tokens with the newest key and verifies them with any key still current.
pub struct TokenService {
    settings: TokenSettings,
    signing_kid: String,
    signing: EncodingKey,
    verifying: Vec<VerifyingKey>,
    validation: Validation,
}

impl TokenService {
    pub fn new(settings: TokenSettings, keys: &KeyFile) -> Result<TokenService, AuthError> {
        let first = keys
            .keys
            .first()
            .ok_or_else(|| AuthError::internal("the key file holds no key"))?;
        let seed = URL_SAFE_NO_PAD
            .decode(&first.seed)
            .map_err(|e| AuthError::internal(format!("key {}: {e}", first.kid)))?;
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let signing = EncodingKey::from_ed_der(&der);
        let mut verifying = Vec::new();
        for key in &keys.keys {
            verifying.push(VerifyingKey {
                kid: key.kid.clone(),
                x: key.x.clone(),
                key: DecodingKey::from_ed_components(&key.x)
                    .map_err(|e| AuthError::internal(format!("key {}: {e}", key.kid)))?,
            });
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = settings.leeway_secs;
        Ok(TokenService {
            settings,
            signing_kid: first.kid.clone(),
            signing,
            verifying,
            validation,
        })
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// Signs a token for `uid`. `claims` holds the identity claims (`email`, `auth_time`, …) and
    /// the custom claims; the standard ones are set here. `issued_at` may lie up to a second in
    /// the future (see `Auth::issue_time`).
    pub fn sign(
        &self,
        uid: &str,
        issued_at: i64,
        mut claims: Map<String, Json>,
    ) -> Result<String, AuthError> {
        claims.insert("iss".into(), json!(self.settings.issuer));
        claims.insert("aud".into(), json!(self.settings.audience));
        claims.insert("sub".into(), json!(uid));
        claims.insert("iat".into(), json!(issued_at));
        claims.insert("nbf".into(), json!(issued_at));
        claims.insert(
            "exp".into(),
            json!(issued_at + self.settings.access_ttl_secs),
        );
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signing_kid.clone());
        header.typ = Some(ACCESS_TOKEN_TYPE.into());
        jsonwebtoken::encode(&header, &claims, &self.signing)
            .map_err(|e| AuthError::internal(format!("cannot sign a token: {e}")))
    }

    /// Checks signature, algorithm, `kid`, `typ`, `iss`, `aud`, `exp`, `nbf`; any failure is
    /// `Unauthenticated` with a short reason (never the key material).
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let reject = |why: &str| AuthError::unauthenticated(format!("invalid access token: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| reject("malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(reject("algorithm not allowed"));
        }
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(reject("typ must be at+jwt"));
        }
        let kid = header.kid.ok_or_else(|| reject("no kid"))?;
        let key = self
            .verifying
            .iter()
            .find(|key| key.kid == kid)
            .ok_or_else(|| reject("unknown kid"))?;
        let data = jsonwebtoken::decode::<Map<String, Json>>(token, &key.key, &self.validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => reject("expired"),
                    ErrorKind::ImmatureSignature => reject("not yet valid"),
                    ErrorKind::InvalidSignature => reject("bad signature"),
                    ErrorKind::InvalidAudience => reject("wrong audience"),
                    ErrorKind::InvalidIssuer => reject("wrong issuer"),
                    _ => reject("malformed claims"),
                }
            })?;
        let claims = data.claims;
        let uid = claims
            .get("sub")
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| reject("sub must be a non-empty string"))?
            .to_string();
        let issued_at = claims
            .get("iat")
            .and_then(Json::as_i64)
            .ok_or_else(|| reject("iat must be an integer"))?;
        if claims.get("exp").and_then(Json::as_i64).is_none() {
            return Err(reject("exp must be an integer"));
        }
        Ok(Identity {
            uid,
            issued_at,
            claims,
        })
    }

    /// The public keys as a JWK Set.
    pub fn jwks(&self) -> Json {
        let keys: Vec<Json> = self
            .verifying
            .iter()
            .map(|key| {
                json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                       "kid": key.kid, "x": key.x})
            })
            .collect();
        json!({ "keys": keys })
    }

    /// The OpenID Provider metadata of this issuer.
    pub fn openid_configuration(&self) -> Json {
        let issuer = self.settings.issuer.trim_end_matches('/');
        json!({
            "issuer": self.settings.issuer,
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "token_endpoint": format!("{issuer}/v1/auth/refresh"),
            "userinfo_endpoint": format!("{issuer}/v1/auth/user"),
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "token_endpoint_auth_methods_supported": ["none"],
            "grant_types_supported": ["password", "refresh_token"],
            "claims_supported": ["iss", "aud", "sub", "iat", "exp", "nbf", "auth_time", "email",
                                  "email_verified", "sign_in_provider"]
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn service(dir: &Path) -> TokenService {
        let keys = load_or_create_keys(dir, 1_000).unwrap();
        TokenService::new(
            TokenSettings {
                issuer: "http://issuer".into(),
                audience: "hearth".into(),
                access_ttl_secs: 900,
                leeway_secs: 5,
            },
            &keys,
        )
        .unwrap()
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    #[test]
    fn signed_tokens_verify_with_every_claim() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = service(dir.path());
        let mut claims = Map::new();
        claims.insert("role".into(), json!("admin"));
        let token = tokens.sign("u1", now(), claims).unwrap();
        let identity = tokens.verify(&token).unwrap();
        assert_eq!(identity.uid, "u1");
        assert_eq!(identity.claims["role"], "admin");
        assert_eq!(identity.claims["aud"], "hearth");
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert!(tokens.verify(&format!("{token}x")).is_err());
    }

    #[test]
    fn expired_tokens_and_other_issuers_fail() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = service(dir.path());
        let old = tokens.sign("u1", now() - 2_000, Map::new()).unwrap();
        assert!(tokens.verify(&old).is_err());
        let other = tempfile::tempdir().unwrap();
        let foreign = service(other.path()).sign("u1", now(), Map::new()).unwrap();
        assert!(tokens.verify(&foreign).is_err(), "another key, unknown kid");
    }

    #[test]
    fn rotation_keeps_old_keys_verifying_until_their_tokens_expire() {
        let dir = tempfile::tempdir().unwrap();
        let before = service(dir.path());
        let token = before.sign("u1", now(), Map::new()).unwrap();
        let mut file = KeyFile::load(dir.path()).unwrap().unwrap();
        file.rotate(now(), 900);
        file.save(dir.path()).unwrap();
        let after = service(dir.path());
        assert!(after.verify(&token).is_ok());
        assert_eq!(after.jwks()["keys"].as_array().unwrap().len(), 2);
        let fresh = after.sign("u1", now(), Map::new()).unwrap();
        assert_ne!(
            jsonwebtoken::decode_header(&fresh).unwrap().kid,
            jsonwebtoken::decode_header(&token).unwrap().kid
        );
        file.rotate(now() + 10_000, 900);
        assert_eq!(file.keys.len(), 2, "the long-retired key is dropped");
    }
}
