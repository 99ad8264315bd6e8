//! Runs a planned query against one consistent read view: scans, fetches documents in
//! batches, re-checks filters and cursors, sorts when needed, pages and aggregates.

use std::collections::HashSet;

use serde_json::{json, Map as JsonMap, Value as Json};

use super::error::DocsError;
use super::index::Direction;
use super::planner::Plan;
use super::query::{compare_keys, order_key, project, PageToken, Query};
use crate::model::keys::document_path_from_key;
use crate::model::{Document, FieldPath, Value};
use crate::store::{ReadView, Space};

/// Keys read per scan step: large enough to amortise a read, small enough to stop early.
const SCAN_CHUNK: usize = 256;
/// The smallest scan step, so a filter that drops a few candidates does not cost many steps.
const MIN_SCAN_CHUNK: usize = 8;

/// The answer to a query: a page of documents, or aggregates.
#[derive(Debug)]
pub enum QueryAnswer {
    Documents {
        documents: Vec<Json>,
        next_page_token: Option<String>,
    },
    Aggregates(Json),
}

/// Collects matching documents, stopping early once `enough` are found if the scan is ordered.
fn collect(
    view: &dyn ReadView,
    query: &Query,
    plan: &Plan,
    enough: Option<usize>,
) -> Result<Vec<Document>, DocsError> {
    let order = query.effective_order();
    let mut matched = Vec::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let dedupe = plan.ranges.len() > 1;
    'ranges: for range in &plan.ranges {
        let mut range = range.clone();
        loop {
            // An ordered scan that needs few more documents reads little more than that.
            let chunk = match enough {
                Some(n) if plan.ordered => n
                    .saturating_sub(matched.len())
                    .clamp(MIN_SCAN_CHUNK, SCAN_CHUNK),
                _ => SCAN_CHUNK,
            };
            let entries = view.scan(plan.space, &range, chunk, plan.reverse)?;
            let Some((last_key, _)) = entries.last() else {
                break;
            };
            range = if plan.reverse {
                range.before(last_key)
            } else {
                range.after(last_key)
            };
            let exhausted = entries.len() < chunk;
            let documents: Vec<(Vec<u8>, Vec<u8>)> = match plan.space {
                Space::Documents => entries,
                _ => {
                    let keys: Vec<Vec<u8>> = entries
                        .into_iter()
                        .map(|(_, doc_key)| doc_key)
                        .filter(|k| !dedupe || seen.insert(k.clone()))
                        .collect();
                    let values = view.get_many(Space::Documents, &keys)?;
                    keys.into_iter()
                        .zip(values)
                        .filter_map(|(k, v)| v.map(|v| (k, v)))
                        .collect()
                }
            };
            for (key, bytes) in documents {
                let Some(path) = document_path_from_key(&key) else {
                    continue;
                };
                let document = Document::decode_from_store(path, &bytes)?;
                if query.matches(&document, &order) {
                    matched.push(document);
                    if plan.ordered && enough.is_some_and(|n| matched.len() >= n) {
                        break 'ranges;
                    }
                }
            }
            if exhausted {
                break;
            }
        }
    }
    if !plan.ordered {
        matched.sort_by(|a, b| match (order_key(a, &order), order_key(b, &order)) {
            (Some(x), Some(y)) => compare_keys(&x, &y, &order),
            _ => std::cmp::Ordering::Equal,
        });
    }
    Ok(matched)
}

/// Runs the query. `page_size` applies when the query gives no limit.
pub fn run(
    view: &dyn ReadView,
    query: &Query,
    plan: &Plan,
    page_size: usize,
) -> Result<QueryAnswer, DocsError> {
    if let Some(aggregate) = &query.aggregate {
        let enough = query.limit.map(|l| l + query.offset);
        let documents = collect(view, query, plan, enough)?;
        let window = window(&documents, query.offset, query.limit.unwrap_or(usize::MAX));
        let mut out = JsonMap::new();
        if aggregate.count {
            out.insert("count".into(), json!(window.len()));
        }
        for field in &aggregate.sum {
            out.insert(format!("sum_{field}"), sum(window, field).to_json());
        }
        for field in &aggregate.avg {
            out.insert(format!("avg_{field}"), average(window, field));
        }
        return Ok(QueryAnswer::Aggregates(Json::Object(out)));
    }

    let (limit, paged) = match query.limit {
        Some(limit) => (limit, true),
        None => (page_size, true),
    };
    // One more than needed tells whether another page exists.
    let documents = collect(view, query, plan, Some(query.offset + limit + 1))?;
    let page = window(&documents, query.offset, limit);
    let more = documents.len() > query.offset + limit;
    let order = query.effective_order();
    let next_page_token = match page.last() {
        Some(last) if paged && more && limit > 0 => {
            order_key(last, &order).map(|values| PageToken { values }.encode(query.fingerprint))
        }
        _ => None,
    };
    let documents = page
        .iter()
        .map(|d| match &query.select {
            Some(fields) => d.to_json_with_data(project(d, fields)),
            None => d.to_json(),
        })
        .collect();
    Ok(QueryAnswer::Documents {
        documents,
        next_page_token,
    })
}

fn window(documents: &[Document], offset: usize, limit: usize) -> &[Document] {
    let start = offset.min(documents.len());
    let end = start.saturating_add(limit).min(documents.len());
    &documents[start..end]
}

/// Sum of the numeric values of `field`: an int while every value is an int and it fits.
fn sum(documents: &[Document], field: &FieldPath) -> Value {
    let mut int_sum: Option<i64> = Some(0);
    let mut double_sum = 0.0f64;
    for document in documents {
        match document.field(field.segments()) {
            Some(Value::Int(i)) => {
                int_sum = int_sum.and_then(|s| s.checked_add(*i));
                double_sum += *i as f64;
            }
            Some(Value::Double(d)) => {
                int_sum = None;
                double_sum += d;
            }
            _ => {}
        }
    }
    match int_sum {
        Some(i) => Value::Int(i),
        None => Value::Double(double_sum),
    }
}

fn average(documents: &[Document], field: &FieldPath) -> Json {
    let values: Vec<f64> = documents
        .iter()
        .filter_map(|d| match d.field(field.segments()) {
            Some(Value::Int(i)) => Some(*i as f64),
            Some(Value::Double(x)) => Some(*x),
            _ => None,
        })
        .collect();
    if values.is_empty() {
        Json::Null
    } else {
        json!(values.iter().sum::<f64>() / values.len() as f64)
    }
}

/// The `explain` answer: the plan and the order the query is served in.
pub fn explain(query: &Query, plan: &Plan) -> Json {
    let order: Vec<Json> = query
        .effective_order()
        .iter()
        .map(|(f, d)| {
            json!([
                f.to_string(),
                if *d == Direction::Asc { "asc" } else { "desc" }
            ])
        })
        .collect();
    json!({
        "plan": plan.description,
        "ranges": plan.ranges.len(),
        "reverse": plan.reverse,
        "ordered": plan.ordered,
        "sortInMemory": !plan.ordered,
        "order": order,
    })
}
