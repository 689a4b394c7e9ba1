//! A whole run: many suites on one cluster, at most `concurrency` at once, stopping new
//! suites after the first failure with `fail_fast`, under a watchdog and Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{RunConfig, SuiteResult, reporter::Reporter, run_suite_reporting};
use crate::cluster::RunningCluster;
use crate::suite::Suite;

/// How a run is scheduled.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub concurrency: usize,
    pub fail_fast: bool,
    /// The whole run's watchdog.
    pub timeout: Duration,
    /// Run a failed suite again up to this many times; one that then passes is flaky.
    pub reruns: u32,
    /// Two builds compared (`--target old=… --target new=…`): a suite the first passed and
    /// the second fails runs again on the second ([`GATE_RERUNS`] times at least) before it
    /// counts as broken.
    pub gate: bool,
}

/// How often the gate runs a suite that flipped from pass to fail before believing it.
pub const GATE_RERUNS: u32 = 2;

/// What one suite may cost in memory when the harness picks the concurrency: its controller
/// (a Go operator is ~100 MiB), its kernel etcd (~40 MiB) and its Pods. Measured for the
/// reference controller: ~21 MiB per suite with all 34 suites at once; the budget is generous
/// so a heavier controller fits too.
pub const SUITE_MEMORY_KIB: u64 = 256 * 1024;

/// Suites run at once per core by default. Suites mostly wait on timers, but every attempt
/// costs the API server a burst of work, and a saturated machine makes retries late from
/// load alone. Measured on 2 cores (42 suites, `lbc bench run`): 16 at once, 20 runs in a
/// row without a failure (and 10 of 10 in an earlier series), wall median 24.8 s, retries'
/// lateness p99 1.05 s and max 1.38 s against LBR-3's 2 s; 12 at once 28.5 s, max 0.74 s;
/// 20 at once reached a max of 1.86 s; 34 at once failed LBR-3 in 4 of 19 runs. (With the
/// shared kernel, 16 at once: 20 runs clean, median 22.8 s, lateness max 1.05 s.)
pub const SUITES_PER_CORE: usize = 8;

/// `lbc run --stress`: 18 at once on 2 cores, as measured when stress meant half as many
/// again as the old default of 12. More overloads two cores: the lateness verdicts then
/// measure the machine, not races.
pub const STRESS_SUITES_PER_CORE: usize = 9;

/// On a real node (`--node kubelet`, and `--install deployment`): 10 at once on 2 cores.
/// Every Pod there costs a sandbox, a shim and the kubelet's status updates on this machine;
/// at 16 at once the machine, not the controller, made suites fail on timing: 5 of 51
/// reference-operator suites 3–4 s late as Deployments, and 1 to 4 of 102 in the process
/// form (a CI run, and one here after it). At 10 at once both forms passed every suite.
pub const REAL_NODE_SUITES_PER_CORE: usize = 5;

/// `lbc explore`: 12 at once on 2 cores, as measured (922 crash points in 20 min). Every
/// probe kills and restarts its controller, more work than a suite's run, and a probe that
/// fails from load alone would be reported as a difference.
pub const EXPLORE_SUITES_PER_CORE: usize = 6;

/// Suites run at once by default: [`SUITES_PER_CORE`] per core, bounded by half the memory
/// the machine has available at [`SUITE_MEMORY_KIB`] each; at least one.
/// `available_kib`: `MemAvailable`, `None` when unknown (then 2 at once).
pub fn concurrency_for(suites: usize, available_kib: Option<u64>, cores: usize) -> usize {
    concurrency_at(suites, available_kib, cores, SUITES_PER_CORE)
}

/// [`concurrency_for`] with `per_core` suites per core instead of the default; the memory
/// bound is the same.
pub fn concurrency_at(
    suites: usize,
    available_kib: Option<u64>,
    cores: usize,
    per_core: usize,
) -> usize {
    let by_memory = available_kib.map_or(2, |kib| (kib / 2 / SUITE_MEMORY_KIB) as usize);
    suites.min(by_memory).min(cores.max(1) * per_core).max(1)
}

/// A rough length of `suite` run alone: what it waits for by design (its `wait` and
/// `never … for` steps, its plans' delays, the backoff before each planned failure's retry
/// under its policy, each capped at 30 s) plus a fixed 3 s. Used only to start the longest
/// suites first and to pick the longest for `lbc bench run`.
pub fn estimate(suite: &Suite) -> Duration {
    use crate::suite::model::{Assertion, SuiteStep};
    let mut total = Duration::from_secs(3);
    for step in &suite.steps {
        match step {
            SuiteStep::Wait(w) => total += w.0.get(),
            SuiteStep::Assert(Assertion::Never(n)) => {
                total += n.for_.as_ref().map(|d| d.get()).unwrap_or_default();
            }
            _ => {}
        }
    }
    let cap = Duration::from_secs(30);
    for decl in &suite.backups {
        // Without a policy of its own the Backup has its fixture's (2 s in ours) or the CRD
        // defaults, which no suite waits out: 2 s is the better guess.
        let min = decl
            .policy
            .as_ref()
            .and_then(|p| crate::judge::contract::policy(p).ok())
            .map_or(Duration::from_secs(2), |p| p.min_retry_duration);
        let steps = suite
            .plans
            .get(&decl.name)
            .into_iter()
            .flat_map(|m| m.values().flatten());
        let mut fails = 0;
        for st in steps {
            if let Some(d) = st
                .delay
                .as_deref()
                .and_then(|d| lbc_api::duration::parse_go_duration(d).ok())
            {
                total += d.min(cap);
            }
            if st.action == lbc_api::plan::Action::Fail {
                fails += 1;
                total += crate::judge::contract::delay(min, fails)
                    .unwrap_or(cap)
                    .min(cap);
            }
        }
    }
    total
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
    /// A component of the cluster died (`RunningCluster::dead_components` says which).
    ClusterDied,
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
    let mut suites = suites;
    suites.sort_by_key(|(_, s)| std::cmp::Reverse(estimate(s)));
    let gate = Arc::new(tokio::sync::Semaphore::new(schedule.concurrency.max(1)));
    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let fail_fast = schedule.fail_fast;
    let done = results.clone();
    let watched = cluster.clone();
    // The longest suites first (the run then ends about when the longest one does), ties
    // in the given order: deterministic. Each starts when a slot is free. Dropping
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
        _ = crate::programs::process::stop_requested() => Some(Cut::Interrupted),
        () = cluster_death(watched) => Some(Cut::ClusterDied),
    };
    let mut results = results
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default();
    results.sort_by(|a, b| a.name.cmp(&b.name));
    (results, cut)
}

/// Returns once a component of `cluster` has died: every suite after that would only time
/// out (a dead etcd makes the apiserver hang requests, not fail them).
async fn cluster_death(cluster: Arc<RunningCluster>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let c = cluster.clone();
        let dead = tokio::task::spawn_blocking(move || c.dead_components())
            .await
            .unwrap_or_default();
        if !dead.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::stress_on_two_cores(42, Some(24 * 1024 * 1024), 2, STRESS_SUITES_PER_CORE, 18)]
    #[case::explore_on_two_cores(42, Some(24 * 1024 * 1024), 2, EXPLORE_SUITES_PER_CORE, 12)]
    #[case::stress_within_memory(42, Some(3 * 1024 * 1024), 2, STRESS_SUITES_PER_CORE, 6)]
    #[case::stress_capped_by_suites(42, Some(64 * 1024 * 1024), 8, STRESS_SUITES_PER_CORE, 42)]
    fn other_modes_scale_per_core_within_the_same_memory_bound(
        #[case] suites: usize,
        #[case] available: Option<u64>,
        #[case] cores: usize,
        #[case] per_core: usize,
        #[case] want: usize,
    ) {
        assert_eq!(concurrency_at(suites, available, cores, per_core), want);
    }

    #[rstest]
    #[case::cores_bound(34, Some(24 * 1024 * 1024), 2, 16)]
    #[case::all_fit(34, Some(24 * 1024 * 1024), 8, 34)]
    #[case::memory_bounds(34, Some(2 * 1024 * 1024), 8, 4)]
    #[case::tiny_machine(34, Some(100 * 1024), 2, 1)]
    #[case::unknown_memory(34, None, 2, 2)]
    #[case::one_suite(1, Some(24 * 1024 * 1024), 2, 1)]
    #[case::no_suites(0, Some(24 * 1024 * 1024), 2, 1)]
    fn concurrency_is_bounded_by_cores_and_memory(
        #[case] suites: usize,
        #[case] available: Option<u64>,
        #[case] cores: usize,
        #[case] want: usize,
    ) {
        assert_eq!(concurrency_for(suites, available, cores), want);
    }

    fn suite(yaml: &str) -> Suite {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        crate::suite::load::load_str(std::path::Path::new("t.yaml"), yaml, root).unwrap()
    }

    #[test]
    fn a_suite_that_waits_longer_is_estimated_longer() {
        let quick = suite(
            "name: q\nclauses: [LBR-1]\nbackups: [{name: lb1}]\nsteps:\n  - create: {backup: lb1}\n",
        );
        let slow = suite(
            "name: s\nclauses: [LBR-2]\nbackups:\n  - name: lb1\n    policy: {minRetryDuration: 2s, maxRetryTimes: 5}\n\
             plans:\n  lb1:\n    log-start:\n      - {action: fail}\n      - {action: fail, delay: 1s}\n\
             steps:\n  - create: {backup: lb1}\n  - wait: 1s\n  - assert:\n      never:\n        that: {jobFailed: {backup: lb1, subcommand: log-start}}\n        for: 2s\n",
        );
        assert_eq!(estimate(&quick), Duration::from_secs(3));
        // 3 + wait 1 + never 2 + retries 2 + 4 + delay 1
        assert_eq!(estimate(&slow), Duration::from_secs(13));
    }

    #[test]
    fn this_machine_reports_available_memory() {
        assert!(mem_available_kib().is_some_and(|k| k > 0));
    }
}
