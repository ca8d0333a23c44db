//! The room pool: the queue transport (Azure Storage or in memory) and the message format.

mod azure;
pub mod connection;
mod memory;
pub mod message;
mod queue;
pub mod sas;
pub mod side;
pub mod status;

pub use azure::ensure_crypto_provider;
pub use connection::{ConnectionError, StorageConnection};
pub use queue::{MAX_BATCH, Queue, QueueError, Received, is_valid_queue_name};
