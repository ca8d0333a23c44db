//! The room pool: the queue transport (Azure Storage or in memory) and the message format.
