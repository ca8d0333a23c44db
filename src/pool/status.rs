//! The pool's size against its target, and the deletion backlog (`GET /api/pool`, `maxconf
//! pool status`).

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct PoolStatus {
    pub queue: String,
    /// Approximate: includes rooms warming up and messages held by a create.
    pub available: u64,
    pub target: u32,
    pub deletion_backlog: u64,
}

pub async fn status(broker: &crate::broker::Broker) -> Result<PoolStatus, super::QueueError> {
    let (available, backlog) = tokio::join!(
        broker.pool().approximate_count(),
        broker.deletions().approximate_count()
    );
    Ok(PoolStatus {
        queue: broker.pool().name().to_owned(),
        available: available?,
        target: broker.settings().pool.target_size,
        deletion_backlog: backlog?,
    })
}
