//! `lbc run --provider kubeconfig` against a cluster that outlives the run (here a local
//! control plane booted by the test, standing in for a user's cluster): suites share its
//! kernel, runs can follow one another at once, a namespace the harness did not make is
//! left alone, and fake-br writes to the kernel the run was given.
#![cfg(feature = "e2e")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

mod common;

use std::sync::OnceLock;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use logbackup_conformance::cluster::RunningCluster;
use logbackup_conformance::run::kernel::SuiteKernel;

fn cluster() -> &'static RunningCluster {
    static SHARED: OnceLock<common::Shared> = OnceLock::new();
    common::shared_cluster(&SHARED, common::fake_br_config)
}

fn lbc_run(suites: &[&str]) -> (bool, String) {
    let c = cluster();
    let kubeconfig = format!("--kubeconfig={}", c.kubeconfig.display());
    let kernel = format!("--kernel-endpoints={}", c.kernel_endpoints.join(","));
    let mut args = vec![kubeconfig.as_str(), kernel.as_str()];
    args.extend_from_slice(suites);
    lbc_kubeconfig(&args)
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
fn fake_br_finds_the_runs_kernel_not_the_nodes() {
    // A kernel that is not the cluster's: the node hands every Pod the cluster's own
    // (LBC_KERNEL_ENDPOINTS), so fake-br reaches this one only through the suite's
    // ConfigMap. Were it to write the task to the node's kernel, the controller (told this
    // one) would find no task, and retry with a new Job instead of recovering (lb1's
    // kernelRecoveries would be 0).
    let dir = tempfile::tempdir().unwrap();
    let run_id = format!("second-kernel-{}", std::process::id());
    let kernel = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(SuiteKernel::start(
            dir.path(),
            &run_id,
            std::net::Ipv4Addr::LOCALHOST,
            std::time::Duration::from_secs(30),
        ))
        .unwrap();
    let c = cluster();
    assert!(!c.kernel_endpoints.contains(&kernel.endpoint));
    let (ok, text) = lbc_kubeconfig(&[
        &format!("--kubeconfig={}", c.kubeconfig.display()),
        &format!("--kernel-endpoints={}", kernel.endpoint),
        "suites/metrics-counters.yaml",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("1 passed, 0 failed"), "{text}");
}

/// Create namespace `name` with `labels`, and in it the Backups `backups` (JSON).
fn make_namespace(name: &str, labels: serde_json::Value, backups: &[serde_json::Value]) {
    let c = cluster();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let api: Api<Namespace> = Api::all(c.client().unwrap());
        let ns: Namespace = serde_json::from_value(
            serde_json::json!({"metadata": {"name": name, "labels": labels}}),
        )
        .unwrap();
        api.create(&PostParams::default(), &ns).await.unwrap();
        let bk: Api<lbc_api::Backup> = Api::namespaced(c.client().unwrap(), name);
        for b in backups {
            let b: lbc_api::Backup = serde_json::from_value(b.clone()).unwrap();
            bk.create(&PostParams::default(), &b).await.unwrap();
        }
    });
}

/// Whether namespace `name` is there and not being deleted; then deletes it.
fn still_there_then_gone(name: &str) -> bool {
    let c = cluster();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let api: Api<Namespace> = Api::all(c.client().unwrap());
        let got = api.get_opt(name).await.unwrap();
        let _ = api.delete(name, &DeleteParams::default()).await;
        got.is_some_and(|n| n.metadata.deletion_timestamp.is_none())
    })
}

/// Make namespace `name` with `labels`, run `suite` (whose namespace it is): the run must
/// fail saying `refusal`, and leave the namespace as it was.
fn refused_and_left_alone(name: &str, labels: serde_json::Value, suite: &str, refusal: &str) {
    make_namespace(name, labels, &[]);
    let (ok, text) = lbc_run(&[suite]);
    let still_there = still_there_then_gone(name);
    assert!(!ok, "{text}");
    assert!(text.contains(refusal), "{text}");
    assert!(still_there, "namespace {name} was touched");
}

#[test]
fn a_namespace_the_harness_did_not_make_is_left_alone() {
    refused_and_left_alone(
        "retry-disabled",
        serde_json::json!({}),
        "suites/retry-disabled.yaml",
        "namespace retry-disabled exists and was not made by lbc",
    );
}

#[test]
fn a_namespace_another_run_is_using_is_left_alone() {
    refused_and_left_alone(
        "invalid-durations",
        serde_json::json!({"app.kubernetes.io/managed-by": "logbackup-conformance",
                           "logbackup-conformance/run": "another-run"}),
        "suites/invalid-durations.yaml",
        "namespace invalid-durations is in use by another lbc run (another-run",
    );
}

#[test]
fn a_killed_runs_namespace_is_cleared_first_finalizers_and_all() {
    // Made by lbc (an older one: no run label), with a Backup its gone controller held.
    make_namespace(
        "instant-jobs",
        serde_json::json!({"app.kubernetes.io/managed-by": "logbackup-conformance"}),
        &[serde_json::json!({
            "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
            "metadata": {"name": "stale", "finalizers": ["example.com/held-by-a-gone-controller"]},
            "spec": {"backupMode": "log"}
        })],
    );
    let (ok, text) = lbc_run(&["suites/instant-jobs.yaml"]);
    assert!(ok, "{text}");
    assert!(text.contains("1 passed, 0 failed"), "{text}");
}

/// `lbc run --provider kubeconfig ARGS…`: (success, stdout and stderr).
fn lbc_kubeconfig(args: &[&str]) -> (bool, String) {
    let report = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbc"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--provider", "kubeconfig", "--report-dir"])
        .arg(report.path())
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
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
    let (ok, err) = lbc_kubeconfig(&["--kubeconfig=/x", "--kernel-endpoints="]);
    assert!(!ok);
    assert!(
        err.contains("needs --kubeconfig PATH and --kernel-endpoints"),
        "{err}"
    );
}

#[test]
fn on_an_existing_cluster_jobs_run_the_projects_images() {
    // The images `lbc image save` writes, not `pingcap/tidb-backup-manager:latest` (a real
    // node would pull the real backup-manager): the Job's image and the Backups' toolImage.
    let c = cluster();
    let report = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbc"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("LBC_BUNDLE", "always")
        .args(["run", "--provider", "kubeconfig", "--report", "json"])
        .arg(format!("--kubeconfig={}", c.kubeconfig.display()))
        .arg(format!(
            "--kernel-endpoints={}",
            c.kernel_endpoints.join(",")
        ))
        .arg("--report-dir")
        .arg(report.path())
        .arg("suites/job-failure-retry-success.yaml")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = std::fs::read_to_string(report.path().join("job-failure-retry-success/trace.yaml"))
        .unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        trace.contains(&format!("image: logbackup-conformance/fake-br:{version}")),
        "no Job of the project's fake-br image in the trace"
    );
    assert!(
        trace.contains(&format!("toolImage: logbackup-conformance/br:{version}")),
        "no Backup with the project's BR stand-in as toolImage"
    );
}

#[test]
fn a_killed_runs_admission_policies_are_swept_once_their_namespace_is_gone() {
    use k8s_openapi::api::admissionregistration::v1beta1::{
        MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding,
    };
    use logbackup_conformance::run::admission;
    let c = cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // What a run killed in a job-fails-by-policy suite leaves: the policy and binding of a
    // namespace that is gone, and one of a namespace that still exists (another run's).
    let (gone, alive) = ("lbc-gone-namespace", "lbc-alive-namespace");
    make_namespace(alive, serde_json::json!({}), &[]);
    let objects = |ns: &str| {
        let name = admission::name(ns, admission::Kind::NoEntrypoint);
        let labels = serde_json::json!({"app.kubernetes.io/managed-by": "logbackup-conformance", admission::NAMESPACE_LABEL: ns});
        let policy: MutatingAdmissionPolicy = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["jobs"]}]},
                     "reinvocationPolicy": "Never",
                     "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": "[JSONPatch{op: \"test\", path: \"/kind\", value: \"Job\"}]"}}]},
        }))
        .unwrap();
        let binding: MutatingAdmissionPolicyBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"policyName": name, "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}},
        }))
        .unwrap();
        (name, policy, binding)
    };
    let apis = || {
        (
            Api::<MutatingAdmissionPolicy>::all(c.client().unwrap()),
            Api::<MutatingAdmissionPolicyBinding>::all(c.client().unwrap()),
        )
    };
    rt.block_on(async {
        let (policies, bindings) = apis();
        for ns in [gone, alive] {
            let (_, p, b) = objects(ns);
            policies.create(&PostParams::default(), &p).await.unwrap();
            bindings.create(&PostParams::default(), &b).await.unwrap();
        }
    });
    // A suite no other test of this file runs (they share the cluster).
    let (ok, text) = lbc_run(&["suites/max-retry-one.yaml"]);
    assert!(ok, "{text}");
    rt.block_on(async {
        let (policies, bindings) = apis();
        let (gone_name, ..) = objects(gone);
        let (alive_name, ..) = objects(alive);
        assert!(policies.get_opt(&gone_name).await.unwrap().is_none());
        assert!(bindings.get_opt(&gone_name).await.unwrap().is_none());
        // Another namespace's, still there, is left alone.
        assert!(policies.get_opt(&alive_name).await.unwrap().is_some());
        admission::remove(&c.client().unwrap(), alive).await;
    });
    assert!(still_there_then_gone(alive));
}
