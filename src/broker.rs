//! The room broker's use cases: hand a pool room out, delete a room, refill the pool.
//!
//! Pool rules (SPEC.md, "The pool"):
//! - A room is handed out only when its message was deleted: the pop receipt proves we were
//!   its only holder, so no room is ever handed out twice.
//! - A send is never repeated: a send that failed may still have stored its message, and a
//!   second send would give the room two messages.
//! - Room state lives on the room's own alias ([`crate::room_state`]): `created` from the POST
//!   (`allocated` for a room made on demand). A pool handout writes only the tag: three Pexip
//!   calls per room (this PATCH, the refill's POST and GET). A room is pooled while a message
//!   reaches it; the maintainer settles rooms that no message reaches and records handouts
//!   ([`crate::handouts`]).
//!
//! A create that has taken a message runs to its end in a task of its own: a caller, APIM or
//! the host giving up drops only the wait for the answer, never the handout or the return of
//! the room. Create answers within [`Broker::deadline`] (at most 25 s) whatever the settings.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Semaphore, oneshot};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::conference::Conference;
use crate::config::{EmptyFallback, Settings};
use crate::pexip::{PexipClient, PexipError, Priority};
use crate::pool::message::{self, PoolMessage, PooledRoom};
use crate::pool::{Queue, QueueError, Received};
use crate::room::{self, ConstrainedConference, RoomName};
use crate::room_state::RoomState;

/// Messages one create may look at before giving up (stale or unusable ones are skipped).
pub const MAX_MESSAGES_PER_CREATE: usize = 5;

/// The longest a create works before it answers 503: well inside the 30 s SPEC promises, and
/// far inside APIM's and the Functions front end's limits.
pub const MAX_CREATE_DEADLINE: Duration = Duration::from_secs(25);
/// A receive that finds nothing while the queue still counts messages is tried again this
/// often, this long apart: the maintainer holds a few messages for a second at most.
const EMPTY_RETRIES: u32 = 4;
const EMPTY_RETRY_PAUSE: Duration = Duration::from_millis(300);

pub struct Broker {
    settings: Arc<Settings>,
    /// Background work: refills, timers, lists.
    pexip: PexipClient,
    /// A create's own requests, first in line for Pexip's slots.
    critical: PexipClient,
    /// Requests a caller waits for: deletes, look-ups, updates.
    caller: PexipClient,
    pool: Queue,
    deletions: Queue,
    /// How long a create works before it gives up and answers 503.
    deadline: Duration,
    /// How long a received message stays hidden while create works on it: longer than the
    /// deadline, so the lease never lapses under a working create.
    lease: Duration,
    /// Refills in progress at once (each a POST, a GET and a send): all Pexip slots but one.
    /// Pexip's own cap ([`crate::pexip::gate`]) keeps them behind creates.
    refill_slots: Arc<Semaphore>,
    /// Rooms on their way back into the pool that its message count does not show yet: pool
    /// handouts in progress (their refill follows) and refills not yet enqueued. The refill
    /// after an on-demand create counts them, so that a pool held by slow creates does not
    /// look empty and get topped up past its target.
    replacing: Arc<AtomicU64>,
    /// Work that outlives a request (creates whose caller left, refills, operations):
    /// a graceful stop waits for it.
    tasks: TaskTracker,
}

/// One room counted in [`Broker::replacing`] while this lives.
#[derive(Debug)]
struct Replacing(Arc<AtomicU64>);

impl Replacing {
    fn new(count: &Arc<AtomicU64>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(count))
    }
}

impl Drop for Replacing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a broker use case failed; the HTTP layer maps it to problem+json.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A dependency failed, timed out, or the pool had nothing to give: worth retrying later.
    #[error("{what}: {cause}")]
    Unavailable { what: &'static str, cause: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
}

impl BrokerError {
    fn pexip(cause: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            what: "Pexip is unavailable",
            cause: cause.to_string(),
        }
    }

    fn pool(cause: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            what: "the room pool is unavailable",
            cause: cause.to_string(),
        }
    }
}

/// Where a refill stopped short.
#[derive(Debug, thiserror::Error)]
pub enum RefillError {
    #[error("creating the room in Pexip failed: {0}")]
    Pexip(#[from] PexipError),
    #[error("enqueueing room {name} failed ({cause}); the maintainer will settle it")]
    EnqueueFailed { name: String, cause: QueueError },
}

/// A room handed out by create.
#[derive(Debug)]
pub struct Handout {
    pub room: ConstrainedConference,
    /// False when the pool was empty and the room was created on demand.
    pub from_pool: bool,
}

/// What a create that did not hand its room out must still do, after it answered.
enum Unfinished {
    /// The message is deleted (ours): clear the tag if it may have landed, send a new message.
    PutBack { room: PooledRoom, untag: bool },
    /// The message may still exist and is ours until the lease ends: clear the tag if it may
    /// have landed, then make the message visible again.
    Release {
        msg: Received,
        room: PooledRoom,
        untag: bool,
    },
    /// The deadline cut the handout short: whether the PATCH or the delete landed is unknown.
    Unknown { msg: Received, room: PooledRoom },
}

impl Broker {
    pub fn new(settings: Arc<Settings>, pexip: PexipClient, pool: Queue, deletions: Queue) -> Self {
        // Two tries of one request and a pause fit; more would not be an answer a caller waits for.
        let deadline = (settings.pexip.timeout * 2 + Duration::from_secs(5))
            .clamp(Duration::from_secs(5), MAX_CREATE_DEADLINE);
        let refill_slots = Arc::new(Semaphore::new(
            settings.pexip.max_concurrency.saturating_sub(1).max(1),
        ));
        // Longer than the deadline by one Pexip request and a little: room for the return of
        // an unfinished handout, and for a PATCH already sent to land before anyone else can
        // take the message.
        let lease =
            deadline + settings.pexip.timeout.min(Duration::from_secs(15)) + Duration::from_secs(5);
        Self {
            settings,
            critical: pexip.with_priority(Priority::Create),
            caller: pexip.with_priority(Priority::Caller),
            pexip: pexip.with_priority(Priority::Background),
            pool,
            deletions,
            deadline,
            lease,
            refill_slots,
            replacing: Arc::default(),
            tasks: TaskTracker::new(),
        }
    }

    /// How long create holds a received message.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How long a create works before it answers 503.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The Pexip client for background work (it yields to creates and callers).
    pub fn pexip(&self) -> &PexipClient {
        &self.pexip
    }

    /// The Pexip client for requests a caller waits for (after creates, before background work).
    pub fn caller_pexip(&self) -> &PexipClient {
        &self.caller
    }

    pub fn pool(&self) -> &Queue {
        &self.pool
    }

    pub fn deletions(&self) -> &Queue {
        &self.deletions
    }

    /// Runs `work` in the background; a graceful stop waits for it.
    pub fn spawn<F>(&self, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(work);
    }

    /// Waits up to `bound` for the background work; true if it all finished. New work is
    /// still accepted (a create in flight may start its refill), but the wait ends once idle.
    pub async fn finish_background_work(&self, bound: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(bound, self.tasks.wait()).await.is_ok()
    }

    /// Hands out a pool room with `tag` set. Critical path: one receive, then the PATCH and
    /// the message delete together. The work runs in its own task: dropping this future (the
    /// caller left) does not stop it, and the refill follows in the background either way.
    pub async fn create(self: &Arc<Self>, tag: &str) -> Result<Handout, BrokerError> {
        let (answer, answered) = oneshot::channel();
        let broker = Arc::clone(self);
        let tag = tag.to_owned();
        self.tasks
            .spawn(async move { broker.create_to_end(tag, answer).await });
        // The task answers by its deadline; this bound only guards against a task that died.
        match tokio::time::timeout(self.deadline + Duration::from_secs(2), answered).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(BrokerError::pexip("create did not finish in time")),
        }
    }

    async fn create_to_end(
        self: Arc<Self>,
        tag: String,
        answer: oneshot::Sender<Result<Handout, BrokerError>>,
    ) {
        let until = Instant::now() + self.deadline;
        let (result, unfinished) = self.hand_out(&tag, until).await;
        let done = match &result {
            Ok(handout) => Some((handout.room.clone(), handout.from_pool)),
            Err(_) => None,
        };
        let replacing = done.as_ref().map(|_| Replacing::new(&self.replacing));
        if answer.send(result).is_err() {
            match &done {
                Some((room, _)) => {
                    tracing::warn!(room = %room.name, "caller left before the answer; the room stays handed out")
                }
                None => tracing::info!("caller left before the answer"),
            }
        }
        if let Some(unfinished) = unfinished {
            self.settle(unfinished).await;
        }
        if let Some((_, from_pool)) = done {
            self.refill_after_handout(from_pool, replacing).await;
        }
    }

    async fn hand_out(
        &self,
        tag: &str,
        until: Instant,
    ) -> (Result<Handout, BrokerError>, Option<Unfinished>) {
        let patch = json!({ "tag": tag });
        let mut empty_tries = 0;
        let mut looked_at = 0;
        while looked_at < MAX_MESSAGES_PER_CREATE {
            let received =
                match tokio::time::timeout_at(until, self.pool.receive(1, self.lease)).await {
                    Ok(Ok(received)) => received,
                    Ok(Err(e)) => return (Err(BrokerError::pool(e)), None),
                    Err(_) => return (Err(BrokerError::pool("receive timed out")), None),
                };
            let Some(msg) = received.into_iter().next() else {
                if empty_tries < EMPTY_RETRIES && self.pool_counts_messages().await {
                    empty_tries += 1;
                    tokio::time::sleep(EMPTY_RETRY_PAUSE).await;
                    continue;
                }
                return (self.create_on_demand(tag, until).await, None);
            };
            looked_at += 1;
            let received_at = Instant::now();
            let room = match tokio::time::timeout_at(until, self.read_message(&msg)).await {
                Ok(Ok(Some(room))) => room,
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => {
                    self.release(&msg).await;
                    return (Err(e), None);
                }
                Err(_) => {
                    self.release(&msg).await;
                    return (Err(BrokerError::pexip("reading the room timed out")), None);
                }
            };
            let both = async {
                tokio::join!(
                    self.critical.patch_conference(room.id, &patch),
                    self.pool.delete(&msg)
                )
            };
            let Ok((patched, deleted)) = tokio::time::timeout_at(until, both).await else {
                tracing::warn!(room = %room.name, "handout ran out of time; the room goes back to the pool");
                return (
                    Err(BrokerError::pexip("the handout ran out of time")),
                    Some(Unfinished::Unknown { msg, room }),
                );
            };
            // Within our lease nobody else can hold this receipt: NotFound then means a retried
            // delete whose first try already deleted the message — ours.
            let deleted = match deleted {
                Err(QueueError::NotFound) if received_at.elapsed() < self.deadline => Ok(()),
                other => other,
            };
            match (patched, deleted) {
                (Ok(()), Ok(())) => {
                    tracing::info!(room = %room.name, id = room.id, "room handed out");
                    let handout = Handout {
                        room: room.handed_out(tag),
                        from_pool: true,
                    };
                    return (Ok(handout), None);
                }
                (Err(PexipError::NotFound), deleted) => {
                    tracing::warn!(room = %room.name, "pool room no longer exists in Pexip; message discarded");
                    if deleted.is_err() {
                        // Still leased: it reappears later and is discarded again then.
                        self.discard(&msg).await;
                    }
                }
                (Ok(()), Err(e)) => {
                    // Not ours for sure: never hand it out. It goes back to the pool untagged.
                    tracing::warn!(room = %room.name, error = %e, "could not delete the pool message; room not handed out");
                    let unfinished = Unfinished::Release {
                        msg,
                        room,
                        untag: true,
                    };
                    if matches!(e, QueueError::Unavailable(_)) {
                        return (Err(BrokerError::pool(e)), Some(unfinished));
                    }
                    self.settle(unfinished).await;
                }
                (Err(e), Ok(())) => {
                    let untag = may_have_landed(&e);
                    return (
                        Err(BrokerError::pexip(e)),
                        Some(Unfinished::PutBack { room, untag }),
                    );
                }
                (Err(e), Err(_)) => {
                    let untag = may_have_landed(&e);
                    return (
                        Err(BrokerError::pexip(e)),
                        Some(Unfinished::Release { msg, room, untag }),
                    );
                }
            }
        }
        (
            Err(BrokerError::Unavailable {
                what: "no usable room in the pool; try again",
                cause: format!("{MAX_MESSAGES_PER_CREATE} pool messages were stale or unusable"),
            }),
            None,
        )
    }

    /// True when the queue still counts messages although a receive found none (held for a
    /// moment by the maintainer, or warming up).
    async fn pool_counts_messages(&self) -> bool {
        matches!(self.pool.approximate_count().await, Ok(n) if n > 0)
    }

    /// The room a message names; `None` (message discarded) when it cannot be used.
    async fn read_message(&self, msg: &Received) -> Result<Option<PooledRoom>, BrokerError> {
        let room = match message::decode(&msg.text) {
            Ok(PoolMessage::Room(room)) => room,
            Ok(PoolMessage::LegacyName(name)) => match self.critical.find_by_name(&name).await {
                // A name-only message may be a duplicate from the original system: a room that
                // already has a tag was handed out and must not be handed out again.
                Ok(Some(conference)) if !conference.tag.is_empty() => {
                    tracing::warn!(room = %name, "legacy pool message names a handed-out room; discarded");
                    self.discard(msg).await;
                    return Ok(None);
                }
                Ok(Some(conference)) => PooledRoom::from_conference(&conference),
                Ok(None) => {
                    tracing::warn!(room = %name, "legacy pool message names no room; discarded");
                    self.discard(msg).await;
                    return Ok(None);
                }
                Err(e) => return Err(BrokerError::pexip(e)),
            },
            Err(e) => {
                tracing::warn!(message_id = %msg.id, error = %e, "undecodable pool message discarded");
                self.discard(msg).await;
                return Ok(None);
            }
        };
        if self.settings.rooms.is_persistent(&room.name) {
            tracing::warn!(room = %room.name, "persistent room found in the pool; message discarded");
            self.discard(msg).await;
            return Ok(None);
        }
        Ok(Some(room))
    }

    async fn discard(&self, msg: &Received) {
        if let Err(e) = self.pool.delete(msg).await {
            tracing::warn!(message_id = %msg.id, error = %e, "could not discard pool message");
        }
    }

    /// Makes a held message visible again. On failure it reappears when its lease ends.
    async fn release(&self, msg: &Received) {
        if let Err(e) = self.pool.release(msg, Duration::ZERO).await {
            tracing::warn!(message_id = %msg.id, error = %e, "could not release a pool message; it reappears when its lease ends");
        }
    }

    /// Finishes a create that did not hand its room out: the room goes back to the pool,
    /// untagged where the PATCH may have landed.
    async fn settle(&self, unfinished: Unfinished) {
        match unfinished {
            Unfinished::PutBack { room, untag } => {
                if untag {
                    self.untag(&room).await;
                }
                self.put_back(&room).await;
            }
            Unfinished::Release { msg, room, untag } => {
                if untag {
                    self.untag(&room).await;
                }
                self.release(&msg).await;
            }
            Unfinished::Unknown { msg, room } => {
                self.untag(&room).await;
                match self.pool.delete(&msg).await {
                    // Deleted now, or by the handout before the deadline (a stale receipt is
                    // impossible within our lease): the room needs a new message.
                    Ok(()) | Err(QueueError::NotFound) => self.put_back(&room).await,
                    Err(e) => tracing::warn!(room = %room.name, error = %e,
                        "could not settle the pool message; it reappears when its lease ends"),
                }
            }
        }
    }

    /// Clears a tag a failed handout may have set, so the room returns to the pool as it was.
    async fn untag(&self, room: &PooledRoom) {
        match self
            .critical
            .patch_conference(room.id, &json!({"tag": ""}))
            .await
        {
            Ok(()) | Err(PexipError::NotFound) => {}
            Err(e) => tracing::warn!(room = %room.name, error = %e,
                "could not clear the tag of a room that was not handed out; the next handout replaces it"),
        }
    }

    /// The message was deleted but the room was not handed out: give it a message again,
    /// visible at once (the room warmed up long ago).
    async fn put_back(&self, room: &PooledRoom) {
        match self.pool.send(&room.encode(), Duration::ZERO).await {
            Ok(()) => tracing::info!(room = %room.name, "room returned to the pool"),
            Err(e) => {
                tracing::warn!(room = %room.name, error = %e, "could not return the room to the pool; deleting it");
                if let Err(delete) = self.pexip.delete_conference(room.id).await {
                    tracing::error!(room = %room.name, error = %delete, "could not delete the room either; the maintainer will");
                }
            }
        }
    }

    async fn create_on_demand(&self, tag: &str, until: Instant) -> Result<Handout, BrokerError> {
        if self.settings.pool.empty_fallback == EmptyFallback::Reject {
            return Err(BrokerError::Unavailable {
                what: "the room pool is empty; try again",
                cause: "POOL_EMPTY_FALLBACK=reject".into(),
            });
        }
        tracing::warn!(
            "room pool is empty: creating a room on demand (Pexip may need ~90 s to make it dialable)"
        );
        let made = self.create_room(&self.critical, tag, RoomState::allocated_now());
        let conference = match tokio::time::timeout_at(until, made).await {
            Ok(Ok(conference)) => conference,
            Ok(Err(e)) => return Err(BrokerError::pexip(e)),
            // A room created after this point is `allocated` with a tag and no caller: the
            // reaper removes it once it is ROOM_MAX_AGE_HOURS old.
            Err(_) => return Err(BrokerError::pexip("creating a room on demand timed out")),
        };
        let mut room = ConstrainedConference::from_conference(&conference);
        room.pin = None;
        Ok(Handout {
            room,
            from_pool: false,
        })
    }

    /// POST then GET (the create answer has no body; aliases need their ids). The state goes
    /// on the room's alias in the POST itself.
    async fn create_room(
        &self,
        pexip: &PexipClient,
        tag: &str,
        state: RoomState,
    ) -> Result<Conference, PexipError> {
        let name = room::new_room_name(&self.settings.rooms.name_prefix);
        let body = room::new_room_body(&self.settings.rooms, &name, tag, state);
        let id = pexip.create_conference(&body).await?;
        match pexip.get_conference(id).await {
            Ok(Some(conference)) => Ok(conference),
            Ok(None) => Err(PexipError::NotFound),
            Err(e) => {
                // Created but unreadable: do not leave it behind.
                if let Err(delete) = pexip.delete_conference(id).await {
                    tracing::warn!(room = %name, error = %delete, "could not delete an unreadable new room");
                }
                Err(e)
            }
        }
    }

    /// Creates one room and enqueues it (TTL -1, warm-up invisibility). Never re-sends. The
    /// room is `created` from its POST; it is pooled once its message is stored. A failed
    /// send leaves a room no message may reach: the maintainer settles it.
    pub async fn refill_one(&self) -> Result<String, RefillError> {
        let _slot = self.refill_slots.acquire().await.expect("never closed");
        let conference = self
            .create_room(&self.pexip, "", RoomState::created_now())
            .await?;
        let pooled = PooledRoom::from_conference(&conference);
        if let Err(cause) = self
            .pool
            .send(&pooled.encode(), self.settings.pool.warmup)
            .await
        {
            return Err(RefillError::EnqueueFailed {
                name: pooled.name,
                cause,
            });
        }
        tracing::info!(room = %pooled.name, id = pooled.id, "room added to the pool");
        Ok(pooled.name)
    }

    /// Replaces a handed-out room (after the answer).
    async fn refill_after_handout(&self, from_pool: bool, replacing: Option<Replacing>) {
        if !from_pool {
            // The pool was empty; only top it up while it is below target, counting the
            // rooms on their way back (all but this refill).
            let coming = self.replacing.load(Ordering::Relaxed).saturating_sub(1);
            match self.pool.approximate_count().await {
                Ok(n) if n + coming >= u64::from(self.settings.pool.target_size) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "refill skipped: pool size unknown");
                    return;
                }
            }
        }
        if let Err(e) = self.refill_one().await {
            tracing::warn!(error = %e, "refill failed; the pool maintainer will top up");
        }
        drop(replacing);
    }

    /// Deletes a room by name. Persistent rooms are refused before any call.
    pub async fn delete_room(&self, name: &RoomName) -> Result<(), BrokerError> {
        if self.settings.rooms.is_persistent(name.as_str()) {
            return Err(BrokerError::Forbidden(format!(
                "room {} is persistent and cannot be deleted",
                name.as_str()
            )));
        }
        let conference = self
            .caller
            .find_by_name(name.as_str())
            .await
            .map_err(BrokerError::pexip)?
            .ok_or_else(|| no_such_room(name))?;
        match self.caller.delete_conference(conference.id).await {
            Ok(()) => {
                tracing::info!(room = name.as_str(), id = conference.id, "room deleted");
                Ok(())
            }
            Err(PexipError::NotFound) => Err(no_such_room(name)),
            Err(e) => Err(BrokerError::pexip(e)),
        }
    }
}

/// Whether a failed PATCH may still have changed the room (it timed out or the server failed).
fn may_have_landed(e: &PexipError) -> bool {
    !matches!(e, PexipError::NotFound | PexipError::Rejected(_))
}

fn no_such_room(name: &RoomName) -> BrokerError {
    BrokerError::NotFound(format!("room {} does not exist", name.as_str()))
}
