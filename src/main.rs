use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use maxconf::broker::Broker;
#[cfg(feature = "sim")]
use maxconf::config::LogFormat;
use maxconf::config::Settings;
#[cfg(feature = "sim")]
use maxconf::dev::{self, DevOptions};
use maxconf::ops::Console;
use maxconf::remote::{self, Target};
use maxconf::{app, ops, telemetry};

/// The shipped static build (musl): musl's malloc serialises every thread on one lock, and a
/// request allocates a lot across tokio's workers. mimalloc keeps per-thread heaps.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// maxconf: hands out Pexip rooms from an Azure Storage Queue pool (Azure Functions custom handler).
///
/// Every command reads the same settings from the environment (see the README). The operator
/// commands (status, pool, reap, gc, maintain) run on a deployed service instead with --api.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Remote mode for the operator commands.
#[derive(clap::Args)]
struct RemoteArgs {
    /// Run the operator command on this service's management routes instead of with local
    /// settings: the API's base URL, e.g. https://<apim host>/maxconf, or
    /// http://127.0.0.1:7071/api for `maxconf dev` (no token on loopback).
    #[arg(long, global = true, env = "MAXCONF_API", value_name = "URL")]
    api: Option<String>,
    /// The API's application ID URI (AUTH_AUDIENCE): your token is for <audience>/.default,
    /// from your Azure CLI login. MAXCONF_API_TOKEN, if set, is sent instead (automation).
    #[arg(long, global = true, env = "MAXCONF_API_AUDIENCE", value_name = "URI")]
    audience: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default). Port: FUNCTIONS_CUSTOMHANDLER_PORT, else --port, else 7071.
    Serve {
        #[arg(long)]
        port: Option<u16>,
    },
    /// The pool (ready and warming rooms), Pexip's rooms by state, the deletion backlog, the
    /// last maintainer and GC runs, and whether storage and Pexip answer. Exits 1 when
    /// something is down or ready rooms are below --min-ready.
    Status(StatusArgs),
    /// Inspect or steer the room pool.
    Pool {
        #[command(subcommand)]
        action: PoolAction,
    },
    /// Delete orphaned pool rooms and rooms handed out more than ROOM_MAX_AGE_HOURS ago.
    Reap {
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete the rooms whose deletion is due on the deletion queue (what function-room-gc does).
    Gc {
        /// Only report what would be done; nothing is deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// One maintainer run now (what function-pool-maintain does every 5 minutes): repair,
    /// reap, top the pool up.
    Maintain {
        /// Only report what would be repaired or reaped; nothing changes.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check every setting at once, then probe storage, Pexip, Entra and Genesys (a few
    /// seconds each), naming what cannot be reached and the likely fix.
    Doctor,
    /// Everything on one machine, no Azure and no Pexip: a Pexip simulator, an in-memory pool,
    /// auth off; otherwise as in production (settings from the environment, timers, public
    /// routes, a control for Pexip faults).
    #[cfg(feature = "sim")]
    Dev {
        #[arg(long, default_value_t = 7071)]
        port: u16,
        /// Rooms seeded into the pool at start (the target stays POOL_TARGET_SIZE).
        #[arg(long, default_value_t = 10)]
        rooms: u32,
        /// Latency the simulated Pexip adds to each request, in milliseconds.
        #[arg(long, default_value_t = 0)]
        pexip_latency_ms: u64,
    },
    /// Send an event to a running service's event sink, as Pexip would, with
    /// EVENT_SINK_USERNAME and EVENT_SINK_PASSWORD (`maxconf dev` prints them).
    Trigger {
        /// The event: `conference_ended`.
        #[arg(value_parser = ["conference_ended"])]
        event: String,
        /// The room (conference name) the event is about.
        room: String,
        /// The service's base URL.
        #[arg(long, default_value = "http://127.0.0.1:7071")]
        url: String,
    },
    /// Only the Pexip Management API simulator (HTTP Basic dev/dev), for `maxconf serve` or
    /// `func start` with local.settings.json.
    #[cfg(feature = "sim")]
    Simulate {
        #[arg(long, default_value_t = 8480)]
        port: u16,
        /// Latency added to each request, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
}

#[derive(clap::Args)]
struct StatusArgs {
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Ready rooms below this are a failure (default: half of POOL_TARGET_SIZE).
    #[arg(long)]
    min_ready: Option<u64>,
}

#[derive(Subcommand)]
enum PoolAction {
    /// Same as `maxconf status`.
    Status(StatusArgs),
    /// Add rooms: --count of them, or as many as the pool lacks of POOL_TARGET_SIZE.
    Fill {
        #[arg(long)]
        count: Option<u64>,
    },
    /// Delete every pooled room in Pexip and empty the pool (persistent rooms are kept).
    Drain {
        /// Required: draining leaves no room to hand out until the pool is filled again.
        #[arg(long, required = true)]
        yes: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let remote = cli.remote.api.map(|api| Target {
        api,
        audience: cli.remote.audience,
    });
    let command = cli.command.unwrap_or(Command::Serve { port: None });
    if let Some(target) = &remote
        && let Some(code) = run_remote(target, &command).await
    {
        return code;
    }
    match command {
        Command::Serve { port } => serve(port).await,
        Command::Status(args)
        | Command::Pool {
            action: PoolAction::Status(args),
        } => {
            run_on_broker(true, |broker| async move {
                maxconf::status::command(&broker, args.json, args.min_ready).await
            })
            .await
        }
        Command::Pool { action } => {
            with_broker(|broker| async move {
                let out = Console::default();
                match action {
                    PoolAction::Status(_) => unreachable!("handled above"),
                    PoolAction::Fill { count } => ops::pool_fill(&broker, count, &out).await,
                    PoolAction::Drain { yes: _ } => ops::pool_drain(&broker, &out).await,
                }
            })
            .await
        }
        Command::Maintain { dry_run } => {
            with_broker(|broker| async move {
                ops::maintain(&broker, dry_run, &Console::default()).await
            })
            .await
        }
        Command::Doctor => {
            let vars: std::collections::HashMap<String, String> = std::env::vars().collect();
            ExitCode::from(maxconf::doctor::run(|name| vars.get(name).cloned()).await)
        }
        Command::Reap { dry_run } => {
            with_broker(
                |broker| async move { ops::reap(&broker, dry_run, &Console::default()).await },
            )
            .await
        }
        Command::Gc { dry_run } => {
            with_broker(|broker| async move {
                maxconf::gc::command(&broker, dry_run, &Console::default()).await
            })
            .await
        }
        #[cfg(feature = "sim")]
        Command::Dev {
            port,
            rooms,
            pexip_latency_ms,
        } => {
            let options = DevOptions {
                port,
                rooms,
                pexip_latency: Duration::from_millis(pexip_latency_ms),
            };
            exit_status("maxconf dev", dev::run(options).await)
        }
        Command::Trigger { event, room, url } => {
            let (Ok(user), Ok(password)) = (
                std::env::var("EVENT_SINK_USERNAME"),
                std::env::var("EVENT_SINK_PASSWORD"),
            ) else {
                eprintln!(
                    "maxconf trigger: set EVENT_SINK_USERNAME and EVENT_SINK_PASSWORD (maxconf dev prints them)"
                );
                return ExitCode::from(2);
            };
            exit_status(
                "maxconf trigger",
                maxconf::trigger::trigger(&url, &event, &room, &user, &password).await,
            )
        }
        #[cfg(feature = "sim")]
        Command::Simulate { port, latency_ms } => {
            telemetry::init(LogFormat::Text);
            let latency = Duration::from_millis(latency_ms);
            exit_status("maxconf simulate", dev::simulate(port, latency).await)
        }
    }
}

/// An operator command in remote mode; `None` for the commands that only run locally
/// (serve, doctor, dev, trigger, simulate).
async fn run_remote(target: &Target, command: &Command) -> Option<ExitCode> {
    let dry = |dry_run: bool| vec![("dry_run", dry_run.to_string())];
    let (path, query) = match command {
        Command::Status(args)
        | Command::Pool {
            action: PoolAction::Status(args),
        } => {
            let (json, min_ready) = (args.json, args.min_ready);
            return Some(
                remote::run(target, |r| async move { r.status(json, min_ready).await }).await,
            );
        }
        Command::Pool {
            action: PoolAction::Fill { count },
        } => (
            "fill",
            count
                .map(|n| ("count", n.to_string()))
                .into_iter()
                .collect(),
        ),
        Command::Pool {
            action: PoolAction::Drain { .. },
        } => ("drain", vec![("confirm", "true".to_owned())]),
        Command::Reap { dry_run } => ("reap", dry(*dry_run)),
        Command::Gc { dry_run } => ("gc", dry(*dry_run)),
        Command::Maintain { dry_run } => ("maintain", dry(*dry_run)),
        _ => return None,
    };
    Some(remote::run(target, |r| async move { r.operation(path, &query).await }).await)
}

fn exit_status<E: std::fmt::Display>(what: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Settings from the environment; each bad one is one line on stderr, then exit status 2.
fn settings() -> Result<Settings, ExitCode> {
    let vars: std::collections::HashMap<String, String> = std::env::vars().collect();
    Settings::from_lookup_all(|name| vars.get(name).cloned()).map_err(settings_failed)
}

/// Settings for commands that serve nothing: the serving-only settings are not read.
fn command_settings() -> Result<Settings, ExitCode> {
    let vars: std::collections::HashMap<String, String> = std::env::vars().collect();
    Settings::for_commands(|name| vars.get(name).cloned()).map_err(settings_failed)
}

fn settings_failed(errors: Vec<maxconf::config::ConfigError>) -> ExitCode {
    for e in errors {
        eprintln!("maxconf: invalid setting {e}");
    }
    ExitCode::from(2)
}

/// How long a command waits for storage to accept a connection before giving up.
const COMMAND_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs an operator command on a broker over the real queues: exit 0 when it reports
/// success, 1 when anything failed.
async fn with_broker<F, Fut>(command: F) -> ExitCode
where
    F: FnOnce(Arc<Broker>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    run_on_broker(false, command).await
}

/// [`with_broker`]; `reports_storage`: the command reports an unreachable storage itself.
async fn run_on_broker<F, Fut>(reports_storage: bool, command: F) -> ExitCode
where
    F: FnOnce(Arc<Broker>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let settings = match command_settings() {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    telemetry::init_for_commands(settings.log_format);
    // Fail fast and name the host rather than wait out the SDK's retries. `status` reports
    // storage itself, with the rest.
    let reachable = maxconf::doctor::storage_reachable(&settings, COMMAND_PROBE_TIMEOUT).await;
    if let Err(e) = &reachable
        && !reports_storage
    {
        eprintln!("maxconf: {e}");
        return ExitCode::FAILURE;
    }
    let broker = async {
        let (pool, deletions) = app::azure_queues(&settings)?;
        if reachable.is_ok() {
            app::broker(settings, pool, deletions).await
        } else {
            // Storage is down: do not wait on creating the queues.
            let pexip = maxconf::pexip::PexipClient::new(&settings.pexip)?;
            Ok(Arc::new(Broker::new(
                Arc::new(settings),
                pexip,
                pool,
                deletions,
            )))
        }
    }
    .await;
    match broker {
        Ok(broker) => {
            if command(broker).await {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("maxconf: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(port: Option<u16>) -> ExitCode {
    let settings = match settings() {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    telemetry::init(settings.log_format);
    let port = settings.port.or(port).unwrap_or(7071);
    let result = async {
        let (pool, deletions) = app::azure_queues(&settings)?;
        let state = app::state(settings, pool, deletions).await?;
        let listener = app::bind(port).await?;
        tracing::info!(port, "maxconf listening");
        app::serve(listener, state).await?;
        Ok::<(), app::StartError>(())
    }
    .await;
    exit_status("maxconf", result)
}
