//! Who may do what with documents. Every read, write and query of the documents layer takes an
//! `Access`: the named admin bypass (service key), or a client judged by the security rules.
//! Rules run here, inside the read and commit paths, where the stored document and the document
//! after the write (transforms applied) are both known.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use hearth_rules::{Auth, DocumentReader, EvalBudget, ListRequest, Method, Request, Ruleset};
use serde_json::Value as Json;

use super::error::DocsError;
use super::query::{Query, Source};
use crate::model::{DocPath, Document, Timestamp};
use crate::roles::Roles;
use crate::store::ReadView;

/// How a caller reaches documents.
#[derive(Clone)]
pub enum Access {
    /// The service key: security rules do not apply.
    Admin,
    /// A client (signed in or not), judged by the rules loaded when the request arrived;
    /// `hasRole()` asks `roles`.
    Client {
        rules: Option<Arc<Ruleset>>,
        auth: Option<Auth>,
        roles: Arc<Roles>,
    },
}

impl Access {
    /// The bypass, named so it stands out in review.
    pub fn as_admin() -> Access {
        Access::Admin
    }

    /// The `auth` of a hook event: `{uid, token}` of a signed-in client, else null (the
    /// service key and anonymous clients).
    pub fn event_auth(&self) -> Json {
        match self {
            Access::Client {
                auth: Some(auth), ..
            } => serde_json::json!({"uid": auth.uid, "token": auth.token.to_wire_json()}),
            _ => Json::Null,
        }
    }

    fn client(&self) -> Option<(&Ruleset, &Option<Auth>, &Roles)> {
        match self {
            Access::Admin => None,
            Access::Client { rules, auth, roles } => Some((rules.as_deref()?, auth, roles)),
        }
    }

    /// A client when no rules are loaded: denied outright.
    fn without_rules(&self) -> bool {
        matches!(self, Access::Client { rules: None, .. })
    }
}

fn no_rules() -> DocsError {
    DocsError::PermissionDenied(
        "no security rules are loaded, so client access is denied; use the service key".into(),
    )
}

fn denied(reason: &str) -> DocsError {
    tracing::debug!(reason, "rules denied a request");
    DocsError::PermissionDenied("permission denied by the security rules".into())
}

fn decide(decision: hearth_rules::Decision) -> Result<(), DocsError> {
    if decision.allowed {
        Ok(())
    } else {
        Err(denied(&decision.reason))
    }
}

/// The live ruleset, swapped atomically: a request sees one whole ruleset or the next.
#[derive(Default)]
pub struct RulesCatalog {
    current: RwLock<Option<Arc<Ruleset>>>,
}

impl RulesCatalog {
    pub fn current(&self) -> Option<Arc<Ruleset>> {
        self.current.read().ok().and_then(|guard| guard.clone())
    }

    pub fn replace(&self, rules: Option<Arc<Ruleset>>) {
        if let Ok(mut current) = self.current.write() {
            *current = rules;
        }
    }
}

/// Converts a stored document to what rules see.
pub fn rules_document(document: &Document) -> Result<hearth_rules::Document, DocsError> {
    let data = hearth_rules::Value::from_wire_json(&Json::Object(
        crate::model::value::map_to_json(&document.data),
    ))
    .map_err(|err| DocsError::Task(format!("cannot show {} to the rules: {err}", document.path)))?;
    Ok(hearth_rules::Document {
        path: document.path.as_str().to_string(),
        data,
    })
}

/// What rules see of a stored document, straight from its stored bytes (one JSON parse; no
/// detour through the server's own value tree).
pub fn rules_document_from_stored(
    path: &DocPath,
    stored: &[u8],
) -> Result<hearth_rules::Document, DocsError> {
    let corrupt =
        |reason: String| DocsError::Task(format!("cannot show {path} to the rules: {reason}"));
    let data: Json =
        serde_json::from_slice(crate::model::document::StoredHeader::data_bytes(stored))
            .map_err(|e| corrupt(e.to_string()))?;
    let data = hearth_rules::Value::from_wire_json(&data).map_err(corrupt)?;
    Ok(hearth_rules::Document {
        path: path.as_str().to_string(),
        data,
    })
}

fn rules_time(time: Timestamp) -> hearth_rules::Timestamp {
    let micros = time.micros();
    hearth_rules::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as u32,
    }
}

/// `get()`/`exists()` read the snapshot the request reads; `getAfter()` also sees the batch.
struct SnapshotReader<'a> {
    view: &'a dyn ReadView,
    after: Option<&'a HashMap<DocPath, Option<Document>>>,
    roles: &'a Roles,
}

impl SnapshotReader<'_> {
    fn read(&self, path: &str) -> Result<Option<hearth_rules::Document>, String> {
        let path = DocPath::parse(path).map_err(|e| e.message)?;
        let stored = super::read_documents(self.view, std::slice::from_ref(&path))
            .map_err(|e| e.to_string())?;
        stored
            .into_iter()
            .next()
            .flatten()
            .map(|d| rules_document(&d).map_err(|e| e.to_string()))
            .transpose()
    }
}

impl DocumentReader for SnapshotReader<'_> {
    fn get(&self, path: &str) -> Result<Option<hearth_rules::Document>, String> {
        self.read(path)
    }

    fn get_after(&self, path: &str) -> Result<Option<hearth_rules::Document>, String> {
        let parsed = DocPath::parse(path).map_err(|e| e.message)?;
        match self.after.and_then(|after| after.get(&parsed)) {
            Some(document) => document
                .as_ref()
                .map(|d| rules_document(d).map_err(|e| e.to_string()))
                .transpose(),
            None => self.read(path),
        }
    }

    fn has_role(&self, uid: &str, role: &str, domain: Option<&str>) -> bool {
        self.roles.has_role(uid, role, domain)
    }
}

/// One document write as the rules judge it.
pub struct WriteCheck<'a> {
    pub path: &'a DocPath,
    pub method: Method,
    pub before: Option<&'a Document>,
    pub after: Option<&'a Document>,
}

impl Access {
    /// `check_get` for a document still in its stored form.
    pub fn check_get_stored(
        &self,
        view: &dyn ReadView,
        path: &DocPath,
        stored: Option<&[u8]>,
    ) -> Result<(), DocsError> {
        self.judge_get(view, path, || {
            stored
                .map(|bytes| rules_document_from_stored(path, bytes))
                .transpose()
        })
    }

    /// A single-document read: `get` against the stored document (or none). A denied read of a
    /// missing document answers like one of an existing document.
    pub fn check_get(
        &self,
        view: &dyn ReadView,
        path: &DocPath,
        stored: Option<&Document>,
    ) -> Result<(), DocsError> {
        self.judge_get(view, path, || stored.map(rules_document).transpose())
    }

    /// The `get` decision; `resource` is only converted when rules will read it.
    fn judge_get(
        &self,
        view: &dyn ReadView,
        path: &DocPath,
        resource: impl FnOnce() -> Result<Option<hearth_rules::Document>, DocsError>,
    ) -> Result<(), DocsError> {
        if self.without_rules() {
            return Err(no_rules());
        }
        let Some((rules, auth, roles)) = self.client() else {
            return Ok(());
        };
        let request = Request {
            method: Method::Get,
            path: path.as_str().to_string(),
            auth: auth.clone(),
            time: rules_time(Timestamp::now()),
            resource: resource()?,
            request_resource: None,
        };
        let reader = SnapshotReader {
            view,
            after: None,
            roles,
        };
        decide(rules.evaluate(&request, &reader))
    }

    /// Every write of a commit, each on its own; lookups are shared across a batch (20) and
    /// `getAfter` sees the whole batch applied. `time` is the commit's server timestamp.
    pub fn check_writes(
        &self,
        view: &dyn ReadView,
        writes: &[WriteCheck<'_>],
        after: &HashMap<DocPath, Option<Document>>,
        time: Timestamp,
    ) -> Result<(), DocsError> {
        if self.without_rules() {
            return Err(no_rules());
        }
        let Some((rules, auth, roles)) = self.client() else {
            return Ok(());
        };
        let reader = SnapshotReader {
            view,
            after: Some(after),
            roles,
        };
        let mut budget = if writes.len() > 1 {
            EvalBudget::batch()
        } else {
            EvalBudget::single()
        };
        for write in writes {
            let request = Request {
                method: write.method,
                path: write.path.as_str().to_string(),
                auth: auth.clone(),
                time: rules_time(time),
                resource: write.before.map(rules_document).transpose()?,
                request_resource: match write.method {
                    Method::Create | Method::Update => {
                        write.after.map(rules_document).transpose()?
                    }
                    _ => None,
                },
            };
            decide(rules.evaluate_with_budget(&request, &reader, &mut budget))?;
        }
        Ok(())
    }

    /// A query: allowed only when the `list` rule is proven for every document it could return.
    pub fn check_list(&self, view: &dyn ReadView, query: &Query) -> Result<(), DocsError> {
        if self.without_rules() {
            return Err(no_rules());
        }
        let Some((rules, auth, roles)) = self.client() else {
            return Ok(());
        };
        let disjuncts = match &query.where_json {
            Some(clause) => hearth_rules::testing::disjunctive_normal_form(clause)
                .map_err(DocsError::InvalidArgument)?,
            None => Vec::new(),
        };
        let (collection_path, all_descendants) = match &query.source {
            Source::Collection(collection) => (collection.as_str().to_string(), false),
            Source::Group { collection_id, .. } => (collection_id.clone(), true),
        };
        let request = ListRequest {
            collection_path,
            all_descendants,
            auth: auth.clone(),
            time: rules_time(Timestamp::now()),
            limit: query.limit.map(|l| l as i64),
            offset: (query.offset > 0).then_some(query.offset as i64),
            order_by: query
                .order_by
                .iter()
                .map(|(field, direction)| {
                    (
                        field.to_string(),
                        *direction == super::index::Direction::Desc,
                    )
                })
                .collect(),
            disjuncts,
        };
        let reader = SnapshotReader {
            view,
            after: None,
            roles,
        };
        decide(rules.evaluate_list(&request, &reader))
    }
}
