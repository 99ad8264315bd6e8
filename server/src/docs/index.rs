//! Index entries and the catalog of composite indexes.
//!
//! Every document writes, in the `Index` key space:
//! - one single-field entry per field path (maps included, and their fields), ordered by value
//!   then document ID; a reverse scan serves descending order, so one entry serves both;
//! - one array-contains entry per distinct element of each array field;
//! - one entry per composite index of its collection ID whose fields it has.
//!
//! Collection-group queries and index builds need no entries: document keys start with the
//! collection ID (`model::keys::document_key`).
//!
//! Entry values hold the document key, so a scan leads straight to the documents. Entries of a
//! covering composite index hold the document itself as well (up to `COVERING_MAX_BYTES`): a
//! query served by one reads only the index, not a B-tree lookup per document. It costs a copy
//! of each document per covering index, written again on every change of the document.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::model::keys::{encode_bytes, encode_value, encode_value_descending};
use crate::model::{CollectionPath, Document, FieldPath, Value};

const KIND_FIELD: u8 = 0x01;
const KIND_ARRAY_CONTAINS: u8 = 0x02;
const KIND_COMPOSITE: u8 = 0x03;

/// Stored documents up to this size are copied into covering index entries; larger ones are
/// looked up, so one write never multiplies a large document.
pub const COVERING_MAX_BYTES: usize = 16 << 10;

/// The last byte of a covering entry's value: whether the document precedes its key. Document
/// keys always end with `00 01` (`encode_bytes`), so the last byte tells every entry value
/// apart from a bare key — whichever version of the server wrote it and whatever the catalog
/// says now.
const COVERED: u8 = 0xC1;
const NOT_COVERED: u8 = 0xC0;
const KEY_END: u8 = 0x01;

/// Meta key of the composite index catalog (a versioned value: commits that computed their
/// entries from an older catalog fail their check and retry with the new one).
pub const CATALOG_KEY: &[u8] = b"indexes.catalog";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Asc,
    Desc,
}

impl Direction {
    pub fn reversed(self) -> Direction {
        match self {
            Direction::Asc => Direction::Desc,
            Direction::Desc => Direction::Asc,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexState {
    /// New documents get entries; existing ones are being backfilled. Not used by queries yet.
    Building,
    Ready,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompositeIndex {
    pub id: u32,
    /// The collection ID the index covers (every collection with that ID, at any depth).
    pub collection: String,
    /// Field paths (as written, canonical form) with directions.
    pub fields: Vec<(String, Direction)>,
    pub state: IndexState,
    /// Entries hold the documents (see the module comment). Indexes created before covering
    /// entries existed hold only document keys and stay that way.
    #[serde(default)]
    pub covering: bool,
}

impl CompositeIndex {
    pub fn field_paths(&self) -> Vec<FieldPath> {
        self.fields
            .iter()
            .filter_map(|(path, _)| FieldPath::parse(path).ok())
            .collect()
    }

    /// The key prefix of this index's entries for one collection.
    pub fn prefix(&self, collection: &CollectionPath) -> Vec<u8> {
        let mut key = vec![KIND_COMPOSITE];
        key.extend_from_slice(&self.id.to_be_bytes());
        encode_bytes(&mut key, collection.as_str().as_bytes());
        key
    }

    /// Document IDs run in the direction of the last field, as `__name__` ordering does.
    pub fn id_direction(&self) -> Direction {
        self.fields.last().map_or(Direction::Asc, |(_, d)| *d)
    }
}

/// The stored catalog: composite indexes and the next ID to hand out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CatalogData {
    pub next_id: u32,
    pub indexes: Vec<CompositeIndex>,
}

/// An immutable view of the catalog with the version of the commit that last changed it.
#[derive(Debug, Clone, Default)]
pub struct CatalogSnapshot {
    pub data: CatalogData,
    /// `None` while no catalog was ever stored.
    pub version: Option<u64>,
}

impl CatalogSnapshot {
    pub fn for_collection<'a>(
        &'a self,
        collection_id: &'a str,
    ) -> impl Iterator<Item = &'a CompositeIndex> + 'a {
        self.data
            .indexes
            .iter()
            .filter(move |ix| ix.collection == collection_id)
    }
}

/// The live catalog, swapped atomically when an index is added, built or dropped.
#[derive(Default)]
pub struct IndexCatalog {
    current: RwLock<Arc<CatalogSnapshot>>,
}

impl IndexCatalog {
    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        self.current.read().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn replace(&self, snapshot: CatalogSnapshot) {
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(snapshot);
        }
    }
}

/// Key prefix of the single-field entries of `field` in `collection`.
pub fn field_prefix(collection: &CollectionPath, field: &FieldPath) -> Vec<u8> {
    let mut key = vec![KIND_FIELD];
    encode_bytes(&mut key, collection.as_str().as_bytes());
    encode_bytes(&mut key, field.to_string().as_bytes());
    key
}

/// Key prefix of the array-contains entries of `field` in `collection`.
pub fn array_contains_prefix(collection: &CollectionPath, field: &FieldPath) -> Vec<u8> {
    let mut key = vec![KIND_ARRAY_CONTAINS];
    encode_bytes(&mut key, collection.as_str().as_bytes());
    encode_bytes(&mut key, field.to_string().as_bytes());
    key
}

/// What an index entry's value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// The document key.
    Reference,
    /// The stored document and its key (a covering index).
    Covering,
}

/// An index entry's value, ready to store.
pub struct EntryValue {
    pub bytes: Vec<u8>,
    /// The value starts with the stored document, whose first 8 bytes are its version: a
    /// commit of a new document version must stamp it, as it stamps the document.
    pub holds_document: bool,
}

impl EntryKind {
    /// The value of an entry of this kind for the document stored as `stored` under `doc_key`.
    pub fn value(self, doc_key: &[u8], stored: &[u8]) -> EntryValue {
        match self {
            EntryKind::Reference => EntryValue {
                bytes: doc_key.to_vec(),
                holds_document: false,
            },
            EntryKind::Covering => {
                let covered = stored.len() <= COVERING_MAX_BYTES;
                let mut bytes = Vec::with_capacity(stored.len() + doc_key.len() + 5);
                if covered {
                    bytes.extend_from_slice(stored);
                }
                bytes.extend_from_slice(doc_key);
                // Document keys are bounded by the path limits, far below 4 GiB.
                let key_len = u32::try_from(doc_key.len()).unwrap_or(u32::MAX);
                bytes.extend_from_slice(&key_len.to_be_bytes());
                bytes.push(if covered { COVERED } else { NOT_COVERED });
                EntryValue {
                    bytes,
                    holds_document: covered,
                }
            }
        }
    }
}

/// Takes an index entry's value apart: the document key and, if the entry covers it, the stored
/// document (the value's own buffer, not a copy). `None` for a value no server writes.
pub fn unpack_entry(mut value: Vec<u8>) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let tag = *value.last()?;
    if tag == KEY_END {
        return Some((value, None));
    }
    value.pop();
    let len_at = value.len().checked_sub(4)?;
    let key_len = u32::from_be_bytes(value.get(len_at..)?.try_into().ok()?) as usize;
    let key_at = len_at.checked_sub(key_len)?;
    let doc_key = value.get(key_at..len_at)?.to_vec();
    if doc_key.last() != Some(&KEY_END) {
        return None;
    }
    value.truncate(key_at);
    match tag {
        COVERED => Some((doc_key, Some(value))),
        NOT_COVERED if value.is_empty() => Some((doc_key, None)),
        _ => None,
    }
}

/// Every index entry of `document` as (entry key, what its value holds).
pub fn entries_for(document: &Document, catalog: &CatalogSnapshot) -> BTreeMap<Vec<u8>, EntryKind> {
    let collection = document.path.collection();
    let id = document.path.id().as_bytes();
    let mut entries = BTreeMap::new();

    let mut path = Vec::new();
    for (name, value) in &document.data {
        path.push(name.clone());
        add_field_entries(&collection, &mut path, value, id, &mut entries);
        path.pop();
    }

    for index in catalog.for_collection(collection.id()) {
        let mut key = index.prefix(&collection);
        let mut complete = true;
        for (field, direction) in &index.fields {
            let Some(value) = FieldPath::parse(field)
                .ok()
                .and_then(|f| document.field(f.segments()).cloned())
            else {
                complete = false;
                break;
            };
            match direction {
                Direction::Asc => encode_value(&mut key, &value),
                Direction::Desc => encode_value_descending(&mut key, &value),
            }
        }
        if complete {
            push_id(&mut key, id, index.id_direction());
            let kind = if index.covering {
                EntryKind::Covering
            } else {
                EntryKind::Reference
            };
            entries.insert(key, kind);
        }
    }
    entries
}

fn push_id(key: &mut Vec<u8>, id: &[u8], direction: Direction) {
    match direction {
        Direction::Asc => encode_bytes(key, id),
        Direction::Desc => {
            let start = key.len();
            encode_bytes(key, id);
            for b in &mut key[start..] {
                *b = !*b;
            }
        }
    }
}

fn add_field_entries(
    collection: &CollectionPath,
    path: &mut Vec<String>,
    value: &Value,
    id: &[u8],
    entries: &mut BTreeMap<Vec<u8>, EntryKind>,
) {
    let field = FieldPath::from_segments(path.clone());
    let mut key = field_prefix(collection, &field);
    encode_value(&mut key, value);
    encode_bytes(&mut key, id);
    entries.insert(key, EntryKind::Reference);
    match value {
        Value::Array(items) => {
            let distinct: BTreeSet<&Value> = items.iter().collect();
            let prefix = array_contains_prefix(collection, &field);
            for item in distinct {
                let mut key = prefix.clone();
                encode_value(&mut key, item);
                encode_bytes(&mut key, id);
                entries.insert(key, EntryKind::Reference);
            }
        }
        Value::Map(map) => {
            for (name, child) in map {
                path.push(name.clone());
                add_field_entries(collection, path, child, id, entries);
                path.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DOC_KEY: &[u8] = b"posts\0\x01posts\0\x01p1\0\x01";

    #[test]
    fn covering_values_give_back_the_document_and_its_key() {
        let stored = b"\0\0\0\0\0\0\0\x07rest of the stored document".to_vec();
        let value = EntryKind::Covering.value(DOC_KEY, &stored);
        assert!(value.holds_document);
        assert_eq!(
            &value.bytes[..8],
            &stored[..8],
            "the version stamp goes first"
        );
        let (key, document) = unpack_entry(value.bytes).unwrap();
        assert_eq!(key, DOC_KEY);
        assert_eq!(document.unwrap(), stored);
    }

    #[test]
    fn documents_over_the_limit_are_referenced_not_copied() {
        let stored = vec![7u8; COVERING_MAX_BYTES + 1];
        let value = EntryKind::Covering.value(DOC_KEY, &stored);
        assert!(!value.holds_document);
        assert_eq!(value.bytes.len(), DOC_KEY.len() + 4 + 1);
        assert_eq!(unpack_entry(value.bytes), Some((DOC_KEY.to_vec(), None)));
        let at_limit = vec![7u8; COVERING_MAX_BYTES];
        assert!(EntryKind::Covering.value(DOC_KEY, &at_limit).holds_document);
    }

    /// A key-only entry reads as one whatever the catalog says (written before covering
    /// entries existed, or by a server that dropped the flag), and a covering one as covering.
    #[test]
    fn every_entry_value_says_what_it_holds() {
        let reference = EntryKind::Reference.value(DOC_KEY, b"ignored");
        assert!(!reference.holds_document);
        assert_eq!(
            unpack_entry(reference.bytes),
            Some((DOC_KEY.to_vec(), None))
        );
        let covering = EntryKind::Covering.value(DOC_KEY, &[0; 8]);
        assert_ne!(covering.bytes.last(), Some(&KEY_END));
    }

    #[test]
    fn malformed_values_are_refused() {
        let mut not_a_key = b"k".to_vec();
        not_a_key.extend_from_slice(&1u32.to_be_bytes());
        not_a_key.push(COVERED);
        for value in [
            vec![],
            vec![COVERED],
            vec![0, 0, 0, 9, 0, 1, COVERED],
            not_a_key,
            vec![b'x', 0, 1, 0, 0, 0, 2, NOT_COVERED],
            vec![0, 1, 0, 0, 0, 2, 7],
        ] {
            assert_eq!(unpack_entry(value.clone()), None, "{value:?}");
        }
    }
}
