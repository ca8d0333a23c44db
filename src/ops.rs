//! Operator commands on the same settings as the service: `pool fill|drain`, `reap`,
//! `maintain` (`gc` is in `crate::gc`, `status` in `crate::status`).
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

/// Where a command's output goes: the terminal for a local command ([`Console`]), the
/// operation's record when the service runs it for a remote one (`crate::operations`), whose
/// entries the remote command replays into a [`Console`]: the same lines either way.
pub trait Out: Send + Sync {
    /// Long work of `len` steps starts (a progress bar on a terminal).
    fn total(&self, len: u64);
    /// One step done.
    fn step(&self, line: String);
    /// A job of a few seconds with no steps starts (a spinner on a terminal).
    fn waiting(&self, what: &str);
    /// A result line (stdout).
    fn line(&self, line: String);
    /// A failure line (stderr).
    fn error(&self, line: String);
}

/// A command's output on this process's terminal: progress bars and spinners on a terminal,
/// plain lines otherwise (CI logs, pipes).
#[derive(Default)]
pub struct Console {
    bar: std::sync::Mutex<Option<ProgressBar>>,
}

impl Console {
    /// Clears a progress bar or spinner before a line is printed.
    pub fn finish(&self) {
        if let Some(bar) = self.bar.lock().expect("console lock").take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Out for Console {
    fn total(&self, len: u64) {
        self.finish();
        if !std::io::stderr().is_terminal() {
            return;
        }
        let bar = ProgressBar::new(len);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}") {
            bar.set_style(style);
        }
        *self.bar.lock().expect("console lock") = Some(bar);
    }

    fn step(&self, line: String) {
        match &*self.bar.lock().expect("console lock") {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(line);
            }
            None => println!("{line}"),
        }
    }

    fn waiting(&self, what: &str) {
        self.finish();
        if !std::io::stderr().is_terminal() {
            eprintln!("{what}…");
            return;
        }
        let spinner = ProgressBar::new_spinner();
        spinner.set_message(what.to_owned());
        spinner.enable_steady_tick(Duration::from_millis(120));
        *self.bar.lock().expect("console lock") = Some(spinner);
    }

    fn line(&self, line: String) {
        self.finish();
        println!("{line}");
    }

    fn error(&self, line: String) {
        self.finish();
        eprintln!("{line}");
    }
}

/// Adds `count` rooms, or as many as the pool lacks of its target.
pub async fn pool_fill(broker: &Broker, count: Option<u64>, out: &dyn Out) -> bool {
    let count = match count {
        Some(n) => n,
        None => match broker.pool().approximate_count().await {
            Ok(size) => u64::from(broker.settings().pool.target_size).saturating_sub(size),
            Err(e) => {
                out.error(format!("pool fill failed: {e}"));
                return false;
            }
        },
    };
    if count == 0 {
        out.line("pool is at its target; nothing to add".into());
        return true;
    }
    out.total(count);
    let fill = maintain::add_rooms(broker, count, |ok| {
        out.step(if ok {
            "room added".into()
        } else {
            "room failed".into()
        })
    })
    .await;
    out.line(format!(
        "added {}, {} failed; the pool now holds {}",
        rooms(u64::from(fill.created)),
        fill.failed,
        fill.size
    ));
    fill.failed == 0
}

/// Deletes every pooled room in Pexip (persistent ones excepted) and its message.
pub async fn pool_drain(broker: &Broker, out: &dyn Out) -> bool {
    let total = broker.pool().approximate_count().await.unwrap_or(0);
    out.total(total);
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
                out.error(format!("pool drain stopped: {e}"));
                failed += 1;
                break;
            }
        };
        for msg in batch {
            let deleted = match drain_room(broker, &msg.text).await {
                Ok(name) => {
                    out.step(format!("deleted {name}"));
                    broker.pool().delete(&msg).await.is_ok()
                }
                Err((name, e)) => {
                    out.step(format!("could not delete {name}: {e}"));
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
    out.line(format!("drained {}, {failed} failed", rooms(drained)));
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
pub async fn reap(broker: &Broker, dry_run: bool, out: &dyn Out) -> bool {
    run_maintainer(
        broker,
        Plan {
            dry_run,
            reap: true,
            fill: false,
        },
        out,
    )
    .await
}

/// One maintainer run (what `function-pool-maintain` does: repair, reap, top up), recorded
/// as the last `maintain` run when it changes anything.
pub async fn maintain(broker: &Broker, dry_run: bool, out: &dyn Out) -> bool {
    // As the timer runs it: a dry run reports the repair; it does not plan a top-up.
    let plan = Plan {
        dry_run,
        reap: true,
        fill: !dry_run,
    };
    let report = maintainer_report(broker, plan, out).await;
    if !dry_run {
        crate::runs::record(broker, "maintain", &report).await;
    }
    print_report(&report, out)
}

async fn run_maintainer(broker: &Broker, plan: Plan, out: &dyn Out) -> bool {
    let report = maintainer_report(broker, plan, out).await;
    print_report(&report, out)
}

async fn maintainer_report(
    broker: &Broker,
    plan: Plan,
    out: &dyn Out,
) -> crate::run_report::RunReport {
    // A room is judged on two looks a few seconds apart: say so rather than sit silent.
    out.waiting("reading Pexip and the queue, then a second look a few seconds later");
    crate::routes::invoke::printed(maintain::run_plan(broker, plan)).await
}

/// A run's report lines; `true` when it succeeded.
pub fn print_report(report: &crate::run_report::RunReport, out: &dyn Out) -> bool {
    for line in &report.logs {
        out.line(line.clone());
    }
    !report.failed
}
