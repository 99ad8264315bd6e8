//! Realtime subscriptions over WebSocket (DESIGN.md §5): clients subscribe to a document or a
//! query and receive a snapshot, then every committed change that concerns them, in commit
//! order, exactly once per connection; `resumeFrom` replays what a client missed from the
//! change log.
//!
//! - `protocol`: the wire messages.
//! - `record`: a change-log record, decoded once per commit.
//! - `index`: which subscriptions a changed document may concern.
//! - `hub`: tails the change log and fans each commit out to connections.
//! - `mailbox`: a connection's queue of hub events, merging a lagging subscription's changes.
//! - `view`: ordered, limited views and their changes; `result_at`.
//! - `feed`: one shared view per distinct subscribed query, followed by the hub.
//! - `connection`: one socket: auth, subscriptions, heartbeat, limits.

pub mod connection;
pub mod feed;
pub mod hub;
pub mod index;
pub mod mailbox;
pub mod protocol;
pub mod record;
pub mod view;

pub use connection::{serve, Authenticator, Principal};
pub use hub::Hub;
