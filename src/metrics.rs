//! `function-metrics`: pool size, deletion backlog, rooms in Pexip and allocated rooms, and
//! whether the service is open (`maxconf_service_open` 1/0, with `maxconf_service_next_change_secs`
//! until it changes). Outside service hours Pexip is off and not asked: only the queue metrics
//! and the service state are emitted, and the run succeeds.
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
    let hours = &broker.settings().service_hours;
    let now = hours.now();
    let service = hours.status_at(now);
    let rooms = async {
        if service.is_open() {
            Some(broker.pexip().list_conferences(&[]).await)
        } else {
            None
        }
    };
    let (pool, backlog, rooms) = tokio::join!(
        broker.pool().approximate_count(),
        broker.deletions().approximate_count(),
        rooms,
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
    emit("maxconf_service_open", Ok(u64::from(service.is_open())));
    if let Some(at) = service.next_change() {
        emit(
            "maxconf_service_next_change_secs",
            Ok(crate::service_hours::whole_seconds_until(now, at)),
        );
    }
    match rooms {
        None => report.log(match service.next_change() {
            Some(at) => format!("outside service hours: Pexip metrics skipped; opens at {at}"),
            None => "outside service hours: Pexip metrics skipped".to_owned(),
        }),
        Some(Ok(rooms)) => {
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
        Some(Err(e)) => {
            emit("maxconf_pexip_rooms", Err(e.to_string()));
            emit("maxconf_allocated_rooms", Err(e.to_string()));
        }
    }
    report
}
