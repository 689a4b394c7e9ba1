//! The `local` provider: a real control plane started on this machine.
//!
//! etcd (from `etcd-bin-vendored`), kube-apiserver with envtest-style flags, and a minimal
//! kube-controller-manager (job, garbage-collector, namespace controllers), plus a second
//! etcd that plays PD's (the kernel) and a [`node_agent`] that runs Pods as local processes.
//! Readiness is polled (`/health`, `/readyz`), never slept for.

pub mod docker_runtime;
pub mod image_map;
pub mod node_agent;
pub mod pki;

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client};

use self::docker_runtime::DockerRuntime;
use self::image_map::ImageMap;
use self::node_agent::{AgentConfig, NodeAgent};
use self::pki::{Pki, PkiError, kubeconfig_yaml};
use super::{Capabilities, ClusterError, ClusterGuard, ClusterProvider, RunningCluster};
use crate::programs::k8s::{BinaryLookup, ControlPlaneError, K8sBinaries};
use crate::programs::process::{ProcessError, Spec, Supervised, describe_exit};
use lbc_api::kernel::KernelClient;

/// Why the local control plane did not come up.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Binaries(#[from] ControlPlaneError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Process(#[from] ProcessError),
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

fn free_port() -> Result<u16, LocalError> {
    crate::programs::process::free_loopback_port().map_err(LocalError::NoFreePort)
}

/// `wanted` if it is free (or a free port for 0).
fn claim_port(component: &'static str, wanted: u16) -> Result<u16, LocalError> {
    if wanted == 0 {
        return free_port();
    }
    match TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, wanted)) {
        Ok(_) => Ok(wanted),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(LocalError::PortInUse {
            component,
            port: wanted,
        }),
        Err(e) => Err(LocalError::NoFreePort(e)),
    }
}

struct Ctx<'a> {
    run_dir: &'a Path,
    run_id: &'a str,
    processes: &'a mut Vec<Supervised>,
}

impl Ctx<'_> {
    fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: Vec<String>,
    ) -> Result<usize, LocalError> {
        let spec = Spec {
            name: name.into(),
            program: program.to_owned(),
            args: args.into_iter().map(OsString::from).collect(),
            env: go_runtime_env(std::env::var_os("GOGC").is_some()),
            clear_env: false,
            cwd: Some(self.run_dir.to_owned()),
            log: self.run_dir.join(format!("{name}.log")),
            run_id: self.run_id.to_owned(),
        };
        self.processes.push(Supervised::spawn(&spec)?);
        Ok(self.processes.len() - 1)
    }

    /// Poll `probe` until it succeeds; fail early if the process exits.
    async fn wait_ready<F, Fut>(
        &mut self,
        idx: usize,
        timeout: Duration,
        mut probe: F,
    ) -> Result<(), LocalError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let started = Instant::now();
        loop {
            let p = &mut self.processes[idx];
            if let Some(status) = p.try_exited() {
                let tail = p.log_tail(2000);
                let component = p.name().to_owned();
                if let Some(port) = address_in_use(&tail) {
                    return Err(LocalError::PortInUse {
                        component: leak_name(&component),
                        port,
                    });
                }
                return Err(LocalError::Exited {
                    component,
                    status: describe_exit(status),
                    log: p.log_path().to_owned(),
                    tail,
                });
            }
            let last = match probe().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if started.elapsed() > timeout {
                let p = &self.processes[idx];
                return Err(LocalError::NotReady {
                    component: p.name().to_owned(),
                    secs: started.elapsed().as_secs_f64(),
                    detail: last,
                    log: p.log_path().to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Component names are a fixed set; map back to a static str for the error.
fn leak_name(name: &str) -> &'static str {
    match name {
        "etcd" => "etcd",
        "kernel-etcd" => "kernel-etcd",
        "kube-apiserver" => "kube-apiserver",
        _ => "kube-controller-manager",
    }
}

/// A port mentioned in an "address already in use" line of a component's log.
fn address_in_use(log: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains("address already in use"))?;
    // e.g. "listen tcp 127.0.0.1:6443: bind: address already in use"
    line.split(|c: char| c.is_whitespace() || c == '"')
        .filter_map(|w| w.trim_end_matches(':').rsplit_once(':'))
        .find_map(|(_, port)| port.parse::<u16>().ok())
}

/// How often the Go garbage collector of the control plane's processes runs (`GOGC`): every
/// 400 % of heap growth instead of 100 %. The API server spends about a tenth of its CPU in
/// the collector under a full run; this costs ~90 MiB of peak RSS at boot, and boots faster.
const CONTROL_PLANE_GOGC: &str = "400";

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
    let (heartbeat, election) = match tick {
        EtcdTick::Fast => (10, 100),
        EtcdTick::Idle => (25, 125),
    };
    vec![
        format!("--name={name}"),
        format!("--data-dir={}", dir.display()),
        format!("--listen-client-urls=http://127.0.0.1:{client}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client}"),
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

fn apiserver_args(pki: &Pki, run_dir: &Path, port: u16, etcd: u16) -> Vec<String> {
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
        "--v=1".into(),
    ]
}

/// The user of [`CONTROLLER_KUBECONFIG`].
pub const CONTROLLER_USER: &str = "lbc-controller";
/// A kubeconfig in the run directory with its own identity for the controller under test.
pub const CONTROLLER_KUBECONFIG: &str = "controller-kubeconfig";
/// The audit log in the run directory (with [`LocalConfig::audit`]).
pub const AUDIT_LOG: &str = "audit.log";

/// Writes only, at Metadata level (no bodies): who changed what, when, with what result.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
";

fn audit_args(run_dir: &Path) -> Vec<String> {
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

fn controller_manager_args(kubeconfig: &Path) -> Vec<String> {
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
    let run_dir = tmp.path().to_owned();

    let lookup = config.binaries.clone();
    let bins: K8sBinaries = tokio::task::spawn_blocking(move || lookup.resolve())
        .await
        .map_err(|e| LocalError::Internal(format!("binary lookup task: {e}")))??;
    let etcd_bin = crate::programs::etcd_binary();

    let api_port = claim_port("kube-apiserver", config.ports.apiserver)?;
    let etcd_port = claim_port("etcd", config.ports.etcd)?;
    let kernel_port = claim_port("kernel-etcd", config.ports.kernel)?;
    let etcd_peer = free_port()?;
    let kernel_peer = free_port()?;

    let t0 = Instant::now();
    let phases = Phases::new(t0);
    let mut processes = Vec::new();
    let mut ctx = Ctx {
        run_dir: &run_dir,
        run_id: &run_id,
        processes: &mut processes,
    };
    let timeout = config.boot_timeout;
    let result: Result<(kube::Config, NodeAgent, PathBuf), LocalError> = async {
        // Both etcds first: they boot while the certificates are generated, and the API
        // server (which retries its etcd) is spawned without waiting for them.
        let etcd_idx = ctx.spawn(
            "etcd",
            &etcd_bin,
            etcd_args(
                "etcd",
                &run_dir.join("etcd-data"),
                etcd_port,
                etcd_peer,
                EtcdTick::Fast,
            ),
        )?;
        let kernel_idx = ctx.spawn(
            "kernel-etcd",
            &etcd_bin,
            etcd_args(
                "kernel",
                &run_dir.join("kernel-data"),
                kernel_port,
                kernel_peer,
                EtcdTick::Idle,
            ),
        )?;
        let pki = Pki::generate(&run_dir.join("pki"))?;
        let server = format!("https://127.0.0.1:{api_port}");
        // One kubeconfig per identity, so the audit log and the logs tell the harness
        // (`admin`), the Pods (`lbc-pod`) and a controller under test apart.
        let identity = |user: &str, file: &str| -> Result<PathBuf, LocalError> {
            let id = pki.client(user, &["system:masters"])?;
            let path = run_dir.join(file);
            write(&path, &kubeconfig_yaml(&server, &pki.ca_cert_pem, &id))?;
            Ok(path)
        };
        let kubeconfig = identity("admin", "kubeconfig")?;
        let pod_kubeconfig = identity("lbc-pod", "pod-kubeconfig")?;
        identity(CONTROLLER_USER, CONTROLLER_KUBECONFIG)?;
        phases.mark("certificates written");
        let mut api_args = apiserver_args(&pki, &run_dir, api_port, etcd_port);
        if config.audit {
            write(&run_dir.join("audit-policy.yaml"), AUDIT_POLICY)?;
            api_args.extend(audit_args(&run_dir));
        }

        let api_idx = ctx.spawn("kube-apiserver", &bins.apiserver, api_args)?;
        wait_etcd(&mut ctx, etcd_idx, etcd_port, timeout).await?;
        phases.mark("etcd healthy");
        let kube_config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).map_err(|e| LocalError::Kube {
                what: "reading the generated kubeconfig".into(),
                source: kube::Error::InferKubeconfig(e),
            })?,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| LocalError::Kube {
            what: "loading the generated kubeconfig".into(),
            source: kube::Error::InferKubeconfig(e),
        })?;
        let client =
            Client::try_from(kube_config.clone()).map_err(kube_err("building a client"))?;
        ctx.wait_ready(api_idx, timeout, || {
            let (client, phases) = (client.clone(), phases.clone());
            async move { readyz_verbose(&client, &phases).await }
        })
        .await?;
        phases.mark("apiserver ready");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        ctx.wait_ready(api_idx, timeout, || {
            let namespaces = namespaces.clone();
            async move {
                namespaces
                    .get("default")
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("namespace default: {e}"))
            }
        })
        .await?;
        phases.mark("namespace default");

        // The controller-manager warms up (informers) while the CRDs are installed.
        ctx.spawn(
            "kube-controller-manager",
            &bins.controller_manager,
            controller_manager_args(&kubeconfig),
        )?;
        install_crds(&client, &config.crds, timeout).await?;
        phases.mark("CRDs established");

        let mut pod_env = config.pod_env.clone();
        pod_env.push((
            "LBC_KERNEL_ENDPOINTS".into(),
            format!("http://127.0.0.1:{kernel_port}"),
        ));
        let agent = NodeAgent::start(
            client.clone(),
            AgentConfig {
                node_name: config.node_name.clone(),
                image_map: config.image_map.clone(),
                run_dir: run_dir.clone(),
                pod_kubeconfig: pod_kubeconfig.clone(),
                apiserver_port: api_port,
                extra_env: pod_env,
                run_id: run_id.clone(),
                max_grace: config.pod_max_grace,
                start_delay: config.pod_start_delay,
                docker: config.docker.clone(),
            },
        )
        .await
        .map_err(kube_err("registering the node"))?;
        phases.mark("node registered");
        wait_etcd(&mut ctx, kernel_idx, kernel_port, timeout).await?;
        phases.mark("kernel etcd healthy");
        Ok((kube_config, agent, kubeconfig))
    }
    .await;

    // On failure `processes` and `tmp` drop here, which stops whatever did start.
    let (kube_config, agent, kubeconfig) = result?;
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
    let guard = LocalGuard {
        agent: Some(agent),
        processes: std::sync::Mutex::new(processes),
        run_dir: run_dir_guard,
        docker_run_id: config.docker.is_some().then(|| run_id.clone()),
    };
    Ok(RunningCluster {
        provider: "local",
        kubeconfig,
        config: kube_config,
        kernel_endpoints: vec![format!("http://127.0.0.1:{kernel_port}")],
        capabilities: Capabilities {
            local_processes: true,
        },
        run_dir: Some(run_dir),
        run_id,
        boot: phases.take(),
        guard: Some(Box::new(guard)),
    })
}

/// Boot milestones, shared with readiness probes.
#[derive(Clone)]
struct Phases {
    t0: Instant,
    marks: std::sync::Arc<std::sync::Mutex<Vec<(String, Duration)>>>,
}

impl Phases {
    fn new(t0: Instant) -> Self {
        Self {
            t0,
            marks: Default::default(),
        }
    }

    /// Note `name` now, unless it was noted before.
    fn mark(&self, name: &str) {
        let at = self.t0.elapsed();
        if let Ok(mut m) = self.marks.lock()
            && !m.iter().any(|(n, _)| n == name)
        {
            m.push((name.to_owned(), at));
        }
    }

    fn take(&self) -> super::BootPhases {
        super::BootPhases(
            self.marks
                .lock()
                .map(|mut m| std::mem::take(&mut *m))
                .unwrap_or_default(),
        )
    }
}

async fn wait_etcd(
    ctx: &mut Ctx<'_>,
    idx: usize,
    port: u16,
    timeout: Duration,
) -> Result<(), LocalError> {
    let client = KernelClient::new(&format!("127.0.0.1:{port}"));
    ctx.wait_ready(idx, timeout, || {
        let client = client.clone();
        async move {
            if client.healthy().await {
                Ok(())
            } else {
                Err("/health is not true".into())
            }
        }
    })
    .await
}

/// `/readyz`, verbose, without the two bootstrap hooks nothing here waits for: every client
/// of this cluster is `system:masters` (RBAC's default roles are not consulted) and no Pod
/// names a priority class. They finish in the background ~1 s later.
const READYZ: &str = "/readyz?verbose\
    &exclude=poststarthook/rbac/bootstrap-roles\
    &exclude=poststarthook/scheduling/bootstrap-system-priority-classes";

/// One poll of `/readyz?verbose`: notes when the API server first answered and when each
/// check (post-start hooks, informers) first passed; `Ok` once all pass.
async fn readyz_verbose(client: &Client, phases: &Phases) -> Result<(), String> {
    let req = http::Request::get(READYZ)
        .body(kube::client::Body::empty())
        .map_err(|e| e.to_string())?;
    let resp = client
        .send(req)
        .await
        .map_err(|e| format!("/readyz: {e}"))?;
    phases.mark("apiserver serving");
    let ok = resp.status().is_success();
    let body = resp
        .into_body()
        .collect_bytes()
        .await
        .map_err(|e| format!("/readyz: {e}"))?;
    for check in passed_checks(&String::from_utf8_lossy(&body)) {
        phases.mark(&format!("readyz {check}"));
    }
    if ok {
        Ok(())
    } else {
        Err("/readyz: not ready".into())
    }
}

/// The checks a verbose `/readyz` reports as passed (`[+]name ok`).
fn passed_checks(body: &str) -> impl Iterator<Item = &str> {
    body.lines()
        .filter_map(|l| l.strip_prefix("[+]")?.strip_suffix(" ok"))
}

fn write(path: &Path, body: &str) -> Result<(), LocalError> {
    std::fs::write(path, body).map_err(|source| {
        LocalError::Pki(PkiError::Write {
            path: path.to_owned(),
            source,
        })
    })
}

/// Create each CRD and wait until it is Established.
async fn install_crds(
    client: &Client,
    crds: &[CustomResourceDefinition],
    timeout: Duration,
) -> Result<(), LocalError> {
    use kube::runtime::wait::{await_condition, conditions};
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(source) => {
                return Err(LocalError::Kube {
                    what: format!("installing CRD {name}"),
                    source,
                });
            }
        }
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        match tokio::time::timeout(timeout, established).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(LocalError::NotReady {
                    component: format!("CRD {name}"),
                    secs: timeout.as_secs_f64(),
                    detail: e.to_string(),
                    log: PathBuf::new(),
                });
            }
            Err(_) => {
                return Err(LocalError::NotReady {
                    component: format!("CRD {name}"),
                    secs: timeout.as_secs_f64(),
                    detail: "not Established".into(),
                    log: PathBuf::new(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_in_use_is_named_with_the_fix() {
        let held = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let err = claim_port("kube-apiserver", port).unwrap_err().to_string();
        assert!(
            err.contains(&format!("port {port} for kube-apiserver is already in use")),
            "{err}"
        );
        assert!(err.contains("choose another port"), "{err}");
        assert!(claim_port("etcd", 0).unwrap() > 0);
    }

    #[test]
    fn the_control_plane_gets_a_lazier_collector_unless_the_user_chose_one() {
        assert_eq!(
            go_runtime_env(false),
            [(OsString::from("GOGC"), OsString::from(CONTROL_PLANE_GOGC))]
        );
        assert!(go_runtime_env(true).is_empty());
    }

    #[test]
    fn a_kernel_ticks_slower_than_the_api_servers_etcd() {
        let args = |tick| etcd_args("e", Path::new("/d"), 1, 2, tick).join(" ");
        assert!(args(EtcdTick::Fast).contains("--heartbeat-interval=10 --election-timeout=100"));
        assert!(args(EtcdTick::Idle).contains("--heartbeat-interval=25 --election-timeout=125"));
        // etcd refuses an election timeout under 5 heartbeats.
        for tick in [EtcdTick::Fast, EtcdTick::Idle] {
            let ms = |flag: &str| -> u32 {
                let a = args(tick);
                let v = a.split(flag).nth(1).and_then(|r| r.split(' ').next());
                v.and_then(|v| v.parse().ok()).expect("the flag")
            };
            assert!(ms("--election-timeout=") >= 5 * ms("--heartbeat-interval="));
        }
    }

    #[test]
    fn passed_readyz_checks_are_read() {
        let body = "[+]ping ok\n[+]etcd ok\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\n[+]poststarthook/crd-informer-synced ok\nreadyz check failed\n";
        assert_eq!(
            passed_checks(body).collect::<Vec<_>>(),
            ["ping", "etcd", "poststarthook/crd-informer-synced"]
        );
    }

    #[test]
    fn address_in_use_is_found_in_go_logs() {
        let log = "E1129 error: failed to create listener: failed to listen on 127.0.0.1:6443: \
                   listen tcp 127.0.0.1:6443: bind: address already in use\n";
        assert_eq!(address_in_use(log), Some(6443));
        assert_eq!(address_in_use("all good"), None);
    }
}
