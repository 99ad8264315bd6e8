//! Request semantics: matching, wildcards in v1 and v2, OR of overlapping matches, method unions,
//! create vs update, functions, lookups and limits.

use serde_json::json;

use hearth_rules::{EvalBudget, Method, Ruleset};

use crate::common::{auth, parse, request, rules, with_request_data, with_resource, MemoryReader};

fn allowed(ruleset: &Ruleset, method: Method, path: &str) -> bool {
    ruleset
        .evaluate(&request(method, path, auth("u1")), &MemoryReader::new(&[]))
        .allowed
}

#[test]
fn default_is_deny_and_rules_apply_only_at_complete_matches() {
    let ruleset = rules("match /users/{userId} { allow read; }");
    assert!(allowed(&ruleset, Method::Get, "users/u1"));
    assert!(
        !allowed(&ruleset, Method::Get, "users/u1/posts/p1"),
        "rules do not cascade into subcollections"
    );
    assert!(!allowed(&ruleset, Method::Get, "posts/p1"));
    assert!(!allowed(&ruleset, Method::Create, "users/u1"));
    let decision = ruleset.evaluate(
        &request(Method::Get, "posts/p1", None),
        &MemoryReader::new(&[]),
    );
    assert!(
        decision
            .reason
            .contains("no `allow get` rule matches posts/p1"),
        "{}",
        decision.reason
    );
}

#[test]
fn nested_matches_are_relative_and_see_parent_wildcards() {
    let ruleset = rules(
        "match /users/{userId} {
           allow get: if request.auth.uid == userId;
           match /posts/{postId} { allow get: if request.auth.uid == userId && postId.size() > 1; }
         }",
    );
    assert!(allowed(&ruleset, Method::Get, "users/u1"));
    assert!(!allowed(&ruleset, Method::Get, "users/u2"));
    assert!(allowed(&ruleset, Method::Get, "users/u1/posts/p1"));
    assert!(!allowed(&ruleset, Method::Get, "users/u1/posts/p"));
    assert!(!allowed(&ruleset, Method::Get, "users/u2/posts/p1"));
}

#[test]
fn recursive_wildcards_in_v2_match_zero_or_more_segments_anywhere() {
    let ruleset = rules(
        "match /users/{userId}/{rest=**} { allow get: if rest == path('') || rest[0] == 'posts'; }
         match /{path=**}/comments/{commentId} { allow get: if path.size() >= 0; }",
    );
    assert!(allowed(&ruleset, Method::Get, "users/u1"), "zero segments");
    assert!(allowed(&ruleset, Method::Get, "users/u1/posts/p1"));
    assert!(allowed(&ruleset, Method::Get, "users/u1/posts/p1/likes/l1"));
    assert!(!allowed(&ruleset, Method::Get, "users/u1/drafts/d1"));
    assert!(allowed(&ruleset, Method::Get, "comments/c1"));
    assert!(allowed(&ruleset, Method::Get, "a/b/comments/c1"));
    assert!(!allowed(&ruleset, Method::Get, "a/b/notes/c1"));
}

#[test]
fn recursive_wildcards_in_v1_take_one_or_more_segments_at_the_end() {
    let v1 = parse(
        "service cloud.firestore { match /databases/{database}/documents {
           match /users/{userId}/{rest=**} { allow get; }
         } }",
    );
    assert!(
        !allowed(&v1, Method::Get, "users/u1"),
        "v1 needs at least one segment"
    );
    assert!(allowed(&v1, Method::Get, "users/u1/posts/p1"));
    let explicit_v1 = parse(
        "rules_version = '1'; service cloud.firestore { match /databases/{database}/documents {
           match /{document=**} { allow get; } } }",
    );
    assert!(allowed(&explicit_v1, Method::Get, "a/b"));
    let error = Ruleset::parse(
        "service cloud.firestore { match /databases/{database}/documents {
           match /{path=**}/posts/{post} { allow get; } } }",
    )
    .unwrap_err();
    assert!(
        error[0].message.contains("must be the last segment"),
        "{}",
        error[0]
    );
}

#[test]
fn overlapping_matches_are_ored() {
    let ruleset = rules(
        "match /posts/{postId} { allow get: if false; }
         match /posts/{anything} { allow get: if request.auth.uid == 'u1'; }
         match /{document=**} { allow get: if false; }",
    );
    let decision = ruleset.evaluate(
        &request(Method::Get, "posts/p1", auth("u1")),
        &MemoryReader::new(&[]),
    );
    assert!(decision.allowed);
    assert!(
        decision
            .reason
            .contains("/databases/{database}/documents/posts/{anything}"),
        "{}",
        decision.reason
    );
    assert!(!allowed(&ruleset, Method::Get, "comments/c1"));
}

#[test]
fn read_and_write_are_unions_of_methods() {
    let ruleset = rules("match /r/{id} { allow read; } match /w/{id} { allow write; } match /c/{id} { allow create, delete; }");
    for (path, method, expected) in [
        ("r/1", Method::Get, true),
        ("r/1", Method::Create, false),
        ("w/1", Method::Create, true),
        ("w/1", Method::Update, true),
        ("w/1", Method::Delete, true),
        ("w/1", Method::Get, false),
        ("c/1", Method::Create, true),
        ("c/1", Method::Delete, true),
        ("c/1", Method::Update, false),
    ] {
        assert_eq!(
            allowed(&ruleset, method, path),
            expected,
            "{method:?} {path}"
        );
    }
    let list_rules = rules("match /r/{id} { allow read; }");
    let list = hearth_rules::ListRequest {
        collection_path: "r".into(),
        all_descendants: false,
        auth: None,
        time: hearth_rules::Timestamp::now(),
        limit: None,
        offset: None,
        order_by: vec![],
        disjuncts: vec![],
    };
    assert!(
        list_rules
            .evaluate_list(&list, &MemoryReader::new(&[]))
            .allowed,
        "read covers list"
    );
}

#[test]
fn create_and_update_see_the_right_documents() {
    let ruleset = rules(
        "match /notes/{id} {
           allow create: if resource == null && request.resource.data.owner == request.auth.uid;
           allow update: if resource.data.owner == request.auth.uid
                         && request.resource.data.owner == resource.data.owner;
           allow delete: if resource.data.owner == request.auth.uid && request.resource == null;
         }",
    );
    let reader = MemoryReader::new(&[]);
    let create = with_request_data(
        request(Method::Create, "notes/n1", auth("u1")),
        json!({"owner": "u1"}),
    );
    assert!(ruleset.evaluate(&create, &reader).allowed);
    let forged = with_request_data(
        request(Method::Create, "notes/n1", auth("u1")),
        json!({"owner": "u2"}),
    );
    assert!(!ruleset.evaluate(&forged, &reader).allowed);
    let update = with_request_data(
        with_resource(
            request(Method::Update, "notes/n1", auth("u1")),
            json!({"owner": "u1"}),
        ),
        json!({"owner": "u1", "text": "x"}),
    );
    assert!(ruleset.evaluate(&update, &reader).allowed);
    let steal = with_request_data(
        with_resource(
            request(Method::Update, "notes/n1", auth("u1")),
            json!({"owner": "u1"}),
        ),
        json!({"owner": "u2"}),
    );
    assert!(!ruleset.evaluate(&steal, &reader).allowed);
    let other = with_request_data(
        with_resource(
            request(Method::Update, "notes/n1", auth("u2")),
            json!({"owner": "u1"}),
        ),
        json!({"owner": "u1"}),
    );
    assert!(!ruleset.evaluate(&other, &reader).allowed);
    let delete = with_resource(
        request(Method::Delete, "notes/n1", auth("u1")),
        json!({"owner": "u1"}),
    );
    assert!(ruleset.evaluate(&delete, &reader).allowed);
    let missing = request(Method::Delete, "notes/n1", auth("u1"));
    let decision = ruleset.evaluate(&missing, &reader);
    assert!(
        !decision.allowed,
        "resource is null, so resource.data fails"
    );
    assert!(
        decision.reason.contains("null value has no field `data`"),
        "{}",
        decision.reason
    );
}

#[test]
fn functions_scope_lets_and_wildcards() {
    let ruleset = parse(
        "rules_version = '2';
         function signedIn() { return request.auth != null; }
         service cloud.firestore {
           function isOwner(uid) { return signedIn() && request.auth.uid == uid; }
           match /databases/{database}/documents {
             match /users/{userId} {
               function canSee() {
                 let me = request.auth.uid;
                 let same = me == userId;
                 return same || isAdmin();
               }
               function isAdmin() { return get(/databases/$(database)/documents/admins/$(request.auth.uid)) != null }
               allow get: if isOwner(userId) && canSee();
               allow update: if canSee();
             }
             match /other/{id} {
               function isAdmin() { return true; }
               allow get: if isAdmin();
             }
           }
         }",
    );
    let reader = MemoryReader::new(&[("admins/boss", json!({}))]);
    let get = |path: &str, uid: &str| {
        ruleset
            .evaluate(&request(Method::Get, path, auth(uid)), &reader)
            .allowed
    };
    assert!(get("users/u1", "u1"));
    assert!(!get("users/u1", "u2"));
    assert!(
        get("other/x", "anyone"),
        "the inner function shadows the outer name"
    );
    let update = |uid: &str| {
        ruleset
            .evaluate(&request(Method::Update, "users/u1", auth(uid)), &reader)
            .allowed
    };
    assert!(update("boss"));
    assert!(!update("nobody"));
}

#[test]
fn recursion_and_function_limits_are_rejected_at_load() {
    for (source, needle) in [
        ("function f() { return f(); }", "functions may not call themselves: f -> f"),
        ("function a() { return b(); } function b() { return a(); }", "a -> b -> a"),
        ("function f(a, b, c, d, e, f, g, h) { return true; }", "more than 7 parameters"),
        (
            "function f() { let a = 1; let b = 1; let c = 1; let d = 1; let e = 1; let f = 1; let g = 1; let h = 1; let i = 1; let j = 1; let k = 1; return true; }",
            "more than 10 let bindings",
        ),
        ("function f() { return true; } function f() { return false; }", "defined twice"),
        ("function f(x) { return g(x); }", "unknown function `g`"),
        ("function f(x) { return x; } function g() { return f(); }", "takes 1 argument(s) but is called with 0"),
        ("function f() { return math.nope(1); }", "unknown function `math.nope`"),
        ("function f() { return get(); }", "takes 1 argument(s) but is called with 0"),
        ("function f() { return 'a'.matchez('b'); }", "unknown method `matchez`"),
    ] {
        let source = format!("rules_version = '2'; {source} service cloud.firestore {{ }}");
        let errors = Ruleset::parse(&source).expect_err(&source);
        assert!(
            errors.iter().any(|e| e.message.contains(needle)),
            "{source}: expected `{needle}` in {:?}",
            errors.iter().map(|e| &e.message).collect::<Vec<_>>()
        );
    }
}

#[test]
fn lookups_are_cached_and_limited_to_ten_per_request() {
    let mut documents = Vec::new();
    for i in 0..12 {
        documents.push((format!("docs/d{i}"), json!({"ok": true})));
    }
    let documents: Vec<(&str, serde_json::Value)> = documents
        .iter()
        .map(|(p, d)| (p.as_str(), d.clone()))
        .collect();
    let reader = MemoryReader::new(&documents);
    let condition = |count: usize| {
        (0..count)
            .map(|i| format!("exists(/databases/$(database)/documents/docs/d{i})"))
            .collect::<Vec<_>>()
            .join(" && ")
    };
    let ten = rules(&format!(
        "match /t/{{id}} {{ allow get: if {}; }}",
        condition(10)
    ));
    assert!(
        ten.evaluate(&request(Method::Get, "t/1", None), &reader)
            .allowed
    );
    let eleven = rules(&format!(
        "match /t/{{id}} {{ allow get: if {}; }}",
        condition(11)
    ));
    let decision = eleven.evaluate(&request(Method::Get, "t/1", None), &reader);
    assert!(!decision.allowed);
    assert!(
        decision.reason.contains("more than 10 document lookups"),
        "{}",
        decision.reason
    );
    // The same document read many times counts once.
    let repeated = rules(&format!(
        "match /t/{{id}} {{ allow get: if {}; }}",
        vec!["get(/databases/$(database)/documents/docs/d1).data.ok"; 30].join(" && ")
    ));
    reader.lookups.set(0);
    assert!(
        repeated
            .evaluate(&request(Method::Get, "t/1", None), &reader)
            .allowed
    );
    assert_eq!(reader.lookups.get(), 1);
}

#[test]
fn a_batch_shares_twenty_lookups_across_its_writes() {
    let reader = MemoryReader::new(&[]);
    let ruleset = rules(
        "match /t/{id} { allow create: if !exists(/databases/$(database)/documents/a/$(id)) && !exists(/databases/$(database)/documents/b/$(id)); }",
    );
    let mut budget = EvalBudget::batch();
    let mut results = Vec::new();
    for i in 0..12 {
        let write = with_request_data(request(Method::Create, &format!("t/{i}"), None), json!({}));
        results.push(
            ruleset
                .evaluate_with_budget(&write, &reader, &mut budget)
                .allowed,
        );
    }
    assert_eq!(results.iter().filter(|ok| **ok).count(), 10, "{results:?}");
    assert_eq!(budget.used(), 20);
}

#[test]
fn get_after_sees_the_batch_state() {
    let mut reader = MemoryReader::new(&[]);
    reader.after.insert(
        "rooms/r1".into(),
        crate::common::value(json!({"owner": "u1"})),
    );
    let ruleset = rules(
        "match /rooms/{room}/members/{uid} {
           allow create: if getAfter(/databases/$(database)/documents/rooms/$(room)).data.owner == request.auth.uid
                         && !exists(/databases/$(database)/documents/rooms/$(room))
                         && existsAfter(/databases/$(database)/documents/rooms/$(room));
         }",
    );
    let write = with_request_data(
        request(Method::Create, "rooms/r1/members/u1", auth("u1")),
        json!({}),
    );
    assert!(ruleset.evaluate(&write, &reader).allowed);
}

#[test]
fn the_expression_budget_stops_long_evaluations() {
    // Eleven nested functions each doubling the work: far beyond 1,000 expressions.
    let mut functions =
        String::from("function f0(x) { return x == 1 || x == 2 || x == 3 || x == 4; }\n");
    for i in 1..=10 {
        functions.push_str(&format!(
            "function f{i}(x) {{ return f{}(x) && f{}(x); }}\n",
            i - 1,
            i - 1
        ));
    }
    let ruleset = parse(&format!(
        "rules_version = '2'; {functions} service cloud.firestore {{ match /databases/{{database}}/documents {{
           match /t/{{id}} {{ allow get: if f10(1); allow update: if f3(1); }} }} }}"
    ));
    let decision = ruleset.evaluate(&request(Method::Get, "t/1", None), &MemoryReader::new(&[]));
    assert!(!decision.allowed);
    assert!(
        decision.reason.contains("more than 1000 expressions"),
        "{}",
        decision.reason
    );
    assert!(
        allowed(&ruleset, Method::Update, "t/1"),
        "a small call tree stays under the budget"
    );
}

#[test]
fn values_cannot_grow_without_bound() {
    let mut lets = String::from("let s0 = 'xxxxxxxxxxxxxxxx';");
    for i in 1..=9 {
        lets.push_str(&format!(" let s{i} = s{} + s{};", i - 1, i - 1));
    }
    let mut functions = format!("function grow0() {{ {lets} return s9 + s9; }}\n");
    for i in 1..=10 {
        functions.push_str(&format!(
            "function grow{i}() {{ let a = grow{}(); let b = a + a; let c = b + b; let d = c + c; return d + d; }}\n",
            i - 1
        ));
    }
    let ruleset = parse(&format!(
        "rules_version = '2'; {functions} service cloud.firestore {{ match /databases/{{database}}/documents {{
           match /t/{{id}} {{ allow get: if grow10().size() > 0; }} }} }}"
    ));
    let decision = ruleset.evaluate(&request(Method::Get, "t/1", None), &MemoryReader::new(&[]));
    assert!(!decision.allowed);
    assert!(
        decision.reason.contains("larger than"),
        "{}",
        decision.reason
    );
}

#[test]
fn function_call_depth_is_limited() {
    let mut functions = String::from("function f0() { return true; }\n");
    for i in 1..=25 {
        functions.push_str(&format!("function f{i}() {{ return f{}(); }}\n", i - 1));
    }
    let ruleset = parse(&format!(
        "rules_version = '2'; {functions} service cloud.firestore {{ match /databases/{{database}}/documents {{
           match /deep/{{id}} {{ allow get: if f25(); }}
           match /shallow/{{id}} {{ allow get: if f15(); }} }} }}"
    ));
    let decision = ruleset.evaluate(
        &request(Method::Get, "deep/1", None),
        &MemoryReader::new(&[]),
    );
    assert!(
        decision.reason.contains("nested more than 20 deep"),
        "{}",
        decision.reason
    );
    assert!(allowed(&ruleset, Method::Get, "shallow/1"));
}

#[test]
fn evaluation_stays_within_a_small_thread_stack() {
    // Deeply nested expressions inside the deepest call chain, on a 2 MiB stack (the default
    // for spawned threads and tokio workers) even in debug builds.
    let deep = format!(
        "{}({}true{})",
        "!!".repeat(10),
        "(".repeat(25),
        ")".repeat(25)
    );
    let mut functions = format!("function f0() {{ return {deep}; }}\n");
    for i in 1..=19 {
        functions.push_str(&format!(
            "function f{i}() {{ return f{}() && {deep}; }}\n",
            i - 1
        ));
    }
    let source = format!(
        "rules_version = '2'; {functions} service cloud.firestore {{ match /databases/{{database}}/documents {{
           match /t/{{id}} {{ allow get: if f19(); }} }} }}"
    );
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let ruleset = parse(&source);
            ruleset
                .evaluate(&request(Method::Get, "t/1", None), &MemoryReader::new(&[]))
                .allowed
        })
        .unwrap();
    assert!(handle.join().is_ok());
}

#[test]
fn invalid_paths_are_denied_not_panics() {
    let ruleset = rules("match /{document=**} { allow read, write; }");
    for path in ["", "/", "a", "a//b", "a/b/c"] {
        assert!(!allowed(&ruleset, Method::Get, path), "{path:?}");
    }
    assert!(
        allowed(&ruleset, Method::Get, "/a/b/"),
        "surrounding slashes are tolerated"
    );
}
