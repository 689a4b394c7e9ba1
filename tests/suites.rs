//! One test per suite file, against the reference controller, sharing one local control
//! plane. Snapshots are committed and reviewed; CI runs with INSTA_UPDATE=no.
#![cfg(feature = "e2e")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use logbackup_conformance::cluster::RunningCluster;
use logbackup_conformance::cluster::local::LocalConfig;
use logbackup_conformance::run::{ControllerSpec, RunConfig, SuiteResult, run_suite};
use logbackup_conformance::{suite, target};
use rstest::rstest;

fn config() -> LocalConfig {
    common::fake_br_config()
}

fn cluster() -> &'static RunningCluster {
    static SHARED: OnceLock<common::Shared> = OnceLock::new();
    common::shared_cluster(&SHARED, config)
}

fn run_config(extra: &[&str]) -> RunConfig {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = target::find("reference", root).unwrap_or_else(|e| panic!("{e}"));
    let mut target = target::resolve(&target, &[]).unwrap_or_else(|e| panic!("{e}"));
    target.program = common::reference_controller().display().to_string();
    target.args.extend(extra.iter().map(|s| s.to_string()));
    RunConfig {
        report_dir: Path::new(env!("CARGO_TARGET_TMPDIR")).join("lbc-reports"),
        // insta compares (and offers review) below.
        snapshots: None,
        ..RunConfig::from_target(&target).unwrap_or_else(|e| panic!("{e}"))
    }
}

async fn run_one(path: &Path, extra: &[&str]) -> SuiteResult {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let s = suite::load_file(path, root).unwrap_or_else(|e| panic!("{e}"));
    let mut s = s;
    if !extra.is_empty() {
        // A distinct namespace (and Backup names) from the suite's own run.
        s.name = format!("{}-alt", s.name);
    }
    run_suite(cluster(), &s, path, root, &run_config(extra)).await
}

#[rstest]
#[tokio::test]
// A hung suite must not hang CI: every suite declares a timeout well under this.
#[timeout(Duration::from_secs(300))]
async fn conformance(#[files("suites/*.yaml")] path: PathBuf) {
    let r = run_one(&path, &[]).await;
    assert!(
        r.passed,
        "suite {} failed:\n{}\ndebug bundle: {:?}",
        r.name,
        r.failures.join("\n"),
        r.bundle
    );
    if let Some(snapshot) = r.snapshot {
        insta::assert_snapshot!(r.name.clone(), snapshot);
    }
}

/// The same suites through the operator's path: the reference controller in
/// `--operator-compat` mode (environment-only configuration, a TidbCluster per suite, PD by
/// service name, a fixed metrics port) in its own network and mount namespace per suite.
/// The contract snapshots must be the very same.
#[rstest]
#[tokio::test]
#[timeout(Duration::from_secs(300))]
async fn operator_compat_target(#[files("suites/*.yaml")] path: PathBuf) {
    // SAFETY: a plain getter.
    if unsafe { libc::geteuid() } != 0 {
        say("SKIPPED operator_compat_target: isolated targets need root (lbc-sandbox)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut s = suite::load_file(&path, root).unwrap_or_else(|e| panic!("{e}"));
    let snapshot_name = s.name.clone();
    // Its own namespace beside the default target's run of the same suite.
    s.name = format!("{}-op", s.name);
    let t = target::find("reference-operator", root).unwrap_or_else(|e| panic!("{e}"));
    let mut t = target::resolve(&t, &[]).unwrap_or_else(|e| panic!("{e}"));
    t.program = common::reference_controller().display().to_string();
    let cfg = RunConfig {
        report_dir: Path::new(env!("CARGO_TARGET_TMPDIR")).join("lbc-reports-op"),
        snapshots: None,
        ..RunConfig::from_target(&t).unwrap_or_else(|e| panic!("{e}"))
    };
    let client = cluster().client().unwrap();
    logbackup_conformance::run::install::install_crds(&client, None, &cfg.objects)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let r = run_suite(cluster(), &s, &path, root, &cfg).await;
    assert!(
        r.passed,
        "suite {} failed against reference-operator:\n{}\ndebug bundle: {:?}",
        r.name,
        r.failures.join("\n"),
        r.bundle
    );
    if let Some(snapshot) = r.snapshot {
        insta::assert_snapshot!(snapshot_name, snapshot);
    }
}

/// Past libtest's capture: a skip must show in the test output.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// TiDB Operator itself, when a developer brings a build (never committed here):
/// `LBC_TIDB_OPERATOR_BIN=/path/to/controller-manager LBC_TIDB_OPERATOR_CRDS=/path/to/manifests/crd/v1`.
/// It runs two suites through the `tidb-operator` target and prints their verdicts; it
/// fails only when the harness could not run the operator (set-up), not on the operator's
/// verdicts, which are its behaviour.
#[tokio::test]
async fn tidb_operator_target_when_given() {
    let (Some(bin), Some(crds)) = (
        std::env::var_os("LBC_TIDB_OPERATOR_BIN"),
        std::env::var_os("LBC_TIDB_OPERATOR_CRDS"),
    ) else {
        say(
            "SKIPPED tidb_operator_target_when_given: set LBC_TIDB_OPERATOR_BIN and \
             LBC_TIDB_OPERATOR_CRDS to run suites against your tidb-controller-manager",
        );
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let t = target::find("tidb-operator", root).unwrap_or_else(|e| panic!("{e}"));
    let sets = [
        ("bin".to_owned(), bin.to_string_lossy().into_owned()),
        ("crds".to_owned(), crds.to_string_lossy().into_owned()),
    ];
    let t = target::resolve(&t, &sets).unwrap_or_else(|e| panic!("{e}"));
    let cfg = RunConfig {
        report_dir: Path::new(env!("CARGO_TARGET_TMPDIR")).join("lbc-reports-tidb-operator"),
        ..RunConfig::from_target(&t).unwrap_or_else(|e| panic!("{e}"))
    };
    let client = cluster().client().unwrap();
    logbackup_conformance::run::install::install_crds(&client, t.crds.as_deref(), &cfg.objects)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for name in ["job-failure-retry-success", "kernel-recovery"] {
        let path = root.join(format!("suites/{name}.yaml"));
        let mut s = suite::load_file(&path, root).unwrap_or_else(|e| panic!("{e}"));
        s.name = format!("{name}-tidb-op");
        let r = run_suite(cluster(), &s, &path, root, &cfg).await;
        say(&format!(
            "tidb-operator: {name}: {} ({:.1}s){}",
            if r.passed { "pass" } else { "FAIL" },
            r.seconds,
            r.failures.first().map_or(String::new(), |f| format!(
                ": {}",
                f.lines().next().unwrap_or_default()
            ))
        ));
        let set_up = [
            "starting the controller",
            "isolating the controller",
            "the target's",
        ];
        assert!(
            !r.failures
                .iter()
                .any(|f| set_up.iter().any(|p| f.contains(p))),
            "the harness could not run the operator: {:?}",
            r.failures
        );
    }
}

/// `--kernel per-suite`: the suite starts an etcd of its own and keeps its declared names;
/// the suite that needs exact task names passes that way too.
#[tokio::test]
async fn a_kernel_per_suite_keeps_the_declared_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("suites/exact-task-keys.yaml");
    let mut s = suite::load_file(&path, root).unwrap_or_else(|e| panic!("{e}"));
    // A namespace apart from the shared-kernel run of the same suite.
    s.name = format!("{}-own", s.name);
    let mut cfg = run_config(&[]);
    cfg.shared_kernel = false;
    let r = run_suite(cluster(), &s, &path, root, &cfg).await;
    assert!(r.passed, "{}", r.failures.join("\n"));
    assert!(
        r.api_calls
            .iter()
            .any(|c| c.request.name.as_deref() == Some("lb10")),
        "the controller never named Backup lb10: the declared names were not kept"
    );
}

/// The rejected workqueue strategy (seed §3 scheme A) must fail the restart suite.
#[tokio::test]
async fn workqueue_strategy_is_caught_by_the_restart_suite() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("suites/restart-mid-retry.yaml");
    let r = run_one(&path, &["--retry-strategy=workqueue"]).await;
    assert!(
        !r.passed,
        "the workqueue strategy passed restart-mid-retry; the suite asserts nothing"
    );
    let failures = r.failures.join("\n");
    assert!(
        failures.contains("recordExists") || failures.contains("retryNum"),
        "caught for the wrong reason:\n{failures}"
    );
}

/// Every suite checks that the controller under test is still running at its end: a
/// controller that exits on its own fails a suite whose steps all pass.
#[tokio::test]
async fn a_controller_that_exits_fails_the_suite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = "name: controller-exits\nclauses: [LBR-14]\ntimeout: 30s\nbackups:\n  - name: lb1\nsteps:\n  - wait: 2s\n";
    let s = suite::load_str(Path::new("inline.yaml"), text, root).unwrap_or_else(|e| panic!("{e}"));
    let cfg = RunConfig {
        controller: ControllerSpec::template("sleep 0.5").unwrap(),
        ..run_config(&[])
    };
    let r = run_suite(cluster(), &s, Path::new("inline.yaml"), root, &cfg).await;
    assert!(!r.passed, "an exited controller passed");
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("the controller under test exited during the suite")),
        "{:?}",
        r.failures
    );
}

/// A controller that never acts fails the waiting step once the namespace has been quiet
/// for the quiet limit, long before the suite's timeout (a 60 s timeout here).
#[tokio::test]
async fn a_controller_that_never_acts_fails_fast() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = [
        "name: never-acts",
        "clauses: [LBR-1]",
        "timeout: 60s",
        "backups:",
        "  - name: lb1",
        "plans:",
        "  lb1:",
        "    log-start: [{action: fail}]",
        "steps:",
        "  - create: {backup: lb1}",
        "  - assert:",
        "      eventually:",
        "        that: {recordPending: {backup: lb1, n: 1}}",
    ]
    .join("\n");
    let text = text.as_str();
    let s = suite::load_str(Path::new("inline.yaml"), text, root).unwrap_or_else(|e| panic!("{e}"));
    let cfg = RunConfig {
        controller: ControllerSpec::template("sleep 600").unwrap(),
        ..run_config(&[])
    };
    let r = run_suite(cluster(), &s, Path::new("inline.yaml"), root, &cfg).await;
    assert!(!r.passed, "a controller that does nothing passed");
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("nothing changed in the namespace for 15s")),
        "not ended by the quiet limit: {:?}",
        r.failures
    );
}
