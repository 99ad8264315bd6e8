//! Built-in functions: global functions, namespaces (`math.`, `timestamp.`, ...) and the methods
//! of every value type, with the tables the loader uses to check names and argument counts.

use std::collections::BTreeMap;

use base64::Engine as _;

use crate::error::EvalError;
use crate::eval::{check_bytes, check_items, Evaluator, Val};
use crate::proof;
use crate::value::{
    as_f64, days_from_civil, days_in_month, format_float, is_leap_year, normalize_set, Duration,
    MapDiff, Path, Timestamp, Value,
};

/// Global functions: name, minimum and maximum argument count.
pub const GLOBALS: &[(&str, usize, usize)] = &[
    ("get", 1, 1),
    ("exists", 1, 1),
    ("getAfter", 1, 1),
    ("existsAfter", 1, 1),
    ("int", 1, 1),
    ("float", 1, 1),
    ("string", 1, 1),
    ("bool", 1, 1),
    ("path", 1, 1),
    ("debug", 1, 1),
    ("hasRole", 1, 2),
];

/// Namespace functions: namespace, name, minimum and maximum argument count.
pub const NAMESPACE_FUNCTIONS: &[(&str, &str, usize, usize)] = &[
    ("math", "abs", 1, 1),
    ("math", "ceil", 1, 1),
    ("math", "floor", 1, 1),
    ("math", "isInfinite", 1, 1),
    ("math", "isNaN", 1, 1),
    ("math", "pow", 2, 2),
    ("math", "round", 1, 1),
    ("math", "sqrt", 1, 1),
    ("timestamp", "date", 3, 3),
    ("timestamp", "value", 1, 1),
    ("duration", "abs", 1, 1),
    ("duration", "time", 4, 4),
    ("duration", "value", 2, 2),
    ("hashing", "crc32", 1, 1),
    ("hashing", "crc32c", 1, 1),
    ("hashing", "md5", 1, 1),
    ("hashing", "sha256", 1, 1),
    ("latlng", "value", 2, 2),
];

/// Every method name of every type, so the loader can catch misspelled methods.
pub const METHODS: &[&str] = &[
    // string
    "lower",
    "upper",
    "trim",
    "size",
    "matches",
    "replace",
    "split",
    "toUtf8",
    // list and set
    "concat",
    "hasAll",
    "hasAny",
    "hasOnly",
    "join",
    "removeAll",
    "toSet",
    "difference",
    "intersection",
    "union",
    // map and map diff
    "diff",
    "get",
    "keys",
    "values",
    "addedKeys",
    "removedKeys",
    "changedKeys",
    "affectedKeys",
    "unchangedKeys",
    // timestamp and duration
    "date",
    "year",
    "month",
    "day",
    "dayOfWeek",
    "dayOfYear",
    "hours",
    "minutes",
    "seconds",
    "nanos",
    "time",
    "toMillis",
    // path, bytes, latlng
    "bind",
    "toBase64",
    "toHexString",
    "distance",
    "latitude",
    "longitude",
];

pub fn is_namespace(name: &str) -> bool {
    matches!(
        name,
        "math" | "timestamp" | "duration" | "hashing" | "latlng"
    )
}

fn type_error(message: String) -> EvalError {
    EvalError::Type(message)
}

fn arity(name: &str, args: &[Val], expected: usize) -> Result<(), EvalError> {
    if args.len() != expected {
        return Err(type_error(format!(
            "{name}() takes {expected} argument(s), got {}",
            args.len()
        )));
    }
    Ok(())
}

fn arg(args: &[Val], index: usize) -> Result<&Value, EvalError> {
    args.get(index)
        .ok_or_else(|| type_error(format!("missing argument {}", index + 1)))?
        .value()
}

fn int_arg(args: &[Val], index: usize, what: &str) -> Result<i64, EvalError> {
    match arg(args, index)? {
        Value::Int(i) => Ok(*i),
        other => Err(type_error(format!(
            "{what} must be an int, not {}",
            other.type_name()
        ))),
    }
}

fn string_arg<'a>(args: &'a [Val], index: usize, what: &str) -> Result<&'a str, EvalError> {
    match arg(args, index)? {
        Value::String(s) => Ok(s),
        other => Err(type_error(format!(
            "{what} must be a string, not {}",
            other.type_name()
        ))),
    }
}

fn number_arg(args: &[Val], index: usize, what: &str) -> Result<f64, EvalError> {
    let value = arg(args, index)?;
    as_f64(value).ok_or_else(|| {
        type_error(format!(
            "{what} must be a number, not {}",
            value.type_name()
        ))
    })
}

/// The members of a list or set argument.
fn items_arg<'a>(args: &'a [Val], index: usize, what: &str) -> Result<&'a [Value], EvalError> {
    match arg(args, index)? {
        Value::List(items) | Value::Set(items) => Ok(items),
        other => Err(type_error(format!(
            "{what} must be a list or set, not {}",
            other.type_name()
        ))),
    }
}

fn owned(value: Value) -> Result<Val, EvalError> {
    Ok(Val::Owned(value))
}

pub fn call_global(ev: &mut Evaluator<'_>, name: &str, args: Vec<Val>) -> Result<Val, EvalError> {
    match name {
        "get" | "getAfter" => {
            arity(name, &args, 1)?;
            let found = ev.lookup(&args[0], name == "getAfter")?;
            Ok(match found {
                Some(document) => Val::Shared(document),
                None => Val::Owned(Value::Null),
            })
        }
        "exists" | "existsAfter" => {
            arity(name, &args, 1)?;
            let found = ev.lookup(&args[0], name == "existsAfter")?;
            owned(Value::Bool(found.is_some()))
        }
        "int" => {
            arity(name, &args, 1)?;
            owned(Value::Int(match arg(&args, 0)? {
                Value::Int(i) => *i,
                Value::Float(f) => {
                    if !f.is_finite()
                        || *f >= 9.223_372_036_854_776e18
                        || *f < -9.223_372_036_854_776e18
                    {
                        return Err(EvalError::Arithmetic(format!("{f} does not fit in an int")));
                    }
                    f.trunc() as i64
                }
                Value::String(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| EvalError::Invalid(format!("cannot convert {s:?} to int")))?,
                other => {
                    return Err(type_error(format!(
                        "int() cannot convert {}",
                        other.type_name()
                    )))
                }
            }))
        }
        "float" => {
            arity(name, &args, 1)?;
            owned(Value::Float(match arg(&args, 0)? {
                Value::Int(i) => *i as f64,
                Value::Float(f) => *f,
                Value::String(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| EvalError::Invalid(format!("cannot convert {s:?} to float")))?,
                other => {
                    return Err(type_error(format!(
                        "float() cannot convert {}",
                        other.type_name()
                    )))
                }
            }))
        }
        "string" => {
            arity(name, &args, 1)?;
            owned(Value::String(match arg(&args, 0)? {
                Value::Null => "null".to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Int(i) => i.to_string(),
                Value::Float(f) => format_float(*f),
                Value::String(s) => s.clone(),
                Value::Bytes(b) => String::from_utf8(b.clone())
                    .map_err(|_| EvalError::Invalid("bytes are not valid UTF-8".into()))?,
                Value::Path(p) => p.to_string(),
                Value::Timestamp(t) => t.to_rfc3339(),
                Value::Duration(d) => format!("{}s", format_float(d.total_nanos() as f64 / 1e9)),
                other => {
                    return Err(type_error(format!(
                        "string() cannot convert {}",
                        other.type_name()
                    )))
                }
            }))
        }
        "bool" => {
            arity(name, &args, 1)?;
            owned(Value::Bool(match arg(&args, 0)? {
                Value::Bool(b) => *b,
                Value::String(s) if s == "true" => true,
                Value::String(s) if s == "false" => false,
                other => return Err(type_error(format!("bool() cannot convert {other}"))),
            }))
        }
        "path" => {
            arity(name, &args, 1)?;
            match arg(&args, 0)? {
                Value::String(s) => owned(Value::Path(Path::parse(s))),
                Value::Path(p) => owned(Value::Path(p.clone())),
                other => Err(type_error(format!(
                    "path() needs a string, not {}",
                    other.type_name()
                ))),
            }
        }
        "debug" => {
            arity(name, &args, 1)?;
            Ok(args.into_iter().next().unwrap_or(Val::Owned(Value::Null)))
        }
        "hasRole" => {
            if args.is_empty() || args.len() > 2 {
                return Err(type_error("hasRole() takes 1 or 2 arguments".into()));
            }
            let role = string_arg(&args, 0, "the role")?;
            let domain = if args.len() == 2 {
                Some(string_arg(&args, 1, "the domain")?)
            } else {
                None
            };
            // Signed-out callers hold no roles.
            let Some(uid) = ev.uid.as_deref() else {
                return owned(Value::Bool(false));
            };
            owned(Value::Bool(ev.reader.has_role(uid, role, domain)))
        }
        other => Err(type_error(format!("unknown function `{other}`"))),
    }
}

pub fn call_namespace(
    _ev: &mut Evaluator<'_>,
    namespace: &str,
    name: &str,
    args: Vec<Val>,
) -> Result<Val, EvalError> {
    let expected = NAMESPACE_FUNCTIONS
        .iter()
        .find(|(ns, n, _, _)| *ns == namespace && *n == name)
        .map(|(_, _, min, _)| *min)
        .ok_or_else(|| type_error(format!("unknown function `{namespace}.{name}`")))?;
    arity(&format!("{namespace}.{name}"), &args, expected)?;
    match (namespace, name) {
        ("math", "abs") => match arg(&args, 0)? {
            Value::Int(i) => i
                .checked_abs()
                .map(|n| Val::Owned(Value::Int(n)))
                .ok_or_else(|| EvalError::Arithmetic("integer overflow".into())),
            Value::Float(f) => owned(Value::Float(f.abs())),
            other => Err(type_error(format!(
                "math.abs needs a number, not {}",
                other.type_name()
            ))),
        },
        ("math", "ceil") => owned(Value::Float(number_arg(&args, 0, "the argument")?.ceil())),
        ("math", "floor") => owned(Value::Float(number_arg(&args, 0, "the argument")?.floor())),
        ("math", "round") => owned(Value::Float(number_arg(&args, 0, "the argument")?.round())),
        ("math", "sqrt") => owned(Value::Float(number_arg(&args, 0, "the argument")?.sqrt())),
        ("math", "isInfinite") => owned(Value::Bool(
            number_arg(&args, 0, "the argument")?.is_infinite(),
        )),
        ("math", "isNaN") => owned(Value::Bool(number_arg(&args, 0, "the argument")?.is_nan())),
        ("math", "pow") => owned(Value::Float(
            number_arg(&args, 0, "the base")?.powf(number_arg(&args, 1, "the exponent")?),
        )),
        ("timestamp", "date") => {
            let (year, month, day) = (
                int_arg(&args, 0, "the year")?,
                int_arg(&args, 1, "the month")?,
                int_arg(&args, 2, "the day")?,
            );
            if !(1..=9999).contains(&year)
                || !(1..=12).contains(&month)
                || day < 1
                || day > days_in_month(year, month)
            {
                return Err(EvalError::Invalid(format!(
                    "invalid date {year}-{month}-{day}"
                )));
            }
            Timestamp::new(days_from_civil(year, month, day) * 86_400, 0)
                .map(|t| Val::Owned(Value::Timestamp(t)))
                .ok_or_else(|| EvalError::Invalid("timestamp out of range".into()))
        }
        ("timestamp", "value") => {
            let millis = int_arg(&args, 0, "the epoch milliseconds")?;
            Timestamp::from_total_nanos(i128::from(millis) * 1_000_000)
                .map(|t| Val::Owned(Value::Timestamp(t)))
                .ok_or_else(|| EvalError::Invalid("timestamp out of range".into()))
        }
        ("duration", "abs") => match arg(&args, 0)? {
            Value::Duration(d) => Duration::from_total_nanos(d.total_nanos().abs())
                .map(|d| Val::Owned(Value::Duration(d)))
                .ok_or_else(|| EvalError::Arithmetic("duration overflow".into())),
            other => Err(type_error(format!(
                "duration.abs needs a duration, not {}",
                other.type_name()
            ))),
        },
        ("duration", "time") => {
            let parts = [
                (int_arg(&args, 0, "hours")?, 3_600_000_000_000i128),
                (int_arg(&args, 1, "minutes")?, 60_000_000_000),
                (int_arg(&args, 2, "seconds")?, 1_000_000_000),
                (int_arg(&args, 3, "nanoseconds")?, 1),
            ];
            let total: i128 = parts.iter().map(|(n, unit)| i128::from(*n) * unit).sum();
            duration_value(total)
        }
        ("duration", "value") => {
            let magnitude = int_arg(&args, 0, "the magnitude")?;
            let unit = string_arg(&args, 1, "the unit")?;
            let nanos_per_unit: i128 = match unit {
                "w" => 604_800_000_000_000,
                "d" => 86_400_000_000_000,
                "h" => 3_600_000_000_000,
                "m" => 60_000_000_000,
                "s" => 1_000_000_000,
                "ms" => 1_000_000,
                "us" => 1_000,
                "ns" => 1,
                other => {
                    return Err(EvalError::Invalid(format!(
                        "unknown duration unit {other:?} (w, d, h, m, s, ms, ns)"
                    )))
                }
            };
            duration_value(i128::from(magnitude) * nanos_per_unit)
        }
        ("hashing", hash) => {
            let input: &[u8] = match arg(&args, 0)? {
                Value::String(s) => s.as_bytes(),
                Value::Bytes(b) => b,
                other => {
                    return Err(type_error(format!(
                        "hashing.{hash} needs a string or bytes, not {}",
                        other.type_name()
                    )))
                }
            };
            let digest = match hash {
                "crc32" => crc32(input, 0xEDB8_8320).to_be_bytes().to_vec(),
                "crc32c" => crc32(input, 0x82F6_3B78).to_be_bytes().to_vec(),
                "md5" => {
                    use md5::Digest as _;
                    md5::Md5::digest(input).to_vec()
                }
                _ => {
                    use sha2::Digest as _;
                    sha2::Sha256::digest(input).to_vec()
                }
            };
            owned(Value::Bytes(digest))
        }
        ("latlng", "value") => {
            let (lat, lng) = (
                number_arg(&args, 0, "the latitude")?,
                number_arg(&args, 1, "the longitude")?,
            );
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lng) {
                return Err(EvalError::Invalid(format!(
                    "latitude/longitude out of range: {lat}, {lng}"
                )));
            }
            owned(Value::LatLng { lat, lng })
        }
        _ => Err(type_error(format!("unknown function `{namespace}.{name}`"))),
    }
}

fn duration_value(total: i128) -> Result<Val, EvalError> {
    Duration::from_total_nanos(total)
        .map(|d| Val::Owned(Value::Duration(d)))
        .ok_or_else(|| EvalError::Arithmetic("duration overflow".into()))
}

/// Bitwise CRC-32 with the given reflected polynomial (IEEE or Castagnoli); inputs are small.
fn crc32(input: &[u8], polynomial: u32) -> u32 {
    let mut crc = !0u32;
    for byte in input {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ polynomial
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

pub fn call_method(
    ev: &mut Evaluator<'_>,
    receiver: Val,
    name: &str,
    args: Vec<Val>,
) -> Result<Val, EvalError> {
    if let Val::Sym(sym) = &receiver {
        return proof::symbolic_method(sym, name, &args);
    }
    let value = receiver.value()?;
    match value {
        Value::String(s) => string_method(ev, s, name, &args),
        Value::List(items) => list_method(items, name, &args),
        Value::Set(items) => set_method(items, name, &args),
        Value::Map(map) => map_method(map, name, &args),
        Value::MapDiff(diff) => {
            arity(name, &args, 0)?;
            let keys = match name {
                "addedKeys" => diff.added_keys(),
                "removedKeys" => diff.removed_keys(),
                "changedKeys" => diff.changed_keys(),
                "affectedKeys" => diff.affected_keys(),
                "unchangedKeys" => diff.unchanged_keys(),
                _ => return Err(no_method(value, name)),
            };
            owned(Value::Set(keys))
        }
        Value::Timestamp(t) => timestamp_method(value, *t, name, &args),
        Value::Duration(d) => {
            arity(name, &args, 0)?;
            match name {
                "seconds" => owned(Value::Int(d.seconds)),
                "nanos" => owned(Value::Int(i64::from(d.nanos))),
                _ => Err(no_method(value, name)),
            }
        }
        Value::Bytes(bytes) => {
            arity(name, &args, 0)?;
            match name {
                "size" => owned(Value::Int(len_i64(bytes.len()))),
                "toBase64" => owned(Value::String(
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                )),
                "toHexString" => owned(Value::String(
                    bytes.iter().map(|b| format!("{b:02X}")).collect(),
                )),
                _ => Err(no_method(value, name)),
            }
        }
        Value::LatLng { lat, lng } => match name {
            "latitude" => {
                arity(name, &args, 0)?;
                owned(Value::Float(*lat))
            }
            "longitude" => {
                arity(name, &args, 0)?;
                owned(Value::Float(*lng))
            }
            "distance" => {
                arity(name, &args, 1)?;
                match arg(&args, 0)? {
                    Value::LatLng {
                        lat: lat2,
                        lng: lng2,
                    } => owned(Value::Float(haversine(*lat, *lng, *lat2, *lng2))),
                    other => Err(type_error(format!(
                        "distance() needs a latlng, not {}",
                        other.type_name()
                    ))),
                }
            }
            _ => Err(no_method(value, name)),
        },
        Value::Path(path) => match name {
            "bind" => {
                arity(name, &args, 1)?;
                let Value::Map(bindings) = arg(&args, 0)? else {
                    return Err(type_error("bind() needs a map".into()));
                };
                let mut segments = Vec::with_capacity(path.segments.len());
                for segment in &path.segments {
                    let key = segment
                        .strip_prefix("$(")
                        .and_then(|s| s.strip_suffix(')'))
                        .or_else(|| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')));
                    match key.and_then(|key| bindings.get(key)) {
                        Some(Value::String(s)) => segments.push(s.clone()),
                        Some(Value::Path(p)) => segments.extend(p.segments.iter().cloned()),
                        Some(other) => {
                            return Err(type_error(format!(
                                "cannot bind {} into a path",
                                other.type_name()
                            )))
                        }
                        None => segments.push(segment.clone()),
                    }
                }
                owned(Value::Path(Path { segments }))
            }
            "size" => {
                arity(name, &args, 0)?;
                owned(Value::Int(len_i64(path.segments.len())))
            }
            _ => Err(no_method(value, name)),
        },
        _ => Err(no_method(value, name)),
    }
}

fn no_method(value: &Value, name: &str) -> EvalError {
    type_error(format!("{} has no method `{name}`", value.type_name()))
}

fn len_i64(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

fn string_method(
    ev: &mut Evaluator<'_>,
    s: &str,
    name: &str,
    args: &[Val],
) -> Result<Val, EvalError> {
    match name {
        "lower" | "upper" | "trim" | "size" | "toUtf8" => {
            arity(name, args, 0)?;
            owned(match name {
                "lower" => Value::String(s.to_lowercase()),
                "upper" => Value::String(s.to_uppercase()),
                "trim" => Value::String(s.trim().to_string()),
                "size" => Value::Int(len_i64(s.chars().count())),
                _ => Value::Bytes(s.as_bytes().to_vec()),
            })
        }
        "matches" => {
            arity(name, args, 1)?;
            let regex = ev.regex(string_arg(args, 0, "the pattern")?, true)?;
            owned(Value::Bool(regex.is_match(s)))
        }
        "split" => {
            arity(name, args, 1)?;
            let regex = ev.regex(string_arg(args, 0, "the pattern")?, false)?;
            let parts: Vec<Value> = regex
                .split(s)
                .take(MAX_SPLIT_PARTS)
                .map(|p| Value::String(p.to_string()))
                .collect();
            owned(Value::List(parts))
        }
        "replace" => {
            arity(name, args, 2)?;
            let regex = ev.regex(string_arg(args, 0, "the pattern")?, false)?;
            let replacement = re2_replacement(string_arg(args, 1, "the replacement")?);
            let out = regex.replace_all(s, replacement.as_str()).into_owned();
            check_bytes(out.len())?;
            owned(Value::String(out))
        }
        _ => Err(type_error(format!("string has no method `{name}`"))),
    }
}

const MAX_SPLIT_PARTS: usize = 100_000;

/// Converts an RE2 replacement (`\1` for groups) into the regex crate's syntax (`${1}`).
fn re2_replacement(replacement: &str) -> String {
    let mut out = String::with_capacity(replacement.len());
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    chars.next();
                    out.push_str(&format!("${{{d}}}"));
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// Membership via a sorted copy, so `hasAll`-style checks stay O(n log n) on large lists.
fn sorted(items: &[Value]) -> Vec<&Value> {
    let mut out: Vec<&Value> = items.iter().collect();
    out.sort_by(|a, b| a.total_cmp(b));
    out
}

fn contains_sorted(haystack: &[&Value], needle: &Value) -> bool {
    haystack
        .binary_search_by(|probe| probe.total_cmp(needle))
        .is_ok()
        && !matches!(needle, Value::Float(f) if f.is_nan())
}

fn collection_predicates(
    items: &[Value],
    name: &str,
    args: &[Val],
) -> Option<Result<Val, EvalError>> {
    let other = match name {
        "hasAll" | "hasAny" | "hasOnly" => {
            match arity(name, args, 1).and_then(|()| items_arg(args, 0, "the argument")) {
                Ok(other) => other,
                Err(error) => return Some(Err(error)),
            }
        }
        _ => return None,
    };
    let result = match name {
        "hasAll" => {
            let mine = sorted(items);
            other.iter().all(|value| contains_sorted(&mine, value))
        }
        "hasAny" => {
            let mine = sorted(items);
            other.iter().any(|value| contains_sorted(&mine, value))
        }
        _ => {
            let allowed = sorted(other);
            items.iter().all(|value| contains_sorted(&allowed, value))
        }
    };
    Some(owned(Value::Bool(result)))
}

fn list_method(items: &[Value], name: &str, args: &[Val]) -> Result<Val, EvalError> {
    if let Some(result) = collection_predicates(items, name, args) {
        return result;
    }
    match name {
        "size" => {
            arity(name, args, 0)?;
            owned(Value::Int(len_i64(items.len())))
        }
        "concat" => {
            arity(name, args, 1)?;
            let other = match arg(args, 0)? {
                Value::List(other) => other,
                other => {
                    return Err(type_error(format!(
                        "concat() needs a list, not {}",
                        other.type_name()
                    )))
                }
            };
            check_items(items.len() + other.len())?;
            owned(Value::List(items.iter().chain(other).cloned().collect()))
        }
        "join" => {
            arity(name, args, 1)?;
            let separator = string_arg(args, 0, "the separator")?;
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => parts.push(s.as_str()),
                    other => {
                        return Err(type_error(format!(
                            "join() needs a list of strings, found {}",
                            other.type_name()
                        )))
                    }
                }
            }
            let joined = parts.join(separator);
            check_bytes(joined.len())?;
            owned(Value::String(joined))
        }
        "removeAll" => {
            arity(name, args, 1)?;
            let removed = sorted(items_arg(args, 0, "the argument")?);
            owned(Value::List(
                items
                    .iter()
                    .filter(|v| !contains_sorted(&removed, v))
                    .cloned()
                    .collect(),
            ))
        }
        "toSet" => {
            arity(name, args, 0)?;
            owned(Value::Set(normalize_set(items.to_vec())))
        }
        _ => Err(type_error(format!("list has no method `{name}`"))),
    }
}

fn set_method(items: &[Value], name: &str, args: &[Val]) -> Result<Val, EvalError> {
    if let Some(result) = collection_predicates(items, name, args) {
        return result;
    }
    match name {
        "size" => {
            arity(name, args, 0)?;
            owned(Value::Int(len_i64(items.len())))
        }
        "difference" | "intersection" | "union" => {
            arity(name, args, 1)?;
            let other = match arg(args, 0)? {
                Value::Set(other) => other,
                other => {
                    return Err(type_error(format!(
                        "{name}() needs a set, not {}",
                        other.type_name()
                    )))
                }
            };
            let theirs = sorted(other);
            let out = match name {
                "difference" => items
                    .iter()
                    .filter(|v| !contains_sorted(&theirs, v))
                    .cloned()
                    .collect(),
                "intersection" => items
                    .iter()
                    .filter(|v| contains_sorted(&theirs, v))
                    .cloned()
                    .collect(),
                _ => {
                    check_items(items.len() + other.len())?;
                    normalize_set(items.iter().chain(other).cloned().collect())
                }
            };
            owned(Value::Set(out))
        }
        _ => Err(type_error(format!("set has no method `{name}`"))),
    }
}

fn map_method(map: &BTreeMap<String, Value>, name: &str, args: &[Val]) -> Result<Val, EvalError> {
    match name {
        "size" => {
            arity(name, args, 0)?;
            owned(Value::Int(len_i64(map.len())))
        }
        "keys" => {
            arity(name, args, 0)?;
            owned(Value::List(
                map.keys().map(|k| Value::String(k.clone())).collect(),
            ))
        }
        "values" => {
            arity(name, args, 0)?;
            owned(Value::List(map.values().cloned().collect()))
        }
        "diff" => {
            arity(name, args, 1)?;
            match arg(args, 0)? {
                Value::Map(other) => owned(Value::MapDiff(Box::new(MapDiff {
                    left: map.clone(),
                    right: other.clone(),
                }))),
                other => Err(type_error(format!(
                    "diff() needs a map, not {}",
                    other.type_name()
                ))),
            }
        }
        "get" => {
            arity(name, args, 2)?;
            let found = match arg(args, 0)? {
                Value::String(key) => map.get(key),
                Value::List(path) => {
                    let mut current: Option<&Value> = None;
                    let mut scope = Some(map);
                    for segment in path {
                        let Value::String(key) = segment else {
                            return Err(type_error("get() path segments must be strings".into()));
                        };
                        current = scope.and_then(|m| m.get(key));
                        scope = match current {
                            Some(Value::Map(inner)) => Some(inner),
                            _ => None,
                        };
                    }
                    if path.is_empty() {
                        None
                    } else {
                        current
                    }
                }
                other => {
                    return Err(type_error(format!(
                        "get() needs a key or a list of keys, not {}",
                        other.type_name()
                    )))
                }
            };
            match found {
                Some(value) => owned(value.clone()),
                None => Ok(args.get(1).cloned().unwrap_or(Val::Owned(Value::Null))),
            }
        }
        _ => Err(type_error(format!("map has no method `{name}`"))),
    }
}

fn timestamp_method(
    value: &Value,
    t: Timestamp,
    name: &str,
    args: &[Val],
) -> Result<Val, EvalError> {
    // Only UTC is supported as a time zone argument; other zones would need a tz database.
    if let Some(zone) = args.first() {
        match zone.value()? {
            Value::String(z) if z == "UTC" || z == "Z" || z == "Etc/UTC" => {}
            other => {
                return Err(EvalError::Invalid(format!(
                    "unsupported time zone {other}: only \"UTC\""
                )))
            }
        }
    }
    if args.len() > 1 {
        return Err(type_error(format!("{name}() takes at most 1 argument")));
    }
    let (year, month, day, secs_of_day) = t.civil();
    let days = t.seconds.div_euclid(86_400);
    let int = |i: i64| owned(Value::Int(i));
    match name {
        "date" => owned(Value::Timestamp(Timestamp {
            seconds: days * 86_400,
            nanos: 0,
        })),
        "year" => int(year),
        "month" => int(month),
        "day" => int(day),
        // ISO weekday: Monday is 1 and Sunday is 7 (1970-01-01 was a Thursday).
        "dayOfWeek" => int((days + 3).rem_euclid(7) + 1),
        "dayOfYear" => {
            let start = days_from_civil(year, 1, 1);
            let _ = is_leap_year(year);
            int(days - start + 1)
        }
        "hours" => int(secs_of_day / 3600),
        "minutes" => int(secs_of_day % 3600 / 60),
        "seconds" => int(secs_of_day % 60),
        "nanos" => int(i64::from(t.nanos)),
        "time" => duration_value(i128::from(secs_of_day) * 1_000_000_000 + i128::from(t.nanos)),
        "toMillis" => int(t.seconds * 1000 + i64::from(t.nanos / 1_000_000)),
        _ => Err(no_method(value, name)),
    }
}

/// Great-circle distance in meters.
fn haversine(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    const EARTH_RADIUS_METERS: f64 = 6_371_000.0;
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let d_phi = (lat2 - lat1).to_radians();
    let d_lambda = (lng2 - lng1).to_radians();
    let a = (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_METERS * a.sqrt().atan2((1.0 - a).sqrt())
}

/// `target[from:to]` on strings (by character), lists and paths.
pub fn slice(target: &Value, from: Option<&Val>, to: Option<&Val>) -> Result<Value, EvalError> {
    let bound = |value: Option<&Val>, default: usize, len: usize| -> Result<usize, EvalError> {
        match value {
            None => Ok(default),
            Some(value) => match value.value()? {
                Value::Int(i) => usize::try_from(*i)
                    .ok()
                    .filter(|i| *i <= len)
                    .ok_or(EvalError::IndexOutOfRange(*i)),
                other => Err(type_error(format!(
                    "slice bounds must be ints, not {}",
                    other.type_name()
                ))),
            },
        }
    };
    let range = |len: usize| -> Result<(usize, usize), EvalError> {
        let start = bound(from, 0, len)?;
        let end = bound(to, len, len)?;
        if start > end {
            return Err(EvalError::Invalid(format!(
                "slice start {start} is after its end {end}"
            )));
        }
        Ok((start, end))
    };
    match target {
        Value::String(s) => {
            let chars: Vec<char> = s.chars().collect();
            let (start, end) = range(chars.len())?;
            Ok(Value::String(chars[start..end].iter().collect()))
        }
        Value::List(items) => {
            let (start, end) = range(items.len())?;
            Ok(Value::List(items[start..end].to_vec()))
        }
        Value::Path(path) => {
            let (start, end) = range(path.segments.len())?;
            Ok(Value::Path(Path {
                segments: path.segments[start..end].to_vec(),
            }))
        }
        other => Err(type_error(format!("cannot slice {}", other.type_name()))),
    }
}
