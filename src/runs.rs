//! The last run of each timer job (maintainer, GC), kept in the storage account the app already
//! has so every instance and the CLI see it: one small message per job on a dedicated queue
//! (`<pool queue>-runs`), replaced by each run. Recording is best effort: a run never fails
//! because its record could not be written.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::broker::Broker;
use crate::config::Settings;
use crate::pool::side::SideQueue;
use crate::pool::{Queue, QueueError};
use crate::routes::invoke::RunReport;

/// Storage requests for the record are short; a slow one must not hold a timer's reply.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Longest summary kept (queue messages are at most 64 KiB).
const MAX_SUMMARY: usize = 1_000;

/// The record of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// `maintain` or `gc`.
    pub job: String,
    /// When the run finished (RFC 3339, UTC).
    pub at: String,
    pub ok: bool,
    /// The run's summary lines, joined.
    pub summary: String,
}

/// `<pool queue>-runs`.
pub static QUEUE: SideQueue = SideQueue::new("-runs");

/// The queue holding the records.
pub fn queue(settings: &Settings) -> Result<Queue, QueueError> {
    QUEUE.queue(settings, TIMEOUT)
}

/// Replaces `job`'s record with this run's. Failures are logged, never returned.
pub async fn record(broker: &Broker, job: &str, report: &RunReport) {
    let mut summary = report.logs.join("; ");
    if summary.len() > MAX_SUMMARY {
        let mut end = MAX_SUMMARY;
        while !summary.is_char_boundary(end) {
            end -= 1;
        }
        summary.truncate(end);
        summary.push('…');
    }
    let record = RunRecord {
        job: job.to_owned(),
        at: OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc())
            .format(&Rfc3339)
            .unwrap_or_default(),
        ok: !report.failed,
        summary,
    };
    let write = async {
        let queue = queue(broker.settings())?;
        queue.create_if_missing().await?;
        replace(&queue, &record).await
    };
    match tokio::time::timeout(TIMEOUT, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(job, error = %e, "could not record the run"),
        Err(_) => tracing::warn!(job, "could not record the run: storage timed out"),
    }
}

async fn replace(queue: &Queue, record: &RunRecord) -> Result<(), QueueError> {
    let text = serde_json::to_string(record).expect("a record serialises");
    queue.send(&text, Duration::ZERO).await?;
    // Older records of the same job go; other jobs' records are put back at once.
    for msg in queue.receive(32, Duration::from_secs(30)).await? {
        let old = serde_json::from_str::<RunRecord>(&msg.text).ok();
        match old {
            Some(old) if old.job == record.job && old != *record => queue.delete(&msg).await?,
            None => queue.delete(&msg).await?,
            Some(_) => queue.release(&msg, Duration::ZERO).await?,
        }
    }
    Ok(())
}

/// The latest record of each job, oldest job name first.
pub async fn last_runs(settings: &Settings) -> Result<Vec<RunRecord>, QueueError> {
    let queue = queue(settings)?;
    let mut latest: std::collections::BTreeMap<String, RunRecord> = Default::default();
    for text in queue.peek(32).await? {
        if let Ok(record) = serde_json::from_str::<RunRecord>(&text) {
            let newer = latest
                .get(&record.job)
                .is_none_or(|known| known.at <= record.at);
            if newer {
                latest.insert(record.job.clone(), record);
            }
        }
    }
    Ok(latest.into_values().collect())
}
