//! Azurite (the Azure Storage emulator, queue service only) for integration tests: one
//! in-memory instance per test binary, started on first use and killed when the test process
//! exits, even though Rust never drops statics.
//!
//! A test that needs Azurite fails (never skips) when it cannot be installed or started.

// Each test binary uses only part of this harness.
#![allow(dead_code)]

use super::npm::npm_ci;
use maxconf::pool::StorageConnection;
use maxconf::pool::connection::{DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const READY_LINE: &str = "successfully listens on http://127.0.0.1:";

/// A running Azurite queue service.
#[derive(Debug)]
pub struct Azurite {
    port: u16,
    log: PathBuf,
}

/// The test binary's Azurite, started on the first call. Safe to call from many tests at once:
/// the others wait for the first start. Started with std (not tokio) processes, so it does
/// not belong to whichever test's runtime happened to call first.
pub fn azurite() -> &'static Azurite {
    static AZURITE: OnceLock<Azurite> = OnceLock::new();
    AZURITE.get_or_init(start)
}

impl Azurite {
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn queue_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{DEV_ACCOUNT}", self.port)
    }

    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};QueueEndpoint={};",
            self.queue_endpoint()
        )
    }

    /// The connection, resolved from [`Self::connection_string`] the way the app resolves it.
    pub fn storage_connection(&self) -> StorageConnection {
        let conn = self.connection_string();
        maxconf::pool::connection::resolve("AzuriteTest", |name| {
            (name == "AzuriteTest").then(|| conn.clone())
        })
        .expect("the harness's connection string resolves")
    }

    /// Azurite's own output (start-up lines; requests are not logged with --silent).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A valid queue name (3 to 63 lowercase letters, digits and single hyphens), unique per call
/// and per process, so that tests running in parallel never share a queue.
pub fn unique_queue_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("-{:x}-{n:x}", std::process::id());
    let mut clean = String::new();
    for c in prefix.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            clean.push(c);
        } else if !clean.is_empty() && !clean.ends_with('-') {
            clean.push('-');
        }
    }
    clean.truncate(63 - suffix.len());
    let mut name = clean.trim_end_matches('-').to_owned();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert(0, 'q');
    }
    name.push_str(&suffix);
    assert!(
        maxconf::pool::is_valid_queue_name(&name),
        "generated an invalid queue name {name:?}"
    );
    name
}

fn start() -> Azurite {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("node_modules/.bin/azurite-queue");
    if !bin.exists() {
        npm_ci(root, &bin);
    }

    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let pid = std::process::id();
    let location = tmp.join(format!("azurite-{pid}"));
    fs::create_dir_all(&location).expect("create Azurite's work folder");
    let log = tmp.join(format!("azurite-{pid}.log"));
    let log_file = fs::File::create(&log).expect("create Azurite's log file");

    // In-memory persistence writes no files; Azurite runs in its own scratch folder anyway
    // (it refuses --location together with --inMemoryPersistence).
    // The shell stays beside Azurite as a watchdog: it kills Azurite once this test process is
    // gone (normal exit, panic or SIGKILL alike), and exits when Azurite does. Port 0 lets the
    // OS pick a free port, which Azurite then prints: no window for another process to take it.
    let watchdog = r#"
        bin=$1; owner=$2; location=$3; log=$4
        "$bin" --inMemoryPersistence --silent --queueHost 127.0.0.1 --queuePort 0 </dev/null &
        child=$!
        stop() {
            kill "$child" 2>/dev/null
            # Azurite 3.37.0 prints "successfully closed" on SIGTERM but its process lingers:
            # force it after a short grace period (in-memory: nothing to flush).
            i=0
            while kill -0 "$child" 2>/dev/null && [ "$i" -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
            kill -9 "$child" 2>/dev/null
            wait "$child" 2>/dev/null
            rm -rf "$location"
            # Keep the log if Azurite died by itself while the tests still needed it.
            kill -0 "$owner" 2>/dev/null || rm -f "$log"
        }
        trap 'stop; exit 0' HUP INT TERM
        while kill -0 "$owner" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
        stop
    "#;
    let mut shell = Command::new("sh")
        .arg("-c")
        .arg(watchdog)
        .arg("azurite-watchdog")
        .arg(&bin)
        .arg(pid.to_string())
        .arg(&location)
        .arg(&log)
        .current_dir(&location)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("clone log handle"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start Azurite via sh: {e}"));

    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let output = fs::read_to_string(&log).unwrap_or_default();
        if let Some(port) = ready_port(&output) {
            // Listening was announced; make sure it really accepts connections.
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                // Reap the watchdog whenever it ends (Azurite gone): no zombie while we live.
                std::thread::spawn(move || shell.wait());
                return Azurite { port, log };
            }
        }
        if let Ok(Some(status)) = shell.try_wait() {
            let output = fs::read_to_string(&log).unwrap_or_default();
            panic!(
                "Azurite exited during start-up ({status}); its output ({}):\n{output}",
                log.display()
            );
        }
        if Instant::now() > deadline {
            // SIGTERM runs the watchdog's trap, which stops Azurite too.
            let _ = Command::new("kill").arg(shell.id().to_string()).status();
            let _ = shell.wait();
            panic!(
                "Azurite did not start listening within {}s; its output ({}):\n{output}",
                START_TIMEOUT.as_secs(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ready_port(output: &str) -> Option<u16> {
    let rest = &output[output.find(READY_LINE)? + READY_LINE.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_valid_and_unique() {
        let a = unique_queue_name("Send_Receive round trip!");
        let b = unique_queue_name("Send_Receive round trip!");
        assert_ne!(a, b);
        assert!(a.starts_with("send-receive-round-trip-"), "{a}");
        for p in ["", "-", "9lives", &"x".repeat(100), "ÄÖ"] {
            let n = unique_queue_name(p);
            assert!(maxconf::pool::is_valid_queue_name(&n), "{n}");
        }
    }

    #[test]
    fn parses_the_ready_line() {
        let out = "Azurite Queue service is starting on 127.0.0.1:0\nAzurite Queue service successfully listens on http://127.0.0.1:40123\n";
        assert_eq!(ready_port(out), Some(40123));
        assert_eq!(ready_port("starting"), None);
    }
}
