//! `maxconf status` (alias `pool status`): what an operator needs at 3 a.m. — the pool's ready
//! and warming rooms against the target, Pexip's rooms by state, the deletion backlog, the last
//! maintainer and GC runs, and whether storage and Pexip answer. Exit status 1 when something
//! is down or the ready rooms are below `--min-ready`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::broker::Broker;
use crate::doctor::{self, PROBE_TIMEOUT, Probe};
use crate::pexip::{Conference, PexipError};
use crate::runs::RunRecord;

/// Visible messages a single peek can count (the service's limit).
const PEEK_MAX: u32 = 32;

/// The report, as `GET /api/manage/status` also answers it (and `--api` reads it back).
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub pool: PoolView,
    /// Pexip's rooms by state (`None` when Pexip did not answer).
    pub pexip_rooms: Option<BTreeMap<String, u64>>,
    pub deletion_backlog: Option<u64>,
    /// The latest maintainer and GC runs, as recorded by whichever instance ran them.
    pub last_runs: Vec<RunRecord>,
    pub reachability: Vec<Probe>,
    /// With service hours set: open or closed, and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Why the exit status is not 0 (empty when all is well).
    pub problems: Vec<String>,
}

/// `open until …` / `closed until …`, when service hours are configured.
fn service_line(hours: &crate::service_hours::ServiceHours) -> Option<String> {
    if !hours.configured() {
        return None;
    }
    let status = hours.status();
    let state = if status.is_open() { "open" } else { "closed" };
    Some(match status.next_change() {
        Some(at) => format!("{state} until {at} ({})", hours.timezone()),
        None if hours.changes() => format!("{state}, no change within two years"),
        None => format!("{state} (SERVICE_OVERRIDE)"),
    })
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PoolView {
    pub queue: String,
    pub target: u32,
    pub min_ready: u64,
    /// Visible messages: rooms a create can take now. At most 32 can be counted.
    pub ready: Option<u64>,
    /// `ready` is a lower bound (a peek counts at most 32).
    pub ready_at_least: bool,
    /// Invisible messages: rooms still warming up, or held by a create in progress (the queue
    /// cannot tell these apart).
    pub warming_or_held: Option<u64>,
    /// All messages (approximate).
    pub total: Option<u64>,
}

/// Pexip's rooms by what maxconf makes of them. The one place `status` reads room state.
fn room_states(rooms: Vec<serde_json::Value>, broker: &Broker) -> BTreeMap<String, u64> {
    use crate::maintain::{RoomKind, classify};
    let mut states = BTreeMap::new();
    for raw in rooms {
        let state = match Conference::from_value(raw) {
            Ok(room) => match classify(&room, broker.settings()) {
                RoomKind::Persistent => "persistent",
                RoomKind::Unallocated(_) => "not handed out",
                // A pool handout's time is recorded by the maintainer in storage, not in Pexip.
                RoomKind::Allocated(_) | RoomKind::Unrecorded => "handed out",
                RoomKind::Foreign => "foreign",
            },
            Err(_) => "unreadable",
        };
        *states.entry(state.to_owned()).or_insert(0) += 1;
    }
    states
}

pub async fn collect(broker: &Broker, min_ready: Option<u64>) -> Status {
    let settings = broker.settings();
    let target = settings.pool.target_size;
    let min_ready = min_ready.unwrap_or(u64::from(target) / 2);
    let mut problems = Vec::new();
    let open = settings.service_hours.status().is_open();

    let storage = if broker.pool().is_memory() {
        // `maxconf dev`: the queues live in this process.
        Probe {
            name: "storage".into(),
            endpoint: "memory".into(),
            ok: true,
            detail: "in-process queues (maxconf dev)".into(),
        }
    } else {
        doctor::probe_storage(settings, PROBE_TIMEOUT).await
    };
    let storage_up = storage.ok;
    let (total, visible, backlog, runs, rooms) = tokio::join!(
        async {
            match storage_up {
                true => broker.pool().approximate_count().await.ok(),
                false => None,
            }
        },
        async {
            match storage_up {
                true => broker
                    .pool()
                    .peek(PEEK_MAX)
                    .await
                    .ok()
                    .map(|v| v.len() as u64),
                false => None,
            }
        },
        async {
            match storage_up {
                true => broker.deletions().approximate_count().await.ok(),
                false => None,
            }
        },
        async {
            match storage_up {
                true => crate::runs::last_runs(settings).await.unwrap_or_default(),
                false => Vec::new(),
            }
        },
        async {
            // Outside service hours Pexip is off by design: not asked, not a failure.
            if !open {
                return None;
            }
            Some(
                tokio::time::timeout(
                    settings.pexip.timeout.max(PROBE_TIMEOUT) * 2,
                    broker.pexip().list_conferences(&[]),
                )
                .await,
            )
        },
    );
    let (pexip_rooms, pexip) = match rooms {
        None => (None, Ok(())),
        Some(Ok(Ok(rooms))) => (Some(room_states(rooms, broker)), Ok(())),
        Some(Ok(Err(e))) => (None, Err(doctor::pexip_failure(&e))),
        Some(Err(_)) => (
            None,
            Err(doctor::pexip_failure(&PexipError::Unavailable(
                "timed out".into(),
            ))),
        ),
    };
    let pexip = Probe {
        name: "pexip".into(),
        endpoint: doctor::origin(&settings.pexip.base_url),
        ok: pexip.is_ok(),
        detail: match pexip {
            Ok(_) if !open => "not asked: outside service hours".to_owned(),
            Ok(_) => "the conference list answers".to_owned(),
            Err(e) => e,
        },
    };
    if !storage.ok {
        problems.push(format!("storage is down ({})", storage.endpoint));
    }
    if !pexip.ok {
        problems.push(format!("Pexip is down ({})", pexip.endpoint));
    }
    let ready_at_least = visible == Some(u64::from(PEEK_MAX));
    // While closed the pool is topped up at the opening, not before.
    if let Some(ready) = visible
        && ready < min_ready
        && open
    {
        problems.push(format!(
            "{ready} ready rooms, below the minimum of {min_ready}"
        ));
    }
    Status {
        pool: PoolView {
            queue: broker.pool().name().to_owned(),
            target,
            min_ready,
            ready: visible,
            ready_at_least,
            warming_or_held: total.zip(visible).map(|(t, v)| t.saturating_sub(v)),
            total,
        },
        pexip_rooms,
        deletion_backlog: backlog,
        last_runs: runs,
        reachability: vec![storage, pexip],
        service: service_line(&settings.service_hours),
        problems,
    }
}

/// The status as text, one fact per line.
pub fn render(status: &Status) -> String {
    let unknown = || "unknown".to_owned();
    let pool = &status.pool;
    let mut out = String::new();
    let ready = pool
        .ready
        .map(|n| format!("{}{n}", if pool.ready_at_least { "at least " } else { "" }))
        .unwrap_or_else(unknown);
    out.push_str(&format!(
        "pool {}: {ready} ready of target {} (minimum {})\n",
        pool.queue, pool.target, pool.min_ready
    ));
    out.push_str(&format!(
        "  warming up or held by a create: {} (the queue cannot tell these apart)\n",
        pool.warming_or_held.map_or_else(unknown, |n| n.to_string())
    ));
    let rooms = match &status.pexip_rooms {
        Some(states) if states.is_empty() => "none".to_owned(),
        Some(states) => states
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect::<Vec<_>>()
            .join(", "),
        None => unknown(),
    };
    out.push_str(&format!("pexip rooms: {rooms}\n"));
    out.push_str(&format!(
        "deletion backlog: {}\n",
        status
            .deletion_backlog
            .map_or_else(unknown, |n| n.to_string())
    ));
    for job in ["maintain", "gc"] {
        match status.last_runs.iter().find(|r| r.job == job) {
            Some(run) => out.push_str(&format!(
                "last {job}: {} {}: {}\n",
                run.at,
                if run.ok { "ok" } else { "FAILED" },
                run.summary
            )),
            None => out.push_str(&format!("last {job}: no run recorded\n")),
        }
    }
    for probe in &status.reachability {
        out.push_str(&probe.line());
        out.push('\n');
    }
    if let Some(service) = &status.service {
        out.push_str(&format!("service: {service}\n"));
    }
    if status.problems.is_empty() {
        out.push_str("status: ok\n");
    } else {
        out.push_str(&format!("status: NOT OK: {}\n", status.problems.join("; ")));
    }
    out
}

/// `maxconf status`: prints the status; `true` when all is well.
pub async fn command(broker: &Broker, json: bool, min_ready: Option<u64>) -> bool {
    print(&collect(broker, min_ready).await, json)
}

/// Prints a status report, local or remote alike; `true` when all is well.
pub fn print(status: &Status, json: bool) -> bool {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(status).expect("status serialises")
        );
    } else {
        print!("{}", render(status));
    }
    status.problems.is_empty()
}
