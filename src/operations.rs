//! Operator commands the service runs for a remote operator (`POST /api/manage/…`). Each runs
//! in the background as an *operation*: the route answers 202 at once with the operation's
//! id, and `GET /api/manage/operations/{id}` follows it, so no request comes near the front
//! end's 230 s limit. The operation records what the command prints ([`Entry`]), and the
//! remote command replays that into its own console: the same lines as a local run.
//!
//! The instance running an operation keeps it in memory (every line, as it comes). Its start
//! and its end are also written to the storage account the app already has, one message per
//! operation on `<pool queue>-ops`, so that any instance can answer for it (the platform may
//! route the next GET elsewhere). Recording is best effort, like the last-run records.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::broker::Broker;
use crate::config::Settings;
use crate::ops::Out;
use crate::pool::side::SideQueue;
use crate::pool::{Queue, QueueError};

/// Storage requests for a record are short; a slow one must not hold an operation.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Operations kept in memory and in storage (the newest); older ones are forgotten.
const KEEP: usize = 20;
/// A stored record stays under the 64 KiB a queue message may hold.
const MAX_RECORD_BYTES: usize = 48_000;

/// One thing a command printed, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Entry {
    /// Long work of this many steps started.
    Total(u64),
    Step(String),
    Waiting(String),
    Line(String),
    Error(String),
}

impl Entry {
    /// Replays the entry into `out` (the remote command's console).
    pub fn replay(&self, out: &dyn Out) {
        match self {
            Self::Total(n) => out.total(*n),
            Self::Step(line) => out.step(line.clone()),
            Self::Waiting(what) => out.waiting(what),
            Self::Line(line) => out.line(line.clone()),
            Self::Error(line) => out.error(line.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    /// Finished; the command's exit status is 0.
    Succeeded,
    /// Finished; the command's exit status is 1.
    Failed,
}

/// An operation as `GET /api/manage/operations/{id}` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    /// The command as an operator would type it, e.g. `pool fill --count 2`.
    pub command: String,
    pub state: State,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// What the command printed so far, in order.
    pub entries: Vec<Entry>,
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc())
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// This process's operations, newest last.
static LIVE: LazyLock<Mutex<Vec<Operation>>> = LazyLock::new(Default::default);

fn with_live<T>(id: &str, f: impl FnOnce(&mut Operation) -> T) -> Option<T> {
    let mut live = LIVE.lock().expect("operations lock");
    live.iter_mut().find(|op| op.id == id).map(f)
}

/// Records what a command prints into its operation.
struct Recorder(String);

impl Recorder {
    fn push(&self, entry: Entry) {
        with_live(&self.0, |op| op.entries.push(entry));
    }
}

impl Out for Recorder {
    fn total(&self, len: u64) {
        self.push(Entry::Total(len));
    }
    fn step(&self, line: String) {
        self.push(Entry::Step(line));
    }
    fn waiting(&self, what: &str) {
        self.push(Entry::Waiting(what.to_owned()));
    }
    fn line(&self, line: String) {
        self.push(Entry::Line(line));
    }
    fn error(&self, line: String) {
        self.push(Entry::Error(line));
    }
}

/// The work of one operation: the command, given the broker and where to print.
pub type Work = Box<
    dyn for<'a> FnOnce(
            &'a Broker,
            &'a dyn Out,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>
        + Send,
>;

/// Starts `work` in the background as a new operation and returns it (state `running`).
pub async fn start(broker: &Arc<Broker>, command: String, work: Work) -> Operation {
    let op = Operation {
        id: crate::routes::new_guid(),
        command,
        state: State::Running,
        started_at: now(),
        finished_at: None,
        entries: Vec::new(),
    };
    {
        let mut live = LIVE.lock().expect("operations lock");
        live.push(op.clone());
        // Forget the oldest finished ones beyond KEEP (running ones are never dropped).
        while live.len() > KEEP {
            match live.iter().position(|o| o.state != State::Running) {
                Some(i) => drop(live.remove(i)),
                None => break,
            }
        }
    }
    store(broker.settings(), &op).await;
    let id = op.id.clone();
    let task_broker = Arc::clone(broker);
    broker.spawn(async move {
        let recorder = Recorder(id.clone());
        let ok = work(&task_broker, &recorder).await;
        let finished = with_live(&id, |op| {
            op.state = if ok { State::Succeeded } else { State::Failed };
            op.finished_at = Some(now());
            op.clone()
        });
        if let Some(op) = finished {
            tracing::info!(operation = %op.id, command = %op.command, ok, "operation finished");
            store(task_broker.settings(), &op).await;
        }
    });
    op
}

/// The operation `id`: from this process if it runs or ran here, else from storage.
pub async fn get(settings: &Settings, id: &str) -> Result<Option<Operation>, QueueError> {
    if let Some(op) = with_live(id, |op| op.clone()) {
        return Ok(Some(op));
    }
    let queue = queue(settings)?;
    // No operation recorded yet on this account: the queue may not exist. Once per queue and
    // process (the tests run several apps, each with its own queues, in one process).
    static ENSURED: LazyLock<Mutex<std::collections::HashSet<String>>> =
        LazyLock::new(Default::default);
    let name = QUEUE.name(settings);
    if !ENSURED.lock().expect("ensured lock").contains(&name) {
        queue.create_if_missing().await?;
        ENSURED.lock().expect("ensured lock").insert(name);
    }
    // A record being replaced on another instance is hidden for a moment (`store` receives
    // the records to prune them): look again while the queue counts more than the peek shows.
    for _ in 0..HIDDEN_RETRIES {
        let texts = queue.peek(32).await?;
        let mut found: Option<Operation> = None;
        for text in &texts {
            if let Ok(op) = serde_json::from_str::<Operation>(text)
                && op.id == id
                && found.as_ref().is_none_or(|f| f.state == State::Running)
            {
                found = Some(op);
            }
        }
        if found.is_some() || queue.approximate_count().await? <= texts.len() as u64 {
            return Ok(found);
        }
        tokio::time::sleep(HIDDEN_PAUSE).await;
    }
    Ok(None)
}

/// How often, and how far apart, `get` looks again for records hidden by a concurrent `store`.
const HIDDEN_RETRIES: u32 = 10;
const HIDDEN_PAUSE: Duration = Duration::from_millis(200);

/// `<pool queue>-ops`.
pub static QUEUE: SideQueue = SideQueue::new("-ops");

fn queue(settings: &Settings) -> Result<Queue, QueueError> {
    QUEUE.queue(settings, TIMEOUT)
}

/// The record as stored: the earliest entries give way when it would not fit a message.
fn record_text(op: &Operation) -> String {
    let mut op = op.clone();
    loop {
        let text = serde_json::to_string(&op).expect("an operation serialises");
        if text.len() <= MAX_RECORD_BYTES || op.entries.is_empty() {
            return text;
        }
        let drop = (op.entries.len() / 4).max(1);
        op.entries.drain(..drop);
    }
}

/// Replaces the stored record of `op` and forgets the oldest beyond [`KEEP`]. Failures are
/// logged, never returned.
async fn store(settings: &Settings, op: &Operation) {
    let write = async {
        let queue = queue(settings)?;
        queue.create_if_missing().await?;
        queue.send(&record_text(op), Duration::ZERO).await?;
        let mut records = Vec::new();
        for msg in queue.receive(32, Duration::from_secs(5)).await? {
            match serde_json::from_str::<Operation>(&msg.text) {
                // An older record of this operation, or an unreadable one.
                Ok(old) if old.id == op.id && old != *op => queue.delete(&msg).await?,
                Err(_) => queue.delete(&msg).await?,
                Ok(old) => records.push((old.started_at.clone(), msg)),
            }
        }
        records.sort_by(|a, b| b.0.cmp(&a.0));
        for (i, (_, msg)) in records.iter().enumerate() {
            if i >= KEEP {
                queue.delete(msg).await?;
            } else {
                queue.release(msg, Duration::ZERO).await?;
            }
        }
        Ok::<(), QueueError>(())
    };
    match tokio::time::timeout(TIMEOUT * 4, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(operation = %op.id, error = %e, "could not record the operation")
        }
        Err(_) => {
            tracing::warn!(operation = %op.id, "could not record the operation: storage timed out")
        }
    }
}
