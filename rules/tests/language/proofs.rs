//! "Rules are not filters": list requests are allowed only when the query's constraints prove
//! the list rule for every document the query could return.

use serde_json::json;

use hearth_rules::{ConstraintOp, FieldConstraint, ListRequest, Ruleset, Timestamp, Value};

use crate::common::{auth, rules, time, value, MemoryReader};

fn eq(field: &str, v: serde_json::Value) -> FieldConstraint {
    constraint(field, ConstraintOp::Eq(value(v)))
}

fn constraint(field: &str, op: ConstraintOp) -> FieldConstraint {
    FieldConstraint {
        field: field.split('.').map(str::to_string).collect(),
        op,
    }
}

fn list(collection: &str, uid: Option<&str>, disjuncts: Vec<Vec<FieldConstraint>>) -> ListRequest {
    ListRequest {
        collection_path: collection.into(),
        all_descendants: false,
        auth: uid.and_then(auth),
        time: time("2026-11-25T10:30:00Z"),
        limit: None,
        offset: None,
        order_by: vec![],
        disjuncts,
    }
}

fn allowed(ruleset: &Ruleset, request: &ListRequest) -> bool {
    ruleset
        .evaluate_list(
            request,
            &MemoryReader::new(&[("users/u1", json!({"admin": true, "team": "red"}))]),
        )
        .allowed
}

#[test]
fn owner_rule_is_proven_only_by_an_owner_constraint() {
    let ruleset =
        rules("match /notes/{id} { allow list: if resource.data.owner == request.auth.uid; }");
    assert!(allowed(
        &ruleset,
        &list("notes", Some("u1"), vec![vec![eq("owner", json!("u1"))]])
    ));
    assert!(!allowed(
        &ruleset,
        &list("notes", Some("u1"), vec![vec![eq("owner", json!("u2"))]])
    ));
    assert!(
        !allowed(&ruleset, &list("notes", Some("u1"), vec![])),
        "no constraint proves nothing"
    );
    assert!(!allowed(
        &ruleset,
        &list("notes", Some("u1"), vec![vec![eq("title", json!("x"))]])
    ));
    assert!(
        !allowed(
            &ruleset,
            &list("notes", None, vec![vec![eq("owner", json!("u1"))]])
        ),
        "signed out"
    );
    let decision =
        ruleset.evaluate_list(&list("notes", Some("u1"), vec![]), &MemoryReader::new(&[]));
    assert!(
        decision
            .reason
            .contains("resource.data.owner is not constrained by the query"),
        "{}",
        decision.reason
    );
}

#[test]
fn rules_that_do_not_depend_on_the_document_hold_for_any_query() {
    let ruleset = rules(
        "match /public/{id} { allow list: if request.auth != null; }
         match /limited/{id} { allow list: if request.query.limit <= 50; }
         match /admins/{id} { allow list: if get(/databases/$(database)/documents/users/$(request.auth.uid)).data.admin; }
         match /users/{uid}/items/{id} { allow list: if request.auth.uid == uid; }",
    );
    assert!(allowed(&ruleset, &list("public", Some("u1"), vec![])));
    assert!(!allowed(&ruleset, &list("public", None, vec![])));
    let mut limited = list("limited", None, vec![]);
    assert!(
        !allowed(&ruleset, &limited),
        "no limit: null <= 50 is an error"
    );
    limited.limit = Some(50);
    assert!(allowed(&ruleset, &limited));
    limited.limit = Some(51);
    assert!(!allowed(&ruleset, &limited));
    assert!(allowed(&ruleset, &list("admins", Some("u1"), vec![])));
    assert!(!allowed(&ruleset, &list("admins", Some("u2"), vec![])));
    assert!(allowed(
        &ruleset,
        &list("users/u1/items", Some("u1"), vec![])
    ));
    assert!(!allowed(
        &ruleset,
        &list("users/u2/items", Some("u1"), vec![])
    ));
}

#[test]
fn disjunctions_in_the_rule_are_proven_by_either_side() {
    let ruleset = rules(
        "match /posts/{id} { allow list: if resource.data.published == true || resource.data.owner == request.auth.uid; }",
    );
    assert!(allowed(
        &ruleset,
        &list(
            "posts",
            Some("u1"),
            vec![vec![eq("published", json!(true))]]
        )
    ));
    assert!(allowed(
        &ruleset,
        &list("posts", Some("u1"), vec![vec![eq("owner", json!("u1"))]])
    ));
    assert!(!allowed(
        &ruleset,
        &list(
            "posts",
            Some("u1"),
            vec![vec![eq("published", json!(false))]]
        )
    ));
    // A query with OR: every disjunct must be proven.
    assert!(allowed(
        &ruleset,
        &list(
            "posts",
            Some("u1"),
            vec![
                vec![eq("published", json!(true))],
                vec![eq("owner", json!("u1"))]
            ]
        )
    ));
    assert!(!allowed(
        &ruleset,
        &list(
            "posts",
            Some("u1"),
            vec![
                vec![eq("published", json!(true))],
                vec![eq("owner", json!("u2"))]
            ]
        )
    ));
}

#[test]
fn in_constraints_are_checked_value_by_value() {
    let ruleset =
        rules("match /docs/{id} { allow list: if resource.data.team in ['red', 'blue']; }");
    let in_query = |values: serde_json::Value| {
        let Value::List(items) = value(values) else {
            panic!()
        };
        list(
            "docs",
            Some("u1"),
            vec![vec![constraint("team", ConstraintOp::In(items))]],
        )
    };
    assert!(allowed(&ruleset, &in_query(json!(["red", "blue"]))));
    assert!(allowed(&ruleset, &in_query(json!(["red"]))));
    assert!(!allowed(&ruleset, &in_query(json!(["red", "green"]))));
    // Equality and `in` on the same field intersect.
    let both = list(
        "docs",
        Some("u1"),
        vec![vec![
            constraint(
                "team",
                ConstraintOp::In(vec![
                    Value::String("red".into()),
                    Value::String("green".into()),
                ]),
            ),
            eq("team", json!("red")),
        ]],
    );
    assert!(allowed(&ruleset, &both));
}

#[test]
fn range_constraints_prove_comparisons_over_the_whole_range() {
    let ruleset = rules(
        "match /scores/{id} { allow list: if resource.data.n > 10; }
         match /window/{id} { allow list: if resource.data.n >= 0 && resource.data.n < 100; }
         match /published/{id} { allow list: if resource.data.publishAt <= request.time; }",
    );
    let with = |collection: &str, constraints: Vec<FieldConstraint>| {
        list(collection, Some("u1"), vec![constraints])
    };
    let int = |i: i64| Value::Int(i);
    assert!(allowed(
        &ruleset,
        &with("scores", vec![constraint("n", ConstraintOp::Gt(int(10)))])
    ));
    assert!(allowed(
        &ruleset,
        &with("scores", vec![constraint("n", ConstraintOp::Ge(int(11)))])
    ));
    assert!(!allowed(
        &ruleset,
        &with("scores", vec![constraint("n", ConstraintOp::Ge(int(10)))])
    ));
    assert!(!allowed(
        &ruleset,
        &with("scores", vec![constraint("n", ConstraintOp::Lt(int(100)))])
    ));
    assert!(allowed(
        &ruleset,
        &with("scores", vec![constraint("n", ConstraintOp::Eq(int(11)))])
    ));
    assert!(allowed(
        &ruleset,
        &with(
            "window",
            vec![
                constraint("n", ConstraintOp::Ge(int(0))),
                constraint("n", ConstraintOp::Lt(int(100)))
            ]
        )
    ));
    assert!(allowed(
        &ruleset,
        &with(
            "window",
            vec![
                constraint("n", ConstraintOp::Gt(int(5))),
                constraint("n", ConstraintOp::Le(int(99)))
            ]
        )
    ));
    assert!(!allowed(
        &ruleset,
        &with(
            "window",
            vec![
                constraint("n", ConstraintOp::Gt(int(5))),
                constraint("n", ConstraintOp::Le(int(100)))
            ]
        )
    ));
    assert!(!allowed(
        &ruleset,
        &with("window", vec![constraint("n", ConstraintOp::Gt(int(5)))])
    ));
    let before = Value::Timestamp(Timestamp::from_rfc3339("2026-11-25T10:00:00Z").unwrap());
    let after = Value::Timestamp(Timestamp::from_rfc3339("2026-11-26T00:00:00Z").unwrap());
    assert!(allowed(
        &ruleset,
        &with(
            "published",
            vec![constraint("publishAt", ConstraintOp::Le(before))]
        )
    ));
    assert!(!allowed(
        &ruleset,
        &with(
            "published",
            vec![constraint("publishAt", ConstraintOp::Le(after))]
        )
    ));
}

#[test]
fn inequality_and_array_constraints_give_partial_knowledge() {
    let ruleset = rules(
        "match /rooms/{id} { allow list: if request.auth.uid in resource.data.members; }
         match /tagged/{id} { allow list: if resource.data.tags.hasAny(['public', 'shared']); }
         match /visible/{id} { allow list: if resource.data.status != 'deleted'; }",
    );
    let s = |text: &str| Value::String(text.into());
    let with = |collection: &str, c: FieldConstraint| list(collection, Some("u1"), vec![vec![c]]);
    assert!(allowed(
        &ruleset,
        &with(
            "rooms",
            constraint("members", ConstraintOp::ArrayContains(s("u1")))
        )
    ));
    assert!(!allowed(
        &ruleset,
        &with(
            "rooms",
            constraint("members", ConstraintOp::ArrayContains(s("u2")))
        )
    ));
    assert!(allowed(
        &ruleset,
        &with(
            "tagged",
            constraint("tags", ConstraintOp::ArrayContains(s("public")))
        )
    ));
    assert!(allowed(
        &ruleset,
        &with(
            "tagged",
            constraint(
                "tags",
                ConstraintOp::ArrayContainsAny(vec![s("public"), s("shared")])
            )
        )
    ));
    assert!(!allowed(
        &ruleset,
        &with(
            "tagged",
            constraint(
                "tags",
                ConstraintOp::ArrayContainsAny(vec![s("public"), s("secret")])
            )
        )
    ));
    assert!(allowed(
        &ruleset,
        &with(
            "visible",
            constraint("status", ConstraintOp::NotEq(s("deleted")))
        )
    ));
    assert!(allowed(
        &ruleset,
        &with(
            "visible",
            constraint("status", ConstraintOp::NotIn(vec![s("deleted"), s("spam")]))
        )
    ));
    assert!(!allowed(
        &ruleset,
        &with(
            "visible",
            constraint("status", ConstraintOp::NotEq(s("spam")))
        )
    ));
}

#[test]
fn nested_fields_and_document_ids() {
    let ruleset = rules(
        "match /orgs/{id} { allow list: if resource.data.address.city == 'Paris' && resource.data.get('plan', 'free') == 'pro'; }
         match /named/{docId} { allow list: if resource.id == 'ok' && docId == 'ok'; }
         match /ids/{docId} { allow list: if docId.size() > 0; }",
    );
    let query = list(
        "orgs",
        None,
        vec![vec![
            eq("address.city", json!("Paris")),
            eq("plan", json!("pro")),
        ]],
    );
    assert!(allowed(&ruleset, &query));
    let partial = list("orgs", None, vec![vec![eq("address.city", json!("Paris"))]]);
    assert!(
        !allowed(&ruleset, &partial),
        "plan is unconstrained, so get() on it is unknown"
    );
    let by_id = list("named", None, vec![vec![eq("__name__", json!("ok"))]]);
    assert!(
        !allowed(&ruleset, &by_id),
        "the wildcard for the document ID stays unknown"
    );
    assert!(
        !allowed(&ruleset, &list("ids", None, vec![])),
        "document IDs of a query are unknown"
    );
}

#[test]
fn collection_group_queries_need_a_recursive_match() {
    let ruleset = rules(
        "match /users/{uid}/posts/{post} { allow read: if true; }
         match /{path=**}/comments/{comment} { allow list: if resource.data.visible == true; }
         match /{document=**} { allow list: if request.auth.uid == 'root'; }",
    );
    let group = |collection: &str, uid: &str, disjuncts| {
        let mut request = list(collection, Some(uid), disjuncts);
        request.all_descendants = true;
        request
    };
    assert!(
        !allowed(&ruleset, &group("posts", "u1", vec![])),
        "a fixed-depth match does not cover every posts collection"
    );
    assert!(
        allowed(&ruleset, &group("posts", "root", vec![])),
        "the catch-all covers any depth"
    );
    assert!(allowed(
        &ruleset,
        &group("comments", "u1", vec![vec![eq("visible", json!(true))]])
    ));
    assert!(!allowed(&ruleset, &group("comments", "u1", vec![])));
    assert!(
        allowed(&ruleset, &list("users/u1/posts", Some("u1"), vec![])),
        "a plain list still matches"
    );
}

#[test]
fn contradictory_constraints_return_nothing_and_are_allowed() {
    let ruleset = rules("match /t/{id} { allow list: if resource.data.owner == 'u1'; }");
    let query = list(
        "t",
        None,
        vec![vec![eq("owner", json!("u2")), eq("owner", json!("u3"))]],
    );
    assert!(allowed(&ruleset, &query));
}

#[test]
fn orderby_and_offset_are_visible_to_rules() {
    let ruleset = rules(
        "match /feed/{id} { allow list: if request.query.orderBy.createdAt == 'DESC' && request.query.offset == null; }",
    );
    let mut request = list("feed", None, vec![]);
    assert!(!allowed(&ruleset, &request));
    request.order_by = vec![("createdAt".into(), true)];
    assert!(allowed(&ruleset, &request));
    request.offset = Some(10);
    assert!(!allowed(&ruleset, &request));
}
