//! Hooks (DESIGN.md §6) against real HTTP function servers: `before` hooks that allow, replace
//! or reject; every way a function can fail; `after` triggers delivered at least once, in order,
//! across a receiver outage and a SIGKILL of the server.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hearth_tests::function::{Call, FunctionServer, Reply};
use hearth_tests::{auth_env, tokens_of, TestServer};
use hmac::{Hmac, Mac as _};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn hook(url: &str, mode: &str, events: &[&str], pattern: &str) -> Json {
    json!({"events": events, "match": pattern, "mode": mode, "url": url,
           "secret": SECRET, "timeoutMs": 1000})
}

/// Checks the Standard Webhooks signature the way the reference libraries do.
fn assert_signed(call: &Call) {
    let id = call.header("webhook-id").expect("webhook-id");
    let timestamp = call.header("webhook-timestamp").expect("webhook-timestamp");
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&call.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(call.header("webhook-signature"), Some(expected.as_str()));
    let age = time_now() - timestamp.parse::<i64>().unwrap();
    assert!(
        (0..60).contains(&age),
        "timestamp {timestamp} is not current"
    );
    assert_eq!(
        call.header("content-type"),
        Some("application/cloudevents+json")
    );
    assert_eq!(call.json()["id"], id, "webhook-id is the event id");
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The after-document data the function was asked about.
fn proposed(call: &Call) -> Json {
    call.json()["data"]["after"]["data"].clone()
}

#[tokio::test]
async fn hook_definitions_are_validated_stored_and_never_show_their_secret() {
    let server = TestServer::start().await;
    let bad = server
        .put_hook(
            "bad",
            json!({"events": ["document.explode"], "mode": "before", "url": "ftp://x",
                   "secret": "not-a-secret", "timeoutMs": 999999, "match": "posts"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert_eq!(bad.error_code(), "invalid_argument");
    let problems = bad.body["error"]["details"]["errors"].as_array().unwrap();
    for field in ["events", "url", "secret", "timeoutMs", "match"] {
        assert!(
            problems
                .iter()
                .any(|p| p.as_str().unwrap().starts_with(field)),
            "{field} missing from {problems:?}"
        );
    }

    let created = server
        .put_hook(
            "validate-post",
            hook(
                "http://127.0.0.1:9/x",
                "before",
                &["document.create"],
                "posts/{id}",
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["secret"], "whsec_****LaSw");
    assert_eq!(created.body["onFailure"], "reject");
    let listed = server
        .send(server.admin(Method::GET, "/v1/admin/hooks"))
        .await;
    assert_eq!(listed.body["hooks"][0]["name"], "validate-post");
    assert!(!listed.text.contains(SECRET));

    // Replacing without a secret keeps the stored one.
    let mut replacement = hook(
        "http://127.0.0.1:9/y",
        "before",
        &["document.update"],
        "posts/{id}",
    );
    replacement.as_object_mut().unwrap().remove("secret");
    let replaced = server.put_hook("validate-post", replacement).await;
    assert!(replaced.status.is_success(), "{}", replaced.text);
    assert_eq!(replaced.body["secret"], "whsec_****LaSw");
    assert_eq!(replaced.body["url"], "http://127.0.0.1:9/y");

    let anonymous = server
        .send(server.anonymous(Method::GET, "/v1/admin/hooks"))
        .await;
    assert_eq!(anonymous.status, StatusCode::FORBIDDEN);

    let deleted = server
        .send(server.admin(Method::DELETE, "/v1/admin/hooks/validate-post"))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = server
        .send(server.admin(Method::GET, "/v1/admin/hooks/validate-post"))
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    // The write path no longer calls it (the URL is dead: a call would fail with 503).
    let write = server.put_doc("posts/p1", json!({"title": "ok"})).await;
    assert!(write.status.is_success(), "{}", write.text);
}

#[tokio::test]
async fn before_hooks_allow_replace_or_reject_writes_and_rules_judge_the_replacement() {
    let function = FunctionServer::start(|call| {
        let data = proposed(call);
        match data["title"].as_str() {
            Some("spam") => Reply::Json(200, json!({"allow": false, "message": "no spam, please"})),
            Some("shout") => Reply::Json(
                200,
                json!({"allow": true, "data": {"title": "SHOUT", "owner": data["owner"], "checked": true}}),
            ),
            Some("steal") => Reply::Json(
                200,
                json!({"allow": true, "data": {"title": "stolen", "owner": "someone-else"}}),
            ),
            _ => Reply::Json(200, json!({"allow": true})),
        }
    })
    .await
    .unwrap();
    let rules = r#"rules_version = '2';
service cloud.firestore {
  match /databases/{database}/documents {
    match /posts/{id} {
      allow read: if true;
      allow create, update: if request.auth != null && request.resource.data.owner == request.auth.uid;
    }
  }
}"#;
    let dir = tempfile::tempdir().unwrap();
    let rules_file = dir.path().join("firestore.rules");
    std::fs::write(&rules_file, rules).unwrap();
    let mut env = auth_env();
    env.push(("HEARTH_RULES".into(), rules_file.display().to_string()));
    let server = TestServer::start_with(env).await;
    let created = server
        .put_hook(
            "validate-post",
            hook(
                &function.url("/validate"),
                "before",
                &["document.create", "document.update"],
                "posts/{id}",
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let signup = server
        .signup("writer@example.com", "correct horse battery")
        .await;
    let (token, _) = tokens_of(&signup);
    let uid = signup.body["user"]["uid"].as_str().unwrap().to_string();
    let put = |path: &str, data: Json| {
        server.send(
            server
                .bearer(Method::PUT, &format!("/v1/docs/{path}"), &token)
                .json(&data),
        )
    };

    let allowed = put("posts/a", json!({"title": "hello", "owner": uid})).await;
    assert!(allowed.status.is_success(), "{}", allowed.text);

    let rejected = put("posts/b", json!({"title": "spam", "owner": uid})).await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(rejected.error_code(), "hook_rejected");
    assert_eq!(rejected.body["error"]["message"], "no spam, please");
    assert_eq!(
        server.get_doc("posts/b").await.status,
        StatusCode::NOT_FOUND
    );

    let replaced = put("posts/c", json!({"title": "shout", "owner": uid})).await;
    assert!(replaced.status.is_success(), "{}", replaced.text);
    assert_eq!(replaced.body["data"]["title"], "SHOUT");
    assert_eq!(
        server.get_doc("posts/c").await.body["data"],
        json!({"title": "SHOUT", "owner": uid, "checked": true})
    );

    // The replacement hands the post to someone else: the rules deny the result.
    let stolen = put("posts/d", json!({"title": "steal", "owner": uid})).await;
    assert_eq!(stolen.status, StatusCode::FORBIDDEN, "{}", stolen.text);
    assert_eq!(
        server.get_doc("posts/d").await.status,
        StatusCode::NOT_FOUND
    );

    // An update is a beforeUpdate with the stored document as `before`.
    let updated = put("posts/a", json!({"title": "edited", "owner": uid})).await;
    assert!(updated.status.is_success(), "{}", updated.text);

    let calls = function.calls();
    assert_eq!(calls.len(), 5);
    for call in &calls {
        assert_signed(call);
        let event = call.json();
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(event["data"]["auth"]["uid"], uid);
        assert_eq!(event["data"]["auth"]["token"]["sub"], uid);
        assert!(event["time"].as_str().unwrap().ends_with('Z'));
    }
    let first = calls[0].json();
    assert_eq!(first["type"], "dev.hearth.document.beforeCreate");
    assert_eq!(first["source"], "/hearth/docs/posts/a");
    assert_eq!(first["subject"], "posts/a");
    assert_eq!(first["data"]["before"], Json::Null);
    let last = calls[4].json();
    assert_eq!(last["type"], "dev.hearth.document.beforeUpdate");
    assert_eq!(last["data"]["before"]["data"]["title"], "hello");
    assert_eq!(last["data"]["after"]["data"]["title"], "edited");
    let ids: std::collections::HashSet<_> = calls.iter().map(|c| c.json()["id"].clone()).collect();
    assert_eq!(ids.len(), 5, "every call has its own event id");
}

#[tokio::test]
async fn in_a_batch_every_write_must_be_allowed_and_hooks_run_in_their_order() {
    let first = FunctionServer::start(|call| {
        if proposed(call)["n"] == 3 {
            Reply::Json(
                200,
                json!({"allow": false, "message": "three is not allowed"}),
            )
        } else {
            let mut data = proposed(call);
            data["stamp"] = json!(["first"]);
            Reply::Json(200, json!({"allow": true, "data": data}))
        }
    })
    .await
    .unwrap();
    let second = FunctionServer::start(|call| {
        let mut data = proposed(call);
        data["stamp"].as_array_mut().unwrap().push(json!("second"));
        Reply::Json(200, json!({"allow": true, "data": data}))
    })
    .await
    .unwrap();
    let server = TestServer::start().await;
    // Names sort the other way round: `order` decides.
    let mut a = hook(
        &first.url("/"),
        "before",
        &["document.create"],
        "items/{id}",
    );
    a["order"] = json!(1);
    let mut b = hook(
        &second.url("/"),
        "before",
        &["document.create"],
        "items/{id}",
    );
    b["order"] = json!(2);
    assert_eq!(
        server.put_hook("z-first", a).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        server.put_hook("a-second", b).await.status,
        StatusCode::CREATED
    );

    let refused = server
        .batch(json!({"writes": [
            {"op": "create", "path": "items/1", "data": {"n": 1}},
            {"op": "create", "path": "items/3", "data": {"n": 3}},
        ]}))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    assert_eq!(refused.body["error"]["details"]["hook"], "z-first");
    assert_eq!(
        server.get_doc("items/1").await.status,
        StatusCode::NOT_FOUND
    );

    let accepted = server
        .batch(json!({"writes": [
            {"op": "create", "path": "items/1", "data": {"n": 1}},
            {"op": "set", "path": "items/2", "data": {"n": 2}},
        ]}))
        .await;
    assert!(accepted.status.is_success(), "{}", accepted.text);
    for id in ["1", "2"] {
        assert_eq!(
            server.get_doc(&format!("items/{id}")).await.body["data"]["stamp"],
            json!(["first", "second"])
        );
    }
}

#[tokio::test]
async fn every_failure_of_a_function_gets_the_documented_handling_within_the_timeout() {
    let function = FunctionServer::start(|call| match call.path.as_str() {
        "/hang" => Reply::Hang,
        "/slow" => Reply::Delay(
            Duration::from_millis(300),
            Box::new(Reply::Json(200, json!({"allow": true}))),
        ),
        "/garbage" => Reply::Raw(200, b"<html>surprise</html>".to_vec()),
        "/no-allow" => Reply::Json(200, json!({"ok": true})),
        "/huge" => Reply::Raw(200, vec![b' '; 30 << 20]),
        "/redirect" => Reply::Redirect("http://127.0.0.1:9/elsewhere".into()),
        "/404" => Reply::Json(404, json!({"allow": true})),
        "/500" => Reply::Json(500, json!({"allow": true})),
        "/close" => Reply::Close,
        "/bad-data" => Reply::Json(200, json!({"allow": true, "data": {"$bad": 1}})),
        _ => Reply::Json(200, json!({"allow": true})),
    })
    .await
    .unwrap();
    let server = TestServer::start_with(vec![(
        "HEARTH_HOOKS__BREAKER_FAILURES".into(),
        "1000".into(),
    )])
    .await;
    let dead_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cases: Vec<(&str, String)> = vec![
        ("hang", function.url("/hang")),
        ("garbage", function.url("/garbage")),
        ("no-allow", function.url("/no-allow")),
        ("huge", function.url("/huge")),
        ("redirect", function.url("/redirect")),
        ("404", function.url("/404")),
        ("500", function.url("/500")),
        ("close", function.url("/close")),
        ("bad-data", function.url("/bad-data")),
        ("down", format!("http://127.0.0.1:{dead_port}/gone")),
    ];
    for (i, (case, url)) in cases.iter().enumerate() {
        for on_failure in ["reject", "allow"] {
            let collection = format!("c{i}{on_failure}");
            let mut definition = hook(
                url,
                "before",
                &["document.create"],
                &format!("{collection}/{{id}}"),
            );
            definition["timeoutMs"] = json!(500);
            definition["onFailure"] = json!(on_failure);
            let name = format!("h{i}-{on_failure}");
            assert_eq!(
                server.put_hook(&name, definition).await.status,
                StatusCode::CREATED
            );
            let started = Instant::now();
            let response = server
                .put_doc(&format!("{collection}/doc"), json!({"case": case}))
                .await;
            let took = started.elapsed();
            assert!(
                took < Duration::from_millis(2_000),
                "{case}: answered after {took:?}"
            );
            if on_failure == "reject" {
                assert_eq!(
                    response.status,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "{case}: {}",
                    response.text
                );
                assert_eq!(response.error_code(), "unavailable");
                assert!(
                    response.body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains(&name),
                    "{case}: {}",
                    response.text
                );
                assert_eq!(
                    server.get_doc(&format!("{collection}/doc")).await.status,
                    StatusCode::NOT_FOUND,
                    "{case}: nothing written"
                );
            } else {
                assert!(response.status.is_success(), "{case}: {}", response.text);
                assert_eq!(response.body["data"]["case"], *case);
            }
        }
    }
    // A slow function within its timeout is fine.
    assert_eq!(
        server
            .put_hook(
                "slow",
                hook(
                    &function.url("/slow"),
                    "before",
                    &["document.create"],
                    "slow/{id}"
                )
            )
            .await
            .status,
        StatusCode::CREATED
    );
    assert!(server
        .put_doc("slow/1", json!({}))
        .await
        .status
        .is_success());
    // Redirects are not followed: the target never got a call.
    assert!(function.calls().iter().all(|c| c.path != "/elsewhere"));
    let metrics = server.send(server.anonymous(Method::GET, "/metrics")).await;
    for line in [
        "hearth_hook_calls_total{hook=\"h0-reject\",mode=\"before\",outcome=\"timeout\"} 1",
        "hearth_hook_calls_total{hook=\"h3-reject\",mode=\"before\",outcome=\"too_large\"} 1",
        "hearth_hook_calls_total{hook=\"h4-reject\",mode=\"before\",outcome=\"status\"} 1",
        "hearth_hook_calls_total{hook=\"slow\",mode=\"before\",outcome=\"ok\"} 1",
        "hearth_hook_call_duration_seconds_count{hook=\"slow\"} 1",
    ] {
        assert!(metrics.text.contains(line), "missing {line}");
    }
}

#[tokio::test]
async fn a_failing_function_opens_the_breaker_and_calls_fail_fast_until_it_recovers() {
    let function = FunctionServer::start(|_| Reply::Json(500, json!({})))
        .await
        .unwrap();
    let server = TestServer::start_with(vec![
        ("HEARTH_HOOKS__BREAKER_FAILURES".into(), "3".into()),
        ("HEARTH_HOOKS__BREAKER_COOLDOWN_MS".into(), "1000".into()),
    ])
    .await;
    server
        .put_hook(
            "flaky",
            hook(&function.url("/"), "before", &["document.create"], "b/{id}"),
        )
        .await;
    for i in 0..3 {
        let response = server.put_doc(&format!("b/{i}"), json!({})).await;
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(function.calls().len(), 3);
    let open = server.put_doc("b/open", json!({})).await;
    assert_eq!(open.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(open.text.contains("circuit breaker"), "{}", open.text);
    assert_eq!(function.calls().len(), 3, "an open breaker makes no call");
    let metrics = server.send(server.anonymous(Method::GET, "/metrics")).await;
    assert!(metrics
        .text
        .contains("hearth_hook_breaker_state{hook=\"flaky\"} 1"));

    function.set_handler(|_| Reply::Json(200, json!({"allow": true})));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let recovered = server.put_doc("b/after", json!({})).await;
    assert!(recovered.status.is_success(), "{}", recovered.text);
    let metrics = server.send(server.anonymous(Method::GET, "/metrics")).await;
    assert!(metrics
        .text
        .contains("hearth_hook_breaker_state{hook=\"flaky\"} 0"));
}

#[tokio::test]
async fn auth_hooks_can_refuse_sign_ups_and_sign_ins_and_report_them_afterwards() {
    let gate = FunctionServer::start(|call| {
        let email = call.json()["data"]["after"]["email"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if email.ends_with("@blocked.example") {
            Reply::Json(
                200,
                json!({"allow": false, "message": "this domain may not sign up"}),
            )
        } else if email.starts_with("banned") {
            Reply::Json(200, json!({"allow": false, "message": "banned"}))
        } else {
            Reply::Json(200, json!({"allow": true}))
        }
    })
    .await
    .unwrap();
    let audit = FunctionServer::start(|_| Reply::Json(204, json!(null)))
        .await
        .unwrap();
    let server = TestServer::start_with(auth_env()).await;
    let mut signup_gate = hook(&gate.url("/signup"), "before", &["auth.signup"], "x/{y}");
    signup_gate.as_object_mut().unwrap().remove("match");
    server.put_hook("signup-gate", signup_gate).await;
    let mut login_gate = hook(&gate.url("/login"), "before", &["auth.login"], "x/{y}");
    login_gate.as_object_mut().unwrap().remove("match");
    server.put_hook("login-gate", login_gate).await;
    let mut audit_hook = hook(
        &audit.url("/audit"),
        "after",
        &["auth.signup", "auth.login"],
        "x/{y}",
    );
    audit_hook.as_object_mut().unwrap().remove("match");
    assert_eq!(
        server.put_hook("audit", audit_hook).await.status,
        StatusCode::CREATED
    );

    let blocked = server
        .signup("eve@blocked.example", "correct horse battery")
        .await;
    assert_eq!(blocked.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(blocked.error_code(), "hook_rejected");
    assert_eq!(
        blocked.body["error"]["message"],
        "this domain may not sign up"
    );
    // Nothing was created: the same email is free once the hook allows it... it never will,
    // but the login says the account does not exist.
    let missing = server
        .login("eve@blocked.example", "correct horse battery")
        .await;
    assert_eq!(missing.error_code(), "invalid_credentials");

    let ok = server
        .signup("ann@example.com", "correct horse battery")
        .await;
    assert!(ok.status.is_success(), "{}", ok.text);
    let uid = ok.body["user"]["uid"].as_str().unwrap().to_string();
    let login = server
        .login("ann@example.com", "correct horse battery")
        .await;
    assert!(login.status.is_success(), "{}", login.text);

    let banned = server
        .signup("banned@example.com", "correct horse battery")
        .await;
    assert_eq!(banned.status, StatusCode::UNPROCESSABLE_ENTITY);

    let delivered = audit.wait_for_calls(2, Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 2, "one signup and one login");
    let types: Vec<Json> = delivered.iter().map(|c| c.json()["type"].clone()).collect();
    assert_eq!(
        types,
        vec![
            json!("dev.hearth.auth.signup"),
            json!("dev.hearth.auth.login")
        ]
    );
    for call in &delivered {
        assert_signed(call);
        assert_eq!(call.json()["subject"], format!("users/{uid}"));
        assert_eq!(call.json()["data"]["after"]["email"], "ann@example.com");
        assert!(call.json()["data"]["after"].get("passwordHash").is_none());
    }
    let gate_types: Vec<Json> = gate
        .calls()
        .iter()
        .map(|c| c.json()["type"].clone())
        .collect();
    assert_eq!(
        gate_types,
        vec![
            json!("dev.hearth.auth.signup"),
            json!("dev.hearth.auth.signup"),
            json!("dev.hearth.auth.login"),
            json!("dev.hearth.auth.signup")
        ]
    );
}

/// Events received per document, in arrival order, keyed by event id.
fn successful_by_subject(calls: &[Call], ok_ids: &[String]) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for call in calls {
        let event = call.json();
        let id = event["id"].as_str().unwrap().to_string();
        if ok_ids.contains(&id) && seen.insert(id) {
            out.entry(event["subject"].as_str().unwrap().to_string())
                .or_default()
                .push(
                    event["data"]["after"]["data"]["n"]
                        .as_u64()
                        .unwrap_or(u64::MAX),
                );
        }
    }
    out
}

#[tokio::test]
async fn triggers_survive_a_receiver_outage_in_order_under_one_id_each() {
    // The receiver fails everything at first, then recovers.
    let receiver = FunctionServer::start(|_| Reply::Json(503, json!({})))
        .await
        .unwrap();
    let server = TestServer::start_with(vec![
        ("HEARTH_HOOKS__RETRY_BASE_MS".into(), "100".into()),
        ("HEARTH_HOOKS__RETRY_MAX_MS".into(), "400".into()),
        ("HEARTH_HOOKS__BREAKER_FAILURES".into(), "1000".into()),
    ])
    .await;
    server
        .put_hook(
            "trigger",
            hook(
                &receiver.url("/events"),
                "after",
                &["document.create", "document.update", "document.delete"],
                "counters/{id}",
            ),
        )
        .await;
    let mut versions = HashMap::new();
    for n in 0..10u64 {
        for doc in ["a", "b", "c"] {
            let response = server
                .put_doc(&format!("counters/{doc}"), json!({"n": n}))
                .await;
            assert!(response.status.is_success());
            versions.insert((doc, n), response.body["version"].as_u64().unwrap());
        }
    }
    server.delete_doc("counters/c").await;
    // Not delivered: other paths.
    server.put_doc("other/x", json!({"n": 1})).await;

    tokio::time::sleep(Duration::from_millis(800)).await;
    let during_outage = receiver.calls();
    assert!(!during_outage.is_empty(), "deliveries were attempted");
    let pending = server
        .send(server.admin(
            Method::GET,
            "/v1/admin/hooks/trigger/deliveries?status=pending",
        ))
        .await;
    assert_eq!(pending.body["deliveries"].as_array().unwrap().len(), 31);
    let metrics = server.send(server.anonymous(Method::GET, "/metrics")).await;
    assert!(metrics
        .text
        .contains("hearth_hook_outbox_depth{hook=\"trigger\"} 31"));

    receiver.set_handler(|_| Reply::Json(200, json!({"received": true})));
    let deadline = Instant::now() + Duration::from_secs(20);
    let ok_ids = loop {
        let delivered = server
            .send(server.admin(
                Method::GET,
                "/v1/admin/hooks/trigger/deliveries?status=delivered&limit=1000",
            ))
            .await;
        let list = delivered.body["deliveries"].as_array().unwrap().clone();
        if list.len() == 31 || Instant::now() > deadline {
            break list
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ok_ids.len(), 31, "every committed change is delivered");
    // The log pages: `next` is the `after` of the following page.
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let page = server
            .send(server.admin(
                Method::GET,
                &format!("/v1/admin/hooks/trigger/deliveries?status=delivered&limit=10{after}"),
            ))
            .await;
        for delivery in page.body["deliveries"].as_array().unwrap() {
            paged.push(delivery["id"].as_str().unwrap().to_string());
        }
        match page.body["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(paged, ok_ids, "pages cover the log once, in order");
    let calls = receiver.calls();
    for call in &calls {
        assert_signed(call);
        assert!(call.json()["subject"]
            .as_str()
            .unwrap()
            .starts_with("counters/"));
    }
    // Retries carry the same id and the same body.
    let mut bodies: HashMap<String, Vec<u8>> = HashMap::new();
    for call in &calls {
        let id = call.header("webhook-id").unwrap().to_string();
        let previous = bodies.entry(id).or_insert_with(|| call.body.clone());
        assert_eq!(*previous, call.body, "a retry changed the event");
    }
    assert_eq!(bodies.len(), 31, "one id per event, no other ids");
    // Per document, the successful deliveries arrive in commit order.
    let order = successful_by_subject(&calls, &ok_ids);
    for doc in ["a", "b"] {
        assert_eq!(
            order[&format!("counters/{doc}")],
            (0..10).collect::<Vec<u64>>()
        );
    }
    let c = &order["counters/c"];
    assert_eq!(&c[..10], &(0..10).collect::<Vec<u64>>()[..]);
    assert_eq!(c.len(), 11, "the delete comes last");
    // The after document carries the commit's version.
    let first_a = calls
        .iter()
        .map(Call::json)
        .find(|e| e["subject"] == "counters/a" && e["data"]["after"]["data"]["n"] == 0)
        .unwrap();
    assert_eq!(first_a["type"], "dev.hearth.document.created");
    assert_eq!(first_a["data"]["after"]["version"], versions[&("a", 0)]);
    let metrics = server.send(server.anonymous(Method::GET, "/metrics")).await;
    assert!(metrics
        .text
        .contains("hearth_hook_outbox_depth{hook=\"trigger\"} 0"));
}

#[tokio::test]
async fn a_sigkill_between_commit_and_delivery_still_delivers_after_restart() {
    // The receiver holds every call open: when the server dies, deliveries are in flight and
    // none has been recorded as done.
    let receiver = FunctionServer::start(|_| Reply::Hang).await.unwrap();
    let mut server = TestServer::start_with(vec![(
        "HEARTH_HOOKS__BREAKER_FAILURES".into(),
        "1000".into(),
    )])
    .await;
    let mut definition = hook(
        &receiver.url("/"),
        "after",
        &["document.create"],
        "jobs/{id}",
    );
    definition["timeoutMs"] = json!(10_000);
    server.put_hook("trigger", definition).await;
    for i in 0..50 {
        let response = server.put_doc(&format!("jobs/{i}"), json!({"n": i})).await;
        assert!(response.status.is_success());
    }
    let in_flight = receiver
        .wait_for_calls(1, Duration::from_secs(5))
        .await
        .len();
    assert!(in_flight >= 1, "deliveries started before the crash");
    server.kill9().await;
    // No call was ever answered, so all 50 must come after the restart.
    let before_restart = receiver.calls().len();
    receiver.set_handler(|_| Reply::Json(200, json!({})));
    server.restart().await;
    // Calls cut off by the crash come again (same id): every event arrives after the restart.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (calls, ids) = loop {
        let calls = receiver.calls();
        let ids: std::collections::HashSet<String> = calls
            .iter()
            .skip(before_restart)
            .map(|c| c.header("webhook-id").unwrap().to_string())
            .collect();
        if ids.len() >= 50 || Instant::now() > deadline {
            break (calls, ids);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        ids.len(),
        50,
        "every committed write is delivered once restarted"
    );
    let subjects: std::collections::HashSet<String> = calls
        .iter()
        .map(|c| c.json()["subject"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(subjects.len(), 50);
}

#[tokio::test]
async fn deliveries_that_keep_failing_are_marked_failed_and_can_be_redelivered() {
    let receiver = FunctionServer::start(|_| Reply::Json(500, json!({})))
        .await
        .unwrap();
    let server = TestServer::start_with(vec![
        ("HEARTH_HOOKS__RETRY_BASE_MS".into(), "100".into()),
        ("HEARTH_HOOKS__RETRY_WINDOW_SECS".into(), "1".into()),
        ("HEARTH_HOOKS__BREAKER_FAILURES".into(), "1000".into()),
    ])
    .await;
    server
        .put_hook(
            "trigger",
            hook(
                &receiver.url("/"),
                "after",
                &["document.create"],
                "jobs/{id}",
            ),
        )
        .await;
    server.put_doc("jobs/1", json!({"n": 1})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let failed = server
            .send(server.admin(
                Method::GET,
                "/v1/admin/hooks/trigger/deliveries?status=failed",
            ))
            .await;
        let list = failed.body["deliveries"].as_array().unwrap().clone();
        if !list.is_empty() || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed.len(), 1);
    let delivery = &failed[0];
    assert_eq!(delivery["status"], "failed");
    assert!(delivery["attempts"].as_u64().unwrap() >= 2);
    assert!(delivery["lastError"].as_str().unwrap().contains("500"));
    let id = delivery["id"].as_str().unwrap().to_string();

    receiver.set_handler(|_| Reply::Json(200, json!({})));
    let attempts_before = receiver.calls().len();
    let redelivered = server
        .send(server.admin(
            Method::POST,
            &format!("/v1/admin/hooks/trigger/deliveries/{id}/redeliver"),
        ))
        .await;
    assert_eq!(
        redelivered.status,
        StatusCode::ACCEPTED,
        "{}",
        redelivered.text
    );
    let calls = receiver
        .wait_for_calls(attempts_before + 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        calls.last().unwrap().header("webhook-id"),
        Some(id.as_str())
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let delivered = server
            .send(server.admin(
                Method::GET,
                "/v1/admin/hooks/trigger/deliveries?status=delivered",
            ))
            .await;
        if delivered.body["deliveries"][0]["id"] == json!(id) {
            break;
        }
        assert!(Instant::now() < deadline, "redelivery was not recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = server
        .send(server.admin(
            Method::POST,
            &format!("/v1/admin/hooks/trigger/deliveries/{id}/redeliver"),
        ))
        .await;
    assert_eq!(
        again.status,
        StatusCode::NOT_FOUND,
        "a delivered event is done"
    );
    let unknown = server
        .send(server.admin(
            Method::POST,
            "/v1/admin/hooks/trigger/deliveries/evt_nope/redeliver",
        ))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let bad_status = server
        .send(server.admin(
            Method::GET,
            "/v1/admin/hooks/trigger/deliveries?status=lost",
        ))
        .await;
    assert_eq!(bad_status.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_allow_list_refuses_other_hosts() {
    let server = TestServer::start_with(vec![(
        "HEARTH_HOOKS__ALLOWED_HOSTS".into(),
        "functions.internal, 127.0.0.1".into(),
    )])
    .await;
    let refused = server
        .put_hook(
            "out",
            hook(
                "https://example.com/x",
                "after",
                &["document.create"],
                "a/{b}",
            ),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.text.contains("allowed_hosts"), "{}", refused.text);
    let allowed = server
        .put_hook(
            "in",
            hook(
                "http://127.0.0.1:9/x",
                "after",
                &["document.create"],
                "a/{b}",
            ),
        )
        .await;
    assert_eq!(allowed.status, StatusCode::CREATED, "{}", allowed.text);
}

#[tokio::test]
async fn a_hook_gets_at_most_its_share_of_connections() {
    let function = FunctionServer::start(|_| {
        Reply::Delay(
            Duration::from_millis(300),
            Box::new(Reply::Json(200, json!({"allow": true}))),
        )
    })
    .await
    .unwrap();
    let server = TestServer::start_with(vec![(
        "HEARTH_HOOKS__MAX_CONCURRENCY_PER_HOOK".into(),
        "2".into(),
    )])
    .await;
    let mut definition = hook(&function.url("/"), "before", &["document.create"], "q/{id}");
    definition["timeoutMs"] = json!(5_000);
    server.put_hook("capped", definition).await;
    let paths: Vec<String> = (0..6).map(|i| format!("q/{i}")).collect();
    let writes = paths
        .iter()
        .map(|path| server.put_doc(path, json!({"at": path})));
    let responses = futures_util::future::join_all(writes).await;
    assert!(responses.iter().all(|r| r.status.is_success()));
    let calls = function.calls();
    assert_eq!(calls.len(), 6);
    // With two connections and 300 ms per call, no 250 ms window sees more than two arrivals.
    for call in &calls {
        let window_start = call.received_at - Duration::from_millis(250);
        let overlapping = calls
            .iter()
            .filter(|c| c.received_at > window_start && c.received_at <= call.received_at)
            .count();
        assert!(overlapping <= 2, "{overlapping} calls at once");
    }

    // A call that cannot get a connection within its timeout fails like any other failure.
    let mut short = hook(&function.url("/"), "before", &["document.create"], "r/{id}");
    short["timeoutMs"] = json!(400);
    server.put_hook("short", short).await;
    let paths: Vec<String> = (0..3).map(|i| format!("r/{i}")).collect();
    let writes = paths
        .iter()
        .map(|path| server.put_doc(path, json!({"at": path})));
    let responses = futures_util::future::join_all(writes).await;
    let busy: Vec<_> = responses
        .iter()
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(!busy.is_empty(), "the third call waited past its timeout");
    assert!(busy
        .iter()
        .all(|r| r.text.contains("busy") || r.text.contains("in time")));
}

#[tokio::test]
async fn before_delete_hooks_can_protect_documents_but_cannot_replace_data() {
    let function = FunctionServer::start(|call| {
        let event = call.json();
        assert_eq!(event["type"], "dev.hearth.document.beforeDelete");
        assert_eq!(event["data"]["after"], Json::Null);
        match event["data"]["before"]["data"]["state"].as_str() {
            Some("locked") => Reply::Json(200, json!({"allow": false, "message": "locked"})),
            Some("weird") => Reply::Json(200, json!({"allow": true, "data": {"x": 1}})),
            _ => Reply::Json(200, json!({"allow": true})),
        }
    })
    .await
    .unwrap();
    let server = TestServer::start().await;
    server
        .put_hook(
            "guard",
            hook(
                &function.url("/"),
                "before",
                &["document.delete"],
                "files/{id}",
            ),
        )
        .await;
    for (id, state) in [("a", "open"), ("b", "locked"), ("c", "weird")] {
        server
            .put_doc(&format!("files/{id}"), json!({"state": state}))
            .await;
    }
    assert_eq!(function.calls().len(), 0, "creates are not delete events");
    assert_eq!(
        server.delete_doc("files/a").await.status,
        StatusCode::NO_CONTENT
    );
    let locked = server.delete_doc("files/b").await;
    assert_eq!(locked.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(locked.body["error"]["message"], "locked");
    assert!(server.get_doc("files/b").await.status.is_success());
    // `data` on a delete is an invalid answer: onFailure (reject) applies.
    let weird = server.delete_doc("files/c").await;
    assert_eq!(
        weird.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        weird.text
    );
    assert!(weird.text.contains("cannot replace"), "{}", weird.text);
    assert!(server.get_doc("files/c").await.status.is_success());
    // Deleting what does not exist changes nothing, so no hook runs.
    let calls = function.calls().len();
    server.delete_doc("files/none").await;
    assert_eq!(function.calls().len(), calls);
}

#[tokio::test]
async fn the_schema_judges_the_data_a_before_hook_leaves() {
    let function = FunctionServer::start(|call| {
        let mut data = proposed(call);
        if data["title"].is_null() {
            data["title"] = json!("untitled");
        }
        if data["break"] == true {
            data["title"] = json!(42);
        }
        Reply::Json(200, json!({"allow": true, "data": data}))
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let migration = json!({"steps": [{"step": "validateSchema", "collection": "notes",
        "schema": {"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}}}]});
    std::fs::write(dir.path().join("0001_schema.json"), migration.to_string()).unwrap();
    let server = TestServer::start_with(vec![(
        "HEARTH_MIGRATIONS".into(),
        dir.path().display().to_string(),
    )])
    .await;
    server
        .put_hook(
            "defaults",
            hook(
                &function.url("/"),
                "before",
                &["document.create"],
                "notes/{id}",
            ),
        )
        .await;
    // The client's data lacks the required title; the hook supplies it.
    let filled = server.put_doc("notes/a", json!({"text": "hi"})).await;
    assert!(filled.status.is_success(), "{}", filled.text);
    assert_eq!(filled.body["data"]["title"], "untitled");
    // The hook's replacement breaks the schema: refused, nothing stored.
    let broken = server
        .put_doc("notes/b", json!({"title": "ok", "break": true}))
        .await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST, "{}", broken.text);
    assert!(broken.text.contains("title"), "{}", broken.text);
    assert_eq!(
        server.get_doc("notes/b").await.status,
        StatusCode::NOT_FOUND
    );
}
