//! Restart-equivalence over the retry suites (LBR-8): every suite that retries is explored
//! with a crash of the reference controller before and after each of its writes, and no
//! crash may change the contract outcome. Its own test binary: cargo runs test binaries one
//! after another, so this load does not overlap the suites' tests.
#![cfg(feature = "e2e")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

mod common;

use std::path::Path;
use std::sync::OnceLock;

use logbackup_conformance::explore::{Budget, explore};
use logbackup_conformance::run::RunConfig;
use logbackup_conformance::suite::model::SuiteStep;
use logbackup_conformance::{suite, target};

fn cluster() -> &'static logbackup_conformance::cluster::RunningCluster {
    static SHARED: OnceLock<common::Shared> = OnceLock::new();
    common::shared_cluster(&SHARED, common::fake_br_config)
}

/// Probe runs per suite, spread over its write points (most retry suites have ≤ 12 points,
/// 24 probes: all of them); CI's time budget sets it.
const MAX_RUNS: usize = 24;

// Several runtimes' worth of work (a proxy, a recorder and the steps of each run at once):
// not on one thread, or the harness itself becomes the lag it measures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_crash_at_any_write_changes_the_outcome_of_a_retry_suite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let t = target::find("reference", root).unwrap();
    let mut t = target::resolve(&t, &[]).unwrap();
    t.program = common::reference_controller().display().to_string();
    let cfg = RunConfig {
        report_dir: Path::new(env!("CARGO_TARGET_TMPDIR")).join("lbc-explore"),
        ..RunConfig::from_target(&t).unwrap()
    };
    // The retry suites: a record is made (LBR-2) and no fault of their own is armed.
    let mut suites: Vec<_> = std::fs::read_dir(root.join("suites"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| (suite::load_file(&p, root).unwrap(), p))
        .filter(|(s, _)| s.clauses.iter().any(|c| c == "LBR-2" || c == "LBR-3"))
        .filter(|(s, _)| !s.steps.iter().any(|st| matches!(st, SuiteStep::Fault(_))))
        .filter(|(s, _)| logbackup_conformance::explore::not_explorable(s).is_none())
        .collect();
    suites.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let budget = Budget {
        max_runs: MAX_RUNS,
        jobs: 8,
    };
    let cluster = cluster();
    let (mut points, mut explored, mut unreached) = (0, 0, 0);
    let mut findings = Vec::new();
    let started = std::time::Instant::now();
    for (s, path) in &suites {
        let quiet = |_: &str| {};
        let x = explore(cluster, s, path, root, &cfg, &budget, &quiet)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        points += x.write_points;
        explored += x.outcomes.len();
        unreached += x.unreached();
        findings.extend(x.findings());
    }
    println!(
        "explored {explored} crash points at {points} write points of {} retry suites ({unreached} unreached) in {:.0}s",
        suites.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        suites.len() >= 10,
        "only {} retry suites found",
        suites.len()
    );
    assert!(explored >= points, "every point explored at least once");
    assert!(findings.is_empty(), "{}", findings.join("\n\n"));
}
