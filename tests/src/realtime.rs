//! A Rust realtime client (DESIGN.md §5) over `tokio-tungstenite`, used by the end-to-end tests
//! and the load tool; `ClientView` keeps a query's ordered view from `snapshot` and `changes`
//! exactly as a client SDK must, failing loudly when an index does not match.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value as Json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What the socket said next.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Message(Json),
    /// The server closed the socket with this code (None: no close frame, or a TCP reset).
    Closed(Option<u16>),
}

pub struct RealtimeClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// `http://host:port` → `ws://host:port/v1/realtime`.
pub fn realtime_url(base: &str) -> String {
    let rest = base
        .strip_prefix("http://")
        .map(|r| format!("ws://{r}"))
        .or_else(|| base.strip_prefix("https://").map(|r| format!("wss://{r}")))
        .unwrap_or_else(|| base.to_string());
    format!("{}/v1/realtime", rest.trim_end_matches('/'))
}

impl RealtimeClient {
    pub async fn connect(base: &str) -> anyhow::Result<RealtimeClient> {
        Self::connect_with(base, None).await
    }

    /// Connects sending an `Origin` header.
    pub async fn connect_with(base: &str, origin: Option<&str>) -> anyhow::Result<RealtimeClient> {
        let mut request = realtime_url(base).into_client_request()?;
        if let Some(origin) = origin {
            request.headers_mut().insert("Origin", origin.parse()?);
        }
        // Frames larger than the server allows must be sendable, to test the limit. A small
        // read buffer: tungstenite zeroes the whole buffer on every read (the 128 KiB default
        // made memset the load tool's top cost with 10,000 sockets).
        let config = WebSocketConfig::default()
            .max_frame_size(Some(64 << 20))
            .max_message_size(Some(64 << 20))
            .read_buffer_size(8 * 1024);
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
        Ok(RealtimeClient { socket })
    }

    pub async fn send_text(&mut self, text: impl Into<String>) -> anyhow::Result<()> {
        self.socket.send(Message::text(text.into())).await?;
        Ok(())
    }

    pub async fn send(&mut self, message: Json) -> anyhow::Result<()> {
        self.send_text(message.to_string()).await
    }

    /// Sends `auth` and waits for `ready` (or fails with what came instead).
    pub async fn auth(&mut self, token: &str) -> anyhow::Result<Json> {
        self.send(json!({"type": "auth", "token": token})).await?;
        let reply = self.next_message().await?;
        if reply["type"] != "ready" {
            bail!("auth answered {reply}");
        }
        Ok(reply)
    }

    pub async fn subscribe_doc(
        &mut self,
        id: &str,
        path: &str,
        resume_from: Option<u64>,
    ) -> anyhow::Result<()> {
        let mut message = json!({"type": "subscribe", "id": id, "doc": path});
        if let Some(version) = resume_from {
            message["resumeFrom"] = json!(version);
        }
        self.send(message).await
    }

    pub async fn subscribe_query(
        &mut self,
        id: &str,
        query: Json,
        resume_from: Option<u64>,
    ) -> anyhow::Result<()> {
        let mut message = json!({"type": "subscribe", "id": id, "query": query});
        if let Some(version) = resume_from {
            message["resumeFrom"] = json!(version);
        }
        self.send(message).await
    }

    /// The next JSON message or close, within `timeout` (None when nothing came).
    pub async fn next_within(&mut self, timeout: Duration) -> anyhow::Result<Option<Incoming>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Ok(None),
                Ok(frame) => frame,
            };
            match frame {
                None => return Ok(Some(Incoming::Closed(None))),
                Some(Err(_)) => return Ok(Some(Incoming::Closed(None))),
                Some(Ok(Message::Text(text))) => {
                    let json: Json = serde_json::from_str(text.as_str())
                        .with_context(|| format!("server sent non-JSON text: {text}"))?;
                    return Ok(Some(Incoming::Message(json)));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ok(Some(Incoming::Closed(frame.map(|f| u16::from(f.code)))))
                }
                Some(Ok(_)) => continue, // pings are answered by tungstenite
            }
        }
    }

    /// The next text frame as it came (None once the socket closed): for the load tool, which
    /// must not spend its core parsing every frame.
    pub async fn next_text(&mut self) -> Option<String> {
        loop {
            match self.socket.next().await? {
                Ok(Message::Text(text)) => return Some(text.as_str().to_string()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The next JSON message (10 s at most); a close is an error.
    pub async fn next_message(&mut self) -> anyhow::Result<Json> {
        match self.next_within(Duration::from_secs(10)).await? {
            Some(Incoming::Message(json)) => Ok(json),
            Some(Incoming::Closed(code)) => Err(anyhow!("socket closed ({code:?})")),
            None => Err(anyhow!("no message within 10 s")),
        }
    }

    /// Waits for the socket to close and returns the close code.
    pub async fn closed_within(&mut self, timeout: Duration) -> anyhow::Result<Option<u16>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await? {
                Some(Incoming::Closed(code)) => return Ok(code),
                Some(Incoming::Message(_)) => continue,
                None => bail!("the socket stayed open"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// A client-side view of one subscription, kept from `snapshot` and `changes` messages.
#[derive(Debug, Default, Clone)]
pub struct ClientView {
    pub docs: Vec<Json>,
    pub version: u64,
}

impl ClientView {
    /// Applies a `snapshot` or `changes` message; a wrong index is an error, not a repair.
    pub fn apply(&mut self, message: &Json) -> anyhow::Result<()> {
        match message["type"].as_str() {
            Some("snapshot") => {
                self.docs = message["docs"]
                    .as_array()
                    .cloned()
                    .ok_or_else(|| anyhow!("snapshot without docs"))?;
            }
            Some("changes") => {
                for change in message["changes"]
                    .as_array()
                    .ok_or_else(|| anyhow!("changes without changes"))?
                {
                    self.apply_one(change)?;
                }
            }
            _ => bail!("not a view message: {message}"),
        }
        self.version = message["version"]
            .as_u64()
            .ok_or_else(|| anyhow!("message without version"))?;
        Ok(())
    }

    fn apply_one(&mut self, change: &Json) -> anyhow::Result<()> {
        let path = &change["doc"]["path"];
        let old = change["oldIndex"].as_i64().unwrap_or(-1);
        let new = change["newIndex"].as_i64().unwrap_or(-1);
        let kind = change["kind"].as_str().unwrap_or_default();
        if old >= 0 {
            let held = self
                .docs
                .get(old as usize)
                .ok_or_else(|| anyhow!("oldIndex {old} out of range in {change}"))?;
            if held["path"] != *path {
                bail!(
                    "oldIndex {old} holds {} but the change is for {path}",
                    held["path"]
                );
            }
            self.docs.remove(old as usize);
        } else if kind != "added" {
            bail!("{kind} without oldIndex: {change}");
        }
        if new >= 0 {
            if new as usize > self.docs.len() {
                bail!("newIndex {new} out of range in {change}");
            }
            self.docs.insert(new as usize, change["doc"].clone());
        } else if kind != "removed" {
            bail!("{kind} without newIndex: {change}");
        }
        Ok(())
    }

    pub fn paths(&self) -> Vec<String> {
        self.docs
            .iter()
            .map(|d| d["path"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}
