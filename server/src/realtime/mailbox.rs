//! A connection's queue of events from the hub. Unlike a channel it merges at the source: a
//! commit's changes for a subscription whose previous changes are still queued join that event,
//! so a connection that fell behind costs the hub one push per commit and gets one message per
//! subscription when it catches up; the connection is woken only when it was idle. The mailbox
//! also carries the hub's order to close the connection (a slow consumer, or shutdown).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

use super::hub::Event;

/// A merged `changes` event stops growing at this many bytes (the next commit starts another).
const MERGE_BYTES: usize = 256 * 1024;

/// Why an event could not be queued: the reader is too far behind.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// Why the hub wants a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    SlowConsumer,
    Shutdown,
}

#[derive(Default)]
struct Inner {
    events: VecDeque<Event>,
    /// Commits queued (merged ones included): the measure of how far behind the reader is.
    commits: usize,
    waker: Option<Waker>,
}

pub struct Mailbox {
    inner: Mutex<Inner>,
    capacity: usize,
    kill: AtomicU8,
    /// Wakes a send waiting on a stalled reader when the connection is killed.
    pub killed: Notify,
}

impl Mailbox {
    pub fn new(capacity: usize) -> Arc<Mailbox> {
        Arc::new(Mailbox {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            kill: AtomicU8::new(0),
            killed: Notify::new(),
        })
    }

    /// Orders the connection closed (the first reason wins) and wakes it.
    pub fn kill(&self, kill: Kill) {
        let code = match kill {
            Kill::SlowConsumer => 1,
            Kill::Shutdown => 2,
        };
        if self
            .kill
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let waker = self.lock().waker.take();
            if let Some(waker) = waker {
                waker.wake();
            }
            self.killed.notify_waiters();
        }
    }

    pub fn kill_reason(&self) -> Option<Kill> {
        match self.kill.load(Ordering::Acquire) {
            1 => Some(Kill::SlowConsumer),
            2 => Some(Kill::Shutdown),
            _ => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Events are plain data: a panic elsewhere cannot leave them half-written.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one event; `Full` when the reader is `capacity` commits behind.
    pub fn push(&self, event: Event) -> Result<(), Full> {
        if self.kill_reason().is_some() {
            return Ok(()); // Closing: nothing more is sent.
        }
        let waker = {
            let mut inner = self.lock();
            if inner.commits >= self.capacity {
                return Err(Full);
            }
            inner.commits += 1;
            match (inner.events.back_mut(), event) {
                (
                    Some(Event::Changes {
                        local,
                        version,
                        arrays,
                        bytes,
                    }),
                    Event::Changes {
                        local: next_local,
                        version: next_version,
                        arrays: next_arrays,
                        bytes: next_bytes,
                    },
                ) if *local == next_local && *bytes + next_bytes <= MERGE_BYTES => {
                    *version = next_version;
                    *bytes += next_bytes;
                    arrays.extend(next_arrays);
                }
                (_, event) => inner.events.push_back(event),
            }
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Takes everything queued, waiting when there is nothing. Once the connection is killed
    /// it returns at once (check `kill_reason`).
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<VecDeque<Event>> {
        let mut inner = self.lock();
        if inner.events.is_empty() && self.kill_reason().is_none() {
            match &inner.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => inner.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        inner.commits = 0;
        Poll::Ready(std::mem::take(&mut inner.events))
    }

    pub async fn take(&self) -> VecDeque<Event> {
        std::future::poll_fn(|cx| self.poll_take(cx)).await
    }
}
