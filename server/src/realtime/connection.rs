//! One WebSocket connection: authentication (first message, re-auth, expiry), subscriptions
//! with their views, the heartbeat, and the limits of DESIGN.md §5. Everything a connection
//! sends goes out in order from this one task; commits arrive from the hub on a bounded queue.
//! Document subscriptions keep their own one-document view (the rules are checked on every
//! change); query subscriptions get their changes ready-rendered from the hub's shared feeds.
//! When the hub queued several commits for a query subscription in a row (the connection fell
//! behind), they go out as one `changes` message: fewer, larger frames under load.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError, Session};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use super::feed::{self, Joiner};
use super::hub::{Event, Hub, Joined};
use super::index::{ConnId, Placement};
use super::mailbox::{Kill, Mailbox};
use super::protocol::{self, ClientMessage, Target, WireChange};
use super::record::ChangeRecord;
use super::view::{result_at, Entry, ResultError, Spec, View};
use crate::docs::query::Query;
use crate::docs::{Access, DocsError};
use crate::error::ApiError;
use crate::model::DocPath;
use crate::store::changelog;

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

enum Kind {
    /// A document, with its own view: the rules are checked on every change.
    Doc {
        spec: Arc<Spec>,
        placement: Placement,
        view: View,
        state: SubState,
    },
    /// A query, served by the hub's feed for it (once access is checked).
    Query,
}

struct Subscription {
    name: String,
    kind: Kind,
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
    /// A query whose access is granted: it joins its feed.
    Query {
        spec: Arc<Spec>,
        at_least: u64,
        resume: Option<Vec<Entry>>,
    },
}

/// The connection ended; the socket is closed (or gone).
struct Closed;

struct Connection {
    hub: Arc<Hub>,
    id: ConnId,
    session: Session,
    mailbox: Arc<Mailbox>,
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
    let (id, mailbox) = hub.connect();
    let (initial_tx, mut initial_rx) = mpsc::unbounded_channel();
    let mut connection = Connection {
        hub: hub.clone(),
        id,
        session: session.clone(),
        mailbox: mailbox.clone(),
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
    // One timer for the connection's life, not one per pass: a connection under load passes
    // this loop once per batch of events.
    let never = tokio::time::Instant::now() + Duration::from_secs(30 * 365 * 86_400);
    let timer = tokio::time::sleep_until(auth_deadline);
    tokio::pin!(timer);
    let close: Option<CloseReason> = loop {
        let deadline = if !authenticated_once {
            auth_deadline
        } else {
            connection.expires.unwrap_or(never)
        };
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if mailbox.kill_reason().is_some() {
            break connection.killed_reason();
        }
        tokio::select! {
            biased;
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
            events = mailbox.take() => {
                if mailbox.kill_reason().is_some()
                    || connection.on_events(events).await.is_err()
                {
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
            _ = &mut timer => {
                if !authenticated_once {
                    break close_reason(CloseCode::Policy, "no auth message in time");
                }
                if connection.expires.is_some() && connection.expire().await.is_err() {
                    break connection.killed_reason();
                }
            }
        }
    };
    let open = connection.subscriptions.len() as i64;
    let documents = connection
        .subscriptions
        .drain()
        .filter_map(|(local, s)| match s.kind {
            Kind::Doc { placement, .. } => Some((local, placement)),
            Kind::Query => None,
        })
        .collect();
    hub.disconnect(id, documents);
    hub.metrics
        .realtime
        .subscriptions
        .fetch_sub(open, Ordering::Relaxed);
    let session = connection.session;
    // A stalled reader may never take the close frame: give up on it after a while.
    let _ = tokio::time::timeout(CLOSE_GRACE, session.close(close)).await;
}

impl Connection {
    fn killed_reason(&self) -> Option<CloseReason> {
        match self.mailbox.kill_reason() {
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
        let mailbox = self.mailbox.clone();
        // Created before the check, so a kill right after it still wakes the wait below.
        let killed = mailbox.killed.notified();
        if mailbox.kill_reason().is_some() {
            return Err(Closed);
        }
        tokio::select! {
            // The send first: the kill registration is made only when the send has to wait.
            biased;
            sent = self.session.text(text) => {
                sent.map_err(|_| Closed)?;
                self.hub.metrics.realtime.messages_out.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            _ = killed => Err(Closed),
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
                if let Some(local) = self.by_name.get(&id).copied() {
                    self.end(local);
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
        let local = self.next_local;
        self.next_local += 1;
        let kind = match spec.as_ref() {
            Spec::Doc(path) => {
                // Filed first, computed second: every commit after the first result's version
                // reaches the subscription (earlier ones wait in `Pending` and are dropped as
                // already seen).
                let placement = Placement::of_doc(path);
                self.hub.subscribe_doc(self.id, local, &placement);
                Kind::Doc {
                    spec: spec.clone(),
                    placement,
                    view: View::default(),
                    state: SubState::Pending(Vec::new()),
                }
            }
            Spec::Query { .. } => Kind::Query,
        };
        self.by_name.insert(name.clone(), local);
        self.subscriptions
            .insert(local, Subscription { name, kind });
        self.hub
            .metrics
            .realtime
            .subscriptions
            .fetch_add(1, Ordering::Relaxed);
        let hub = self.hub.clone();
        let done = self.initial_tx.clone();
        // On the fixed storage pool: many clients subscribing at once must not each start a
        // blocking thread (each keeps its stack and allocator cache resident).
        let queued = crate::store::pool::spawn(move || {
            let outcome = opening(&hub, spec, &access, resume_from);
            let _ = done.send(Box::new(Initial { local, outcome }));
        });
        match queued {
            Ok(()) => Ok(()),
            Err(err) => {
                tracing::error!(error = %err, "realtime cannot reach the storage pool");
                self.end_with_error(local, "unavailable", "the server is shutting down")
                    .await
            }
        }
    }

    async fn on_initial(&mut self, initial: Box<Initial>) -> Result<(), Closed> {
        let local = initial.local;
        let Some(sub) = self.subscriptions.get_mut(&local) else {
            return Ok(()); // Unsubscribed meanwhile.
        };
        let opening = match initial.outcome {
            Ok(opening) => opening,
            Err(err) => {
                return self
                    .end_with_error(local, err.code.as_str(), &err.message)
                    .await;
            }
        };
        let (spec, view, state) = match &mut sub.kind {
            Kind::Doc {
                spec, view, state, ..
            } => (spec.clone(), view, state),
            Kind::Query => {
                if let Opening::Query {
                    spec,
                    at_least,
                    resume,
                } = opening
                {
                    self.join_feed(local, spec, at_least, resume);
                }
                return Ok(());
            }
        };
        let (message, version) = match opening {
            Opening::Snapshot { entries, version } => {
                *view = View::new(entries);
                let docs: Vec<Arc<str>> =
                    view.visible(&spec).map(|e| spec.render(&e.state)).collect();
                (
                    protocol::snapshot(&sub.name, version, docs.iter().map(|d| d.as_ref())),
                    version,
                )
            }
            Opening::Resume { old, new, version } => {
                *view = View::new(old);
                let changes = view.replace(&spec, new);
                (protocol::changes(&sub.name, version, &changes), version)
            }
            Opening::Query { .. } => return Ok(()),
        };
        let waiting = match std::mem::replace(state, SubState::Live) {
            SubState::Pending(records) => records,
            SubState::Live => Vec::new(),
        };
        self.send(message).await?;
        for record in waiting.into_iter().filter(|r| r.version > version) {
            self.apply(local, &record).await?;
        }
        Ok(())
    }

    /// Joins the query's feed; the first message arrives from the hub. A new feed's first
    /// result is read here, off the executor.
    fn join_feed(&self, local: u32, spec: Arc<Spec>, at_least: u64, resume: Option<Vec<Entry>>) {
        let Spec::Query { query, .. } = spec.as_ref() else {
            return;
        };
        // Equal parsed queries (filters, order, cursors, limit, offset, select) share a feed.
        let key = format!("{query:?}");
        let placement = Placement::of_query(query);
        let joiner = Joiner {
            connection: self.id,
            local,
            at_least,
            resume,
        };
        if let Joined::Created(id) = self.hub.join_feed(key, spec.clone(), placement, joiner) {
            let hub = self.hub.clone();
            let read = move || {
                let first = hub
                    .store
                    .read()
                    .map_err(|e| e.to_string())
                    .and_then(|view| {
                        result_at(&hub.docs, view.as_ref(), &spec, None).map_err(|e| e.to_string())
                    });
                hub.start_feed(id, first);
            };
            if let Err(err) = crate::store::pool::spawn(read) {
                self.hub.start_feed(id, Err(err.to_string()));
            }
        }
    }

    /// Handles what the hub queued, in order.
    async fn on_events(&mut self, events: VecDeque<Event>) -> Result<(), Closed> {
        for event in events {
            self.on_event(event).await?;
        }
        Ok(())
    }

    async fn send_changes(
        &mut self,
        local: u32,
        version: u64,
        arrays: &[Arc<str>],
    ) -> Result<(), Closed> {
        let Some(sub) = self.subscriptions.get(&local) else {
            return Ok(());
        };
        let message = protocol::changes_frame(&sub.name, version, arrays);
        self.send(message).await
    }

    async fn on_event(&mut self, event: Event) -> Result<(), Closed> {
        match event {
            Event::Record {
                record,
                subscriptions,
            } => {
                for local in subscriptions {
                    let Some(sub) = self.subscriptions.get_mut(&local) else {
                        continue;
                    };
                    if let Kind::Doc {
                        state: SubState::Pending(waiting),
                        ..
                    } = &mut sub.kind
                    {
                        waiting.push(record.clone());
                        continue;
                    }
                    self.apply(local, &record).await?;
                }
                Ok(())
            }
            Event::Opening { local, opening } => {
                let Some(sub) = self.subscriptions.get(&local) else {
                    return Ok(());
                };
                let message = match opening {
                    feed::Opening::Snapshot { version, docs } => {
                        protocol::snapshot_frame(&sub.name, version, &docs)
                    }
                    feed::Opening::Changes { version, changes } => {
                        protocol::changes_frame(&sub.name, version, &[changes])
                    }
                };
                self.send(message).await
            }
            Event::Changes {
                local,
                version,
                arrays,
                ..
            } => self.send_changes(local, version, &arrays).await,
            Event::Failed { local } => {
                self.end_with_error(local, "internal", "internal error")
                    .await
            }
        }
    }

    /// Applies one commit to one live document subscription and sends what changed.
    async fn apply(&mut self, local: u32, record: &Arc<ChangeRecord>) -> Result<(), Closed> {
        let access = self.access();
        let Some(sub) = self.subscriptions.get_mut(&local) else {
            return Ok(());
        };
        let Kind::Doc { spec, view, .. } = &mut sub.kind else {
            return Ok(());
        };
        let Spec::Doc(path) = spec.as_ref() else {
            return Ok(());
        };
        let mut changes: Vec<WireChange> = Vec::new();
        for change in record.changes.iter().filter(|c| spec.touches(&c.path)) {
            if let Some(access) = &access {
                if !matches!(access, Access::Admin) {
                    // Inline rather than on the blocking pool: one rules evaluation whose
                    // lookups (if any) hit pages a commit just wrote, and keeping it in this
                    // task keeps the connection's messages in commit order.
                    let allowed =
                        self.hub
                            .store
                            .read()
                            .map_err(DocsError::from)
                            .and_then(|store| {
                                access.check_get(
                                    store.as_ref(),
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
            changes.extend(view.apply(spec, change).changes);
        }
        if changes.is_empty() {
            return Ok(());
        }
        let message = protocol::changes(&sub.name, record.version, &changes);
        self.send(message).await
    }

    /// Forgets a subscription here and in the hub.
    fn end(&mut self, local: u32) {
        let Some(sub) = self.subscriptions.remove(&local) else {
            return;
        };
        self.by_name.remove(&sub.name);
        match sub.kind {
            Kind::Doc { placement, .. } => self.hub.unsubscribe_doc(self.id, local, &placement),
            Kind::Query => self.hub.leave_feed(self.id, local),
        }
        self.hub
            .metrics
            .realtime
            .subscriptions
            .fetch_sub(1, Ordering::Relaxed);
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
        self.end(local);
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

/// Checks access and computes the first result: for a document a snapshot, or the changes
/// since `resume_from` when the change log still covers it; for a query what it needs to join
/// its feed.
fn opening(
    hub: &Hub,
    spec: Arc<Spec>,
    access: &Access,
    resume_from: Option<u64>,
) -> Result<Opening, ApiError> {
    let view = hub.store.read().map_err(DocsError::from)?;
    match spec.as_ref() {
        Spec::Doc(path) => {
            let stored = crate::docs::read_documents(view.as_ref(), std::slice::from_ref(path))?
                .pop()
                .flatten();
            access.check_get(view.as_ref(), path, stored.as_ref())?;
        }
        Spec::Query { query, .. } => {
            access.check_list(view.as_ref(), query)?;
            let at_least = changelog::view_version(view.as_ref()).map_err(DocsError::from)?;
            let resume = match resume_from {
                Some(from) => match result_at(&hub.docs, view.as_ref(), &spec, Some(from)) {
                    Ok((old, _)) => Some(old),
                    Err(ResultError::NotCovered(_)) => None,
                    Err(err) => return Err(result_error(err)),
                },
                None => None,
            };
            return Ok(Opening::Query {
                spec,
                at_least,
                resume,
            });
        }
    }
    let (new, version) = result_at(&hub.docs, view.as_ref(), &spec, None).map_err(result_error)?;
    if let Some(from) = resume_from.filter(|from| *from <= version) {
        match result_at(&hub.docs, view.as_ref(), &spec, Some(from)) {
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
