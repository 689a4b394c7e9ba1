//! The `local` provider: a real control plane started on this machine.
//!
//! etcd (from `etcd-bin-vendored`), kube-apiserver with envtest-style flags, and a minimal
//! kube-controller-manager (job, garbage-collector, namespace controllers), plus a second
//! etcd that plays PD's (the kernel) and a [`node_agent`] that runs Pods as local processes.
//! Readiness is polled (`/health`, `/readyz`), never slept for.
//!
//! This file holds the provider and its start, in order; the command lines are in `args.rs`,
//! spawning and supervising the processes in `processes.rs`, what ready means in
//! `readiness.rs`.

mod args;
pub mod docker_runtime;
pub mod image_map;
pub mod node;
pub mod node_agent;
pub mod pki;
mod processes;
mod readiness;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;

use self::args::{AUDIT_POLICY, apiserver_args, audit_args, controller_manager_args};
pub use self::args::{EtcdTick, etcd_args, etcd_args_on, go_runtime_env};
use self::docker_runtime::DockerRuntime;
use self::image_map::ImageMap;
use self::node_agent::{AgentConfig, NodeAgent};
use self::pki::{Pki, PkiError, kubeconfig_yaml};
use self::processes::{Ctx, claim_port, free_port};
use self::readiness::{Phases, install_crds, wait_apiserver, wait_etcd};
use super::{Capabilities, ClusterError, ClusterGuard, ClusterProvider, RunningCluster};
use crate::programs::k8s::{BinaryLookup, ControlPlaneError, K8sBinaries};
use crate::programs::process::{ProcessError, Supervised, describe_exit};

/// Why the local control plane did not come up.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Binaries(#[from] ControlPlaneError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Node(#[from] node::NodeError),
    #[error(
        "port {port} for {component} is already in use on 127.0.0.1: stop the process that \
         listens there (`ss -ltnp 'sport = :{port}'`) or choose another port (0 picks a free one)"
    )]
    PortInUse { component: &'static str, port: u16 },
    #[error("cannot find a free port on 127.0.0.1: {0}")]
    NoFreePort(#[source] std::io::Error),
    #[error("{component} exited during start-up ({status}); its log {log} ends with:\n{tail}")]
    Exited {
        component: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{component} was not ready after {secs:.0}s ({detail}); see its log {log}")]
    NotReady {
        component: String,
        secs: f64,
        detail: String,
        log: PathBuf,
    },
    #[error("cannot create the run directory under {parent}: {source}")]
    RunDir {
        parent: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// Fixed ports; 0 picks a free one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ports {
    pub apiserver: u16,
    pub etcd: u16,
    pub kernel: u16,
}

/// How to start the local control plane.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub binaries: BinaryLookup,
    pub image_map: ImageMap,
    pub ports: Ports,
    /// Installed before kube-controller-manager starts, so the garbage collector knows them
    /// from its first discovery (it re-syncs only every 30 s).
    pub crds: Vec<CustomResourceDefinition>,
    /// Parent of the run directory (default: the system temp dir).
    pub run_dir_parent: Option<PathBuf>,
    /// Keep the run directory (logs, kubeconfig) after teardown.
    pub keep_run_dir: bool,
    pub boot_timeout: Duration,
    /// Extra variables for every pod the node agent runs.
    pub pod_env: Vec<(String, String)>,
    pub node_name: String,
    /// The run id marking every process (default: `lbc-<pid>-<n>`); tests set it to check
    /// for leftovers.
    pub run_id: Option<String>,
    /// Log every write request (who, verb, object, code, time) to `audit.log` in the run
    /// directory, so a controller's API traffic is counted from outside it.
    pub audit: bool,
    /// Stress mode: the node agent starts each Pod up to twice this late.
    pub pod_start_delay: Duration,
    /// The longest grace a deleted Pod gets before SIGKILL (kubelet's is the Pod's own).
    pub pod_max_grace: Duration,
    /// `--runtime docker`: the images the node agent runs as containers.
    pub docker: Option<DockerRuntime>,
    /// Which node runs the Pods.
    pub node: NodeKind,
}

/// What runs a cluster's Pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NodeKind {
    /// The harness's node agent: Pods as processes (or Docker containers), fast.
    #[default]
    Agent,
    /// A real kubelet with containerd, CNI and kube-proxy (root; see `node`).
    Kubelet,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            binaries: BinaryLookup::from_env(),
            image_map: ImageMap::default(),
            ports: Ports::default(),
            crds: vec![lbc_api::backup_crd()],
            run_dir_parent: None,
            keep_run_dir: false,
            boot_timeout: Duration::from_secs(90),
            pod_env: Vec::new(),
            node_name: "lbc-node".into(),
            run_id: None,
            audit: false,
            pod_start_delay: Duration::ZERO,
            pod_max_grace: Duration::from_secs(2),
            docker: None,
            node: NodeKind::Agent,
        }
    }
}

/// The default provider.
#[derive(Debug, Clone, Default)]
pub struct LocalProvider {
    pub config: LocalConfig,
}

impl ClusterProvider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn start(&self) -> BoxFuture<'_, Result<RunningCluster, ClusterError>> {
        async move { Ok(start(&self.config).await?) }.boxed()
    }
}

/// Everything the local provider started; dropping it stops all of it.
struct LocalGuard {
    agent: Option<NodeAgent>,
    /// A real node, stopped (and its host changes undone) before the control plane.
    node: Option<std::sync::Mutex<node::RealNode>>,
    /// In stop order: controller-manager, apiserver, etcd, kernel.
    processes: std::sync::Mutex<Vec<Supervised>>,
    run_dir: Option<tempfile::TempDir>,
    /// Set under `--runtime docker`: containers of this run are swept at teardown.
    docker_run_id: Option<String>,
}

impl ClusterGuard for LocalGuard {
    fn dead_components(&self) -> Vec<String> {
        let mut procs = match self.processes.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        };
        procs
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
            .chain(self.node.iter().flat_map(|n| match n.lock() {
                Ok(mut n) => n.dead_components(),
                Err(p) => p.into_inner().dead_components(),
            }))
            .collect()
    }
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        // Its drop stops it: the pods' processes go before the control plane.
        drop(self.agent.take());
        if let Some(run_id) = &self.docker_run_id {
            crate::container::sweep(Some(run_id));
        }
        let mut procs = match self.processes.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        // SIGTERM everything at once, then reap each: teardown costs one grace, not four.
        for p in &procs {
            p.signal_group(libc::SIGTERM);
        }
        for mut p in procs.drain(..) {
            p.stop(Duration::from_millis(1500));
        }
        // A real node goes after the control plane, which listens on its link: its slot (and
        // the address) is free for another node only once nothing of this one is bound there.
        drop(self.node.take());
        if let Some(dir) = self.run_dir.take() {
            crate::programs::process::forget_dir(dir.path());
            let _ = dir.close();
        }
    }
}

static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A number unique within this process, for run ids (`lbc-<pid>-<n>`).
pub fn next_run_number() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        RUN_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The user of [`CONTROLLER_KUBECONFIG`].
pub const CONTROLLER_USER: &str = "lbc-controller";
/// A kubeconfig in the run directory with its own identity for the controller under test.
pub const CONTROLLER_KUBECONFIG: &str = "controller-kubeconfig";
/// The audit log in the run directory (with [`LocalConfig::audit`]).
pub const AUDIT_LOG: &str = "audit.log";

fn kube_err(what: &str) -> impl FnOnce(kube::Error) -> LocalError + '_ {
    move |source| LocalError::Kube {
        what: what.to_owned(),
        source,
    }
}

async fn start(config: &LocalConfig) -> Result<RunningCluster, LocalError> {
    let parent = config
        .run_dir_parent
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let run_id = config
        .run_id
        .clone()
        .unwrap_or_else(|| format!("lbc-{}", next_run_number()));
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{run_id}-"))
        .tempdir_in(&parent)
        .map_err(|source| LocalError::RunDir {
            parent: parent.clone(),
            source,
        })?;
    // Resolved: mount tables name real paths, and a real node's teardown matches them.
    let run_dir = std::fs::canonicalize(tmp.path()).unwrap_or_else(|_| tmp.path().to_owned());

    let lookup = config.binaries.clone();
    let bins: K8sBinaries = tokio::task::spawn_blocking(move || lookup.resolve())
        .await
        .map_err(|e| LocalError::Internal(format!("binary lookup task: {e}")))??;
    let etcd_bin = crate::programs::etcd_binary();
    let ports = BootPorts::claim(&config.ports)?;
    // A real node's network comes first: the API server listens on its link.
    let prepared = match config.node {
        NodeKind::Kubelet => Some(node::prepare(&run_dir, &run_id)?),
        NodeKind::Agent => None,
    };
    let host = prepared
        .as_ref()
        .map_or(std::net::Ipv4Addr::LOCALHOST, |p| p.net().host_ip);

    let t0 = Instant::now();
    let phases = Phases::new(t0);
    let mut processes = Vec::new();
    let mut ctx = Ctx {
        run_dir: &run_dir,
        run_id: &run_id,
        processes: &mut processes,
    };
    let result = boot(
        &mut ctx, config, &bins, &etcd_bin, &ports, &phases, prepared,
    )
    .await;

    // On failure `processes` and `tmp` drop here, which stops whatever did start.
    let (kube_config, pods, kubeconfig) = result?;
    // Stop order: controller-manager, apiserver, etcd, kernel (reverse of start).
    processes.reverse();
    let run_dir_guard = if config.keep_run_dir {
        tracing::info!(run_dir = %run_dir.display(), "keeping the run directory");
        let _ = tmp.keep();
        None
    } else {
        // A handle kept in a `static` is never dropped; remove its directory at exit.
        crate::programs::process::remove_dir_at_exit(tmp.path());
        Some(tmp)
    };
    let (agent, real) = match pods {
        Pods::Agent(a) => (Some(a), None),
        Pods::Real(n) => (None, Some(std::sync::Mutex::new(*n))),
    };
    let guard = LocalGuard {
        agent,
        node: real,
        processes: std::sync::Mutex::new(processes),
        run_dir: run_dir_guard,
        docker_run_id: config.docker.is_some().then(|| run_id.clone()),
    };
    let on_node = config.node == NodeKind::Kubelet;
    Ok(RunningCluster {
        provider: "local",
        kubeconfig,
        config: kube_config,
        kernel_endpoints: vec![format!("http://{host}:{}", ports.kernel)],
        capabilities: Capabilities {
            local_processes: !on_node,
            pod_host: on_node.then_some(host),
            containerd: on_node.then(|| node::config::NodePaths::new(&run_dir).containerd_socket()),
        },
        run_dir: Some(run_dir),
        run_id,
        boot: phases.take(),
        guard: Some(Box::new(guard)),
    })
}

/// What runs the Pods.
enum Pods {
    Agent(NodeAgent),
    Real(Box<node::RealNode>),
}

/// The ports of one start, claimed before anything starts.
struct BootPorts {
    api: u16,
    etcd: u16,
    kernel: u16,
    etcd_peer: u16,
    kernel_peer: u16,
}

impl BootPorts {
    /// The configured ports (0: a free one), and free ones for the etcds' peers.
    fn claim(ports: &Ports) -> Result<Self, LocalError> {
        Ok(Self {
            api: claim_port("kube-apiserver", ports.apiserver)?,
            etcd: claim_port("etcd", ports.etcd)?,
            kernel: claim_port("kernel-etcd", ports.kernel)?,
            etcd_peer: free_port()?,
            kernel_peer: free_port()?,
        })
    }
}

/// Start the control plane into `ctx` and wait until it serves: both etcds, the API server,
/// the CRDs, kube-controller-manager, the node (agent or real). Returns the admin's client
/// configuration, what runs the Pods, and the admin kubeconfig's path.
async fn boot(
    ctx: &mut Ctx<'_>,
    config: &LocalConfig,
    bins: &K8sBinaries,
    etcd_bin: &Path,
    ports: &BootPorts,
    phases: &Phases,
    prepared: Option<node::Prepared>,
) -> Result<(kube::Config, Pods, PathBuf), LocalError> {
    let run_dir = ctx.run_dir;
    let timeout = config.boot_timeout;
    let net = prepared.as_ref().map(|p| p.net().clone());
    let host = net
        .as_ref()
        .map_or(std::net::Ipv4Addr::LOCALHOST, |n| n.host_ip);
    // Both etcds first: they boot while the certificates are generated, and the API
    // server (which retries its etcd) is spawned without waiting for them.
    let etcd_idx = ctx.spawn(
        "etcd",
        etcd_bin,
        etcd_args(
            "etcd",
            &run_dir.join("etcd-data"),
            ports.etcd,
            ports.etcd_peer,
            EtcdTick::Fast,
        ),
    )?;
    let kernel_idx = ctx.spawn(
        "kernel-etcd",
        etcd_bin,
        etcd_args_on(
            host,
            "kernel",
            &run_dir.join("kernel-data"),
            ports.kernel,
            ports.kernel_peer,
            EtcdTick::Idle,
        ),
    )?;
    let extra_ips: Vec<_> = net
        .iter()
        .flat_map(|n| [n.host_ip, n.api_service_ip])
        .collect();
    let pki = Pki::generate_for(&run_dir.join("pki"), &extra_ips)?;
    let server = format!("https://{host}:{}", ports.api);
    let (kubeconfig, pod_kubeconfig) = write_identities(&pki, run_dir, &server)?;
    phases.mark("certificates written");
    let mut api_args = apiserver_args(&pki, run_dir, ports.api, ports.etcd);
    if config.audit {
        write(&run_dir.join("audit-policy.yaml"), AUDIT_POLICY)?;
        api_args.extend(audit_args(run_dir));
    }
    let mut cm_args = controller_manager_args(&kubeconfig);
    if let Some(net) = &net {
        let pki_dir = run_dir.join("pki");
        let client = pki.client_files(
            &pki_dir,
            "kube-apiserver-kubelet-client",
            &["system:masters"],
        )?;
        api_args = node::apiserver_args_for_node(api_args, net, (&client.0, &client.1));
        cm_args = node::controller_manager_args_for_node(cm_args, &pki.ca_cert);
    }

    let api_idx = ctx.spawn("kube-apiserver", &bins.apiserver, api_args)?;
    wait_etcd(
        ctx,
        etcd_idx,
        (std::net::Ipv4Addr::LOCALHOST, ports.etcd),
        timeout,
    )
    .await?;
    phases.mark("etcd healthy");
    let kube_config = load_kubeconfig(&kubeconfig).await?;
    let client = Client::try_from(kube_config.clone()).map_err(kube_err("building a client"))?;
    wait_apiserver(ctx, api_idx, &client, phases, timeout).await?;

    // The controller-manager warms up (informers) while the CRDs are installed.
    ctx.spawn("kube-controller-manager", &bins.controller_manager, cm_args)?;
    install_crds(&client, &config.crds, timeout).await?;
    phases.mark("CRDs established");

    let pods = match prepared {
        Some(prepared) => {
            let node = (&pki, server.as_str(), &client, ctx.run_id);
            Pods::Real(Box::new(
                start_real_node(prepared, config, node, phases).await?,
            ))
        }
        None => Pods::Agent(start_node_agent(&client, config, ctx, &pod_kubeconfig, ports).await?),
    };
    phases.mark("node registered");
    wait_etcd(ctx, kernel_idx, (host, ports.kernel), timeout).await?;
    phases.mark("kernel etcd healthy");
    Ok((kube_config, pods, kubeconfig))
}

/// The node's programs (built once, like the control plane's), the images it runs, then the
/// node itself.
async fn start_real_node(
    prepared: node::Prepared,
    config: &LocalConfig,
    (pki, server, client, run_id): (&Pki, &str, &Client, &str),
    phases: &Phases,
) -> Result<node::RealNode, LocalError> {
    let lookup = config.binaries.clone();
    let (binaries, archives) = tokio::task::spawn_blocking(move || {
        let binaries = lookup.resolve_node()?;
        let archives = crate::container::archive::write_all(
            &crate::container::images::Image::NODE,
            &lookup.cache_root,
        )
        .map_err(|e| LocalError::Internal(format!("the node's images: {e}")))?;
        Ok::<_, LocalError>((binaries, archives))
    })
    .await
    .map_err(|e| LocalError::Internal(format!("node programs task: {e}")))??;
    let inputs = node::NodeInputs {
        pki,
        server,
        node_name: &config.node_name,
        binaries: &binaries,
        archives: &archives,
        timeout: config.boot_timeout,
    };
    let mark = |what: &str| phases.mark(what);
    Ok(node::start(prepared, &inputs, client, run_id, &mark).await?)
}

/// One kubeconfig per identity, so the audit log and the logs tell the harness (`admin`),
/// the Pods (`lbc-pod`) and a controller under test apart. Returns the first two's paths.
fn write_identities(
    pki: &Pki,
    run_dir: &Path,
    server: &str,
) -> Result<(PathBuf, PathBuf), LocalError> {
    let identity = |user: &str, file: &str| -> Result<PathBuf, LocalError> {
        let id = pki.client(user, &["system:masters"])?;
        let path = run_dir.join(file);
        write(&path, &kubeconfig_yaml(server, &pki.ca_cert_pem, &id))?;
        Ok(path)
    };
    let kubeconfig = identity("admin", "kubeconfig")?;
    let pod_kubeconfig = identity("lbc-pod", "pod-kubeconfig")?;
    identity(CONTROLLER_USER, CONTROLLER_KUBECONFIG)?;
    Ok((kubeconfig, pod_kubeconfig))
}

/// The client configuration of the admin kubeconfig just written.
async fn load_kubeconfig(kubeconfig: &Path) -> Result<kube::Config, LocalError> {
    kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| LocalError::Kube {
            what: "reading the generated kubeconfig".into(),
            source: kube::Error::InferKubeconfig(e),
        })?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| LocalError::Kube {
        what: "loading the generated kubeconfig".into(),
        source: kube::Error::InferKubeconfig(e),
    })
}

/// Register the node and run its Pods, the kernel's endpoint in their environment.
async fn start_node_agent(
    client: &Client,
    config: &LocalConfig,
    ctx: &Ctx<'_>,
    pod_kubeconfig: &Path,
    ports: &BootPorts,
) -> Result<NodeAgent, LocalError> {
    let mut pod_env = config.pod_env.clone();
    pod_env.push((
        "LBC_KERNEL_ENDPOINTS".into(),
        format!("http://127.0.0.1:{}", ports.kernel),
    ));
    NodeAgent::start(
        client.clone(),
        AgentConfig {
            node_name: config.node_name.clone(),
            image_map: config.image_map.clone(),
            run_dir: ctx.run_dir.to_owned(),
            pod_kubeconfig: pod_kubeconfig.to_owned(),
            apiserver_port: ports.api,
            extra_env: pod_env,
            run_id: ctx.run_id.to_owned(),
            max_grace: config.pod_max_grace,
            start_delay: config.pod_start_delay,
            docker: config.docker.clone(),
        },
    )
    .await
    .map_err(kube_err("registering the node"))
}

fn write(path: &Path, body: &str) -> Result<(), LocalError> {
    std::fs::write(path, body).map_err(|source| {
        LocalError::Pki(PkiError::Write {
            path: path.to_owned(),
            source,
        })
    })
}

#[cfg(test)]
mod tests;
