//! The access-token negative suite: forged and malformed tokens, each rejected with 401. The
//! forgeries that need a valid signature are signed with the server's own key (read from its
//! data dir), so each one fails for exactly the property it breaks — a control token built the
//! same way with correct claims is accepted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hearth_tests::{auth_env, tokens_of, TestServer};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn ed_key(seed: &[u8]) -> EncodingKey {
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(seed);
    EncodingKey::from_ed_der(&der)
}

fn b64(value: &Json) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Forger {
    kid: String,
    x: String,
    key: EncodingKey,
    issuer: String,
    uid: String,
}

impl Forger {
    fn claims(&self) -> Json {
        let now = now();
        json!({"iss": self.issuer, "aud": "hearth", "sub": self.uid, "iat": now, "nbf": now,
               "exp": now + 600, "auth_time": now, "sign_in_provider": "password"})
    }

    fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        header
    }

    fn sign(&self, header: &Header, claims: &Json) -> String {
        jsonwebtoken::encode(header, claims, &self.key).unwrap()
    }

    fn with_claims(&self, change: impl FnOnce(&mut Json)) -> String {
        let mut claims = self.claims();
        change(&mut claims);
        self.sign(&self.header(), &claims)
    }

    fn with_header(&self, change: impl FnOnce(&mut Header)) -> String {
        let mut header = self.header();
        change(&mut header);
        self.sign(&header, &self.claims())
    }
}

#[tokio::test]
async fn forged_and_malformed_access_tokens_are_all_rejected() {
    let server = TestServer::start_with(auth_env()).await;
    let signup = server
        .signup("victim@example.com", "correct horse battery staple")
        .await;
    let (real, _) = tokens_of(&signup);
    let uid = signup.body["user"]["uid"].as_str().unwrap().to_string();
    let file: Json =
        serde_json::from_slice(&std::fs::read(server.data_dir.join("auth_keys.json")).unwrap())
            .unwrap();
    let stored = &file["keys"][0];
    let seed = URL_SAFE_NO_PAD
        .decode(stored["seed"].as_str().unwrap())
        .unwrap();
    let forger = Forger {
        kid: stored["kid"].as_str().unwrap().into(),
        x: stored["x"].as_str().unwrap().into(),
        key: ed_key(&seed),
        issuer: server.url.clone(),
        uid: uid.clone(),
    };

    // Control: built like the forgeries, with every property right, it is accepted.
    let control = forger.with_claims(|_| {});
    let accepted = server.current_user(&control).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(accepted.body["user"]["uid"], uid.as_str());
    assert_eq!(server.current_user(&real).await.status, StatusCode::OK);

    let parts: Vec<&str> = real.split('.').collect();
    let other_seed = [7u8; 32];
    let stranger = ed_key(&other_seed);
    let public_key = URL_SAFE_NO_PAD.decode(&forger.x).unwrap();
    let hs256 = |secret: &[u8]| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(forger.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, &forger.claims(), &EncodingKey::from_secret(secret)).unwrap()
    };
    let none_header = json!({"alg": "none", "typ": "at+jwt", "kid": forger.kid});
    let mut tampered_claims = forger.claims();
    tampered_claims["sub"] = json!("someone-else");

    let forgeries: Vec<(&str, String)> = vec![
        (
            "alg none, no signature",
            format!("{}.{}.", b64(&none_header), parts[1]),
        ),
        (
            "alg none with a copied signature",
            format!("{}.{}.{}", b64(&none_header), parts[1], parts[2]),
        ),
        (
            "alg NONE in capitals",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "NONE", "typ": "at+jwt", "kid": forger.kid})),
                parts[1]
            ),
        ),
        ("HS256 keyed with the public key bytes", hs256(&public_key)),
        (
            "HS256 keyed with the JWK x string",
            hs256(forger.x.as_bytes()),
        ),
        (
            "unknown kid",
            forger.with_header(|h| h.kid = Some("not-a-key".into())),
        ),
        ("no kid", forger.with_header(|h| h.kid = None)),
        (
            "typ JWT instead of at+jwt",
            forger.with_header(|h| h.typ = Some("JWT".into())),
        ),
        ("no typ", forger.with_header(|h| h.typ = None)),
        (
            "wrong audience",
            forger.with_claims(|c| c["aud"] = json!("another-app")),
        ),
        (
            "no audience",
            forger.with_claims(|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
        ),
        (
            "wrong issuer",
            forger.with_claims(|c| c["iss"] = json!("https://evil.example")),
        ),
        (
            "expired an hour ago",
            forger.with_claims(|c| c["exp"] = json!(now() - 3_600)),
        ),
        (
            "not valid for another hour",
            forger.with_claims(|c| c["nbf"] = json!(now() + 3_600)),
        ),
        (
            "exp as a string",
            forger.with_claims(|c| c["exp"] = json!((now() + 600).to_string())),
        ),
        (
            "no exp",
            forger.with_claims(|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "iat as a string",
            forger.with_claims(|c| c["iat"] = json!(now().to_string())),
        ),
        ("empty sub", forger.with_claims(|c| c["sub"] = json!(""))),
        (
            "signed by another Ed25519 key under the server's kid",
            jsonwebtoken::encode(&forger.header(), &forger.claims(), &stranger).unwrap(),
        ),
        (
            "claims changed after signing",
            format!("{}.{}.{}", parts[0], b64(&tampered_claims), parts[2]),
        ),
        (
            "signature of another token",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                control.split('.').nth(2).unwrap()
            ),
        ),
        ("signature truncated", real[..real.len() - 4].to_string()),
        ("two parts only", format!("{}.{}", parts[0], parts[1])),
        ("not a JWT at all", "hello".into()),
        (
            "header that is not JSON",
            format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("{"), parts[1], parts[2]),
        ),
    ];
    assert!(forgeries.len() >= 15);
    for (name, token) in &forgeries {
        for path in ["/v1/auth/user", "/v1/docs/posts/p1"] {
            let response = server.send(server.bearer(Method::GET, path, token)).await;
            assert_eq!(
                response.status,
                StatusCode::UNAUTHORIZED,
                "{name} on {path}: {}",
                response.text
            );
            assert_eq!(response.error_code(), "unauthenticated", "{name}");
            assert_eq!(
                response.header("www-authenticate"),
                Some("Bearer"),
                "{name}"
            );
        }
    }
    // Nothing the forgeries did changed the victim.
    assert_eq!(server.current_user(&real).await.status, StatusCode::OK);
}
