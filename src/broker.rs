//! The room broker's use cases: hand a pool room out, delete a room, refill the pool.
//!
//! Pool rules (SPEC.md, "The pool"):
//! - A room is handed out only when its message was deleted: the pop receipt proves we were
//!   its only holder, so no room is ever handed out twice.
//! - A send is never repeated: a send that failed may still have stored its message, and a
//!   second send would give the room two messages.
//! - Rooms carry their state in Pexip's `description`: `maxconf:creating:<time>` from the POST
//!   until its message is sent, `maxconf:pool:<time>` while pooled, `maxconf:allocated:<time>`
//!   once handed out. A room left `creating` (a refill killed or failing before or during its
//!   send) is settled by the maintainer: promoted to `pool` if its message shows up, deleted
//!   once it is old enough that no message can still be hidden for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Semaphore;

use crate::config::{EmptyFallback, Settings};
use crate::error::AppError;
use crate::pexip::{Conference, PexipClient, PexipError};
use crate::pool::message::{self, PoolMessage, PooledRoom};
use crate::pool::{Queue, QueueError, Received};
use crate::room::{self, ConstrainedConference, RoomName};

/// Messages one create may look at before giving up (stale or unusable ones are skipped).
pub const MAX_MESSAGES_PER_CREATE: usize = 5;

pub const CREATING_MARKER: &str = "maxconf:creating:";
pub const POOL_MARKER: &str = "maxconf:pool:";
pub const ALLOCATED_MARKER: &str = "maxconf:allocated:";

pub struct Broker {
    settings: Arc<Settings>,
    pexip: PexipClient,
    pool: Queue,
    deletions: Queue,
    /// How long a received message stays hidden while create works on it. A create gives up
    /// well before it ends (`deadline`), so the lease cannot lapse under a working create and
    /// let a second create hand the same room out.
    lease: Duration,
    deadline: Duration,
    /// Refills may use all Pexip slots but one, which stays free for the critical path.
    refill_slots: Arc<Semaphore>,
    /// Rooms on their way back into the pool that its message count does not show yet: pool
    /// handouts in progress (their refill follows) and refills not yet enqueued. The refill
    /// after an on-demand create counts them, so that a pool held by slow creates does not
    /// look empty and get topped up past its target.
    replacing: Arc<AtomicU64>,
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

/// Where a refill stopped short.
#[derive(Debug, thiserror::Error)]
pub enum RefillError {
    #[error("creating the room in Pexip failed: {0}")]
    Pexip(#[from] PexipError),
    #[error("enqueueing room {name} failed ({cause}); the maintainer will settle it")]
    EnqueueFailed { name: String, cause: QueueError },
}

impl Broker {
    pub fn new(settings: Arc<Settings>, pexip: PexipClient, pool: Queue, deletions: Queue) -> Self {
        // Worst case of one PATCH: 3 tries, each possibly a token fetch, the request and a resend
        // after a 401, plus two waits of up to 30 s for Retry-After.
        let lease = settings.pexip.timeout * 12 + Duration::from_secs(90);
        let deadline = lease - Duration::from_secs(30);
        let refill_slots = Arc::new(Semaphore::new(
            settings.pexip.max_concurrency.saturating_sub(1).max(1),
        ));
        Self {
            settings,
            pexip,
            pool,
            deletions,
            lease,
            deadline,
            refill_slots,
            replacing: Arc::default(),
        }
    }

    /// How long create holds a received message.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn pexip(&self) -> &PexipClient {
        &self.pexip
    }

    pub fn pool(&self) -> &Queue {
        &self.pool
    }

    pub fn deletions(&self) -> &Queue {
        &self.deletions
    }

    /// Hands out a pool room with `tag` set. Critical path: one receive, then the PATCH and
    /// the message delete together. The caller starts a refill after answering.
    pub async fn create(&self, tag: &str) -> Result<Handout, AppError> {
        tokio::time::timeout(self.deadline, self.create_within_lease(tag))
            .await
            .unwrap_or_else(|_| {
                Err(AppError::unavailable(
                    "Pexip is unavailable",
                    "create ran out of time before its lease",
                ))
            })
    }

    async fn create_within_lease(&self, tag: &str) -> Result<Handout, AppError> {
        let description = format!("{ALLOCATED_MARKER}{}", now_rfc3339());
        let patch = json!({"tag": tag, "description": description});
        for _ in 0..MAX_MESSAGES_PER_CREATE {
            let received = self
                .pool
                .receive(1, self.lease)
                .await
                .map_err(|e| AppError::unavailable("the room pool is unavailable", e))?;
            let Some(msg) = received.into_iter().next() else {
                return self.create_on_demand(tag, &description).await;
            };
            let received_at = std::time::Instant::now();
            let Some(room) = self.read_message(&msg).await? else {
                continue;
            };
            let replacing = Replacing::new(&self.replacing);
            let (patched, deleted) = tokio::join!(
                self.pexip.patch_conference(room.id, &patch),
                self.pool.delete(&msg)
            );
            // Within our lease nobody else can hold this receipt: NotFound then means a retried
            // delete whose first try already deleted the message — ours.
            let deleted = match deleted {
                Err(QueueError::NotFound) if received_at.elapsed() < self.deadline => Ok(()),
                other => other,
            };
            match (patched, deleted) {
                (Ok(()), Ok(())) => {
                    tracing::info!(room = %room.name, id = room.id, "room handed out");
                    return Ok(Handout {
                        room: room.handed_out(tag),
                        from_pool: true,
                        _replacing: Some(replacing),
                    });
                }
                (Err(PexipError::NotFound), deleted) => {
                    tracing::warn!(room = %room.name, "pool room no longer exists in Pexip; message discarded");
                    if deleted.is_err() {
                        // Still leased: it reappears later and is discarded again then.
                        let _ = self.pool.delete(&msg).await;
                    }
                }
                (Ok(()), Err(e)) => {
                    // Not ours for sure (the receipt may have gone stale): never hand it out.
                    // If the message survives it reappears and the room is handed out later.
                    tracing::warn!(room = %room.name, error = %e, "could not delete the pool message; room not handed out");
                    if !matches!(e, QueueError::NotFound) {
                        let _ = self.pool.release(&msg, Duration::ZERO).await;
                    }
                    if matches!(e, QueueError::Unavailable(_)) {
                        return Err(AppError::unavailable("the room pool is unavailable", e));
                    }
                }
                (Err(e), Ok(())) => {
                    self.put_back(&room).await;
                    return Err(AppError::unavailable("Pexip is unavailable", e));
                }
                (Err(e), Err(_)) => {
                    let _ = self.pool.release(&msg, Duration::ZERO).await;
                    return Err(AppError::unavailable("Pexip is unavailable", e));
                }
            }
        }
        Err(AppError::unavailable(
            "no usable room in the pool; try again",
            format!("{MAX_MESSAGES_PER_CREATE} pool messages were stale or unusable"),
        ))
    }

    /// The room a message names; `None` (message discarded) when it cannot be used.
    async fn read_message(&self, msg: &Received) -> Result<Option<PooledRoom>, AppError> {
        let room = match message::decode(&msg.text) {
            Ok(PoolMessage::Room(room)) => room,
            Ok(PoolMessage::LegacyName(name)) => match self.pexip.find_by_name(&name).await {
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
                Err(e) => {
                    let _ = self.pool.release(msg, Duration::ZERO).await;
                    return Err(AppError::unavailable("Pexip is unavailable", e));
                }
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

    /// The message was deleted but the room was not handed out: give it a message again.
    async fn put_back(&self, room: &PooledRoom) {
        match self
            .pool
            .send(&room.encode(), self.settings.pool.warmup)
            .await
        {
            Ok(()) => tracing::info!(room = %room.name, "room returned to the pool"),
            Err(e) => {
                tracing::warn!(room = %room.name, error = %e, "could not return the room to the pool; deleting it");
                if let Err(delete) = self.pexip.delete_conference(room.id).await {
                    tracing::error!(room = %room.name, error = %delete, "could not delete the room either; the maintainer will");
                }
            }
        }
    }

    async fn create_on_demand(&self, tag: &str, description: &str) -> Result<Handout, AppError> {
        if self.settings.pool.empty_fallback == EmptyFallback::Reject {
            return Err(AppError::unavailable(
                "the room pool is empty; try again",
                "POOL_EMPTY_FALLBACK=reject",
            ));
        }
        tracing::warn!(
            "room pool is empty: creating a room on demand (Pexip may need ~90 s to make it dialable)"
        );
        let conference = self
            .create_room(tag, description)
            .await
            .map_err(|e| AppError::unavailable("Pexip is unavailable", e))?;
        let mut room = ConstrainedConference::from_conference(&conference);
        room.pin = None;
        Ok(Handout {
            room,
            from_pool: false,
            _replacing: None,
        })
    }

    /// POST then GET (the create answer has no body; aliases need their ids).
    async fn create_room(&self, tag: &str, description: &str) -> Result<Conference, PexipError> {
        let name = room::new_room_name(&self.settings.rooms.name_prefix);
        let body = room::new_room_body(&self.settings.rooms, &name, tag, description);
        let id = self.pexip.create_conference(&body).await?;
        match self.pexip.get_conference(id).await {
            Ok(Some(conference)) => Ok(conference),
            Ok(None) => Err(PexipError::NotFound),
            Err(e) => {
                // Created but unreadable: do not leave it behind.
                if let Err(delete) = self.pexip.delete_conference(id).await {
                    tracing::warn!(room = %name, error = %delete, "could not delete an unreadable new room");
                }
                Err(e)
            }
        }
    }

    /// Creates one room and enqueues it (TTL -1, warm-up invisibility). Never re-sends. The room
    /// is marked `creating` until its message is sent, then `pool`; a failed send leaves it
    /// `creating` for the maintainer, which can tell whether the message was stored after all.
    pub async fn refill_one(&self) -> Result<String, RefillError> {
        let _slot = self.refill_slots.acquire().await.expect("never closed");
        let created = now_rfc3339();
        let conference = self
            .create_room("", &format!("{CREATING_MARKER}{created}"))
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
        let promote = json!({"description": format!("{POOL_MARKER}{created}")});
        if let Err(e) = self.pexip.patch_conference(pooled.id, &promote).await {
            // Harmless: the maintainer promotes it when it sees the message.
            tracing::warn!(room = %pooled.name, error = %e, "could not mark the room pooled");
        }
        tracing::info!(room = %pooled.name, id = pooled.id, "room added to the pool");
        Ok(pooled.name)
    }

    /// Replaces a handed-out room in the background (after the response).
    pub fn spawn_refill(self: &Arc<Self>, handout: &Handout) {
        let broker = Arc::clone(self);
        let from_pool = handout.from_pool;
        // Taken before the handout's own count is dropped, so the room is never uncounted.
        let replacing = Replacing::new(&self.replacing);
        tokio::spawn(async move {
            if !from_pool {
                // The pool was empty; only top it up while it is below target, counting the
                // rooms on their way back (all but this refill).
                let coming = broker.replacing.load(Ordering::Relaxed).saturating_sub(1);
                match broker.pool.approximate_count().await {
                    Ok(n) if n + coming >= u64::from(broker.settings.pool.target_size) => return,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "refill skipped: pool size unknown");
                        return;
                    }
                }
            }
            if let Err(e) = broker.refill_one().await {
                tracing::warn!(error = %e, "refill failed; the pool maintainer will top up");
            }
            drop(replacing);
        });
    }

    /// Deletes a room by name. Persistent rooms are refused before any call.
    pub async fn delete_room(&self, name: &RoomName) -> Result<(), AppError> {
        if self.settings.rooms.is_persistent(name.as_str()) {
            return Err(AppError::Forbidden(format!(
                "room {} is persistent and cannot be deleted",
                name.as_str()
            )));
        }
        let conference = self
            .pexip
            .find_by_name(name.as_str())
            .await
            .map_err(|e| AppError::unavailable("Pexip is unavailable", e))?
            .ok_or_else(|| no_such_room(name))?;
        match self.pexip.delete_conference(conference.id).await {
            Ok(()) => {
                tracing::info!(room = name.as_str(), id = conference.id, "room deleted");
                Ok(())
            }
            Err(PexipError::NotFound) => Err(no_such_room(name)),
            Err(e) => Err(AppError::unavailable("Pexip is unavailable", e)),
        }
    }
}

/// A room handed out by create.
#[derive(Debug)]
pub struct Handout {
    pub room: ConstrainedConference,
    /// False when the pool was empty and the room was created on demand.
    pub from_pool: bool,
    /// Counts this room as on its way back into the pool until the refill takes over.
    _replacing: Option<Replacing>,
}

fn no_such_room(name: &RoomName) -> AppError {
    AppError::NotFound(format!("room {} does not exist", name.as_str()))
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero is a valid nanosecond")
        .format(&Rfc3339)
        .expect("UTC time formats as RFC 3339")
}
