//! `lbc run --provider kubeconfig` against a cluster that outlives the run (here a local
//! control plane booted by the test, standing in for a user's cluster): suites share its
//! kernel, runs can follow one another at once, and a namespace the harness did not make is
//! left alone.
#![cfg(feature = "e2e")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

mod common;

use std::sync::OnceLock;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use logbackup_conformance::cluster::RunningCluster;

fn cluster() -> &'static RunningCluster {
    static SHARED: OnceLock<common::Shared> = OnceLock::new();
    common::shared_cluster(&SHARED, common::fake_br_config)
}

fn lbc_run(suites: &[&str]) -> (bool, String) {
    let c = cluster();
    let report = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbc"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--provider", "kubeconfig", "--kubeconfig"])
        .arg(&c.kubeconfig)
        .arg(format!(
            "--kernel-endpoints={}",
            c.kernel_endpoints.join(",")
        ))
        .arg("--report-dir")
        .arg(report.path())
        .args(suites)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn suites_pass_on_an_existing_cluster_twice_in_a_row() {
    // exact-task-keys on a shared kernel: lb1/lb10 keep a shared prefix in their names.
    // The second run starts while the first run's namespaces are still terminating, and
    // finds the first run's tasks (same names) in the kernel.
    let suites = ["suites/exact-task-keys.yaml", "suites/kernel-recovery.yaml"];
    for run in 1..=2 {
        let (ok, text) = lbc_run(&suites);
        assert!(ok, "run {run}:\n{text}");
        assert!(text.contains("2 passed, 0 failed"), "run {run}:\n{text}");
    }
}

#[test]
fn a_namespace_the_harness_did_not_make_is_left_alone() {
    let c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let name = "retry-disabled";
    rt.block_on(async {
        let api: Api<Namespace> = Api::all(c.client().unwrap());
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        api.create(&PostParams::default(), &ns).await.unwrap();
    });
    let (ok, text) = lbc_run(&["suites/retry-disabled.yaml"]);
    let still_there = rt.block_on(async {
        let api: Api<Namespace> = Api::all(c.client().unwrap());
        let got = api.get_opt(name).await.unwrap();
        let _ = api.delete(name, &DeleteParams::default()).await;
        got.is_some_and(|n| n.metadata.deletion_timestamp.is_none())
    });
    assert!(!ok, "{text}");
    assert!(
        text.contains("namespace retry-disabled exists and was not made by lbc"),
        "{text}"
    );
    assert!(still_there, "the user's namespace was touched");
}

/// `lbc run --provider kubeconfig ARGS…`: (success, stderr).
fn lbc_kubeconfig(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbc"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--provider", "kubeconfig"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_provider_needs_its_flags() {
    let (ok, err) = lbc_kubeconfig(&["--kernel-endpoints=127.0.0.1:1"]);
    assert!(!ok);
    assert!(err.contains("--kubeconfig <PATH>"), "{err}");
    let (ok, err) = lbc_kubeconfig(&[
        "--kubeconfig=/nonexistent/kubeconfig",
        "--kernel-endpoints=127.0.0.1:1",
    ]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot read kubeconfig /nonexistent/kubeconfig"),
        "{err}"
    );
}
