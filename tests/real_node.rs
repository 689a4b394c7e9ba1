//! A real node (`--node kubelet`): kubelet, containerd, CNI and kube-proxy in a network
//! namespace, Pods from the project's images; everything it made is gone after teardown and
//! after a killed run; the suites pass on it. Needs root and Debian's containerd, runc,
//! containernetworking-plugins, conntrack and iptables (`lbc doctor`).
#![cfg(feature = "node")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use logbackup_conformance::cluster::local::{LocalConfig, LocalProvider, NodeKind};
use logbackup_conformance::cluster::{ClusterProvider, RunningCluster};
use logbackup_conformance::container::images::{Image, NO_ENTRYPOINT};
use logbackup_conformance::programs::process::processes_with_run_id;
use logbackup_conformance::smoke::{ensure_namespace, run_job, shell_job};

use common::Need;

/// One node at a time: the machine-wide sysctls are restored when the last node goes, and
/// each test checks them.
static SERIAL: Mutex<()> = Mutex::new(());

/// kubelet's `setupKernelTunables`: all six are the machine's.
const SYSCTLS: [&str; 6] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

/// Where kubelet, containerd and CNI write at fixed paths unless kept in the node's own
/// mount namespace: what they hold, before and after.
fn fixed_paths() -> Vec<String> {
    let mut out = Vec::new();
    for dir in [
        "/var/lib/kubelet",
        "/var/lib/cni",
        "/var/log/containers",
        "/var/log/pods",
        "/run/containerd/s",
        "/run/containerd/runc",
    ] {
        let mut stack = vec![PathBuf::from(dir)];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                out.push(e.path().display().to_string());
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

fn sysctls() -> Vec<String> {
    SYSCTLS
        .iter()
        .map(|k| std::fs::read_to_string(Path::new("/proc/sys").join(k)).unwrap())
        .collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start(run_id: &str) -> RunningCluster {
    common::require(&[Need::ControlPlane, Need::RealNode, Need::Resources]);
    let config = LocalConfig {
        node: NodeKind::Kubelet,
        run_id: Some(run_id.to_owned()),
        ..LocalConfig::default()
    };
    rt().block_on(LocalProvider { config }.start())
        .unwrap_or_else(|e| panic!("the real node did not boot: {e}"))
}

/// What a node with this slot and run directory could leave behind.
struct Traces {
    slot: u8,
    run_dir: PathBuf,
    run_id: String,
}

impl Traces {
    fn of(c: &RunningCluster) -> Self {
        let host = c
            .capabilities
            .pod_host
            .expect("a real node says where Pods reach the host");
        Self {
            slot: host.octets()[2],
            run_dir: c.run_dir.clone().unwrap(),
            run_id: c.run_id.clone(),
        }
    }

    /// Each thing still there, named.
    fn left(&self) -> Vec<String> {
        let mut left = Vec::new();
        let netns = format!("/run/netns/lbc-node-{}", self.slot);
        if Path::new(&netns).exists() {
            left.push(netns);
        }
        let link = format!("/sys/class/net/lbcn{}", self.slot);
        if Path::new(&link).exists() {
            left.push(link);
        }
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let cgroup = hierarchy.path().join(format!("lbc-node-{}", self.slot));
            if cgroup.exists() {
                left.push(cgroup.display().to_string());
            }
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.run_dir.display().to_string();
        left.extend(
            mountinfo
                .lines()
                .filter(|l| l.contains(&dir))
                .map(|l| format!("mount {l}")),
        );
        left.extend(
            processes_with_run_id(&self.run_id)
                .into_iter()
                .map(|p| format!("process {p}: {}", comm(p))),
        );
        if Path::new(&format!("/run/lbc-nodes/{}.json", self.slot)).exists() {
            left.push(format!("record of slot {}", self.slot));
        }
        left
    }
}

/// A Job running `script` in the BR stand-in's shell.
fn br_shell(name: &str, script: &str) -> k8s_openapi::api::batch::v1::Job {
    let mut job = shell_job(name, &Image::Br.tag(), &["-c", script]);
    job.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .command = Some(vec!["/bin/sh".into()]);
    job
}

/// The slot whose record names `run_id`.
fn slot_of(run_id: &str) -> u8 {
    (0..64)
        .find(|s| {
            std::fs::read_to_string(format!("/run/lbc-nodes/{s}.json"))
                .is_ok_and(|r| r.contains(&format!("\"{run_id}\"")))
        })
        .expect("a record of the run's node")
}

/// Processes in a slot's cgroups (its containers).
fn node_processes(slot: u8) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(format!(
        "/sys/fs/cgroup/pids/lbc-node-{slot}"
    ))];
    while let Some(d) = stack.pop() {
        if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    out
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn a_real_node_runs_pods_from_the_images_and_leaves_nothing_behind() {
    let _one = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = sysctls();
    let files = fixed_paths();
    let c = start(&format!("lbc-node-test-{}", std::process::id()));
    let traces = Traces::of(&c);
    assert!(
        !traces.left().is_empty(),
        "a running node shows up in the checks"
    );
    let rt = rt();
    rt.block_on(async {
        let client = c.client().unwrap();
        ensure_namespace(&client, "real-node").await.unwrap();
        // The BR stand-in's shell; the Pod has its ServiceAccount token (admission, the
        // token request, the CA published in the namespace all work).
        let ok = br_shell(
            "shell",
            "test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo ok",
        );
        let out = run_job(&client, "real-node", &ok, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(out.condition, "Complete", "{out:?}");
        // An image without its program: the container cannot start, as on any kubelet.
        let bad = shell_job("no-entrypoint", NO_ENTRYPOINT, &[]);
        let out = run_job(&client, "real-node", &bad, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(out.condition, "Failed", "{out:?}");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "real-node");
        let list = pods
            .list(&ListParams::default().labels("job-name=no-entrypoint"))
            .await
            .unwrap();
        let state = list.items[0]
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0]
            .state
            .clone()
            .unwrap();
        let term = state.terminated.expect("terminated");
        // `lbc image load` into a containerd by its socket (the node's own, here).
        let socket = c.run_dir.as_ref().unwrap().join("node/cd.sock");
        let out = Command::new(env!("CARGO_BIN_EXE_lbc"))
            .args(["image", "load", "etcd", "--containerd"])
            .arg(&socket)
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("etcd"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            (term.reason.as_deref(), term.exit_code),
            (Some("StartError"), 128)
        );
    });
    drop(c);
    assert_eq!(traces.left(), Vec::<String>::new());
    assert!(!traces.run_dir.exists(), "the run directory is removed");
    assert_eq!(sysctls(), before, "kubelet's sysctls are put back");
    assert_eq!(
        fixed_paths(),
        files,
        "nothing written at kubelet's and containerd's fixed paths"
    );
}

#[test]
fn a_killed_runs_node_is_undone_by_the_next_start() {
    let _one = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    common::require(&[Need::ControlPlane, Need::RealNode, Need::Resources]);
    let before = sysctls();
    let mut up = Command::new(env!("CARGO_BIN_EXE_lbc"))
        .args(["up", "--node", "kubelet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut kubeconfig = None;
    let mut run_dir = None;
    for line in BufReader::new(up.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(p) = line.strip_prefix("kubeconfig:") {
            kubeconfig = Some(PathBuf::from(p.trim()));
        }
        if let Some(p) = line.strip_prefix("run dir:") {
            run_dir = Some(PathBuf::from(p.trim()));
        }
        if line.starts_with("up;") {
            break;
        }
    }
    let (kubeconfig, run_dir) = (kubeconfig.unwrap(), run_dir.unwrap());
    let run_id = format!("lbc-{}-0", up.id());
    // A Pod that outlives its harness: its container and shim are what a kill leaves.
    let rt = rt();
    rt.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        ensure_namespace(&client, "left").await.unwrap();
        let job = br_shell("sleeper", "sleep 600");
        let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), "left");
        jobs.create(&Default::default(), &job).await.unwrap();
        let pods: Api<Pod> = Api::namespaced(client, "left");
        for _ in 0..300 {
            let list = pods.list(&ListParams::default()).await.unwrap();
            let phase = list
                .items
                .first()
                .and_then(|p| p.status.as_ref()?.phase.clone());
            if phase.as_deref() == Some("Running") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the sleeper never ran");
    });
    let slot = slot_of(&run_id);
    let sleeper = node_processes(slot)
        .into_iter()
        .find(|p| comm(*p) == "sleep")
        .expect("the sleeper's container process, in the node's cgroups");
    // SAFETY: plain syscall on our child.
    unsafe {
        libc::kill(up.id() as i32, libc::SIGKILL);
    }
    let _ = up.wait();
    std::thread::sleep(Duration::from_millis(500));
    let traces = Traces {
        slot,
        run_dir: run_dir.clone(),
        run_id,
    };
    let left = traces.left();
    assert!(
        left.iter().any(|l| l.contains("containerd-shim")) && comm(sleeper) == "sleep",
        "a killed run leaves its shims and containers: {left:?}"
    );
    // The next start undoes it: the same slot comes back clean.
    let c = start(&format!("lbc-node-test-next-{}", std::process::id()));
    assert_eq!(Traces::of(&c).slot, slot);
    assert_ne!(
        comm(sleeper),
        "sleep",
        "the killed run's container is killed"
    );
    let left: Vec<String> = traces
        .left()
        .into_iter()
        // The slot's namespace, link, cgroup and record are the new node's now.
        .filter(|l| {
            !l.starts_with("/run/netns") && !l.starts_with("/sys/") && !l.starts_with("record")
        })
        .collect();
    assert_eq!(
        left,
        Vec::<String>::new(),
        "the killed run's node is undone"
    );
    assert!(!run_dir.exists(), "the killed run's directory is removed");
    let next = Traces::of(&c);
    drop(c);
    assert_eq!(next.left(), Vec::<String>::new());
    assert_eq!(sysctls(), before);
}

#[test]
fn the_suites_pass_on_a_real_node() {
    let _one = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    common::require(&[Need::ControlPlane, Need::RealNode, Need::Resources]);
    let reports = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lbc"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "--node",
            "kubelet",
            "--report",
            "json",
            "--report-dir",
        ])
        .arg(reports.path())
        .args(["--target", "reference", "--target", "reference-operator"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for target in ["reference", "reference-operator"] {
        let report = std::fs::read_to_string(reports.path().join(target).join("report.json"))
            .unwrap_or_else(|e| panic!("{target}'s report: {e}\n{stdout}"));
        let report: serde_json::Value = serde_json::from_str(&report).unwrap();
        let totals = &report["totals"];
        assert_eq!(totals["failed"], 0, "{target}: {totals}");
        assert!(
            totals["passed"].as_u64().unwrap() >= 51,
            "{target}: {totals}"
        );
    }
}

/// The kernel suites whose stories read and write the kernel the most.
const KERNEL_SUITES: [&str; 5] = [
    "suites/exact-task-keys.yaml",
    "suites/kernel-recovery.yaml",
    "suites/stop-fails-kernel-recovers.yaml",
    "suites/job-failure-retry-success.yaml",
    "suites/metrics-counters.yaml",
];

/// `lbc run ARGS… --report json --report-dir DIR` from the workspace; the totals of each
/// target's report.
fn run_suites(args: &[&str], targets: &[&str]) -> Vec<serde_json::Value> {
    let reports = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lbc"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("run")
        .args(args)
        .args(["--report", "json", "--report-dir"])
        .arg(reports.path());
    for t in targets {
        cmd.args(["--target", t]);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    targets
        .iter()
        .map(|t| {
            let dir = if targets.len() > 1 {
                reports.path().join(t)
            } else {
                reports.path().to_owned()
            };
            let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
            let report: serde_json::Value = serde_json::from_str(&text).unwrap();
            report["totals"].clone()
        })
        .collect()
}

#[test]
fn the_kernel_in_the_cluster_serves_both_targets() {
    let _one = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    common::require(&[Need::ControlPlane, Need::RealNode, Need::Resources]);
    let mut args = vec!["--node", "kubelet", "--kernel", "in-cluster"];
    args.extend(KERNEL_SUITES);
    for totals in run_suites(&args, &["reference", "reference-operator"]) {
        assert_eq!(totals["failed"], 0, "{totals}");
        assert_eq!(totals["passed"], KERNEL_SUITES.len(), "{totals}");
    }
}

/// `lbc run` on an existing cluster by its kubeconfig alone, each suite's kernel a Pod.
fn on_existing(kubeconfig: &str) -> Vec<&str> {
    vec![
        "--provider",
        "kubeconfig",
        "--kubeconfig",
        kubeconfig,
        "--kernel",
        "in-cluster",
    ]
}

#[test]
fn an_existing_cluster_with_a_real_node_needs_nothing_prepared() {
    let _one = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = sysctls();
    let c = start(&format!("lbc-node-test-kubeconfig-{}", std::process::id()));
    let kubeconfig = c.kubeconfig.display().to_string();
    // Only the kubeconfig: the images are the node's, the kernel is the suite's Pod.
    let mut args = on_existing(&kubeconfig);
    args.extend(KERNEL_SUITES);
    let totals = run_suites(&args, &["reference"]);
    assert_eq!(totals[0]["failed"], 0, "{}", totals[0]);
    let traces = Traces::of(&c);
    drop(c);
    assert_eq!(traces.left(), Vec::<String>::new());
    assert_eq!(sysctls(), before);
}

#[test]
fn the_suites_pass_with_the_controller_installed_as_a_deployment() {
    let _one = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    common::require(&[Need::ControlPlane, Need::RealNode, Need::Resources]);
    // Every suite, both targets, each controller a Deployment made from the workspace's
    // build: crash and restart faults delete its Pod.
    for totals in run_suites(
        &["--node", "kubelet", "--install", "deployment"],
        &["reference", "reference-operator"],
    ) {
        assert_eq!(totals["failed"], 0, "{totals}");
        assert!(totals["passed"].as_u64().unwrap() >= 51, "{totals}");
    }
}

#[test]
fn a_deployment_on_an_existing_cluster_runs_from_the_image_build_target_loaded() {
    let _one = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let c = start(&format!("lbc-node-test-deploy-{}", std::process::id()));
    let kubeconfig = c.kubeconfig.display().to_string();
    let socket = c.capabilities.containerd.clone().unwrap();
    let pod_host = c.capabilities.pod_host.unwrap().to_string();
    let controller = logbackup_conformance::programs::workspace::locate(
        logbackup_conformance::programs::workspace::Program::ReferenceController,
    )
    .unwrap();
    let images = tempfile::tempdir().unwrap();
    let build = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lbc"))
            .args(["image", "build-target", "--bin"])
            .arg(&controller)
            .args(["--strip", "--dir"])
            .arg(images.path())
            .args(extra)
            .output()
            .unwrap()
    };
    let out = build(&["--containerd", socket.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tag = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(tag.starts_with("lbc.local/lbc-controller:"), "{tag}");
    // The same inputs, the same image.
    assert_eq!(String::from_utf8_lossy(&build(&[]).stdout).trim(), tag);
    let target = images.path().join("reference-image.yaml");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("targets/reference.yaml"),
    )
    .unwrap()
    .replace(
        "deployment:\n",
        &format!("install: deployment\ndeployment:\n  image: {tag}\n"),
    );
    std::fs::write(&target, text).unwrap();
    let mut args = on_existing(&kubeconfig);
    args.extend(["--pod-host", &pod_host]);
    args.extend(KERNEL_SUITES);
    args.push("suites/restart-mid-retry.yaml");
    let totals = run_suites(&args, &[target.to_str().unwrap()]);
    assert_eq!(totals[0]["failed"], 0, "{}", totals[0]);
    assert_eq!(
        totals[0]["passed"],
        KERNEL_SUITES.len() + 1,
        "{}",
        totals[0]
    );
    let traces = Traces::of(&c);
    drop(c);
    assert_eq!(traces.left(), Vec::<String>::new());
}
