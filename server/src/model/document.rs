//! A stored document: data plus metadata, its on-disk form and its JSON response form.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use super::path::DocPath;
use super::timestamp::Timestamp;
use super::value::{map_to_json, Value};

/// Bytes of metadata before the data in a stored document: version, createTime, updateTime.
const HEADER_LEN: usize = 24;

/// A document as stored: its `version` is the commit that last wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub path: DocPath,
    pub data: BTreeMap<String, Value>,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
    pub version: u64,
}

/// Why stored bytes could not be read back as a document (a bug or on-disk corruption).
#[derive(Debug, thiserror::Error)]
#[error("stored document {path} is corrupt: {reason}")]
pub struct CorruptDocument {
    pub path: String,
    pub reason: String,
}

impl Document {
    /// The stored form: 8-byte big-endian version (stamped by the store at commit), create and
    /// update time in µs, then the data as wire JSON. JSON keeps the store readable by tools
    /// and lets a read answer without re-encoding.
    pub fn encode_for_store(&self) -> Vec<u8> {
        let data = serde_json::to_vec(&Json::Object(map_to_json(&self.data))).unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER_LEN + data.len());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.create_time.micros().to_be_bytes());
        out.extend_from_slice(&self.update_time.micros().to_be_bytes());
        out.extend_from_slice(&data);
        out
    }

    pub fn decode_from_store(path: DocPath, bytes: &[u8]) -> Result<Document, CorruptDocument> {
        let header = StoredHeader::read(bytes).ok_or_else(|| CorruptDocument {
            path: path.to_string(),
            reason: "short header".into(),
        })?;
        let corrupt = |reason: String| CorruptDocument {
            path: path.to_string(),
            reason,
        };
        let json: Json =
            serde_json::from_slice(&bytes[HEADER_LEN..]).map_err(|e| corrupt(e.to_string()))?;
        let data = match Value::from_json(&json).map_err(|e| corrupt(e.message))? {
            Value::Map(map) => map,
            _ => return Err(corrupt("data is not a map".into())),
        };
        Ok(Document {
            path,
            data,
            create_time: header.create_time,
            update_time: header.update_time,
            version: header.version,
        })
    }

    /// The response body of DESIGN.md §3: `{path, id, data, createTime, updateTime, version}`.
    pub fn to_json(&self) -> Json {
        self.to_json_with_data(Json::Object(map_to_json(&self.data)))
    }

    pub fn to_json_with_data(&self, data: Json) -> Json {
        json!({
            "path": self.path.as_str(),
            "id": self.path.id(),
            "data": data,
            "createTime": self.create_time.to_rfc3339(),
            "updateTime": self.update_time.to_rfc3339(),
            "version": self.version,
        })
    }

    /// The data as a map value, for field lookups.
    pub fn field(&self, segments: &[String]) -> Option<&Value> {
        let (first, rest) = segments.split_first()?;
        self.data.get(first)?.get_path(rest)
    }
}

/// The response body of a stored document, built by splicing its stored data JSON into the
/// envelope: reads answer without decoding and re-encoding the data. Same shape as
/// `Document::to_json`.
pub fn response_bytes(path: &DocPath, stored: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(stored.len() + 2 * path.as_str().len() + 128);
    write_response(&mut body, path, stored);
    body
}

/// Appends the `response_bytes` of a stored document to `out` (a query writes a whole page of
/// documents into one buffer this way).
pub fn write_response(out: &mut Vec<u8>, path: &DocPath, stored: &[u8]) {
    write_response_with_version(out, path, stored, true);
}

/// `write_response`, with `"version": null` unless `with_version` (a change-log record, whose
/// key is the version, holds the document before its commit has one).
pub fn write_response_with_version(
    out: &mut Vec<u8>,
    path: &DocPath,
    stored: &[u8],
    with_version: bool,
) {
    let header = StoredHeader::read(stored).unwrap_or(StoredHeader {
        version: 0,
        create_time: Timestamp::from_micros(0),
        update_time: Timestamp::from_micros(0),
    });
    let data = StoredHeader::data_bytes(stored);
    out.extend_from_slice(b"{\"path\":");
    write_json_string(out, path.as_str());
    out.extend_from_slice(b",\"id\":");
    write_json_string(out, path.id());
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(if data.is_empty() { b"{}" } else { data });
    out.extend_from_slice(b",\"createTime\":\"");
    header.create_time.write_rfc3339(out);
    out.extend_from_slice(b"\",\"updateTime\":\"");
    header.update_time.write_rfc3339(out);
    out.extend_from_slice(b"\",\"version\":");
    if with_version {
        out.extend_from_slice(header.version.to_string().as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
    out.push(b'}');
}

/// Appends `text` as a JSON string literal (quoted and escaped as serde_json does).
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail; serde_json's escaping keeps the output identical to
    // the `Json::String(..).to_string()` it replaces.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// The fixed-size metadata at the front of a stored document.
#[derive(Debug, Clone, Copy)]
pub struct StoredHeader {
    pub version: u64,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
}

impl StoredHeader {
    pub fn read(bytes: &[u8]) -> Option<StoredHeader> {
        let word = |i: usize| -> Option<[u8; 8]> { bytes.get(i..i + 8)?.try_into().ok() };
        Some(StoredHeader {
            version: u64::from_be_bytes(word(0)?),
            create_time: Timestamp::from_micros(i64::from_be_bytes(word(8)?)),
            update_time: Timestamp::from_micros(i64::from_be_bytes(word(16)?)),
        })
    }

    /// The raw data JSON that follows the header.
    pub fn data_bytes(bytes: &[u8]) -> &[u8] {
        bytes.get(HEADER_LEN..).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn response_bytes_equal_the_encoded_document() {
        let mut data = BTreeMap::new();
        data.insert(
            "title".to_string(),
            Value::String("a \"quoted\" \u{e9}".into()),
        );
        data.insert("n".to_string(), Value::Int(-7));
        let document = Document {
            path: DocPath::parse("posts/p\\1/comments/c 2").unwrap(),
            data,
            create_time: Timestamp::from_micros(1_764_064_800_123_456),
            update_time: Timestamp::from_micros(-1),
            version: 42,
        };
        let stored = document.encode_for_store();
        let body: Json = serde_json::from_slice(&response_bytes(&document.path, &stored)).unwrap();
        assert_eq!(body, document.to_json());
        let mut unversioned = Vec::new();
        write_response_with_version(&mut unversioned, &document.path, &stored, false);
        let body: Json = serde_json::from_slice(&unversioned).unwrap();
        let mut expected = document.to_json();
        expected["version"] = Json::Null;
        assert_eq!(body, expected);
    }
}
