//! Queries against a brute-force oracle: random documents, random queries with every operator,
//! and the server's answer (whatever plan it picks) must equal a full scan filtered and sorted
//! in memory. Also pagination, cursors, select, aggregates and collection groups.

use std::cmp::Ordering;

use hearth_tests::TestServer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

fn type_rank(v: &Json) -> u8 {
    match v {
        Json::Null => 0,
        Json::Bool(_) => 1,
        Json::Number(_) => 2,
        Json::String(_) => 4,
        Json::Array(_) => 8,
        Json::Object(_) => 9,
    }
}

/// Firestore order for the value kinds the generator makes.
fn compare(a: &Json, b: &Json) -> Ordering {
    match (a, b) {
        (Json::Bool(x), Json::Bool(y)) => x.cmp(y),
        (Json::Number(x), Json::Number(y)) => x
            .as_f64()
            .unwrap()
            .partial_cmp(&y.as_f64().unwrap())
            .unwrap(),
        (Json::String(x), Json::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Json::Array(x), Json::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let c = compare(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Json::Object(x), Json::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for ((kx, vx), (ky, vy)) in xs.iter().zip(&ys) {
                let c = kx
                    .as_bytes()
                    .cmp(ky.as_bytes())
                    .then_with(|| compare(vx, vy));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

fn equal(a: &Json, b: &Json) -> bool {
    compare(a, b) == Ordering::Equal
}

fn field<'a>(data: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.')
        .try_fold(data, |v, segment| v.as_object()?.get(segment))
}

fn holds(actual: &Json, op: &str, value: &Json) -> bool {
    let list = value.as_array().cloned().unwrap_or_default();
    let same_class = type_rank(actual) == type_rank(value);
    match op {
        "==" => equal(actual, value),
        "!=" => !actual.is_null() && !equal(actual, value),
        "<" => same_class && compare(actual, value) == Ordering::Less,
        "<=" => same_class && compare(actual, value) != Ordering::Greater,
        ">" => same_class && compare(actual, value) == Ordering::Greater,
        ">=" => same_class && compare(actual, value) != Ordering::Less,
        "in" => list.iter().any(|v| equal(actual, v)),
        "not-in" => !actual.is_null() && !list.iter().any(|v| equal(actual, v)),
        "array-contains" => actual
            .as_array()
            .is_some_and(|items| items.iter().any(|i| equal(i, value))),
        "array-contains-any" => actual
            .as_array()
            .is_some_and(|items| items.iter().any(|i| list.iter().any(|v| equal(i, v)))),
        other => panic!("unknown op {other}"),
    }
}

fn filter_holds(filter: &Json, data: &Json) -> bool {
    if let Some(parts) = filter.get("and").and_then(Json::as_array) {
        return parts.iter().all(|p| filter_holds(p, data));
    }
    if let Some(parts) = filter.get("or").and_then(Json::as_array) {
        return parts.iter().any(|p| filter_holds(p, data));
    }
    let [f, op, value] = filter.as_array().unwrap().as_slice() else {
        panic!("bad filter")
    };
    field(data, f.as_str().unwrap())
        .is_some_and(|actual| holds(actual, op.as_str().unwrap(), value))
}

fn inequality_fields(filter: &Json, out: &mut Vec<String>) {
    for key in ["and", "or"] {
        if let Some(parts) = filter.get(key).and_then(Json::as_array) {
            parts.iter().for_each(|p| inequality_fields(p, out));
            return;
        }
    }
    let parts = filter.as_array().unwrap();
    let op = parts[1].as_str().unwrap();
    if ["!=", "<", "<=", ">", ">=", "not-in"].contains(&op) {
        let f = parts[0].as_str().unwrap().to_string();
        if !out.contains(&f) {
            out.push(f);
        }
    }
}

/// The oracle: every document, filtered, ordered and windowed in memory.
fn oracle(docs: &[(String, Json)], query: &Json) -> Vec<String> {
    let mut order: Vec<(String, bool)> = query["orderBy"]
        .as_array()
        .map(|o| {
            o.iter()
                .map(|p| (p[0].as_str().unwrap().to_string(), p[1] == "desc"))
                .collect()
        })
        .unwrap_or_default();
    let mut inequalities = Vec::new();
    if let Some(filter) = query.get("where") {
        inequality_fields(filter, &mut inequalities);
    }
    inequalities.sort();
    for f in inequalities {
        if !order.iter().any(|(o, _)| *o == f) {
            order.push((f, false));
        }
    }
    let name_desc = order.last().is_some_and(|(_, d)| *d);
    let mut matched: Vec<&(String, Json)> = docs
        .iter()
        .filter(|(_, data)| query.get("where").is_none_or(|f| filter_holds(f, data)))
        .filter(|(_, data)| order.iter().all(|(f, _)| field(data, f).is_some()))
        .collect();
    let key_cmp = |a: &(String, Json), b: &(String, Json)| {
        for (f, desc) in &order {
            let c = compare(field(&a.1, f).unwrap(), field(&b.1, f).unwrap());
            let c = if *desc { c.reverse() } else { c };
            if c != Ordering::Equal {
                return c;
            }
        }
        let c = a.0.as_bytes().cmp(b.0.as_bytes());
        if name_desc {
            c.reverse()
        } else {
            c
        }
    };
    matched.sort_by(|a, b| key_cmp(a, b));
    if let Some(cursor) = query.get("startAfter").and_then(Json::as_array) {
        matched.retain(|(id, data)| {
            let mut c = Ordering::Equal;
            for (i, value) in cursor.iter().enumerate() {
                c = if i < order.len() && i < query["orderBy"].as_array().map_or(0, Vec::len) {
                    let (f, desc) = &order[i];
                    let c = compare(field(data, f).unwrap(), value);
                    if *desc {
                        c.reverse()
                    } else {
                        c
                    }
                } else {
                    let c = id.as_bytes().cmp(value.as_str().unwrap().as_bytes());
                    if name_desc {
                        c.reverse()
                    } else {
                        c
                    }
                };
                if c != Ordering::Equal {
                    break;
                }
            }
            c == Ordering::Greater
        });
    }
    let offset = query["offset"].as_u64().unwrap_or(0) as usize;
    let limit = query["limit"].as_u64().map_or(usize::MAX, |l| l as usize);
    matched
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(id, _)| id.clone())
        .collect()
}

fn random_value_for(rng: &mut StdRng, name: &str) -> Option<Json> {
    match name {
        "n" => match rng.random_range(0..20) {
            0 => None,
            1 => Some(Json::Null),
            2 => Some(json!(format!("s{}", rng.random_range(0..3)))),
            3..=6 => Some(json!(rng.random_range(-5..5) as f64 + 0.5)),
            _ => Some(json!(rng.random_range(-5..5))),
        },
        "s" => (rng.random_range(0..6) > 0)
            .then(|| json!(["a", "b", "c", "d"][rng.random_range(0..4)])),
        "tags" => (rng.random_range(0..5) > 0).then(|| {
            let count = rng.random_range(0..4);
            json!((0..count)
                .map(|_| ["x", "y", "z"][rng.random_range(0..3)])
                .collect::<Vec<_>>())
        }),
        "b" => Some(json!(rng.random_bool(0.5))),
        "m" => (rng.random_range(0..4) > 0).then(|| json!({"k": rng.random_range(0..3)})),
        _ => None,
    }
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn random_condition(rng: &mut StdRng) -> Json {
    match rng.random_range(0..9) {
        0 => {
            let op = pick(rng, &["==", "!=", "<", "<=", ">", ">="]);
            json!(["n", op, rng.random_range(-4..4)])
        }
        1 => {
            let op = pick(rng, &["<", ">=", "=="]);
            json!(["n", op, rng.random_range(-4..4) as f64 + 0.5])
        }
        2 => {
            let op = pick(rng, &["in", "not-in"]);
            json!([
                "n",
                op,
                [rng.random_range(-3..3), rng.random_range(-3..3), "s1"]
            ])
        }
        3 => {
            let op = pick(rng, &["==", "!=", "<", ">="]);
            let value = pick(rng, &["a", "b", "c"]);
            json!(["s", op, value])
        }
        4 => json!(["s", "in", ["a", "c"]]),
        5 => {
            let value = pick(rng, &["x", "y", "z"]);
            json!(["tags", "array-contains", value])
        }
        6 => json!(["tags", "array-contains-any", ["x", "z"]]),
        7 => json!(["b", "==", rng.random_bool(0.5)]),
        _ => {
            let op = pick(rng, &["==", ">"]);
            json!(["m.k", op, rng.random_range(0..3)])
        }
    }
}

fn random_query(rng: &mut StdRng) -> Json {
    let mut query = json!({"from": "items"});
    let conditions: Vec<Json> = (0..rng.random_range(0..3))
        .map(|_| random_condition(rng))
        .collect();
    match (conditions.len(), rng.random_range(0..4)) {
        (0, _) => {}
        (1, _) => query["where"] = conditions[0].clone(),
        (_, 0) => query["where"] = json!({"or": conditions}),
        _ => query["where"] = json!({"and": conditions}),
    }
    let orders = [
        vec![],
        vec![("n", "asc")],
        vec![("n", "desc")],
        vec![("s", "asc"), ("n", "desc")],
        vec![("s", "desc")],
    ];
    let order = &orders[rng.random_range(0..orders.len())];
    if !order.is_empty() {
        query["orderBy"] = json!(order.iter().map(|(f, d)| json!([f, d])).collect::<Vec<_>>());
    }
    if rng.random_bool(0.6) {
        query["limit"] = json!(rng.random_range(1..15));
    }
    if rng.random_bool(0.2) {
        query["offset"] = json!(rng.random_range(0..5));
    }
    if order.len() == 1 && order[0].0 == "s" && rng.random_bool(0.3) {
        let value = pick(rng, &["a", "b", "c"]);
        query["startAfter"] = json!([value]);
    }
    query
}

async fn seed(server: &TestServer, rng: &mut StdRng, count: usize) -> Vec<(String, Json)> {
    let mut docs = Vec::new();
    let mut writes = Vec::new();
    for i in 0..count {
        let id = format!("d{i:03}");
        let mut data = serde_json::Map::new();
        for name in ["n", "s", "tags", "b", "m"] {
            if let Some(value) = random_value_for(rng, name) {
                data.insert(name.to_string(), value);
            }
        }
        let data = Json::Object(data);
        writes.push(json!({"op": "set", "path": format!("items/{id}"), "data": data}));
        docs.push((id, data));
    }
    for chunk in writes.chunks(100) {
        let response = server.batch(json!({ "writes": chunk })).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    }
    docs
}

async fn check_random_queries(
    server: &TestServer,
    docs: &[(String, Json)],
    rng: &mut StdRng,
    rounds: usize,
) {
    let mut non_empty = 0;
    for _ in 0..rounds {
        let query = random_query(rng);
        let response = server.query(query.clone()).await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{query}: {}",
            response.text
        );
        let ids: Vec<String> = response.body["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect();
        let expected = oracle(docs, &query);
        non_empty += usize::from(!expected.is_empty());
        if ids != expected {
            let plan = server
                .send(server.admin(Method::POST, "/v1/query/explain").json(&query))
                .await;
            panic!(
                "query {query}\nplan {}\nserver {ids:?}\noracle {expected:?}",
                plan.text
            );
        }
    }
    // Guard against a generator that only makes empty answers, which would prove nothing.
    assert!(
        non_empty * 3 > rounds,
        "only {non_empty} of {rounds} random queries matched anything"
    );
}

#[tokio::test]
async fn every_operator_matches_a_brute_force_oracle_with_and_without_composite_indexes() {
    let seed_value = std::env::var("HEARTH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("oracle seed: {seed_value} (rerun with HEARTH_TEST_SEED={seed_value})");
    let mut rng = StdRng::seed_from_u64(seed_value);
    let server = TestServer::start().await;
    let docs = seed(&server, &mut rng, 150).await;
    check_random_queries(&server, &docs, &mut rng, 150).await;

    for fields in [
        json!([["s", "asc"], ["n", "desc"]]),
        json!([["b", "asc"], ["n", "asc"]]),
        json!([["s", "desc"], ["n", "asc"]]),
    ] {
        super::indexes::create_index(&server, json!({"collection": "items", "fields": fields}))
            .await;
    }
    super::indexes::wait_until_ready(&server).await;
    check_random_queries(&server, &docs, &mut rng, 150).await;
}

#[tokio::test]
async fn query_pages_never_skip_or_repeat() {
    let server = TestServer::start().await;
    let mut rng = StdRng::seed_from_u64(7);
    let docs = seed(&server, &mut rng, 120).await;
    for base in [
        json!({"from": "items", "orderBy": [["n", "asc"]], "limit": 7}),
        json!({"from": "items", "where": ["s", "!=", "b"], "limit": 5}),
        json!({"from": "items", "where": ["tags", "array-contains", "x"], "orderBy": [["s", "desc"]], "limit": 9}),
        json!({"from": "items", "limit": 11}),
    ] {
        let mut all = Vec::new();
        let mut query = base.clone();
        loop {
            let page = server.query(query.clone()).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text);
            all.extend(
                page.body["documents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["id"].as_str().unwrap().to_string()),
            );
            match page.body["nextPageToken"].as_str() {
                Some(token) => query["pageToken"] = json!(token),
                None => break,
            }
        }
        let mut unlimited = base.clone();
        unlimited.as_object_mut().unwrap().remove("limit");
        assert_eq!(all, oracle(&docs, &unlimited), "paging {base}");
    }
    // A token only works for the query it came from.
    let page = server.query(json!({"from": "items", "limit": 2})).await;
    let token = page.body["nextPageToken"].as_str().unwrap();
    let misuse = server
        .query(json!({"from": "items", "limit": 3, "pageToken": token}))
        .await;
    assert_eq!(misuse.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn cursors_select_and_aggregates() {
    let server = TestServer::start().await;
    for i in 0..10 {
        server.put_doc(&format!("scores/s{i}"), json!({"n": i, "team": if i % 2 == 0 { "red" } else { "blue" }, "x": {"y": i * 10}})).await;
    }
    let ids = |r: &hearth_tests::Response| -> Vec<String> {
        r.body["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };
    let window = server
        .query(
            json!({"from": "scores", "orderBy": [["n", "asc"]], "startAt": [3], "endBefore": [6]}),
        )
        .await;
    assert_eq!(ids(&window), ["s3", "s4", "s5"]);
    let after = server
        .query(
            json!({"from": "scores", "orderBy": [["n", "desc"]], "startAfter": [7], "endAt": [5]}),
        )
        .await;
    assert_eq!(ids(&after), ["s6", "s5"]);
    let by_id = server
        .query(json!({"from": "scores", "startAfter": ["s7"]}))
        .await;
    assert_eq!(ids(&by_id), ["s8", "s9"]);

    let selected = server
        .query(json!({"from": "scores", "where": ["n", "==", 2], "select": ["x.y"]}))
        .await;
    assert_eq!(
        selected.body["documents"][0]["data"],
        json!({"x": {"y": 20}})
    );

    let aggregates = server
        .query(json!({"from": "scores", "where": ["team", "==", "red"], "aggregate": {"count": true, "sum": ["n"], "avg": ["n"]}}))
        .await;
    assert_eq!(
        aggregates.body["aggregates"],
        json!({"count": 5, "sum_n": 20, "avg_n": 4.0})
    );
    let empty = server.query(json!({"from": "scores", "where": ["team", "==", "green"], "aggregate": {"count": true, "avg": ["n"]}})).await;
    assert_eq!(empty.body["aggregates"], json!({"count": 0, "avg_n": null}));
}

#[tokio::test]
async fn collection_group_queries_span_every_depth() {
    let server = TestServer::start().await;
    server.put_doc("posts/top", json!({"n": 1})).await;
    server.put_doc("users/u1/posts/a", json!({"n": 2})).await;
    server.put_doc("users/u2/posts/b", json!({"n": 3})).await;
    server.put_doc("users/u2/drafts/c", json!({"n": 4})).await;
    // A subcollection with the same ID as its ancestor collection.
    server
        .put_doc("posts/top/posts/nested", json!({"n": 0}))
        .await;
    let paths = |r: &hearth_tests::Response| -> Vec<String> {
        r.body["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap().to_string())
            .collect()
    };
    let all = server
        .query(json!({"from": "posts", "allDescendants": true, "orderBy": [["n", "desc"]]}))
        .await;
    assert_eq!(
        paths(&all),
        [
            "users/u2/posts/b",
            "users/u1/posts/a",
            "posts/top",
            "posts/top/posts/nested"
        ]
    );
    let top = server.query(json!({"from": "posts"})).await;
    assert_eq!(paths(&top), ["posts/top"]);
    let by_name = server
        .query(json!({"from": "posts", "allDescendants": true}))
        .await;
    assert_eq!(
        paths(&by_name),
        [
            "posts/top",
            "posts/top/posts/nested",
            "users/u1/posts/a",
            "users/u2/posts/b"
        ]
    );
    let below = server
        .query(json!({"from": "posts", "allDescendants": true, "parent": "users/u1"}))
        .await;
    assert_eq!(paths(&below), ["users/u1/posts/a"]);
    let sub = server
        .query(json!({"from": "posts", "parent": "users/u2"}))
        .await;
    assert_eq!(paths(&sub), ["users/u2/posts/b"]);
}
