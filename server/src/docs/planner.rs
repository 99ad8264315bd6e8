//! The query planner: picks the key ranges to scan (an index, or the documents themselves)
//! and says whether the scan already yields the query's order.
//!
//! Plans only decide speed: the executor re-checks every filter and cursor on each document,
//! and sorts when the scan is not ordered, so any plan gives the correct answer.

use serde_json::{json, Value as Json};

use super::index::{array_contains_prefix, field_prefix, CatalogSnapshot, Direction, IndexState};
use super::query::{Filter, Op, Query, Source};
use crate::model::keys::{
    collection_prefix, encode_bytes, encode_value, encode_value_descending, group_prefix,
    prefix_end, type_class_bounds,
};
use crate::model::{FieldPath, Value};
use crate::store::{KeyRange, Space};
use std::ops::Bound;

#[derive(Debug, Clone)]
pub struct Plan {
    /// `Documents` (values are documents) or `Index` (values are document keys, or the
    /// documents and their keys: `index::unpack_entry`).
    pub space: Space,
    /// Ranges to scan; more than one for `in`-style unions (results deduplicated).
    pub ranges: Vec<KeyRange>,
    pub reverse: bool,
    /// The scan yields documents in the query's full order: stop at the limit, no sort.
    pub ordered: bool,
    /// Every document in the ranges matches every filter: the index proves the whole `where`.
    pub exact: bool,
    /// What a person reads in `explain`.
    pub description: Json,
}

/// Bounds on one field's value from the query's range conditions.
#[derive(Debug, Clone, Default)]
struct ValueBounds {
    lower: Option<(Value, bool)>,
    upper: Option<(Value, bool)>,
    /// A value of the type class every range condition restricts the field to.
    class: Option<Value>,
    /// Conditions of different type classes: nothing can match.
    contradictory: bool,
}

impl ValueBounds {
    fn add(&mut self, op: Op, value: &Value) {
        match &self.class {
            Some(class) if !class.same_type_class(value) => self.contradictory = true,
            _ => self.class = Some(value.clone()),
        }
        let inclusive = matches!(op, Op::Le | Op::Ge);
        if matches!(op, Op::Gt | Op::Ge) {
            let tighter = match &self.lower {
                None => true,
                Some((current, current_inclusive)) => {
                    value > current || (value == current && !inclusive && *current_inclusive)
                }
            };
            if tighter {
                self.lower = Some((value.clone(), inclusive));
            }
        } else {
            let tighter = match &self.upper {
                None => true,
                Some((current, current_inclusive)) => {
                    value < current || (value == current && !inclusive && *current_inclusive)
                }
            };
            if tighter {
                self.upper = Some((value.clone(), inclusive));
            }
        }
    }

    fn is_set(&self) -> bool {
        self.class.is_some()
    }

    /// The key range of entries `prefix + encoded value + id` whose value is within bounds.
    fn key_range(&self, prefix: &[u8], direction: Direction) -> KeyRange {
        let with = |value: &Value| {
            let mut key = prefix.to_vec();
            match direction {
                Direction::Asc => encode_value(&mut key, value),
                Direction::Desc => encode_value_descending(&mut key, value),
            }
            key
        };
        let mut start = Bound::Included(prefix.to_vec());
        let mut end = Bound::Excluded(prefix_end(prefix));
        if self.contradictory {
            return KeyRange::between(
                Bound::Excluded(prefix.to_vec()),
                Bound::Excluded(prefix.to_vec()),
            );
        }
        if let Some(class) = &self.class {
            let (class_start, class_end) = type_class_bounds(class);
            let mut low = prefix.to_vec();
            let mut high = prefix.to_vec();
            match direction {
                Direction::Asc => {
                    low.extend_from_slice(&class_start);
                    high.extend_from_slice(&class_end);
                    start = Bound::Included(low);
                    end = Bound::Excluded(high);
                }
                Direction::Desc => {
                    // Inverted tags: the class occupies (!class_end, !class_start].
                    low.push(!(class_end[0].wrapping_sub(1)));
                    high.push(!class_start[0]);
                    start = Bound::Included(low);
                    end = Bound::Excluded(prefix_end(&high));
                }
            }
        }
        // In key order the "low" value bound is the lower one for ascending columns and the
        // upper one for descending columns.
        let (key_low, key_high) = match direction {
            Direction::Asc => (&self.lower, &self.upper),
            Direction::Desc => (&self.upper, &self.lower),
        };
        if let Some((value, inclusive)) = key_low {
            let key = with(value);
            start = if *inclusive {
                Bound::Included(key)
            } else {
                Bound::Included(prefix_end(&key))
            };
        }
        if let Some((value, inclusive)) = key_high {
            let key = with(value);
            end = if *inclusive {
                Bound::Excluded(prefix_end(&key))
            } else {
                Bound::Excluded(key)
            };
        }
        KeyRange::between(start, end)
    }
}

/// True when every top-level condition is a plain field condition that `covered` accepts
/// (and there is no `or` across fields, which conjuncts leave as a composite).
fn only_conditions(query: &Query, covered: impl Fn(&FieldPath, Op, &Value) -> bool) -> bool {
    query.conjuncts().iter().all(|filter| match filter {
        Filter::Field { field, op, value } => !field.is_document_id() && covered(field, *op, value),
        _ => false,
    })
}

fn equality_conditions(query: &Query) -> Vec<(FieldPath, Value)> {
    query
        .conjuncts()
        .into_iter()
        .filter_map(|f| match f {
            Filter::Field {
                field,
                op: Op::Eq,
                value,
            } if !field.is_document_id() => Some((field.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

fn range_bounds(query: &Query, wanted: &FieldPath) -> ValueBounds {
    let mut bounds = ValueBounds::default();
    for filter in query.conjuncts() {
        if let Filter::Field { field, op, value } = filter {
            if field == wanted && op.is_range() {
                bounds.add(*op, value);
            }
        }
    }
    bounds
}

/// The order the scan must produce once fields fixed by equality are left out; always ends
/// with `__name__`.
fn required_order(query: &Query, equalities: &[(FieldPath, Value)]) -> Vec<(FieldPath, Direction)> {
    query
        .effective_order()
        .into_iter()
        .filter(|(field, _)| !equalities.iter().any(|(f, _)| f == field))
        .collect()
}

/// True when the only order left is by document name; returns the scan direction.
fn name_only(required: &[(FieldPath, Direction)]) -> Option<bool> {
    match required {
        [(field, direction)] if field.is_document_id() => Some(*direction == Direction::Desc),
        _ => None,
    }
}

pub fn plan(query: &Query, catalog: &CatalogSnapshot) -> Plan {
    let equalities = equality_conditions(query);
    let required = required_order(query, &equalities);
    let collection = match &query.source {
        Source::Group {
            collection_id,
            parent,
        } => {
            let mut prefix = group_prefix(collection_id);
            if let Some(parent) = parent {
                for segment in parent.segments() {
                    encode_bytes(&mut prefix, segment.as_bytes());
                }
            }
            let ordering = name_only(&required);
            return Plan {
                space: Space::Documents,
                ranges: vec![KeyRange::prefix(&prefix)],
                reverse: ordering.unwrap_or(false),
                ordered: ordering.is_some(),
                exact: only_conditions(query, |_, _, _| false),
                description: json!({"scan": "collectionGroup", "collectionId": collection_id}),
            };
        }
        Source::Collection(collection) => collection,
    };

    // 1. A ready composite index whose leading fields are fixed by equality and whose
    //    remaining fields are exactly the required order.
    let mut best: Option<(usize, Plan)> = None;
    for index in catalog
        .for_collection(collection.id())
        .filter(|ix| ix.state == IndexState::Ready)
    {
        let fields = index.field_paths();
        let fixed = fields
            .iter()
            .take_while(|f| equalities.iter().any(|(e, _)| e == *f))
            .count();
        let rest: Vec<(FieldPath, Direction)> = fields[fixed..]
            .iter()
            .cloned()
            .zip(index.fields[fixed..].iter().map(|(_, d)| *d))
            .collect();
        let (wanted_fields, name) = required.split_at(required.len().saturating_sub(1));
        let same = rest.len() == wanted_fields.len()
            && rest
                .iter()
                .zip(wanted_fields)
                .all(|((a, da), (b, db))| a == b && da == db)
            && name.first().map(|(_, d)| *d) == Some(index.id_direction());
        let flipped = rest.len() == wanted_fields.len()
            && rest
                .iter()
                .zip(wanted_fields)
                .all(|((a, da), (b, db))| a == b && da.reversed() == *db)
            && name.first().map(|(_, d)| d.reversed()) == Some(index.id_direction());
        let ordered = same || flipped;
        if !ordered && fixed == 0 {
            continue;
        }
        let mut prefix = index.prefix(collection);
        for (field, direction) in fields[..fixed]
            .iter()
            .zip(index.fields.iter().map(|(_, d)| *d))
        {
            let value = equalities
                .iter()
                .find(|(f, _)| f == field)
                .map(|(_, v)| v.clone())
                .unwrap_or(Value::Null);
            match direction {
                Direction::Asc => encode_value(&mut prefix, &value),
                Direction::Desc => encode_value_descending(&mut prefix, &value),
            }
        }
        let range = match rest.first() {
            Some((field, direction)) => range_bounds(query, field).key_range(&prefix, *direction),
            None => KeyRange::prefix(&prefix),
        };
        let fixed_values: Vec<(&FieldPath, &Value)> = fields[..fixed]
            .iter()
            .filter_map(|f| equalities.iter().find(|(e, _)| e == f).map(|(_, v)| (f, v)))
            .collect();
        let range_field = rest.first().map(|(f, _)| f);
        let exact = only_conditions(query, |field, op, value| {
            (op == Op::Eq && fixed_values.iter().any(|(f, v)| *f == field && *v == value))
                || (op.is_range() && range_field == Some(field))
        });
        let score = fixed * 2 + usize::from(ordered);
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((
                score,
                Plan {
                    space: Space::Index,
                    ranges: vec![range],
                    reverse: flipped && !same,
                    ordered,
                    exact,
                    description: json!({
                        "scan": "compositeIndex",
                        "indexId": index.id,
                        "fields": index.fields,
                        "equalityFields": fixed,
                        "covering": index.covering,
                    }),
                },
            ));
        }
    }
    if let Some((_, plan)) = best.take_if(|(_, p)| p.ordered) {
        return plan;
    }

    // 2. A single-field index on an equality field.
    if let Some((field, value)) = equalities.first() {
        let mut prefix = field_prefix(collection, field);
        encode_value(&mut prefix, value);
        let ordering = name_only(&required);
        return Plan {
            space: Space::Index,
            ranges: vec![KeyRange::prefix(&prefix)],
            reverse: ordering.unwrap_or(false),
            ordered: ordering.is_some(),
            exact: only_conditions(query, |f, op, v| op == Op::Eq && f == field && v == value),
            description: json!({"scan": "fieldIndex", "field": field.to_string(), "condition": "=="}),
        };
    }
    if let Some((_, plan)) = best {
        return plan;
    }

    // 3. array-contains, `in` and array-contains-any through the value indexes.
    for filter in query.conjuncts() {
        let Filter::Field { field, op, value } = filter else {
            continue;
        };
        if field.is_document_id() {
            continue;
        }
        let (prefix, values): (Vec<u8>, Vec<Value>) = match (op, value) {
            (Op::ArrayContains, v) => (array_contains_prefix(collection, field), vec![v.clone()]),
            (Op::ArrayContainsAny, Value::Array(items)) => {
                (array_contains_prefix(collection, field), items.clone())
            }
            (Op::In, Value::Array(items)) => (field_prefix(collection, field), items.clone()),
            _ => continue,
        };
        let ranges: Vec<KeyRange> = values
            .iter()
            .map(|v| {
                let mut key = prefix.clone();
                encode_value(&mut key, v);
                KeyRange::prefix(&key)
            })
            .collect();
        let ordering = if ranges.len() == 1 {
            name_only(&required)
        } else {
            None
        };
        return Plan {
            space: Space::Index,
            ranges,
            reverse: ordering.unwrap_or(false),
            ordered: ordering.is_some(),
            exact: query.conjuncts().len() == 1,
            description: json!({"scan": "fieldIndex", "field": field.to_string(), "condition": op.as_str()}),
        };
    }

    // 4. The index of the first order field: ordered when it is the only field to order by.
    if let Some((field, direction)) = required.first().filter(|(f, _)| !f.is_document_id()) {
        let ordered = required.len() == 2 && required[1].1 == *direction;
        let bounds = range_bounds(query, field);
        if ordered || bounds.is_set() {
            return Plan {
                space: Space::Index,
                ranges: vec![bounds.key_range(&field_prefix(collection, field), Direction::Asc)],
                reverse: *direction == Direction::Desc,
                ordered,
                exact: only_conditions(query, |f, op, _| op.is_range() && f == field),
                description: json!({"scan": "fieldIndex", "field": field.to_string(), "condition": "order/range"}),
            };
        }
    }

    // 5. Every document of the collection, in name order.
    let ordering = name_only(&required);
    Plan {
        space: Space::Documents,
        ranges: vec![KeyRange::prefix(&collection_prefix(collection))],
        reverse: ordering.unwrap_or(false),
        ordered: ordering.is_some(),
        exact: only_conditions(query, |_, _, _| false),
        description: json!({"scan": "collection", "collection": collection.as_str()}),
    }
}
