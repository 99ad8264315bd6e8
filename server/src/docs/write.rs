//! Writes: parsing them from the wire, checking preconditions and applying data and transforms
//! to the stored document.

use std::collections::BTreeMap;

use serde_json::{Map as JsonMap, Value as Json};

use super::error::{invalid, DocsError};
use crate::model::value::MAX_DEPTH;
use crate::model::{
    DocPath, Document, FieldPath, InputValue, SentinelPlace, Timestamp, Transform, Value,
};

/// The largest encoded document, as DESIGN.md §2 fixes it.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub enum WriteKind {
    /// Create or replace the whole document.
    Set(BTreeMap<String, InputValue>),
    /// Create only; fails with `already_exists` when the document exists.
    Create(BTreeMap<String, InputValue>),
    /// Change the named field paths of an existing document.
    Update(Vec<(FieldPath, InputValue)>),
    Delete,
    /// Write nothing; only check the precondition.
    Verify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    None,
    Exists(bool),
    Version(u64),
}

#[derive(Debug, Clone)]
pub struct Write {
    pub path: DocPath,
    pub kind: WriteKind,
    pub precondition: Precondition,
}

/// What a write did to its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEffect {
    Created,
    Replaced,
    Updated,
    Deleted,
    /// Delete of a missing document, or a verify.
    Unchanged,
}

impl Write {
    /// Parses a document body (PUT, POST, batch `set`/`create` data).
    pub fn data_from_json(json: &Json) -> Result<BTreeMap<String, InputValue>, DocsError> {
        let object = json
            .as_object()
            .ok_or_else(|| invalid("document data must be a JSON object"))?;
        let mut data = BTreeMap::new();
        for (key, value) in object {
            reserved_field_name(key)?;
            data.insert(
                key.clone(),
                InputValue::from_json(value, SentinelPlace::Write)?,
            );
        }
        Ok(data)
    }

    /// Parses an update body: keys are field paths; `$delete` is allowed as a value.
    pub fn fields_from_json(json: &Json) -> Result<Vec<(FieldPath, InputValue)>, DocsError> {
        let object: &JsonMap<String, Json> = json
            .as_object()
            .ok_or_else(|| invalid("update body must be a JSON object of field paths"))?;
        let mut fields: Vec<(FieldPath, InputValue)> = Vec::with_capacity(object.len());
        for (key, value) in object {
            let path = FieldPath::parse(key)?;
            for segment in path.segments() {
                reserved_field_name(segment)?;
            }
            if path.is_document_id() {
                return Err(invalid("the document ID (__name__) cannot be updated"));
            }
            fields.push((
                path,
                InputValue::from_json(value, SentinelPlace::UpdateField)?,
            ));
        }
        for (i, (a, _)) in fields.iter().enumerate() {
            for (b, _) in &fields[i + 1..] {
                if a.is_prefix_of(b) || b.is_prefix_of(a) {
                    return Err(invalid(format!(
                        "field paths '{a}' and '{b}' overlap in one update"
                    )));
                }
            }
        }
        Ok(fields)
    }
}

/// Field names starting with `$` are reserved for typed values and sentinels, at every level
/// (nested maps are checked by the value decoder).
fn reserved_field_name(name: &str) -> Result<(), DocsError> {
    if name.starts_with('$') {
        return Err(invalid(format!(
            "field name '{name}' is reserved: names starting with '$' stand for typed values"
        )));
    }
    Ok(())
}

/// Applies `write` to the current state of its document. Returns the document after the write
/// (`None` when absent) and what happened; version and times are filled by the caller.
pub fn apply_write(
    current: Option<&Document>,
    write: &Write,
    now: Timestamp,
) -> Result<(Option<BTreeMap<String, Value>>, WriteEffect), DocsError> {
    check_precondition(current, write)?;
    let result = match &write.kind {
        WriteKind::Verify => return Ok((current.map(|d| d.data.clone()), WriteEffect::Unchanged)),
        WriteKind::Delete => {
            let effect = if current.is_some() {
                WriteEffect::Deleted
            } else {
                WriteEffect::Unchanged
            };
            return Ok((None, effect));
        }
        WriteKind::Create(data) => {
            if current.is_some() {
                return Err(DocsError::AlreadyExists(format!(
                    "document {} already exists",
                    write.path
                )));
            }
            (resolve_map(data, None, now)?, WriteEffect::Created)
        }
        // A set replaces the document; its transforms apply to the new document, where the
        // transformed fields start absent (Firestore's semantics).
        WriteKind::Set(data) => {
            let effect = if current.is_some() {
                WriteEffect::Replaced
            } else {
                WriteEffect::Created
            };
            (resolve_map(data, None, now)?, effect)
        }
        WriteKind::Update(fields) => {
            let document = current.ok_or_else(|| {
                DocsError::NotFound(format!("document {} does not exist", write.path))
            })?;
            let mut data = document.data.clone();
            for (path, input) in fields {
                let old = document.field(path.segments());
                match resolve(input, old, now)? {
                    Some(value) => set_path(&mut data, path.segments(), value),
                    None => remove_path(&mut data, path.segments()),
                }
            }
            (data, WriteEffect::Updated)
        }
    };
    check_document_limits(&write.path, &result.0)?;
    Ok((Some(result.0), result.1))
}

fn check_precondition(current: Option<&Document>, write: &Write) -> Result<(), DocsError> {
    match (write.precondition, current) {
        (Precondition::None, _) => Ok(()),
        (Precondition::Exists(true), Some(_)) | (Precondition::Exists(false), None) => Ok(()),
        (Precondition::Exists(true), None) => Err(DocsError::FailedPrecondition(format!(
            "precondition failed: document {} does not exist",
            write.path
        ))),
        (Precondition::Exists(false), Some(_)) => Err(DocsError::FailedPrecondition(format!(
            "precondition failed: document {} exists",
            write.path
        ))),
        (Precondition::Version(expected), Some(doc)) if doc.version == expected => Ok(()),
        (Precondition::Version(expected), Some(doc)) => {
            Err(DocsError::FailedPrecondition(format!(
                "precondition failed: document {} is at version {}, not {expected}",
                write.path, doc.version
            )))
        }
        (Precondition::Version(expected), None) => Err(DocsError::FailedPrecondition(format!(
            "precondition failed: document {} does not exist (expected version {expected})",
            write.path
        ))),
    }
}

fn check_document_limits(path: &DocPath, data: &BTreeMap<String, Value>) -> Result<(), DocsError> {
    let depth = data.values().map(depth_of).max().unwrap_or(0);
    if depth > MAX_DEPTH {
        return Err(invalid(format!(
            "document {path} nests deeper than {MAX_DEPTH} levels"
        )));
    }
    let encoded = serde_json::to_vec(&Json::Object(crate::model::value::map_to_json(data)))
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if encoded > MAX_DOCUMENT_BYTES {
        return Err(DocsError::PayloadTooLarge(format!(
            "document {path} would be {encoded} bytes; the limit is {MAX_DOCUMENT_BYTES}"
        )));
    }
    Ok(())
}

/// Depth of a value counting every map and array level (a scalar field is depth 1).
fn depth_of(value: &Value) -> usize {
    match value {
        Value::Map(map) => 1 + map.values().map(depth_of).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth_of).max().unwrap_or(0),
        _ => 1,
    }
}

fn resolve_map(
    data: &BTreeMap<String, InputValue>,
    old: Option<&BTreeMap<String, Value>>,
    now: Timestamp,
) -> Result<BTreeMap<String, Value>, DocsError> {
    let mut out = BTreeMap::new();
    for (key, input) in data {
        if let Some(value) = resolve(input, old.and_then(|m| m.get(key)), now)? {
            out.insert(key.clone(), value);
        }
    }
    Ok(out)
}

/// Resolves sentinels against the old value at the same place; `None` means delete the field.
fn resolve(
    input: &InputValue,
    old: Option<&Value>,
    now: Timestamp,
) -> Result<Option<Value>, DocsError> {
    Ok(Some(match input {
        InputValue::Plain(value) => value.clone(),
        InputValue::Map(map) => Value::Map(resolve_map(map, old.and_then(Value::as_map), now)?),
        InputValue::Transform(transform) => match transform {
            Transform::Delete => return Ok(None),
            Transform::ServerTimestamp => Value::Timestamp(now),
            Transform::Increment(operand) => increment(old, operand)?,
            Transform::ArrayUnion(items) => {
                let mut array = match old {
                    Some(Value::Array(existing)) => existing.clone(),
                    _ => Vec::new(),
                };
                for item in items {
                    if !array.contains(item) {
                        array.push(item.clone());
                    }
                }
                Value::Array(array)
            }
            Transform::ArrayRemove(items) => match old {
                Some(Value::Array(existing)) => Value::Array(
                    existing
                        .iter()
                        .filter(|v| !items.contains(v))
                        .cloned()
                        .collect(),
                ),
                _ => Value::Array(Vec::new()),
            },
        },
    }))
}

/// Firestore's increment: ints add with saturation, any double makes a double, and a missing
/// or non-numeric field is set to the operand.
fn increment(old: Option<&Value>, operand: &Value) -> Result<Value, DocsError> {
    let result = match (old, operand) {
        (Some(Value::Int(a)), Value::Int(b)) => Value::Int(a.saturating_add(*b)),
        (Some(Value::Int(a)), Value::Double(b)) => Value::Double(*a as f64 + b),
        (Some(Value::Double(a)), Value::Int(b)) => Value::Double(a + *b as f64),
        (Some(Value::Double(a)), Value::Double(b)) => Value::Double(a + b),
        _ => operand.clone(),
    };
    if let Value::Double(d) = result {
        if !d.is_finite() {
            return Err(invalid("increment overflows to a non-finite double"));
        }
    }
    Ok(result)
}

/// Sets `value` at a field path, creating maps on the way (replacing non-map parents).
fn set_path(data: &mut BTreeMap<String, Value>, segments: &[String], value: Value) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    if rest.is_empty() {
        data.insert(first.clone(), value);
        return;
    }
    let child = data
        .entry(first.clone())
        .or_insert_with(|| Value::Map(BTreeMap::new()));
    if !matches!(child, Value::Map(_)) {
        *child = Value::Map(BTreeMap::new());
    }
    if let Value::Map(map) = child {
        set_path(map, rest, value);
    }
}

fn remove_path(data: &mut BTreeMap<String, Value>, segments: &[String]) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    if rest.is_empty() {
        data.remove(first);
    } else if let Some(Value::Map(map)) = data.get_mut(first) {
        remove_path(map, rest);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(data: Json) -> Document {
        let Value::Map(map) = Value::from_json(&data).unwrap() else {
            unreachable!()
        };
        Document {
            path: DocPath::parse("c/d").unwrap(),
            data: map,
            create_time: Timestamp::from_micros(0),
            update_time: Timestamp::from_micros(0),
            version: 7,
        }
    }

    fn update(body: Json) -> Write {
        Write {
            path: DocPath::parse("c/d").unwrap(),
            kind: WriteKind::Update(Write::fields_from_json(&body).unwrap()),
            precondition: Precondition::None,
        }
    }

    fn data_json(data: &BTreeMap<String, Value>) -> Json {
        Value::Map(data.clone()).to_json()
    }

    #[test]
    fn update_applies_transforms_and_field_paths() {
        let doc = stored(json!({"n": 1, "tags": ["a"], "m": {"x": 1, "y": 2}, "gone": true}));
        let write = update(json!({
            "n": {"$increment": 2},
            "tags": {"$arrayUnion": ["a", "b"]},
            "m.x": {"$delete": true},
            "m.z.w": 3,
            "gone": {"$delete": true},
            "d": {"$increment": 1.5}
        }));
        let (data, effect) = apply_write(Some(&doc), &write, Timestamp::from_micros(5)).unwrap();
        assert_eq!(effect, WriteEffect::Updated);
        assert_eq!(
            data_json(&data.unwrap()),
            json!({"n": 3, "tags": ["a", "b"], "m": {"y": 2, "z": {"w": 3}}, "d": 1.5})
        );
    }

    #[test]
    fn overlapping_update_paths_are_refused() {
        assert!(Write::fields_from_json(&json!({"a": 1, "a.b": 2})).is_err());
    }

    #[test]
    fn version_precondition_is_checked() {
        let doc = stored(json!({}));
        let mut write = update(json!({"a": 1}));
        write.precondition = Precondition::Version(6);
        assert!(matches!(
            apply_write(Some(&doc), &write, Timestamp::from_micros(0)),
            Err(DocsError::FailedPrecondition(_))
        ));
        write.precondition = Precondition::Version(7);
        assert!(apply_write(Some(&doc), &write, Timestamp::from_micros(0)).is_ok());
    }

    #[test]
    fn integer_increment_saturates() {
        let doc = stored(json!({"n": i64::MAX}));
        let (data, _) = apply_write(
            Some(&doc),
            &update(json!({"n": {"$increment": 1}})),
            Timestamp::from_micros(0),
        )
        .unwrap();
        assert_eq!(data.unwrap()["n"], Value::Int(i64::MAX));
    }
}
