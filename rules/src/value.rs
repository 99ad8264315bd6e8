//! Runtime values of the rules language and their equality, ordering and wire (JSON) forms.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;

/// The database prefix every absolute document path in rules starts with.
pub const DOCUMENTS_PREFIX: [&str; 3] = ["databases", "(default)", "documents"];

/// A value in the rules language. Equality follows the rules language: `1 == 1.0`, and values of
/// different types are unequal rather than an error.
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Bytes(Vec<u8>),
    Timestamp(Timestamp),
    Duration(Duration),
    LatLng {
        lat: f64,
        lng: f64,
    },
    Path(Path),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    /// Sorted by [`Value::total_cmp`] with no two equal members.
    Set(Vec<Value>),
    MapDiff(Box<MapDiff>),
}

/// The result of `a.diff(b)`: `left` is the receiver (usually the new data), `right` the argument.
#[derive(Clone, Debug, PartialEq)]
pub struct MapDiff {
    pub left: BTreeMap<String, Value>,
    pub right: BTreeMap<String, Value>,
}

/// A point in time in UTC with nanosecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: u32,
}

/// A signed span of time. `nanos` has the same sign as `seconds` and `|nanos| < 1e9`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    pub seconds: i64,
    pub nanos: i32,
}

/// An absolute path such as `/databases/(default)/documents/users/u1`, kept as its segments.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path {
    pub segments: Vec<String>,
}

const NANOS_PER_SECOND: i128 = 1_000_000_000;
/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range Firestore timestamps may take.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

impl Timestamp {
    /// Builds a timestamp if it lies within years 1..=9999.
    pub fn new(seconds: i64, nanos: u32) -> Option<Timestamp> {
        if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&seconds)
            || nanos >= 1_000_000_000
        {
            return None;
        }
        Some(Timestamp { seconds, nanos })
    }

    pub fn from_total_nanos(total: i128) -> Option<Timestamp> {
        let seconds = i64::try_from(total.div_euclid(NANOS_PER_SECOND)).ok()?;
        let nanos = u32::try_from(total.rem_euclid(NANOS_PER_SECOND)).ok()?;
        Timestamp::new(seconds, nanos)
    }

    pub fn total_nanos(self) -> i128 {
        i128::from(self.seconds) * NANOS_PER_SECOND + i128::from(self.nanos)
    }

    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: i64::try_from(since.as_secs()).unwrap_or(0),
            nanos: since.subsec_nanos(),
        }
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    pub fn from_rfc3339(text: &str) -> Option<Timestamp> {
        let bytes = text.as_bytes();
        if bytes.len() < 20 {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<i64> {
            let part = text.get(range)?;
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let separators_ok = bytes.get(4) == Some(&b'-')
            && bytes.get(7) == Some(&b'-')
            && matches!(bytes.get(10), Some(b'T' | b't' | b' '))
            && bytes.get(13) == Some(&b':')
            && bytes.get(16) == Some(&b':');
        if !separators_ok {
            return None;
        }
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let mut rest = &text[19..];
        let mut nanos: u32 = 0;
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 || digits > 9 {
                return None;
            }
            let parsed: u32 = fraction.get(..digits)?.parse().ok()?;
            nanos = parsed * 10u32.pow(9 - u32::try_from(digits).ok()?);
            rest = &fraction[digits..];
        }
        let offset_seconds = match rest {
            "Z" | "z" => 0,
            _ => {
                let sign = match rest.as_bytes().first() {
                    Some(b'+') => 1,
                    Some(b'-') => -1,
                    _ => return None,
                };
                if rest.len() != 6 || rest.as_bytes().get(3) != Some(&b':') {
                    return None;
                }
                let hours: i64 = rest.get(1..3)?.parse().ok()?;
                let minutes: i64 = rest.get(4..6)?.parse().ok()?;
                sign * (hours * 3600 + minutes * 60)
            }
        };
        let days = days_from_civil(year, month, day);
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_seconds;
        Timestamp::new(seconds, nanos)
    }

    /// Formats as RFC 3339 in UTC, with as many fraction digits as needed (0, 3, 6 or 9).
    pub fn to_rfc3339(&self) -> String {
        let days = self.seconds.div_euclid(86_400);
        let secs_of_day = self.seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let fraction = if self.nanos == 0 {
            String::new()
        } else if self.nanos.is_multiple_of(1_000_000) {
            format!(".{:03}", self.nanos / 1_000_000)
        } else if self.nanos.is_multiple_of(1_000) {
            format!(".{:06}", self.nanos / 1_000)
        } else {
            format!(".{:09}", self.nanos)
        };
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}Z",
            year,
            month,
            day,
            secs_of_day / 3600,
            secs_of_day % 3600 / 60,
            secs_of_day % 60,
            fraction
        )
    }

    /// (year, month, day, seconds of the day) in UTC.
    pub(crate) fn civil(&self) -> (i64, i64, i64, i64) {
        let days = self.seconds.div_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        (year, month, day, self.seconds.rem_euclid(86_400))
    }
}

impl Duration {
    pub fn from_total_nanos(total: i128) -> Option<Duration> {
        let seconds = i64::try_from(total / NANOS_PER_SECOND).ok()?;
        let nanos = i32::try_from(total % NANOS_PER_SECOND).ok()?;
        Some(Duration { seconds, nanos })
    }

    pub fn total_nanos(self) -> i128 {
        i128::from(self.seconds) * NANOS_PER_SECOND + i128::from(self.nanos)
    }
}

impl Path {
    /// Splits a path on `/`, ignoring empty segments (so a leading slash is optional).
    pub fn parse(text: &str) -> Path {
        Path {
            segments: text
                .split('/')
                .filter(|segment| !segment.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    /// The absolute path of a document given relative to the database root (`users/u1`), as
    /// reference fields and `resource.__name__` appear in rules.
    pub fn document(relative: &str) -> Path {
        let mut segments: Vec<String> = DOCUMENTS_PREFIX.iter().map(|s| s.to_string()).collect();
        segments.extend(Path::parse(relative).segments);
        Path { segments }
    }

    /// The path relative to `/databases/(default)/documents`, if it lies under it.
    pub fn document_relative(&self) -> Option<String> {
        let prefix_len = DOCUMENTS_PREFIX.len();
        if self.segments.len() < prefix_len
            || self.segments[0] != "databases"
            || self.segments[2] != "documents"
        {
            return None;
        }
        Some(self.segments[prefix_len..].join("/"))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for segment in &self.segments {
            write!(f, "/{segment}")?;
        }
        Ok(())
    }
}

impl MapDiff {
    pub fn added_keys(&self) -> Vec<Value> {
        keys_where(&self.left, |key| !self.right.contains_key(key))
    }
    pub fn removed_keys(&self) -> Vec<Value> {
        keys_where(&self.right, |key| !self.left.contains_key(key))
    }
    pub fn changed_keys(&self) -> Vec<Value> {
        keys_where(&self.left, |key| {
            self.right
                .get(key)
                .is_some_and(|right| self.left.get(key) != Some(right))
        })
    }
    pub fn unchanged_keys(&self) -> Vec<Value> {
        keys_where(&self.left, |key| {
            self.right
                .get(key)
                .is_some_and(|right| self.left.get(key) == Some(right))
        })
    }
    pub fn affected_keys(&self) -> Vec<Value> {
        let mut keys = self.added_keys();
        keys.extend(self.removed_keys());
        keys.extend(self.changed_keys());
        normalize_set(keys)
    }
}

fn keys_where(map: &BTreeMap<String, Value>, keep: impl Fn(&str) -> bool) -> Vec<Value> {
    // BTreeMap keys come out sorted, which is also set order for strings.
    map.keys()
        .filter(|key| keep(key))
        .map(|key| Value::String(key.clone()))
        .collect()
}

/// Sorts and deduplicates values into set form.
pub fn normalize_set(mut values: Vec<Value>) -> Vec<Value> {
    values.sort_by(Value::total_cmp);
    values.dedup_by(|a, b| a.total_cmp(b) == Ordering::Equal);
    values
}

impl Value {
    /// The type name used by `is` checks and error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Timestamp(_) => "timestamp",
            Value::Duration(_) => "duration",
            Value::LatLng { .. } => "latlng",
            Value::Path(_) => "path",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            Value::Set(_) => "set",
            Value::MapDiff(_) => "map_diff",
        }
    }

    fn type_rank(&self) -> u8 {
        // Firestore's cross-type order; types Firestore cannot store sort last.
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) => 2,
            Value::Timestamp(_) => 3,
            Value::String(_) => 4,
            Value::Bytes(_) => 5,
            Value::Path(_) => 6,
            Value::LatLng { .. } => 7,
            Value::List(_) => 8,
            Value::Map(_) => 9,
            Value::Duration(_) => 10,
            Value::Set(_) => 11,
            Value::MapDiff(_) => 12,
        }
    }

    /// A total order (Firestore's ordering across types; NaN sorts before other numbers), used for
    /// sets and for comparing query bounds.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        let rank = self.type_rank().cmp(&other.type_rank());
        if rank != Ordering::Equal {
            return rank;
        }
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
                compare_numbers(self, other)
            }
            (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            (Value::Path(a), Value::Path(b)) => a.cmp(b),
            (Value::LatLng { lat: a1, lng: a2 }, Value::LatLng { lat: b1, lng: b2 }) => {
                a1.total_cmp(b1).then(a2.total_cmp(b2))
            }
            (Value::List(a), Value::List(b)) | (Value::Set(a), Value::Set(b)) => {
                compare_sequences(a, b)
            }
            (Value::Map(a), Value::Map(b)) => compare_maps(a, b),
            (Value::Duration(a), Value::Duration(b)) => a.cmp(b),
            (Value::MapDiff(a), Value::MapDiff(b)) => {
                compare_maps(&a.left, &b.left).then(compare_maps(&a.right, &b.right))
            }
            _ => Ordering::Equal,
        }
    }

    /// Converts a Hearth wire JSON value (`{"$timestamp": ...}` and friends) into a value.
    pub fn from_wire_json(json: &serde_json::Value) -> Result<Value, String> {
        from_wire_json_at_depth(json, 0)
    }

    /// The Hearth wire JSON form of a value (types JSON cannot carry become strings).
    pub fn to_wire_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => json!(b),
            Value::Int(i) => json!(i),
            Value::Float(f) => json!(f),
            Value::String(s) => json!(s),
            Value::Bytes(b) => {
                json!({"$bytes": base64::engine::general_purpose::STANDARD.encode(b)})
            }
            Value::Timestamp(t) => json!({"$timestamp": t.to_rfc3339()}),
            Value::Duration(d) => json!(format!("{}s", d.total_nanos() as f64 / 1e9)),
            Value::LatLng { lat, lng } => json!({"$geo": {"lat": lat, "lng": lng}}),
            Value::Path(p) => match p.document_relative() {
                Some(relative) => json!({"$ref": relative}),
                None => json!(p.to_string()),
            },
            Value::List(items) | Value::Set(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_wire_json).collect())
            }
            Value::Map(map) => serde_json::Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), v.to_wire_json()))
                    .collect(),
            ),
            Value::MapDiff(diff) => json!({
                "left": Value::Map(diff.left.clone()).to_wire_json(),
                "right": Value::Map(diff.right.clone()).to_wire_json(),
            }),
        }
    }
}

/// Nesting deeper than this in wire JSON is refused, matching the server's document depth cap with room to spare.
const MAX_WIRE_DEPTH: usize = 64;

fn from_wire_json_at_depth(json: &serde_json::Value, depth: usize) -> Result<Value, String> {
    if depth > MAX_WIRE_DEPTH {
        return Err("value nested too deeply".to_string());
    }
    Ok(match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(
                n.as_f64()
                    .ok_or_else(|| format!("number {n} out of range"))?,
            ),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::List(
            items
                .iter()
                .map(|item| from_wire_json_at_depth(item, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(map) => {
            if map.len() == 1 {
                if let Some((key, inner)) = map.iter().next() {
                    if key.starts_with('$') {
                        return typed_wire_value(key, inner);
                    }
                }
            }
            let mut out = BTreeMap::new();
            for (key, inner) in map {
                if key.starts_with('$') {
                    return Err(format!("unknown typed value key `{key}`"));
                }
                out.insert(key.clone(), from_wire_json_at_depth(inner, depth + 1)?);
            }
            Value::Map(out)
        }
    })
}

fn typed_wire_value(key: &str, inner: &serde_json::Value) -> Result<Value, String> {
    match key {
        "$timestamp" => inner
            .as_str()
            .and_then(Timestamp::from_rfc3339)
            .map(Value::Timestamp)
            .ok_or_else(|| format!("invalid $timestamp {inner}")),
        "$bytes" => inner
            .as_str()
            .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .map(Value::Bytes)
            .ok_or_else(|| format!("invalid $bytes {inner}")),
        "$ref" => inner
            .as_str()
            .map(|text| Value::Path(Path::document(text)))
            .ok_or_else(|| format!("invalid $ref {inner}")),
        "$geo" => {
            let lat = inner.get("lat").and_then(serde_json::Value::as_f64);
            let lng = inner.get("lng").and_then(serde_json::Value::as_f64);
            match (lat, lng) {
                (Some(lat), Some(lng)) => Ok(Value::LatLng { lat, lng }),
                _ => Err(format!("invalid $geo {inner}")),
            }
        }
        _ => Err(format!("unknown typed value key `{key}`")),
    }
}

pub(crate) fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn compare_numbers(a: &Value, b: &Value) -> Ordering {
    if let (Value::Int(x), Value::Int(y)) = (a, b) {
        return x.cmp(y);
    }
    let (x, y) = (as_f64(a).unwrap_or(f64::NAN), as_f64(b).unwrap_or(f64::NAN));
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

fn compare_sequences(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = x.total_cmp(y);
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

fn compare_maps(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> Ordering {
    for ((ka, va), (kb, vb)) in a.iter().zip(b) {
        let order = ka.cmp(kb).then_with(|| va.total_cmp(vb));
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
                let (x, y) = (
                    as_f64(self).unwrap_or(f64::NAN),
                    as_f64(other).unwrap_or(f64::NAN),
                );
                // Compare an int with a float exactly where the float is integral, so that large
                // ints are not rounded into equality.
                match (self, other) {
                    (Value::Int(i), Value::Float(f)) | (Value::Float(f), Value::Int(i)) => {
                        f.fract() == 0.0
                            && *f >= -9.223_372_036_854_776e18
                            && *f < 9.223_372_036_854_776e18
                            && (*f as i64) == *i
                    }
                    _ => x == y,
                }
            }
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Timestamp(a), Value::Timestamp(b)) => a == b,
            (Value::Duration(a), Value::Duration(b)) => a == b,
            (Value::LatLng { lat: a1, lng: a2 }, Value::LatLng { lat: b1, lng: b2 }) => {
                a1 == b1 && a2 == b2
            }
            (Value::Path(a), Value::Path(b)) => a == b,
            (Value::List(a), Value::List(b)) | (Value::Set(a), Value::Set(b)) => a == b,
            (Value::Map(a), Value::Map(b)) => a == b,
            (Value::MapDiff(a), Value::MapDiff(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => f.write_str(&format_float(*x)),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => write!(
                f,
                "b'{}'",
                base64::engine::general_purpose::STANDARD.encode(b)
            ),
            Value::Timestamp(t) => write!(f, "timestamp({})", t.to_rfc3339()),
            Value::Duration(d) => write!(
                f,
                "duration({}s)",
                format_float(d.total_nanos() as f64 / 1e9)
            ),
            Value::LatLng { lat, lng } => write!(f, "latlng({lat}, {lng})"),
            Value::Path(p) => write!(f, "path({p})"),
            Value::List(items) | Value::Set(items) => {
                f.write_str(if matches!(self, Value::Set(_)) {
                    "set(["
                } else {
                    "["
                })?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str(if matches!(self, Value::Set(_)) {
                    "])"
                } else {
                    "]"
                })
            }
            Value::Map(map) => {
                f.write_str("{")?;
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k:?}: {v}")?;
                }
                f.write_str("}")
            }
            Value::MapDiff(_) => f.write_str("map_diff"),
        }
    }
}

/// Formats a float the way the rules language prints it: always with a fraction or exponent.
pub fn format_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 {
            "Infinity".to_string()
        } else {
            "-Infinity".to_string()
        };
    }
    let text = format!("{x}");
    if text.contains(['.', 'e', 'E']) {
        text
    } else {
        format!("{text}.0")
    }
}

pub(crate) fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub(crate) fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_and_honours_offsets() {
        let t = Timestamp::from_rfc3339("2026-11-25T10:00:00.123456Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-25T10:00:00.123456Z");
        let shifted = Timestamp::from_rfc3339("2026-11-25T12:00:00+02:00").unwrap();
        assert_eq!(shifted.to_rfc3339(), "2026-11-25T10:00:00Z");
        assert_eq!(
            Timestamp::from_rfc3339("1970-01-01T00:00:00Z")
                .unwrap()
                .seconds,
            0
        );
        assert!(Timestamp::from_rfc3339("2026-02-30T00:00:00Z").is_none());
        assert!(Timestamp::from_rfc3339("not a time").is_none());
    }

    #[test]
    fn numbers_compare_across_int_and_float() {
        assert_eq!(Value::Int(1), Value::Float(1.0));
        assert_ne!(Value::Int(1), Value::Float(1.5));
        assert_ne!(Value::Int(1), Value::String("1".into()));
        assert_ne!(Value::Float(f64::NAN), Value::Float(f64::NAN));
    }

    #[test]
    fn wire_json_decodes_typed_values() {
        let json = serde_json::json!({"at": {"$timestamp": "2026-01-01T00:00:00Z"}, "who": {"$ref": "users/u1"},
            "b": {"$bytes": "AQI="}, "g": {"$geo": {"lat": 1.5, "lng": 2.0}}, "n": 3, "x": 1.5});
        let value = Value::from_wire_json(&json).unwrap();
        let Value::Map(map) = &value else {
            panic!("not a map")
        };
        assert_eq!(
            map["who"],
            Value::Path(Path::parse("/databases/(default)/documents/users/u1"))
        );
        assert_eq!(map["b"], Value::Bytes(vec![1, 2]));
        assert!(matches!(map["n"], Value::Int(3)));
        assert!(matches!(map["x"], Value::Float(_)));
        assert_eq!(Value::from_wire_json(&value.to_wire_json()).unwrap(), value);
        assert!(Value::from_wire_json(&serde_json::json!({"$nope": 1})).is_err());
    }
}
