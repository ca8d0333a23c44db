//! In-memory queue with Azure Storage Queue semantics, for `maxconf dev` and tests.

use super::queue::{MAX_BATCH, MAX_VISIBILITY, QueueError, Received};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::time::Instant;

/// What Azure reports as the expiry of a message sent with TTL -1.
const NEVER_EXPIRES: OffsetDateTime = datetime!(9999-12-31 23:59:59 UTC);

#[derive(Clone)]
pub struct MemoryQueue {
    name: Arc<str>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Orders messages that become visible at the same instant: the earlier send first.
    next_seq: u64,
    /// Makes every pop receipt unique within this queue.
    next_receipt: u64,
    messages: Vec<Message>,
}

struct Message {
    seq: u64,
    id: String,
    pop_receipt: Option<String>,
    text: String,
    dequeue_count: u32,
    inserted_at: OffsetDateTime,
    visible_at: Instant,
}

impl fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl MemoryQueue {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            state: Arc::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than losing the queue, so recover it rather than poisoning every caller.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn send(&self, text: &str, initial_invisibility: Duration) -> Result<(), QueueError> {
        if initial_invisibility >= MAX_VISIBILITY {
            return Err(QueueError::Other(
                "send: initial invisibility must be under 7 days".into(),
            ));
        }
        let mut st = self.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        st.messages.push(Message {
            seq,
            id: format!("mem-{seq:016x}"),
            pop_receipt: None,
            text: text.to_owned(),
            dequeue_count: 0,
            inserted_at: OffsetDateTime::now_utc(),
            visible_at: Instant::now() + initial_invisibility,
        });
        Ok(())
    }

    pub fn receive(&self, max: u32, lease: Duration) -> Result<Vec<Received>, QueueError> {
        let lease = lease.clamp(Duration::from_secs(1), MAX_VISIBILITY);
        let max = max.min(MAX_BATCH) as usize;
        let now = Instant::now();
        let mut st = self.lock();
        let mut visible: Vec<usize> = (0..st.messages.len())
            .filter(|&i| st.messages[i].visible_at <= now)
            .collect();
        visible.sort_by_key(|&i| (st.messages[i].visible_at, st.messages[i].seq));
        visible.truncate(max);
        let mut out = Vec::with_capacity(visible.len());
        for i in visible {
            let receipt = new_receipt(&mut st);
            let m = &mut st.messages[i];
            m.pop_receipt = Some(receipt.clone());
            m.dequeue_count += 1;
            m.visible_at = now + lease;
            out.push(Received {
                id: m.id.clone(),
                pop_receipt: receipt,
                text: m.text.clone(),
                dequeue_count: m.dequeue_count,
                inserted_at: Some(m.inserted_at),
                expires_at: Some(NEVER_EXPIRES),
            });
        }
        Ok(out)
    }

    pub fn delete(&self, msg: &Received) -> Result<(), QueueError> {
        let mut st = self.lock();
        let i = find(&st, msg)?;
        st.messages.remove(i);
        Ok(())
    }

    pub fn release(&self, msg: &Received, after: Duration) -> Result<(), QueueError> {
        if after >= MAX_VISIBILITY {
            return Err(QueueError::Other(
                "release: delay must be under 7 days".into(),
            ));
        }
        let mut st = self.lock();
        let i = find(&st, msg)?;
        // Like Azure's update: the old receipt dies, the new one goes to no one.
        let receipt = new_receipt(&mut st);
        let m = &mut st.messages[i];
        m.pop_receipt = Some(receipt);
        m.visible_at = Instant::now() + after;
        Ok(())
    }

    pub fn peek(&self, max: u32) -> Result<Vec<String>, QueueError> {
        let max = max.min(MAX_BATCH) as usize;
        let now = Instant::now();
        let st = self.lock();
        let mut visible: Vec<&Message> =
            st.messages.iter().filter(|m| m.visible_at <= now).collect();
        visible.sort_by_key(|m| (m.visible_at, m.seq));
        Ok(visible
            .into_iter()
            .take(max)
            .map(|m| m.text.clone())
            .collect())
    }

    pub fn approximate_count(&self) -> Result<u64, QueueError> {
        Ok(self.lock().messages.len() as u64)
    }

    pub fn clear(&self) -> Result<(), QueueError> {
        self.lock().messages.clear();
        Ok(())
    }
}

fn new_receipt(st: &mut State) -> String {
    st.next_receipt += 1;
    format!("receipt-{:016x}", st.next_receipt)
}

/// The index of `msg` if its pop receipt is still the current one (whether or not its lease
/// has run out, as on Azure: a receipt dies only when the message is received or updated again).
fn find(st: &State, msg: &Received) -> Result<usize, QueueError> {
    st.messages
        .iter()
        .position(|m| m.id == msg.id && m.pop_receipt.as_deref() == Some(msg.pop_receipt.as_str()))
        .ok_or(QueueError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_change_and_stale_ones_fail() {
        let q = MemoryQueue::new("q");
        q.send("a", Duration::ZERO).unwrap();
        let first = q.receive(1, Duration::from_secs(30)).unwrap().remove(0);
        q.release(&first, Duration::ZERO).unwrap();
        assert_eq!(q.release(&first, Duration::ZERO), Err(QueueError::NotFound));
        let second = q.receive(1, Duration::from_secs(30)).unwrap().remove(0);
        assert_eq!(second.id, first.id);
        assert_ne!(second.pop_receipt, first.pop_receipt);
        assert_eq!(second.dequeue_count, 2);
        assert_eq!(q.delete(&first), Err(QueueError::NotFound));
        q.delete(&second).unwrap();
        assert_eq!(q.delete(&second), Err(QueueError::NotFound));
        assert_eq!(q.approximate_count().unwrap(), 0);
    }

    #[test]
    fn clones_share_state_and_order_is_by_visibility() {
        let q = MemoryQueue::new("q");
        let q2 = q.clone();
        q.send("late", Duration::from_millis(20)).unwrap();
        q.send("one", Duration::ZERO).unwrap();
        q.send("two", Duration::ZERO).unwrap();
        assert_eq!(q2.peek(32).unwrap(), vec!["one", "two"]);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(q2.peek(32).unwrap(), vec!["one", "two", "late"]);
        assert_eq!(q2.approximate_count().unwrap(), 3);
        let got = q2.receive(2, Duration::from_secs(60)).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(q.peek(32).unwrap(), vec!["late"]);
    }

    #[test]
    fn thread_safe() {
        let q = MemoryQueue::new("q");
        for i in 0..200 {
            q.send(&i.to_string(), Duration::ZERO).unwrap();
        }
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        let batch = q.receive(3, Duration::from_secs(60)).unwrap();
                        if batch.is_empty() {
                            return got;
                        }
                        for m in batch {
                            q.delete(&m).unwrap();
                            got.push(m.text);
                        }
                    }
                })
            })
            .collect();
        let mut all: Vec<u32> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .map(|t| t.parse().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..200).collect::<Vec<_>>());
    }
}
