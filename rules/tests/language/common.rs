//! Shared fixtures: a reader over an in-memory map and request builders.

use std::collections::BTreeMap;

use hearth_rules::{
    format_errors, Auth, Document, DocumentReader, Method, Request, Ruleset, Timestamp, Value,
};

pub struct MemoryReader {
    pub documents: BTreeMap<String, Value>,
    pub after: BTreeMap<String, Value>,
    pub roles: Vec<(String, String, Option<String>)>,
    pub lookups: std::cell::Cell<usize>,
}

impl MemoryReader {
    pub fn new(documents: &[(&str, serde_json::Value)]) -> MemoryReader {
        let documents: BTreeMap<String, Value> = documents
            .iter()
            .map(|(path, data)| (path.to_string(), Value::from_wire_json(data).unwrap()))
            .collect();
        MemoryReader {
            after: documents.clone(),
            documents,
            roles: Vec::new(),
            lookups: std::cell::Cell::new(0),
        }
    }
}

impl DocumentReader for MemoryReader {
    fn get(&self, path: &str) -> Result<Option<Document>, String> {
        self.lookups.set(self.lookups.get() + 1);
        if path.starts_with("broken/") {
            return Err("storage unavailable".into());
        }
        Ok(self.documents.get(path).map(|data| Document {
            path: path.into(),
            data: data.clone(),
        }))
    }
    fn get_after(&self, path: &str) -> Result<Option<Document>, String> {
        self.lookups.set(self.lookups.get() + 1);
        Ok(self.after.get(path).map(|data| Document {
            path: path.into(),
            data: data.clone(),
        }))
    }
    fn has_role(&self, uid: &str, role: &str, domain: Option<&str>) -> bool {
        self.roles
            .iter()
            .any(|(u, r, d)| u == uid && r == role && d.as_deref() == domain)
    }
}

pub fn parse(source: &str) -> Ruleset {
    Ruleset::parse(source)
        .unwrap_or_else(|errors| panic!("rules failed to load:\n{}", format_errors(&errors)))
}

pub fn value(json: serde_json::Value) -> Value {
    Value::from_wire_json(&json).unwrap()
}

pub fn time(text: &str) -> Timestamp {
    Timestamp::from_rfc3339(text).unwrap()
}

pub fn auth(uid: &str) -> Option<Auth> {
    Some(Auth {
        uid: uid.into(),
        token: value(
            serde_json::json!({"email": format!("{uid}@example.com"), "email_verified": true}),
        ),
    })
}

pub fn request(method: Method, path: &str, who: Option<Auth>) -> Request {
    Request {
        method,
        path: path.into(),
        auth: who,
        time: time("2026-11-25T10:30:00Z"),
        resource: None,
        request_resource: None,
    }
}

pub fn with_resource(mut request: Request, data: serde_json::Value) -> Request {
    request.resource = Some(Document {
        path: request.path.clone(),
        data: value(data),
    });
    request
}

pub fn with_request_data(mut request: Request, data: serde_json::Value) -> Request {
    request.request_resource = Some(Document {
        path: request.path.clone(),
        data: value(data),
    });
    request
}

/// Wraps match blocks into the usual service and database match.
pub fn rules(body: &str) -> Ruleset {
    parse(&format!(
        "rules_version = '2';\nservice cloud.firestore {{\n  match /databases/{{database}}/documents {{\n{body}\n  }}\n}}\n"
    ))
}
