//! What a timer run or an operator command reports: its summary lines, and whether it failed.

/// Summary lines (each logged once as it is added) and the run's outcome.
#[derive(Debug, Default)]
pub struct RunReport {
    pub logs: Vec<String>,
    pub failed: bool,
}

impl RunReport {
    pub fn log(&mut self, line: impl Into<String>) {
        let line = line.into();
        tracing::info!("{line}");
        self.logs.push(line);
    }

    pub fn fail(&mut self, line: impl Into<String>) {
        let line = line.into();
        tracing::warn!("{line}");
        self.logs.push(line);
        self.failed = true;
    }
}
