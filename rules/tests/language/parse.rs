//! Parse tables: sources that must load, and sources that must fail with exact, snapshotted
//! messages (line:column, the source line and a caret).

use hearth_rules::{format_errors, Ruleset};

const HEADER: &str =
    "rules_version = '2';\nservice cloud.firestore {\n  match /databases/{database}/documents {\n";
const FOOTER: &str = "\n  }\n}\n";

fn wrap(body: &str) -> String {
    format!("{HEADER}{body}{FOOTER}")
}

#[test]
fn real_world_shapes_load() {
    let sources = [
        // The classic locked and open files.
        "service cloud.firestore { match /databases/{database}/documents { match /{document=**} { allow read, write: if false; } } }".to_string(),
        "rules_version = '2'\nservice cloud.firestore { match /databases/{database}/documents { match /{document=**} { allow read, write; } } }".to_string(),
        // Comments of both kinds, a missing final semicolon, functions before the service.
        "// top\nrules_version = '2'; /* block\n comment */\nfunction signedIn() { return request.auth != null }\nservice cloud.firestore {\n  function isAdmin() { return request.auth.token.admin == true; }\n  match /databases/{database}/documents {\n    match /a/{b} { allow read: if signedIn() || isAdmin() }\n  }\n}".to_string(),
        wrap("match /users/{userId} {\n  allow read: if request.auth.uid == userId;\n  match /posts/{postId} {\n    allow create: if request.resource.data.keys().hasOnly(['title', 'body'])\n      && request.resource.data.title is string\n      && request.resource.data.title.size() < 100;\n  }\n}"),
        wrap("match /some-collection/{doc} { allow get: if get(/databases/$(database)/documents/some-collection/$(doc)/sub-items/x).data.ok; }"),
        wrap("match /{path=**}/posts/{post} { allow list: if resource.data.public; }"),
        wrap("match /a/{b} { function f(x, y) { let z = x + y; let w = z * 2; return w > 3; } allow read: if f(1, 2); }"),
        wrap("match /a/{b} { allow read: if [1, 2, 3][0:2] == [1, 2] && {'k': [1, {'n': null}]}.k[1].n == null; }"),
        wrap("match /a/{b} { allow read: if request.time < timestamp.date(2030, 1, 1) && request.time.toMillis() > 0; }"),
        wrap("match /a/{b} { allow update: if request.resource.data.diff(resource.data).affectedKeys().hasOnly(['n']) && request.resource.data.n == resource.data.n + 1; }"),
        wrap("match /a/{b} { allow read: if hasRole('admin') || hasRole('editor', resource.data.org); }"),
        wrap("match /a/{ b } { allow read: if b == 'x'; }"),
        wrap("match /a/{b} { allow read: if -1 < 0 && !(1 > 2) && 1 - -1 == 2 && 0.5 is float && r'\\d' == '\\\\d'; }"),
    ];
    for source in sources {
        if let Err(errors) = Ruleset::parse(&source) {
            panic!("should load:\n{source}\n---\n{}", format_errors(&errors));
        }
    }
}

#[test]
fn broken_sources_report_every_error_with_a_caret() {
    let cases: &[(&str, String)] = &[
        ("missing service", "rules_version = '2';\n".to_string()),
        ("unknown rules version", "rules_version = '3';\nservice cloud.firestore { }".to_string()),
        ("other services are refused", "service firebase.storage { }".to_string()),
        ("unknown method", wrap("    match /a/{b} { allow reed: if true; }")),
        ("missing if", wrap("    match /a/{b} { allow read: true; }")),
        ("two errors in separate statements", wrap("    match /a/{b} {\n      allow read: if 1 +;\n      allow write: if (true;\n      allow get: if true;\n    }")),
        ("unterminated string", wrap("    match /a/{b} { allow read: if 'abc; }")),
        ("unterminated comment", "service cloud.firestore { /* never closed".to_string()),
        ("bad character", wrap("    match /a/{b} { allow read: if 1 # 2; }")),
        ("missing semicolon between allows", wrap("    match /a/{b} { allow read: if true allow write: if true; }")),
        ("bad wildcard", wrap("    match /a/{b=*} { allow read; }")),
        ("empty match segment", wrap("    match /a//b { allow read; }")),
        ("unknown type after is", wrap("    match /a/{b} { allow read: if b is text; }")),
        ("unknown function", wrap("    match /a/{b} { allow read: if isOwner(); }")),
        ("unknown method", wrap("    match /a/{b} { allow read: if b.lenght() > 0; }")),
        ("bad regex literal", wrap("    match /a/{b} { allow read: if b.matches('[a-'); }")),
        ("recursion", wrap("    function a() { return b(); }\n    function b() { return a(); }\n    match /x/{y} { allow read: if a(); }")),
        ("function without return", wrap("    function f() { let x = 1; }")),
        ("integer overflow", wrap("    match /a/{b} { allow read: if 99999999999999999999 > 0; }")),
        ("v1 recursive wildcard in the middle", "service cloud.firestore { match /databases/{database}/documents { match /{p=**}/x/{y} { allow read; } } }".to_string()),
        ("match nesting beyond ten", format!("{}{}{}", wrap(&"match /a/{b} {\n".repeat(11)), "}".repeat(11), "")),
        ("allow outside a match", "service cloud.firestore { allow read; }".to_string()),
        ("tab-indented caret", "service cloud.firestore {\n\tmatch /a/{b} {\n\t\tallow read: if ;\n\t}\n}".to_string()),
    ];
    let mut report = String::new();
    for (name, source) in cases {
        let errors = Ruleset::parse(source)
            .err()
            .unwrap_or_else(|| panic!("{name}: should fail to load"));
        report.push_str(&format!("=== {name}\n{}\n\n", format_errors(&errors)));
    }
    insta::assert_snapshot!(report);
}

#[test]
fn oversized_and_hostile_sources_are_rejected_quickly() {
    let huge = format!(
        "{}{}",
        wrap("match /a/{b} { allow read: if true; }"),
        " ".repeat(300 * 1024)
    );
    let errors = Ruleset::parse(&huge).unwrap_err();
    assert!(errors[0].message.contains("larger than 256 KB"));
    for hostile in [
        "(".repeat(100_000),
        "[".repeat(100_000),
        "{".repeat(100_000),
        "!".repeat(100_000),
        "-".repeat(100_000),
        "a.".repeat(50_000),
        "f(".repeat(50_000),
        format!("{}{}", "match /a/{b} {".repeat(5_000), "}".repeat(5_000)),
        "'".to_string(),
        "/*".to_string(),
        "\u{0}\u{1}\u{ffff}".to_string(),
        "a ? b : ".repeat(20_000),
        "1 + ".repeat(60_000),
    ] {
        let source = wrap(&format!("match /a/{{b}} {{ allow read: if {hostile}; }}"));
        assert!(
            Ruleset::parse(&source).is_err(),
            "{}",
            &hostile[..20.min(hostile.len())]
        );
    }
}

#[test]
fn errors_display_line_column_source_and_caret() {
    let errors =
        Ruleset::parse("service cloud.firestore {\n  match /a/{b} { allow reed; }\n}").unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].line, errors[0].column), (2, 24));
    assert_eq!(
        errors[0].to_string(),
        "2:24: unknown method `reed` (expected read, write, get, list, create, update or delete)\n      match /a/{b} { allow reed; }\n                           ^"
    );
}
