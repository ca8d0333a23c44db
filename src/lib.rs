//! maxconf: hands out pre-created Pexip Virtual Meeting Rooms from an Azure Storage Queue pool,
//! served as an Azure Functions custom handler.

pub mod app;
pub mod auth;
pub mod broker;
pub mod conference;
pub mod config;
/// `maxconf dev` and `maxconf simulate`: development builds only (the `sim` feature).
#[cfg(feature = "sim")]
pub mod dev;
pub mod doctor;
pub mod error;
pub mod gc;
pub mod genesys;
pub mod handouts;
pub mod maintain;
pub mod metrics;
pub mod opening;
pub mod operations;
pub mod ops;
pub mod pexip;
pub mod pool;
pub mod remote;
pub mod room;
pub mod room_state;
pub mod routes;
pub mod run_report;
pub mod runs;
pub mod secret;
pub mod service_hours;
/// The Pexip simulator: development builds and tests only (the `sim` feature), never the
/// shipped package.
#[cfg(feature = "sim")]
pub mod sim;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod trigger;
pub mod uui;
