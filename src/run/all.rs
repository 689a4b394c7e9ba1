//! A whole run: many suites on one cluster, at most `concurrency` at once, stopping new
//! suites after the first failure with `fail_fast`, under a watchdog and Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{RunConfig, SuiteResult, events::Reporter, run_suite_reporting};
use crate::cluster::RunningCluster;
use crate::suite::Suite;

/// How a run is scheduled.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub concurrency: usize,
    pub fail_fast: bool,
    /// The whole run's watchdog.
    pub timeout: Duration,
}

/// What one suite may cost in memory when the harness picks the concurrency: its controller
/// (a Go operator is ~100 MiB), its kernel etcd (~40 MiB) and its Pods. Measured for the
/// reference controller: ~21 MiB per suite with all 34 suites at once; the budget is generous
/// so a heavier controller fits too.
pub const SUITE_MEMORY_KIB: u64 = 256 * 1024;

/// Suites run at once by default: all of them (they mostly wait on timers, so cores are not
/// the limit), bounded by half the memory the machine has available at `SUITE_MEMORY_KIB`
/// each; at least one. `available_kib`: `MemAvailable`, `None` when unknown (then 2 at once).
pub fn concurrency_for(suites: usize, available_kib: Option<u64>) -> usize {
    let by_memory = available_kib.map_or(2, |kib| (kib / 2 / SUITE_MEMORY_KIB) as usize);
    suites.min(by_memory).max(1)
}

/// `MemAvailable` from `/proc/meminfo`, kB.
pub fn mem_available_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Why a run ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    Watchdog,
    Interrupted,
}

/// Run `suites` (each with the file it came from); results sorted by name, and whether the
/// run was cut short.
pub async fn run_all(
    cluster: Arc<RunningCluster>,
    suites: Vec<(PathBuf, Suite)>,
    root: PathBuf,
    cfg: Arc<RunConfig>,
    schedule: &Schedule,
    reporter: Arc<dyn Reporter>,
) -> (Vec<SuiteResult>, Option<Cut>) {
    let gate = Arc::new(tokio::sync::Semaphore::new(schedule.concurrency.max(1)));
    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let fail_fast = schedule.fail_fast;
    let done = results.clone();
    // Suites start in the given order (deterministic), each when a slot is free. Dropping
    // this future (watchdog, Ctrl-C) drops the JoinSet, which aborts the running suites.
    let all = async move {
        let mut tasks = tokio::task::JoinSet::new();
        let push = |joined: Result<SuiteResult, tokio::task::JoinError>| {
            if let (Ok(r), Ok(mut v)) = (joined, done.lock()) {
                v.push(r);
            }
        };
        for (path, suite) in suites {
            let permit = loop {
                tokio::select! {
                    p = gate.clone().acquire_owned() => break p.ok(),
                    Some(j) = tasks.join_next(), if !tasks.is_empty() => push(j),
                }
            };
            let Some(permit) = permit else { break };
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let (cluster, cfg, stop, root, reporter) = (
                cluster.clone(),
                cfg.clone(),
                stop.clone(),
                root.clone(),
                reporter.clone(),
            );
            tasks.spawn(async move {
                let _permit = permit;
                let r =
                    run_suite_reporting(&cluster, &suite, &path, &root, &cfg, reporter.as_ref())
                        .await;
                if !r.passed && fail_fast {
                    stop.store(true, Ordering::Relaxed);
                }
                r
            });
        }
        while let Some(j) = tasks.join_next().await {
            push(j);
        }
    };
    let cut = tokio::select! {
        r = tokio::time::timeout(schedule.timeout, all) => r.is_err().then_some(Cut::Watchdog),
        _ = tokio::signal::ctrl_c() => Some(Cut::Interrupted),
    };
    let mut results = results
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default();
    results.sort_by(|a, b| a.name.cmp(&b.name));
    (results, cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::all_fit(34, Some(24 * 1024 * 1024), 34)]
    #[case::memory_bounds(34, Some(2 * 1024 * 1024), 4)]
    #[case::tiny_machine(34, Some(100 * 1024), 1)]
    #[case::unknown_memory(34, None, 2)]
    #[case::one_suite(1, Some(24 * 1024 * 1024), 1)]
    #[case::no_suites(0, Some(24 * 1024 * 1024), 1)]
    fn concurrency_is_bounded_by_memory(
        #[case] suites: usize,
        #[case] available: Option<u64>,
        #[case] want: usize,
    ) {
        assert_eq!(concurrency_for(suites, available), want);
    }

    #[test]
    fn this_machine_reports_available_memory() {
        assert!(mem_available_kib().is_some_and(|k| k > 0));
    }
}
