//! Installs the pinned Azurite (package-lock.json) for the test harness and the benchmark.

use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `npm ci` in `root` unless `bin` exists. Serialized across processes with a file lock
/// (two `npm ci` in one folder would break each other); the check is repeated under the lock
/// in case another process installed it meanwhile. Panics with npm's output on failure: what
/// needs Azurite must fail, never skip.
pub fn npm_ci(root: &Path, bin: &Path) {
    let lock = std::env::temp_dir().join("maxconf-npm-ci.lock");
    let script = r#"[ -e "$1" ] || npm ci --no-audit --no-fund"#;
    let locked = Command::new("flock")
        .arg(&lock)
        .args(["sh", "-c", script, "npm-ci"])
        .arg(bin)
        .current_dir(root)
        .stdin(Stdio::null())
        .output();
    let output = match locked {
        Err(e) if e.kind() == ErrorKind::NotFound => Command::new("sh")
            .args(["-c", script, "npm-ci"])
            .arg(bin)
            .current_dir(root)
            .stdin(Stdio::null())
            .output(),
        other => other,
    }
    .unwrap_or_else(|e| panic!("cannot run `npm ci` (is Node.js with npm installed?): {e}"));
    if !output.status.success() || !bin.exists() {
        panic!(
            "`npm ci --no-audit --no-fund` in {} failed ({}); Azurite is required.\n\
             --- stdout ---\n{}\n--- stderr ---\n{}",
            root.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
