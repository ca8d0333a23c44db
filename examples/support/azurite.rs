//! A restartable Azurite queue service with its data on disk, for the benchmark
//! (`examples/bench.rs`) and the chaos suite (`tests/chaos.rs`, which includes this file with
//! `#[path]`).
//!
//! Unlike the test harness's in-memory Azurite (`tests/common/azurite.rs`), this one keeps its
//! queues in `--location` on disk and listens on a fixed port, so it can be stopped and started
//! again mid-run without losing a message: a storage outage, not a storage wipe. A graceful stop
//! (SIGTERM) makes Azurite save its metadata database before it exits.
//!
//! A shell watchdog runs beside Azurite: it stops Azurite when the owning process is gone
//! (normal exit, panic or SIGKILL alike).

#![allow(dead_code)]

#[path = "../../tests/common/npm.rs"]
mod npm;

use npm::npm_ci;
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use maxconf::pool::connection::{DEV_ACCOUNT, DEV_ACCOUNT_KEY};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const READY_LINE: &str = "successfully listens on http://127.0.0.1:";

/// Stops Azurite gracefully (so it saves its database), then makes sure it is gone.
const WATCHDOG: &str = r#"
    bin=$1; owner=$2; location=$3; port=$4
    "$bin" --silent --disableTelemetry --location "$location" --queueHost 127.0.0.1 --queuePort "$port" </dev/null &
    child=$!
    stop() {
        kill -TERM "$child" 2>/dev/null
        i=0
        while kill -0 "$child" 2>/dev/null && [ "$i" -lt 100 ]; do
            # Azurite 3.37 prints this once its database is saved, but its process lingers.
            if grep -q "successfully closed" "$location/../azurite-$port.log" 2>/dev/null; then break; fi
            sleep 0.05; i=$((i + 1))
        done
        kill -9 "$child" 2>/dev/null
        wait "$child" 2>/dev/null
    }
    trap 'stop; exit 0' HUP INT TERM
    while kill -0 "$owner" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.2; done
    stop
"#;

/// A disk-backed Azurite on a fixed loopback port.
pub struct DiskAzurite {
    bin: PathBuf,
    work: PathBuf,
    port: u16,
    watchdog: Option<Child>,
}

impl DiskAzurite {
    /// Installs Azurite (`npm ci` in `root`) if needed and starts it with its data under `work`
    /// (created; its previous content is removed) on a free loopback port.
    pub fn start(root: &Path, work: &Path) -> Self {
        let bin = root.join("node_modules/.bin/azurite-queue");
        if !bin.exists() {
            npm_ci(root, &bin);
        }
        let _ = fs::remove_dir_all(work);
        fs::create_dir_all(work.join("data")).expect("create Azurite's work folder");
        let port = free_port();
        let mut azurite = Self {
            bin,
            work: work.to_path_buf(),
            port,
            watchdog: None,
        };
        azurite.launch();
        azurite
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.watchdog.is_some()
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

    fn log_path(&self) -> PathBuf {
        self.work.join(format!("azurite-{}.log", self.port))
    }

    /// Azurite's own output since its last start.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops Azurite gracefully; its queues stay on disk. Returns once the port is closed.
    pub fn stop(&mut self) {
        let Some(mut shell) = self.watchdog.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(shell.id().to_string())
            .status();
        let _ = shell.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts Azurite again on the same port over the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Makes every hidden message of `queue` visible now, as if every lease and initial
    /// invisibility had run out: stops Azurite (which saves its database), sets each message's next-visible
    /// time to now in the saved database, and starts Azurite again. Returns how many messages
    /// it made visible. (Azurite 3.37 keeps queue metadata in `__azurite_db_queue__.json`, a
    /// LokiJS database; `timeNextVisible` is in milliseconds and not indexed.)
    pub fn expire_leases(&mut self, queue: &str) -> usize {
        self.stop();
        let db = self.work.join("data/__azurite_db_queue__.json");
        let text = fs::read_to_string(&db).expect("read Azurite's queue database");
        let mut json: serde_json::Value =
            serde_json::from_str(&text).expect("Azurite's queue database is JSON");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as u64;
        let mut expired = 0;
        for collection in json["collections"].as_array_mut().into_iter().flatten() {
            if collection["name"] != "$MESSAGES_COLLECTION$" {
                continue;
            }
            for message in collection["data"].as_array_mut().into_iter().flatten() {
                if message["queueName"] == queue
                    && message["timeNextVisible"].as_u64().is_some_and(|t| t > now)
                {
                    message["timeNextVisible"] = now.into();
                    expired += 1;
                }
            }
        }
        fs::write(&db, json.to_string()).expect("write Azurite's queue database");
        self.launch();
        expired
    }

    fn launch(&mut self) {
        let log = self.log_path();
        let log_file = fs::File::create(&log).expect("create Azurite's log file");
        let data = self.work.join("data");
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("azurite-disk-watchdog")
            .arg(&self.bin)
            .arg(std::process::id().to_string())
            .arg(&data)
            .arg(self.port.to_string())
            .current_dir(&data)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Azurite via sh: {e}"));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let output = fs::read_to_string(&log).unwrap_or_default();
            if output.contains(READY_LINE) && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.watchdog = Some(shell);
                return;
            }
            if let Ok(Some(status)) = shell.try_wait() {
                panic!(
                    "Azurite exited during start-up ({status}); its output ({}):\n{output}",
                    log.display()
                );
            }
            if Instant::now() > deadline {
                let _ = Command::new("kill").arg(shell.id().to_string()).status();
                let _ = shell.wait();
                panic!("Azurite did not start listening within 60 s:\n{output}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for DiskAzurite {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.work);
    }
}

/// A port that was free a moment ago (Azurite needs a fixed one to be restartable).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
