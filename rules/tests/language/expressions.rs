//! Expression tables: every operator, built-in function and method, as `condition → outcome`.
//!
//! Each condition runs as `allow get: if <condition>` on `things/t1` with a fixed request and
//! stored document. `True` must allow; `False` must deny while `!(condition)` allows; `Error`
//! must deny both ways (an evaluation error, not a false).

use serde_json::json;

use hearth_rules::{format_errors, Method, Ruleset};

use crate::common::{auth, request, with_request_data, with_resource, MemoryReader};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    True,
    False,
    Error,
}
use Outcome::*;

fn reader() -> MemoryReader {
    let mut reader = MemoryReader::new(&[
        (
            "users/u1",
            json!({"role": "admin", "name": "Ann", "orgs": ["o1"]}),
        ),
        ("users/u2", json!({"role": "member", "name": "Bob"})),
    ]);
    reader.roles.push(("u1".into(), "admin".into(), None));
    reader
        .roles
        .push(("u1".into(), "editor".into(), Some("org1".into())));
    reader
}

fn evaluate(condition: &str) -> bool {
    let source = format!(
        "rules_version = '2';\nservice cloud.firestore {{\n  match /databases/{{database}}/documents {{\n    match /things/{{thingId}} {{\n      allow get, update: if {condition};\n    }}\n  }}\n}}\n"
    );
    let rules = Ruleset::parse(&source)
        .unwrap_or_else(|errors| panic!("`{condition}` did not load:\n{}", format_errors(&errors)));
    let stored = json!({
        "owner": "u1", "n": 5, "score": 2.5, "tags": ["a", "b"], "title": "Hello World",
        "nested": {"a": {"b": 1}}, "at": {"$timestamp": "2026-01-01T00:00:00Z"},
        "author": {"$ref": "users/u1"}, "place": {"$geo": {"lat": 52.37, "lng": 4.89}},
        "blob": {"$bytes": "AQID"}, "nothing": null, "big": 9007199254740993i64
    });
    let mut after = stored.clone();
    after["title"] = json!("Changed");
    after["extra"] = json!(true);
    after.as_object_mut().unwrap().remove("nothing");
    let req = with_request_data(
        with_resource(request(Method::Update, "things/t1", auth("u1")), stored),
        after,
    );
    let mut req = req;
    req.method = Method::Get;
    let decision = rules.evaluate(&req, &reader());
    decision.allowed
}

fn check(table: &[(&str, Outcome)]) {
    let mut failures = Vec::new();
    for (condition, expected) in table {
        let plain = evaluate(condition);
        let negated = evaluate(&format!("!({condition})"));
        let actual = match (plain, negated) {
            (true, false) => True,
            (false, true) => False,
            (false, false) => Error,
            (true, true) => panic!("`{condition}` and its negation both allowed"),
        };
        if actual != *expected {
            failures.push(format!(
                "{condition}: expected {expected:?}, got {actual:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn literals_and_arithmetic() {
    check(&[
        ("true", True),
        ("false", False),
        ("null == null", True),
        ("1 + 2 * 3 == 7", True),
        ("(1 + 2) * 3 == 9", True),
        ("7 / 2 == 3", True),
        ("-7 / 2 == -3", True),
        ("7 % 3 == 1", True),
        ("7.0 / 2 == 3.5", True),
        ("1 == 1.0", True),
        ("0.1 + 0.2 > 0.3", True),
        ("1 / 0 == 0", Error),
        ("1 % 0 == 0", Error),
        ("9223372036854775807 + 1 > 0", Error),
        ("-9223372036854775808 < 0", True),
        ("-(-5) == 5", True),
        ("0x10 == 16", True),
        ("1e3 == 1000", True),
        ("'a' + 'b' == 'ab'", True),
        ("'a' + 1 == 'a1'", Error),
        ("[1] + [2] == [1, 2]", True),
        ("b'\\x01' + b'\\x02' == b'\\x01\\x02'", True),
        ("'it\\'s' == \"it's\"", True),
        ("'\\u00e9' == 'é'", True),
        ("r'\\d' == '\\\\d'", True),
        ("1 < 'a'", Error),
        ("'a' < 'b' && 'b' <= 'b' && 'c' > 'b' && 'c' >= 'c'", True),
        ("1 == 'a'", False),
        ("[1, 2] == [1, 2] && {'a': 1} == {'a': 1}", True),
        ("[1, 2] != [2, 1]", True),
        ("(true ? 1 : 2) == 1", True),
        ("true ? 1 : 2 == 1", Error),
        ("(false ? 1 : 2) == 2", True),
        ("1 ? true : false", Error),
        ("!true == false", True),
        ("!1", Error),
        ("-'a' == 'a'", Error),
    ]);
}

#[test]
fn logical_operators_absorb_errors_like_cel() {
    check(&[
        ("true && true", True),
        ("true && false", False),
        ("false || true", True),
        ("false || false", False),
        ("resource.data.missing == 1 || true", True),
        ("true || resource.data.missing == 1", True),
        ("resource.data.missing == 1 && false", False),
        ("false && resource.data.missing == 1", False),
        ("resource.data.missing == 1 || false", Error),
        ("resource.data.missing == 1 && true", Error),
        ("1 || true", True),
        ("1 && true", Error),
        ("'x' || false", Error),
    ]);
}

#[test]
fn request_and_resource_fields() {
    check(&[
        ("request.auth.uid == 'u1'", True),
        ("request.auth.token.email == 'u1@example.com'", True),
        ("request.auth.token.email_verified == true", True),
        ("request.auth.token.missing == true", Error),
        ("request.method == 'get'", True),
        (
            "request.path == /databases/(default)/documents/things/t1",
            True,
        ),
        (
            "request.path == /databases/$(database)/documents/things/$(thingId)",
            True,
        ),
        (
            "request.time == timestamp.date(2026, 11, 25) + duration.value(630, 'm')",
            True,
        ),
        ("request.time > resource.data.at", True),
        ("resource.data.owner == request.auth.uid", True),
        ("resource.id == 't1' && resource.id == thingId", True),
        (
            "resource.__name__ == /databases/$(database)/documents/things/t1",
            True,
        ),
        (
            "resource['__name__'] == path('/databases/(default)/documents/things/t1')",
            True,
        ),
        ("resource.data['owner'] == 'u1'", True),
        ("resource.data.nested.a.b == 1", True),
        ("resource.data.nested['a']['b'] == 1", True),
        ("resource.data.nothing == null", True),
        ("resource.data.nothing.x == 1", Error),
        ("resource.data.owner.x == 1", Error),
        ("request.resource.data.title == 'Changed'", True),
        ("request.resource.id == 't1'", True),
        (
            "resource.data.author == /databases/(default)/documents/users/u1",
            True,
        ),
        ("database == '(default)'", True),
        ("unknownVariable == 1", Error),
        ("resource.data.big == 9007199254740993", True),
        ("resource.data.big == 9007199254740992.0", False),
    ]);
}

#[test]
fn membership_and_types() {
    check(&[
        ("'a' in resource.data.tags", True),
        ("'z' in resource.data.tags", False),
        ("'owner' in resource.data", True),
        ("'nope' in resource.data", False),
        ("1 in resource.data", Error),
        ("'a' in ['a', 'b'].toSet()", True),
        ("'a' in 'abc'", Error),
        ("1 in [1.0]", True),
        ("resource.data.n is int", True),
        ("resource.data.n is number", True),
        ("resource.data.score is float", True),
        ("resource.data.score is number", True),
        ("resource.data.title is string", True),
        ("resource.data.tags is list", True),
        ("resource.data.nested is map", True),
        ("resource.data.at is timestamp", True),
        ("resource.data.author is path", True),
        ("resource.data.place is latlng", True),
        ("resource.data.blob is bytes", True),
        ("resource.data.nothing is null", True),
        ("true is bool", True),
        ("duration.value(1, 's') is duration", True),
        ("[1].toSet() is set", True),
        ("{}.diff({}) is map_diff", True),
        ("resource.data.n is string", False),
        ("resource.data.missing is string", Error),
    ]);
}

#[test]
fn indexing_and_slicing() {
    check(&[
        ("resource.data.tags[0] == 'a'", True),
        ("resource.data.tags[5] == 'a'", Error),
        ("resource.data.tags[-1] == 'b'", Error),
        ("resource.data.tags[0:1] == ['a']", True),
        ("resource.data.tags[1:] == ['b']", True),
        ("resource.data.tags[:1] == ['a']", True),
        ("resource.data.tags[2:1] == []", Error),
        ("'hello'[1] == 'e'", True),
        ("'hello'[1:3] == 'el'", True),
        ("'héllo'[1] == 'é'", True),
        ("request.path[3] == 'things'", True),
        ("request.path[3:5] == path('things/t1')", True),
        ("resource.data.blob[0] == 1", True),
        ("{'a': 1}['b'] == 1", Error),
        ("[1, 2][true] == 1", Error),
    ]);
}

#[test]
fn string_methods() {
    check(&[
        ("'Hello'.lower() == 'hello'", True),
        ("'Hello'.upper() == 'HELLO'", True),
        ("'  x '.trim() == 'x'", True),
        ("'héllo'.size() == 5", True),
        ("'abc'.matches('a.c')", True),
        ("'xabc'.matches('a.c')", False),
        ("'a@example.com'.matches('.*@example\\\\.com')", True),
        ("'a@example.com'.matches('.*@example\\.com')", True),
        ("'a@exampleXcom'.matches('.*@example\\\\.com')", False),
        ("'abc'.matches(request.auth.uid)", False),
        ("'u1'.matches(request.auth.uid)", True),
        ("'abc'.matches(string('('))", Error),
        ("'a,b,,c'.split(',') == ['a', 'b', '', 'c']", True),
        ("'a1b22c'.split('[0-9]+') == ['a', 'b', 'c']", True),
        ("'hello world'.replace('o', '0') == 'hell0 w0rld'", True),
        (
            "'john smith'.replace('(\\\\w+) (\\\\w+)', '\\\\2 \\\\1') == 'smith john'",
            True,
        ),
        ("'price: 5'.replace('[0-9]', '$') == 'price: $'", True),
        ("'é'.toUtf8() == b'\\xC3\\xA9'", True),
        ("'ab'.toUtf8().size() == 2", True),
        (
            "string(1) == '1' && string(1.5) == '1.5' && string(2.0) == '2.0'",
            True,
        ),
        ("string(true) == 'true' && string(null) == 'null'", True),
        (
            "string(request.path) == '/databases/(default)/documents/things/t1'",
            True,
        ),
        ("int('42') == 42 && int(3.9) == 3 && int(-3.9) == -3", True),
        ("int('x') == 0", Error),
        ("float('2.5') == 2.5 && float(2) == 2.0", True),
        ("bool('true') && !bool('false')", True),
        ("debug(1) == 1", True),
    ]);
}

#[test]
fn list_methods() {
    check(&[
        ("[1, 2].concat([3]) == [1, 2, 3]", True),
        ("[1, 2, 3].hasAll([1, 3])", True),
        ("[1, 2, 3].hasAll([1, 4])", False),
        ("[1, 2].hasAny([2, 5])", True),
        ("[1, 2].hasAny([5])", False),
        ("[1, 2].hasOnly([1, 2, 3])", True),
        ("[1, 4].hasOnly([1, 2, 3])", False),
        ("[].hasOnly([1])", True),
        ("['a', 'b'].join('-') == 'a-b'", True),
        ("[1, 2].join('-') == '1-2'", Error),
        ("[1, 2, 3, 2].removeAll([2]) == [1, 3]", True),
        ("[1, 2, 3].size() == 3", True),
        ("[1, 1, 2].toSet() == [2, 1].toSet()", True),
        ("[1, 1, 2].toSet().size() == 2", True),
        ("resource.data.tags.hasAny(['b'])", True),
        ("[1, 2].hasAll([1].toSet())", True),
    ]);
}

#[test]
fn map_methods_and_diffs() {
    check(&[
        ("{'a': 1, 'b': 2}.keys().hasAll(['a', 'b'])", True),
        ("{'a': 1, 'b': 2}.values().hasAll([1, 2])", True),
        ("{'a': 1}.size() == 1", True),
        ("{'a': 1}.get('a', 0) == 1", True),
        ("{'a': 1}.get('b', 0) == 0", True),
        ("{'a': {'b': 2}}.get(['a', 'b'], 0) == 2", True),
        ("{'a': {'b': 2}}.get(['a', 'c'], 0) == 0", True),
        ("resource.data.get('missing', 'fallback') == 'fallback'", True),
        ("{'a': 1, 'b': 2}.diff({'a': 1, 'c': 3}).addedKeys() == ['b'].toSet()", True),
        ("{'a': 1, 'b': 2}.diff({'a': 1, 'c': 3}).removedKeys() == ['c'].toSet()", True),
        ("{'a': 1, 'b': 2}.diff({'a': 2, 'b': 2}).changedKeys() == ['a'].toSet()", True),
        ("{'a': 1, 'b': 2}.diff({'a': 2, 'b': 2}).unchangedKeys() == ['b'].toSet()", True),
        ("{'a': 1, 'b': 2}.diff({'a': 2, 'c': 3}).affectedKeys() == ['a', 'b', 'c'].toSet()", True),
        ("request.resource.data.diff(resource.data).affectedKeys().hasOnly(['title', 'extra', 'nothing'])", True),
        ("request.resource.data.diff(resource.data).affectedKeys().hasOnly(['title'])", False),
        ("request.resource.data.diff(resource.data).changedKeys() == ['title'].toSet()", True),
        ("{1: 2} == {}", Error),
    ]);
}

#[test]
fn set_methods() {
    check(&[
        (
            "[1, 2, 3].toSet().difference([2].toSet()) == [1, 3].toSet()",
            True,
        ),
        (
            "[1, 2, 3].toSet().intersection([2, 4].toSet()) == [2].toSet()",
            True,
        ),
        (
            "[1, 2].toSet().union([2, 3].toSet()) == [1, 2, 3].toSet()",
            True,
        ),
        ("[1, 2].toSet().hasAll([1])", True),
        ("[1, 2].toSet().hasAny([3])", False),
        ("[1, 2].toSet().hasOnly([1, 2])", True),
        ("[1, 2].toSet().size() == 2", True),
        ("2 in [1, 2].toSet()", True),
        ("[1].toSet().union([2])", Error),
    ]);
}

#[test]
fn timestamps_and_durations() {
    check(&[
        ("request.time.year() == 2026 && request.time.month() == 11 && request.time.day() == 25", True),
        ("request.time.hours() == 10 && request.time.minutes() == 30 && request.time.seconds() == 0", True),
        ("request.time.nanos() == 0", True),
        // 2026-11-25 is a Wednesday.
        ("request.time.dayOfWeek() == 3", True),
        ("request.time.dayOfYear() == 329", True),
        ("request.time.date() == timestamp.date(2026, 11, 25)", True),
        ("request.time.time() == duration.time(10, 30, 0, 0)", True),
        ("request.time.toMillis() == timestamp.value(request.time.toMillis()).toMillis()", True),
        ("timestamp.value(0).year() == 1970", True),
        ("timestamp.value(86400000).dayOfWeek() == 5", True),
        ("request.time.year('UTC') == 2026", True),
        ("request.time - resource.data.at > duration.value(300, 'd')", True),
        ("request.time - duration.value(1, 'h') < request.time", True),
        ("request.time + duration.value(1, 'w') > request.time", True),
        ("duration.value(90, 's').seconds() == 90", True),
        ("duration.value(1500, 'ms').nanos() == 500000000", True),
        ("duration.value(1, 'd') == duration.value(24, 'h')", True),
        ("duration.value(2, 'm') + duration.value(30, 's') == duration.time(0, 2, 30, 0)", True),
        ("duration.abs(duration.value(-5, 's')) == duration.value(5, 's')", True),
        ("duration.value(1, 'fortnight') == duration.value(1, 's')", Error),
        ("timestamp.date(2026, 2, 30) == request.time", Error),
        ("timestamp.value(-1).year() == 1969", True),
        ("request.time.date() < request.time", True),
        ("request.time == request.time + duration.value(1, 'ns')", False),
    ]);
}

#[test]
fn paths_bytes_latlng() {
    check(&[
        ("path('a/b') == path('/a/b')", True),
        ("path('/users/x').size() == 2", True),
        ("/databases/$(database)/documents/users/$(request.auth.uid) == /databases/(default)/documents/users/u1", True),
        ("(/a/$(x)/c).bind({'x': 'b'}) == /a/b/c", True),
        ("/users/some-id.with.dots == path('users/some-id.with.dots')", True),
        ("resource.data.blob.size() == 3", True),
        ("resource.data.blob.toBase64() == 'AQID'", True),
        ("resource.data.blob.toHexString() == '010203'", True),
        ("resource.data.place.latitude() == 52.37 && resource.data.place.longitude() == 4.89", True),
        ("latlng.value(52.37, 4.89) == resource.data.place", True),
        ("resource.data.place.distance(latlng.value(52.37, 4.89)) == 0.0", True),
        ("resource.data.place.distance(latlng.value(51.92, 4.48)) > 50000 && resource.data.place.distance(latlng.value(51.92, 4.48)) < 65000", True),
        ("latlng.value(91, 0) == latlng.value(0, 0)", Error),
    ]);
}

#[test]
fn math_and_hashing() {
    check(&[
        ("math.abs(-3) == 3 && math.abs(-2.5) == 2.5", True),
        ("math.ceil(2.1) == 3.0 && math.floor(2.9) == 2.0 && math.round(2.5) == 3.0", True),
        ("math.sqrt(16) == 4.0 && math.pow(2, 10) == 1024.0", True),
        ("math.isNaN(math.sqrt(-1)) && !math.isNaN(1.0)", True),
        ("math.isInfinite(1.0 / 0) && !math.isInfinite(1.0)", True),
        ("math.abs('x') == 1", Error),
        ("hashing.sha256('abc').toHexString() == 'BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD'", True),
        ("hashing.md5('abc').toHexString() == '900150983CD24FB0D6963F7D28E17F72'", True),
        ("hashing.crc32('123456789').toHexString() == 'CBF43926'", True),
        ("hashing.crc32c('123456789').toHexString() == 'E3069283'", True),
        ("hashing.sha256(b'abc') == hashing.sha256('abc')", True),
        ("hashing.md5(1) == b''", Error),
    ]);
}

#[test]
fn lookups_and_roles() {
    check(&[
        (
            "get(/databases/$(database)/documents/users/$(request.auth.uid)).data.role == 'admin'",
            True,
        ),
        (
            "get(/databases/$(database)/documents/users/u2).data.role == 'admin'",
            False,
        ),
        (
            "get(/databases/$(database)/documents/users/nobody) == null",
            True,
        ),
        (
            "get(/databases/$(database)/documents/users/nobody).data.role == 'admin'",
            Error,
        ),
        ("exists(/databases/$(database)/documents/users/u1)", True),
        (
            "exists(/databases/$(database)/documents/users/nobody)",
            False,
        ),
        ("exists(/databases/$(database)/documents/broken/x)", Error),
        ("exists(/databases/$(database)/documents/users)", Error),
        ("exists(/other/place)", Error),
        (
            "getAfter(/databases/$(database)/documents/users/u1).data.name == 'Ann'",
            True,
        ),
        (
            "existsAfter(/databases/$(database)/documents/users/u2)",
            True,
        ),
        ("get(resource.data.author).data.name == 'Ann'", True),
        ("exists('users/u1')", Error),
        ("hasRole('admin')", True),
        ("hasRole('admin', 'org1')", False),
        ("hasRole('editor', 'org1')", True),
        ("hasRole('editor')", False),
    ]);
}
