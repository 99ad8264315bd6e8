//! The allow/deny case runner behind `hearth rules test FILE.rules CASES.json`.
//!
//! The case file format is documented in `rules/README.md`. In short: stored `documents`, granted
//! `roles`, and `cases`, each a request (`auth`, `method`, `path`, `data`/`patch`, `query`, `time`)
//! with the expected answer `allow` or `deny`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::value::{Timestamp, Value};
use crate::{
    Auth, ConstraintOp, Decision, Document, DocumentReader, FieldConstraint, ListRequest, Method,
    Request, Ruleset,
};

/// The outcome of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    pub expected_allow: bool,
    pub decision: Decision,
    pub passed: bool,
}

/// The outcome of a case file. `Display` prints each failing case, then `N passed, M failed`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestReport {
    pub results: Vec<CaseResult>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    pub fn all_passed(&self) -> bool {
        self.failed() == 0
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for result in self.results.iter().filter(|r| !r.passed) {
            let expected = if result.expected_allow {
                "allow"
            } else {
                "deny"
            };
            let got = if result.decision.allowed {
                "allow"
            } else {
                "deny"
            };
            writeln!(f, "FAIL {}: expected {expected}, got {got}", result.name)?;
            writeln!(f, "    {}", result.decision.reason)?;
        }
        write!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    documents: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    roles: Vec<RoleGrant>,
    /// Default `request.time` for every case (RFC 3339); the current time when absent.
    #[serde(default)]
    time: Option<String>,
    cases: Vec<Case>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RoleGrant {
    uid: String,
    role: String,
    #[serde(default)]
    domain: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    auth: Option<CaseAuth>,
    method: String,
    path: String,
    /// `request.resource.data`: the whole document after the write.
    #[serde(default)]
    data: Option<serde_json::Value>,
    /// Top-level fields merged into the stored document to make `request.resource.data`.
    #[serde(default)]
    patch: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    query: Option<CaseQuery>,
    #[serde(default)]
    time: Option<String>,
    /// Other writes of the same batch, visible to `getAfter`: path → data, or null for a delete.
    #[serde(default)]
    after: BTreeMap<String, serde_json::Value>,
    expect: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseAuth {
    uid: String,
    #[serde(default)]
    token: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CaseQuery {
    /// `[field, op, value]`, a list of them (all must hold), or `{"and": [...]}` / `{"or": [...]}`.
    #[serde(default, rename = "where")]
    where_clause: Option<serde_json::Value>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    order_by: Vec<(String, String)>,
    #[serde(default)]
    collection_group: bool,
}

struct CaseReader<'a> {
    before: &'a BTreeMap<String, Value>,
    after: BTreeMap<String, Value>,
    roles: &'a [RoleGrant],
}

impl DocumentReader for CaseReader<'_> {
    fn get(&self, path: &str) -> Result<Option<Document>, String> {
        Ok(self.before.get(path).map(|data| Document {
            path: path.to_string(),
            data: data.clone(),
        }))
    }

    fn get_after(&self, path: &str) -> Result<Option<Document>, String> {
        Ok(self.after.get(path).map(|data| Document {
            path: path.to_string(),
            data: data.clone(),
        }))
    }

    fn has_role(&self, uid: &str, role: &str, domain: Option<&str>) -> bool {
        self.roles.iter().any(|grant| {
            grant.uid == uid && grant.role == role && grant.domain.as_deref() == domain
        })
    }
}

/// Runs every case of a case file against a ruleset. Fails only if the file itself is invalid.
pub fn run_cases(ruleset: &Ruleset, cases_json: &str) -> Result<TestReport, String> {
    let file: CaseFile =
        serde_json::from_str(cases_json).map_err(|error| format!("invalid case file: {error}"))?;
    let mut documents = BTreeMap::new();
    for (path, data) in &file.documents {
        let value =
            Value::from_wire_json(data).map_err(|error| format!("document {path}: {error}"))?;
        documents.insert(path.trim_matches('/').to_string(), value);
    }
    let default_time = match &file.time {
        Some(text) => parse_time(text)?,
        None => Timestamp::now(),
    };
    let mut report = TestReport::default();
    for case in &file.cases {
        let decision = run_case(ruleset, case, &documents, &file.roles, default_time)
            .map_err(|error| format!("case {:?}: {error}", case.name))?;
        let expected_allow = match case.expect.as_str() {
            "allow" => true,
            "deny" => false,
            other => {
                return Err(format!(
                    "case {:?}: expect must be \"allow\" or \"deny\", not {other:?}",
                    case.name
                ))
            }
        };
        report.results.push(CaseResult {
            name: case.name.clone(),
            expected_allow,
            passed: decision.allowed == expected_allow,
            decision,
        });
    }
    Ok(report)
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    Timestamp::from_rfc3339(text)
        .ok_or_else(|| format!("invalid time {text:?} (expected RFC 3339)"))
}

fn run_case(
    ruleset: &Ruleset,
    case: &Case,
    documents: &BTreeMap<String, Value>,
    roles: &[RoleGrant],
    default_time: Timestamp,
) -> Result<Decision, String> {
    let method = Method::parse(&case.method).ok_or_else(|| {
        format!(
            "unknown method {:?} (get, list, create, update, delete)",
            case.method
        )
    })?;
    let time = match &case.time {
        Some(text) => parse_time(text)?,
        None => default_time,
    };
    let auth = match &case.auth {
        None => None,
        Some(auth) => Some(Auth {
            uid: auth.uid.clone(),
            token: Value::from_wire_json(&serde_json::Value::Object(auth.token.clone()))?,
        }),
    };
    let path = case.path.trim_matches('/').to_string();
    let mut after = documents.clone();
    for (other, data) in &case.after {
        let other = other.trim_matches('/').to_string();
        match data {
            serde_json::Value::Null => {
                after.remove(&other);
            }
            data => {
                after.insert(other, Value::from_wire_json(data)?);
            }
        }
    }

    if method == Method::List {
        let query = case.query.as_ref();
        let disjuncts = match query.and_then(|q| q.where_clause.as_ref()) {
            Some(clause) => disjunctive_normal_form(clause)?,
            None => Vec::new(),
        };
        let mut order_by = Vec::new();
        for (field, direction) in query.map(|q| q.order_by.as_slice()).unwrap_or_default() {
            let descending = match direction.as_str() {
                "asc" | "ASC" => false,
                "desc" | "DESC" => true,
                other => {
                    return Err(format!(
                        "orderBy direction must be asc or desc, not {other:?}"
                    ))
                }
            };
            order_by.push((field.clone(), descending));
        }
        let request = ListRequest {
            collection_path: path,
            all_descendants: query.is_some_and(|q| q.collection_group),
            auth,
            time,
            limit: query.and_then(|q| q.limit),
            offset: query.and_then(|q| q.offset),
            order_by,
            disjuncts,
        };
        let reader = CaseReader {
            before: documents,
            after,
            roles,
        };
        return Ok(ruleset.evaluate_list(&request, &reader));
    }

    let stored = documents.get(&path).cloned();
    let request_data = match (&case.data, &case.patch) {
        (Some(_), Some(_)) => return Err("give either data or patch, not both".into()),
        (Some(data), None) => Some(Value::from_wire_json(data)?),
        (None, Some(patch)) => {
            let mut merged = match &stored {
                Some(Value::Map(map)) => map.clone(),
                _ => BTreeMap::new(),
            };
            for (key, value) in patch {
                merged.insert(key.clone(), Value::from_wire_json(value)?);
            }
            Some(Value::Map(merged))
        }
        (None, None) => match method {
            Method::Create => Some(Value::Map(BTreeMap::new())),
            Method::Update => stored.clone(),
            _ => None,
        },
    };
    match method {
        Method::Create | Method::Update => {
            if let Some(data) = &request_data {
                if !case.after.contains_key(&path) {
                    after.insert(path.clone(), data.clone());
                }
            }
        }
        Method::Delete if !case.after.contains_key(&path) => {
            after.remove(&path);
        }
        _ => {}
    }
    let request = Request {
        method,
        path: path.clone(),
        auth,
        time,
        resource: stored.map(|data| Document {
            path: path.clone(),
            data,
        }),
        request_resource: match method {
            Method::Create | Method::Update => request_data.map(|data| Document {
                path: path.clone(),
                data,
            }),
            _ => None,
        },
    };
    let reader = CaseReader {
        before: documents,
        after,
        roles,
    };
    Ok(ruleset.evaluate(&request, &reader))
}

/// Most disjuncts a where clause may expand to.
const MAX_DISJUNCTS: usize = 256;

/// Converts a where clause (`[field, op, value]`, a list meaning AND, or `{"and"|"or": [...]}`)
/// into disjunctive normal form. Exposed so the server can share the conversion.
pub fn disjunctive_normal_form(
    clause: &serde_json::Value,
) -> Result<Vec<Vec<FieldConstraint>>, String> {
    dnf_at_depth(clause, 0)
}

fn dnf_at_depth(
    clause: &serde_json::Value,
    depth: usize,
) -> Result<Vec<Vec<FieldConstraint>>, String> {
    if depth > 16 {
        return Err("where clause nested too deeply".into());
    }
    match clause {
        serde_json::Value::Array(items) if is_condition(items) => Ok(vec![vec![condition(items)?]]),
        serde_json::Value::Array(items) => and_all(items, depth),
        serde_json::Value::Object(map) if map.len() == 1 => {
            if let Some(serde_json::Value::Array(items)) = map.get("and") {
                return and_all(items, depth);
            }
            if let Some(serde_json::Value::Array(items)) = map.get("or") {
                let mut out = Vec::new();
                for item in items {
                    out.extend(dnf_at_depth(item, depth + 1)?);
                    if out.len() > MAX_DISJUNCTS {
                        return Err("where clause expands to too many disjuncts".into());
                    }
                }
                return Ok(out);
            }
            Err(format!("invalid where clause {clause}"))
        }
        other => Err(format!("invalid where clause {other}")),
    }
}

fn and_all(items: &[serde_json::Value], depth: usize) -> Result<Vec<Vec<FieldConstraint>>, String> {
    let mut out: Vec<Vec<FieldConstraint>> = vec![Vec::new()];
    for item in items {
        let alternatives = dnf_at_depth(item, depth + 1)?;
        let mut next = Vec::new();
        for existing in &out {
            for alternative in &alternatives {
                let mut combined = existing.clone();
                combined.extend(alternative.iter().cloned());
                next.push(combined);
            }
        }
        if next.len() > MAX_DISJUNCTS {
            return Err("where clause expands to too many disjuncts".into());
        }
        out = next;
    }
    Ok(out)
}

fn is_condition(items: &[serde_json::Value]) -> bool {
    items.len() == 3 && items[0].is_string() && items[1].is_string()
}

fn condition(items: &[serde_json::Value]) -> Result<FieldConstraint, String> {
    let field = items[0].as_str().unwrap_or_default();
    let op = items[1].as_str().unwrap_or_default();
    let value = Value::from_wire_json(&items[2])?;
    let list = |value: Value| match value {
        Value::List(items) => Ok(items),
        other => Err(format!("`{op}` needs a list, not {}", other.type_name())),
    };
    let op = match op {
        "==" => ConstraintOp::Eq(value),
        "!=" => ConstraintOp::NotEq(value),
        "<" => ConstraintOp::Lt(value),
        "<=" => ConstraintOp::Le(value),
        ">" => ConstraintOp::Gt(value),
        ">=" => ConstraintOp::Ge(value),
        "in" => ConstraintOp::In(list(value)?),
        "not-in" => ConstraintOp::NotIn(list(value)?),
        "array-contains" => ConstraintOp::ArrayContains(value),
        "array-contains-any" => ConstraintOp::ArrayContainsAny(list(value)?),
        other => return Err(format!("unknown operator {other:?}")),
    };
    Ok(FieldConstraint {
        field: split_field_path(field),
        op,
    })
}

/// Splits `a.b` into segments; back-quoted segments (`` `first.name` ``) keep their dots.
pub fn split_field_path(path: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' => quoted = !quoted,
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '.' if !quoted => segments.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    segments.push(current);
    segments
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn where_clauses_become_disjunctive_normal_form() {
        let clause = serde_json::json!({"and": [["a", "==", 1], {"or": [["b", ">", 2], ["c", "array-contains", "x"]]}]});
        let dnf = disjunctive_normal_form(&clause).unwrap();
        assert_eq!(dnf.len(), 2);
        assert_eq!(dnf[0].len(), 2);
        assert_eq!(dnf[0][1].op, ConstraintOp::Gt(Value::Int(2)));
        assert_eq!(dnf[1][1].field, vec!["c".to_string()]);
        let bare = disjunctive_normal_form(&serde_json::json!(["a.b", "in", [1, 2]])).unwrap();
        assert_eq!(bare[0][0].field, vec!["a".to_string(), "b".to_string()]);
        assert!(disjunctive_normal_form(&serde_json::json!(["a", "~", 1])).is_err());
        assert!(disjunctive_normal_form(&serde_json::json!(["a", "in", 1])).is_err());
    }

    #[test]
    fn field_paths_split_on_dots_outside_back_quotes() {
        assert_eq!(split_field_path("a.b"), vec!["a", "b"]);
        assert_eq!(split_field_path("`first.name`.x"), vec!["first.name", "x"]);
    }
}
