//! Order-preserving byte encodings: byte order of an encoded value equals Firestore value order.
//!
//! Used for document keys and index entries, so range scans of the store walk values in order.
//! Every encoding is prefix-free, so inverting all bytes (descending index fields) reverses order.

use super::path::{CollectionPath, DocPath};
use super::value::Value;

// Type tags in Firestore's cross-type order; all above the 0x00 terminator.
const TAG_NULL: u8 = 0x10;
const TAG_FALSE: u8 = 0x20;
const TAG_TRUE: u8 = 0x21;
const TAG_NUMBER: u8 = 0x30;
const TAG_TIMESTAMP: u8 = 0x40;
const TAG_STRING: u8 = 0x50;
const TAG_BYTES: u8 = 0x60;
const TAG_REFERENCE: u8 = 0x70;
const TAG_GEO: u8 = 0x80;
const TAG_ARRAY: u8 = 0x90;
const TAG_MAP: u8 = 0xA0;
/// Ends arrays and maps; below every tag so a shorter array sorts first.
const END: u8 = 0x00;
/// Precedes each map entry and reference segment, so END stays distinct from their bytes.
const MORE: u8 = 0x01;

/// Appends bytes with 0x00 escaped as 0x00 0xFF and a 0x00 0x01 terminator, so the encoding
/// is prefix-free and sorts like the raw bytes.
pub fn encode_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == 0x00 {
            out.push(0xFF);
        }
    }
    out.push(0x00);
    out.push(0x01);
}

/// Reads an `encode_bytes` string from the front of `input`; returns it and the rest.
pub fn decode_bytes(input: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut i = 0;
    // Most strings hold no 0x00 byte: copy them in one piece.
    while i < input.len() && input[i] != 0x00 {
        i += 1;
    }
    if input.get(i + 1) == Some(&0x01) {
        return Some((input[..i].to_vec(), &input[i + 2..]));
    }
    let mut out = input[..i].to_vec();
    while i < input.len() {
        let b = input[i];
        if b == 0x00 {
            match input.get(i + 1) {
                Some(0xFF) => {
                    out.push(0x00);
                    i += 2;
                }
                Some(0x01) => return Some((out, &input[i + 2..])),
                _ => return None,
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    None
}

/// Order-preserving encoding of an f64 (NaN first, -0.0 equal to 0.0).
fn encode_f64(out: &mut Vec<u8>, d: f64) {
    let d = if d == 0.0 { 0.0 } else { d };
    let bits = if d.is_nan() {
        0 // below every other encoding: NaN sorts first among numbers
    } else {
        let raw = d.to_bits();
        if raw >> 63 == 1 {
            !raw
        } else {
            raw | (1 << 63)
        }
    };
    out.extend_from_slice(&bits.to_be_bytes());
}

fn encode_i64(out: &mut Vec<u8>, i: i64) {
    out.extend_from_slice(&((i as u64) ^ (1 << 63)).to_be_bytes());
}

/// Appends the order-preserving encoding of `value`.
pub fn encode_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::Bool(false) => out.push(TAG_FALSE),
        Value::Bool(true) => out.push(TAG_TRUE),
        Value::Int(i) => {
            out.push(TAG_NUMBER);
            // The nearest double orders ints among doubles; the exact remainder breaks ties
            // between large ints that round to the same double.
            let nearest = *i as f64;
            encode_f64(out, nearest);
            let remainder =
                (*i as i128 - nearest as i128).clamp(i64::MIN as i128, i64::MAX as i128);
            encode_i64(out, remainder as i64);
        }
        Value::Double(d) => {
            out.push(TAG_NUMBER);
            encode_f64(out, *d);
            encode_i64(out, 0);
        }
        Value::Timestamp(ts) => {
            out.push(TAG_TIMESTAMP);
            encode_i64(out, ts.micros());
        }
        Value::String(s) => {
            out.push(TAG_STRING);
            encode_bytes(out, s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(TAG_BYTES);
            encode_bytes(out, b);
        }
        Value::Reference(path) => {
            out.push(TAG_REFERENCE);
            for segment in path.segments() {
                out.push(MORE);
                encode_bytes(out, segment.as_bytes());
            }
            out.push(END);
        }
        Value::Geo { lat, lng } => {
            out.push(TAG_GEO);
            encode_f64(out, *lat);
            encode_f64(out, *lng);
        }
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            for item in items {
                encode_value(out, item);
            }
            out.push(END);
        }
        Value::Map(map) => {
            out.push(TAG_MAP);
            for (key, item) in map {
                out.push(MORE);
                encode_bytes(out, key.as_bytes());
                encode_value(out, item);
            }
            out.push(END);
        }
    }
}

/// Appends the encoding of `value` for a descending index column: every byte inverted.
pub fn encode_value_descending(out: &mut Vec<u8>, value: &Value) {
    let start = out.len();
    encode_value(out, value);
    for b in &mut out[start..] {
        *b = !*b;
    }
}

/// The smallest encoding of any value in `value`'s type class, and the first encoding past
/// the class: bounds for type-restricted range scans.
pub fn type_class_bounds(value: &Value) -> (Vec<u8>, Vec<u8>) {
    let tag = match value {
        Value::Null => TAG_NULL,
        Value::Bool(_) => TAG_FALSE,
        Value::Int(_) | Value::Double(_) => TAG_NUMBER,
        Value::Timestamp(_) => TAG_TIMESTAMP,
        Value::String(_) => TAG_STRING,
        Value::Bytes(_) => TAG_BYTES,
        Value::Reference(_) => TAG_REFERENCE,
        Value::Geo { .. } => TAG_GEO,
        Value::Array(_) => TAG_ARRAY,
        Value::Map(_) => TAG_MAP,
    };
    let end = match value {
        Value::Bool(_) => TAG_TRUE + 1,
        _ => tag + 1,
    };
    (vec![tag], vec![end])
}

/// Key of a document in the documents key space: its collection ID, then every segment of its
/// path. Documents of one collection are contiguous, ordered by ID; every collection with the
/// same ID (at any depth) is contiguous too, ordered by full path, so collection-group queries
/// scan documents directly and no separate group index is written.
pub fn document_key(path: &DocPath) -> Vec<u8> {
    let mut key = Vec::with_capacity(path.as_str().len() * 2 + 8);
    let collection_id = path
        .segments()
        .get(path.segments().len().saturating_sub(2))
        .map_or("", String::as_str);
    encode_bytes(&mut key, collection_id.as_bytes());
    for segment in path.segments() {
        encode_bytes(&mut key, segment.as_bytes());
    }
    key
}

/// The prefix of the keys of every document in `collection`. Documents of deeper collections
/// with the same ID under it share the prefix; scans skip them by path.
pub fn collection_prefix(collection: &CollectionPath) -> Vec<u8> {
    let mut key = group_prefix(collection.id());
    for segment in collection.segments() {
        encode_bytes(&mut key, segment.as_bytes());
    }
    key
}

/// The prefix of the keys of every document in a collection with ID `collection_id`, at any
/// depth (below `parent` when given).
pub fn group_prefix(collection_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(collection_id.len() + 2);
    encode_bytes(&mut key, collection_id.as_bytes());
    key
}

/// Decodes a document key back to its path.
pub fn document_path_from_key(key: &[u8]) -> Option<DocPath> {
    let mut rest = skip_bytes(key)?;
    let mut segments = Vec::new();
    while !rest.is_empty() {
        let (segment, tail) = decode_bytes(rest)?;
        segments.push(String::from_utf8(segment).ok()?);
        rest = tail;
    }
    DocPath::from_segments(segments).ok()
}

/// Like `decode_bytes`, but only finds where the string ends and returns the rest.
fn skip_bytes(input: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    while i < input.len() {
        if input[i] == 0x00 {
            match input.get(i + 1) {
                Some(0xFF) => i += 2,
                Some(0x01) => return Some(&input[i + 2..]),
                _ => return None,
            }
        } else {
            i += 1;
        }
    }
    None
}

/// The first key after every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    // A prefix of all 0xFF bytes: nothing sorts after it but longer keys; use a long sentinel.
    vec![0xFF; prefix.len() + 1]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn arbitrary_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            prop_oneof![Just(i64::MAX), Just(i64::MIN), -5i64..5].prop_map(Value::Int),
            any::<f64>()
                .prop_filter("finite", |d| d.is_finite())
                .prop_map(Value::Double),
            prop_oneof![
                Just(0.0f64),
                Just(-0.0f64),
                Just(9_223_372_036_854_775_808.0)
            ]
            .prop_map(Value::Double),
            ".{0,6}".prop_map(Value::String),
            proptest::collection::vec(any::<u8>(), 0..5).prop_map(Value::Bytes),
            (-1000i64..1000)
                .prop_map(|m| Value::Timestamp(super::super::timestamp::Timestamp::from_micros(m))),
            ((-90.0f64..90.0), (-180.0f64..180.0)).prop_map(|(lat, lng)| Value::Geo { lat, lng }),
            "[a-c]{1,2}/[a-c\u{0}]{1,2}"
                .prop_map(|p| Value::Reference(DocPath::parse(&p).unwrap())),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-c]{0,2}", inner, 0..3)
                    .prop_map(|m: BTreeMap<String, Value>| Value::Map(m)),
            ]
        })
    }

    fn encoded(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(&mut out, value);
        out
    }

    fn encoded_descending(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value_descending(&mut out, value);
        out
    }

    proptest! {
        #[test]
        fn encoding_sorts_like_values(a in arbitrary_value(), b in arbitrary_value()) {
            prop_assert_eq!(a.cmp(&b), encoded(&a).cmp(&encoded(&b)), "{:?} vs {:?}", a, b);
            prop_assert_eq!(b.cmp(&a), encoded_descending(&a).cmp(&encoded_descending(&b)));
        }

        #[test]
        fn byte_strings_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            let mut out = Vec::new();
            encode_bytes(&mut out, &bytes);
            out.push(7);
            let (decoded, rest) = decode_bytes(&out).unwrap();
            prop_assert_eq!(decoded, bytes);
            prop_assert_eq!(rest, &[7u8][..]);
        }
    }

    #[test]
    fn collection_prefix_excludes_subcollection_documents() {
        let collection = CollectionPath::parse("posts").unwrap();
        let prefix = collection_prefix(&collection);
        let own = document_key(&DocPath::parse("posts/p1").unwrap());
        let nested = document_key(&DocPath::parse("posts/p1/comments/c1").unwrap());
        assert!(own.starts_with(&prefix));
        assert!(!nested.starts_with(&prefix));
        assert_eq!(
            document_path_from_key(&nested).unwrap().as_str(),
            "posts/p1/comments/c1"
        );
    }
}
