//! The real `maxconf` binary as a process on a loopback port, as the Functions host runs it:
//! for the benchmark (`examples/bench.rs`) and the chaos suite (`tests/chaos.rs`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `maxconf serve` process; killed (SIGKILL) when dropped.
pub struct Service {
    bin: PathBuf,
    env: BTreeMap<String, String>,
    log: PathBuf,
    pub port: u16,
    child: Option<Child>,
    /// Process spawn to the first answer to `GET /`, of the latest start.
    pub startup: Duration,
}

impl Service {
    /// Starts `bin` with exactly `env` (plus `FUNCTIONS_CUSTOMHANDLER_PORT`) and waits until it
    /// answers `GET /` as the host's start-up probe does. Its output is appended to `log`.
    pub fn start(bin: &Path, env: BTreeMap<String, String>, port: u16, log: &Path) -> Self {
        let mut service = Self {
            bin: bin.to_path_buf(),
            env,
            log: log.to_path_buf(),
            port,
            child: None,
            startup: Duration::ZERO,
        };
        service.launch();
        service
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn launch(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the service log");
        let started = Instant::now();
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .env_clear()
            .envs(&self.env)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", self.port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let deadline = started + Duration::from_secs(30);
        loop {
            if probe(self.port) {
                self.startup = started.elapsed();
                self.child = Some(child);
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "maxconf exited during start-up ({status}); log {}:\n{}",
                    self.log.display(),
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "maxconf did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGKILL, as the Functions host stops a worker: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM, as a supervisor other than the Functions host stops a process. The
    /// process then stops gracefully: see [`Self::exited`].
    pub fn signal_term(&self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }

    /// How the process exited, once it has (graceful: status 0).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// Starts a stopped process again (after [`Self::exited`] saw it exit).
    pub fn start_again(&mut self) {
        self.launch();
    }

    /// Starts the process again on the same port with the same settings.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Peak resident set size (VmHWM) in KiB, from /proc.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// User plus system CPU time so far, in clock ticks (utime + stime from /proc/<pid>/stat).
    pub fn cpu_ticks(&self) -> Option<u64> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid()?)).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One plain HTTP/1.1 `GET /` over a fresh connection: true on any 2xx answer.
fn probe(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 2")
}

/// Runs `bin` with `args` and exactly `env`; panics with its output unless it succeeds.
pub fn run_command(bin: &Path, args: &[&str], env: &BTreeMap<String, String>) -> String {
    let output = Command::new(bin)
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "maxconf {args:?} failed ({}):\n{text}",
        output.status
    );
    text
}
