//! Structured queries: decoding the wire form of DESIGN.md §3 and evaluating filters, order
//! and cursors on documents in memory (the definition of a correct answer).

use std::cmp::Ordering;

use base64::Engine as _;
use serde_json::{json, Map as JsonMap, Value as Json};

use super::error::{invalid, DocsError};
use super::index::Direction;
use crate::model::{CollectionPath, DocId, DocPath, Document, FieldPath, Value};

/// `in` and `array-contains-any` take at most this many values; `not-in` at most 10.
pub const MAX_DISJUNCTION_VALUES: usize = 30;
pub const MAX_NOT_IN_VALUES: usize = 10;
/// Nested `and`/`or` deeper than this is refused (it is never needed and costs stack).
const MAX_FILTER_DEPTH: usize = 10;
/// Filters in one query at most.
const MAX_FILTERS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    ArrayContains,
    ArrayContainsAny,
}

impl Op {
    fn parse(text: &str) -> Result<Op, DocsError> {
        Ok(match text {
            "==" => Op::Eq,
            "!=" => Op::NotEq,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "in" => Op::In,
            "not-in" => Op::NotIn,
            "array-contains" => Op::ArrayContains,
            "array-contains-any" => Op::ArrayContainsAny,
            other => {
                return Err(invalid(format!(
                    "unknown operator '{other}' (use ==, !=, <, <=, >, >=, in, not-in, array-contains, array-contains-any)"
                )))
            }
        })
    }

    pub fn is_range(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }

    /// Inequalities add an implicit order on their field, as in Firestore.
    pub fn is_inequality(self) -> bool {
        self.is_range() || matches!(self, Op::NotEq | Op::NotIn)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::NotEq => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
            Op::NotIn => "not-in",
            Op::ArrayContains => "array-contains",
            Op::ArrayContainsAny => "array-contains-any",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Filter {
    Field {
        field: FieldPath,
        op: Op,
        value: Value,
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

/// A start or end position: values of the order fields (then optionally the document).
#[derive(Debug, Clone)]
pub struct Cursor {
    pub values: Vec<Value>,
    /// True for startAt / endAt (the position itself is included).
    pub inclusive: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    pub count: bool,
    pub sum: Vec<FieldPath>,
    pub avg: Vec<FieldPath>,
}

/// Where a query reads from.
#[derive(Debug, Clone)]
pub enum Source {
    Collection(CollectionPath),
    /// Every collection with this ID, at any depth (optionally only below `parent`).
    Group {
        collection_id: String,
        parent: Option<DocPath>,
    },
}

#[derive(Debug, Clone)]
pub struct Query {
    pub source: Source,
    pub filter: Option<Filter>,
    /// The `where` clause as sent, for the rules' list proof.
    pub where_json: Option<Json>,
    /// Order as requested (without the implicit parts).
    pub order_by: Vec<(FieldPath, Direction)>,
    pub limit: Option<usize>,
    pub offset: usize,
    pub start: Option<Cursor>,
    pub end: Option<Cursor>,
    pub page_token: Option<PageToken>,
    pub select: Option<Vec<FieldPath>>,
    pub aggregate: Option<Aggregate>,
    /// A fingerprint of everything but the page token, so a token is only used with its query.
    pub fingerprint: u64,
}

/// Where the previous page ended: the full order key of its last document.
#[derive(Debug, Clone)]
pub struct PageToken {
    pub values: Vec<Value>,
}

impl Query {
    /// Decodes `POST /v1/query` bodies. `max_limit` caps `limit`.
    pub fn from_json(body: &Json, max_limit: usize) -> Result<Query, DocsError> {
        let object = body
            .as_object()
            .ok_or_else(|| invalid("query must be a JSON object"))?;
        const KNOWN: [&str; 13] = [
            "from",
            "parent",
            "allDescendants",
            "where",
            "orderBy",
            "limit",
            "offset",
            "pageToken",
            "startAt",
            "startAfter",
            "endAt",
            "endBefore",
            "select",
        ];
        for key in object.keys() {
            if !KNOWN.contains(&key.as_str()) && key != "aggregate" {
                return Err(invalid(format!("unknown query field '{key}'")));
            }
        }
        let from = object
            .get("from")
            .and_then(Json::as_str)
            .ok_or_else(|| invalid("query needs \"from\": a collection ID"))?;
        let parent = match object.get("parent") {
            None | Some(Json::Null) => None,
            Some(Json::String(p)) => Some(DocPath::parse(p)?),
            Some(_) => return Err(invalid("\"parent\" must be a document path string")),
        };
        let all_descendants = match object.get("allDescendants") {
            None | Some(Json::Null) => false,
            Some(Json::Bool(b)) => *b,
            Some(_) => return Err(invalid("\"allDescendants\" must be a boolean")),
        };
        let source = if all_descendants {
            Source::Group {
                collection_id: DocId::parse(from)?.as_str().to_string(),
                parent,
            }
        } else if from.contains('/') {
            if parent.is_some() {
                return Err(invalid(
                    "give either a collection path in \"from\" or \"parent\", not both",
                ));
            }
            Source::Collection(CollectionPath::parse(from)?)
        } else {
            Source::Collection(CollectionPath::child_of(
                parent.as_ref(),
                &DocId::parse(from)?,
            ))
        };
        let filter = match object.get("where") {
            None | Some(Json::Null) => None,
            Some(w) => {
                let mut count = 0;
                Some(parse_filter(w, 0, &mut count)?)
            }
        };
        let order_by = parse_order_by(object.get("orderBy"))?;
        let limit = match object.get("limit") {
            None | Some(Json::Null) => None,
            Some(v) => {
                let n = v
                    .as_u64()
                    .ok_or_else(|| invalid("\"limit\" must be a non-negative integer"))?;
                if n as usize > max_limit {
                    return Err(invalid(format!("\"limit\" is at most {max_limit}")));
                }
                Some(n as usize)
            }
        };
        let offset = match object.get("offset") {
            None | Some(Json::Null) => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| invalid("\"offset\" must be a non-negative integer"))?
                as usize,
        };
        let cursor = |name: &str, inclusive: bool| -> Result<Option<Cursor>, DocsError> {
            match object.get(name) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::Array(items)) => {
                    if items.is_empty() || items.len() > order_by.len() + 1 {
                        return Err(invalid(format!(
                            "\"{name}\" takes the values of the orderBy fields, then optionally the document ID ({} values at most)",
                            order_by.len() + 1
                        )));
                    }
                    let values = items
                        .iter()
                        .map(Value::from_json)
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(Some(Cursor { values, inclusive }))
                }
                Some(_) => Err(invalid(format!("\"{name}\" must be an array of values"))),
            }
        };
        let start = match (cursor("startAt", true)?, cursor("startAfter", false)?) {
            (Some(_), Some(_)) => return Err(invalid("give startAt or startAfter, not both")),
            (a, b) => a.or(b),
        };
        let end = match (cursor("endAt", true)?, cursor("endBefore", false)?) {
            (Some(_), Some(_)) => return Err(invalid("give endAt or endBefore, not both")),
            (a, b) => a.or(b),
        };
        let select = match object.get("select") {
            None | Some(Json::Null) => None,
            Some(Json::Array(items)) => Some(
                items
                    .iter()
                    .map(|f| {
                        f.as_str()
                            .ok_or_else(|| invalid("\"select\" takes field path strings"))
                            .and_then(|s| Ok(FieldPath::parse(s)?))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(invalid("\"select\" must be an array of field paths")),
        };
        let aggregate = match object.get("aggregate") {
            None | Some(Json::Null) => None,
            Some(a) => Some(parse_aggregate(a)?),
        };
        let fingerprint = fingerprint(object);
        let page_token = match object.get("pageToken") {
            None | Some(Json::Null) => None,
            Some(Json::String(token)) => Some(PageToken::decode(token, fingerprint)?),
            Some(_) => return Err(invalid("\"pageToken\" must be a string")),
        };
        let where_json = object.get("where").filter(|w| !w.is_null()).cloned();
        let query = Query {
            source,
            filter,
            where_json,
            order_by,
            limit,
            offset,
            start,
            end,
            page_token,
            select,
            aggregate,
            fingerprint,
        };
        query.validate_name_filters()?;
        Ok(query)
    }

    /// The parent collection of matching documents, for queries on one collection.
    pub fn collection(&self) -> Option<&CollectionPath> {
        match &self.source {
            Source::Collection(c) => Some(c),
            Source::Group { .. } => None,
        }
    }

    pub fn collection_id(&self) -> &str {
        match &self.source {
            Source::Collection(c) => c.id(),
            Source::Group { collection_id, .. } => collection_id,
        }
    }

    /// The full order: requested fields, then inequality fields not already ordered (ascending),
    /// then the document name in the direction of the last field.
    pub fn effective_order(&self) -> Vec<(FieldPath, Direction)> {
        let mut order = self.order_by.clone();
        let mut inequality_fields = Vec::new();
        if let Some(filter) = &self.filter {
            collect_inequality_fields(filter, &mut inequality_fields);
        }
        inequality_fields.sort();
        for field in inequality_fields {
            if !order.iter().any(|(f, _)| *f == field) {
                order.push((field, Direction::Asc));
            }
        }
        if !order.iter().any(|(f, _)| f.is_document_id()) {
            let direction = order.last().map_or(Direction::Asc, |(_, d)| *d);
            order.push((name_field(), direction));
        }
        order
    }

    /// Top-level conjuncts: the filters every result must satisfy on its own.
    pub fn conjuncts(&self) -> Vec<&Filter> {
        fn walk<'a>(filter: &'a Filter, out: &mut Vec<&'a Filter>) {
            match filter {
                Filter::And(parts) => parts.iter().for_each(|p| walk(p, out)),
                Filter::Or(parts) if parts.len() == 1 => walk(&parts[0], out),
                other => out.push(other),
            }
        }
        let mut out = Vec::new();
        if let Some(filter) = &self.filter {
            walk(filter, &mut out);
        }
        out
    }

    /// `__name__` filters compare document references; a plain ID string is accepted for
    /// single-collection queries and turned into the reference.
    fn validate_name_filters(&self) -> Result<(), DocsError> {
        fn check(filter: &Filter) -> Result<(), DocsError> {
            match filter {
                Filter::Field { field, value, .. } if field.is_document_id() => match value {
                    Value::Reference(_) => Ok(()),
                    Value::Array(items)
                        if items.iter().all(|v| matches!(v, Value::Reference(_))) =>
                    {
                        Ok(())
                    }
                    _ => Err(invalid(
                        "filters on __name__ take document references ({\"$ref\": path})",
                    )),
                },
                Filter::And(parts) | Filter::Or(parts) => parts.iter().try_for_each(check),
                _ => Ok(()),
            }
        }
        match &self.filter {
            Some(f) => check(f),
            None => Ok(()),
        }
    }

    /// Is the document at `path` in the collection (or collection group) the query reads?
    pub fn reads_from(&self, path: &DocPath) -> bool {
        let segments = path.segments();
        match &self.source {
            Source::Collection(collection) => {
                segments.len() == collection.segments().len() + 1
                    && segments.starts_with(collection.segments())
            }
            Source::Group {
                collection_id,
                parent,
            } => {
                segments.len() >= 2
                    && segments[segments.len() - 2] == *collection_id
                    && parent.as_ref().is_none_or(|p| {
                        segments.len() > p.segments().len() && segments.starts_with(p.segments())
                    })
            }
        }
    }

    /// Does `document` (a candidate from the right collection) pass the filter and cursors?
    pub fn matches(&self, document: &Document, order: &[(FieldPath, Direction)]) -> bool {
        if !self.reads_from(&document.path) {
            return false;
        }
        if let Some(filter) = &self.filter {
            if !filter_matches(filter, document) {
                return false;
            }
        }
        // Ordering by a field excludes documents without it.
        let Some(key) = order_key(document, order) else {
            return false;
        };
        if let Some(start) = &self.start {
            let cmp = compare_to_cursor(
                &key,
                &start.values,
                order,
                self.order_by.len(),
                &document.path,
            );
            if cmp == Ordering::Less || (cmp == Ordering::Equal && !start.inclusive) {
                return false;
            }
        }
        if let Some(end) = &self.end {
            let cmp = compare_to_cursor(
                &key,
                &end.values,
                order,
                self.order_by.len(),
                &document.path,
            );
            if cmp == Ordering::Greater || (cmp == Ordering::Equal && !end.inclusive) {
                return false;
            }
        }
        if let Some(token) = &self.page_token {
            if compare_keys(&key, &token.values, order) != Ordering::Greater {
                return false;
            }
        }
        true
    }
}

pub fn name_field() -> FieldPath {
    FieldPath::from_segments(vec!["__name__".to_string()])
}

fn collect_inequality_fields(filter: &Filter, out: &mut Vec<FieldPath>) {
    match filter {
        Filter::Field { field, op, .. }
            if op.is_inequality() && !field.is_document_id() && !out.contains(field) =>
        {
            out.push(field.clone());
        }
        Filter::And(parts) | Filter::Or(parts) => {
            parts.iter().for_each(|p| collect_inequality_fields(p, out))
        }
        _ => {}
    }
}

fn parse_filter(json: &Json, depth: usize, count: &mut usize) -> Result<Filter, DocsError> {
    if depth > MAX_FILTER_DEPTH {
        return Err(invalid(format!(
            "filters nest deeper than {MAX_FILTER_DEPTH} levels"
        )));
    }
    *count += 1;
    if *count > MAX_FILTERS {
        return Err(invalid(format!(
            "a query has at most {MAX_FILTERS} filters"
        )));
    }
    match json {
        Json::Array(parts) => {
            let [field, op, value] = parts.as_slice() else {
                return Err(invalid("a condition is [field, operator, value]"));
            };
            let field = FieldPath::parse(
                field
                    .as_str()
                    .ok_or_else(|| invalid("a condition's field must be a string"))?,
            )?;
            let op = Op::parse(
                op.as_str()
                    .ok_or_else(|| invalid("a condition's operator must be a string"))?,
            )?;
            let value = Value::from_json(value)?;
            if matches!(op, Op::In | Op::NotIn | Op::ArrayContainsAny) {
                let Value::Array(items) = &value else {
                    return Err(invalid(format!(
                        "'{}' takes an array of values",
                        op.as_str()
                    )));
                };
                let max = if op == Op::NotIn {
                    MAX_NOT_IN_VALUES
                } else {
                    MAX_DISJUNCTION_VALUES
                };
                if items.is_empty() || items.len() > max {
                    return Err(invalid(format!(
                        "'{}' takes 1 to {max} values",
                        op.as_str()
                    )));
                }
            }
            Ok(Filter::Field { field, op, value })
        }
        Json::Object(map) if map.len() == 1 => {
            let (kind, parts) = map.iter().next().ok_or_else(|| invalid("empty filter"))?;
            let parts = parts
                .as_array()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| invalid(format!("\"{kind}\" takes a non-empty array of filters")))?;
            let parsed = parts
                .iter()
                .map(|p| parse_filter(p, depth + 1, count))
                .collect::<Result<Vec<_>, _>>()?;
            match kind.as_str() {
                "and" => Ok(Filter::And(parsed)),
                "or" => Ok(Filter::Or(parsed)),
                other => Err(invalid(format!(
                    "unknown composite filter '{other}' (use \"and\" or \"or\")"
                ))),
            }
        }
        _ => Err(invalid(
            "a filter is [field, operator, value], {\"and\": [...]} or {\"or\": [...]}",
        )),
    }
}

fn parse_order_by(json: Option<&Json>) -> Result<Vec<(FieldPath, Direction)>, DocsError> {
    let Some(json) = json.filter(|j| !j.is_null()) else {
        return Ok(Vec::new());
    };
    let items = json
        .as_array()
        .ok_or_else(|| invalid("\"orderBy\" must be an array of [field, direction]"))?;
    let mut order: Vec<(FieldPath, Direction)> = Vec::new();
    for item in items {
        let (field, direction) = match item {
            Json::String(field) => (field.as_str(), "asc"),
            Json::Array(pair) => match pair.as_slice() {
                [Json::String(field)] => (field.as_str(), "asc"),
                [Json::String(field), Json::String(direction)] => {
                    (field.as_str(), direction.as_str())
                }
                _ => return Err(invalid("each orderBy entry is [field, \"asc\"|\"desc\"]")),
            },
            _ => return Err(invalid("each orderBy entry is [field, \"asc\"|\"desc\"]")),
        };
        let field = FieldPath::parse(field)?;
        let direction = match direction {
            "asc" => Direction::Asc,
            "desc" => Direction::Desc,
            other => {
                return Err(invalid(format!(
                    "order direction '{other}' is not \"asc\" or \"desc\""
                )))
            }
        };
        if order.iter().any(|(f, _)| *f == field) {
            return Err(invalid(format!("orderBy names '{field}' twice")));
        }
        order.push((field, direction));
    }
    Ok(order)
}

fn parse_aggregate(json: &Json) -> Result<Aggregate, DocsError> {
    let object = json
        .as_object()
        .ok_or_else(|| invalid("\"aggregate\" must be an object"))?;
    let mut aggregate = Aggregate::default();
    for (key, value) in object {
        match key.as_str() {
            "count" => {
                aggregate.count = value
                    .as_bool()
                    .ok_or_else(|| invalid("aggregate.count must be a boolean"))?
            }
            "sum" | "avg" => {
                let fields = value
                    .as_array()
                    .ok_or_else(|| {
                        invalid(format!("aggregate.{key} takes an array of field paths"))
                    })?
                    .iter()
                    .map(|f| {
                        f.as_str()
                            .ok_or_else(|| {
                                invalid(format!("aggregate.{key} takes field path strings"))
                            })
                            .and_then(|s| Ok(FieldPath::parse(s)?))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if key == "sum" {
                    aggregate.sum = fields;
                } else {
                    aggregate.avg = fields;
                }
            }
            other => {
                return Err(invalid(format!(
                    "unknown aggregate '{other}' (use count, sum, avg)"
                )))
            }
        }
    }
    if !aggregate.count && aggregate.sum.is_empty() && aggregate.avg.is_empty() {
        return Err(invalid(
            "\"aggregate\" asks for nothing: give count, sum or avg",
        ));
    }
    Ok(aggregate)
}

/// The hash of the query's JSON text without `pageToken`. Streamed into the hasher (no copy
/// of the query, no string): the same value as hashing that text as a `str`, so tokens issued
/// before stay valid.
fn fingerprint(query: &JsonMap<String, Json>) -> u64 {
    use std::hash::Hasher;

    struct WithoutToken<'a>(&'a JsonMap<String, Json>);
    impl serde::Serialize for WithoutToken<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_map(self.0.iter().filter(|(k, _)| k.as_str() != "pageToken"))
        }
    }
    struct HashWriter(std::collections::hash_map::DefaultHasher);
    impl std::io::Write for HashWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.write(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut writer = HashWriter(std::collections::hash_map::DefaultHasher::new());
    // Writing JSON values into a sink that cannot fail cannot fail.
    let _ = serde_json::to_writer(&mut writer, &WithoutToken(query));
    // `str`'s `Hash` ends with this byte.
    writer.0.write_u8(0xff);
    writer.0.finish()
}

impl PageToken {
    pub fn encode(&self, fingerprint: u64) -> String {
        let body = json!({"q": fingerprint.to_string(), "v": self.values.iter().map(Value::to_json).collect::<Vec<_>>()});
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body.to_string())
    }

    fn decode(token: &str, fingerprint: u64) -> Result<PageToken, DocsError> {
        let bad = || invalid("\"pageToken\" is not a token this server issued");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad())?;
        let body: Json = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if body.get("q").and_then(Json::as_str) != Some(fingerprint.to_string().as_str()) {
            return Err(invalid("\"pageToken\" belongs to a different query"));
        }
        let values = body
            .get("v")
            .and_then(Json::as_array)
            .ok_or_else(bad)?
            .iter()
            .map(Value::from_json)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad())?;
        Ok(PageToken { values })
    }
}

/// The value a filter or order sees for a field; `__name__` is the document reference.
pub fn field_value(document: &Document, field: &FieldPath) -> Option<Value> {
    if field.is_document_id() {
        Some(Value::Reference(document.path.clone()))
    } else {
        document.field(field.segments()).cloned()
    }
}

pub fn filter_matches(filter: &Filter, document: &Document) -> bool {
    match filter {
        Filter::And(parts) => parts.iter().all(|p| filter_matches(p, document)),
        Filter::Or(parts) => parts.iter().any(|p| filter_matches(p, document)),
        Filter::Field { field, op, value } => {
            let Some(actual) = field_value(document, field) else {
                return false;
            };
            condition_holds(&actual, *op, value)
        }
    }
}

/// Firestore semantics: ranges only match values of the same type class; `!=` and `not-in`
/// match any other value of an existing field except null.
pub fn condition_holds(actual: &Value, op: Op, value: &Value) -> bool {
    let list = || match value {
        Value::Array(items) => items.as_slice(),
        _ => &[],
    };
    match op {
        Op::Eq => actual == value,
        Op::NotEq => !matches!(actual, Value::Null) && actual != value,
        Op::Lt => actual.same_type_class(value) && actual < value,
        Op::Le => actual.same_type_class(value) && actual <= value,
        Op::Gt => actual.same_type_class(value) && actual > value,
        Op::Ge => actual.same_type_class(value) && actual >= value,
        Op::In => list().contains(actual),
        Op::NotIn => !matches!(actual, Value::Null) && !list().contains(actual),
        Op::ArrayContains => matches!(actual, Value::Array(items) if items.contains(value)),
        Op::ArrayContainsAny => {
            matches!(actual, Value::Array(items) if items.iter().any(|item| list().contains(item)))
        }
    }
}

/// The values of the order fields of `document`, or `None` when one is missing.
pub fn order_key(document: &Document, order: &[(FieldPath, Direction)]) -> Option<Vec<Value>> {
    order
        .iter()
        .map(|(field, _)| field_value(document, field))
        .collect()
}

/// Compares two full order keys under the order's directions.
pub fn compare_keys(a: &[Value], b: &[Value], order: &[(FieldPath, Direction)]) -> Ordering {
    for ((x, y), (_, direction)) in a.iter().zip(b).zip(order) {
        let cmp = match direction {
            Direction::Asc => x.cmp(y),
            Direction::Desc => y.cmp(x),
        };
        if cmp != Ordering::Equal {
            return cmp;
        }
    }
    Ordering::Equal
}

/// Compares a document's order key with cursor values: the values of the requested order
/// fields, then optionally the document (an ID string or a reference) compared with its name.
fn compare_to_cursor(
    key: &[Value],
    cursor: &[Value],
    order: &[(FieldPath, Direction)],
    requested: usize,
    path: &DocPath,
) -> Ordering {
    let name_position = order
        .iter()
        .position(|(f, _)| f.is_document_id())
        .unwrap_or(order.len() - 1);
    for (i, cursor_value) in cursor.iter().enumerate() {
        let position = if i < requested { i } else { name_position };
        let (field, direction) = &order[position];
        let wanted = match cursor_value {
            Value::String(id) if field.is_document_id() => {
                match DocPath::parse(&format!("{}/{id}", path.collection())) {
                    Ok(reference) => Value::Reference(reference),
                    Err(_) => cursor_value.clone(),
                }
            }
            other => other.clone(),
        };
        let actual = &key[position];
        let cmp = match direction {
            Direction::Asc => actual.cmp(&wanted),
            Direction::Desc => wanted.cmp(actual),
        };
        if cmp != Ordering::Equal {
            return cmp;
        }
    }
    Ordering::Equal
}

/// Projects a document's data onto the selected field paths.
pub fn project(document: &Document, select: &[FieldPath]) -> Json {
    let mut out = std::collections::BTreeMap::new();
    for field in select {
        if let Some(value) = document.field(field.segments()) {
            insert_path(&mut out, field.segments(), value.clone());
        }
    }
    Value::Map(out).to_json()
}

fn insert_path(
    map: &mut std::collections::BTreeMap<String, Value>,
    segments: &[String],
    value: Value,
) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    if rest.is_empty() {
        map.insert(first.clone(), value);
        return;
    }
    let child = map
        .entry(first.clone())
        .or_insert_with(|| Value::Map(Default::default()));
    if let Value::Map(inner) = child {
        insert_path(inner, rest, value);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Page tokens carry the fingerprint: it must not change between versions of the server.
    #[test]
    fn the_fingerprint_is_the_hash_of_the_query_text_without_its_token() {
        use std::hash::{Hash, Hasher};
        let query = json!({"from": "posts", "where": ["n", ">", 1], "limit": 2, "pageToken": "t"});
        let mut without = query.as_object().unwrap().clone();
        without.remove("pageToken");
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        Json::Object(without.clone()).to_string().hash(&mut hasher);
        assert_eq!(fingerprint(query.as_object().unwrap()), hasher.finish());
        assert_eq!(
            fingerprint(query.as_object().unwrap()),
            fingerprint(&without)
        );
        without.insert("limit".into(), json!(3));
        assert_ne!(
            fingerprint(query.as_object().unwrap()),
            fingerprint(&without)
        );
    }
}
