//! Operator commands on the same settings as the service: `pool status|fill|drain`, `reap`.
//! Long work shows a progress bar on a terminal and plain lines otherwise; each returns whether
//! everything succeeded, which `main` turns into the exit status.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::broker::Broker;
use crate::maintain::{self, Plan};
use crate::pexip::PexipError;
use crate::pool::MAX_BATCH;
use crate::pool::message::{self, PoolMessage};

/// "1 room", "2 rooms".
fn rooms(n: u64) -> String {
    if n == 1 {
        "1 room".to_owned()
    } else {
        format!("{n} rooms")
    }
}

/// A spinner on a terminal while a job of a few seconds runs; one line on stderr otherwise.
struct Waiting(Option<ProgressBar>);

impl Waiting {
    fn start(what: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            eprintln!("{what}…");
            return Self(None);
        }
        let spinner = ProgressBar::new_spinner();
        spinner.set_message(what.to_owned());
        spinner.enable_steady_tick(Duration::from_millis(120));
        Self(Some(spinner))
    }

    fn finish(self) {
        if let Some(spinner) = self.0 {
            spinner.finish_and_clear();
        }
    }
}

/// A progress bar on a terminal; plain lines on anything else (CI logs, pipes).
struct Progress(Option<ProgressBar>);

impl Progress {
    fn new(len: u64) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = ProgressBar::new(len);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}") {
            bar.set_style(style);
        }
        Self(Some(bar))
    }

    fn step(&self, line: String) {
        match &self.0 {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(line);
            }
            None => println!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Adds `count` rooms, or as many as the pool lacks of its target.
pub async fn pool_fill(broker: &Broker, count: Option<u64>) -> bool {
    let count = match count {
        Some(n) => n,
        None => match broker.pool().approximate_count().await {
            Ok(size) => u64::from(broker.settings().pool.target_size).saturating_sub(size),
            Err(e) => {
                eprintln!("pool fill failed: {e}");
                return false;
            }
        },
    };
    if count == 0 {
        println!("pool is at its target; nothing to add");
        return true;
    }
    let progress = Progress::new(count);
    let fill = maintain::add_rooms(broker, count, |ok| {
        progress.step(if ok {
            "room added".into()
        } else {
            "room failed".into()
        })
    })
    .await;
    progress.finish();
    println!(
        "added {}, {} failed; the pool now holds {}",
        rooms(u64::from(fill.created)),
        fill.failed,
        fill.size
    );
    fill.failed == 0
}

/// Deletes every pooled room in Pexip (persistent ones excepted) and its message.
pub async fn pool_drain(broker: &Broker) -> bool {
    let total = broker.pool().approximate_count().await.unwrap_or(0);
    let progress = Progress::new(total);
    let (mut drained, mut failed) = (0u64, 0u64);
    loop {
        let batch = match broker
            .pool()
            .receive(MAX_BATCH, Duration::from_secs(120))
            .await
        {
            Ok(batch) if batch.is_empty() => break,
            Ok(batch) => batch,
            Err(e) => {
                eprintln!("pool drain stopped: {e}");
                failed += 1;
                break;
            }
        };
        for msg in batch {
            let deleted = match drain_room(broker, &msg.text).await {
                Ok(name) => {
                    progress.step(format!("deleted {name}"));
                    broker.pool().delete(&msg).await.is_ok()
                }
                Err((name, e)) => {
                    progress.step(format!("could not delete {name}: {e}"));
                    let _ = broker.pool().release(&msg, Duration::ZERO).await;
                    false
                }
            };
            if deleted {
                drained += 1;
            } else {
                failed += 1;
            }
        }
        if failed > 0 {
            // Pexip or storage is failing: stop rather than spin on the same messages.
            break;
        }
    }
    progress.finish();
    println!("drained {}, {failed} failed", rooms(drained));
    failed == 0
}

/// Deletes the room a pool message names; persistent and unknown rooms are left alone.
async fn drain_room(broker: &Broker, text: &str) -> Result<String, (String, PexipError)> {
    let (id, name) = match message::decode(text) {
        Ok(PoolMessage::Room(room)) => (Some(room.id), room.name),
        Ok(PoolMessage::LegacyName(name)) => match broker.pexip().find_by_name(&name).await {
            Ok(found) => (found.map(|c| c.id), name),
            Err(e) => return Err((name, e)),
        },
        Err(_) => return Ok("an unreadable message".into()),
    };
    if broker.settings().rooms.is_persistent(&name) {
        return Ok(format!("{name} (persistent: message only)"));
    }
    if let Some(id) = id {
        match broker.pexip().delete_conference(id).await {
            Ok(()) | Err(PexipError::NotFound) => {}
            Err(e) => return Err((name, e)),
        }
    }
    Ok(name)
}

/// Orphans and leaked rooms: the maintainer's repair without the top-up.
pub async fn reap(broker: &Broker, dry_run: bool) -> bool {
    // A room is judged on two looks a few seconds apart: say so rather than sit silent.
    let waiting =
        Waiting::start("reading Pexip and the queue, then a second look a few seconds later");
    let report = crate::routes::invoke::printed(maintain::run_plan(
        broker,
        Plan {
            dry_run,
            reap: true,
            fill: false,
        },
    ))
    .await;
    waiting.finish();
    for line in &report.logs {
        println!("{line}");
    }
    !report.failed
}
