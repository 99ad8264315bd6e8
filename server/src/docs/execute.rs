//! Runs a planned query against one consistent read view: scans, fetches documents in
//! batches, re-checks filters and cursors, sorts when needed, pages and aggregates.

use std::collections::HashSet;

use serde_json::{json, Map as JsonMap, Value as Json};

use super::error::DocsError;
use super::index::{unpack_entry, Direction};
use super::planner::Plan;
use super::query::{compare_keys, order_key, project, PageToken, Query};
use crate::model::document::write_response;
use crate::model::keys::document_path_from_key;
use crate::model::{DocPath, Document, FieldPath, Value};
use crate::store::{ReadView, Space, StoreError};

/// Keys read per scan step: large enough to amortise a read, small enough to stop early.
const SCAN_CHUNK: usize = 256;
/// The smallest scan step, so a filter that drops a few candidates does not cost many steps.
const MIN_SCAN_CHUNK: usize = 8;

/// The answer to a query: a page of documents, or aggregates.
#[derive(Debug)]
pub enum QueryAnswer {
    /// The page as its whole JSON answer, `{"documents":[{"path":…},…],"nextPageToken"?:…}`,
    /// written into one buffer (no copy on the way out).
    Documents {
        body: Vec<u8>,
    },
    Aggregates(Json),
}

/// A matching document: always its path and stored bytes; decoded unless the plan made that
/// unnecessary.
struct Found {
    path: DocPath,
    bytes: Vec<u8>,
    document: Option<Document>,
}

impl Found {
    fn decoded(&self) -> Result<Document, DocsError> {
        match &self.document {
            Some(document) => Ok(document.clone()),
            None => Ok(Document::decode_from_store(self.path.clone(), &self.bytes)?),
        }
    }
}

/// Collects matching documents, stopping early once `enough` are found if the scan is ordered.
/// Without `decode` (only for exact, ordered plans) documents are taken as the index proves them.
fn collect(
    view: &dyn ReadView,
    query: &Query,
    plan: &Plan,
    enough: Option<usize>,
    decode: bool,
) -> Result<Vec<Found>, DocsError> {
    let order = query.effective_order();
    let mut matched: Vec<Found> = Vec::new();
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
                    let mut targets: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
                    for (entry, value) in entries {
                        let (doc_key, stored) = unpack_entry(value).ok_or_else(|| {
                            DocsError::Store(StoreError::Engine(format!(
                                "malformed index entry {entry:02x?}"
                            )))
                        })?;
                        if !dedupe || seen.insert(doc_key.clone()) {
                            targets.push((doc_key, stored));
                        }
                    }
                    // Documents the entries do not hold are looked up, all at once.
                    let missing: Vec<Vec<u8>> = targets
                        .iter()
                        .filter(|(_, stored)| stored.is_none())
                        .map(|(k, _)| k.clone())
                        .collect();
                    // A covering scan usually misses none: no table to open for nothing.
                    let mut looked_up = if missing.is_empty() {
                        Vec::new().into_iter()
                    } else {
                        view.get_many(Space::Documents, &missing)?.into_iter()
                    };
                    targets
                        .into_iter()
                        .filter_map(|(k, stored)| match stored {
                            Some(bytes) => Some((k, bytes)),
                            None => looked_up.next().flatten().map(|v| (k, v)),
                        })
                        .collect()
                }
            };
            for (key, bytes) in documents {
                let Some(path) = document_path_from_key(&key) else {
                    continue;
                };
                // A collection's key range also holds deeper collections with the same ID.
                if !query.reads_from(&path) {
                    continue;
                }
                if decode {
                    let document = Document::decode_from_store(path.clone(), &bytes)?;
                    if !query.matches(&document, &order) {
                        continue;
                    }
                    matched.push(Found {
                        path,
                        bytes,
                        document: Some(document),
                    });
                } else {
                    matched.push(Found {
                        path,
                        bytes,
                        document: None,
                    });
                }
                if plan.ordered && enough.is_some_and(|n| matched.len() >= n) {
                    break 'ranges;
                }
            }
            if exhausted {
                break;
            }
        }
    }
    if !plan.ordered {
        let key = |f: &Found| f.document.as_ref().and_then(|d| order_key(d, &order));
        matched.sort_by(|a, b| match (key(a), key(b)) {
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
    // When the scanned range is exactly the answer, in order, documents need no decoding:
    // their stored bytes go to the client as they are.
    let raw = plan.exact
        && plan.ordered
        && query.start.is_none()
        && query.end.is_none()
        && query.page_token.is_none()
        && query.select.is_none();
    if let Some(aggregate) = &query.aggregate {
        let count_only = aggregate.sum.is_empty() && aggregate.avg.is_empty();
        let enough = query.limit.map(|l| l + query.offset);
        let found = collect(view, query, plan, enough, !(raw && count_only))?;
        let window = window(&found, query.offset, query.limit.unwrap_or(usize::MAX));
        let mut out = JsonMap::new();
        if aggregate.count {
            out.insert("count".into(), json!(window.len()));
        }
        let documents: Vec<&Document> = window.iter().filter_map(|f| f.document.as_ref()).collect();
        for field in &aggregate.sum {
            out.insert(format!("sum_{field}"), sum(&documents, field).to_json());
        }
        for field in &aggregate.avg {
            out.insert(format!("avg_{field}"), average(&documents, field));
        }
        return Ok(QueryAnswer::Aggregates(Json::Object(out)));
    }

    let limit = query.limit.unwrap_or(page_size);
    // One more than needed tells whether another page exists.
    let found = collect(view, query, plan, Some(query.offset + limit + 1), !raw)?;
    let page = window(&found, query.offset, limit);
    let more = found.len() > query.offset + limit;
    let order = query.effective_order();
    let next_page_token = match page.last() {
        Some(last) if more && limit > 0 => {
            let last = last.decoded()?;
            order_key(&last, &order).map(|values| PageToken { values }.encode(query.fingerprint))
        }
        _ => None,
    };
    let size: usize = page
        .iter()
        .map(|f| f.bytes.len() + 2 * f.path.as_str().len() + 128)
        .sum();
    let mut documents = Vec::with_capacity(size + 128);
    documents.extend_from_slice(b"{\"documents\":[");
    for (i, found) in page.iter().enumerate() {
        if i > 0 {
            documents.push(b',');
        }
        match (&found.document, &query.select) {
            (Some(d), Some(fields)) => {
                serde_json::to_writer(&mut documents, &d.to_json_with_data(project(d, fields)))
            }
            (Some(d), None) => serde_json::to_writer(&mut documents, &d.to_json()),
            (None, _) => {
                write_response(&mut documents, &found.path, &found.bytes);
                Ok(())
            }
        }
        .map_err(|err| DocsError::Task(err.to_string()))?;
    }
    documents.push(b']');
    if let Some(token) = next_page_token {
        documents.extend_from_slice(b",\"nextPageToken\":");
        serde_json::to_writer(&mut documents, &token)
            .map_err(|err| DocsError::Task(err.to_string()))?;
    }
    documents.push(b'}');
    Ok(QueryAnswer::Documents { body: documents })
}

/// Every matching document, decoded and in query order, at most `enough` (offset not applied):
/// what a realtime view starts from.
pub fn matching(
    view: &dyn ReadView,
    query: &Query,
    plan: &Plan,
    enough: Option<usize>,
) -> Result<Vec<Document>, DocsError> {
    collect(view, query, plan, enough, true)?
        .iter()
        .map(Found::decoded)
        .collect()
}

fn window<T>(documents: &[T], offset: usize, limit: usize) -> &[T] {
    let start = offset.min(documents.len());
    let end = start.saturating_add(limit).min(documents.len());
    &documents[start..end]
}

/// Sum of the numeric values of `field`: an int while every value is an int and it fits.
fn sum(documents: &[&Document], field: &FieldPath) -> Value {
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

fn average(documents: &[&Document], field: &FieldPath) -> Json {
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
        "exact": plan.exact,
        "sortInMemory": !plan.ordered,
        "order": order,
    })
}
