//! A real HTTP function server for hook tests: a tokio listener speaking plain HTTP/1.1 that
//! records every call and answers as the test says — including the bad answers a real
//! function can give (garbage, huge bodies, redirects, hanging forever).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value as Json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// One call as the function saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    /// Lower-case header names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// When the whole request had arrived.
    pub received_at: std::time::SystemTime,
}

impl Call {
    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or(Json::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// How the function answers.
#[derive(Debug, Clone)]
pub enum Reply {
    Json(u16, Json),
    /// Any status and body, sent as they are.
    Raw(u16, Vec<u8>),
    /// A `302` to another place.
    Redirect(String),
    /// Waits, then answers.
    Delay(Duration, Box<Reply>),
    /// Never answers (keeps the connection open).
    Hang,
    /// Closes the connection without answering.
    Close,
}

type Handler = dyn Fn(&Call) -> Reply + Send + Sync;

pub struct FunctionServer {
    pub port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    handler: Arc<Mutex<Arc<Handler>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FunctionServer {
    /// Starts on a free port; `handler` decides each answer.
    pub async fn start(
        handler: impl Fn(&Call) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<FunctionServer> {
        FunctionServer::start_on(0, Arc::new(handler)).await
    }

    async fn start_on(port: u16, handler: Arc<Handler>) -> std::io::Result<FunctionServer> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(Mutex::new(handler));
        let task = tokio::spawn(accept_loop(listener, calls.clone(), handler.clone()));
        Ok(FunctionServer {
            port,
            calls,
            handler,
            task,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// How many calls arrived (cheaper than `calls()` while polling).
    pub fn call_count(&self) -> usize {
        self.calls.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Changes the answers from now on.
    pub fn set_handler(&self, handler: impl Fn(&Call) -> Reply + Send + Sync + 'static) {
        if let Ok(mut slot) = self.handler.lock() {
            *slot = Arc::new(handler);
        }
    }

    /// Stops listening: calls now fail with "connection refused".
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Listens again on the same port, keeping the recorded calls.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.task.abort();
        // The aborted task drops its listener asynchronously; retry the bind briefly.
        let mut last_error = None;
        for _ in 0..50 {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => {
                    self.task = tokio::spawn(accept_loop(
                        listener,
                        self.calls.clone(),
                        self.handler.clone(),
                    ));
                    return Ok(());
                }
                Err(err) => last_error = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("cannot bind")))
    }

    /// Waits until `count` calls arrived (or `timeout` passed) and returns them.
    pub async fn wait_for_calls(&self, count: usize, timeout: Duration) -> Vec<Call> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.call_count() >= count || tokio::time::Instant::now() >= deadline {
                return self.calls();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for FunctionServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    calls: Arc<Mutex<Vec<Call>>>,
    handler: Arc<Mutex<Arc<Handler>>>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // Answers go out in one write; without this, Nagle and delayed ACKs add ~40 ms.
        let _ = stream.set_nodelay(true);
        let calls = calls.clone();
        let handler = handler.clone();
        // Connections die with the server task (JoinSet aborts them on drop).
        connections.spawn(async move {
            let _ = serve_connection(stream, calls, handler).await;
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    calls: Arc<Mutex<Vec<Call>>>,
    handler: Arc<Mutex<Arc<Handler>>>,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    loop {
        let Some(call) = read_request(&mut stream, &mut buffer).await? else {
            return Ok(());
        };
        if let Ok(mut list) = calls.lock() {
            list.push(call.clone());
        }
        let handler = handler
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .clone();
        let mut reply = handler(&call);
        loop {
            match reply {
                Reply::Delay(pause, next) => {
                    tokio::time::sleep(pause).await;
                    reply = *next;
                }
                Reply::Hang => {
                    tokio::time::sleep(Duration::from_secs(3_600)).await;
                    return Ok(());
                }
                Reply::Close => return Ok(()),
                Reply::Json(status, body) => {
                    let bytes = serde_json::to_vec(&body).unwrap_or_default();
                    write_response(
                        &mut stream,
                        status,
                        &[("content-type", "application/json")],
                        &bytes,
                    )
                    .await?;
                    break;
                }
                Reply::Raw(status, body) => {
                    write_response(
                        &mut stream,
                        status,
                        &[("content-type", "text/plain")],
                        &body,
                    )
                    .await?;
                    break;
                }
                Reply::Redirect(location) => {
                    write_response(&mut stream, 302, &[("location", location.as_str())], b"")
                        .await?;
                    break;
                }
            }
        }
    }
}

async fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Option<Call>> {
    let header_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body_start = header_end + 4;
    while buffer.len() < body_start + length {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[body_start..body_start + length].to_vec();
    buffer.drain(..body_start + length);
    Ok(Some(Call {
        path,
        headers,
        body,
        received_at: std::time::SystemTime::now(),
    }))
}

async fn write_response(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    // A caller that stops reading a large body makes this fail, which is fine.
    stream.write_all(&message).await?;
    stream.flush().await
}
