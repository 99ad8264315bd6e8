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
//! Entry values hold the document key, so a scan leads straight to the documents.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::model::keys::{encode_bytes, encode_value, encode_value_descending};
use crate::model::{CollectionPath, Document, FieldPath, Value};

const KIND_FIELD: u8 = 0x01;
const KIND_ARRAY_CONTAINS: u8 = 0x02;
const KIND_COMPOSITE: u8 = 0x03;

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

/// Every index entry of `document` as (entry key, document key).
pub fn entries_for(
    document: &Document,
    doc_key: &[u8],
    catalog: &CatalogSnapshot,
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let collection = document.path.collection();
    let id = document.path.id().as_bytes();
    let mut entries = BTreeMap::new();

    let mut path = Vec::new();
    for (name, value) in &document.data {
        path.push(name.clone());
        add_field_entries(&collection, &mut path, value, id, doc_key, &mut entries);
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
            entries.insert(key, doc_key.to_vec());
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
    doc_key: &[u8],
    entries: &mut BTreeMap<Vec<u8>, Vec<u8>>,
) {
    let field = FieldPath::from_segments(path.clone());
    let mut key = field_prefix(collection, &field);
    encode_value(&mut key, value);
    encode_bytes(&mut key, id);
    entries.insert(key, doc_key.to_vec());
    match value {
        Value::Array(items) => {
            let distinct: BTreeSet<&Value> = items.iter().collect();
            let prefix = array_contains_prefix(collection, &field);
            for item in distinct {
                let mut key = prefix.clone();
                encode_value(&mut key, item);
                encode_bytes(&mut key, id);
                entries.insert(key, doc_key.to_vec());
            }
        }
        Value::Map(map) => {
            for (name, child) in map {
                path.push(name.clone());
                add_field_entries(collection, path, child, id, doc_key, entries);
                path.pop();
            }
        }
        _ => {}
    }
}
