//! The command lines of the control plane's processes: etcd, kube-apiserver (and its
//! audit log), kube-controller-manager, and the Go runtime settings they share.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::Path;

use super::AUDIT_LOG;
use super::pki::Pki;

/// How often the Go garbage collector of the control plane's processes runs (`GOGC`): every
/// 400 % of heap growth instead of 100 %. The API server spends about a tenth of its CPU in
/// the collector under a full run; this costs ~90 MiB of peak RSS at boot, and boots faster.
pub(super) const CONTROL_PLANE_GOGC: &str = "400";

/// The Go runtime's settings for the control plane's processes (etcd, kube-apiserver,
/// kube-controller-manager), unless the user set `GOGC` (`user_set`): then theirs holds.
pub fn go_runtime_env(user_set: bool) -> Vec<(OsString, OsString)> {
    if user_set {
        Vec::new()
    } else {
        vec![("GOGC".into(), CONTROL_PLANE_GOGC.into())]
    }
}

/// How often a single-member etcd ticks: its raft heartbeat and the election timeout (5 or 10
/// ticks), which is also about how long it takes to elect itself after a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdTick {
    /// 10 ms, elected within ~0.1 s: the API server's etcd (on the boot's path, and busy).
    Fast,
    /// 25 ms, elected within ~0.15 s: a kernel, idle most of its life. An idle etcd's CPU
    /// follows its tick (≈2.6 % of a core at 10 ms, ≈1.1 % at 40 ms), and a run starts one
    /// kernel per suite.
    Idle,
}

/// A single-member etcd on loopback (the API's, the cluster kernel, each suite's kernel).
pub fn etcd_args(name: &str, dir: &Path, client: u16, peer: u16, tick: EtcdTick) -> Vec<String> {
    etcd_args_on(Ipv4Addr::LOCALHOST, name, dir, client, peer, tick)
}

/// As [`etcd_args`], serving clients on `host` (a real node's Pods reach the host's address
/// on its link, not its loopback).
pub fn etcd_args_on(
    host: Ipv4Addr,
    name: &str,
    dir: &Path,
    client: u16,
    peer: u16,
    tick: EtcdTick,
) -> Vec<String> {
    let (heartbeat, election) = match tick {
        EtcdTick::Fast => (10, 100),
        EtcdTick::Idle => (25, 125),
    };
    vec![
        format!("--name={name}"),
        format!("--data-dir={}", dir.display()),
        format!("--listen-client-urls=http://{host}:{client}"),
        format!("--advertise-client-urls=http://{host}:{client}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-cluster={name}=http://127.0.0.1:{peer}"),
        // Test data: durability buys nothing and costs boot and write latency.
        "--unsafe-no-fsync=true".into(),
        // One member on loopback: elect it at once instead of after a 1 s timeout.
        format!("--heartbeat-interval={heartbeat}"),
        format!("--election-timeout={election}"),
        "--log-level=warn".into(),
    ]
}

pub(super) fn apiserver_args(pki: &Pki, run_dir: &Path, port: u16, etcd: u16) -> Vec<String> {
    let p = |path: &Path| path.display().to_string();
    vec![
        format!("--etcd-servers=http://127.0.0.1:{etcd}"),
        format!("--secure-port={port}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--cert-dir={}", p(&run_dir.join("pki"))),
        format!("--tls-cert-file={}", p(&pki.serving_cert)),
        format!("--tls-private-key-file={}", p(&pki.serving_key)),
        format!("--client-ca-file={}", p(&pki.ca_cert)),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--allow-privileged=true".into(),
        // No serviceaccount controller runs, so the default SA never exists (envtest does this).
        "--disable-admission-plugins=ServiceAccount".into(),
        "--authorization-mode=RBAC".into(),
        format!("--service-account-issuer=https://127.0.0.1:{port}/"),
        format!("--service-account-key-file={}", p(&pki.sa_public)),
        format!("--service-account-signing-key-file={}", p(&pki.sa_key)),
        "--profiling=false".into(),
        // Suites give Jobs a Pod failure policy through a MutatingAdmissionPolicy (beta).
        "--feature-gates=MutatingAdmissionPolicy=true".into(),
        "--runtime-config=admissionregistration.k8s.io/v1beta1=true".into(),
        "--v=1".into(),
    ]
}

/// Writes only, at Metadata level (no bodies): who changed what, when, with what result.
pub(super) const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
";

pub(super) fn audit_args(run_dir: &Path) -> Vec<String> {
    vec![
        format!(
            "--audit-policy-file={}",
            run_dir.join("audit-policy.yaml").display()
        ),
        format!("--audit-log-path={}", run_dir.join(AUDIT_LOG).display()),
        "--audit-log-format=json".into(),
        // Each line is written before the response: read at any time, nothing lost.
        "--audit-log-mode=blocking".into(),
    ]
}

pub(super) fn controller_manager_args(kubeconfig: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        "--controllers=job-controller,garbage-collector-controller,namespace-controller".into(),
        "--leader-elect=false".into(),
        "--secure-port=0".into(),
        "--kube-api-qps=1000".into(),
        "--kube-api-burst=2000".into(),
        // Every suite starts its Jobs at once: sync them side by side (default 5).
        "--concurrent-job-syncs=50".into(),
        "--concurrent-gc-syncs=50".into(),
        "--v=1".into(),
    ]
}
