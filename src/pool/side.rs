//! Record queues beside the pool queue (`<pool>-runs`, `<pool>-ops`, `<pool>-handouts`): small
//! records every instance and the CLI must see, kept in the storage account the app already has.
//! `maxconf dev` keeps them in memory, like its other queues.

use std::sync::OnceLock;
use std::time::Duration;

use super::{Queue, QueueError};
use crate::config::Settings;

/// One record queue, named by its suffix.
pub struct SideQueue {
    suffix: &'static str,
    memory: OnceLock<Queue>,
}

impl SideQueue {
    pub const fn new(suffix: &'static str) -> Self {
        Self {
            suffix,
            memory: OnceLock::new(),
        }
    }

    /// `<pool queue><suffix>`, within the 63 characters a queue name may have.
    pub fn name(&self, settings: &Settings) -> String {
        let mut name = settings.pool.queue_name.clone();
        name.truncate(63 - self.suffix.len());
        format!("{}{}", name.trim_end_matches('-'), self.suffix)
    }

    /// Keep the records in this process (`maxconf dev`).
    pub fn use_memory(&self, settings: &Settings) {
        let _ = self.memory.set(Queue::memory(&self.name(settings)));
    }

    /// The queue; each storage request bounded by `timeout`.
    pub fn queue(&self, settings: &Settings, timeout: Duration) -> Result<Queue, QueueError> {
        match self.memory.get() {
            Some(queue) => Ok(queue.clone()),
            None => Queue::azure(&settings.pool.connection, &self.name(settings), timeout),
        }
    }
}
