//! What a timer run or an operator command reports: its summary lines, and whether it failed.

/// Summary lines (each logged once as it is added, unless an operator command prints them)
/// and the run's outcome.
#[derive(Debug, Default)]
pub struct RunReport {
    pub logs: Vec<String>,
    pub failed: bool,
}

tokio::task_local! {
    /// Set while an operator command runs a job: it prints the report itself, so the lines are
    /// not logged as well (they were shown twice: a WARN line on stderr and stdout).
    static PRINTED: ();
}

/// Runs `job` with its report lines printed by the caller rather than logged.
pub async fn printed<F: std::future::Future>(job: F) -> F::Output {
    PRINTED.scope((), job).await
}

fn logged() -> bool {
    PRINTED.try_with(|_| ()).is_err()
}

impl RunReport {
    pub fn log(&mut self, line: impl Into<String>) {
        let line = line.into();
        if logged() {
            tracing::info!("{line}");
        }
        self.logs.push(line);
    }

    pub fn fail(&mut self, line: impl Into<String>) {
        let line = line.into();
        if logged() {
            tracing::warn!("{line}");
        }
        self.logs.push(line);
        self.failed = true;
    }
}
