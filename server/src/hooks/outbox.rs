//! The outbox of `after` hooks and its delivery log, in `Space::Hooks`:
//! - `d/{name}` → the hook definition (stored JSON, secret included)
//! - `o/{name}\0{version}{index}` → a pending delivery (`Entry`), written by the commit that
//!   made the change (`WriteOp::PutAtVersion` fills in the version), so nothing uncommitted is
//!   ever sent and nothing committed is lost
//! - `l/{name}\0{version}{index}` → a delivered event (summary only, trimmed after the retention)
//! - `f/{name}\0{version}{index}` → a delivery given up on (with its event, for redelivery)
//!
//! Keys sort in commit order, so delivering each document's entries in key order delivers them
//! in commit order per document. The event id is derived from the key: the same on every retry.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use super::definition::EventKind;
use super::event::Event;

pub const DEFINITION_PREFIX: &[u8] = b"d/";
const PENDING: u8 = b'o';
const DELIVERED: u8 = b'l';
const FAILED: u8 = b'f';

pub fn definition_key(name: &str) -> Vec<u8> {
    let mut key = DEFINITION_PREFIX.to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

/// `o/{name}\0` or `l/{name}\0`: every entry of one hook in one state.
fn hook_prefix(state: u8, name: &str) -> Vec<u8> {
    let mut key = vec![state, b'/'];
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key
}

/// Where the entries of `status` live.
pub fn status_prefix(name: &str, status: Status) -> Vec<u8> {
    match status {
        Status::Pending => hook_prefix(PENDING, name),
        Status::Delivered => hook_prefix(DELIVERED, name),
        Status::Failed => hook_prefix(FAILED, name),
    }
}

/// The position of an event: its commit version and its index among the commit's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventPosition {
    pub version: u64,
    pub index: u32,
}

impl EventPosition {
    /// The key suffix after `prefix` (`version` is written by the commit itself).
    pub fn index_suffix(index: u32) -> Vec<u8> {
        index.to_be_bytes().to_vec()
    }

    pub fn from_key(prefix: &[u8], key: &[u8]) -> Option<EventPosition> {
        let rest = key.strip_prefix(prefix)?;
        if rest.len() != 12 {
            return None;
        }
        let version = u64::from_be_bytes(rest[..8].try_into().ok()?);
        let index = u32::from_be_bytes(rest[8..].try_into().ok()?);
        Some(EventPosition { version, index })
    }

    pub fn key(&self, prefix: &[u8]) -> Vec<u8> {
        let mut key = prefix.to_vec();
        key.extend_from_slice(&self.version.to_be_bytes());
        key.extend_from_slice(&self.index.to_be_bytes());
        key
    }

    /// The CloudEvents / `webhook-id` id, also the delivery id of the admin API.
    pub fn event_id(&self) -> String {
        format!("evt_{:016x}_{:04x}", self.version, self.index)
    }

    pub fn parse_event_id(id: &str) -> Option<EventPosition> {
        let rest = id.strip_prefix("evt_")?;
        let (version, index) = rest.split_once('_')?;
        if version.len() != 16 || index.len() != 4 {
            return None;
        }
        Some(EventPosition {
            version: u64::from_str_radix(version, 16).ok()?,
            index: u32::from_str_radix(index, 16).ok()?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Delivered,
    Failed,
}

/// One delivery of one event to one hook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub event: String,
    /// The document path (or `users/{uid}`): deliveries are ordered per subject.
    pub subject: String,
    pub time: String,
    /// `{"before", "after", "auth"}`; `after.version` is filled from the key when sent.
    pub data: Json,
    pub status: Status,
    pub created_ms: i64,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_attempt_ms: Option<i64>,
    pub last_error: Option<String>,
    pub finished_ms: Option<i64>,
}

impl Entry {
    pub fn new(kind: EventKind, subject: &str, time: &str, data: Json, now_ms: i64) -> Entry {
        Entry {
            event: kind.as_str().to_string(),
            subject: subject.to_string(),
            time: time.to_string(),
            data,
            status: Status::Pending,
            created_ms: now_ms,
            attempts: 0,
            next_attempt_ms: 0,
            last_attempt_ms: None,
            last_error: None,
            finished_ms: None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        serde_json::from_slice(bytes).ok()
    }

    pub fn kind(&self) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == self.event)
    }

    /// The event as sent: the commit's version filled into `after.version`.
    pub fn to_event(&self, position: EventPosition) -> Option<Event> {
        let mut data = self.data.clone();
        if let Some(after) = data.get_mut("after").and_then(Json::as_object_mut) {
            if after.contains_key("version") {
                after.insert("version".into(), json!(position.version));
            }
        }
        Some(Event {
            id: position.event_id(),
            kind: self.kind()?,
            subject: self.subject.clone(),
            time: self.time.clone(),
            data,
        })
    }

    /// The admin API's view of a delivery (without the event data).
    pub fn summary(&self, position: EventPosition) -> Json {
        json!({
            "id": position.event_id(),
            "event": self.event,
            "subject": self.subject,
            "status": self.status,
            "attempts": self.attempts,
            "createdAt": rfc3339_ms(self.created_ms),
            "lastAttemptAt": self.last_attempt_ms.map(rfc3339_ms),
            "nextAttemptAt": (self.status == Status::Pending && self.next_attempt_ms > 0)
                .then(|| rfc3339_ms(self.next_attempt_ms)),
            "finishedAt": self.finished_ms.map(rfc3339_ms),
            "lastError": self.last_error,
        })
    }
}

pub use crate::model::timestamp::rfc3339_from_unix_ms as rfc3339_ms;

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_and_sort_like_keys() {
        let a = EventPosition {
            version: 7,
            index: 2,
        };
        let b = EventPosition {
            version: 7,
            index: 10,
        };
        assert_eq!(EventPosition::parse_event_id(&a.event_id()), Some(a));
        let prefix = status_prefix("h", Status::Pending);
        assert!(a.key(&prefix) < b.key(&prefix));
        assert_eq!(EventPosition::from_key(&prefix, &b.key(&prefix)), Some(b));
        assert_eq!(EventPosition::parse_event_id("evt_1_2"), None);
    }
}
