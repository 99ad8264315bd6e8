//! The wire form of a hook call: a CloudEvents 1.0 event in structured mode, signed per
//! Standard Webhooks (DESIGN.md §6).

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use serde_json::{json, Value as Json};
use sha2::Sha256;

use super::definition::{EventKind, Mode, Secret};

pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// What a call is about; `data` is `{"before", "after", "auth"}`.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub kind: EventKind,
    /// The document path (`posts/p1`) or, for auth events, `users/{uid}`.
    pub subject: String,
    /// RFC 3339.
    pub time: String,
    pub data: Json,
}

impl Event {
    pub fn source(&self) -> String {
        if self.kind.is_document() {
            format!("/hearth/docs/{}", self.subject)
        } else {
            format!("/hearth/auth/{}", self.subject)
        }
    }

    /// The request body. Built the same way on every retry, so the bytes do not change.
    pub fn body(&self, mode: Mode) -> Vec<u8> {
        let event = json!({
            "specversion": "1.0",
            "id": self.id,
            "source": self.source(),
            "type": self.kind.cloud_event_type(mode),
            "subject": self.subject,
            "time": self.time,
            "datacontenttype": "application/json",
            "data": self.data,
        });
        serde_json::to_vec(&event).unwrap_or_default()
    }
}

/// The `webhook-signature` header value: `v1,` + base64(HMAC-SHA256(key, "id.timestamp.body")).
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail; an empty MAC would only make the
    // receiver reject the call.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.key()) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let signature = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(signature)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_standard_webhooks_reference() {
        // The test vector of the Standard Webhooks specification's reference libraries.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
