//! The wire protocol of DESIGN.md §5: client messages parsed strictly (a malformed frame is an
//! `error` message, never a crash) and server messages rendered as JSON text.

use serde_json::{json, Map, Value as Json};

/// Longest subscription id accepted.
const MAX_ID_BYTES: usize = 128;

/// What a client may send.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `token: null` signs the connection in as a signed-out client (an extension of DESIGN §5:
    /// public data may be readable under the rules without an account).
    Auth {
        token: Option<String>,
    },
    Subscribe {
        id: String,
        target: Target,
        resume_from: Option<u64>,
    },
    Unsubscribe {
        id: String,
    },
    Ping,
}

/// What a subscription watches, as sent (validated further when subscribing).
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Doc(String),
    Query(Json),
}

/// Why a frame was refused: the code and message of the `error` reply, and the subscription id
/// when the frame named one.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolError {
    pub id: Option<String>,
    pub code: &'static str,
    pub message: String,
}

fn invalid(id: Option<&str>, message: impl Into<String>) -> ProtocolError {
    ProtocolError {
        id: id.map(str::to_string),
        code: "invalid_argument",
        message: message.into(),
    }
}

fn only_fields(
    object: &Map<String, Json>,
    allowed: &[&str],
    id: Option<&str>,
) -> Result<(), ProtocolError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(invalid(id, format!("unknown field '{unknown}'"))),
        None => Ok(()),
    }
}

impl ClientMessage {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<ClientMessage, ProtocolError> {
        let json: Json = serde_json::from_str(text)
            .map_err(|e| invalid(None, format!("the frame is not JSON: {e}")))?;
        let Json::Object(object) = json else {
            return Err(invalid(None, "a frame must be a JSON object"));
        };
        let kind = object
            .get("type")
            .and_then(Json::as_str)
            .ok_or_else(|| invalid(None, "a frame needs a string \"type\""))?;
        match kind {
            "auth" => {
                only_fields(&object, &["type", "token"], None)?;
                let token = match object.get("token") {
                    Some(Json::Null) => None,
                    Some(Json::String(t)) if !t.is_empty() => Some(t.clone()),
                    _ => {
                        return Err(invalid(
                            None,
                            "auth needs a non-empty \"token\" (or null to listen signed out)",
                        ))
                    }
                };
                Ok(ClientMessage::Auth { token })
            }
            "subscribe" => {
                let id = subscription_id(&object)?;
                only_fields(
                    &object,
                    &["type", "id", "doc", "query", "resumeFrom"],
                    Some(&id),
                )?;
                let target = match (object.get("doc"), object.get("query")) {
                    (Some(Json::String(path)), None) => Target::Doc(path.clone()),
                    (None, Some(query @ Json::Object(_))) => Target::Query(query.clone()),
                    _ => {
                        return Err(invalid(
                            Some(&id),
                            "subscribe needs either \"doc\" (a document path) or \"query\" (a query object)",
                        ))
                    }
                };
                let resume_from = match object.get("resumeFrom") {
                    None | Some(Json::Null) => None,
                    Some(value) => Some(value.as_u64().ok_or_else(|| {
                        invalid(
                            Some(&id),
                            "\"resumeFrom\" must be a version (a non-negative integer)",
                        )
                    })?),
                };
                Ok(ClientMessage::Subscribe {
                    id,
                    target,
                    resume_from,
                })
            }
            "unsubscribe" => {
                let id = subscription_id(&object)?;
                only_fields(&object, &["type", "id"], Some(&id))?;
                Ok(ClientMessage::Unsubscribe { id })
            }
            "ping" => {
                only_fields(&object, &["type"], None)?;
                Ok(ClientMessage::Ping)
            }
            other => Err(invalid(None, format!("unknown message type '{other}'"))),
        }
    }
}

fn subscription_id(object: &Map<String, Json>) -> Result<String, ProtocolError> {
    match object.get("id").and_then(Json::as_str) {
        Some(id) if !id.is_empty() && id.len() <= MAX_ID_BYTES => Ok(id.to_string()),
        _ => Err(invalid(
            None,
            format!("\"id\" must be a string of 1 to {MAX_ID_BYTES} bytes"),
        )),
    }
}

/// `{"type":"ready","uid":...}`; `uid` is null for the service key.
pub fn ready(uid: Option<&str>) -> String {
    json!({"type": "ready", "uid": uid}).to_string()
}

pub fn pong() -> String {
    r#"{"type":"pong"}"#.to_string()
}

pub fn error(id: Option<&str>, code: &str, message: &str) -> String {
    let mut out = Map::new();
    out.insert("type".into(), json!("error"));
    if let Some(id) = id {
        out.insert("id".into(), json!(id));
    }
    out.insert("code".into(), json!(code));
    out.insert("message".into(), json!(message));
    Json::Object(out).to_string()
}

/// One entry of a `changes` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Removed,
}

impl ChangeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Modified => "modified",
            ChangeKind::Removed => "removed",
        }
    }
}

/// A change ready to render: the document JSON is spliced in as it is (rendered once per commit).
#[derive(Debug, Clone)]
pub struct WireChange {
    pub kind: ChangeKind,
    pub doc: std::sync::Arc<str>,
    pub old_index: i64,
    pub new_index: i64,
}

/// `{"type":"snapshot","id","version","docs":[...]}`.
pub fn snapshot<'a>(id: &str, version: u64, docs: impl Iterator<Item = &'a str>) -> String {
    snapshot_frame(id, version, &docs_array(docs))
}

/// A snapshot around an already rendered `docs` array (shared by every subscriber of a feed).
pub fn snapshot_frame(id: &str, version: u64, docs: &str) -> String {
    let mut out = String::with_capacity(64 + docs.len());
    out.push_str(r#"{"type":"snapshot","id":"#);
    out.push_str(&Json::from(id).to_string());
    out.push_str(&format!(r#","version":{version},"docs":"#));
    out.push_str(docs);
    out.push('}');
    out
}

/// `[doc,doc,...]`.
pub fn docs_array<'a>(docs: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (i, doc) in docs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(doc);
    }
    out.push(']');
    out
}

/// `{"type":"changes","id","version","changes":[{"kind","doc","oldIndex","newIndex"}]}`.
pub fn changes(id: &str, version: u64, changes: &[WireChange]) -> String {
    changes_frame(id, version, &[changes_array(changes).as_str()])
}

/// The `changes` array: `[{"kind","doc","oldIndex","newIndex"},...]`.
pub fn changes_array(changes: &[WireChange]) -> String {
    let mut out =
        String::with_capacity(2 + changes.iter().map(|c| c.doc.len() + 64).sum::<usize>());
    out.push('[');
    for (i, change) in changes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(r#"{{"kind":"{}","doc":"#, change.kind.as_str()));
        out.push_str(&change.doc);
        out.push_str(&format!(
            r#","oldIndex":{},"newIndex":{}}}"#,
            change.old_index, change.new_index
        ));
    }
    out.push(']');
    out
}

/// One `changes` message from the `changes` arrays of consecutive commits (applied in order,
/// as the client applies the entries of one message); `version` is the last commit's.
pub fn changes_frame<S: AsRef<str>>(id: &str, version: u64, arrays: &[S]) -> String {
    fn inner(array: &str) -> &str {
        array
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or_default()
    }
    let mut out =
        String::with_capacity(64 + arrays.iter().map(|a| a.as_ref().len()).sum::<usize>());
    out.push_str(r#"{"type":"changes","id":"#);
    out.push_str(&Json::from(id).to_string());
    out.push_str(&format!(r#","version":{version},"changes":["#));
    let mut first = true;
    for array in arrays {
        let entries = inner(array.as_ref());
        if entries.is_empty() {
            continue;
        }
        if !first {
            out.push(',');
        }
        out.push_str(entries);
        first = false;
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_or_answer_a_clear_error() {
        let cases: &[(&str, Result<ClientMessage, &str>)] = &[
            (r#"{"type":"ping"}"#, Ok(ClientMessage::Ping)),
            (
                r#"{"type":"auth","token":"t"}"#,
                Ok(ClientMessage::Auth {
                    token: Some("t".into()),
                }),
            ),
            (
                r#"{"type":"subscribe","id":"s1","doc":"a/b","resumeFrom":7}"#,
                Ok(ClientMessage::Subscribe {
                    id: "s1".into(),
                    target: Target::Doc("a/b".into()),
                    resume_from: Some(7),
                }),
            ),
            (
                r#"{"type":"unsubscribe","id":"s1"}"#,
                Ok(ClientMessage::Unsubscribe { id: "s1".into() }),
            ),
            ("not json", Err("invalid_argument")),
            ("[1]", Err("invalid_argument")),
            (r#"{"type":"dance"}"#, Err("invalid_argument")),
            (r#"{"type":"subscribe","id":"s1"}"#, Err("invalid_argument")),
            (
                r#"{"type":"subscribe","id":"s1","doc":"a/b","query":{}}"#,
                Err("invalid_argument"),
            ),
            (
                r#"{"type":"subscribe","id":"s1","doc":"a/b","resumeFrom":-1}"#,
                Err("invalid_argument"),
            ),
            (
                r#"{"type":"subscribe","id":"","doc":"a/b"}"#,
                Err("invalid_argument"),
            ),
            (r#"{"type":"ping","extra":1}"#, Err("invalid_argument")),
        ];
        for (frame, expected) in cases {
            let parsed = ClientMessage::parse(frame);
            match (parsed, expected) {
                (Ok(message), Ok(want)) => assert_eq!(&message, want, "{frame}"),
                (Err(err), Err(code)) => assert_eq!(err.code, *code, "{frame}"),
                (got, want) => panic!("{frame}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn changes_render_as_json() {
        let doc: std::sync::Arc<str> = r#"{"path":"a/b"}"#.into();
        let text = changes(
            "s\"1",
            9,
            &[WireChange {
                kind: ChangeKind::Added,
                doc,
                old_index: -1,
                new_index: 0,
            }],
        );
        let parsed: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed,
            json!({"type":"changes","id":"s\"1","version":9,"changes":[{"kind":"added","doc":{"path":"a/b"},"oldIndex":-1,"newIndex":0}]})
        );
    }

    #[test]
    fn consecutive_changes_merge_into_one_message() {
        let one = r#"[{"kind":"added","doc":{"path":"a/b"},"oldIndex":-1,"newIndex":0}]"#;
        let two = r#"[{"kind":"removed","doc":{"path":"a/b"},"oldIndex":0,"newIndex":-1}]"#;
        let text = changes_frame("s1", 12, &[one, "[]", two]);
        let parsed: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["version"], 12);
        assert_eq!(parsed["changes"].as_array().unwrap().len(), 2);
        assert_eq!(parsed["changes"][1]["kind"], "removed");
        let empty: Json = serde_json::from_str(&changes_frame::<&str>("s1", 3, &["[]"])).unwrap();
        assert_eq!(empty["changes"], json!([]));
    }
}
