//! Per-collection JSON Schemas (set by the `validateSchema` migration step): which collections
//! have one, how they are stored, and the check every write's resulting document must pass.
//!
//! A schema judges a document's `data` in its wire JSON form (DESIGN.md §2), so typed values
//! appear as `{"$timestamp": "..."}` and friends. Existing documents are not re-checked when a
//! schema is set; each is checked on its next write.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::Value as Json;

use super::error::DocsError;
use crate::model::value::map_to_json;
use crate::model::{CollectionPath, DocId, Document};
use crate::store::{ReadView, Space};

/// Meta key of the stored schemas: a versioned JSON object `{collection pattern: schema}`.
pub const SCHEMAS_KEY: &[u8] = b"schemas.collections";
/// The largest schema accepted, in bytes of compact JSON.
pub const MAX_SCHEMA_BYTES: usize = 256 << 10;
/// Violations reported per write at most; a document can break a schema in many places.
const MAX_VIOLATIONS: usize = 100;

/// A collection path whose document segments may be `{name}` wildcards: `posts`,
/// `users/{uid}/posts`, `users/u1/posts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionPattern {
    text: String,
    segments: Vec<String>,
}

impl CollectionPattern {
    pub fn parse(text: &str) -> Result<CollectionPattern, String> {
        let segments: Vec<String> = text.split('/').map(str::to_string).collect();
        if segments.len().is_multiple_of(2) {
            return Err(format!(
                "'{text}' is not a collection path: it needs an odd number of segments"
            ));
        }
        for (i, segment) in segments.iter().enumerate() {
            let wildcard = segment.len() > 2 && segment.starts_with('{') && segment.ends_with('}');
            if i % 2 == 1 && wildcard {
                continue;
            }
            if wildcard {
                return Err(format!(
                    "'{text}': only document segments may be wildcards, not the collection ID '{segment}'"
                ));
            }
            DocId::parse(segment).map_err(|err| format!("'{text}': {}", err.message))?;
        }
        Ok(CollectionPattern {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The collection ID every matching collection has (the last segment).
    pub fn collection_id(&self) -> &str {
        self.segments.last().map_or("", String::as_str)
    }

    pub fn matches(&self, collection: &CollectionPath) -> bool {
        let actual = collection.segments();
        actual.len() == self.segments.len()
            && self
                .segments
                .iter()
                .zip(actual)
                .enumerate()
                .all(|(i, (want, have))| (i % 2 == 1 && want.starts_with('{')) || want == have)
    }
}

/// One way a document breaks its collection's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The document that was refused.
    pub document: String,
    /// JSON Pointer into the document data (`/title`), empty for the whole document.
    pub field: String,
    pub message: String,
}

impl Violation {
    pub fn to_json(&self) -> Json {
        serde_json::json!({"document": self.document, "field": self.field, "message": self.message})
    }
}

/// Builds a validator, refusing anything that is not a valid JSON Schema (draft detected from
/// `$schema`, 2020-12 by default). Remote `$ref`s are not fetched: the build has no resolver.
pub fn compile(schema: &Json) -> Result<jsonschema::Validator, String> {
    if !schema.is_object() && !schema.is_boolean() {
        return Err("a JSON Schema must be an object (or true/false)".into());
    }
    let size = serde_json::to_vec(schema).map_or(usize::MAX, |b| b.len());
    if size > MAX_SCHEMA_BYTES {
        return Err(format!(
            "the schema is {size} bytes; at most {MAX_SCHEMA_BYTES} are allowed"
        ));
    }
    jsonschema::validator_for(schema).map_err(|err| format!("not a valid JSON Schema: {err}"))
}

struct Entry {
    pattern: CollectionPattern,
    validator: jsonschema::Validator,
}

/// Every collection schema, compiled.
#[derive(Default)]
pub struct SchemaSet {
    sources: BTreeMap<String, Json>,
    entries: Vec<Entry>,
}

impl std::fmt::Debug for SchemaSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaSet")
            .field("collections", &self.sources.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SchemaSet {
    /// Compiles stored or staged sources; an invalid one is an error naming its collection.
    pub fn from_sources(sources: BTreeMap<String, Json>) -> Result<SchemaSet, String> {
        let mut entries = Vec::with_capacity(sources.len());
        for (pattern, schema) in &sources {
            let validator = compile(schema).map_err(|err| format!("schema of {pattern}: {err}"))?;
            entries.push(Entry {
                pattern: CollectionPattern::parse(pattern)?,
                validator,
            });
        }
        Ok(SchemaSet { sources, entries })
    }

    pub fn sources(&self) -> &BTreeMap<String, Json> {
        &self.sources
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every violation of every schema whose pattern matches the document's collection.
    pub fn violations(&self, document: &Document) -> Vec<Violation> {
        if self.entries.is_empty() {
            return Vec::new();
        }
        let collection = document.path.collection();
        let mut found = Vec::new();
        let mut data: Option<Json> = None;
        for entry in self
            .entries
            .iter()
            .filter(|e| e.pattern.matches(&collection))
        {
            let instance = data.get_or_insert_with(|| Json::Object(map_to_json(&document.data)));
            for error in entry.validator.iter_errors(instance).take(MAX_VIOLATIONS) {
                found.push(Violation {
                    document: document.path.to_string(),
                    field: error.instance_path().to_string(),
                    message: error.to_string(),
                });
            }
        }
        found
    }
}

/// The live schemas, swapped atomically when a migration changes them.
#[derive(Default)]
pub struct SchemaCatalog {
    current: RwLock<Arc<SchemaSet>>,
}

impl SchemaCatalog {
    pub fn current(&self) -> Arc<SchemaSet> {
        self.current
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    pub fn replace(&self, set: SchemaSet) {
        match self.current.write() {
            Ok(mut current) => *current = Arc::new(set),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
        }
    }
}

/// The stored schema sources and the version of their Meta value (`None` when never set).
pub fn read_sources(
    view: &dyn ReadView,
) -> Result<(BTreeMap<String, Json>, Option<u64>), DocsError> {
    let Some(bytes) = view
        .get_many(Space::Meta, &[SCHEMAS_KEY.to_vec()])?
        .pop()
        .flatten()
    else {
        return Ok((BTreeMap::new(), None));
    };
    let version = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes);
    let sources = serde_json::from_slice(bytes.get(8..).unwrap_or_default())
        .map_err(|err| DocsError::Task(format!("stored schemas are corrupt: {err}")))?;
    Ok((sources, version))
}

/// The stored form: 8 bytes for the version stamp, then the JSON object.
pub fn encode_sources(sources: &BTreeMap<String, Json>) -> Vec<u8> {
    let mut out = vec![0u8; 8];
    out.extend_from_slice(&serde_json::to_vec(sources).unwrap_or_default());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_collections_with_wildcards_in_document_segments_only() {
        let pattern = CollectionPattern::parse("users/{uid}/posts").unwrap();
        assert!(pattern.matches(&CollectionPath::parse("users/u1/posts").unwrap()));
        assert!(!pattern.matches(&CollectionPath::parse("teams/u1/posts").unwrap()));
        assert!(!pattern.matches(&CollectionPath::parse("posts").unwrap()));
        assert!(CollectionPattern::parse("{x}").is_err());
        assert!(CollectionPattern::parse("posts/p1").is_err());
    }

    #[test]
    fn invalid_schemas_are_refused() {
        assert!(compile(&serde_json::json!({"type": "objekt"})).is_err());
        assert!(compile(&serde_json::json!({"required": "owner"})).is_err());
        assert!(compile(&serde_json::json!(42)).is_err());
        assert!(compile(&serde_json::json!({"type": "object", "required": ["owner"]})).is_ok());
    }
}
