use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use maxconf::config::{LogFormat, Settings};
use maxconf::dev::{self, DevOptions};
use maxconf::{app, telemetry};

/// maxconf: hands out Pexip rooms from an Azure Storage Queue pool (Azure Functions custom handler).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default). Port: FUNCTIONS_CUSTOMHANDLER_PORT, else --port, else 7071.
    Serve {
        #[arg(long)]
        port: Option<u16>,
    },
    /// Everything on one machine, no Azure and no Pexip: a Pexip simulator, an in-memory pool, auth off.
    Dev {
        #[arg(long, default_value_t = 7071)]
        port: u16,
        /// Rooms seeded into the pool.
        #[arg(long, default_value_t = 10)]
        rooms: u32,
        /// Latency the simulated Pexip adds to each request, in milliseconds.
        #[arg(long, default_value_t = 0)]
        pexip_latency_ms: u64,
    },
    /// Only the Pexip Management API simulator (HTTP Basic dev/dev), for `maxconf serve` or
    /// `func start` with local.settings.json.
    Simulate {
        #[arg(long, default_value_t = 8480)]
        port: u16,
        /// Latency added to each request, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { port: None }) {
        Command::Serve { port } => serve(port).await,
        Command::Dev {
            port,
            rooms,
            pexip_latency_ms,
        } => {
            telemetry::init(LogFormat::Text);
            let options = DevOptions {
                port,
                rooms,
                pexip_latency: Duration::from_millis(pexip_latency_ms),
            };
            match dev::run(options).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("maxconf dev: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Simulate { port, latency_ms } => {
            telemetry::init(LogFormat::Text);
            match dev::simulate(port, Duration::from_millis(latency_ms)).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("maxconf simulate: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(port: Option<u16>) -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("maxconf: invalid setting {e}");
            return ExitCode::from(2);
        }
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
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("maxconf: {e}");
            ExitCode::FAILURE
        }
    }
}
