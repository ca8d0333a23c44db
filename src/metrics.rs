//! `function-metrics`: pool size, deletion backlog, rooms in Pexip and allocated rooms.
//!
//! Emitted through the host's own channel rather than an OpenTelemetry exporter: each value is
//! a `metric <name>=<value>` line in the invocation's `Logs` (Application Insights `traces`,
//! tied to the invocation) and a structured log event (`metric`, `value` fields with
//! `LOG_FORMAT=json`). One fewer SDK, no second connection string, and KQL charts them:
//! `traces | where message startswith "metric " | parse message with "metric " name "=" value:long`.

use crate::broker::Broker;
use crate::maintain::{RoomKind, classify};
use crate::pexip::Conference;
use crate::run_report::RunReport;

pub async fn run(broker: &Broker) -> RunReport {
    let mut report = RunReport::default();
    let (pool, backlog, rooms) = tokio::join!(
        broker.pool().approximate_count(),
        broker.deletions().approximate_count(),
        broker.pexip().list_conferences(&[]),
    );
    let mut emit = |name: &str, value: Result<u64, String>| match value {
        Ok(value) => {
            tracing::info!(metric = name, value, "metric");
            report.logs.push(format!("metric {name}={value}"));
        }
        Err(e) => report.fail(format!("metric {name} unavailable: {e}")),
    };
    emit("maxconf_pool_available", pool.map_err(|e| e.to_string()));
    emit(
        "maxconf_deletion_backlog",
        backlog.map_err(|e| e.to_string()),
    );
    match rooms {
        Ok(rooms) => {
            let allocated = rooms
                .into_iter()
                .filter_map(|raw| Conference::from_value(raw).ok())
                .map(|c| classify(&c, broker.settings()))
                .collect::<Vec<_>>();
            emit("maxconf_pexip_rooms", Ok(allocated.len() as u64));
            let count = allocated
                .iter()
                .filter(|k| matches!(k, RoomKind::Allocated(_) | RoomKind::Unrecorded))
                .count();
            emit("maxconf_allocated_rooms", Ok(count as u64));
        }
        Err(e) => {
            emit("maxconf_pexip_rooms", Err(e.to_string()));
            emit("maxconf_allocated_rooms", Err(e.to_string()));
        }
    }
    report
}
