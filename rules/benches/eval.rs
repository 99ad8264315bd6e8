//! Throughput of rule evaluation on a typical ruleset: prints evaluations per second.
//!
//! Run with `cargo bench -p hearth-rules --bench eval`. Plain `std::time`, no harness, no
//! assertions: the figure is for tracking, not a pass/fail gate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use hearth_rules::{
    Auth, ConstraintOp, Document, DocumentReader, FieldConstraint, ListRequest, Method, Request,
    Ruleset, Timestamp, Value,
};

const RULES: &str = r#"
rules_version = '2';
service cloud.firestore {
  match /databases/{database}/documents {
    function signedIn() { return request.auth != null; }
    function isOwner(uid) { return signedIn() && request.auth.uid == uid; }
    function role(org) {
      return get(/databases/$(database)/documents/orgs/$(org)/members/$(request.auth.uid)).data.role;
    }

    match /users/{userId} {
      allow read: if isOwner(userId);
      allow update: if isOwner(userId)
        && request.resource.data.diff(resource.data).affectedKeys().hasOnly(['name', 'bio'])
        && request.resource.data.name is string
        && request.resource.data.name.size() <= 50;
    }
    match /notes/{noteId} {
      allow get, list: if signedIn() && resource.data.owner == request.auth.uid;
      allow create: if signedIn() && request.resource.data.owner == request.auth.uid
        && request.resource.data.createdAt == request.time;
    }
    match /orgs/{org}/projects/{project} {
      allow read: if signedIn() && role(org) in ['owner', 'admin', 'viewer'];
    }
  }
}
"#;

struct Reader(BTreeMap<String, Value>);

impl DocumentReader for Reader {
    fn get(&self, path: &str) -> Result<Option<Document>, String> {
        Ok(self.0.get(path).map(|data| Document {
            path: path.to_string(),
            data: data.clone(),
        }))
    }
    fn get_after(&self, path: &str) -> Result<Option<Document>, String> {
        self.get(path)
    }
    fn has_role(&self, _uid: &str, _role: &str, _domain: Option<&str>) -> bool {
        false
    }
}

fn json(value: serde_json::Value) -> Value {
    Value::from_wire_json(&value).unwrap()
}

fn measure(name: &str, mut run: impl FnMut() -> bool) -> f64 {
    // Warm up, then run for about a second.
    for _ in 0..1_000 {
        black_box(run());
    }
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..1_000 {
            black_box(run());
        }
        count += 1_000;
    }
    let per_second = count as f64 / start.elapsed().as_secs_f64();
    println!("{name:<40} {per_second:>12.0} evaluations/s");
    per_second
}

fn main() {
    let ruleset = Ruleset::parse(RULES).unwrap();
    let time = Timestamp::from_rfc3339("2026-11-25T10:00:00Z").unwrap();
    let auth = Some(Auth {
        uid: "u1".into(),
        token: json(serde_json::json!({"email": "u1@example.com"})),
    });
    let reader = Reader(BTreeMap::from([(
        "orgs/acme/members/u1".to_string(),
        json(serde_json::json!({"role": "viewer"})),
    )]));
    let profile =
        json(serde_json::json!({"name": "Ann", "bio": "hi", "email": "a@example.com", "karma": 3}));
    let mut edited = profile.clone();
    if let Value::Map(map) = &mut edited {
        map.insert("bio".into(), Value::String("hello".into()));
    }

    let get_note = Request {
        method: Method::Get,
        path: "notes/n1".into(),
        auth: auth.clone(),
        time,
        resource: Some(Document {
            path: "notes/n1".into(),
            data: json(serde_json::json!({"owner": "u1", "text": "x"})),
        }),
        request_resource: None,
    };
    let update_profile = Request {
        method: Method::Update,
        path: "users/u1".into(),
        auth: auth.clone(),
        time,
        resource: Some(Document {
            path: "users/u1".into(),
            data: profile,
        }),
        request_resource: Some(Document {
            path: "users/u1".into(),
            data: edited,
        }),
    };
    let get_project = Request {
        method: Method::Get,
        path: "orgs/acme/projects/p1".into(),
        auth: auth.clone(),
        time,
        resource: None,
        request_resource: None,
    };
    let list_notes = ListRequest {
        collection_path: "notes".into(),
        all_descendants: false,
        auth: auth.clone(),
        time,
        limit: Some(20),
        offset: None,
        order_by: vec![],
        disjuncts: vec![vec![FieldConstraint {
            field: vec!["owner".into()],
            op: ConstraintOp::Eq(Value::String("u1".into())),
        }]],
    };

    assert!(ruleset.evaluate(&get_note, &reader).allowed);
    assert!(ruleset.evaluate(&update_profile, &reader).allowed);
    assert!(ruleset.evaluate(&get_project, &reader).allowed);
    assert!(ruleset.evaluate_list(&list_notes, &reader).allowed);

    let rates = [
        measure("get: owner check", || {
            ruleset.evaluate(&get_note, &reader).allowed
        }),
        measure("update: diff().affectedKeys() validation", || {
            ruleset.evaluate(&update_profile, &reader).allowed
        }),
        measure("get: membership via get()", || {
            ruleset.evaluate(&get_project, &reader).allowed
        }),
        measure("list: proof from where owner == uid", || {
            ruleset.evaluate_list(&list_notes, &reader).allowed
        }),
    ];
    let mean = rates.len() as f64 / rates.iter().map(|r| 1.0 / r).sum::<f64>();
    println!(
        "{:<40} {mean:>12.0} evaluations/s (harmonic mean)",
        "typical mix"
    );
}
