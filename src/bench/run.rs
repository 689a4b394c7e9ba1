//! The full-run benchmark: `lbc run` as a user runs it (a fresh control plane each time),
//! repeated; and the longest suite run alone, to give the ratio the whole run is judged by.
//! Each run is a child process writing its own `report.json`, read back here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One `lbc run` as observed from outside.
#[derive(Debug, Clone)]
pub struct RunSample {
    /// The process's wall time, boot and teardown included.
    pub total: Duration,
    /// The suites' part (`totals.wall_seconds` of the report).
    pub suites_wall: f64,
    pub failed: Vec<String>,
    /// Every "retry n seen +x s after expectedRetryAt" margin of the run, seconds.
    pub lateness: Vec<f64>,
    /// CPU time the hypervisor took from this machine during the run (all CPUs, seconds;
    /// `None` without `/proc/stat`): a run that failed on lateness while the machine was
    /// stolen from says so.
    pub steal: Option<f64>,
}

/// The machine's stolen CPU time so far, seconds (`/proc/stat`'s eighth `cpu` column, in
/// USER_HZ, which is 100 on Linux whatever the kernel's tick).
pub fn steal_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_steal(&stat)
}

fn parse_steal(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: u64 = line.split_whitespace().nth(8)?.parse().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Why a sample could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum RunBenchError {
    #[error("running {0}: {1}")]
    Spawn(String, #[source] std::io::Error),
    #[error("reading {0}: {1}")]
    Report(PathBuf, String),
}

/// Run `lbc run ARGS… --report-dir DIR` once.
///
/// # Errors
/// The child cannot start or leaves no readable report.
pub fn sample(lbc: &Path, args: &[String], dir: &Path) -> Result<RunSample, RunBenchError> {
    let started = Instant::now();
    let steal_before = steal_seconds();
    let mut cmd = Command::new(lbc);
    cmd.arg("run").args(args).arg("--report-dir").arg(dir);
    let status = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| RunBenchError::Spawn(lbc.display().to_string(), e))?;
    let total = started.elapsed();
    let steal = steal_seconds()
        .zip(steal_before)
        .map(|(after, before)| after - before);
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| RunBenchError::Report(path.clone(), format!("{e} (exit {status})")))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| RunBenchError::Report(path.clone(), e.to_string()))?;
    Ok(RunSample {
        total,
        steal,
        suites_wall: v["totals"]["wall_seconds"].as_f64().unwrap_or(0.0),
        failed: v["suites"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["passed"] == false)
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect(),
        lateness: v["suites"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["margins"].as_array().into_iter().flatten())
            .filter_map(retry_lateness)
            .collect(),
    })
}

/// The judge's lateness of a margin's retry (report.json's `margins[].retry`), seconds
/// after expectedRetryAt (negative: before).
fn retry_lateness(margin: &serde_json::Value) -> Option<f64> {
    let retry: crate::judge::Punctuality = serde_json::from_value(margin["retry"].clone()).ok()?;
    Some(retry.late_by())
}

/// min, median, max of `v` (sorted here).
pub fn spread(v: &mut [f64]) -> Option<(f64, f64, f64)> {
    v.sort_by(f64::total_cmp);
    Some((*v.first()?, v[v.len() / 2], *v.last()?))
}

/// The `q` quantile (0..=1) of a sorted slice.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let idx = ((sorted.len().checked_sub(1)?) as f64 * q).round() as usize;
    sorted.get(idx).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_the_eighth_cpu_column() {
        let stat = "cpu  4286799 92239 1068860 5098752 83107 0 62987 75886 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(parse_steal(stat), Some(758.86));
        assert_eq!(parse_steal("intr 1 2\n"), None);
    }

    #[test]
    fn lateness_is_read_from_margins() {
        let margin = |retry: serde_json::Value| serde_json::json!({"retryNum": 1, "retry": retry});
        assert_eq!(
            retry_lateness(&margin(
                serde_json::json!({"verdict": "onTime", "seconds": 0.31})
            )),
            Some(0.31)
        );
        assert_eq!(
            retry_lateness(&margin(
                serde_json::json!({"verdict": "early", "seconds": 0.02})
            )),
            Some(-0.02)
        );
        assert_eq!(retry_lateness(&margin(serde_json::Value::Null)), None);
    }

    #[test]
    fn spread_and_quantiles() {
        let mut v = vec![3.0, 1.0, 2.0];
        assert_eq!(spread(&mut v), Some((1.0, 2.0, 3.0)));
        assert_eq!(quantile(&v, 1.0), Some(3.0));
        assert_eq!(spread(&mut []), None);
    }
}
