//! Fuzzes the rules parser and evaluator: any input must load or fail cleanly, and any loaded
//! ruleset must answer every request without panicking, hanging or growing without bound.
//!
//! Run with `cargo +nightly fuzz run parse_and_evaluate` from `rules/`.
#![no_main]

use std::collections::BTreeMap;

use hearth_rules::{
    Auth, ConstraintOp, Document, DocumentReader, FieldConstraint, ListRequest, Method, Request, Ruleset, Timestamp,
    Value,
};
use libfuzzer_sys::fuzz_target;

struct Reader;

impl DocumentReader for Reader {
    fn get(&self, path: &str) -> Result<Option<Document>, String> {
        if path.len() % 3 == 0 {
            return Ok(None);
        }
        let mut data = BTreeMap::new();
        data.insert("owner".to_string(), Value::String("u1".into()));
        data.insert("n".to_string(), Value::Int(path.len() as i64));
        Ok(Some(Document { path: path.to_string(), data: Value::Map(data) }))
    }
    fn get_after(&self, path: &str) -> Result<Option<Document>, String> {
        self.get(path)
    }
    fn has_role(&self, _uid: &str, role: &str, _domain: Option<&str>) -> bool {
        role == "admin"
    }
}

fn document(path: &str) -> Document {
    let mut data = BTreeMap::new();
    data.insert("owner".to_string(), Value::String("u1".into()));
    data.insert("tags".to_string(), Value::List(vec![Value::String("a".into())]));
    data.insert("n".to_string(), Value::Int(5));
    Document { path: path.to_string(), data: Value::Map(data) }
}

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    // Whole files, and the same text as a condition inside a fixed file.
    let wrapped = format!(
        "rules_version = '2'; service cloud.firestore {{ match /databases/{{database}}/documents {{ match /{{c}}/{{d=**}} {{ allow read, write: if {text}; }} }} }}"
    );
    for source in [text, wrapped.as_str()] {
        let Ok(ruleset) = Ruleset::parse(source) else { continue };
        let auth = Some(Auth { uid: "u1".into(), token: Value::Map(BTreeMap::new()) });
        let time = Timestamp { seconds: 1_764_064_800, nanos: 0 };
        for (method, path) in [
            (Method::Get, "posts/p1"),
            (Method::Create, "users/u1/posts/p1"),
            (Method::Update, "a/b/c/d/e/f"),
            (Method::Delete, "posts/p1"),
        ] {
            let request = Request {
                method,
                path: path.into(),
                auth: auth.clone(),
                time,
                resource: Some(document(path)),
                request_resource: Some(document(path)),
            };
            let _ = ruleset.evaluate(&request, &Reader);
        }
        for all_descendants in [false, true] {
            let list = ListRequest {
                collection_path: "posts".into(),
                all_descendants,
                auth: auth.clone(),
                time,
                limit: Some(10),
                offset: None,
                order_by: vec![("n".into(), true)],
                disjuncts: vec![
                    vec![FieldConstraint { field: vec!["owner".into()], op: ConstraintOp::Eq(Value::String("u1".into())) }],
                    vec![FieldConstraint { field: vec!["n".into()], op: ConstraintOp::Gt(Value::Int(3)) }],
                ],
            };
            let _ = ruleset.evaluate_list(&list, &Reader);
        }
    }
});
