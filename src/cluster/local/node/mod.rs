//! A real node (`--node kubelet`): containerd, kubelet and kube-proxy in a network namespace
//! of their own, kube-scheduler beside the control plane, and the project's images imported
//! into containerd. What kind boots in a container, here in a namespace: two nodes run side
//! by side (each its own link, Pod and Service ranges, iptables and cgroup root), and
//! nothing stays behind, also after a killed run (see `host.rs`).
//!
//! Order: [`prepare`] before the API server (it listens on the node's link), then [`start`]
//! once the API server serves. The configuration files are plain functions (`config.rs`).

pub mod config;
pub mod host;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};

use self::config::{KubeletInputs, NodeNet, NodePaths};
use self::host::{HostError, Record, Slot};
use super::pki::{Pki, PkiError, kubeconfig_yaml};
use crate::programs::k8s::NodeBinaries;
use crate::programs::process::{ProcessError, Spec, Supervised, describe_exit};

/// Why the real node did not come up.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(
        "{program} is not installed: a real node needs Debian's containerd, runc, \
         containernetworking-plugins, conntrack and iptables \
         (`apt-get install containerd runc containernetworking-plugins conntrack iptables`)"
    )]
    Missing { program: String },
    #[error("{component} exited during start-up ({status}); its log {log} ends with:\n{tail}")]
    Exited {
        component: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{what} within {secs:.0}s; see {log}")]
    NotReady {
        what: String,
        secs: f64,
        log: PathBuf,
    },
    #[error("importing {archive} into the node's containerd failed: {detail}")]
    Import { archive: PathBuf, detail: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NodeError {
    let path = path.to_owned();
    move |source| NodeError::Io { what, path, source }
}

/// A slot and its network, made before the API server starts.
#[derive(Debug)]
pub struct Prepared {
    /// Taken when released.
    slot: Option<Slot>,
    net: NodeNet,
    record: Record,
    paths: NodePaths,
}

impl Prepared {
    pub fn net(&self) -> &NodeNet {
        &self.net
    }
}

/// What a real node needs on this machine and does not find.
pub fn missing_programs() -> Vec<String> {
    let path = std::env::var_os("PATH");
    let mut missing: Vec<String> = [
        "containerd",
        "ctr",
        "runc",
        "iptables",
        "conntrack",
        "nsenter",
        "unshare",
        "ip",
    ]
    .into_iter()
    .filter(|p| crate::programs::k8s::find_in_path(p, path.as_ref()).is_none())
    .map(str::to_owned)
    .collect();
    for plugin in ["bridge", "host-local", "loopback", "portmap"] {
        let p = Path::new(config::CNI_BIN_DIR).join(plugin);
        if !p.exists() {
            missing.push(p.display().to_string());
        }
    }
    missing
}

/// Claim a slot, undo a killed run's node in it, make the namespace and the cgroup root.
///
/// # Errors
/// Not root, a program missing, or the host refuses a change.
pub fn prepare(run_dir: &Path, run_id: &str) -> Result<Prepared, NodeError> {
    if let Some(program) = missing_programs().into_iter().next() {
        return Err(NodeError::Missing { program });
    }
    let slot = Slot::claim()?;
    let paths = NodePaths::new(run_dir);
    let record = Record {
        slot: slot.net.slot,
        run_id: run_id.to_owned(),
        node_dir: paths.dir.clone(),
        cgroup_root: format!("/{}", slot.net.netns),
    };
    slot.record(&record)?;
    let prepared = Prepared {
        net: slot.net.clone(),
        slot: Some(slot),
        record,
        paths,
    };
    // On an error from here `prepared` drops and undoes what was made.
    host::save_sysctls();
    host::create_netns(&prepared.net)?;
    host::create_cgroup_root(&prepared.record.cgroup_root)?;
    Ok(prepared)
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.release(&self.record);
        }
    }
}

/// What the node needs from the control plane.
pub struct NodeInputs<'a> {
    pub pki: &'a Pki,
    /// `https://<host_ip>:<port>`.
    pub server: &'a str,
    pub node_name: &'a str,
    pub binaries: &'a NodeBinaries,
    /// Image archives to import (see `container::archive`).
    pub archives: &'a [PathBuf],
    pub timeout: Duration,
}

/// The running node; dropping it stops its programs and undoes what it made.
pub struct RealNode {
    processes: Vec<Supervised>,
    prepared: Option<Prepared>,
}

impl std::fmt::Debug for RealNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealNode").finish_non_exhaustive()
    }
}

impl RealNode {
    /// Components that have died, each with its exit and log.
    pub fn dead_components(&mut self) -> Vec<String> {
        self.processes
            .iter_mut()
            .filter_map(|p| {
                let status = p.try_exited()?;
                Some(format!(
                    "{} died ({}); log {}",
                    p.name(),
                    describe_exit(status),
                    p.log_path().display()
                ))
            })
            .collect()
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        // kubelet first, so that nothing restarts a container being stopped.
        for p in self.processes.iter().rev() {
            p.signal_group(libc::SIGTERM);
        }
        for mut p in self.processes.drain(..).rev() {
            p.stop(Duration::from_millis(1500));
        }
        drop(self.prepared.take());
    }
}

/// Start containerd, import the images, start kubelet, kube-proxy and kube-scheduler, and
/// wait until the Node is Ready.
///
/// # Errors
/// A component exits or is not ready in time.
pub async fn start(
    prepared: Prepared,
    inputs: &NodeInputs<'_>,
    client: &Client,
    run_id: &str,
    mark: &(dyn Fn(&str) + Sync),
) -> Result<RealNode, NodeError> {
    let (net, paths) = (prepared.net.clone(), prepared.paths.clone());
    let mut node = RealNode {
        processes: Vec::new(),
        prepared: Some(prepared),
    };
    write_files(&net, &paths, inputs)?;
    let mount_ns = hold_mount_namespace(&mut node, &paths, run_id, inputs.timeout).await?;
    let netns = format!("--net=/run/netns/{}", net.netns);
    let in_ns = |program: &Path, args: Vec<String>| -> (PathBuf, Vec<String>) {
        let mut all = vec![
            format!("--mount={mount_ns}"),
            netns.clone(),
            "--".into(),
            program.display().to_string(),
        ];
        all.extend(args);
        (PathBuf::from("nsenter"), all)
    };
    let containerd = PathBuf::from("containerd");
    let (prog, args) = in_ns(
        &containerd,
        vec![format!("--config={}", paths.containerd_config().display())],
    );
    node.spawn("containerd", &prog, args, &paths, run_id)?;
    wait_containerd(&mut node, &paths, inputs.timeout).await?;
    mark("containerd ready");
    for archive in inputs.archives {
        import(&paths, archive).await?;
    }
    mark("images imported");
    let kubelet_kubeconfig = paths.dir.join("kubelet.kubeconfig");
    let (prog, args) = in_ns(
        &inputs.binaries.kubelet,
        config::kubelet_args(&net, &paths, &kubelet_kubeconfig, inputs.node_name),
    );
    node.spawn("kubelet", &prog, args, &paths, run_id)?;
    let (prog, args) = in_ns(&inputs.binaries.kube_proxy, config::kube_proxy_args(&paths));
    node.spawn("kube-proxy", &prog, args, &paths, run_id)?;
    let scheduler_kubeconfig = paths.dir.join("scheduler.kubeconfig");
    node.spawn(
        "kube-scheduler",
        &inputs.binaries.scheduler,
        config::scheduler_args(&scheduler_kubeconfig),
        &paths,
        run_id,
    )?;
    wait_node_ready(&mut node, client, inputs.node_name, inputs.timeout).await?;
    mark("node ready");
    Ok(node)
}

/// The node's own mount namespace, held by a process that only waits: fresh `/var/lib`,
/// `/var/log` and `/run/containerd` (tmpfs) where kubelet and containerd write at fixed
/// paths (device-plugin sockets, `/var/log/containers`, shim sockets and runc state, CNI's
/// cache), so nothing of theirs lands on the machine and nothing of the machine's is
/// touched; every mount they make stays inside and goes when its last process does. The
/// rest of the file system is the machine's (mounts propagate in, not out). Returns the
/// namespace's path.
async fn hold_mount_namespace(
    node: &mut RealNode,
    paths: &NodePaths,
    run_id: &str,
    timeout: Duration,
) -> Result<String, NodeError> {
    let script = "set -e; mkdir -p /run/containerd; \
        for d in /var/lib /var/log /run/containerd; do mount -t tmpfs lbc-node \"$d\"; done; \
        mkdir -p /var/lib/kubelet /var/lib/cni /var/log/containers; \
        echo lbc-node: ready; exec sleep infinity";
    node.spawn(
        "mount-namespace",
        Path::new("unshare"),
        vec![
            "--mount".into(),
            "--propagation".into(),
            "slave".into(),
            "--".into(),
            "/bin/sh".into(),
            "-c".into(),
            script.into(),
        ],
        paths,
        run_id,
    )?;
    let started = Instant::now();
    let log = paths.dir.join("mount-namespace.log");
    loop {
        if let Some(e) = node.exited() {
            return Err(e);
        }
        if std::fs::read_to_string(&log).is_ok_and(|l| l.contains("lbc-node: ready")) {
            let pid = node.processes.last().map_or(0, Supervised::pid);
            return Ok(format!("/proc/{pid}/ns/mnt"));
        }
        if started.elapsed() > timeout {
            return Err(NodeError::NotReady {
                what: "the node's mount namespace".into(),
                secs: started.elapsed().as_secs_f64(),
                log,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl RealNode {
    fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: Vec<String>,
        paths: &NodePaths,
        run_id: &str,
    ) -> Result<(), NodeError> {
        let spec = Spec {
            name: name.into(),
            program: program.to_owned(),
            args: args.into_iter().map(OsString::from).collect(),
            env: Vec::new(),
            clear_env: false,
            cwd: Some(paths.dir.clone()),
            log: paths.dir.join(format!("{name}.log")),
            run_id: run_id.to_owned(),
        };
        self.processes.push(Supervised::spawn(&spec)?);
        Ok(())
    }

    /// The first component that exited, as an error.
    fn exited(&mut self) -> Option<NodeError> {
        self.processes.iter_mut().find_map(|p| {
            let status = p.try_exited()?;
            Some(NodeError::Exited {
                component: p.name().to_owned(),
                status: describe_exit(status),
                log: p.log_path().to_owned(),
                tail: p.log_tail(2000),
            })
        })
    }
}

/// Configuration files and the directories they name.
fn write_files(net: &NodeNet, paths: &NodePaths, inputs: &NodeInputs<'_>) -> Result<(), NodeError> {
    for d in [
        paths.dir.clone(),
        paths.cni_conf_dir(),
        paths.ipam_dir(),
        paths.kubelet_root(),
        paths.pod_logs(),
    ] {
        std::fs::create_dir_all(&d).map_err(io("creating", &d))?;
    }
    let pause = crate::container::images::Image::Pause.tag();
    let write = |path: PathBuf, body: String| -> Result<(), NodeError> {
        std::fs::write(&path, body).map_err(io("writing", &path))
    };
    write(
        paths.containerd_config(),
        config::containerd_toml(paths, &pause),
    )?;
    write(
        paths.cni_conf_dir().join("10-lbc.conflist"),
        config::cni_conflist(net, paths),
    )?;
    let cgroup_root = format!("/{}", net.netns);
    write(
        paths.kubelet_config(),
        config::kubelet_config(&KubeletInputs {
            net,
            paths,
            client_ca: &inputs.pki.ca_cert,
            cgroup_root: &cgroup_root,
            cluster_dns: None,
        }),
    )?;
    write(
        paths.kube_proxy_config(),
        config::kube_proxy_config(
            net,
            &paths.dir.join("kube-proxy.kubeconfig"),
            inputs.node_name,
        ),
    )?;
    // Each component its own identity, so the audit log tells them apart.
    for (file, user) in [
        (
            "kubelet.kubeconfig",
            format!("system:node:{}", inputs.node_name),
        ),
        ("kube-proxy.kubeconfig", "system:kube-proxy".to_owned()),
        ("scheduler.kubeconfig", "system:kube-scheduler".to_owned()),
    ] {
        let id = inputs.pki.client(&user, &["system:masters"])?;
        write(
            paths.dir.join(file),
            kubeconfig_yaml(inputs.server, &inputs.pki.ca_cert_pem, &id),
        )?;
    }
    Ok(())
}

async fn wait_containerd(
    node: &mut RealNode,
    paths: &NodePaths,
    timeout: Duration,
) -> Result<(), NodeError> {
    let started = Instant::now();
    loop {
        if let Some(e) = node.exited() {
            return Err(e);
        }
        if paths.containerd_socket().exists() && ctr(paths, &["version"]).await.is_ok() {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(NodeError::NotReady {
                what: "containerd did not answer".into(),
                secs: started.elapsed().as_secs_f64(),
                log: paths.dir.join("containerd.log"),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `ctr` against the node's containerd, in the CRI's namespace.
async fn ctr(paths: &NodePaths, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(paths.containerd_socket())
        .args(["--namespace", "k8s.io"])
        .args(args)
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

async fn import(paths: &NodePaths, archive: &Path) -> Result<(), NodeError> {
    let path = archive.display().to_string();
    ctr(paths, &["images", "import", "--no-unpack=false", &path])
        .await
        .map(drop)
        .map_err(|detail| NodeError::Import {
            archive: archive.to_owned(),
            detail,
        })
}

async fn wait_node_ready(
    node: &mut RealNode,
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<(), NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let started = Instant::now();
    loop {
        if let Some(e) = node.exited() {
            return Err(e);
        }
        // Ready, and the `not-ready` taint lifted (until then nothing is scheduled).
        let ready = api.get_opt(name).await.ok().flatten().is_some_and(|n| {
            let tainted = n
                .spec
                .and_then(|s| s.taints)
                .unwrap_or_default()
                .iter()
                .any(|t| {
                    t.key == "node.kubernetes.io/not-ready"
                        || t.key == "node.kubernetes.io/unreachable"
                });
            !tainted
                && n.status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            return Ok(());
        }
        if started.elapsed() > timeout {
            let log = node
                .prepared
                .as_ref()
                .map_or_else(PathBuf::new, |p| p.paths.dir.join("kubelet.log"));
            return Err(NodeError::NotReady {
                what: format!("node {name} was not Ready"),
                secs: started.elapsed().as_secs_f64(),
                log,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The API server's flags on a real node: listening on the node's link (Pods reach it
/// through the `kubernetes` Service), the node's Service range, ServiceAccount admission on
/// (Pods get tokens), and a client certificate to reach kubelet with (logs, port-forward).
pub fn apiserver_args_for_node(
    mut args: Vec<String>,
    net: &NodeNet,
    kubelet_client: (&Path, &Path),
) -> Vec<String> {
    args.retain(|a| {
        !a.starts_with("--bind-address=")
            && !a.starts_with("--advertise-address=")
            && !a.starts_with("--service-cluster-ip-range=")
            && a != "--disable-admission-plugins=ServiceAccount"
    });
    args.extend([
        format!("--bind-address={}", net.host_ip),
        format!("--advertise-address={}", net.host_ip),
        format!("--service-cluster-ip-range={}", net.service_cidr),
        format!(
            "--kubelet-client-certificate={}",
            kubelet_client.0.display()
        ),
        format!("--kubelet-client-key={}", kubelet_client.1.display()),
        "--kubelet-preferred-address-types=InternalIP".into(),
    ]);
    args
}

/// kube-controller-manager's controllers on a real node: also those a Pod needs (its
/// ServiceAccount, the cluster's CA in every namespace), Services (EndpointSlices), and the
/// node lifecycle (it lifts the `not-ready` taint kubelet registers the node with).
pub fn controller_manager_args_for_node(mut args: Vec<String>, ca: &Path) -> Vec<String> {
    for a in &mut args {
        if a.starts_with("--controllers=") {
            a.push_str(
                ",serviceaccount-controller,root-ca-certificate-publisher-controller,\
                 endpointslice-controller,node-lifecycle-controller,\
                 deployment-controller,replicaset-controller",
            );
        }
    }
    args.push(format!("--root-ca-file={}", ca.display()));
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_server_moves_to_the_link_and_admits_service_accounts() {
        let net = NodeNet::for_slot(4);
        let args = apiserver_args_for_node(
            vec![
                "--bind-address=127.0.0.1".into(),
                "--disable-admission-plugins=ServiceAccount".into(),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--v=1".into(),
            ],
            &net,
            (Path::new("/c"), Path::new("/k")),
        );
        assert!(args.contains(&"--bind-address=100.100.4.1".to_owned()));
        assert!(args.contains(&"--service-cluster-ip-range=100.102.4.0/24".to_owned()));
        assert!(!args.iter().any(|a| a.contains("ServiceAccount")));
        assert!(args.contains(&"--v=1".to_owned()));
        let cm = controller_manager_args_for_node(
            vec!["--controllers=job-controller".into()],
            Path::new("/ca"),
        );
        assert!(cm[0].contains(",node-lifecycle-controller,"));
        assert!(cm[0].ends_with("deployment-controller,replicaset-controller"));
        assert_eq!(cm[1], "--root-ca-file=/ca");
    }
}
