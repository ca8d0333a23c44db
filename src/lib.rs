//! maxconf: hands out pre-created Pexip Virtual Meeting Rooms from an Azure Storage Queue pool,
//! served as an Azure Functions custom handler.

pub mod pool;
pub mod sim;
