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
    let mut tasks = tokio::task::JoinSet::new();
    for (path, suite) in suites {
        let (cluster, cfg, gate, stop, root, reporter) = (
            cluster.clone(),
            cfg.clone(),
            gate.clone(),
            stop.clone(),
            root.clone(),
            reporter.clone(),
        );
        let fail_fast = schedule.fail_fast;
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let r =
                run_suite_reporting(&cluster, &suite, &path, &root, &cfg, reporter.as_ref()).await;
            if !r.passed && fail_fast {
                stop.store(true, Ordering::Relaxed);
            }
            Some(r)
        });
    }
    let mut results = Vec::new();
    let collected = tokio::time::timeout(schedule.timeout, async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(Some(r)) = joined {
                results.push(r);
            }
        }
    });
    let cut = tokio::select! {
        r = collected => r.is_err().then_some(Cut::Watchdog),
        _ = tokio::signal::ctrl_c() => Some(Cut::Interrupted),
    };
    tasks.abort_all();
    results.sort_by(|a, b| a.name.cmp(&b.name));
    (results, cut)
}
