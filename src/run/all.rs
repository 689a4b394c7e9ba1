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
