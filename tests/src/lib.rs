//! Test support: start the real `hearth` binary on a free port with a fresh data dir, and talk
//! to it over HTTP as a client would. Used by the end-to-end tests and the load tool.

// A test harness fails loudly: a broken setup must stop the test, not be handled.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

pub mod function;
pub mod realtime;
pub mod realtime_load;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The service key every test server runs with.
pub const SERVICE_KEY: &str = "test-service-key-0123456789";

/// Where the `hearth` binary is: `HEARTH_BIN`, or next to this test's own target directory.
pub fn hearth_binary() -> PathBuf {
    if let Ok(path) = std::env::var("HEARTH_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("hearth")
}

/// A running server process and a client bound to it.
pub struct TestServer {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
    /// Keeps the temporary data dir alive as long as the server value.
    _temp: Option<tempfile::TempDir>,
    pub http: reqwest::Client,
    extra_env: Vec<(String, String)>,
}

impl TestServer {
    /// Starts a server on a fresh temporary data dir.
    pub async fn start() -> TestServer {
        Self::start_with(Vec::new()).await
    }

    /// Starts a server with extra environment variables (e.g. `HEARTH_LIMITS__MAX_BODY_BYTES`).
    pub async fn start_with(env: Vec<(String, String)>) -> TestServer {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut server = Self::start_in(&data_dir, env).await;
        server._temp = Some(temp);
        server
    }

    /// Starts a server on an existing data dir (for restart and crash tests).
    pub async fn start_in(data_dir: &Path, env: Vec<(String, String)>) -> TestServer {
        let mut server = TestServer {
            child: None,
            url: String::new(),
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                // Below the server's keep-alive (actix's 5 s): a connection idle longer may be
                // closing on the server's side just as the client reuses it.
                .pool_idle_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            extra_env: env,
        };
        server.launch().await;
        server
    }

    async fn launch(&mut self) {
        std::fs::create_dir_all(&self.data_dir).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))
            .expect("log file");
        let binary = hearth_binary();
        let mut command = Command::new(&binary);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&self.data_dir)
            .env("HEARTH_SERVICE_KEY", SERVICE_KEY)
            .env("RUST_LOG", "warn")
            .envs(self.extra_env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (build it with `cargo build --bin hearth`)",
                binary.display()
            )
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("listening on ") {
                    return Some(url.trim().to_string());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "server did not report 'listening on'; see {}",
                self.data_dir.with_extension("log").display()
            )
        });
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.url = url;
        self.child = Some(child);
    }

    /// Stops the process abruptly (SIGKILL), as a power cut or OOM kill would.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Sends SIGTERM and waits for a graceful exit; returns the exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = child.id()?;
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .ok()?
            .ok()?;
        status.code()
    }

    /// Starts the server again on the same data dir.
    pub async fn restart(&mut self) {
        self.kill9().await;
        self.launch().await;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// A request with the service key.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(SERVICE_KEY)
    }

    /// A request with no credentials.
    pub fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url))
    }

    pub async fn put_doc(&self, path: &str, data: Json) -> Response {
        Response::from(
            self.admin(Method::PUT, &format!("/v1/docs/{path}"))
                .json(&data)
                .send()
                .await,
        )
        .await
    }

    pub async fn get_doc(&self, path: &str) -> Response {
        Response::from(
            self.admin(Method::GET, &format!("/v1/docs/{path}"))
                .send()
                .await,
        )
        .await
    }

    pub async fn patch_doc(&self, path: &str, data: Json) -> Response {
        Response::from(
            self.admin(Method::PATCH, &format!("/v1/docs/{path}"))
                .json(&data)
                .send()
                .await,
        )
        .await
    }

    pub async fn delete_doc(&self, path: &str) -> Response {
        Response::from(
            self.admin(Method::DELETE, &format!("/v1/docs/{path}"))
                .send()
                .await,
        )
        .await
    }

    pub async fn post_doc(&self, collection: &str, data: Json) -> Response {
        Response::from(
            self.admin(Method::POST, &format!("/v1/docs/{collection}"))
                .json(&data)
                .send()
                .await,
        )
        .await
    }

    pub async fn query(&self, body: Json) -> Response {
        Response::from(
            self.admin(Method::POST, "/v1/query")
                .json(&body)
                .send()
                .await,
        )
        .await
    }

    pub async fn batch(&self, body: Json) -> Response {
        Response::from(
            self.admin(Method::POST, "/v1/batch")
                .json(&body)
                .send()
                .await,
        )
        .await
    }

    pub async fn send(&self, request: RequestBuilder) -> Response {
        Response::from(request.send().await).await
    }
}

/// A response read whole: status, headers and body (JSON when it parses).
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Json,
}

impl Response {
    pub async fn from(result: reqwest::Result<reqwest::Response>) -> Response {
        let response = result.expect("request failed to reach the server");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Json::Null);
        Response {
            status,
            headers,
            text,
            body,
        }
    }

    /// The `error.code` of an error body.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Settings for auth tests: rate limits high enough that only the rate-limit tests meet them.
pub fn auth_env() -> Vec<(String, String)> {
    vec![
        (
            "HEARTH_AUTH__RATE_LIMIT_PER_IP_PER_MINUTE".into(),
            "1000000".into(),
        ),
        (
            "HEARTH_AUTH__RATE_LIMIT_PER_ACCOUNT_PER_MINUTE".into(),
            "1000000".into(),
        ),
    ]
}

impl TestServer {
    /// A request with a bearer token (an access token, or anything to test rejection).
    pub fn bearer(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token)
    }

    /// `PUT /v1/admin/hooks/{name}` with the service key.
    pub async fn put_hook(&self, name: &str, definition: Json) -> Response {
        self.send(
            self.admin(Method::PUT, &format!("/v1/admin/hooks/{name}"))
                .json(&definition),
        )
        .await
    }

    /// An access token for `uid`, minted with the service key (`POST /v1/admin/tokens`).
    pub async fn token_for(&self, uid: &str) -> String {
        let minted = self
            .send(
                self.admin(Method::POST, "/v1/admin/tokens")
                    .json(&serde_json::json!({ "uid": uid })),
            )
            .await;
        assert_eq!(minted.status, StatusCode::OK, "{}", minted.text);
        minted.body["accessToken"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `POST /v1/auth/signup`.
    pub async fn signup(&self, email: &str, password: &str) -> Response {
        self.send(
            self.anonymous(Method::POST, "/v1/auth/signup")
                .json(&serde_json::json!({"email": email, "password": password})),
        )
        .await
    }

    /// `POST /v1/auth/login`.
    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.send(
            self.anonymous(Method::POST, "/v1/auth/login")
                .json(&serde_json::json!({"email": email, "password": password})),
        )
        .await
    }

    /// `POST /v1/auth/refresh`.
    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.send(
            self.anonymous(Method::POST, "/v1/auth/refresh")
                .json(&serde_json::json!({"refreshToken": refresh_token})),
        )
        .await
    }

    /// `GET /v1/auth/user` with an access token.
    pub async fn current_user(&self, access_token: &str) -> Response {
        self.send(self.bearer(Method::GET, "/v1/auth/user", access_token))
            .await
    }
}

/// The `accessToken` and `refreshToken` of a sign-in answer.
pub fn tokens_of(response: &Response) -> (String, String) {
    let access = response.body["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("no accessToken in {}", response.text))
        .to_string();
    let refresh = response.body["refreshToken"]
        .as_str()
        .unwrap_or_else(|| panic!("no refreshToken in {}", response.text))
        .to_string();
    (access, refresh)
}

/// A real SMTP server (`tests/smtp_sink.py`, aiosmtpd) that stores every message it receives
/// as a file, for tests that follow verification and reset mails.
pub struct SmtpSink {
    _child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

/// The Python that has aiosmtpd: `HEARTH_TEST_PYTHON`, else `python3` or the system one.
fn python_with_aiosmtpd() -> String {
    if let Ok(python) = std::env::var("HEARTH_TEST_PYTHON") {
        return python;
    }
    for candidate in ["python3", "/usr/bin/python3"] {
        let ok = std::process::Command::new(candidate)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return candidate.to_string();
        }
    }
    panic!("no python3 with aiosmtpd: install python3-aiosmtpd (scripts/test does)");
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let dir = tempfile::tempdir().expect("mail dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp_sink.py");
        let mut child = Command::new(python_with_aiosmtpd())
            .arg(&script)
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the SMTP sink");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(port) = line.strip_prefix("listening ") {
                    return port.trim().parse::<u16>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("the SMTP sink did not start");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        SmtpSink {
            _child: child,
            dir,
            port,
        }
    }

    /// Server settings that send mail to this sink.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = auth_env();
        env.push(("HEARTH_AUTH__SMTP_HOST".into(), "127.0.0.1".into()));
        env.push(("HEARTH_AUTH__SMTP_PORT".into(), self.port.to_string()));
        env
    }

    /// Every stored message (raw text), oldest first.
    pub fn messages(&self) -> Vec<String> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("mail dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("mail file"))
            .collect()
    }

    /// Messages whose envelope recipient is `to`.
    pub fn messages_to(&self, to: &str) -> Vec<String> {
        let header = format!("X-Envelope-To: {to}\r\n");
        self.messages()
            .into_iter()
            .filter(|m| m.starts_with(&header))
            .collect()
    }

    /// Waits for the `count`-th message to `to` and returns the token it carries.
    pub async fn wait_for_token(&self, to: &str, count: usize) -> String {
        for _ in 0..200 {
            let messages = self.messages_to(to);
            if messages.len() >= count {
                return token_in_mail(&messages[count - 1])
                    .unwrap_or_else(|| panic!("no token in mail: {}", messages[count - 1]));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no mail number {count} to {to} arrived");
    }
}

/// The value of the `token: ` line of a mail body.
pub fn token_in_mail(mail: &str) -> Option<String> {
    mail.lines()
        .find_map(|line| line.trim().strip_prefix("token: "))
        .map(|t| t.trim().to_string())
}

/// Runs the `hearth` binary with `args` (a CLI command, not `serve`) and waits for it.
pub async fn run_hearth(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(hearth_binary())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .env_remove("HEARTH_DATA_DIR")
        .env_remove("HEARTH_MIGRATIONS")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run the hearth binary")
}
