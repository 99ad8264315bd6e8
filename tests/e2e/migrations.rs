//! Migrations: every step kind applied by `serve --migrations` and `hearth migrate up`, the
//! records and checksums, refusal of bad input before anything applies, and the resumption of
//! a large transform after SIGKILL.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use hearth_tests::{hearth_binary, run_hearth, TestServer, SERVICE_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::indexes::wait_until_ready;

const RULES: &str = r#"rules_version = '2';
service cloud.firestore {
  match /databases/{database}/documents {
    match /posts/{id} {
      allow read: if true;
      allow write: if hasRole('editor', 'org1');
    }
  }
}
"#;

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), contents).unwrap();
}

fn write_json(dir: &Path, name: &str, contents: &Json) {
    write(dir, name, &serde_json::to_string_pretty(contents).unwrap());
}

fn migrations_env(dir: &Path) -> Vec<(String, String)> {
    vec![("HEARTH_MIGRATIONS".to_string(), dir.display().to_string())]
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `hearth migrate COMMAND --data-dir DATA --migrations DIR`.
async fn migrate(command: &str, data: &Path, dir: &Path) -> std::process::Output {
    let data = data.to_string_lossy();
    let dir = dir.to_string_lossy();
    run_hearth(
        &[
            "migrate",
            command,
            "--data-dir",
            &data,
            "--migrations",
            &dir,
        ],
        &[],
    )
    .await
}

async fn get_data(server: &TestServer, path: &str) -> Json {
    let response = server.get_doc(path).await;
    assert_eq!(response.status, StatusCode::OK, "{path}: {}", response.text);
    response.body["data"].clone()
}

/// The lines of one file of an offline export of `data_dir`.
async fn exported_lines(data_dir: &Path, file: &str) -> Vec<Json> {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("export");
    let output = run_hearth(
        &[
            "export",
            dir.to_str().unwrap(),
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(output.status.success(), "{}", text(&output));
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The documents of an offline export of `data_dir`, by path.
async fn exported_documents(data_dir: &Path) -> std::collections::BTreeMap<String, Json> {
    exported_lines(data_dir, "documents.jsonl")
        .await
        .into_iter()
        .map(|record| (record["path"].as_str().unwrap().to_string(), record))
        .collect()
}

/// The project records (meta lines) of an offline export, by key.
async fn exported_meta(data_dir: &Path) -> std::collections::BTreeMap<String, String> {
    exported_lines(data_dir, "meta.jsonl")
        .await
        .into_iter()
        .map(|record| {
            (
                record["key"].as_str().unwrap().to_string(),
                record["text"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn project_data_steps_apply_at_serve_start_and_are_live() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("migrations");
    write(&dir, "firestore.rules", RULES);
    write_json(
        &dir,
        "0001_setup.json",
        &json!({"steps": [
            {"step": "createIndex", "collection": "posts", "fields": [["owner", "asc"], ["n", "desc"]], "covering": false},
            {"step": "createIndex", "collection": "posts", "fields": [["tag", "asc"], ["n", "asc"]]},
            {"step": "setRules", "file": "firestore.rules"},
            {"step": "grantRole", "uid": "alice", "role": "editor", "domain": "org1"},
            {"step": "grantRole", "uid": "bob", "role": "editor", "domain": "org1"},
            {"step": "validateSchema", "collection": "posts", "schema": {"type": "object", "required": ["owner"]}},
            {"step": "seed", "documents": [
                {"path": "posts/p1", "data": {"owner": "alice", "n": 1, "at": {"$timestamp": "2026-01-01T00:00:00Z"}}},
                {"path": "config/app", "data": {"theme": "dark"}}
            ]}
        ]}),
    );
    write_json(
        &dir,
        "0002_revoke_and_drop.json",
        &json!({"steps": [
            {"step": "revokeRole", "uid": "bob", "role": "editor", "domain": "org1"},
            {"step": "dropIndex", "collection": "posts", "fields": [["tag", "asc"], ["n", "asc"]]}
        ]}),
    );
    let server = TestServer::start_with(migrations_env(&dir)).await;

    // createIndex and dropIndex: one composite index is left, and it is built.
    wait_until_ready(&server).await;
    let indexes = server
        .send(server.admin(Method::GET, "/v1/admin/indexes"))
        .await;
    let listed: Vec<Json> = indexes.body["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ix| json!([ix["collection"], ix["fields"], ix["state"], ix["covering"]]))
        .collect();
    assert_eq!(
        listed,
        vec![json!([
            "posts",
            [["owner", "asc"], ["n", "desc"]],
            "ready",
            false
        ])]
    );
    let plan = server
        .send(
            server
                .admin(Method::POST, "/v1/query/explain")
                .json(&json!({"from": "posts", "where": ["owner", "==", "alice"], "orderBy": [["n", "desc"]]})),
        )
        .await;
    assert_eq!(plan.body["plan"]["scan"], "compositeIndex", "{}", plan.text);

    // setRules: the file's source is live.
    let rules = server
        .send(server.admin(Method::GET, "/v1/admin/rules"))
        .await;
    assert_eq!(rules.text, RULES);

    // grantRole/revokeRole: the grants, and the rules use them.
    let grants = server
        .send(server.admin(Method::GET, "/v1/admin/roles/grants"))
        .await;
    assert_eq!(
        grants.body["grants"],
        json!([{"uid": "alice", "role": "editor", "domain": "org1"}])
    );
    for (uid, expected) in [("alice", StatusCode::OK), ("bob", StatusCode::FORBIDDEN)] {
        let token = server.token_for(uid).await;
        let response = server
            .send(
                server
                    .bearer(Method::PATCH, "/v1/docs/posts/p1", &token)
                    .json(&json!({"n": 2})),
            )
            .await;
        assert_eq!(response.status, expected, "{uid}: {}", response.text);
    }

    // seed: documents with typed values.
    assert_eq!(
        get_data(&server, "posts/p1").await,
        json!({"owner": "alice", "n": 2, "at": {"$timestamp": "2026-01-01T00:00:00.000000Z"}})
    );
    assert_eq!(
        get_data(&server, "config/app").await,
        json!({"theme": "dark"})
    );

    // validateSchema: enforced on later writes.
    let refused = server.put_doc("posts/p2", json!({"n": 1})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.error_code(), "invalid_argument");

    // The records: both tracks, every file applied, with checksums.
    let status = server
        .send(server.admin(Method::GET, "/v1/admin/migrations"))
        .await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    let tracks = status.body["tracks"].as_array().unwrap();
    assert_eq!(tracks[0]["track"], "system");
    assert_eq!(tracks[1]["track"], "app");
    let app: Vec<(Json, Json)> = tracks[1]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].clone(), m["state"].clone()))
        .collect();
    assert_eq!(
        app,
        vec![
            (json!("setup"), json!("applied")),
            (json!("revoke_and_drop"), json!("applied"))
        ]
    );
    assert_eq!(
        tracks[1]["migrations"][0]["checksum"]
            .as_str()
            .unwrap()
            .len(),
        64
    );

    // A restart applies nothing again: the seeded document keeps the later change.
    let mut server = server;
    server.restart().await;
    assert_eq!(get_data(&server, "posts/p1").await["n"], json!(2));
}

#[tokio::test]
async fn data_steps_rewrite_every_matching_document_and_nothing_else() {
    let server = TestServer::start().await;
    let mut writes = Vec::new();
    for i in 0..1_200 {
        writes.push(
            json!({"op": "set", "path": format!("posts/p{i:04}"), "data": {
                "title": format!("t{i}"), "n": i, "legacy": true,
                "status": if i % 3 == 0 { "draft" } else { "live" },
                "meta": {"old": i}
            }}),
        );
    }
    for chunk in writes.chunks(500) {
        let response = server.batch(json!({ "writes": chunk })).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    }
    // Same collection ID elsewhere, and a document of another collection: untouched by
    // `posts`, while `users/{uid}/posts` reaches the nested ones.
    server
        .put_doc("users/u1/posts/x", json!({"title": "nested", "n": 5}))
        .await;
    server
        .put_doc("other/o1", json!({"title": "other", "legacy": true}))
        .await;
    server
        .put_doc(
            "posts/nolegacy",
            json!({"title": "x", "n": -1, "status": "gone", "score": 7}),
        )
        .await;

    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("migrations");
    write_json(
        &dir,
        "0001_reshape.json",
        &json!({"steps": [
            {"step": "renameField", "collection": "posts", "from": "title", "to": "headline", "batchSize": 100},
            {"step": "setDefault", "collection": "posts", "field": "score", "value": 0},
            {"step": "deleteField", "collection": "posts", "field": "legacy"},
            {"step": "transform", "collection": "posts", "where": ["status", "==", "draft"],
             "set": {"n": {"$increment": 1000}, "reviewed": {"$serverTimestamp": true}},
             "rename": {"meta.old": "meta.previous"}},
            {"step": "transform", "collection": "users/{uid}/posts", "set": {"nested": true}},
            {"step": "transform", "collection": "posts", "where": ["status", "==", "gone"], "delete": true}
        ]}),
    );
    let mut server = server;
    server.kill9().await;
    let output = migrate("up", &server.data_dir, &dir).await;
    assert!(output.status.success(), "{}", text(&output));

    let documents = exported_documents(&server.data_dir).await;
    for i in 0..1_200 {
        let data = &documents[&format!("posts/p{i:04}")]["data"];
        let draft = i % 3 == 0;
        let mut expected = json!({
            "headline": format!("t{i}"),
            "n": if draft { i + 1_000 } else { i },
            "status": if draft { "draft" } else { "live" },
            "score": 0,
            "meta": if draft { json!({"previous": i}) } else { json!({"old": i}) },
        });
        if draft {
            assert!(data["reviewed"]["$timestamp"].is_string(), "{data}");
            expected["reviewed"] = data["reviewed"].clone();
        }
        assert_eq!(data, &expected, "posts/p{i:04}");
    }
    assert!(!documents.contains_key("posts/nolegacy"));
    assert_eq!(
        documents["users/u1/posts/x"]["data"],
        json!({"title": "nested", "n": 5, "nested": true})
    );
    assert_eq!(
        documents["other/o1"]["data"],
        json!({"title": "other", "legacy": true})
    );

    // The server then starts on the migrated data with the migration recorded.
    // (A second handle: the first keeps the temporary data dir alive.)
    let restarted = TestServer::start_in(&server.data_dir, migrations_env(&dir)).await;
    let status = restarted
        .send(restarted.admin(Method::GET, "/v1/admin/migrations"))
        .await;
    assert_eq!(
        status.body["tracks"][1]["migrations"][0]["state"],
        "applied"
    );
}

#[tokio::test]
async fn migrate_new_status_and_up_work_from_the_command_line() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("migrations");
    let data = temp.path().join("data");
    let (dir_arg, data_arg) = (dir.to_str().unwrap(), data.to_str().unwrap());

    let created = run_hearth(&["migrate", "new", "first", "--migrations", dir_arg], &[]).await;
    assert!(created.status.success(), "{}", text(&created));
    let created = run_hearth(
        &["migrate", "new", "second-one", "--migrations", dir_arg],
        &[],
    )
    .await;
    assert!(created.status.success(), "{}", text(&created));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["0001_first.json", "0002_second-one.json"]);
    let body: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("0001_first.json")).unwrap())
            .unwrap();
    assert_eq!(body, json!({"steps": []}));
    let bad_name = run_hearth(
        &["migrate", "new", "no spaces", "--migrations", dir_arg],
        &[],
    )
    .await;
    assert!(!bad_name.status.success());

    write_json(
        &dir,
        "0002_second-one.json",
        &json!({"steps": [{"step": "seed", "documents": [{"path": "a/b", "data": {"x": 1}}]}]}),
    );
    let args = ["--data-dir", data_arg, "--migrations", dir_arg];
    let status = run_hearth(&[&["migrate", "status"][..], &args].concat(), &[]).await;
    assert!(status.status.success(), "{}", text(&status));
    let lines: Vec<Vec<String>> = String::from_utf8_lossy(&status.stdout)
        .lines()
        .map(|l| l.split_whitespace().take(3).map(str::to_string).collect())
        .collect();
    assert_eq!(
        lines,
        vec![
            vec!["system", "0001_system", "pending"],
            vec!["app", "0001_first", "pending"],
            vec!["app", "0002_second-one", "pending"],
        ]
    );
    let up = run_hearth(&[&["migrate", "up"][..], &args].concat(), &[]).await;
    assert!(up.status.success(), "{}", text(&up));
    assert_eq!(
        String::from_utf8_lossy(&up.stdout)
            .lines()
            .collect::<Vec<_>>(),
        vec![
            "applied system/0001_system.json",
            "applied app/0001_first.json",
            "applied app/0002_second-one.json"
        ]
    );
    let status = run_hearth(&[&["migrate", "status"][..], &args].concat(), &[]).await;
    let states: Vec<String> = String::from_utf8_lossy(&status.stdout)
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap_or_default().to_string())
        .collect();
    assert_eq!(states, vec!["applied", "applied", "applied"]);
    let again = run_hearth(&[&["migrate", "up"][..], &args].concat(), &[]).await;
    assert!(again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "nothing to apply: every migration is applied"
    );
    assert_eq!(
        exported_documents(&data).await["a/b"]["data"],
        json!({"x": 1})
    );
}

#[tokio::test]
async fn a_changed_applied_file_is_refused_by_migrate_up_serve_and_the_admin_api() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("migrations");
    write_json(
        &dir,
        "0001_seed.json",
        &json!({"steps": [{"step": "seed", "documents": [{"path": "a/b", "data": {"x": 1}}]}]}),
    );
    let mut server = TestServer::start_with(migrations_env(&dir)).await;
    // Edited after it was applied, with a new migration behind it.
    write_json(
        &dir,
        "0001_seed.json",
        &json!({"steps": [{"step": "seed", "documents": [{"path": "a/b", "data": {"x": 2}}]}]}),
    );
    write_json(
        &dir,
        "0002_more.json",
        &json!({"steps": [{"step": "seed", "documents": [{"path": "a/c", "data": {"x": 3}}]}]}),
    );
    let status = server
        .send(server.admin(Method::GET, "/v1/admin/migrations"))
        .await;
    assert_eq!(status.status, StatusCode::PRECONDITION_FAILED);
    let problems = status.body["error"]["details"]["problems"]
        .as_array()
        .unwrap();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .starts_with("0001_seed.json: changed after it was applied"),
        "{}",
        status.text
    );
    server.kill9().await;

    let up = migrate("up", &server.data_dir, &dir).await;
    assert!(!up.status.success());
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(
        stderr.contains("0001_seed.json: changed after it was applied"),
        "{stderr}"
    );
    let serve = run_hearth(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            server.data_dir.to_str().unwrap(),
            "--migrations",
            dir.to_str().unwrap(),
        ],
        &[("HEARTH_SERVICE_KEY", SERVICE_KEY)],
    )
    .await;
    assert!(!serve.status.success());
    assert!(String::from_utf8_lossy(&serve.stderr)
        .contains("0001_seed.json: changed after it was applied"));
    // Nothing of 0002 ran, and the applied data is as it was.
    let documents = exported_documents(&server.data_dir).await;
    assert_eq!(documents["a/b"]["data"], json!({"x": 1}));
    assert!(!documents.contains_key("a/c"));
}

#[tokio::test]
async fn bad_migration_files_are_refused_with_file_step_and_reason_before_anything_applies() {
    let good =
        json!({"steps": [{"step": "seed", "documents": [{"path": "a/good", "data": {"x": 1}}]}]});
    let seed_of = |n: usize| -> Json {
        let documents: Vec<Json> = (0..n)
            .map(|i| json!({"path": format!("a/d{i}"), "data": {}}))
            .collect();
        json!({"steps": [{"step": "seed", "documents": documents}]})
    };
    // (files besides 0001_good.json, the expected start of the problem line)
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![("0002_bad.json", "{\"steps\": [".into())], "0002_bad.json: not valid JSON"),
        (vec![("0002_bad.json", "[]".into())], "0002_bad.json: must be a JSON object"),
        (vec![("0002_bad.json", "{\"steps\": [], \"extra\": 1}".into())], "0002_bad.json: unknown key \"extra\""),
        (
            vec![("0002_bad.json", json!({"steps": [{"step": "seed", "documents": []}, {"step": "explode"}]}).to_string())],
            "0002_bad.json: step 2 (explode): unknown step \"explode\"",
        ),
        (
            vec![("0002_bad.json", json!({"steps": [{"step": "createIndex", "collection": "posts", "fields": [["a", "up"], ["b", "asc"]]}]}).to_string())],
            "0002_bad.json: step 1 (createIndex): index direction 'up' is not asc or desc",
        ),
        (
            vec![("0002_bad.json", json!({"steps": [{"step": "createIndex", "collection": "posts", "fields": [["a", "asc"]], "unique": true}]}).to_string())],
            "0002_bad.json: step 1 (createIndex): unknown field \"unique\"",
        ),
        (
            vec![("0002_bad.json", json!({"steps": [{"step": "createIndex", "collection": "posts", "fields": [["a", "asc"], ["b", "asc"]], "covering": "yes"}]}).to_string())],
            "0002_bad.json: step 1 (createIndex): \"covering\" must be a boolean",
        ),
        (vec![("0003_gap.json", json!({"steps": []}).to_string())], "0003_gap.json: out of order: expected number 0002"),
        (
            vec![("0002_a.json", json!({"steps": []}).to_string()), ("0002_b.json", json!({"steps": []}).to_string())],
            "0002_b.json: number 0002 is also used by 0002_a.json",
        ),
        (vec![("02_short.json", json!({"steps": []}).to_string())], "02_short.json: not named NNNN_name.json"),
        (
            vec![("0002_bad.json", json!({"steps": [{"step": "validateSchema", "collection": "posts", "schema": {"type": "objekt"}}]}).to_string())],
            "0002_bad.json: step 1 (validateSchema): not a valid JSON Schema",
        ),
        (
            vec![("0002_bad.json", json!({"steps": [{"step": "validateSchema", "collection": "posts/p1", "schema": {}}]}).to_string())],
            "0002_bad.json: step 1 (validateSchema): 'posts/p1' is not a collection path",
        ),
        (
            vec![("0002_bad.json", json!({"steps": [{"step": "validateSchema", "collection": "posts", "schema": {}, "existing": "sometimes"}]}).to_string())],
            "0002_bad.json: step 1 (validateSchema): \"existing\" is \"ignore\" (the default) or \"check\"",
        ),
        (
            vec![("0002_bad.json", json!({"steps": [{"step": "setRules", "file": "missing.rules"}, {"step": "setHooks", "hooks": {}}]}).to_string())],
            "0002_bad.json: step 2 (setHooks): \"hooks\" must be an array",
        ),
        (
            vec![("0002_bad.json", json!({"steps": [{"step": "setRules", "file": "broken.rules"}]}).to_string())],
            "0002_bad.json: step 1 (setRules): the rules file does not parse",
        ),
        (
            vec![("0002_bad.json", json!({"steps": [{"step": "setRules", "file": "missing.rules"}]}).to_string())],
            "0002_bad.json: step 1 (setRules): rules file",
        ),
        (
            vec![("0002_bad.json", json!({"steps": [{"step": "seed", "documents": [{"path": "a", "data": {}}]}]}).to_string())],
            "0002_bad.json: step 1 (seed): document 1",
        ),
        (vec![("0002_bad.json", seed_of(501).to_string())], "0002_bad.json: step 1 (seed): 501 documents; one seed step holds at most 500"),
        (
            vec![("0002_bad.json", json!({"steps": [{"step": "transform", "collection": "posts", "set": {"n": 1}, "batchSize": 5001}]}).to_string())],
            "0002_bad.json: step 1 (transform): \"batchSize\" must be an integer from 1 to 5000",
        ),
        (
            vec![("0002_bad.json", json!({"steps": [{"step": "transform", "collection": "posts", "where": ["n", "~", 1], "set": {"n": 1}}]}).to_string())],
            "0002_bad.json: step 1 (transform): \"where\"",
        ),
        (
            vec![("0002_bad.json", json!({"steps": [{"step": "renameField", "collection": "posts", "from": "a", "to": "a.b"}]}).to_string())],
            "0002_bad.json: step 1 (renameField): \"from\" (a) and \"to\" (a.b) overlap",
        ),
        (
            vec![("0002_bad.json", json!({"steps": [{"step": "grantRole", "uid": "", "role": "r"}]}).to_string())],
            "0002_bad.json: step 1 (grantRole): uid must be 1 to 256 bytes",
        ),
    ];
    for (files, expected) in cases {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("migrations");
        let data = temp.path().join("data");
        write_json(&dir, "0001_good.json", &good);
        write(
            &dir,
            "broken.rules",
            "rules_version = '2';\nservice cloud.firestore { match /x { allow read: if ; } }\n",
        );
        for (name, contents) in &files {
            write(&dir, name, contents);
        }
        let up = migrate("up", &data, &dir).await;
        assert!(!up.status.success(), "{expected}: applied");
        let stderr = String::from_utf8_lossy(&up.stderr).to_string();
        assert!(
            stderr.starts_with("error: migrations refused; nothing was applied:"),
            "{stderr}"
        );
        assert!(
            stderr
                .lines()
                .any(|line| line.trim_start().starts_with(expected)),
            "expected a line starting with {expected:?} in:\n{stderr}"
        );
        // Nothing was applied: not the good migration's seed, not even the server's own.
        let meta = exported_meta(&data).await;
        assert!(
            meta.keys().all(|k| !k.starts_with("migrations.")),
            "{expected}: {meta:?}"
        );
        assert!(exported_documents(&data).await.is_empty(), "{expected}");
    }
}

#[tokio::test]
async fn a_transform_killed_mid_run_resumes_and_applies_each_document_exactly_once() {
    const DOCUMENTS: usize = 20_000;
    let server = TestServer::start().await;
    let writes: Vec<Json> = (0..DOCUMENTS)
        .map(|i| json!({"op": "set", "path": format!("items/i{i:05}"), "data": {"n": 0, "k": i}}))
        .collect();
    for chunk in writes.chunks(500) {
        let response = server.batch(json!({ "writes": chunk })).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    }
    let mut server = server;
    server.kill9().await;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("migrations");
    write_json(
        &dir,
        "0001_bump.json",
        &json!({"steps": [
            {"step": "seed", "documents": [{"path": "marks/before", "data": {"ok": true}}]},
            {"step": "transform", "collection": "items", "set": {"n": {"$increment": 1}}, "batchSize": 100},
            {"step": "seed", "documents": [{"path": "marks/after", "data": {"ok": true}}]}
        ]}),
    );

    // Run `serve --migrations` and SIGKILL it once a good part of the batches committed.
    let mut child = tokio::process::Command::new(hearth_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&server.data_dir)
        .arg("--migrations")
        .arg(&dir)
        .env("HEARTH_SERVICE_KEY", SERVICE_KEY)
        .env("RUST_LOG", "warn,hearth::migrate=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut batches = 0;
    let killed = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("migration batch committed") {
                batches += 1;
                if batches == 60 {
                    return true;
                }
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(killed, "the transform did not run batches");
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    // Interrupted: the first seed and part of the transform are in, the last seed is not.
    let status = migrate("status", &server.data_dir, &dir).await;
    let stdout = String::from_utf8_lossy(&status.stdout).to_string();
    let app_line = stdout.lines().find(|l| l.starts_with("app")).unwrap();
    assert!(app_line.contains("interrupted at step 2"), "{stdout}");
    let documents = exported_documents(&server.data_dir).await;
    let bumped = documents
        .iter()
        .filter(|(path, d)| path.starts_with("items/") && d["data"]["n"] == 1)
        .count();
    assert!((6_000..DOCUMENTS).contains(&bumped), "{bumped} bumped");
    assert!(documents.contains_key("marks/before"));
    assert!(!documents.contains_key("marks/after"));

    // The restarted server resumes; every item is bumped exactly once.
    let server = TestServer::start_in(&server.data_dir.clone(), migrations_env(&dir)).await;
    let count = server
        .query(json!({"from": "items", "where": ["n", "==", 1], "aggregate": {"count": true}}))
        .await;
    assert_eq!(
        count.body["aggregates"]["count"],
        json!(DOCUMENTS),
        "{}",
        count.text
    );
    let others = server
        .query(json!({"from": "items", "where": ["n", "!=", 1], "aggregate": {"count": true}}))
        .await;
    assert_eq!(others.body["aggregates"]["count"], json!(0));
    assert_eq!(get_data(&server, "marks/after").await, json!({"ok": true}));
}

#[tokio::test]
async fn set_hooks_installs_hooks_that_fire_and_a_bad_definition_refuses_the_run() {
    use hearth_tests::function::{FunctionServer, Reply};
    let receiver = FunctionServer::start(|_| Reply::Json(200, json!({"allow": true})))
        .await
        .unwrap();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("migrations");
    write_json(
        &dir,
        "0001_hooks.json",
        &json!({"steps": [
            {"step": "setHooks", "hooks": [
                {"name": "audit", "events": ["document.create"], "match": "posts/{id}", "mode": "after",
                 "url": receiver.url("/audit"), "secret": secret},
                {"name": "check", "events": ["document.create"], "match": "posts/{id}", "mode": "before",
                 "url": receiver.url("/check"), "secret": secret, "timeoutMs": 2000}
            ]}
        ]}),
    );
    let mut server = TestServer::start_with(migrations_env(&dir)).await;
    let hooks = server
        .send(server.admin(Method::GET, "/v1/admin/hooks"))
        .await;
    let mut names: Vec<&str> = hooks.body["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, vec!["audit", "check"]);
    let created = server.put_doc("posts/h1", json!({"n": 1})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let calls = receiver.wait_for_calls(2, Duration::from_secs(10)).await;
    let mut paths: Vec<String> = calls
        .iter()
        .map(|c| c.json()["type"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            "dev.hearth.document.beforeCreate",
            "dev.hearth.document.created"
        ]
    );

    // A later migration with a bad hook definition is refused whole: its seed does not apply.
    write_json(
        &dir,
        "0002_bad_hook.json",
        &json!({"steps": [
            {"step": "seed", "documents": [{"path": "marks/m", "data": {}}]},
            {"step": "setHooks", "hooks": [{"name": "broken", "events": ["document.explode"], "match": "posts/{id}",
              "mode": "after", "url": "ftp://nowhere", "secret": secret}]}
        ]}),
    );
    server.kill9().await;
    let up = migrate("up", &server.data_dir, &dir).await;
    assert!(!up.status.success());
    let stderr = String::from_utf8_lossy(&up.stderr).to_string();
    assert!(
        stderr.lines().any(|l| l
            .trim_start()
            .starts_with("0002_bad_hook.json: step 2 (setHooks): hook 1:")),
        "{stderr}"
    );
    assert!(!exported_documents(&server.data_dir)
        .await
        .contains_key("marks/m"));

    // Hook definitions travel with an export.
    std::fs::remove_file(dir.join("0002_bad_hook.json")).unwrap();
    let out = temp.path().join("export");
    let export = run_hearth(
        &[
            "export",
            out.to_str().unwrap(),
            "--data-dir",
            server.data_dir.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(export.status.success(), "{}", text(&export));
    let imported = temp.path().join("imported");
    let import = run_hearth(
        &[
            "import",
            out.to_str().unwrap(),
            "--data-dir",
            imported.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(import.status.success(), "{}", text(&import));
    let copy = TestServer::start_in(&imported, migrations_env(&dir)).await;
    let copied = copy.send(copy.admin(Method::GET, "/v1/admin/hooks")).await;
    let restarted = TestServer::start_in(&server.data_dir, migrations_env(&dir)).await;
    let original = restarted
        .send(restarted.admin(Method::GET, "/v1/admin/hooks"))
        .await;
    assert_eq!(copied.body, original.body);
}

#[tokio::test]
async fn a_data_step_that_would_break_a_schema_stops_names_the_documents_and_resumes_after_a_fix() {
    let server = TestServer::start().await;
    let writes: Vec<Json> = (0..30)
        .map(|i| json!({"op": "set", "path": format!("posts/p{i:02}"), "data": {"n": i}}))
        .collect();
    server.batch(json!({ "writes": writes })).await;
    server.put_doc("posts/p07", json!({"n": "seven"})).await;
    let mut server = server;
    server.kill9().await;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("migrations");
    write_json(
        &dir,
        "0001_typed.json",
        &json!({"steps": [
            {"step": "validateSchema", "collection": "posts", "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            {"step": "transform", "collection": "posts", "set": {"checked": true}, "batchSize": 5}
        ]}),
    );
    let data_dir = server.data_dir.clone();
    let failed = migrate("up", &data_dir, &dir).await;
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr).to_string();
    assert!(
        stderr.lines().any(|line| line
            == "error: 0001_typed.json: step 2 (transform) failed: documents would break their schema:"),
        "{stderr}"
    );
    assert!(stderr.contains("posts/p07 /n:"), "{stderr}");
    // The batches before the offending one are in; the schema step is applied.
    let documents = exported_documents(&server.data_dir).await;
    assert_eq!(
        documents["posts/p04"]["data"],
        json!({"n": 4, "checked": true})
    );
    assert_eq!(documents["posts/p09"]["data"], json!({"n": 9}));

    // Fix the data, run again: the migration resumes and finishes.
    server.restart().await;
    let fixed = server.put_doc("posts/p07", json!({"n": 7})).await;
    assert_eq!(fixed.status, StatusCode::OK, "{}", fixed.text);
    server.kill9().await;
    let resumed = migrate("up", &data_dir, &dir).await;
    assert!(resumed.status.success(), "{}", text(&resumed));
    let documents = exported_documents(&data_dir).await;
    for i in 0..30 {
        assert_eq!(
            documents[&format!("posts/p{i:02}")]["data"],
            json!({"n": i, "checked": true}),
            "posts/p{i:02}"
        );
    }
}

#[tokio::test]
async fn validate_schema_with_existing_check_refuses_while_stored_documents_break_it() {
    let server = TestServer::start().await;
    server.put_doc("posts/ok", json!({"owner": "u1"})).await;
    server.put_doc("posts/bad1", json!({"owner": 1})).await;
    server.put_doc("posts/bad2", json!({})).await;
    let mut server = server;
    server.kill9().await;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("migrations");
    write_json(
        &dir,
        "0001_strict.json",
        &json!({"steps": [
            {"step": "seed", "documents": [{"path": "marks/m", "data": {}}]},
            {"step": "validateSchema", "collection": "posts", "existing": "check",
             "schema": {"type": "object", "required": ["owner"], "properties": {"owner": {"type": "string"}}}}
        ]}),
    );
    let data_dir = server.data_dir.clone();
    let refused = migrate("up", &data_dir, &dir).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr).to_string();
    let listed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("  posts/"))
        .map(str::trim)
        .collect();
    assert_eq!(
        listed,
        vec![
            "posts/bad1 /owner: 1 is not of type \"string\"",
            "posts/bad2 /: \"owner\" is a required property"
        ],
        "{stderr}"
    );
    // The whole group is unapplied: not even the seed before the schema step.
    assert!(!exported_documents(&data_dir).await.contains_key("marks/m"));

    server.restart().await;
    server.put_doc("posts/bad1", json!({"owner": "u2"})).await;
    server.delete_doc("posts/bad2").await;
    server.kill9().await;
    let applied = migrate("up", &data_dir, &dir).await;
    assert!(applied.status.success(), "{}", text(&applied));
    let restarted = TestServer::start_in(&data_dir, Vec::new()).await;
    let refused = restarted.put_doc("posts/new", json!({"owner": 3})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(get_data(&restarted, "marks/m").await, json!({}));
}

#[tokio::test]
async fn a_seed_that_breaks_a_schema_of_its_own_migration_refuses_the_whole_transaction() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("migrations");
    let data = temp.path().join("data");
    write_json(
        &dir,
        "0001_strict.json",
        &json!({"steps": [
            {"step": "createIndex", "collection": "posts", "fields": [["owner", "asc"], ["n", "asc"]]},
            {"step": "validateSchema", "collection": "posts", "schema": {"type": "object", "required": ["owner"]}},
            {"step": "seed", "documents": [{"path": "posts/fine", "data": {"owner": "u1"}}, {"path": "posts/broken", "data": {"n": 1}}]}
        ]}),
    );
    let up = migrate("up", &data, &dir).await;
    assert!(!up.status.success());
    let stderr = String::from_utf8_lossy(&up.stderr).to_string();
    assert!(
        stderr.lines().any(|l| {
            l
            == "error: 0001_strict.json: step 3 (seed) failed: documents would break their schema:"
        }),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l == "  posts/broken /: \"owner\" is a required property"),
        "{stderr}"
    );
    // One transaction: no index, no schema, no document, no record.
    let server = TestServer::start_in(&data, Vec::new()).await;
    let indexes = server
        .send(server.admin(Method::GET, "/v1/admin/indexes"))
        .await;
    assert_eq!(indexes.body["indexes"], json!([]));
    let schemas = server
        .send(server.admin(Method::GET, "/v1/admin/schemas"))
        .await;
    assert_eq!(schemas.body["schemas"], json!({}));
    assert_eq!(
        server.get_doc("posts/fine").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn migrations_apply_through_the_admin_api_while_clients_write_and_listen() {
    use hearth_tests::realtime::RealtimeClient;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("migrations");
    write_json(&dir, "0001_empty.json", &json!({"steps": []}));
    let server = TestServer::start_with(migrations_env(&dir)).await;
    let writes: Vec<Json> = (0..2_000)
        .map(|i| json!({"op": "set", "path": format!("posts/p{i:04}"), "data": {"n": i}}))
        .collect();
    for chunk in writes.chunks(500) {
        assert_eq!(
            server.batch(json!({ "writes": chunk })).await.status,
            StatusCode::OK
        );
    }
    let mut listener = RealtimeClient::connect(&server.url).await.unwrap();
    listener.auth(SERVICE_KEY).await.unwrap();
    listener
        .subscribe_doc("d", "posts/p0001", None)
        .await
        .unwrap();
    assert_eq!(listener.next_message().await.unwrap()["type"], "snapshot");

    // Deploy: a new file, then the call. Clients keep writing meanwhile.
    write_json(
        &dir,
        "0002_owners.json",
        &json!({"steps": [
            {"step": "setDefault", "collection": "posts", "field": "owner", "value": "nobody", "batchSize": 100},
            {"step": "validateSchema", "collection": "posts", "existing": "check",
             "schema": {"type": "object", "required": ["owner"]}}
        ]}),
    );
    let writer_url = server.url.clone();
    let writer = tokio::spawn(async move {
        let client = reqwest::Client::new();
        for i in 0..200 {
            let response = client
                .put(format!(
                    "{writer_url}/v1/docs/posts/p{:04}",
                    (i * 7) % 2_000
                ))
                .bearer_auth(SERVICE_KEY)
                .json(&json!({"n": i, "owner": "writer"}))
                .send()
                .await
                .unwrap();
            assert!(
                response.status().is_success(),
                "{}",
                response.text().await.unwrap()
            );
        }
    });
    let up = server
        .send(server.admin(Method::POST, "/v1/admin/migrations/up"))
        .await;
    writer.await.unwrap();
    assert_eq!(up.status, StatusCode::OK, "{}", up.text);
    assert_eq!(up.body, json!({"applied": ["app/0002_owners.json"]}));
    // Every document has an owner: the default, or the writer's.
    let owned = server
        .query(json!({"from": "posts", "where": ["owner", "in", ["nobody", "writer"]], "aggregate": {"count": true}}))
        .await;
    assert_eq!(owned.body["aggregates"]["count"], json!(2_000));
    // The schema is live without a restart, and the listener heard the data step's change.
    assert_eq!(
        server.put_doc("posts/x", json!({"n": 1})).await.status,
        StatusCode::BAD_REQUEST
    );
    let change = listener.next_message().await.unwrap();
    assert_eq!(change["type"], "changes", "{change}");
    assert_eq!(
        change["changes"][0]["doc"]["data"]["owner"],
        json!("nobody")
    );

    let again = server
        .send(server.admin(Method::POST, "/v1/admin/migrations/up"))
        .await;
    assert_eq!(again.body, json!({"applied": []}));

    // A bad file is refused with its problems; nothing of it applies.
    write_json(
        &dir,
        "0003_bad.json",
        &json!({"steps": [{"step": "seed", "documents": [{"path": "marks/m", "data": {}}]}, {"step": "nope"}]}),
    );
    let refused = server
        .send(server.admin(Method::POST, "/v1/admin/migrations/up"))
        .await;
    assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(refused.error_code(), "failed_precondition");
    assert_eq!(
        refused.body["error"]["details"]["problems"],
        json!(["0003_bad.json: step 2 (nope): unknown step \"nope\"; known: createIndex, dropIndex, setRules, setHooks, grantRole, revokeRole, seed, validateSchema, renameField, setDefault, deleteField, transform"])
    );
    assert_eq!(
        server.get_doc("marks/m").await.status,
        StatusCode::NOT_FOUND
    );
}
