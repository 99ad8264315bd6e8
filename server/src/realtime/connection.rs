//! One WebSocket connection: authentication (first message, re-auth, expiry), subscriptions
//! with their views, the heartbeat, and the limits of DESIGN.md §5. Everything a connection
//! sends goes out in order from this one task; commits arrive from the hub on a bounded queue.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError, Session};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use super::hub::{Event, Hub, Kill, KillSwitch};
use super::index::{ConnId, Placement};
use super::protocol::{self, ClientMessage, Target, WireChange};
use super::record::ChangeRecord;
use super::view::{result_at, Entry, ResultError, Spec, View};
use crate::docs::query::Query;
use crate::docs::{Access, DocsError};
use crate::error::ApiError;
use crate::model::DocPath;

/// How long a closing connection waits for room to queue its close frame (a stalled reader may
/// never make room); then the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(15);

/// Who is on the other end, once authenticated.
#[derive(Clone)]
pub enum Principal {
    /// The service key: rules do not apply.
    Admin,
    /// Signed out (`token: null`): judged by the rules with `request.auth == null`.
    Anonymous,
    User {
        auth: hearth_rules::Auth,
        /// `exp` of the access token (Unix seconds).
        expires_at: Option<i64>,
    },
}

impl Principal {
    fn uid(&self) -> Option<&str> {
        match self {
            Principal::Admin | Principal::Anonymous => None,
            Principal::User { auth, .. } => Some(&auth.uid),
        }
    }
}

/// Checks a token from an `auth` message: the service key or an access token. The API layer
/// provides it, so realtime does not depend on how callers are identified.
pub type Authenticator = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<Principal, String>> + Send>> + Send + Sync,
>;

enum SubState {
    /// Registered with the hub, first result still being computed: commits wait here.
    Pending(Vec<Arc<ChangeRecord>>),
    Live,
}

struct Subscription {
    name: String,
    spec: Arc<Spec>,
    placement: Placement,
    view: View,
    state: SubState,
}

/// The first result of a subscription, computed off the executor.
struct Initial {
    local: u32,
    outcome: Result<Opening, ApiError>,
}

enum Opening {
    Snapshot {
        entries: Vec<Entry>,
        version: u64,
    },
    Resume {
        old: Vec<Entry>,
        new: Vec<Entry>,
        version: u64,
    },
}

/// The connection ended; the socket is closed (or gone).
struct Closed;

struct Connection {
    hub: Arc<Hub>,
    id: ConnId,
    session: Session,
    kill: Arc<KillSwitch>,
    principal: Option<Principal>,
    /// When the current token expires (subscriptions end then unless re-authenticated).
    expires: Option<tokio::time::Instant>,
    subscriptions: HashMap<u32, Subscription>,
    by_name: HashMap<String, u32>,
    next_local: u32,
    /// Boxed: an idle connection keeps only pointers in the channel's first block.
    initial_tx: mpsc::UnboundedSender<Box<Initial>>,
}

fn close_reason(code: CloseCode, description: &str) -> Option<CloseReason> {
    Some(CloseReason {
        code,
        description: Some(description.to_string()),
    })
}

/// Serves one upgraded socket until it closes.
pub async fn serve(
    hub: Arc<Hub>,
    authenticate: Authenticator,
    session: Session,
    stream: actix_ws::MessageStream,
) {
    let settings = hub.settings.clone();
    let mut stream = stream
        .max_frame_size(settings.max_frame_bytes)
        .aggregate_continuations()
        .max_continuation_size(settings.max_frame_bytes);
    let (id, mut events, kill) = hub.connect();
    let (initial_tx, mut initial_rx) = mpsc::unbounded_channel();
    let mut connection = Connection {
        hub: hub.clone(),
        id,
        session: session.clone(),
        kill: kill.clone(),
        principal: None,
        expires: None,
        subscriptions: HashMap::new(),
        by_name: HashMap::new(),
        next_local: 1,
        initial_tx,
    };
    let ping_interval = Duration::from_secs(settings.ping_interval_secs.max(1));
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    let mut last_heard = Instant::now();
    let auth_deadline =
        tokio::time::Instant::now() + Duration::from_secs(settings.auth_timeout_secs);
    let mut authenticated_once = false;
    let close: Option<CloseReason> = loop {
        let deadline = if !authenticated_once {
            auth_deadline
        } else {
            connection
                .expires
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400))
        };
        tokio::select! {
            biased;
            _ = kill.notify.notified() => break connection.killed_reason(),
            frame = stream.next() => {
                last_heard = Instant::now();
                let outcome = match frame {
                    None | Some(Ok(AggregatedMessage::Close(_))) => break None,
                    Some(Err(ProtocolError::Overflow)) => {
                        break close_reason(CloseCode::Size, "frame larger than the limit");
                    }
                    Some(Err(_)) => break close_reason(CloseCode::Protocol, "WebSocket protocol error"),
                    Some(Ok(AggregatedMessage::Text(text))) => {
                        let was = connection.principal.is_some();
                        let result = connection.on_text(&text, &authenticate).await;
                        if !was && connection.principal.is_some() {
                            authenticated_once = true;
                        }
                        result
                    }
                    Some(Ok(AggregatedMessage::Binary(_))) => {
                        connection
                            .send(protocol::error(None, "invalid_argument", "frames must be text (JSON)"))
                            .await
                    }
                    Some(Ok(AggregatedMessage::Ping(bytes))) => {
                        connection.session.pong(&bytes).await.map_err(|_| Closed)
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => Ok(()),
                };
                if outcome.is_err() {
                    break connection.killed_reason();
                }
            }
            Some(event) = events.recv() => {
                if connection.on_event(event).await.is_err() {
                    break connection.killed_reason();
                }
            }
            Some(initial) = initial_rx.recv() => {
                if connection.on_initial(initial).await.is_err() {
                    break connection.killed_reason();
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > ping_interval * 2 {
                    break close_reason(CloseCode::Away, "no answer to pings");
                }
                if connection.session.ping(b"").await.is_err() {
                    break None;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if !authenticated_once {
                    break close_reason(CloseCode::Policy, "no auth message in time");
                }
                if connection.expire().await.is_err() {
                    break connection.killed_reason();
                }
            }
        }
    };
    let placements = connection
        .subscriptions
        .drain()
        .map(|(local, s)| (local, s.placement))
        .collect();
    hub.disconnect(id, placements);
    let session = connection.session;
    // A stalled reader may never take the close frame: give up on it after a while.
    let _ = tokio::time::timeout(CLOSE_GRACE, session.close(close)).await;
}

impl Connection {
    fn killed_reason(&self) -> Option<CloseReason> {
        match self.kill.reason() {
            Some(Kill::SlowConsumer) => close_reason(
                CloseCode::Other(4008),
                "slow consumer: resubscribe with resumeFrom",
            ),
            Some(Kill::Shutdown) => close_reason(CloseCode::Away, "server shutting down"),
            None => None,
        }
    }

    /// Sends one message, giving up when the hub kills the connection meanwhile.
    async fn send(&mut self, text: String) -> Result<(), Closed> {
        if self.kill.reason().is_some() {
            return Err(Closed);
        }
        let kill = self.kill.clone();
        tokio::select! {
            sent = self.session.text(text) => {
                sent.map_err(|_| Closed)?;
                self.hub.metrics.realtime.messages_out.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            _ = kill.notify.notified() => Err(Closed),
        }
    }

    async fn on_text(&mut self, text: &str, authenticate: &Authenticator) -> Result<(), Closed> {
        let message = match ClientMessage::parse(text) {
            Ok(message) => message,
            Err(err) => {
                return self
                    .send(protocol::error(err.id.as_deref(), err.code, &err.message))
                    .await
            }
        };
        match message {
            ClientMessage::Ping => self.send(protocol::pong()).await,
            ClientMessage::Auth { token } => {
                let principal = match token {
                    Some(token) => authenticate(token).await,
                    None => Ok(Principal::Anonymous),
                };
                match principal {
                    Ok(principal) => {
                        let changed_user = self
                            .principal
                            .as_ref()
                            .is_some_and(|p| p.uid() != principal.uid());
                        if changed_user {
                            self.end_all(
                                "unauthenticated",
                                "the identity changed; subscribe again",
                            )
                            .await?;
                        }
                        self.expires = match &principal {
                            Principal::User {
                                expires_at: Some(exp),
                                ..
                            } => {
                                let left = exp.saturating_sub(
                                    crate::model::Timestamp::now().micros() / 1_000_000,
                                );
                                Some(
                                    tokio::time::Instant::now()
                                        + Duration::from_secs(left.max(0) as u64),
                                )
                            }
                            _ => None,
                        };
                        let ready = protocol::ready(principal.uid());
                        self.principal = Some(principal);
                        self.send(ready).await
                    }
                    Err(message) => {
                        self.send(protocol::error(None, "unauthenticated", &message))
                            .await
                    }
                }
            }
            ClientMessage::Unsubscribe { id } => {
                if let Some(local) = self.by_name.remove(&id) {
                    if let Some(sub) = self.subscriptions.remove(&local) {
                        self.hub.unsubscribe((self.id, local), &sub.placement);
                    }
                }
                Ok(())
            }
            ClientMessage::Subscribe {
                id,
                target,
                resume_from,
            } => self.subscribe(id, target, resume_from).await,
        }
    }

    fn access(&self) -> Option<Access> {
        match self.principal.as_ref()? {
            Principal::Admin => Some(Access::as_admin()),
            Principal::Anonymous => Some(Access::Client {
                rules: self.hub.docs.rules(),
                auth: None,
                roles: self.hub.roles.clone(),
            }),
            Principal::User { auth, .. } => Some(Access::Client {
                rules: self.hub.docs.rules(),
                auth: Some(auth.clone()),
                roles: self.hub.roles.clone(),
            }),
        }
    }

    async fn subscribe(
        &mut self,
        name: String,
        target: Target,
        resume_from: Option<u64>,
    ) -> Result<(), Closed> {
        let Some(access) = self.access() else {
            return self
                .send(protocol::error(
                    Some(&name),
                    "unauthenticated",
                    "send an auth message first",
                ))
                .await;
        };
        if self.by_name.contains_key(&name) {
            return self
                .send(protocol::error(
                    Some(&name),
                    "already_exists",
                    "a subscription with this id is active; this request is refused and the active one continues",
                ))
                .await;
        }
        let limit = self.hub.settings.max_subscriptions_per_connection;
        if self.subscriptions.len() >= limit {
            return self
                .send(protocol::error(
                    Some(&name),
                    "rate_limited",
                    &format!("at most {limit} subscriptions per connection"),
                ))
                .await;
        }
        let spec = match parse_target(&target, self.hub.docs.limits().max_page_size) {
            Ok(spec) => Arc::new(spec),
            Err(message) => {
                return self
                    .send(protocol::error(Some(&name), "invalid_argument", &message))
                    .await
            }
        };
        let placement = match spec.as_ref() {
            Spec::Doc(path) => Placement::of_doc(path),
            Spec::Query { query, .. } => Placement::of_query(query),
        };
        let local = self.next_local;
        self.next_local += 1;
        // Filed first, computed second: every commit after the first result's version reaches
        // the subscription (earlier ones wait in `Pending` and are dropped as already seen).
        self.hub.subscribe((self.id, local), &placement);
        self.by_name.insert(name.clone(), local);
        self.subscriptions.insert(
            local,
            Subscription {
                name,
                spec: spec.clone(),
                placement,
                view: View::default(),
                state: SubState::Pending(Vec::new()),
            },
        );
        let hub = self.hub.clone();
        let done = self.initial_tx.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = opening(&hub, &spec, &access, resume_from);
            let _ = done.send(Box::new(Initial { local, outcome }));
        });
        Ok(())
    }

    async fn on_initial(&mut self, initial: Box<Initial>) -> Result<(), Closed> {
        let Some(sub) = self.subscriptions.get_mut(&initial.local) else {
            return Ok(()); // Unsubscribed meanwhile.
        };
        let opening = match initial.outcome {
            Ok(opening) => opening,
            Err(err) => {
                return self
                    .end_with_error(initial.local, err.code.as_str(), &err.message)
                    .await;
            }
        };
        let (message, version) = match opening {
            Opening::Snapshot { entries, version } => {
                sub.view = View::new(entries);
                let docs: Vec<Arc<str>> = sub
                    .view
                    .visible(&sub.spec)
                    .map(|e| sub.spec.render(&e.state))
                    .collect();
                (
                    protocol::snapshot(&sub.name, version, docs.iter().map(|d| d.as_ref())),
                    version,
                )
            }
            Opening::Resume { old, new, version } => {
                sub.view = View::new(old);
                let changes = sub.view.replace(&sub.spec, new);
                (protocol::changes(&sub.name, version, &changes), version)
            }
        };
        let waiting = match std::mem::replace(&mut sub.state, SubState::Live) {
            SubState::Pending(records) => records,
            SubState::Live => Vec::new(),
        };
        self.send(message).await?;
        for record in waiting.into_iter().filter(|r| r.version > version) {
            self.apply(initial.local, &record).await?;
        }
        Ok(())
    }

    async fn on_event(&mut self, event: Event) -> Result<(), Closed> {
        for local in event.subscriptions {
            let Some(sub) = self.subscriptions.get_mut(&local) else {
                continue;
            };
            if let SubState::Pending(waiting) = &mut sub.state {
                waiting.push(event.record.clone());
                continue;
            }
            self.apply(local, &event.record).await?;
        }
        Ok(())
    }

    /// Applies one commit to one live subscription and sends what changed.
    async fn apply(&mut self, local: u32, record: &Arc<ChangeRecord>) -> Result<(), Closed> {
        let access = self.access();
        let Some(sub) = self.subscriptions.get_mut(&local) else {
            return Ok(());
        };
        let mut changes: Vec<WireChange> = Vec::new();
        let mut refill = false;
        for change in record.changes.iter().filter(|c| sub.spec.touches(&c.path)) {
            if let (Spec::Doc(path), Some(access)) = (sub.spec.as_ref(), &access) {
                if !matches!(access, Access::Admin) {
                    // Inline rather than on the blocking pool: one rules evaluation whose
                    // lookups (if any) hit pages a commit just wrote, and keeping it in this
                    // task keeps the connection's messages in commit order.
                    let allowed = self
                        .hub
                        .store
                        .read()
                        .map_err(DocsError::from)
                        .and_then(|view| {
                            access.check_get(
                                view.as_ref(),
                                path,
                                change.after.as_ref().map(|a| &a.document),
                            )
                        });
                    if let Err(err) = allowed {
                        let err = ApiError::from(err);
                        return self
                            .end_with_error(local, err.code.as_str(), &err.message)
                            .await;
                    }
                }
            }
            let applied = sub.view.apply(&sub.spec, change);
            changes.extend(applied.changes);
            refill |= applied.needs_refill;
        }
        if refill {
            let hub = self.hub.clone();
            let spec = sub.spec.clone();
            let version = record.version;
            let refilled = tokio::task::spawn_blocking(move || {
                let view = hub.store.read().map_err(DocsError::from)?;
                result_at(&hub.docs, view.as_ref(), &spec, Some(version))
            })
            .await;
            match refilled {
                Ok(Ok((entries, _))) => changes.extend(sub.view.replace(&sub.spec, entries)),
                other => {
                    let message = match other {
                        Ok(Err(err)) => err.to_string(),
                        Err(err) => err.to_string(),
                        Ok(Ok(_)) => String::new(),
                    };
                    tracing::error!(error = %message, "realtime could not refill a limited view");
                    return self
                        .end_with_error(local, "internal", "internal error")
                        .await;
                }
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        let message = protocol::changes(&sub.name, record.version, &changes);
        self.send(message).await
    }

    async fn end(&mut self, local: u32) {
        if let Some(sub) = self.subscriptions.remove(&local) {
            self.by_name.remove(&sub.name);
            self.hub.unsubscribe((self.id, local), &sub.placement);
        }
    }

    /// Ends the subscription and tells the client why, under the subscription's id.
    async fn end_with_error(
        &mut self,
        local: u32,
        code: &str,
        message: &str,
    ) -> Result<(), Closed> {
        let Some(name) = self.subscriptions.get(&local).map(|s| s.name.clone()) else {
            return Ok(());
        };
        self.end(local).await;
        self.send(protocol::error(Some(&name), code, message)).await
    }

    async fn end_all(&mut self, code: &str, message: &str) -> Result<(), Closed> {
        let locals: Vec<u32> = self.subscriptions.keys().copied().collect();
        for local in locals {
            self.end_with_error(local, code, message).await?;
        }
        Ok(())
    }

    /// The token expired without a fresh one: every subscription ends with `unauthenticated`.
    async fn expire(&mut self) -> Result<(), Closed> {
        self.expires = None;
        self.principal = None;
        self.end_all(
            "unauthenticated",
            "the access token expired; send a fresh token and subscribe again",
        )
        .await
    }
}

fn parse_target(target: &Target, max_limit: usize) -> Result<Spec, String> {
    match target {
        Target::Doc(path) => DocPath::parse(path).map(Spec::Doc).map_err(|e| e.message),
        Target::Query(body) => {
            let query = Query::from_json(body, max_limit).map_err(|e| e.to_string())?;
            if query.aggregate.is_some() {
                return Err("a subscription cannot aggregate".into());
            }
            if query.page_token.is_some() {
                return Err("a subscription cannot take a pageToken".into());
            }
            Ok(Spec::query(query))
        }
    }
}

/// Checks access and computes the first result: a snapshot, or the changes since `resume_from`
/// when the change log still covers it.
fn opening(
    hub: &Hub,
    spec: &Spec,
    access: &Access,
    resume_from: Option<u64>,
) -> Result<Opening, ApiError> {
    let view = hub.store.read().map_err(DocsError::from)?;
    match spec {
        Spec::Doc(path) => {
            let stored = crate::docs::read_documents(view.as_ref(), std::slice::from_ref(path))?
                .pop()
                .flatten();
            access.check_get(view.as_ref(), path, stored.as_ref())?;
        }
        Spec::Query { query, .. } => access.check_list(view.as_ref(), query)?,
    }
    let (new, version) = result_at(&hub.docs, view.as_ref(), spec, None).map_err(result_error)?;
    if let Some(from) = resume_from.filter(|from| *from <= version) {
        match result_at(&hub.docs, view.as_ref(), spec, Some(from)) {
            Ok((old, _)) => return Ok(Opening::Resume { old, new, version }),
            Err(ResultError::NotCovered(_)) => {}
            Err(err) => return Err(result_error(err)),
        }
    }
    Ok(Opening::Snapshot {
        entries: new,
        version,
    })
}

fn result_error(err: ResultError) -> ApiError {
    match err {
        ResultError::Docs(err) => err.into(),
        ResultError::NotCovered(_) => ApiError::internal(&err),
    }
}
