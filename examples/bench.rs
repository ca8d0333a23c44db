//! The benchmark: the real `maxconf` binary as a process, against a disk-backed Azurite and
//! the Pexip simulator (in this process) with a fixed latency. Not part of `cargo test`.
//!
//! ```sh
//! cargo run --release --example bench -- [--latency-ms 100] [--out docs]
//! ```
//!
//! It builds `target/release/maxconf` first (`cargo build --release --bin maxconf`), then
//! per scenario reports create and delete latency (p50/p95/p99) and throughput at concurrency
//! 1, 4, 16 and 64, the service's peak RSS, its CPU time per create (refill included) and its
//! start-up time, and the critical-path ratio: median create latency at concurrency 1 divided
//! by the simulator's latency. Writes `<out>/BENCHMARKS.md` and `<out>/latency.svg`.
//! Loopback only; bounded request counts (about 3,000 requests in all).

#[path = "support/azurite.rs"]
mod azurite;
#[path = "support/service.rs"]
mod service;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azurite::DiskAzurite;
use maxconf::pool::Queue;
use maxconf::sim::{SimConfig, SimServer, Simulator};
use plotters::prelude::*;
use service::{Service, run_command};

const LEVELS: [usize; 4] = [1, 4, 16, 64];
/// The IDIM Video API's example uuiData (`id&MTIzNDU2LDc2NTQzMg`).
const UUI: &str = "6964264d54497a4e4455324c4463324e54517a4d67;encoding=hex";
const POOL_QUEUE: &str = "bench-pool";

struct Options {
    latency: Duration,
    out: PathBuf,
}

fn options() -> Options {
    let mut options = Options {
        latency: Duration::from_millis(100),
        out: PathBuf::from("docs"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--latency-ms", Some(v)) => {
                options.latency = Duration::from_millis(v.parse().expect("--latency-ms <ms>"));
            }
            ("--out", Some(v)) => options.out = PathBuf::from(v),
            _ => {
                eprintln!("usage: bench [--latency-ms 100] [--out docs]");
                std::process::exit(2);
            }
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

#[derive(Clone, Copy, Default)]
struct Percentiles {
    p50: f64,
    p95: f64,
    p99: f64,
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
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (call, next) = (call.clone(), next.clone());
            tokio::spawn(async move {
                let mut out = (Vec::new(), 0usize, Vec::new());
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

/// Polls until the pool size stops moving (the refills after the creates have landed).
async fn wait_for_refills(pool: &Queue) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = u64::MAX;
    let mut steady = 0;
    while steady < 3 && Instant::now() < deadline {
        let now = pool.approximate_count().await.unwrap_or(u64::MAX);
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

struct Rig {
    bin: PathBuf,
    sim: SimServer,
    azurite: DiskAzurite,
    pool: Queue,
    work: PathBuf,
    http: reqwest::Client,
}

impl Rig {
    fn env(&self, max_concurrency: u32) -> BTreeMap<String, String> {
        [
            ("AzureWebJobsStorage", self.azurite.connection_string()),
            ("POOL_QUEUE_NAME", POOL_QUEUE.to_owned()),
            ("DELETION_QUEUE_NAME", "bench-deletions".to_owned()),
            ("PEXIP_BASE_URL", self.sim.base_url()),
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

    /// Tops the pool up to `size` rooms with the operators' command, at zero latency.
    async fn fill_pool(&self, size: u64, latency: Duration) {
        let have = self.pool.approximate_count().await.expect("pool count");
        if have < size {
            self.sim.sim.set_latency(Duration::ZERO);
            let count = (size - have).to_string();
            let env = self.env(20);
            let bin = self.bin.clone();
            tokio::task::spawn_blocking(move || {
                run_command(&bin, &["pool", "fill", "--count", &count], &env)
            })
            .await
            .expect("pool fill");
            self.sim.sim.set_latency(latency);
        }
    }

    async fn scenario(&self, name: &str, max_concurrency: u32, latency: Duration) -> Scenario {
        println!("scenario {name} (PEXIP_MAX_CONCURRENCY={max_concurrency})");
        let env = self.env(max_concurrency);
        let log = self.work.join(format!("service-{max_concurrency}.log"));
        // Start-up: five cold starts (spawn to the first answer to GET /), the last one stays.
        let mut startups = Vec::new();
        let mut service = None;
        for _ in 0..5 {
            drop(service.take());
            let s = Service::start(&self.bin, env.clone(), azurite::free_port(), &log);
            startups.push(s.startup);
            service = Some(s);
        }
        let service = service.expect("started");
        let base = service.base();
        let ticks_per_ms = clock_ticks_per_second() as f64 / 1000.0;
        let mut levels = Vec::new();
        for concurrency in LEVELS {
            let (creates, deletes) = counts(concurrency);
            self.fill_pool(creates as u64 + 20, latency).await;
            let cpu_before = service.cpu_ticks().unwrap_or(0);
            let http = self.http.clone();
            let url = format!("{base}/api/room/create?uuiData={UUI}");
            let (mut lat, create_errors, wall, names) =
                closed_loop(creates, concurrency, move |_| {
                    let (http, url) = (http.clone(), url.clone());
                    async move {
                        let r = http
                            .post(&url)
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
                })
                .await;
            wait_for_refills(&self.pool).await;
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
        Scenario {
            name: name.to_owned(),
            max_concurrency,
            levels,
            startups,
        }
    }
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

fn chart(
    path: &Path,
    scenarios: &[Scenario],
    latency_ms: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = scenarios
        .iter()
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
    for (scenario, color) in scenarios.iter().zip(colors) {
        for (label, pick, width) in [
            (
                "p50",
                (|p: &Percentiles| p.p50) as fn(&Percentiles) -> f64,
                3,
            ),
            ("p95", |p: &Percentiles| p.p95, 2),
            ("p99", |p: &Percentiles| p.p99, 1),
        ] {
            let points: Vec<(f64, f64)> = scenario
                .levels
                .iter()
                .map(|l| (l.concurrency as f64, pick(&l.create)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(width)))?
                .label(format!("{} {label}", scenario.name))
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
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn report(options: &Options, scenarios: &[Scenario], azurite_rss_kib: u64) -> String {
    let latency_ms = options.latency.as_secs_f64() * 1000.0;
    let ticks_per_ms = clock_ticks_per_second() as f64 / 1000.0;
    let cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `cargo run --release --example bench -- --latency-ms {} --out {}` \
         (`examples/bench.rs`). Re-run it to refresh every number on this page; the notes at the \
         end are kept in `examples/support/bench_notes.md`.\n",
        latency_ms,
        options.out.display()
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
    let _ = writeln!(
        md,
        "- The real `target/release/maxconf` binary as a process (`maxconf serve`, \
         `FUNCTIONS_CUSTOMHANDLER_PORT`, `AUTH_MODE=none`, `POOL_WARMUP_SECS=0`), requests sent \
         to `/api/…` over loopback HTTP/1.1 as the Functions host forwards them.\n\
         - Azurite 3.37.0 (queue service, data on disk) in its own Node.js process.\n\
         - The Pexip Management API simulator (`src/sim`) in the benchmark process, answering \
         every request after a fixed **{latency_ms:.0} ms**.\n\
         - The pool seeded with `maxconf pool fill` before each level, so every create is served \
         from the pool (no on-demand creates). Each create is followed by its refill (a Pexip \
         POST and GET and a queue send), off the critical path.\n\
         - Per level: a closed loop of N concurrent clients, each sending its next request when \
         the previous one is answered; then deletes of some of the rooms handed out, at the same \
         concurrency. Latency is measured by the client, from send to the whole answer read.\n\
         - CPU per create: the service's utime + stime (`/proc/<pid>/stat`) over a level's \
         creates and the refills they cause, divided by the creates. Peak RSS: `VmHWM` from \
         `/proc/<pid>/status`. Start-up: process spawn to the first answer to `GET /` (the \
         host's probe), the median of five cold starts.\n"
    );
    for scenario in scenarios {
        let _ = writeln!(
            md,
            "## Scenario: {} (`PEXIP_MAX_CONCURRENCY={}`)\n",
            scenario.name, scenario.max_concurrency
        );
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
                l.cpu_ticks as f64 / ticks_per_ms / l.creates as f64,
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
    let _ = writeln!(
        md,
        "Chart: [latency.svg](latency.svg), create latency p50/p95/p99 against concurrency.\n"
    );
    let _ = writeln!(md, "![create latency against concurrency](latency.svg)\n");

    // Targets, against the default scenario (the first).
    let main = &scenarios[0];
    let c1 = &main.levels[0];
    let ratio = c1.create.p50 / latency_ms;
    let total_creates: usize = main.levels.iter().map(|l| l.creates).sum();
    let total_ticks: u64 = main.levels.iter().map(|l| l.cpu_ticks).sum();
    let cpu_per_create = total_ticks as f64 / ticks_per_ms / total_creates as f64;
    let rss64 = main.levels.last().unwrap().peak_rss_kib as f64 / 1024.0;
    let mut startups = main.startups.clone();
    let startup_ms = median(&mut startups).as_secs_f64() * 1000.0;
    let errors: usize = scenarios
        .iter()
        .flat_map(|s| &s.levels)
        .map(|l| l.create_errors + l.delete_errors)
        .sum();
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| target | measured | |\n|---|---|---|");
    let _ = writeln!(
        md,
        "| **critical path**: median create at {latency_ms:.0} ms Pexip latency ≤ 1.2 × that latency (1 client) | {:.1} ms = **{ratio:.2} ×** | {} |",
        c1.create.p50,
        verdict(ratio <= 1.2)
    );
    let _ = writeln!(
        md,
        "| service CPU per create (its refill included) < 0.25 ms | {cpu_per_create:.3} ms (mean over {total_creates} creates) | {} |",
        verdict(cpu_per_create < 0.25)
    );
    let _ = writeln!(
        md,
        "| peak RSS < 32 MiB at concurrency 64 | {rss64:.1} MiB | {} |",
        verdict(rss64 < 32.0)
    );
    let _ = writeln!(
        md,
        "| start-up < 100 ms | {startup_ms:.1} ms (median of 5) | {} |",
        verdict(startup_ms < 100.0)
    );
    let _ = writeln!(
        md,
        "| zero errors up to concurrency 64 | {errors} errors in {} requests | {} |",
        scenarios
            .iter()
            .flat_map(|s| &s.levels)
            .map(|l| l.creates + l.deletes)
            .sum::<usize>(),
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

fn build_service() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "--bin", "maxconf"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
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

#[tokio::main]
async fn main() {
    let options = options();
    maxconf::tls::ensure_crypto_provider();
    let bin = build_service();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = std::env::temp_dir().join(format!("maxconf-bench-{}", std::process::id()));
    let azurite = DiskAzurite::start(root, &work.join("azurite"));
    let sim = Simulator::spawn(SimConfig {
        latency: options.latency,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let conn = azurite.connection_string();
    let storage =
        maxconf::pool::connection::resolve("Bench", |n| (n == "Bench").then(|| conn.clone()))
            .expect("connection");
    let pool = Queue::azure(&storage, POOL_QUEUE, Duration::from_secs(10)).expect("queue");
    pool.create_if_missing()
        .await
        .expect("create the pool queue");
    let rig = Rig {
        bin,
        sim,
        azurite,
        pool,
        work: work.clone(),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client"),
    };
    let started = Instant::now();
    let scenarios = vec![
        rig.scenario("defaults", 5, options.latency).await,
        rig.scenario("wide", 64, options.latency).await,
    ];
    let azurite_rss = azurite_rss_kib(rig.azurite.port());
    std::fs::create_dir_all(&options.out).expect("create the output folder");
    let svg = options.out.join("latency.svg");
    chart(&svg, &scenarios, options.latency.as_secs_f64() * 1000.0).expect("draw the chart");
    let md = options.out.join("BENCHMARKS.md");
    std::fs::write(&md, report(&options, &scenarios, azurite_rss)).expect("write BENCHMARKS.md");
    println!(
        "wrote {} and {} in {:.0} s",
        md.display(),
        svg.display(),
        started.elapsed().as_secs_f64()
    );
    drop(rig);
    let _ = std::fs::remove_dir_all(&work);
}
