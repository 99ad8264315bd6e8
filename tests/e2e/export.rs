//! Export and import: a snapshot taken from a running server while it writes is consistent,
//! and importing it into an empty data dir gives the same database — compared document by
//! document, with users (who sign in with their passwords), rules, roles, indexes, schemas and
//! migration records.

use std::collections::BTreeMap;
use std::path::Path;

use hearth_tests::{auth_env, run_hearth, TestServer, SERVICE_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

use crate::indexes::{create_index, document_ids, explain, wait_until_ready};

const RULES: &str = "rules_version = '2';\nservice cloud.firestore {\n  match /databases/{database}/documents {\n    match /public/{id} { allow read: if true; }\n  }\n}\n";

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The lines of one file of an export folder.
fn lines(dir: &Path, file: &str) -> Vec<Json> {
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn documents_by_path(dir: &Path) -> BTreeMap<String, Json> {
    lines(dir, "documents.jsonl")
        .into_iter()
        .map(|d| (d["path"].as_str().unwrap().to_string(), d))
        .collect()
}

async fn export_url(server: &TestServer, dir: &Path) {
    let output = run_hearth(
        &[
            "export",
            dir.to_str().unwrap(),
            "--url",
            &server.url,
            "--service-key",
            SERVICE_KEY,
        ],
        &[],
    )
    .await;
    assert!(output.status.success(), "{}", text(&output));
}

/// `hearth import` of an export folder into a new data dir, which must succeed.
async fn import(exported: &Path, data_dir: &Path) {
    let output = run_import(exported, data_dir).await;
    assert!(output.status.success(), "{}", text(&output));
}

async fn run_import(exported: &Path, data_dir: &Path) -> std::process::Output {
    run_hearth(
        &[
            "import",
            exported.to_str().unwrap(),
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        &[],
    )
    .await
}

async fn admin_get(server: &TestServer, path: &str) -> Json {
    let response = server.send(server.admin(Method::GET, path)).await;
    assert_eq!(response.status, StatusCode::OK, "{path}: {}", response.text);
    response.body
}

#[tokio::test]
async fn export_while_writing_then_import_gives_the_same_database() {
    let temp = tempfile::tempdir().unwrap();
    let migrations = temp.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(migrations.join("firestore.rules"), RULES).unwrap();
    std::fs::write(
        migrations.join("0001_project.json"),
        json!({"steps": [
            {"step": "setRules", "file": "firestore.rules"},
            {"step": "createIndex", "collection": "posts", "fields": [["owner", "asc"], ["n", "desc"]]},
            {"step": "grantRole", "uid": "alice", "role": "admin", "domain": "org1"},
            {"step": "validateSchema", "collection": "posts", "schema": {"type": "object", "required": ["owner"]}},
            {"step": "seed", "documents": [{"path": "config/app", "data": {"theme": "dark"}}]}
        ]})
        .to_string(),
    )
    .unwrap();
    let mut env = auth_env();
    env.push(("HEARTH_MIGRATIONS".into(), migrations.display().to_string()));
    let server = TestServer::start_with(env.clone()).await;

    // Documents of every value type, nested collections, and enough to span many scan chunks.
    let mut writes = Vec::new();
    for i in 0..2_500 {
        writes.push(
            json!({"op": "set", "path": format!("posts/p{i:04}"), "data": {
                "owner": format!("u{}", i % 7), "n": i, "score": i as f64 / 3.0, "ok": i % 2 == 0,
                "at": {"$timestamp": "2026-11-25T10:00:00.123456Z"}, "blob": {"$bytes": "AAEC/w=="},
                "ref": {"$ref": "users/u1"}, "geo": {"$geo": {"lat": 52.1, "lng": 4.3}},
                "tags": ["a", {"deep": [1, null]}], "nested": {"x": {"y": "ü €"}}
            }}),
        );
    }
    writes.push(json!({"op": "set", "path": "users/u1/notes/n1", "data": {"text": "nested"}}));
    writes.push(json!({"op": "set", "path": "public/snowman ☃", "data": {"empty": {}}}));
    for chunk in writes.chunks(500) {
        let response = server.batch(json!({ "writes": chunk })).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    }
    wait_until_ready(&server).await;
    let signup = server
        .signup("ann@example.com", "correct horse battery")
        .await;
    assert_eq!(signup.status, StatusCode::CREATED, "{}", signup.text);
    let ann_uid = signup.body["user"]["uid"].as_str().unwrap().to_string();
    let claims = server
        .send(
            server
                .admin(Method::PUT, &format!("/v1/admin/users/{ann_uid}/claims"))
                .json(&json!({"claims": {"plan": "pro"}})),
        )
        .await;
    assert_eq!(claims.status, StatusCode::OK, "{}", claims.text);
    let anonymous = server
        .send(server.anonymous(Method::POST, "/v1/auth/anonymous"))
        .await;
    let anonymous_uid = anonymous.body["user"]["uid"].as_str().unwrap().to_string();

    // Export while a writer commits pairs atomically: a consistent snapshot has both documents
    // of every pair or neither.
    let writer_server_url = server.url.clone();
    let writer = tokio::spawn(async move {
        let client = reqwest::Client::new();
        for i in 0..400 {
            let response = client
                .post(format!("{writer_server_url}/v1/batch"))
                .bearer_auth(SERVICE_KEY)
                .json(&json!({"writes": [
                    {"op": "set", "path": format!("pairs/a{i:04}"), "data": {"i": i}},
                    {"op": "set", "path": format!("pairs/b{i:04}"), "data": {"i": i}}
                ]}))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let during = temp.path().join("during");
    export_url(&server, &during).await;
    writer.await.unwrap();
    let snapshot = documents_by_path(&during);
    let pairs_a = snapshot.keys().filter(|p| p.starts_with("pairs/a")).count();
    let pairs_b = snapshot.keys().filter(|p| p.starts_with("pairs/b")).count();
    assert_eq!(pairs_a, pairs_b);
    for path in snapshot.keys().filter(|p| p.starts_with("pairs/a")) {
        assert!(snapshot.contains_key(&path.replace("pairs/a", "pairs/b")));
    }
    let manifest = lines(&during, "manifest.json");
    assert_eq!(manifest[0]["type"], "header");
    assert_eq!(manifest[1]["documents"], json!(snapshot.len()));

    // Now a quiet export, the import into an empty data dir, and the server on it.
    let exported = temp.path().join("export");
    export_url(&server, &exported).await;
    let imported_dir = temp.path().join("imported");
    import(&exported, &imported_dir).await;
    let imported = TestServer::start_in(&imported_dir, env.clone()).await;

    // Document by document: path, version, data, createTime and updateTime.
    let again = temp.path().join("again");
    export_url(&imported, &again).await;
    let original = documents_by_path(&exported);
    let copy = documents_by_path(&again);
    assert_eq!(original.len(), 2_500 + 2 + 1 + 800);
    assert_eq!(original, copy);
    for path in ["posts/p0042", "users/u1/notes/n1", "public/snowman ☃"] {
        let a = server.get_doc(path).await;
        let b = imported.get_doc(path).await;
        assert_eq!(a.body["data"], b.body["data"], "{path}");
        assert_eq!(a.body["createTime"], b.body["createTime"], "{path}");
        assert_eq!(a.body["version"], b.body["version"], "{path}");
        assert_eq!(a.header("etag"), b.header("etag"), "{path}");
    }

    // Users with their password hashes (ann signs in), claims, the anonymous user.
    let login = imported
        .login("ann@example.com", "correct horse battery")
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    assert_eq!(login.body["user"]["uid"], json!(ann_uid));
    assert_eq!(login.body["user"]["claims"], json!({"plan": "pro"}));
    let wrong = imported
        .login("ann@example.com", "wrong horse battery")
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        admin_get(&imported, &format!("/v1/admin/users/{anonymous_uid}")).await["user"]
            ["anonymous"],
        json!(true)
    );
    // The email stays unique.
    let duplicate = imported
        .signup("ann@example.com", "another good password")
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);

    // Project data: rules, roles, indexes (ready and used), schemas, migration records.
    let rules = imported
        .send(imported.admin(Method::GET, "/v1/admin/rules"))
        .await;
    assert_eq!(rules.text, RULES);
    assert_eq!(
        admin_get(&imported, "/v1/admin/roles/grants").await,
        admin_get(&server, "/v1/admin/roles/grants").await
    );
    assert_eq!(
        admin_get(&imported, "/v1/admin/indexes").await,
        admin_get(&server, "/v1/admin/indexes").await
    );
    let query = json!({"from": "posts", "where": ["owner", "==", "u3"], "orderBy": [["n", "desc"]], "limit": 5});
    let plan = explain(&imported, &query).await;
    assert_eq!(plan["plan"]["scan"], "compositeIndex");
    // The same answer, versions included.
    assert_eq!(
        imported.query(query.clone()).await.body["documents"],
        server.query(query).await.body["documents"]
    );
    let single =
        json!({"from": "posts", "where": ["score", ">", 800.0], "aggregate": {"count": true}});
    assert_eq!(
        imported.query(single.clone()).await.body,
        server.query(single).await.body
    );
    let refused = imported.put_doc("posts/new", json!({"n": 1})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let status = admin_get(&imported, "/v1/admin/migrations").await;
    assert_eq!(status["tracks"][1]["migrations"][0]["state"], "applied");
    // New commits continue above every imported version.
    let highest = original
        .values()
        .map(|d| d["version"].as_u64().unwrap())
        .max()
        .unwrap();
    let written = imported
        .put_doc("config/app", json!({"theme": "light"}))
        .await;
    assert_eq!(written.status, StatusCode::OK);
    assert!(written.body["version"].as_u64().unwrap() > highest);
}

#[tokio::test]
async fn offline_export_and_import_refuse_what_they_cannot_do_safely() {
    let server = TestServer::start().await;
    server.put_doc("a/b", json!({"x": 1})).await;
    let temp = tempfile::tempdir().unwrap();
    let data = server.data_dir.to_str().unwrap().to_string();

    // The running server holds the data dir: offline tools say so.
    let out = temp.path().join("out");
    let locked = run_hearth(&["export", out.to_str().unwrap(), "--data-dir", &data], &[]).await;
    assert!(!locked.status.success());
    assert!(String::from_utf8_lossy(&locked.stderr).contains("is a server running on it?"));

    let mut server = server;
    server.terminate().await;
    let offline = run_hearth(&["export", out.to_str().unwrap(), "--data-dir", &data], &[]).await;
    assert!(offline.status.success(), "{}", text(&offline));
    assert_eq!(documents_by_path(&out)["a/b"]["data"], json!({"x": 1}));
    // An existing export is not overwritten.
    let twice = run_hearth(&["export", out.to_str().unwrap(), "--data-dir", &data], &[]).await;
    assert!(!twice.status.success());

    // Import refuses a data dir that holds data.
    let into_used = run_hearth(&["import", out.to_str().unwrap(), "--data-dir", &data], &[]).await;
    assert!(!into_used.status.success());
    assert!(String::from_utf8_lossy(&into_used.stderr).contains("not empty"));

    // A corrupt line is refused with its file and line number.
    let corrupt_dir = temp.path().join("corrupt");
    let corrupt_export = run_hearth(
        &["export", corrupt_dir.to_str().unwrap(), "--data-dir", &data],
        &[],
    )
    .await;
    assert!(corrupt_export.status.success());
    std::fs::write(
        corrupt_dir.join("documents.jsonl"),
        "{\"type\":\"document\",\"path\":\"a\"}\n",
    )
    .unwrap();
    let corrupt = run_hearth(
        &[
            "import",
            corrupt_dir.to_str().unwrap(),
            "--data-dir",
            temp.path().join("c").to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(!corrupt.status.success());
    assert!(String::from_utf8_lossy(&corrupt.stderr).starts_with("error: documents.jsonl:1:"));
    // What the failed import left is marked partial: the server will not serve it, and a
    // second import says why.
    let partial = temp.path().join("c");
    let serve = run_hearth(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            partial.to_str().unwrap(),
        ],
        &[("HEARTH_SERVICE_KEY", SERVICE_KEY)],
    )
    .await;
    assert!(!serve.status.success());
    assert!(String::from_utf8_lossy(&serve.stderr).contains("did not finish"));
    let retry = run_hearth(
        &[
            "import",
            corrupt_dir.to_str().unwrap(),
            "--data-dir",
            partial.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(!retry.status.success());
    assert!(String::from_utf8_lossy(&retry.stderr).contains("did not finish"));

    // An incomplete export (no manifest) is refused.
    let fresh = temp.path().join("fresh");
    std::fs::remove_file(out.join("manifest.json")).unwrap();
    let incomplete = run_hearth(
        &[
            "import",
            out.to_str().unwrap(),
            "--data-dir",
            fresh.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(!incomplete.status.success());
    assert!(String::from_utf8_lossy(&incomplete.stderr).contains("not a complete export"));
}

/// Indexes created before covering entries existed hold only document keys: a data dir with
/// one (here made by importing an export whose catalog predates the `covering` flag) keeps
/// answering from it, and new writes keep its entries in that form.
#[tokio::test]
async fn an_index_without_covering_entries_keeps_answering() {
    let temp = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    for i in 0..30 {
        server
            .put_doc(
                &format!("posts/p{i:02}"),
                json!({"owner": format!("u{}", i % 3), "n": i}),
            )
            .await;
    }
    create_index(
        &server,
        json!({"collection": "posts", "fields": [["owner", "asc"], ["n", "desc"]]}),
    )
    .await;
    wait_until_ready(&server).await;

    let exported = temp.path().join("export");
    export_url(&server, &exported).await;
    let meta = std::fs::read_to_string(exported.join("meta.jsonl")).unwrap();
    assert!(meta.contains(r#",\"covering\":true"#), "{meta}");
    std::fs::write(
        exported.join("meta.jsonl"),
        meta.replace(r#",\"covering\":true"#, ""),
    )
    .unwrap();
    let imported_dir = temp.path().join("imported");
    import(&exported, &imported_dir).await;
    let imported = TestServer::start_in(&imported_dir, vec![]).await;

    let query = json!({"from": "posts", "where": {"and": [["owner", "==", "u1"], ["n", ">", 5]]}, "orderBy": [["n", "desc"]]});
    let plan = explain(&imported, &query).await;
    assert_eq!(plan["plan"]["scan"], "compositeIndex", "{plan}");
    assert_eq!(plan["plan"]["covering"], false, "{plan}");
    assert_eq!(
        imported.query(query.clone()).await.body["documents"],
        server.query(query.clone()).await.body["documents"]
    );
    // Writes after the import: the answers of both servers stay the same.
    for target in [&server, &imported] {
        target
            .patch_doc("posts/p07", json!({"n": 100, "note": "moved"}))
            .await;
        target.delete_doc("posts/p10").await;
        target
            .put_doc("posts/p99", json!({"owner": "u1", "n": 99}))
            .await;
    }
    let answer = imported.query(query.clone()).await.body["documents"].clone();
    assert_eq!(
        document_ids(&answer),
        ["p07", "p99", "p28", "p25", "p22", "p19", "p16", "p13"]
    );
    let fields = |documents: &Json| -> Vec<Json> {
        documents
            .as_array()
            .unwrap()
            .iter()
            .map(|d| json!([d["id"], d["data"]]))
            .collect()
    };
    assert_eq!(
        fields(&answer),
        fields(&server.query(query).await.body["documents"])
    );
}

/// A hand-edited `documents.jsonl` that lists a document twice is refused, whether the copies
/// sit next to each other or thousands of lines apart: importing both would leave the first
/// copy's index entries behind, and queries would answer with them. A file out of key order
/// without repeats imports as well as an export does.
#[tokio::test]
async fn an_import_refuses_a_document_listed_twice() {
    let temp = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    // More documents than one import batch (2,000), so a late repeat meets an earlier batch.
    for chunk in 0..5 {
        let writes: Vec<Json> = (0..500)
            .map(|i| {
                let n = chunk * 500 + i;
                json!({"op": "set", "path": format!("items/i{n:05}"), "data": {"n": n, "tag": "old"}})
            })
            .collect();
        let response = server.batch(json!({ "writes": writes })).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    }
    let exported = temp.path().join("export");
    export_url(&server, &exported).await;
    let documents = std::fs::read_to_string(exported.join("documents.jsonl")).unwrap();
    let manifest = std::fs::read_to_string(exported.join("manifest.json")).unwrap();
    let lines: Vec<&str> = documents.lines().collect();
    assert_eq!(lines.len(), 2_500);

    // Variant files, each with the manifest count it needs.
    let changed_copy = lines[3].replace(r#""tag":"old""#, r#""tag":"new""#);
    assert_ne!(changed_copy, lines[3]);
    let next_to_it = [&lines[..4], &[changed_copy.as_str()], &lines[4..]].concat();
    let far_apart = [&lines[..], &[changed_copy.as_str()]].concat();
    let mut reversed = lines.clone();
    reversed.reverse();
    let variant = |name: &str, lines: &[&str]| {
        let dir = temp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&exported).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        std::fs::write(dir.join("documents.jsonl"), lines.join("\n") + "\n").unwrap();
        let count = format!(r#""documents":{}"#, lines.len());
        std::fs::write(
            dir.join("manifest.json"),
            manifest.replace(r#""documents":2500"#, &count),
        )
        .unwrap();
        dir
    };

    for (name, file) in [("next_to_it", &next_to_it), ("far_apart", &far_apart)] {
        let dir = variant(name, file);
        let output = run_import(&dir, &temp.path().join(format!("{name}_data"))).await;
        assert!(!output.status.success(), "{name}: {}", text(&output));
        assert!(
            text(&output).contains("more than once"),
            "{name}: {}",
            text(&output)
        );
    }

    let dir = variant("reversed", &reversed);
    let data_dir = temp.path().join("reversed_data");
    import(&dir, &data_dir).await;
    let imported = TestServer::start_in(&data_dir, vec![]).await;
    let query = json!({"from": "items", "where": ["n", ">=", 2_490], "orderBy": [["n", "asc"]]});
    assert_eq!(
        imported.query(query.clone()).await.body["documents"],
        server.query(query).await.body["documents"]
    );
    let count = imported
        .query(
            json!({"from": "items", "where": ["tag", "==", "old"], "aggregate": {"count": true}}),
        )
        .await;
    assert_eq!(count.body["aggregates"]["count"], 2_500);
}
