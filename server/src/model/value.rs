//! Document values: the typed value tree, its JSON wire form and Firestore's cross-type order.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map as JsonMap, Number, Value as Json};

use super::path::DocPath;
use super::timestamp::Timestamp;
use super::ModelError;

/// The deepest a value tree may nest (maps and arrays), as DESIGN.md §2 fixes it.
pub const MAX_DEPTH: usize = 20;

/// One stored value. Maps keep their keys sorted so encodings are canonical.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Timestamp(Timestamp),
    String(String),
    Bytes(Vec<u8>),
    Reference(DocPath),
    Geo { lat: f64, lng: f64 },
    Array(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

/// A write-only sentinel found in a write's data; resolved against the stored document at commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    ServerTimestamp,
    Increment(Value),
    ArrayUnion(Vec<Value>),
    ArrayRemove(Vec<Value>),
    Delete,
}

/// A value as written by a client: plain values, or a sentinel standing in for one.
#[derive(Debug, Clone)]
pub enum InputValue {
    Plain(Value),
    Map(BTreeMap<String, InputValue>),
    Transform(Transform),
}

impl Value {
    /// The rank of the value's type in Firestore's cross-type order.
    fn type_rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Double(_) => 2,
            Value::Timestamp(_) => 3,
            Value::String(_) => 4,
            Value::Bytes(_) => 5,
            Value::Reference(_) => 6,
            Value::Geo { .. } => 7,
            Value::Array(_) => 8,
            Value::Map(_) => 9,
        }
    }

    /// True when both values belong to the same type class (ints and doubles are one class).
    /// Range filters only match values of the filter value's class, as in Firestore.
    pub fn same_type_class(&self, other: &Value) -> bool {
        self.type_rank() == other.type_rank()
    }

    pub fn is_number(&self) -> bool {
        matches!(self, Value::Int(_) | Value::Double(_))
    }

    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(map) => Some(map),
            _ => None,
        }
    }

    /// The value at a field path, if every segment exists and each parent is a map.
    pub fn get_path(&self, segments: &[String]) -> Option<&Value> {
        let mut current = self;
        for segment in segments {
            current = current.as_map()?.get(segment)?;
        }
        Some(current)
    }

    /// Decodes a value from its JSON wire form (typed values as single-key `$` objects).
    pub fn from_json(json: &Json) -> Result<Value, ModelError> {
        match InputValue::from_json_at(json, 0, SentinelPlace::Forbidden)? {
            InputValue::Plain(value) => Ok(value),
            _ => Err(ModelError::invalid(
                "write-only sentinels are not allowed here",
            )),
        }
    }

    /// The JSON wire form of this value.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::Number(Number::from(*i)),
            // Doubles are always finite (decoding and transforms refuse the rest).
            Value::Double(d) => Number::from_f64(*d).map(Json::Number).unwrap_or(Json::Null),
            Value::Timestamp(ts) => single("$timestamp", Json::String(ts.to_rfc3339())),
            Value::String(s) => Json::String(s.clone()),
            Value::Bytes(b) => single(
                "$bytes",
                Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
            ),
            Value::Reference(path) => single("$ref", Json::String(path.as_str().to_string())),
            Value::Geo { lat, lng } => {
                let mut inner = JsonMap::new();
                inner.insert(
                    "lat".into(),
                    Number::from_f64(*lat).map_or(Json::Null, Json::Number),
                );
                inner.insert(
                    "lng".into(),
                    Number::from_f64(*lng).map_or(Json::Null, Json::Number),
                );
                single("$geo", Json::Object(inner))
            }
            Value::Array(items) => Json::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(map) => Json::Object(map_to_json(map)),
        }
    }
}

pub fn map_to_json(map: &BTreeMap<String, Value>) -> JsonMap<String, Json> {
    map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()
}

fn single(key: &str, value: Json) -> Json {
    let mut map = JsonMap::new();
    map.insert(key.to_string(), value);
    Json::Object(map)
}

/// Where a sentinel may appear while decoding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SentinelPlace {
    /// Reads, query values, transform operands and arrays: no sentinels at all.
    Forbidden,
    /// Document data in a write: transforms allowed, `$delete` not.
    Write,
    /// The top-level value of a field path in an update (PATCH): `$delete` allowed too.
    UpdateField,
}

impl InputValue {
    /// Decodes a write's value, where sentinels may stand (never inside arrays).
    pub fn from_json(json: &Json, place: SentinelPlace) -> Result<InputValue, ModelError> {
        Self::from_json_at(json, 0, place)
    }

    fn from_json_at(
        json: &Json,
        depth: usize,
        place: SentinelPlace,
    ) -> Result<InputValue, ModelError> {
        if depth > MAX_DEPTH {
            return Err(ModelError::invalid(format!(
                "value nests deeper than {MAX_DEPTH} levels"
            )));
        }
        let plain = |value| Ok(InputValue::Plain(value));
        match json {
            Json::Null => plain(Value::Null),
            Json::Bool(b) => plain(Value::Bool(*b)),
            Json::Number(n) => plain(number_from_json(n)?),
            Json::String(s) => plain(Value::String(s.clone())),
            Json::Array(items) => {
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    // Firestore forbids transforms inside arrays: their position is not stable.
                    match Self::from_json_at(item, depth + 1, SentinelPlace::Forbidden) {
                        Ok(InputValue::Plain(value)) => values.push(value),
                        Ok(_) => {
                            return Err(ModelError::invalid(
                                "sentinels cannot be used inside arrays",
                            ))
                        }
                        Err(err) => return Err(err),
                    }
                }
                plain(Value::Array(values))
            }
            Json::Object(map) => {
                if let Some((key, inner)) = single_dollar_key(map)? {
                    return decode_dollar(key, inner, depth, place);
                }
                let mut out = BTreeMap::new();
                let mut all_plain = true;
                let child_place = if place == SentinelPlace::Forbidden {
                    SentinelPlace::Forbidden
                } else {
                    SentinelPlace::Write
                };
                for (key, value) in map {
                    let decoded = Self::from_json_at(value, depth + 1, child_place)?;
                    all_plain &= matches!(decoded, InputValue::Plain(_));
                    out.insert(key.clone(), decoded);
                }
                if all_plain {
                    let values = out
                        .into_iter()
                        .filter_map(|(k, v)| match v {
                            InputValue::Plain(value) => Some((k, value)),
                            _ => None,
                        })
                        .collect();
                    plain(Value::Map(values))
                } else {
                    Ok(InputValue::Map(out))
                }
            }
        }
    }

    /// True when no sentinel appears anywhere in the value.
    pub fn is_plain(&self) -> bool {
        matches!(self, InputValue::Plain(_))
    }
}

fn number_from_json(n: &Number) -> Result<Value, ModelError> {
    if let Some(i) = n.as_i64() {
        return Ok(Value::Int(i));
    }
    if n.is_u64() {
        return Err(ModelError::invalid(format!(
            "integer {n} is out of range: integers are signed 64-bit"
        )));
    }
    match n.as_f64() {
        Some(d) if d.is_finite() => Ok(Value::Double(d)),
        _ => Err(ModelError::invalid(format!(
            "number {n} is not a finite double"
        ))),
    }
}

/// Returns the `$` key of a map that is a typed value or sentinel. Maps with a `$` key among
/// others, or an unknown `$` key, are refused: they would be ambiguous.
fn single_dollar_key(map: &JsonMap<String, Json>) -> Result<Option<(&str, &Json)>, ModelError> {
    let dollar_keys: Vec<&String> = map.keys().filter(|k| k.starts_with('$')).collect();
    match dollar_keys.as_slice() {
        [] => Ok(None),
        [key] if map.len() == 1 => Ok(map.get(key.as_str()).map(|v| (key.as_str(), v))),
        _ => Err(ModelError::invalid(format!(
            "map keys starting with '$' are reserved for typed values and must stand alone (found {})",
            dollar_keys.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn decode_dollar(
    key: &str,
    inner: &Json,
    depth: usize,
    place: SentinelPlace,
) -> Result<InputValue, ModelError> {
    let plain = |value| Ok(InputValue::Plain(value));
    let transform = |t| {
        if place == SentinelPlace::Forbidden {
            Err(ModelError::invalid(format!(
                "sentinel '{key}' is only allowed in a write's data"
            )))
        } else {
            Ok(InputValue::Transform(t))
        }
    };
    match key {
        "$timestamp" => {
            let text = inner
                .as_str()
                .ok_or_else(|| ModelError::invalid("$timestamp takes an RFC 3339 string"))?;
            plain(Value::Timestamp(Timestamp::parse_rfc3339(text)?))
        }
        "$bytes" => {
            let text = inner
                .as_str()
                .ok_or_else(|| ModelError::invalid("$bytes takes a base64 string"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|err| ModelError::invalid(format!("$bytes is not valid base64: {err}")))?;
            plain(Value::Bytes(bytes))
        }
        "$ref" => {
            let text = inner
                .as_str()
                .ok_or_else(|| ModelError::invalid("$ref takes a document path string"))?;
            plain(Value::Reference(DocPath::parse(text)?))
        }
        "$geo" => {
            let obj = inner.as_object().filter(|o| o.len() == 2).ok_or_else(|| {
                ModelError::invalid("$geo takes {\"lat\": number, \"lng\": number}")
            })?;
            let coordinate = |name: &str, bound: f64| {
                obj.get(name)
                    .and_then(Json::as_f64)
                    .filter(|v| v.is_finite() && v.abs() <= bound)
                    .ok_or_else(|| {
                        ModelError::invalid(format!(
                            "$geo.{name} must be a number between -{bound} and {bound}"
                        ))
                    })
            };
            plain(Value::Geo {
                lat: coordinate("lat", 90.0)?,
                lng: coordinate("lng", 180.0)?,
            })
        }
        "$serverTimestamp" => {
            if inner != &Json::Bool(true) {
                return Err(ModelError::invalid("$serverTimestamp takes the value true"));
            }
            transform(Transform::ServerTimestamp)
        }
        "$delete" => {
            if inner != &Json::Bool(true) {
                return Err(ModelError::invalid("$delete takes the value true"));
            }
            if place != SentinelPlace::UpdateField {
                return Err(ModelError::invalid(
                    "$delete is only allowed as the value of a field path in an update (PATCH)",
                ));
            }
            Ok(InputValue::Transform(Transform::Delete))
        }
        "$increment" => {
            let operand = Value::from_json(inner)?;
            if !operand.is_number() {
                return Err(ModelError::invalid("$increment takes a number"));
            }
            transform(Transform::Increment(operand))
        }
        "$arrayUnion" | "$arrayRemove" => {
            let items = inner
                .as_array()
                .ok_or_else(|| ModelError::invalid(format!("{key} takes an array of values")))?;
            let mut values = Vec::with_capacity(items.len());
            for item in items {
                match InputValue::from_json_at(item, depth + 1, SentinelPlace::Forbidden)? {
                    InputValue::Plain(value) => values.push(value),
                    _ => {
                        return Err(ModelError::invalid(format!(
                            "{key} elements cannot be sentinels"
                        )))
                    }
                }
            }
            if key == "$arrayUnion" {
                transform(Transform::ArrayUnion(values))
            } else {
                transform(Transform::ArrayRemove(values))
            }
        }
        other => Err(ModelError::invalid(format!(
            "unknown typed value '{other}': map keys starting with '$' are reserved"
        ))),
    }
}

/// Numeric comparison of an int and a double, exact for every i64 (no rounding through f64).
fn compare_int_double(i: i64, d: f64) -> Ordering {
    if d.is_nan() {
        return Ordering::Greater;
    }
    // 2^63: the first double above every i64.
    if d >= 9_223_372_036_854_775_808.0 {
        return Ordering::Less;
    }
    if d < -9_223_372_036_854_775_808.0 {
        return Ordering::Greater;
    }
    let truncated = d.trunc() as i64;
    match i.cmp(&truncated) {
        Ordering::Equal => {
            let fraction = d - d.trunc();
            if fraction > 0.0 {
                Ordering::Less
            } else if fraction < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        other => other,
    }
}

/// Doubles in Firestore order: NaN first, then numeric order (-0.0 equals 0.0).
fn compare_doubles(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        use Value::*;
        match (self, other) {
            (Null, Null) => Ordering::Equal,
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Double(a), Double(b)) => compare_doubles(*a, *b),
            (Int(a), Double(b)) => compare_int_double(*a, *b),
            (Double(a), Int(b)) => compare_int_double(*b, *a).reverse(),
            (Timestamp(a), Timestamp(b)) => a.cmp(b),
            (String(a), String(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Bytes(a), Bytes(b)) => a.cmp(b),
            (Reference(a), Reference(b)) => a.segments().cmp(b.segments()),
            (Geo { lat: a1, lng: a2 }, Geo { lat: b1, lng: b2 }) => {
                compare_doubles(*a1, *b1).then(compare_doubles(*a2, *b2))
            }
            (Array(a), Array(b)) => a.cmp(b),
            (Map(a), Map(b)) => a.iter().cmp(b.iter()),
            _ => self.type_rank().cmp(&other.type_rank()),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_values_round_trip_through_json() {
        let wire = json!({
            "t": {"$timestamp": "2026-11-25T10:00:00.123456Z"},
            "b": {"$bytes": "aGk="},
            "r": {"$ref": "users/u1"},
            "g": {"$geo": {"lat": 52.1, "lng": 4.3}},
            "n": [1, 2.5, null, true, "s"]
        });
        let value = Value::from_json(&wire).unwrap();
        assert_eq!(value.to_json(), wire);
    }

    #[test]
    fn unknown_or_mixed_dollar_keys_are_refused() {
        assert!(Value::from_json(&json!({"$foo": 1})).is_err());
        assert!(Value::from_json(&json!({"$bytes": "aGk=", "x": 1})).is_err());
        assert!(Value::from_json(&json!({"$serverTimestamp": true})).is_err());
    }

    #[test]
    fn cross_type_order_follows_firestore() {
        let ordered = [
            json!(null),
            json!(false),
            json!(-1.5),
            json!(1),
            json!({"$timestamp": "2020-01-01T00:00:00Z"}),
            json!("a"),
            json!({"$bytes": "AA=="}),
            json!({"$ref": "a/b"}),
            json!({"$geo": {"lat": 0, "lng": 0}}),
            json!([1]),
            json!({"a": 1}),
        ];
        let values: Vec<Value> = ordered
            .iter()
            .map(|j| Value::from_json(j).unwrap())
            .collect();
        for pair in values.windows(2) {
            assert!(pair[0] < pair[1], "{:?} < {:?}", pair[0], pair[1]);
        }
        assert_eq!(Value::Int(1), Value::Double(1.0));
        assert!(Value::Int(i64::MAX) > Value::Double(9.2e18));
    }

    #[test]
    fn depth_limit_is_enforced() {
        let mut deep = json!(1);
        for _ in 0..=MAX_DEPTH {
            deep = json!({ "a": deep });
        }
        assert!(Value::from_json(&deep).is_err());
    }
}
