//! The chaos suite: SPEC.md's pool invariant under concurrency, upstream faults, a storage
//! outage and a killed process.
//!
//! Two real `maxconf` processes share one pool (same Azurite queues, same Pexip simulator).
//! Many concurrent clients create rooms through both while a fault schedule runs: Pexip
//! answering 5xx in bursts, dropping connections, slow (beyond the request timeout), down;
//! Azurite stopped and restarted (its data on disk, so the queue survives, as Azure's does);
//! one service killed with SIGKILL and restarted. Clients delete some of their rooms and
//! report `conference_ended` for others while creates go on. Then the faults stop, the books
//! settle, the maintainer runs, and the books must balance:
//!
//! - no room is handed out twice: every 200 answer names a different room, and every room
//!   that still exists carries the tag of the one client it was handed to;
//! - every non-persistent room in Pexip is either handed out (to exactly one client, no pool
//!   message) or reachable by exactly one pool message; a room handed out whose answer was lost
//!   (its service was killed while answering) counts as handed out, at most one per lost answer;
//! - every pool message names a room that exists.
//!
//! `cargo test --test chaos` runs the short form (200 creates, about 25 s). The long form:
//! `CHAOS_CREATES=1000 cargo test --release --test chaos -- --nocapture` (about 4 minutes).
//!
//! A create killed, or cut off by the storage outage, while it holds a pool message leaves that
//! message hidden for the create's lease (13 s with `PEXIP_TIMEOUT_SECS=1`). The long form waits
//! for every hidden message to reappear. The short form moves the queue's clock instead: it stops
//! Azurite, marks every hidden message visible in Azurite's saved database, and starts it again,
//! which is what the leases running out would do. Either way every room is then checked exactly.
//!
//! Orphans (a refill killed between creating its room and enqueueing it, a create killed between
//! deleting its message and its PATCH) are deleted by the maintainer only once older than
//! warm-up + a create's lease + 60 s. Rather than wait that long, the suite moves the clock:
//! when no message is hidden, it back-dates the `maxconf:created:` state (on the room's alias)
//! of every room not handed out by ten minutes (through Pexip's API) before the maintainer runs.
//!
//! During the whole load the maintainer and the garbage collector are invoked every 1.5 s on
//! alternate services, every 7th caller gives up after 400 ms, every 4th + 2 caller writes a
//! marker-like description on its room and reads it back, the pool (40) is larger than one
//! peek, and service 1 is stopped with SIGTERM while Pexip is slow: it must exit 0 after
//! answering every request it had accepted.

#[path = "../examples/support/azurite.rs"]
mod azurite;
#[path = "../examples/support/service.rs"]
mod service;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azurite::DiskAzurite;
use maxconf::pool::Queue;
use maxconf::pool::message::{PoolMessage, decode};
use maxconf::sim::{SimConfig, SimServer, Simulator};
use serde_json::{Value, json};
use service::{Service, run_command};

const BIN: &str = env!("CARGO_BIN_EXE_maxconf");
const POOL_QUEUE: &str = "chaos-pool";
const DELETION_QUEUE: &str = "chaos-deletions";
const SINK_USER: &str = "pexip-events";
const SINK_PASSWORD: &str = "chaos-sink-password";
/// Larger than one peek (32 messages): the maintainer must read the queue to its end.
const POOL_SIZE: u32 = 40;
const BASE_LATENCY: Duration = Duration::from_millis(10);

/// What one create request came to.
#[derive(Debug)]
enum Outcome {
    /// 200: the room's name and id, and the tag this client asked for.
    HandedOut { name: String, id: u64, tag: String },
    /// 503, as SPEC allows when Pexip or storage fails.
    Unavailable,
    /// Any other status: always a failure of the suite.
    Unexpected(u16, String),
    /// No answer (the service was killed or was restarting).
    NoAnswer,
    /// The client gave up before the answer (as APIM or a caller may).
    GaveUp,
}

#[derive(Default)]
struct Record {
    outcomes: Vec<Outcome>,
    /// Rooms deleted through `DELETE /api/room/…` (204).
    deleted: HashSet<String>,
    /// Rooms reported ended through the event sink (200).
    ended: HashSet<String>,
    delete_statuses: BTreeMap<u16, usize>,
    event_statuses: BTreeMap<u16, usize>,
    /// Descriptions callers wrote (marker-like on purpose) and read back (200), and how many of
    /// those came back as written.
    descriptions_written: usize,
    descriptions_read_back: usize,
    /// Requests that service 1 accepted but never answered while it stopped on SIGTERM.
    dropped_while_stopping: usize,
}

/// `CHAOS_CREATES` set: the long form.
fn long_form() -> bool {
    std::env::var_os("CHAOS_CREATES").is_some()
}

fn creates_wanted() -> usize {
    std::env::var("CHAOS_CREATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// `host&video_call_id` as hex, unique per client request.
fn uui(i: usize) -> (String, String) {
    let call = format!("chaos{i}");
    (
        format!("{};encoding=hex", hex::encode(format!("id&{call}"))),
        format!("https://id.gov.bc.ca/idcheck/protected/video/{call}"),
    )
}

fn env_for(azurite: &DiskAzurite, sim: &SimServer) -> BTreeMap<String, String> {
    [
        ("AzureWebJobsStorage", azurite.connection_string()),
        ("POOL_QUEUE_NAME", POOL_QUEUE.into()),
        ("DELETION_QUEUE_NAME", DELETION_QUEUE.into()),
        ("PEXIP_BASE_URL", sim.base_url()),
        ("PEXIP_USERNAME", "chaos".into()),
        ("PEXIP_PASSWORD", "chaos-pexip-password".into()),
        ("PEXIP_TIMEOUT_SECS", "1".into()),
        ("AUTH_MODE", "none".into()),
        ("POOL_WARMUP_SECS", "0".into()),
        ("POOL_TARGET_SIZE", POOL_SIZE.to_string()),
        ("EVENT_SINK_USERNAME", SINK_USER.into()),
        ("EVENT_SINK_PASSWORD", SINK_PASSWORD.into()),
        ("RUST_LOG", "info".into()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// One create, then (for some clients) a delete or a `conference_ended` of the room handed out.
async fn client(
    http: reqwest::Client,
    bases: [String; 2],
    i: usize,
    record: Arc<Mutex<Record>>,
) -> Outcome {
    let (uui, tag) = uui(i);
    let base = &bases[i % 2];
    // Every 7th caller gives up after 400 ms, whatever the create is doing.
    let mut request = http
        .post(format!("{base}/api/room/create?uuiData={uui}"))
        .header("x-functions-key", "chaos");
    if i % 7 == 3 {
        request = request.timeout(Duration::from_millis(400));
    }
    let answer = request.send().await;
    let response = match answer {
        Ok(r) => r,
        Err(e) if e.is_timeout() && i % 7 == 3 => return Outcome::GaveUp,
        Err(e) => {
            // Refused connections are fine while a service is down; a request it had
            // accepted must be answered when it stops on SIGTERM.
            if !e.is_connect() && i % 2 == 1 && STOPPING.load(Ordering::SeqCst) {
                record.lock().unwrap().dropped_while_stopping += 1;
            }
            return Outcome::NoAnswer;
        }
    };
    let status = response.status().as_u16();
    let body = response.text().await;
    let outcome = match (status, body) {
        (200, Ok(body)) => {
            let room: Value = serde_json::from_str(&body).expect("create answers JSON");
            assert_eq!(room["tag"], tag.as_str(), "the tag asked for: {room}");
            assert!(room.get("pin").is_none(), "no host pin in a create answer");
            Outcome::HandedOut {
                name: room["name"].as_str().expect("name").to_owned(),
                id: room["id"].as_u64().expect("id"),
                tag,
            }
        }
        (200, Err(_)) => Outcome::NoAnswer,
        (503, _) => Outcome::Unavailable,
        (s, body) => Outcome::Unexpected(s, body.unwrap_or_default()),
    };
    // Racing the other creates: every 4th room is deleted at once (through the other
    // service), every 4th + 1 is reported ended by Pexip's event sink.
    if let Outcome::HandedOut { name, .. } = &outcome {
        let other = &bases[(i + 1) % 2];
        if i.is_multiple_of(4) {
            let status = match http
                .delete(format!("{other}/api/room/{name}"))
                .header("x-functions-key", "chaos")
                .send()
                .await
            {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            let mut r = record.lock().unwrap();
            *r.delete_statuses.entry(status).or_default() += 1;
            if status == 204 {
                r.deleted.insert(name.clone());
            }
        } else if i % 4 == 2 {
            // The caller writes a marker-like description on its room: it must come back as
            // written and change nothing about how maxconf treats the room.
            let description = "maxconf:pool:2020-01-01T00:00:00Z";
            let patched = http
                .patch(format!("{other}/api/room/{name}"))
                .header("x-functions-key", "chaos")
                .json(&json!({ "description": description }))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if matches!(patched, Ok(202)) {
                let read = match http
                    .get(format!(
                        "{other}/api/room/{name}?constrained_attributes=false"
                    ))
                    .header("x-functions-key", "chaos")
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => r.json::<Value>().await.ok(),
                    _ => None,
                };
                // A read that fails (a Pexip fault, a service restarting) proves nothing either way.
                if let Some(body) = read {
                    let mut r = record.lock().unwrap();
                    r.descriptions_written += 1;
                    if body["description"] == description {
                        r.descriptions_read_back += 1;
                    }
                }
            }
        } else if i % 4 == 1 {
            let event =
                json!({"event": "conference_ended", "data": {"name": name, "conference": name}});
            let status = match http
                .post(format!("{other}/api/public/event_sink"))
                .basic_auth(SINK_USER, Some(SINK_PASSWORD))
                .json(&event)
                .send()
                .await
            {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            let mut r = record.lock().unwrap();
            *r.event_statuses.entry(status).or_default() += 1;
            if status == 200 {
                r.ended.insert(name.clone());
            }
        }
    }
    outcome
}

/// The pool's messages: waits (up to `deadline`) until the messages a killed create or a
/// storage outage left leased reappear, then reads them all. Returns the texts and how many
/// messages were still hidden at the deadline.
async fn all_messages(pool: &Queue, deadline: Instant) -> (Vec<String>, u64) {
    loop {
        let total = pool.approximate_count().await.expect("count");
        let mut held = Vec::new();
        loop {
            let batch = pool
                .receive(32, Duration::from_secs(20))
                .await
                .expect("receive");
            if batch.is_empty() {
                break;
            }
            held.extend(batch);
        }
        for msg in &held {
            pool.release(msg, Duration::ZERO).await.expect("release");
        }
        let hidden = total.saturating_sub(held.len() as u64);
        if hidden == 0 || Instant::now() >= deadline {
            return (held.into_iter().map(|m| m.text).collect(), hidden);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Polls until Pexip's room count and the pool's size stop moving (refills in flight land).
async fn settle(sim: &SimServer, pool: &Queue) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (usize::MAX, u64::MAX);
    let mut steady = 0;
    while steady < 4 {
        let now = (
            sim.sim.room_count(),
            pool.approximate_count().await.expect("count"),
        );
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
        assert!(
            Instant::now() < deadline,
            "the books never settled: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn maintain(http: &reqwest::Client, base: &str) -> Value {
    let body = json!({
        "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "IsPastDue": false}},
        "Metadata": {"sys": {"MethodName": "function-pool-maintain"}}
    });
    let response = http
        .post(format!("{base}/function-pool-maintain"))
        .json(&body)
        .send()
        .await
        .expect("maintain");
    let status = response.status().as_u16();
    let reply: Value = response.json().await.expect("maintain reply");
    assert_eq!(status, 200, "maintain failed: {reply}");
    reply
}

/// Moves the state of every room not handed out ten minutes back, past the orphan threshold
/// (warm-up + a create's lease + 60 s), as if that time had passed. The state is on the
/// room's own alias.
async fn age_pool_rooms(http: &reqwest::Client, sim: &SimServer) -> usize {
    let then = (time::OffsetDateTime::now_utc() - Duration::from_secs(600))
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut aged = 0;
    for room in sim.sim.rooms() {
        let alias = &room["aliases"][0];
        let state = alias["description"].as_str().unwrap_or("");
        let tag = room["tag"].as_str().unwrap_or("");
        if !state.starts_with("maxconf:created:") || !tag.is_empty() {
            continue;
        }
        let alias_id = alias["id"].as_u64().unwrap();
        let status = http
            .patch(format!(
                "{}/api/admin/configuration/v1/conference_alias/{alias_id}/",
                sim.base_url()
            ))
            .basic_auth("chaos", Some("chaos"))
            .json(&json!({"description": format!("maxconf:created:{then}")}))
            .send()
            .await
            .expect("patch the simulator")
            .status();
        assert!(
            status.is_success(),
            "back-dating alias {alias_id}: {status}"
        );
        aged += 1;
    }
    aged
}

/// Set while service 1 stops on SIGTERM.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The maintainer and the garbage collector, invoked every 1.5 s on alternate services for
/// the whole load (far more often than their timers), until `stop`. Returns how many ran.
async fn timers_meanwhile(
    http: reqwest::Client,
    bases: [String; 2],
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (usize, usize) {
    let mut runs = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let base = bases[n % 2].clone();
        let function = if n % 3 == 2 {
            "function-room-gc"
        } else {
            "function-pool-maintain"
        };
        let http = http.clone();
        runs.push(tokio::spawn(async move {
            let body =
                json!({"Data": {"timer": {}}, "Metadata": {"sys": {"MethodName": function}}});
            http.post(format!("{base}/{function}"))
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
        n += 1;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let mut answered = 0;
    for run in runs {
        if let Ok(Ok(_)) = run.await {
            answered += 1;
        }
    }
    (n, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_books_balance_under_load_and_faults() {
    maxconf::tls::ensure_crypto_provider();
    let creates = creates_wanted();
    // Open-loop arrivals over the run, so that every fault meets traffic.
    let run_for = Duration::from_millis((creates as u64 * 60).max(12_000));
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-{}", std::process::id()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let azurite = Arc::new(Mutex::new(DiskAzurite::start(root, &work.join("azurite"))));
    let sim = Simulator::spawn(SimConfig {
        latency: BASE_LATENCY,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let env = env_for(&azurite.lock().unwrap(), &sim);
    let conn = azurite.lock().unwrap().connection_string();
    let storage =
        maxconf::pool::connection::resolve("Chaos", |n| (n == "Chaos").then(|| conn.clone()))
            .expect("connection");
    let pool = Queue::azure(&storage, POOL_QUEUE, Duration::from_secs(10)).expect("pool queue");

    // Seed the pool with the operators' command, then start the two services.
    let fill = run_command(
        Path::new(BIN),
        &["pool", "fill", "--count", &POOL_SIZE.to_string()],
        &env,
    );
    assert_eq!(
        pool.approximate_count().await.unwrap(),
        u64::from(POOL_SIZE),
        "{fill}"
    );
    let log = |n: usize| work.join(format!("service-{n}.log"));
    let services = [
        Service::start(Path::new(BIN), env.clone(), azurite::free_port(), &log(0)),
        Service::start(Path::new(BIN), env.clone(), azurite::free_port(), &log(1)),
    ];
    let bases = [services[0].base(), services[1].base()];
    let services = Arc::new(Mutex::new(services));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // The fault schedule, at fractions of the run.
    let started = Instant::now();
    let at = move |fraction: f64| started + run_for.mul_f64(fraction);
    let faults = {
        let sim = sim.sim.clone();
        let azurite = azurite.clone();
        let services = services.clone();
        tokio::spawn(async move {
            let mut log = Vec::new();
            let mut step = async |fraction: f64, what: &str| {
                tokio::time::sleep_until(at(fraction).into()).await;
                log.push(format!("{:>6.1}s {what}", started.elapsed().as_secs_f64()));
            };
            step(0.05, "Pexip: 8 answers 503").await;
            sim.fail_next(8, 503);
            step(0.10, "SIGKILL service 1").await;
            services.lock().unwrap()[1].kill();
            step(0.14, "restart service 1").await;
            let s = services.clone();
            tokio::task::spawn_blocking(move || s.lock().unwrap()[1].restart())
                .await
                .unwrap();
            step(0.18, "Azurite stopped").await;
            let a = azurite.clone();
            tokio::task::spawn_blocking(move || a.lock().unwrap().stop())
                .await
                .unwrap();
            step(0.34, "Azurite restarted").await;
            let a = azurite.clone();
            tokio::task::spawn_blocking(move || a.lock().unwrap().restart())
                .await
                .unwrap();
            step(0.35, "Pexip drops 6 connections").await;
            sim.drop_next(6);
            step(0.42, "Pexip slow: 1.5 s, beyond PEXIP_TIMEOUT_SECS=1").await;
            sim.set_latency(Duration::from_millis(1500));
            step(
                0.45,
                "SIGTERM service 1 while Pexip is slow; start it again once stopped",
            )
            .await;
            STOPPING.store(true, Ordering::SeqCst);
            services.lock().unwrap()[1].signal_term();
            // The stop is graceful and bounded; the schedule goes on meanwhile.
            let stop = {
                let services = services.clone();
                tokio::spawn(async move {
                    let deadline = Instant::now() + Duration::from_secs(90);
                    let status = loop {
                        if let Some(status) = services.lock().unwrap()[1].exited() {
                            break Some(status);
                        }
                        if Instant::now() > deadline {
                            break None;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    };
                    STOPPING.store(false, Ordering::SeqCst);
                    let s = services.clone();
                    tokio::task::spawn_blocking(move || s.lock().unwrap()[1].start_again())
                        .await
                        .unwrap();
                    status
                })
            };
            step(0.48, "Pexip slow: 300 ms").await;
            sim.set_latency(Duration::from_millis(300));
            step(0.55, "Pexip latency back to 10 ms; 12 answers 500").await;
            sim.set_latency(BASE_LATENCY);
            sim.fail_next(12, 500);
            step(0.62, "Pexip: the next 2 creates succeed but answer 500").await;
            sim.create_then_fail(2);
            step(0.68, "Pexip down").await;
            sim.set_down(true);
            step(0.72, "Pexip up; drops 4 connections").await;
            sim.set_down(false);
            sim.drop_next(4);
            step(0.80, "SIGKILL service 0 and restart it").await;
            let s = services.clone();
            tokio::task::spawn_blocking(move || s.lock().unwrap()[0].restart())
                .await
                .unwrap();
            step(0.86, "Pexip: 6 answers 502").await;
            sim.fail_next(6, 502);
            let stopped = stop.await.unwrap();
            log.push(format!("service 1 after SIGTERM: {stopped:?}"));
            assert!(
                stopped.is_some_and(|s| s.success()),
                "SIGTERM: not a graceful exit: {stopped:?}"
            );
            log
        })
    };

    // The maintainer and GC, every 1.5 s on alternate services, during the whole load.
    let timers_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let timers = tokio::spawn(timers_meanwhile(
        http.clone(),
        bases.clone(),
        timers_stop.clone(),
    ));

    // Many concurrent clients: request i starts at i/creates of the run, 48 in flight at most.
    let record = Arc::new(Mutex::new(Record::default()));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(48));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..creates {
        tokio::time::sleep_until((started + run_for.mul_f64(i as f64 / creates as f64)).into())
            .await;
        let permit = in_flight.clone().acquire_owned().await.unwrap();
        let (http, bases, record, done) =
            (http.clone(), bases.clone(), record.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let outcome = client(http, bases, i, record).await;
            done.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            outcome
        }));
    }
    let mut record_outcomes = Vec::new();
    for task in tasks {
        record_outcomes.push(task.await.expect("client"));
    }
    let fault_log = faults.await.expect("fault schedule");
    timers_stop.store(true, Ordering::SeqCst);
    let (timer_runs, timer_answers) = timers.await.expect("timers");
    sim.sim.clear_faults();
    sim.sim.set_latency(Duration::ZERO);
    let record = {
        let mut r = std::mem::take(&mut *record.lock().unwrap());
        r.outcomes = record_outcomes;
        r
    };

    // Settle: refills in flight land, messages leased by killed or cut-off creates reappear.
    settle(&sim, &pool).await;
    // A create killed or cut off while holding a message leaves it hidden for the lease
    // (13 s here). The long form waits that out and checks every room
    // exactly; the short form checks what it can see and bounds the rest by the hidden count.
    let lease_wait = if long_form() { 150 } else { 3 };
    let (mut texts, mut hidden) =
        all_messages(&pool, Instant::now() + Duration::from_secs(lease_wait)).await;
    let mut expired = 0;
    if hidden > 0 && !long_form() {
        // Move the queue's clock instead: every lease runs out now.
        let a = azurite.clone();
        expired = tokio::task::spawn_blocking(move || a.lock().unwrap().expire_leases(POOL_QUEUE))
            .await
            .unwrap();
        (texts, hidden) = all_messages(&pool, Instant::now() + Duration::from_secs(10)).await;
    }
    println!("{} visible pool messages after the load", texts.len());

    // The maintainer, with the orphan threshold passed (only when no message is still hidden:
    // the queue's clock cannot be moved, and a hidden message would reappear only later).
    let aged = if hidden == 0 {
        age_pool_rooms(&http, &sim).await
    } else {
        0
    };
    let first = maintain(&http, &bases[0]).await;
    settle(&sim, &pool).await;
    let second = maintain(&http, &bases[1]).await;
    settle(&sim, &pool).await;
    let (texts, hidden) = all_messages(&pool, Instant::now() + Duration::from_secs(3)).await;

    // ---- the books ----
    let mut handed: HashMap<String, (u64, String)> = HashMap::new();
    let (mut unavailable, mut no_answer, mut gave_up) = (0, 0, 0);
    let mut unexpected = Vec::new();
    for outcome in &record.outcomes {
        match outcome {
            Outcome::HandedOut { name, id, tag } => {
                let before = handed.insert(name.clone(), (*id, tag.clone()));
                assert!(before.is_none(), "room {name} was handed out twice");
            }
            Outcome::Unavailable => unavailable += 1,
            Outcome::NoAnswer => no_answer += 1,
            Outcome::GaveUp => gave_up += 1,
            Outcome::Unexpected(s, body) => unexpected.push(format!("{s} {body}")),
        }
    }
    let ids: HashSet<u64> = handed.values().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), handed.len(), "a room id was handed out twice");

    let mut messages: HashMap<u64, usize> = HashMap::new();
    for text in &texts {
        match decode(text) {
            Ok(PoolMessage::Room(room)) => *messages.entry(room.id).or_default() += 1,
            other => panic!("unexpected pool message {other:?}"),
        }
    }
    let rooms = sim.sim.rooms();
    let existing: HashSet<u64> = rooms.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    let mut problems = Vec::new();
    let mut lost_answers = Vec::new();
    // Rooms not handed out whose message is not visible: allowed only while messages are
    // hidden (short form), one per hidden message.
    let mut unseen = Vec::new();
    for id in messages.keys() {
        if !existing.contains(id) {
            problems.push(format!(
                "a pool message names room {id}, which does not exist"
            ));
        }
    }
    for room in &rooms {
        let name = room["name"].as_str().unwrap();
        let id = room["id"].as_u64().unwrap();
        let tag = room["tag"].as_str().unwrap_or("");
        let count = messages.get(&id).copied().unwrap_or(0);
        match handed.get(name) {
            Some((_, asked)) => {
                if count != 0 {
                    problems.push(format!("room {name} was handed out and has {count} messages"));
                }
                if tag != asked {
                    problems.push(format!("room {name} was handed out for {asked} but has tag {tag:?}"));
                }
                if record.deleted.contains(name) {
                    problems.push(format!("room {name} was deleted (204) but still exists"));
                }
            }
            None if count == 1 => {}
            None if count == 0 && !tag.is_empty() => lost_answers.push(name.to_owned()),
            None if count == 0 => unseen.push(name.to_owned()),
            None => problems.push(format!(
                "room {name} (tag {tag:?}, description {}) was not handed out and has {count} messages",
                room["description"]
            )),
        }
    }
    if unseen.len() as u64 > hidden {
        let log = sim.sim.request_log();
        let detail: Vec<String> = unseen
            .iter()
            .map(|name| {
                let room = sim.sim.room_by_name(name).unwrap_or_default();
                let path = format!("/conference/{}/", room["id"]);
                let calls: Vec<&str> = log
                    .iter()
                    .filter(|r| r.path_and_query.contains(&path))
                    .map(|r| r.method.as_str())
                    .collect();
                format!("{name} ({}; Pexip saw {calls:?})", room["description"])
            })
            .collect();
        problems.push(format!(
            "rooms reachable by no visible message ({hidden} messages still hidden): {}",
            detail.join(", ")
        ));
    }
    if lost_answers.len() > no_answer + gave_up {
        problems.push(format!(
            "{} rooms were tagged but handed to no client ({lost_answers:?}); only {} answers were lost",
            lost_answers.len(),
            no_answer + gave_up
        ));
    }
    if record.descriptions_read_back != record.descriptions_written {
        problems.push(format!(
            "{} of {} callers' descriptions came back as written",
            record.descriptions_read_back, record.descriptions_written
        ));
    }
    if record.dropped_while_stopping > 0 {
        problems.push(format!(
            "{} requests accepted by service 1 got no answer when it stopped on SIGTERM",
            record.dropped_while_stopping
        ));
    }
    let stats = sim.sim.stats();
    let summary = format!(
        "creates {creates}: {} handed out, {unavailable} unavailable (503), \
         {no_answer} without an answer, {gave_up} callers gave up, {} unexpected\n\
         timers during the load: {timer_runs} invoked, {timer_answers} answered; \
         descriptions written {} (read back as written {})\n\
         deletes {:?}, conference_ended {:?}\n\
         Pexip: {} rooms now, {} created, {} requests, {} injected faults, {} dropped connections\n\
         pool: {} visible messages, {hidden} hidden ({expired} leases run out by moving Azurite's clock); {aged} pooled and `creating` rooms back-dated; {} rooms with no visible message; \
         {} tagged rooms whose answer was lost\n\
         faults:\n  {}\n\
         maintain 1: {}\nmaintain 2: {}",
        handed.len(),
        unexpected.len(),
        record.descriptions_written,
        record.descriptions_read_back,
        record.delete_statuses,
        record.event_statuses,
        rooms.len(),
        stats.creates,
        stats.requests,
        stats.injected_faults,
        stats.dropped,
        texts.len(),
        unseen.len(),
        lost_answers.len(),
        fault_log.join("\n  "),
        first["Logs"],
        second["Logs"],
    );
    println!("{summary}");
    assert!(
        unexpected.is_empty(),
        "statuses other than 200 and 503: {unexpected:?}\n{summary}"
    );
    assert!(
        problems.is_empty(),
        "the books do not balance:\n  {}\n{summary}\nservice logs in {}",
        problems.join("\n  "),
        work.display()
    );
    assert!(
        handed.len() >= creates / 2,
        "too few creates succeeded\n{summary}"
    );
    drop(services);
    let _ = std::fs::remove_dir_all(&work);
}
