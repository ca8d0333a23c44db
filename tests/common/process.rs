//! The `maxconf` binary as a child process: killed when the test ends, however it ends.

use std::process::Child;
use std::time::{Duration, Instant};

/// A child killed (and reaped) on drop, so a failing test never leaves maxconf running.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `/` as the Functions host does until the process answers.
pub async fn wait_until_up(port: u16, child: &mut Killed) {
    maxconf::tls::ensure_crypto_provider();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/")).await {
            assert!(response.status().is_success());
            return;
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("maxconf exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "maxconf did not answer on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
