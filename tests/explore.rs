//! Restart-equivalence over the retry suites (LBR-8): every suite that retries is explored
//! with a crash of the reference controller before and after each of its writes, and no
//! crash may change the contract outcome. Its own test binary: cargo runs test binaries one
//! after another, so this load does not overlap the suites' tests.
#![cfg(feature = "e2e")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

mod common;

use std::path::Path;
use std::sync::OnceLock;

use std::collections::BTreeSet;

use futures::StreamExt;
use logbackup_conformance::explore;
use logbackup_conformance::run::RunConfig;
use logbackup_conformance::suite::model::SuiteStep;
use logbackup_conformance::{suite, target};

fn cluster() -> &'static logbackup_conformance::cluster::RunningCluster {
    static SHARED: OnceLock<common::Shared> = OnceLock::new();
    common::shared_cluster(&SHARED, common::fake_br_config)
}

/// Runs at once: suites' uninterrupted runs, then every probe of every suite, in one pool.
const JOBS: usize = 12;

/// Which probes: by default each transition between two of the controller's writes once
/// (`explore::choose_new`, in the first suite by name that reaches it); with
/// `LBC_EXPLORE=all` (`.ci/run`) every write point of every suite, before and after.
fn every_point() -> bool {
    std::env::var("LBC_EXPLORE").is_ok_and(|v| v == "all")
}

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
        .filter(|(s, _)| explore::not_explorable(s).is_none())
        .collect();
    suites.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let cluster = cluster();
    let started = std::time::Instant::now();
    // Every suite's uninterrupted run, side by side.
    let learned: Vec<explore::Learned> = futures::stream::iter(
        suites
            .iter()
            .map(|(s, path)| explore::learn(cluster, s, path, root, &cfg)),
    )
    .buffered(JOBS)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .map(|l| l.unwrap_or_else(|e| panic!("{e}")))
    .collect();
    let mut seen = BTreeSet::new();
    let plan: Vec<(usize, usize, explore::Probe)> = learned
        .iter()
        .enumerate()
        .flat_map(|(li, l)| {
            let probes = if every_point() {
                explore::choose(&l.points, usize::MAX)
            } else {
                explore::choose_new(&l.points, &mut seen)
            };
            probes.into_iter().enumerate().map(move |(i, p)| (li, i, p))
        })
        .collect();
    let points: usize = learned.iter().map(|l| l.points.len()).sum();
    let possible = points * 2;
    let learned_ref = &learned;
    let outcomes: Vec<(usize, explore::Outcome)> =
        futures::stream::iter(plan.iter().map(|(li, i, p)| async move {
            (
                *li,
                explore::probe(cluster, &learned_ref[*li], p, *i, root).await,
            )
        }))
        .buffer_unordered(JOBS)
        .collect()
        .await;
    let mut by_suite: Vec<Vec<explore::Outcome>> = vec![Vec::new(); learned.len()];
    for (li, o) in outcomes {
        by_suite[li].push(o);
    }
    let explorations: Vec<_> = learned
        .iter()
        .zip(by_suite)
        .map(|(l, o)| l.exploration(o))
        .collect();
    let explored: usize = explorations.iter().map(|x| x.outcomes.len()).sum();
    let unreached: usize = explorations
        .iter()
        .map(explore::Exploration::unreached)
        .sum();
    let findings: Vec<String> = explorations
        .iter()
        .flat_map(explore::Exploration::findings)
        .collect();
    println!(
        "explored {explored} of {possible} crash points ({}) at {points} write points of {} retry suites ({unreached} unreached) in {:.0}s",
        if every_point() {
            "all"
        } else {
            "each transition once"
        },
        suites.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        suites.len() >= 10,
        "only {} retry suites found",
        suites.len()
    );
    assert!(
        explorations.iter().all(|x| !x.outcomes.is_empty()),
        "every retry suite explored at some point"
    );
    assert!(findings.is_empty(), "{}", findings.join("\n\n"));
}
