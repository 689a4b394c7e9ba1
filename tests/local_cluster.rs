//! The local provider end to end: real etcd, kube-apiserver, kube-controller-manager, and
//! Jobs run as local processes by the node agent.
#![cfg(feature = "e2e")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, ResourceExt};
use lbc_api::Backup;
use logbackup_conformance::cluster::local::image_map::ImageMap;
use logbackup_conformance::cluster::local::{LocalConfig, LocalError, LocalProvider, Ports};
use logbackup_conformance::cluster::{ClusterError, ClusterProvider, RunningCluster};
use logbackup_conformance::programs::k8s::BinaryLookup;
use logbackup_conformance::programs::process::processes_with_run_id;
use logbackup_conformance::smoke::{self, SHELL_IMAGE, ensure_namespace, run_job, shell_job};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

fn fixture_crds() -> Vec<CustomResourceDefinition> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/crds");
    let mut crds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        crds.push(
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        );
    }
    crds
}

/// Runs its `command` on the host.
const HOST_IMAGE: &str = "lbc.local/host:1";

fn config() -> LocalConfig {
    let mut image_map = ImageMap::default();
    image_map.insert(SHELL_IMAGE, "/bin/sh");
    image_map.insert_host(HOST_IMAGE);
    LocalConfig {
        image_map,
        crds: fixture_crds(),
        ..LocalConfig::default()
    }
}

fn shared() -> &'static RunningCluster {
    static SHARED: OnceLock<common::Shared> = OnceLock::new();
    common::shared_cluster(&SHARED, config)
}

async fn client() -> Client {
    shared().client().unwrap()
}

async fn fresh_ns(client: &Client, name: &str) -> String {
    ensure_namespace(client, name).await.unwrap();
    name.to_owned()
}

fn sleeping_job(name: &str) -> Job {
    shell_job(name, SHELL_IMAGE, &["-c", "sleep 300"])
}

async fn running_pod_of(client: &Client, ns: &str, job: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let list = pods
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .unwrap();
        if let Some(p) = list
            .items
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        {
            return p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Running pod of Job {ns}/{job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pids of processes started for the pod with this uid.
fn pod_processes(uid: &str) -> Vec<u32> {
    let needle = format!("LBC_POD_UID={uid}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|e| e == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

async fn wait_gone<K>(api: Api<K>, name: &str, what: &str)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let deleted = await_condition(api, name, |o: Option<&K>| o.is_none());
    tokio::time::timeout(T, deleted)
        .await
        .unwrap_or_else(|_| panic!("{what} was not deleted within {T:?}"))
        .unwrap();
}

#[tokio::test]
async fn real_job_controller_ends_jobs_complete_and_failed() {
    let client = client().await;
    let ns = fresh_ns(&client, "jobs").await;
    let ok = run_job(
        &client,
        &ns,
        &shell_job("exits-0", SHELL_IMAGE, &["-c", "exit 0"]),
        T,
    )
    .await
    .unwrap();
    assert_eq!((ok.condition.as_str(), ok.exit_code), ("Complete", Some(0)));
    let bad = run_job(
        &client,
        &ns,
        &shell_job("exits-1", SHELL_IMAGE, &["-c", "exit 1"]),
        T,
    )
    .await
    .unwrap();
    assert_eq!(bad.condition, "Failed");
    assert_eq!(bad.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(bad.exit_code, Some(1));

    // The Job controller counted the pod itself: its tracking finalizer is gone.
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let job = jobs.get("exits-1").await.unwrap();
    let status = job.status.unwrap();
    assert_eq!(status.failed, Some(1));
    let conds: Vec<_> = status
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert!(conds.contains(&"FailureTarget".to_owned()), "{conds:?}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for p in pods
        .list(&ListParams::default().labels("job-name=exits-1"))
        .await
        .unwrap()
    {
        assert!(
            !p.finalizers()
                .iter()
                .any(|f| f == "batch.kubernetes.io/job-tracking"),
            "finalizer left on {}",
            p.name_any()
        );
        assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("lbc-node"));
    }
}

#[tokio::test]
async fn pods_get_args_env_and_a_kubeconfig() {
    let client = client().await;
    let ns = fresh_ns(&client, "env").await;
    let mut job = shell_job(
        "env-check",
        SHELL_IMAGE,
        &[
            "-c",
            r#"test "$LITERAL" = "x y" && test "$POD_NS" = env && test -s "$KUBECONFIG" \
               && test -n "$LBC_KERNEL_ENDPOINTS" && echo "args ok: $0""#,
            "argv0",
        ],
    );
    let spec = job.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    spec.containers[0].env = Some(
        serde_json::from_value(json!([
            {"name": "LITERAL", "value": "x y"},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ]))
        .unwrap(),
    );
    let out = run_job(&client, &ns, &job, T).await.unwrap();
    assert_eq!(out.condition, "Complete", "{out:?}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods
        .list(&ListParams::default().labels("job-name=env-check"))
        .await
        .unwrap()
        .items
        .remove(0);
    let log = logbackup_conformance::cluster::local::node_agent::container_log(
        shared().run_dir.as_ref().unwrap(),
        &ns,
        &pod.name_any(),
        "main",
    )
    .unwrap_or_default();
    assert!(log.contains("args ok: argv0"), "{log:?}");
}

#[tokio::test]
async fn unknown_image_fails_the_pod_with_a_clear_message() {
    let client = client().await;
    let ns = fresh_ns(&client, "images").await;
    let out = run_job(
        &client,
        &ns,
        &shell_job("no-image", "example.com/nope:1", &[]),
        T,
    )
    .await
    .unwrap();
    assert_eq!(out.condition, "Failed");
    let msg = out.pod_message.unwrap_or_default();
    assert!(msg.contains("\"example.com/nope:1\""), "{msg}");
    assert!(msg.contains("not in the node agent's image map"), "{msg}");
    assert!(
        msg.contains(SHELL_IMAGE),
        "the message lists known images: {msg}"
    );
}

#[tokio::test]
async fn a_container_that_cannot_start_fails_its_pod() {
    let client = client().await;
    let ns = fresh_ns(&client, "start-error").await;
    let missing = "/nonexistent/lbc-no-such-program";
    let job = |name: &str, init: bool| -> Job {
        let bad = json!({"name": "bad", "image": HOST_IMAGE, "command": [missing]});
        let good = json!({"name": "main", "image": SHELL_IMAGE, "args": ["-c", "exit 0"]});
        let (init_containers, containers) = if init {
            (json!([bad]), json!([good]))
        } else {
            (json!([]), json!([bad]))
        };
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "initContainers": init_containers, "containers": containers,
            }}},
        }))
        .unwrap()
    };
    // No process runs, so no exit ever comes: the start error itself must end the pod.
    let out = run_job(&client, &ns, &job("main-cannot-start", false), T)
        .await
        .unwrap();
    assert_eq!(out.condition, "Failed");
    let msg = out.pod_message.unwrap_or_default();
    assert!(msg.contains(missing), "{msg}");
    let out = run_job(&client, &ns, &job("init-cannot-start", true), T)
        .await
        .unwrap();
    assert_eq!(out.condition, "Failed");
    assert_eq!(out.exit_code, None, "the main container must not run");
}

#[tokio::test]
async fn deleting_a_pod_kills_its_process_and_fails_the_job() {
    let client = client().await;
    let ns = fresh_ns(&client, "podkill").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    jobs.create(&PostParams::default(), &sleeping_job("sleeper"))
        .await
        .unwrap();
    let pod = running_pod_of(&client, &ns, "sleeper").await;
    let uid = pod.uid().unwrap();
    // sh and the sleep it forked.
    assert!(!pod_processes(&uid).is_empty(), "the pod's processes run");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.delete(&pod.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(pods, &pod.name_any(), "the deleted pod").await;
    assert_eq!(
        pod_processes(&uid),
        Vec::<u32>::new(),
        "the process was killed"
    );
    let failed = await_condition(jobs, "sleeper", |j: Option<&Job>| {
        j.and_then(smoke::terminal_condition)
            .is_some_and(|(t, _)| t == "Failed")
    });
    tokio::time::timeout(T, failed).await.unwrap().unwrap();
}

#[tokio::test]
async fn garbage_collector_deletes_the_job_of_a_deleted_owner() {
    let client = client().await;
    let ns = fresh_ns(&client, "gc").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let mut job = sleeping_job("owned");
    job.metadata.owner_references = Some(
        serde_json::from_value(json!([{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
            "uid": owner.uid().unwrap(), "controller": true, "blockOwnerDeletion": true,
        }]))
        .unwrap(),
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let pod = running_pod_of(&client, &ns, "owned").await;
    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    wait_gone(jobs, "owned", "the owned Job").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_gone(pods, &pod.name_any(), "the Job's pod").await;
    assert_eq!(pod_processes(&pod.uid().unwrap()), Vec::<u32>::new());
}

#[tokio::test]
async fn namespace_deletion_completes_with_running_pods() {
    let client = client().await;
    let ns = fresh_ns(&client, "doomed").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    jobs.create(&PostParams::default(), &sleeping_job("busy"))
        .await
        .unwrap();
    let pod = running_pod_of(&client, &ns, "busy").await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(namespaces, &ns, "the namespace").await;
    assert_eq!(pod_processes(&pod.uid().unwrap()), Vec::<u32>::new());
}

#[tokio::test]
async fn fixture_crd_installs_and_keeps_an_explicit_zero() {
    let client = client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let established = await_condition(
        crds,
        "backups.pingcap.com",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(T, established).await.unwrap().unwrap();

    let ns = fresh_ns(&client, "crd").await;
    let backups: Api<Backup> = Api::namespaced(client.clone(), &ns);
    let zero: Backup = serde_json::from_value(json!({
        "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
        "metadata": {"name": "zero"},
        "spec": {"backupMode": "log", "logSubcommand": "log-start", "br": {"cluster": "basic"},
                 "backoffRetryPolicy": {"maxRetryTimes": 0}},
    }))
    .unwrap();
    let created = backups.create(&PostParams::default(), &zero).await.unwrap();
    let policy = &created.spec.backoff_retry_policy;
    assert_eq!(policy.max_retry_times, Some(0), "explicit 0 survives");
    assert_eq!(
        policy.min_retry_duration.as_deref(),
        Some("300s"),
        "CRD default filled"
    );

    // No status subresource: a full-object update writes the status, and 0 survives it.
    let mut obj = backups.get("zero").await.unwrap();
    obj.status = Some(serde_json::from_value(json!({"phase": "Scheduled"})).unwrap());
    backups
        .replace("zero", &PostParams::default(), &obj)
        .await
        .unwrap();
    let back = backups.get("zero").await.unwrap();
    assert_eq!(back.spec.backoff_retry_policy.max_retry_times, Some(0));
    assert_eq!(
        serde_json::to_value(back.status.unwrap().phase).unwrap(),
        json!("Scheduled")
    );

    let plain: Backup = serde_json::from_value(json!({
        "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
        "metadata": {"name": "defaults"},
        "spec": {"backupMode": "log", "br": {"cluster": "basic"}},
    }))
    .unwrap();
    let created = backups
        .create(&PostParams::default(), &plain)
        .await
        .unwrap();
    let p = created.spec.backoff_retry_policy;
    assert_eq!(
        (
            p.min_retry_duration.as_deref(),
            p.max_retry_times,
            p.retry_timeout.as_deref()
        ),
        (Some("300s"), Some(2), Some("30m"))
    );
}

/// A cluster of this test's own, whose processes carry `run_id`.
async fn own_cluster(run_id: &str, pod_max_grace: Duration) -> RunningCluster {
    common::require(&[common::Need::ControlPlane, common::Need::Resources]);
    LocalProvider {
        config: LocalConfig {
            run_id: Some(run_id.to_owned()),
            pod_max_grace,
            ..config()
        },
    }
    .start()
    .await
    .unwrap()
}

#[tokio::test]
async fn teardown_leaves_no_process_and_no_run_dir() {
    let run_id = format!("teardown-{}", std::process::id());
    let cluster = own_cluster(&run_id, Duration::from_secs(2)).await;
    let client = cluster.client().unwrap();
    ensure_namespace(&client, "t").await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "t");
    jobs.create(&PostParams::default(), &sleeping_job("left-running"))
        .await
        .unwrap();
    running_pod_of(&client, "t", "left-running").await;
    let procs = processes_with_run_id(&run_id);
    // etcd, kernel etcd, apiserver, controller-manager, and the pod.
    assert!(procs.len() >= 5, "{procs:?}");
    let run_dir: PathBuf = cluster.run_dir.clone().unwrap();
    assert!(cluster.dead_components().is_empty());
    drop(cluster);
    assert_eq!(
        processes_with_run_id(&run_id),
        Vec::<u32>::new(),
        "leftover processes"
    );
    assert!(
        !run_dir.exists(),
        "run dir {} left behind",
        run_dir.display()
    );
}

#[tokio::test]
async fn teardown_waits_out_a_pod_being_deleted() {
    let run_id = format!("teardown-deleting-{}", std::process::id());
    // A grace longer than a teardown without a kill under way takes (a pod still in the
    // table goes in 0.5 s, the control plane in 1.5 s).
    let grace = Duration::from_secs(6);
    let cluster = own_cluster(&run_id, grace).await;
    let client = cluster.client().unwrap();
    ensure_namespace(&client, "t").await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "t");
    // Notes SIGTERM and goes on (its sleeps die; the loop starts new ones), so the agent's
    // kill takes its whole grace, and the mark says the kill is under way.
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("terminated");
    let script = format!(
        "trap 'touch {}' TERM; while :; do sleep 0.1; done",
        mark.display()
    );
    let deaf = shell_job("deaf", SHELL_IMAGE, &["-c", &script]);
    jobs.create(&PostParams::default(), &deaf).await.unwrap();
    let pod = running_pod_of(&client, "t", "deaf").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "t");
    pods.delete(&pod.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while !mark.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pod was never told to stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let teardown = std::time::Instant::now();
    drop(cluster);
    // Only a teardown that waited out the kill lasts most of the grace.
    assert!(
        teardown.elapsed() >= grace - Duration::from_secs(2),
        "the teardown did not wait for the kill under way: {:?}",
        teardown.elapsed()
    );
    assert_eq!(
        processes_with_run_id(&run_id),
        Vec::<u32>::new(),
        "the deleted pod's processes outlived the teardown"
    );
}

fn fake_bins(dir: &Path, apiserver_script: &str) {
    use std::os::unix::fs::PermissionsExt;
    for (name, body) in [
        ("kube-apiserver", apiserver_script),
        ("kube-controller-manager", "#!/bin/sh\nsleep 300\n"),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[tokio::test]
async fn a_component_dying_at_startup_is_named_and_the_rest_is_stopped() {
    let assets = tempfile::tempdir().unwrap();
    fake_bins(
        assets.path(),
        "#!/bin/sh\necho 'F1129 fatal: cannot load config' >&2\nexit 3\n",
    );
    let run_id = format!("dies-{}", std::process::id());
    let err = LocalProvider {
        config: LocalConfig {
            binaries: BinaryLookup {
                kubebuilder_assets: Some(assets.path().to_owned()),
                ..BinaryLookup::from_env()
            },
            run_id: Some(run_id.clone()),
            ..config()
        },
    }
    .start()
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("kube-apiserver exited during start-up (exit code 3)"),
        "{msg}"
    );
    assert!(msg.contains("cannot load config"), "{msg}");
    // etcd and the kernel etcd had started; they must be gone.
    assert_eq!(processes_with_run_id(&run_id), Vec::<u32>::new());
}

#[tokio::test]
async fn a_port_in_use_is_named_with_the_fix() {
    common::require(&[common::Need::ControlPlane, common::Need::Resources]);
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let err = LocalProvider {
        config: LocalConfig {
            ports: Ports {
                kernel: port,
                ..Ports::default()
            },
            ..config()
        },
    }
    .start()
    .await
    .unwrap_err();
    assert!(
        matches!(err, ClusterError::Local(LocalError::PortInUse { component: "kernel-etcd", port: p }) if p == port),
        "{err}"
    );
    assert!(err.to_string().contains("choose another port"));
}

#[test]
fn smoke_command_runs_the_smoke_jobs() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbc"))
        .arg("smoke")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lbc run failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("smoke-fails      Failed    BackoffLimitExceeded"),
        "{stdout}"
    );
    assert!(stdout.contains("smoke: ok"), "{stdout}");
}

#[test]
fn bad_image_map_flag_is_rejected_before_anything_starts() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbc"))
        .args(["smoke", "--image-map", "pingcap/br=/nonexistent/fake-br"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("/nonexistent/fake-br is not an executable file"),
        "{stderr}"
    );
}

#[test]
fn retry_benchmark_runs_and_reports() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbc"))
        .args([
            "bench",
            "retry",
            "--backups",
            "3",
            "--min-retry",
            "1s",
            "--timeout",
            "120",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("backups: 3 (3 completed"), "{stdout}");
    assert!(stdout.contains("over 3 retries"), "{stdout}");
}

#[test]
fn run_command_runs_suites_and_writes_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbc"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--selector", "LBR-7", "--report-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Every suite naming LBR-7 ran (retry-disabled and metrics-on-every-path today).
    assert!(stdout.contains("LBR-7    pass       "), "{stdout}");
    assert!(stdout.contains("retry-disabled"), "{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(junit.contains("retry-disabled"), "{junit}");
    assert!(dir.path().join("report.json").is_file());
}

#[test]
fn run_command_fails_and_names_the_failure_for_a_broken_controller() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbc"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "--selector",
            "restart-mid-retry",
            "--controller-flag=--retry-strategy=workqueue",
            "--report-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("LBR-8    FAIL"), "{stdout}");
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");
    assert!(
        dir.path().join("restart-mid-retry/trace.yaml").is_file(),
        "no debug bundle"
    );
}

/// A controller made flaky on purpose: its first two starts (the first attempt's start and
/// its restart) lose the retry state on restart, later ones keep it. With
/// `--rerun-failed`, `restart-mid-retry` fails once, passes again and is reported flaky,
/// the run exits 0, and the gate finds no regression against a clean run of the same build.
#[test]
fn a_flaky_suite_is_reported_flaky_and_gates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Its first two starts (restart-mid-retry's first attempt) forget the retry state.
    let script = wrapper(dir.path(), "flaky.sh", Some(2));
    let cmd = format!(
        "{} --kubeconfig={{kubeconfig}} --namespace={{namespace}} --kernel-endpoints={{kernel}} \
         --job-image={{job_image}} --metrics-addr={{metrics_addr}} --kernel-sync-period=1s",
        script.display()
    );
    let run = |report: &str, extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbc"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "run",
                "suites/restart-mid-retry.yaml",
                "--controller-cmd",
                &cmd,
            ])
            .args(extra)
            .arg("--report-dir")
            .arg(dir.path().join(report))
            .output()
            .unwrap();
        said(&out)
    };
    let (ok, text) = run("flaky", &["--rerun-failed", "2"]);
    assert!(ok, "{text}");
    assert!(text.contains("0 passed, 0 failed, 1 flaky"), "{text}");
    assert!(
        text.contains("restart-mid-retry FLAKY (failed, then passed on attempt 2)"),
        "{text}"
    );
    // The same build again, now steady: flaky → pass is no regression, nor the reverse.
    let (ok, text) = run("steady", &[]);
    assert!(ok, "{text}");
    for (a, b) in [("flaky", "steady"), ("steady", "flaky")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbc"))
            .args(["compare"])
            .arg(dir.path().join(a).join("report.json"))
            .arg(dir.path().join(b).join("report.json"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("flaky"), "{text}");
    }
}

/// A wrapper around the reference controller: `workqueue` forgets the retry state on a
/// restart (a planted bug) for the first `bad_starts` starts, every start when `None`.
fn wrapper(dir: &std::path::Path, name: &str, bad_starts: Option<u32>) -> std::path::PathBuf {
    let script = dir.join(name);
    let choose = match bad_starts {
        Some(k) => format!(
            "n=$(cat {d}/{name}.starts 2>/dev/null || echo 0); n=$((n+1)); echo $n > {d}/{name}.starts\n\
             if [ $n -le {k} ]; then S=workqueue; else S=persisted; fi\n",
            d = dir.display()
        ),
        None => "S=workqueue\n".to_owned(),
    };
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{choose}exec {bin} \"$@\" --retry-strategy=$S\n",
            bin = common::reference_controller().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

/// `lbc run` with two named instances of the reference, `old` and `new`, given the `bin` of
/// each (the workspace's build when `None`): (exit success, stdout + stderr).
fn gate(
    dir: &std::path::Path,
    old: Option<&std::path::Path>,
    new: Option<&std::path::Path>,
) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lbc"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "run",
        "suites/restart-mid-retry.yaml",
        "suites/job-failure-retry-success.yaml",
        "--target",
        "old=reference",
        "--target",
        "new=reference",
        "--report",
        "json",
    ]);
    for (label, bin) in [("old", old), ("new", new)] {
        if let Some(b) = bin {
            cmd.arg("--set").arg(format!("{label}:bin={}", b.display()));
        }
    }
    let out = cmd
        .arg("--report-dir")
        .arg(dir.join(format!("gate-{}", rand_suffix())))
        .output()
        .unwrap();
    said(&out)
}

/// A command's exit success and what it printed (stdout, then stderr).
fn said(out: &std::process::Output) -> (bool, String) {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn the_gate_names_the_checks_a_planted_bug_broke_and_only_a_regression_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let buggy = wrapper(dir.path(), "buggy.sh", None);
    let (ok, text) = gate(dir.path(), None, Some(&buggy));
    assert!(!ok, "{text}");
    assert!(text.contains("gate: new against old"), "{text}");
    let broke = text
        .lines()
        .skip_while(|l| !l.starts_with("  broke"))
        .take_while(|l| l.starts_with("    ") || l.starts_with("  broke"))
        .collect::<Vec<_>>()
        .join("\n");
    // The restart suite's record numbering and its snapshot broke; the other suite did not.
    assert!(
        broke.contains("LBR-2") && broke.contains("retryNum counts from 1"),
        "{text}"
    );
    assert!(broke.contains("restart-mid-retry"), "{text}");
    assert!(!broke.contains("job-failure-retry-success"), "{text}");
    assert!(text.contains("verdict: REGRESSION"), "{text}");
    assert!(text.contains("the gate found a regression"), "{text}");
    // The other way round the same checks are fixed, and fixing gates nothing.
    let (ok, text) = gate(dir.path(), Some(&buggy), None);
    assert!(ok, "{text}");
    assert!(
        text.contains("  fixed (") && text.contains("verdict: no regression"),
        "{text}"
    );
}

#[test]
fn a_build_gated_against_itself_with_a_flaky_suite_shows_no_regression() {
    let dir = tempfile::tempdir().unwrap();
    // Its first three starts forget the retry state: the other suite's one (it never
    // restarts, so it does not care) and both of restart-mid-retry's first attempt.
    let flaky = wrapper(dir.path(), "flaky.sh", Some(3));
    let (ok, text) = gate(dir.path(), None, Some(&flaky));
    assert!(ok, "{text}");
    assert!(
        text.contains("flaky on either side, not compared: restart-mid-retry"),
        "{text}"
    );
    assert!(text.contains("verdict: no regression"), "{text}");
}
