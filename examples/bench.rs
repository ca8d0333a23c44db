//! The benchmark: the `maxconf` binary that ships as a process, against a disk-backed Azurite
//! and the Pexip simulator (in this process) with a fixed latency. Not part of `cargo test`.
//!
//! ```sh
//! cargo run --release --example bench -- [--latency-ms 100] [--out docs] [--binary both]
//!     [--scenarios defaults,wide,burst] [--musl-bin PATH] [--perf DIR]
//! ```
//!
//! `--binary musl` is the shipped binary: `scripts/package.sh` builds it (static,
//! x86_64-unknown-linux-musl, `--no-default-features`) and the benchmark runs `dist/app/maxconf`
//! (or `--musl-bin PATH`, to compare two builds); `--binary glibc` is the glibc release build
//! (`cargo build --release --bin maxconf`), a reference; `both` (the default) runs each. Per
//! binary and scenario it reports create and delete latency (p50/p95/p99) and throughput at
//! concurrency 1, 4, 16 and 64, a burst (4 and 16 clients × 30 creates on a pool seeded above
//! the burst, then the time until the pool is back at its target), the Pexip calls per create
//! (from the requests the simulator answered), the service's peak RSS, its CPU time per create
//! (refill included) and its start-up time. `--perf DIR` records a `perf` profile of the
//! service during each binary's 16-client burst. Writes `<out>/BENCHMARKS.md` and
//! `<out>/latency.svg`; the targets table is judged on the musl binary.
//! Loopback only; bounded request counts (about 3,700 requests per binary).

#[path = "support/azurite.rs"]
mod azurite;
#[path = "support/service.rs"]
mod service;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use azurite::DiskAzurite;
use maxconf::pool::Queue;
use maxconf::sim::{SimConfig, Simulator};
use plotters::prelude::*;
use service::{Service, run_command};

const LEVELS: [usize; 4] = [1, 4, 16, 64];
/// Creates per client in a burst, and the burst's client counts.
const BURST_CREATES_PER_CLIENT: usize = 30;
const BURST_CLIENTS: [usize; 2] = [4, 16];
/// Sequential creates whose Pexip calls are counted one by one (critical path vs after).
const COUNTED_CREATES: usize = 10;
/// The IDIM Video API's example uuiData (`id&MTIzNDU2LDc2NTQzMg`).
const UUI: &str = "6964264d54497a4e4455324c4463324e54517a4d67;encoding=hex";
const POOL_QUEUE: &str = "bench-pool";
/// The cap of the default scenario and the burst (`PEXIP_MAX_CONCURRENCY`'s default).
const DEFAULT_CAP: u32 = 5;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavor {
    /// What ships: scripts/package.sh's static musl build.
    Musl,
    /// The glibc release build, as a reference.
    Glibc,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::Musl => "musl",
            Flavor::Glibc => "glibc",
        }
    }
}

struct Options {
    latency: Duration,
    out: PathBuf,
    flavors: Vec<Flavor>,
    musl_bin: Option<PathBuf>,
    scenarios: Vec<String>,
    perf: Option<PathBuf>,
}

const USAGE: &str = "usage: bench [--latency-ms 100] [--out docs] [--binary musl|glibc|both] \
                     [--scenarios defaults,wide,burst] [--musl-bin PATH] [--perf DIR]";

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2);
}

fn options() -> Options {
    let mut options = Options {
        latency: Duration::from_millis(100),
        out: PathBuf::from("docs"),
        flavors: vec![Flavor::Musl, Flavor::Glibc],
        musl_bin: None,
        scenarios: vec!["defaults".into(), "wide".into(), "burst".into()],
        perf: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--latency-ms", Some(v)) => {
                options.latency = Duration::from_millis(v.parse().unwrap_or_else(|_| usage()));
            }
            ("--out", Some(v)) => options.out = PathBuf::from(v),
            ("--binary", Some(v)) => {
                options.flavors = match v.as_str() {
                    "musl" => vec![Flavor::Musl],
                    "glibc" => vec![Flavor::Glibc],
                    "both" => vec![Flavor::Musl, Flavor::Glibc],
                    _ => usage(),
                }
            }
            ("--musl-bin", Some(v)) => options.musl_bin = Some(PathBuf::from(v)),
            ("--scenarios", Some(v)) => {
                options.scenarios = v.split(',').map(str::to_owned).collect();
                if options
                    .scenarios
                    .iter()
                    .any(|s| !["defaults", "wide", "burst"].contains(&s.as_str()))
                {
                    usage();
                }
            }
            ("--perf", Some(v)) => options.perf = Some(PathBuf::from(v)),
            _ => usage(),
        }
    }
    options
}

/// Creates at one concurrency level: how many, and how many rooms to delete afterwards.
fn counts(concurrency: usize) -> (usize, usize) {
    match concurrency {
        1 => (50, 30),
        4 => (120, 60),
        16 => (240, 96),
        _ => (384, 128),
    }
}

/// The pool target of the level scenarios: every level starts from a full pool and its
/// refills bring it back there.
const LEVEL_TARGET: u64 = 384 + 20;
/// The pool target of the burst: above the largest burst (16 × 30).
const BURST_TARGET: u64 = 500;

#[derive(Clone, Copy, Default)]
struct Percentiles {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

fn percentiles(samples: &mut [Duration]) -> Percentiles {
    samples.sort();
    let at = |q: f64| {
        if samples.is_empty() {
            return 0.0;
        }
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: at(1.0),
    }
}

struct Level {
    concurrency: usize,
    creates: usize,
    create: Percentiles,
    create_errors: usize,
    create_throughput: f64,
    deletes: usize,
    delete: Percentiles,
    delete_errors: usize,
    delete_throughput: f64,
    /// Service CPU ticks spent on this level's creates and their refills.
    cpu_ticks: u64,
    peak_rss_kib: u64,
}

struct Scenario {
    name: String,
    max_concurrency: u32,
    levels: Vec<Level>,
    startups: Vec<Duration>,
    /// The default scenario only: the one-client create p50 of five separate runs.
    single_client_p50s: Vec<f64>,
}

/// Runs of sequential creates behind the one-client median, and creates per run.
const SINGLE_CLIENT_RUNS: usize = 5;
const SINGLE_CLIENT_CREATES: usize = 20;

struct Burst {
    clients: usize,
    creates: usize,
    create: Percentiles,
    errors: usize,
    throughput: f64,
    /// From the last answer of the burst until the pool is back at its target.
    back_at_target: Option<Duration>,
    cpu_ticks: u64,
    peak_rss_kib: u64,
    /// Pexip calls during the burst and its refills, by kind.
    calls: BTreeMap<String, usize>,
}

/// Pexip calls of creates made one at a time, each on a quiet service.
#[derive(Default)]
struct CountedCalls {
    creates: usize,
    critical: BTreeMap<String, usize>,
    after: BTreeMap<String, usize>,
}

struct BurstScenario {
    bursts: Vec<Burst>,
    counted: CountedCalls,
    perf: Option<PathBuf>,
}

/// Everything measured on one binary.
struct Run {
    flavor: Flavor,
    bin: PathBuf,
    size_bytes: u64,
    scenarios: Vec<Scenario>,
    burst: Option<BurstScenario>,
}

/// `requests` calls of `call(i)` with `concurrency` workers; latencies and failures.
async fn closed_loop<F, Fut>(
    requests: usize,
    concurrency: usize,
    call: F,
) -> (Vec<Duration>, usize, Duration, Vec<String>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Option<String>, String>> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (call, next) = (call.clone(), next.clone());
            tokio::spawn(async move {
                let mut out = (Vec::new(), 0usize, Vec::new());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        return out;
                    }
                    let t = Instant::now();
                    match call(i).await {
                        Ok(value) => {
                            out.0.push(t.elapsed());
                            out.2.extend(value);
                        }
                        Err(e) => {
                            if out.1 == 0 {
                                eprintln!("  request failed: {e}");
                            }
                            out.1 += 1;
                        }
                    }
                }
            })
        })
        .collect();
    let (mut latencies, mut errors, mut values) = (Vec::new(), 0, Vec::new());
    for worker in workers {
        let (l, e, v) = worker.await.expect("worker");
        latencies.extend(l);
        errors += e;
        values.extend(v);
    }
    (latencies, errors, started.elapsed(), values)
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

// ---- the Pexip simulator, with every request it answered timed ----

/// One request the simulator answered: what, and when it arrived and was answered.
#[derive(Clone)]
struct Call {
    kind: String,
    start: Instant,
    end: Instant,
}

#[derive(Clone, Default)]
struct CallLog {
    calls: Arc<Mutex<Vec<Call>>>,
    in_flight: Arc<AtomicUsize>,
}

impl CallLog {
    fn since(&self, from: Instant) -> Vec<Call> {
        let calls = self.calls.lock().expect("call log");
        calls.iter().filter(|c| c.start >= from).cloned().collect()
    }

    fn last_end(&self) -> Option<Instant> {
        self.calls.lock().expect("call log").last().map(|c| c.end)
    }
}

/// `PATCH conference/{id}/`: the method and the path below the API version, ids elided.
fn call_kind(method: &str, path: &str) -> String {
    let path = path
        .strip_prefix("/api/admin/configuration/v1/")
        .or_else(|| path.strip_prefix("/api/admin/"))
        .unwrap_or(path);
    let path: Vec<&str> = path
        .split('/')
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                s
            }
        })
        .collect();
    format!("{method} {}", path.join("/"))
}

async fn record_call(State(log): State<CallLog>, req: Request, next: Next) -> Response {
    let kind = call_kind(req.method().as_str(), req.uri().path());
    let start = Instant::now();
    log.in_flight.fetch_add(1, Ordering::SeqCst);
    let response = next.run(req).await;
    log.calls.lock().expect("call log").push(Call {
        kind,
        start,
        end: Instant::now(),
    });
    log.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

/// The simulator's own router (its latency, store and request log) behind a layer that
/// times each request, served on a loopback port.
struct Pexip {
    sim: Simulator,
    base: String,
    log: CallLog,
    task: tokio::task::JoinHandle<()>,
}

impl Pexip {
    async fn spawn(latency: Duration) -> Self {
        let sim = Simulator::new(SimConfig {
            latency,
            ..SimConfig::default()
        });
        let log = CallLog::default();
        let app = sim
            .router()
            .layer(middleware::from_fn_with_state(log.clone(), record_call));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the simulator");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("simulator");
        });
        Self {
            sim,
            base,
            log,
            task,
        }
    }
}

impl Drop for Pexip {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tally<'a>(calls: impl IntoIterator<Item = &'a Call>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for c in calls {
        *counts.entry(c.kind.clone()).or_default() += 1;
    }
    counts
}

// ---- the rig ----

struct Rig {
    bin: PathBuf,
    flavor: Flavor,
    pexip: Pexip,
    azurite: DiskAzurite,
    pool: Queue,
    work: PathBuf,
    http: reqwest::Client,
    latency: Duration,
}

impl Rig {
    fn env(&self, max_concurrency: u32, target: u64) -> BTreeMap<String, String> {
        [
            ("AzureWebJobsStorage", self.azurite.connection_string()),
            ("POOL_QUEUE_NAME", POOL_QUEUE.to_owned()),
            ("DELETION_QUEUE_NAME", "bench-deletions".to_owned()),
            ("POOL_TARGET_SIZE", target.to_string()),
            ("PEXIP_BASE_URL", self.pexip.base.clone()),
            ("PEXIP_USERNAME", "bench".to_owned()),
            ("PEXIP_PASSWORD", "bench-password".to_owned()),
            ("PEXIP_MAX_CONCURRENCY", max_concurrency.to_string()),
            ("AUTH_MODE", "none".to_owned()),
            ("POOL_WARMUP_SECS", "0".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Empties the pool queue (the rooms it named stay in the simulator, unused).
    async fn empty_pool(&self) {
        self.pool.clear().await.expect("clear the pool queue");
    }

    /// Tops the pool up to `target` rooms with the operators' command (`maxconf pool fill`
    /// of the binary under test), at zero latency.
    async fn fill_pool(&self, target: u64) {
        let have = self.pool.approximate_count().await.expect("pool count");
        if have < target {
            self.pexip.sim.set_latency(Duration::ZERO);
            let env = self.env(20, target);
            let bin = self.bin.clone();
            tokio::task::spawn_blocking(move || run_command(&bin, &["pool", "fill"], &env))
                .await
                .expect("pool fill");
            self.pexip.sim.set_latency(self.latency);
        }
    }

    /// Waits until the pool is back at `target` and Pexip has been quiet for a moment (every
    /// refill's GET has landed too). `None` if that took over 3 minutes.
    async fn settle(&self, target: u64) -> Option<Duration> {
        let from = Instant::now();
        let deadline = from + Duration::from_secs(180);
        let mut back = None;
        while Instant::now() < deadline {
            if back.is_none() && self.pool.approximate_count().await.unwrap_or(0) >= target {
                back = Some(from.elapsed());
            }
            let quiet = self.pexip.log.in_flight.load(Ordering::SeqCst) == 0
                && self
                    .pexip
                    .log
                    .last_end()
                    .is_none_or(|end| end.elapsed() > self.latency + Duration::from_millis(50));
            if back.is_some() && quiet {
                return back;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("  the pool did not get back to {target} rooms within 3 minutes");
        back
    }

    async fn create(&self, base: &str) -> Result<Option<String>, String> {
        create(&self.http, &format!("{base}/api/room/create?uuiData={UUI}")).await
    }

    fn start(&self, max_concurrency: u32, target: u64, tag: &str) -> (Service, Vec<Duration>) {
        let env = self.env(max_concurrency, target);
        let log = self
            .work
            .join(format!("service-{}-{tag}.log", self.flavor.name()));
        // Start-up: five cold starts (spawn to the first answer to GET /), the last one stays.
        let mut startups = Vec::new();
        let mut service = None;
        for _ in 0..5 {
            drop(service.take());
            let s = Service::start(&self.bin, env.clone(), azurite::free_port(), &log);
            startups.push(s.startup);
            service = Some(s);
        }
        (service.expect("started"), startups)
    }

    async fn scenario(&self, name: &str, max_concurrency: u32) -> Scenario {
        println!(
            "{} scenario {name} (PEXIP_MAX_CONCURRENCY={max_concurrency})",
            self.flavor.name()
        );
        self.empty_pool().await;
        let (service, startups) = self.start(max_concurrency, LEVEL_TARGET, name);
        let base = service.base();
        let ticks_per_ms = clock_ticks_per_second() as f64 / 1000.0;
        let mut levels = Vec::new();
        for concurrency in LEVELS {
            let (creates, deletes) = counts(concurrency);
            self.fill_pool(LEVEL_TARGET).await;
            let cpu_before = service.cpu_ticks().unwrap_or(0);
            let http = self.http.clone();
            let url = format!("{base}/api/room/create?uuiData={UUI}");
            let (mut lat, create_errors, wall, names) =
                closed_loop(creates, concurrency, move |_| {
                    let (http, url) = (http.clone(), url.clone());
                    async move { create(&http, &url).await }
                })
                .await;
            self.settle(LEVEL_TARGET).await;
            let cpu_ticks = service.cpu_ticks().unwrap_or(0) - cpu_before;
            let create = percentiles(&mut lat);
            let create_throughput = creates as f64 / wall.as_secs_f64();

            let names = Arc::new(names);
            let http = self.http.clone();
            let base2 = base.clone();
            let deletes = deletes.min(names.len());
            let (mut lat, delete_errors, wall, _) = closed_loop(deletes, concurrency, move |i| {
                let (http, names, base) = (http.clone(), names.clone(), base2.clone());
                async move {
                    let r = http
                        .delete(format!("{base}/api/room/{}", names[i]))
                        .header("x-functions-key", "bench")
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if r.status() != 204 {
                        return Err(format!("delete answered {}", r.status()));
                    }
                    Ok(None)
                }
            })
            .await;
            let delete = percentiles(&mut lat);
            let level = Level {
                concurrency,
                creates,
                create,
                create_errors,
                create_throughput,
                deletes,
                delete,
                delete_errors,
                delete_throughput: deletes as f64 / wall.as_secs_f64(),
                cpu_ticks,
                peak_rss_kib: service.peak_rss_kib().unwrap_or(0),
            };
            println!(
                "  c={concurrency:>2}: create p50 {:.1} p95 {:.1} p99 {:.1} ms, {:.1}/s, {} errors; \
                 delete p50 {:.1} ms, {:.1}/s, {} errors; CPU {:.3} ms/create; peak RSS {:.1} MiB",
                level.create.p50,
                level.create.p95,
                level.create.p99,
                level.create_throughput,
                level.create_errors,
                level.delete.p50,
                level.delete_throughput,
                level.delete_errors,
                level.cpu_ticks as f64 / ticks_per_ms / creates as f64,
                level.peak_rss_kib as f64 / 1024.0
            );
            levels.push(level);
        }
        // The critical-path target is judged on the median of five one-client runs, each
        // from a full pool on a settled service.
        let mut single_client_p50s = Vec::new();
        if name == "defaults" {
            for _ in 0..SINGLE_CLIENT_RUNS {
                self.fill_pool(LEVEL_TARGET).await;
                let http = self.http.clone();
                let url = format!("{base}/api/room/create?uuiData={UUI}");
                let (mut lat, _, _, _) = closed_loop(SINGLE_CLIENT_CREATES, 1, move |_| {
                    let (http, url) = (http.clone(), url.clone());
                    async move { create(&http, &url).await }
                })
                .await;
                self.settle(LEVEL_TARGET).await;
                single_client_p50s.push(percentiles(&mut lat).p50);
            }
            println!(
                "  one client, {SINGLE_CLIENT_RUNS} runs: create p50 {single_client_p50s:.1?} ms"
            );
        }
        Scenario {
            single_client_p50s,
            name: name.to_owned(),
            max_concurrency,
            levels,
            startups,
        }
    }

    /// Creates one at a time on a quiet service, each followed by its refill: which Pexip
    /// calls answered before the create's answer (its critical path) and which after.
    async fn count_calls(&self, base: &str, target: u64) -> CountedCalls {
        let mut counted = CountedCalls::default();
        for _ in 0..COUNTED_CREATES {
            self.settle(target).await;
            let sent = Instant::now();
            if let Err(e) = self.create(base).await {
                eprintln!("  counted create failed: {e}");
                continue;
            }
            let answered = Instant::now();
            self.settle(target).await;
            let calls = self.pexip.log.since(sent);
            let (critical, after): (Vec<&Call>, Vec<&Call>) =
                calls.iter().partition(|c| c.end <= answered);
            for (kind, n) in tally(critical) {
                *counted.critical.entry(kind).or_default() += n;
            }
            for (kind, n) in tally(after) {
                *counted.after.entry(kind).or_default() += n;
            }
            counted.creates += 1;
        }
        counted
    }

    /// The burst: a pool seeded above the burst (POOL_TARGET_SIZE = BURST_TARGET), then
    /// `clients` × 30 creates at once, then the time until the refills have the pool back at
    /// its target.
    async fn burst(&self, perf_dir: Option<&Path>) -> BurstScenario {
        println!(
            "{} scenario burst (PEXIP_MAX_CONCURRENCY={DEFAULT_CAP}, POOL_TARGET_SIZE={BURST_TARGET})",
            self.flavor.name()
        );
        self.empty_pool().await;
        self.fill_pool(BURST_TARGET).await;
        let (service, _) = self.start(DEFAULT_CAP, BURST_TARGET, "burst");
        let base = service.base();
        let ticks_per_ms = clock_ticks_per_second() as f64 / 1000.0;
        let counted = self.count_calls(&base, BURST_TARGET).await;
        let mut bursts = Vec::new();
        let mut perf = None;
        for clients in BURST_CLIENTS {
            self.settle(BURST_TARGET).await;
            let creates = clients * BURST_CREATES_PER_CLIENT;
            let profiler = match perf_dir {
                Some(dir) if clients == 16 => {
                    let path = dir.join(format!("perf-{}-burst16.data", self.flavor.name()));
                    let child = start_perf(service.pid().expect("pid"), &path);
                    perf = Some(path);
                    child
                }
                _ => None,
            };
            let cpu_before = service.cpu_ticks().unwrap_or(0);
            let started = Instant::now();
            let http = self.http.clone();
            let url = format!("{base}/api/room/create?uuiData={UUI}");
            let (mut lat, errors, wall, _) = closed_loop(creates, clients, move |_| {
                let (http, url) = (http.clone(), url.clone());
                async move { create(&http, &url).await.map(|_| None) }
            })
            .await;
            let back_at_target = self.settle(BURST_TARGET).await;
            let cpu_ticks = service.cpu_ticks().unwrap_or(0) - cpu_before;
            if let Some(child) = profiler {
                stop_perf(child);
            }
            let calls = tally(&self.pexip.log.since(started));
            let burst = Burst {
                clients,
                creates,
                create: percentiles(&mut lat),
                errors,
                throughput: creates as f64 / wall.as_secs_f64(),
                back_at_target,
                cpu_ticks,
                peak_rss_kib: service.peak_rss_kib().unwrap_or(0),
                calls,
            };
            println!(
                "  {clients:>2} clients × {BURST_CREATES_PER_CLIENT}: create p50 {:.1} p95 {:.1} p99 {:.1} max {:.1} ms, \
                 {:.1}/s, {} errors; pool back at target {} after the last answer; CPU {:.3} ms/create; \
                 {:.2} Pexip calls/create",
                burst.create.p50,
                burst.create.p95,
                burst.create.p99,
                burst.create.max,
                burst.throughput,
                burst.errors,
                back_at_target.map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64())),
                burst.cpu_ticks as f64 / ticks_per_ms / creates as f64,
                burst.calls.values().sum::<usize>() as f64 / creates as f64,
            );
            bursts.push(burst);
        }
        BurstScenario {
            bursts,
            counted,
            perf,
        }
    }
}

async fn create(http: &reqwest::Client, url: &str) -> Result<Option<String>, String> {
    let r = http
        .post(url)
        .header("x-functions-key", "bench")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(format!("create answered {}", r.status()));
    }
    let room: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
    Ok(room["name"].as_str().map(str::to_owned))
}

/// `perf record` of the service (call graphs from DWARF; the binaries keep no frame pointers).
fn start_perf(pid: u32, out: &Path) -> Option<Child> {
    let child = Command::new("perf")
        .args([
            "record",
            "-q",
            "-F",
            "499",
            "--call-graph",
            "dwarf,16384",
            "-p",
        ])
        .arg(pid.to_string())
        .arg("-o")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(child) => {
            // perf needs a moment to attach.
            std::thread::sleep(Duration::from_millis(500));
            Some(child)
        }
        Err(e) => {
            eprintln!("  perf record did not start ({e}); no profile");
            None
        }
    }
}

fn stop_perf(child: Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait_with_output();
}

fn sh(command: &str) -> String {
    sh_raw(command).trim().to_owned()
}

/// A command's output as it printed it (`free -h` aligns its header with leading spaces).
fn sh_raw(command: &str) -> String {
    Command::new("sh")
        .args(["-c", command])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_owned())
        .unwrap_or_default()
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn chart(path: &Path, runs: &[Run], latency_ms: f64) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = runs
        .iter()
        .flat_map(|r| &r.scenarios)
        .flat_map(|s| s.levels.iter().map(|l| l.create.p99))
        .fold(latency_ms * 2.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "maxconf create latency vs concurrency (Pexip simulator at {latency_ms:.0} ms)"
            ),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (1f64..64f64).log_scale(),
            (latency_ms * 0.5..max * 1.3).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("concurrent clients")
        .y_desc("create latency (ms)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    let colors = [RGBColor(31, 119, 180), RGBColor(214, 39, 40)];
    type Pick = fn(&Percentiles) -> f64;
    let all: [(&str, Pick, u32); 3] = [
        ("p50", |p| p.p50, 3),
        ("p95", |p| p.p95, 2),
        ("p99", |p| p.p99, 1),
    ];
    for run in runs {
        // The shipped binary with every percentile; the reference with its median only.
        let picks: &[(&str, Pick, u32)] = match run.flavor {
            Flavor::Musl => &all,
            Flavor::Glibc => &all[..1],
        };
        for (scenario, color) in run.scenarios.iter().zip(colors) {
            let color = match run.flavor {
                Flavor::Musl => color,
                Flavor::Glibc => lighter(color),
            };
            for &(label, pick, width) in picks {
                let points: Vec<(f64, f64)> = scenario
                    .levels
                    .iter()
                    .map(|l| (l.concurrency as f64, pick(&l.create)))
                    .collect();
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(width)))?
                    .label(format!("{} {} {label}", run.flavor.name(), scenario.name))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
                    });
                chart.draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, color.filled())),
                )?;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Halfway to white.
fn lighter(c: RGBColor) -> RGBColor {
    let half = |v: u8| v + (255 - v) / 2;
    RGBColor(half(c.0), half(c.1), half(c.2))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn cpu_ms(ticks: u64, creates: usize) -> f64 {
    ticks as f64 / (clock_ticks_per_second() as f64 / 1000.0) / creates.max(1) as f64
}

fn write_levels(md: &mut String, scenario: &Scenario) {
    let _ = writeln!(
        md,
        "| clients | creates | create p50 | p95 | p99 | creates/s | errors | deletes | delete p50 | p95 | p99 | deletes/s | errors | CPU/create | peak RSS |"
    );
    let _ = writeln!(
        md,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for l in &scenario.levels {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} | {} | {:.3} ms | {:.1} MiB |",
            l.concurrency,
            l.creates,
            l.create.p50,
            l.create.p95,
            l.create.p99,
            l.create_throughput,
            l.create_errors,
            l.deletes,
            l.delete.p50,
            l.delete.p95,
            l.delete.p99,
            l.delete_throughput,
            l.delete_errors,
            cpu_ms(l.cpu_ticks, l.creates),
            l.peak_rss_kib as f64 / 1024.0
        );
    }
    let mut startups = scenario.startups.clone();
    let startup = median(&mut startups);
    let _ = writeln!(
        md,
        "\nStart-up (spawn to first answer), five cold starts: median {:.1} ms, max {:.1} ms.\n",
        startup.as_secs_f64() * 1000.0,
        scenario.startups.iter().max().unwrap().as_secs_f64() * 1000.0
    );
}

fn per_create(n: usize, creates: usize) -> String {
    let v = n as f64 / creates.max(1) as f64;
    if v == 0.0 {
        "0".into()
    } else {
        format!("{v:.2}")
    }
}

fn write_calls(md: &mut String, burst: &BurstScenario) {
    let counted = &burst.counted;
    let big = burst.bursts.last();
    let mut kinds: Vec<&String> = counted
        .critical
        .keys()
        .chain(counted.after.keys())
        .chain(big.iter().flat_map(|b| b.calls.keys()))
        .collect();
    kinds.sort();
    kinds.dedup();
    let big_label = big.map_or(String::new(), |b| {
        format!(" | per create, {}-client burst with its refills", b.clients)
    });
    let _ = writeln!(
        md,
        "| Pexip call | per create, critical path | per create, after the answer | per create, in all{big_label} |"
    );
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|{}",
        if big.is_some() { "---:|" } else { "" }
    );
    // One row: calls on the critical path, after the answer, in all, and in the big burst.
    let mut row = |label: &str, c: usize, a: usize, in_burst: Option<usize>, bold: bool| {
        let b = if bold { "**" } else { "" };
        let cell = |n: usize, creates: usize| format!(" {b}{}{b} |", per_create(n, creates));
        let n = counted.creates;
        let _ = write!(
            md,
            "| {label} |{}{}{}",
            cell(c, n),
            cell(a, n),
            cell(c + a, n)
        );
        if let (Some(burst), Some(big)) = (in_burst, big) {
            let _ = write!(md, "{}", cell(burst, big.creates));
        }
        let _ = writeln!(md);
    };
    let get = |m: &BTreeMap<String, usize>, k: &String| m.get(k).copied().unwrap_or(0);
    for kind in &kinds {
        row(
            &format!("`{kind}`"),
            get(&counted.critical, kind),
            get(&counted.after, kind),
            big.map(|b| get(&b.calls, kind)),
            false,
        );
    }
    row(
        "**all**",
        counted.critical.values().sum(),
        counted.after.values().sum(),
        big.map(|b| b.calls.values().sum()),
        true,
    );
    let _ = writeln!(md);
}

fn report(options: &Options, runs: &[Run], azurite_rss_kib: u64) -> String {
    let latency_ms = options.latency.as_secs_f64() * 1000.0;
    let cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let mut command = format!(
        "cargo run --release --example bench -- --latency-ms {} --out {}",
        latency_ms,
        options.out.display()
    );
    if options.flavors.len() == 1 {
        let _ = write!(command, " --binary {}", options.flavors[0].name());
    }
    let _ = writeln!(
        md,
        "Generated by `{command}` (`examples/bench.rs`). Re-run it to refresh every number on \
         this page; the notes at the end are kept in `examples/support/bench_notes.md`.\n"
    );
    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(md, "- CPU: {} (`nproc`: {})", cpu.trim(), sh("nproc"));
    let _ = writeln!(
        md,
        "- Memory (`free -h`):\n\n```\n{}\n```",
        sh_raw("free -h")
    );
    let _ = writeln!(
        md,
        "- Kernel: {}; load average at the end of the run: {}",
        sh("uname -sr"),
        sh("cut -d' ' -f1-3 /proc/loadavg")
    );
    let _ = writeln!(
        md,
        "- **Shared machine**: other builds were running on the same two cores while this ran, so \
         the numbers are noisy (latency tails and throughput most of all).\n"
    );
    let _ = writeln!(md, "## Set-up\n");
    let _ = writeln!(md, "The binaries measured:\n");
    let _ = writeln!(
        md,
        "| binary | built by | file | size |\n|---|---|---|---:|"
    );
    for run in runs {
        let (what, how) = match run.flavor {
            Flavor::Musl => (
                "**musl** (what ships)",
                "`scripts/package.sh`: `cargo build --release --locked --no-default-features --target x86_64-unknown-linux-musl`, static",
            ),
            Flavor::Glibc => (
                "glibc (reference)",
                "`cargo build --release --locked --bin maxconf` (default features), dynamically linked",
            ),
        };
        let file = match run.flavor {
            Flavor::Musl if options.musl_bin.is_some() => run.bin.display().to_string(),
            Flavor::Musl => "dist/app/maxconf".into(),
            Flavor::Glibc => "target/release/maxconf".into(),
        };
        let _ = writeln!(
            md,
            "| {what} | {how} | `{file}` | {:.1} MiB |",
            run.size_bytes as f64 / (1024.0 * 1024.0)
        );
    }
    let _ = writeln!(
        md,
        "\n- Each binary as a process (`maxconf serve`, `FUNCTIONS_CUSTOMHANDLER_PORT`, \
         `AUTH_MODE=none`, `POOL_WARMUP_SECS=0`), requests sent to `/api/…` over loopback \
         HTTP/1.1 as the Functions host forwards them.\n\
         - Azurite 3.37.0 (queue service, data on disk) in its own Node.js process.\n\
         - The Pexip Management API simulator (`src/sim`) in the benchmark process, answering \
         every request after a fixed **{latency_ms:.0} ms**; the benchmark times each request \
         it answers (a layer around the simulator's router) to count the Pexip calls.\n\
         - The pool filled with the binary's own `maxconf pool fill` (at zero latency) up to \
         `POOL_TARGET_SIZE` before each level, so every create is served from the pool (no \
         on-demand creates). Each create is followed by its refill, off the critical path; a \
         level ends when the refills have the pool back at its target and Pexip is idle.\n\
         - Per level: a closed loop of N concurrent clients, each sending its next request when \
         the previous one is answered; then deletes of some of the rooms handed out, at the same \
         concurrency. Latency is measured by the client, from send to the whole answer read.\n\
         - CPU per create: the service's utime + stime (`/proc/<pid>/stat`) over a level's \
         creates and the refills they cause, divided by the creates (10 ms clock ticks). Peak \
         RSS: `VmHWM` from `/proc/<pid>/status`. Start-up: process spawn to the first answer to \
         `GET /` (the host's probe), the median of five cold starts.\n"
    );
    for run in runs {
        for scenario in &run.scenarios {
            let _ = writeln!(
                md,
                "## {}: {} (`PEXIP_MAX_CONCURRENCY={}`, `POOL_TARGET_SIZE={LEVEL_TARGET}`)\n",
                run.flavor.name(),
                scenario.name,
                scenario.max_concurrency
            );
            write_levels(&mut md, scenario);
        }
    }
    if !runs.iter().all(|r| r.scenarios.is_empty()) {
        let _ = writeln!(
            md,
            "Chart: [latency.svg](latency.svg), create latency p50/p95/p99 against concurrency \
             (the glibc reference: p50 only, lighter).\n"
        );
        let _ = writeln!(md, "![create latency against concurrency](latency.svg)\n");
    }
    let bursts: Vec<(&Run, &BurstScenario)> = runs
        .iter()
        .filter_map(|r| r.burst.as_ref().map(|b| (r, b)))
        .collect();
    if !bursts.is_empty() {
        let _ = writeln!(
            md,
            "## Burst (`PEXIP_MAX_CONCURRENCY={DEFAULT_CAP}`, `POOL_TARGET_SIZE={BURST_TARGET}`)\n"
        );
        let _ = writeln!(
            md,
            "The pool seeded to its target of {BURST_TARGET} rooms, above the largest burst; then \
             N clients × {BURST_CREATES_PER_CLIENT} creates each at once (closed loop), then the \
             time from the burst's last answer until the refills have the pool back at \
             {BURST_TARGET} (the queue's approximate count, polled every 20 ms). CPU per create \
             includes the refills.\n"
        );
        let _ = writeln!(
            md,
            "| binary | clients | creates | create p50 | p95 | p99 | max | creates/s | errors | pool back at target after | CPU/create | Pexip calls/create | peak RSS |"
        );
        let _ = writeln!(
            md,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (run, b) in &bursts {
            for l in &b.bursts {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} | {} | {} | {:.3} ms | {:.2} | {:.1} MiB |",
                    run.flavor.name(),
                    l.clients,
                    l.creates,
                    l.create.p50,
                    l.create.p95,
                    l.create.p99,
                    l.create.max,
                    l.throughput,
                    l.errors,
                    l.back_at_target
                        .map_or("not within 3 min".into(), |d| format!(
                            "{:.1} s",
                            d.as_secs_f64()
                        )),
                    cpu_ms(l.cpu_ticks, l.creates),
                    l.calls.values().sum::<usize>() as f64 / l.creates as f64,
                    l.peak_rss_kib as f64 / 1024.0
                );
            }
        }
        let (run, b) = bursts
            .iter()
            .find(|(r, _)| r.flavor == Flavor::Musl)
            .unwrap_or(&bursts[0]);
        let _ = writeln!(md, "\n## Pexip calls per create ({})\n", run.flavor.name());
        let _ = writeln!(
            md,
            "From the requests the simulator answered. The first three columns: {} creates made \
             one at a time on a quiet service (pool at its target), each followed by its refill; \
             a call is on the critical path when the simulator answered it before the create was \
             answered. The last column: every Pexip call during the largest burst and until its \
             refills were done, divided by its creates. `{{id}}` stands for a number.\n",
            b.counted.creates
        );
        write_calls(&mut md, b);
    }

    // Targets, against the shipped binary (musl) when it ran.
    let main = runs
        .iter()
        .find(|r| r.flavor == Flavor::Musl)
        .unwrap_or(&runs[0]);
    let _ = writeln!(md, "## Targets ({} binary)\n", main.flavor.name());
    let _ = writeln!(md, "| target | measured | |\n|---|---|---|");
    let defaults = main.scenarios.iter().find(|s| s.name == "defaults");
    let mut c1_p50 = None;
    if let Some(defaults) = defaults {
        let c1 = &defaults.levels[0];
        c1_p50 = Some(c1.create.p50);
        let mut runs = defaults.single_client_p50s.clone();
        runs.sort_by(f64::total_cmp);
        let (p50, how) = match runs.get(runs.len() / 2) {
            Some(&median) => (
                median,
                format!(
                    "median of {} runs of {SINGLE_CLIENT_CREATES} ({})",
                    runs.len(),
                    runs.iter()
                        .map(|p| format!("{p:.1}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            None => (c1.create.p50, "one run".to_owned()),
        };
        let ratio = p50 / latency_ms;
        let _ = writeln!(
            md,
            "| **critical path**: median create at {latency_ms:.0} ms Pexip latency ≤ 1.1 × that latency (1 client) | {p50:.1} ms = **{ratio:.2} ×**, {how} | {} |",
            verdict(ratio <= 1.1)
        );
    }
    if let Some(b) = &main.burst {
        for l in &b.bursts {
            if l.clients == 4 {
                let _ = writeln!(
                    md,
                    "| burst, 4 clients × {BURST_CREATES_PER_CLIENT}: create p50 ≤ 120 ms and p99 ≤ 150 ms | p50 {:.1} ms, p99 {:.1} ms | {} |",
                    l.create.p50,
                    l.create.p99,
                    verdict(l.create.p50 <= 120.0 && l.create.p99 <= 150.0)
                );
            } else {
                // Creates alone through `cap` slots: each waits for clients/cap round trips.
                let one = c1_p50.unwrap_or(latency_ms);
                let bound = (l.clients as f64 / f64::from(DEFAULT_CAP)).max(1.0) * one;
                let _ = writeln!(
                    md,
                    "| burst, {} clients: create p50 no worse than the cap imposes on creates alone ({} / {DEFAULT_CAP} × {one:.1} ms = {bound:.0} ms) | p50 {:.1} ms | {} |",
                    l.clients,
                    l.clients,
                    l.create.p50,
                    verdict(l.create.p50 <= bound)
                );
            }
            let _ = writeln!(
                md,
                "| burst, {} clients: pool back at target after the burst (measured, no target) | {} | |",
                l.clients,
                l.back_at_target
                    .map_or("not within 3 min".into(), |d| format!(
                        "{:.1} s after the last answer",
                        d.as_secs_f64()
                    ))
            );
        }
        let counted = &b.counted;
        let all = (counted.critical.values().sum::<usize>() + counted.after.values().sum::<usize>())
            as f64
            / counted.creates.max(1) as f64;
        let _ = writeln!(
            md,
            "| Pexip calls per room handed out and refilled ≤ 3 (preferably 2) | {all:.2} | {} |",
            verdict(all <= 3.0)
        );
    }
    let levels: Vec<&Level> = main.scenarios.iter().flat_map(|s| &s.levels).collect();
    let defaults_levels: Vec<&Level> = defaults.iter().flat_map(|s| &s.levels).collect();
    if !defaults_levels.is_empty() {
        let total_creates: usize = defaults_levels.iter().map(|l| l.creates).sum();
        let total_ticks: u64 = defaults_levels.iter().map(|l| l.cpu_ticks).sum();
        let cpu_per_create = cpu_ms(total_ticks, total_creates);
        let _ = writeln!(
            md,
            "| service CPU per create (its refill included) ≤ 0.5 ms | {cpu_per_create:.3} ms (mean over {total_creates} creates, defaults) | {} |",
            verdict(cpu_per_create <= 0.5)
        );
    }
    if let Some(l64) = levels
        .iter()
        .filter(|l| l.concurrency == 64)
        .map(|l| l.peak_rss_kib)
        .max()
    {
        let rss64 = l64 as f64 / 1024.0;
        let _ = writeln!(
            md,
            "| peak RSS < 32 MiB at concurrency 64 | {rss64:.1} MiB | {} |",
            verdict(rss64 < 32.0)
        );
    }
    if let Some(defaults) = defaults {
        let mut startups = defaults.startups.clone();
        let startup_ms = median(&mut startups).as_secs_f64() * 1000.0;
        let _ = writeln!(
            md,
            "| start-up < 100 ms | {startup_ms:.1} ms (median of 5) | {} |",
            verdict(startup_ms < 100.0)
        );
    }
    let (requests, errors) = runs.iter().fold((0, 0), |(n, e), run| {
        let levels = run.scenarios.iter().flat_map(|s| &s.levels);
        let bursts = run.burst.iter().flat_map(|b| &b.bursts);
        (
            n + levels.clone().map(|l| l.creates + l.deletes).sum::<usize>()
                + bursts.clone().map(|b| b.creates).sum::<usize>(),
            e + levels
                .map(|l| l.create_errors + l.delete_errors)
                .sum::<usize>()
                + bursts.map(|b| b.errors).sum::<usize>(),
        )
    });
    let _ = writeln!(
        md,
        "| zero errors up to concurrency 64 (every binary) | {errors} errors in {requests} requests | {} |",
        verdict(errors == 0)
    );
    let _ = writeln!(
        md,
        "\nFor scale: Azurite's own peak RSS was {:.0} MiB.\n",
        azurite_rss_kib as f64 / 1024.0
    );
    md.push_str(NOTES);
    md
}

/// What the numbers mean and what limits them (kept here so a re-run keeps it).
const NOTES: &str = include_str!("support/bench_notes.md");

fn azurite_rss_kib(port: u16) -> u64 {
    sh(&format!(
        "for p in $(pgrep -f 'azurite-queue.*--queuePort {port}'); do grep VmHWM /proc/$p/status; done | awk '{{s+=$2}} END {{print s+0}}'"
    ))
    .parse()
    .unwrap_or(0)
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `command` without the variables `cargo run` sets for this example (CARGO_PKG_NAME, …):
/// build scripts that read them (ring's) would otherwise rebuild what a shell built, and back.
fn shell_env(mut command: Command) -> Command {
    for (name, _) in std::env::vars_os() {
        if let Some(name) = name.to_str()
            && name.starts_with("CARGO_")
            && !["CARGO_HOME", "CARGO_TARGET_DIR"].contains(&name)
        {
            command.env_remove(name);
        }
    }
    command
}

/// The glibc reference: `target/release/maxconf`, beside this example.
fn build_glibc() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = shell_env(Command::new(cargo))
        .args(["build", "--release", "--locked", "--bin", "maxconf"])
        .current_dir(root())
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build --release --bin maxconf failed"
    );
    // This example runs from <target>/release/examples/bench; the binary is <target>/release/maxconf.
    let exe = std::env::current_exe().expect("own path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("maxconf"))
        .expect("target directory");
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

/// What ships: `scripts/package.sh` builds it and lays it out in `dist/app/`.
fn build_musl() -> PathBuf {
    let status = shell_env(Command::new("bash"))
        .arg("scripts/package.sh")
        .current_dir(root())
        .status()
        .expect("run scripts/package.sh");
    assert!(status.success(), "scripts/package.sh failed");
    root().join("dist/app/maxconf")
}

#[tokio::main]
async fn main() {
    let options = options();
    maxconf::tls::ensure_crypto_provider();
    let binaries: Vec<(Flavor, PathBuf)> = options
        .flavors
        .iter()
        .map(|&flavor| {
            let bin = match (flavor, &options.musl_bin) {
                (Flavor::Musl, Some(bin)) => bin.clone(),
                (Flavor::Musl, None) => build_musl(),
                (Flavor::Glibc, _) => build_glibc(),
            };
            (flavor, bin)
        })
        .collect();
    if let Some(dir) = &options.perf {
        std::fs::create_dir_all(dir).expect("create the perf folder");
    }
    let work = std::env::temp_dir().join(format!("maxconf-bench-{}", std::process::id()));
    let azurite = DiskAzurite::start(root(), &work.join("azurite"));
    let pexip = Pexip::spawn(options.latency).await;
    let conn = azurite.connection_string();
    let storage =
        maxconf::pool::connection::resolve("Bench", |n| (n == "Bench").then(|| conn.clone()))
            .expect("connection");
    let pool = Queue::azure(&storage, POOL_QUEUE, Duration::from_secs(10)).expect("queue");
    pool.create_if_missing()
        .await
        .expect("create the pool queue");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let started = Instant::now();
    let mut rig = Rig {
        bin: PathBuf::new(),
        flavor: Flavor::Musl,
        pexip,
        azurite,
        pool,
        work: work.clone(),
        http,
        latency: options.latency,
    };
    let wants = |name: &str| options.scenarios.iter().any(|s| s == name);
    let mut runs = Vec::new();
    for (flavor, bin) in binaries {
        rig.bin = bin.clone();
        rig.flavor = flavor;
        let mut scenarios = Vec::new();
        if wants("defaults") {
            scenarios.push(rig.scenario("defaults", DEFAULT_CAP).await);
        }
        if wants("wide") {
            scenarios.push(rig.scenario("wide", 64).await);
        }
        let burst = if wants("burst") {
            Some(rig.burst(options.perf.as_deref()).await)
        } else {
            None
        };
        runs.push(Run {
            flavor,
            size_bytes: std::fs::metadata(&bin).map_or(0, |m| m.len()),
            bin,
            scenarios,
            burst,
        });
    }
    let azurite_rss = azurite_rss_kib(rig.azurite.port());
    std::fs::create_dir_all(&options.out).expect("create the output folder");
    let svg = options.out.join("latency.svg");
    if runs.iter().any(|r| !r.scenarios.is_empty()) {
        chart(&svg, &runs, options.latency.as_secs_f64() * 1000.0).expect("draw the chart");
    }
    let md = options.out.join("BENCHMARKS.md");
    std::fs::write(&md, report(&options, &runs, azurite_rss)).expect("write BENCHMARKS.md");
    for run in &runs {
        if let Some(path) = run.burst.as_ref().and_then(|b| b.perf.as_ref()) {
            println!(
                "perf profile of the {} binary's 16-client burst: {} (perf report -i … --no-children)",
                run.flavor.name(),
                path.display()
            );
        }
    }
    println!(
        "wrote {} and {} in {:.0} s",
        md.display(),
        svg.display(),
        started.elapsed().as_secs_f64()
    );
    drop(rig);
    let _ = std::fs::remove_dir_all(&work);
}
