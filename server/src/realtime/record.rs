//! One commit of the change log, decoded once and shared by every subscriber it reaches: the
//! documents before and after, with the after-document's JSON rendered once.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::model::{DocPath, Document, Timestamp, Value};

/// A document and its response JSON (DESIGN §3 shape), rendered once.
#[derive(Debug)]
pub struct DocState {
    pub document: Document,
    pub json: Arc<str>,
}

impl DocState {
    pub fn new(document: Document) -> Arc<DocState> {
        let json = document.to_json().to_string();
        Arc::new(DocState {
            document,
            json: json.into(),
        })
    }
}

/// One document changed by a commit.
#[derive(Debug)]
pub struct DocChange {
    pub path: DocPath,
    pub before: Option<Document>,
    pub after: Option<Arc<DocState>>,
}

/// One commit: its version and every document it changed.
#[derive(Debug)]
pub struct ChangeRecord {
    pub version: u64,
    pub changes: Vec<DocChange>,
}

#[derive(Debug, thiserror::Error)]
#[error("change log record {version} is unreadable: {reason}")]
pub struct BadRecord {
    pub version: u64,
    pub reason: String,
}

impl ChangeRecord {
    /// Decodes `{"time", "changes": [{"path", "before", "after"}]}`; the after-documents get
    /// the record's version (the change log key).
    pub fn decode(version: u64, bytes: &[u8]) -> Result<ChangeRecord, BadRecord> {
        let bad = |reason: String| BadRecord { version, reason };
        let json: Json = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let items = json["changes"]
            .as_array()
            .ok_or_else(|| bad("no changes array".into()))?;
        let mut changes = Vec::with_capacity(items.len());
        for item in items {
            let path = item["path"]
                .as_str()
                .and_then(|p| DocPath::parse(p).ok())
                .ok_or_else(|| bad("bad path".into()))?;
            let before = match &item["before"] {
                Json::Null => None,
                doc => Some(document_from_json(&path, doc, None).map_err(bad)?),
            };
            let after = match &item["after"] {
                Json::Null => None,
                doc => Some(DocState::new(
                    document_from_json(&path, doc, Some(version)).map_err(bad)?,
                )),
            };
            changes.push(DocChange {
                path,
                before,
                after,
            });
        }
        Ok(ChangeRecord { version, changes })
    }
}

/// A document from its response JSON; `version` overrides the one in the JSON.
fn document_from_json(
    path: &DocPath,
    json: &Json,
    version: Option<u64>,
) -> Result<Document, String> {
    let data = match Value::from_json(&json["data"]).map_err(|e| e.message)? {
        Value::Map(map) => map,
        _ => return Err("data is not a map".into()),
    };
    let time = |field: &str| {
        json[field]
            .as_str()
            .and_then(|t| Timestamp::parse_rfc3339(t).ok())
            .ok_or_else(|| format!("bad {field}"))
    };
    Ok(Document {
        path: path.clone(),
        data,
        create_time: time("createTime")?,
        update_time: time("updateTime")?,
        version: version
            .or_else(|| json["version"].as_u64())
            .ok_or_else(|| "no version".to_string())?,
    })
}
