//! The queue transport: one API over Azure Storage Queues and an in-memory stand-in with the
//! same semantics (visibility timeouts, pop receipts, dequeue counts).

use super::azure::AzureQueue;
use super::connection::StorageConnection;
use super::memory::MemoryQueue;
use std::fmt;
use std::time::Duration;
use time::OffsetDateTime;

/// The most messages one receive or peek returns (the service's limit).
pub const MAX_BATCH: u32 = 32;

/// A received (leased) message. `pop_receipt` proves the lease: it changes on every receive
/// and release, and only the latest one can delete or release the message.
#[derive(Clone, PartialEq, Eq)]
pub struct Received {
    pub id: String,
    pub pop_receipt: String,
    /// The message text exactly as sent (the caller encodes and decodes it).
    pub text: String,
    /// How many times the message has been received, this time included.
    pub dequeue_count: u32,
    pub inserted_at: Option<OffsetDateTime>,
    /// When the message expires; 9999-12-31 for messages sent with TTL -1 (never).
    pub expires_at: Option<OffsetDateTime>,
}

impl fmt::Debug for Received {
    // The text can hold a room's guest PIN: print its size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received")
            .field("id", &self.id)
            .field("dequeue_count", &self.dequeue_count)
            .field("inserted_at", &self.inserted_at)
            .field("expires_at", &self.expires_at)
            .field("text_len", &self.text.len())
            .finish_non_exhaustive()
    }
}

/// Queue failures. Messages are built by this crate and never carry a SAS token or key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The message is gone or the pop receipt is stale (someone else holds or deleted it).
    #[error("queue message not found (already deleted, or the pop receipt is stale)")]
    NotFound,
    /// The service could not be reached, timed out or answered 408/429/5xx: worth retrying later.
    #[error("queue storage unavailable: {0}")]
    Unavailable(String),
    /// The settings are wrong (bad queue name, credentials refused, …): retrying will not help.
    #[error("queue configuration: {0}")]
    Config(String),
    #[error("queue error: {0}")]
    Other(String),
}

/// A storage queue handle. Cheap to clone; clones share connections (Azure) or state (memory).
#[derive(Clone)]
pub struct Queue {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Azure(AzureQueue),
    Memory(MemoryQueue),
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Backend::Azure(q) => fmt::Debug::fmt(q, f),
            Backend::Memory(q) => fmt::Debug::fmt(q, f),
        }
    }
}

impl Queue {
    /// A queue in Azure Storage (or Azurite). `request_timeout` bounds each HTTP request.
    pub fn azure(
        conn: &StorageConnection,
        queue_name: &str,
        request_timeout: Duration,
    ) -> Result<Queue, QueueError> {
        Ok(Queue {
            backend: Backend::Azure(AzureQueue::new(conn, queue_name, request_timeout)?),
        })
    }

    /// An in-process queue for `maxconf dev` and tests: same semantics, no persistence.
    pub fn memory(queue_name: &str) -> Queue {
        Queue {
            backend: Backend::Memory(MemoryQueue::new(queue_name)),
        }
    }

    /// An in-process queue (`maxconf dev`): there is no storage account to probe.
    pub fn is_memory(&self) -> bool {
        matches!(self.backend, Backend::Memory(_))
    }

    pub fn name(&self) -> &str {
        match &self.backend {
            Backend::Azure(q) => q.name(),
            Backend::Memory(q) => q.name(),
        }
    }

    /// Creates the queue if it does not exist; succeeds if it does.
    pub async fn create_if_missing(&self) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Azure(q) => logged(q.name(), "create_if_missing", q.create_if_missing()).await,
            Backend::Memory(_) => Ok(()),
        }
    }

    /// Enqueues `text` as-is, invisible for `initial_invisibility` (under 7 days).
    /// Always TTL -1 (never expires). Never retried (a failed send may still have stored the message: the caller decides).
    pub async fn send(&self, text: &str, initial_invisibility: Duration) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Azure(q) => logged(q.name(), "send", q.send(text, initial_invisibility)).await,
            Backend::Memory(q) => q.send(text, initial_invisibility),
        }
    }

    /// Receives up to `max` (at most 32) visible messages and hides them for `lease`
    /// (at least 1 s). Returns an empty list when none is visible.
    /// Note (Azure): if a response is lost and the request retried, the messages of the lost
    /// response stay invisible until their lease ends, then come back (dequeue count raised).
    pub async fn receive(&self, max: u32, lease: Duration) -> Result<Vec<Received>, QueueError> {
        match &self.backend {
            Backend::Azure(q) => logged(q.name(), "receive", q.receive(max, lease)).await,
            Backend::Memory(q) => q.receive(max, lease),
        }
    }

    /// Deletes a received message. `NotFound` if the pop receipt is stale or the message gone.
    /// Note (Azure): a delete retried after a lost response also answers `NotFound`, although the
    /// message is then deleted; either way this caller no longer holds it.
    pub async fn delete(&self, msg: &Received) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Azure(q) => logged(q.name(), "delete", q.delete(msg)).await,
            Backend::Memory(q) => q.delete(msg),
        }
    }

    /// Makes a received message visible again after `after` (0 = now). `NotFound` if the pop
    /// receipt is stale. The message's pop receipt changes: `msg` cannot be used afterwards.
    pub async fn release(&self, msg: &Received, after: Duration) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Azure(q) => logged(q.name(), "release", q.release(msg, after)).await,
            Backend::Memory(q) => q.release(msg, after),
        }
    }

    /// The texts of up to `max` (at most 32) visible messages, without leasing them.
    pub async fn peek(&self, max: u32) -> Result<Vec<String>, QueueError> {
        match &self.backend {
            Backend::Azure(q) => logged(q.name(), "peek", q.peek(max)).await,
            Backend::Memory(q) => q.peek(max),
        }
    }

    /// All messages, visible or not (leased and warming-up ones included). Approximate on Azure.
    pub async fn approximate_count(&self) -> Result<u64, QueueError> {
        match &self.backend {
            Backend::Azure(q) => logged(q.name(), "approximate_count", q.approximate_count()).await,
            Backend::Memory(q) => q.approximate_count(),
        }
    }

    /// Deletes every message, visible or not.
    pub async fn clear(&self) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Azure(q) => logged(q.name(), "clear", q.clear()).await,
            Backend::Memory(q) => q.clear(),
        }
    }
}

/// Every storage request is logged at debug: queue, operation, outcome, duration (never the URL).
async fn logged<T>(
    queue: &str,
    op: &'static str,
    request: impl std::future::Future<Output = Result<T, QueueError>>,
) -> Result<T, QueueError> {
    let started = std::time::Instant::now();
    let result = request.await;
    tracing::debug!(
        queue,
        op,
        ok = result.is_ok(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "storage request"
    );
    result
}

/// Rounds up to whole seconds (the service's unit), so a warm-up is never shortened.
pub(crate) fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The longest visibility timeout the service accepts.
pub(crate) const MAX_VISIBILITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The queue name rules of Azure Storage: 3 to 63 characters, lowercase letters, digits and
/// single hyphens, starting and ending with a letter or digit.
pub fn is_valid_queue_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && !name.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names() {
        for ok in ["room-creation-queue", "abc", "a1-b2", &"a".repeat(63)] {
            assert!(is_valid_queue_name(ok), "{ok}");
        }
        for bad in ["ab", "Room", "-abc", "abc-", "a--b", "a_b", &"a".repeat(64)] {
            assert!(!is_valid_queue_name(bad), "{bad}");
        }
    }

    #[test]
    fn rounding() {
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(90)), 90);
        assert_eq!(whole_seconds(Duration::from_millis(90_001)), 91);
    }

    #[test]
    fn received_debug_hides_text() {
        let r = Received {
            id: "1".into(),
            pop_receipt: "p".into(),
            text: "guest-pin-123456".into(),
            dequeue_count: 1,
            inserted_at: None,
            expires_at: None,
        };
        assert!(!format!("{r:?}").contains("guest-pin"));
    }
}
