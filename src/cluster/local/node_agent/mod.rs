//! A small kubelet: registers one Ready `Node`, binds pending Pods to it, and runs each
//! container as a local process chosen through the [`ImageMap`].
//!
//! What it writes follows what the Job controller reads (see KWOK's pod stages): only the
//! `/status` subresource, by merge patch carrying `status` alone, so the
//! `batch.kubernetes.io/job-tracking` finalizer is never touched; a deleted Pod's process is
//! killed and its deletion finished with grace 0, as kubelet does.
//!
//! Here: the agent, its watch loop and the pod table. A Pod's lifecycle is in `pods.rs`, how
//! a container runs (process or Docker) in `runtime.rs`, its environment in `env.rs`, the
//! status writes in `status.rs`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use self::pods::kill_pod;
use super::docker_runtime::DockerRuntime;
use super::image_map::ImageMap;
use crate::programs::process::{Supervised, log_tail};

mod env;
mod pods;
mod runtime;
mod status;
#[cfg(test)]
mod tests;

/// How the agent runs pods.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub image_map: ImageMap,
    /// Per-pod directories and logs go under `<run_dir>/pods/`.
    pub run_dir: PathBuf,
    /// The kubeconfig handed to every pod (`KUBECONFIG`).
    pub pod_kubeconfig: PathBuf,
    /// The apiserver's port, exported as `KUBERNETES_SERVICE_PORT`.
    pub apiserver_port: u16,
    /// Extra variables for every container (e.g. the kernel endpoints override).
    pub extra_env: Vec<(String, String)>,
    pub run_id: String,
    /// Longest grace the agent grants a deleted pod before SIGKILL.
    pub max_grace: Duration,
    /// Stress mode: each Pod starts up to twice this late (spread per Pod).
    pub start_delay: Duration,
    /// `--runtime docker`: images run as containers from local images; `None` (or an image
    /// it does not list) runs processes through `image_map`.
    pub docker: Option<DockerRuntime>,
}

/// One container's process.
struct ContainerRun {
    name: String,
    image: String,
    started_at: Timestamp,
    process: Supervised,
    init: bool,
    /// Set when the container runs under Docker: its name, the host file of its
    /// termination message and the message policy.
    docker: Option<DockerContainer>,
}

/// A container run by Docker.
struct DockerContainer {
    name: String,
    termination_log: PathBuf,
    policy: Option<String>,
}

/// A pod this agent has started.
struct PodRun {
    namespace: String,
    name: String,
    spec_init: Vec<Container>,
    spec_containers: Vec<Container>,
    /// Index of the next init container to start; `None` once the main containers run.
    next_init: Option<usize>,
    running: Vec<ContainerRun>,
    /// Finished containers: (name, image, started, finished, exit code, message).
    finished: Vec<Finished>,
    deleting: bool,
    /// Every container's environment, resolved once when the pod starts (kubelet resolves
    /// it at each container's start): re-reading the Pod between init containers could fail
    /// and strand the pod, and no suite changes a referenced ConfigMap or Secret mid-pod.
    env: Vec<(OsString, OsString)>,
    /// False until the first status has been sent (whatever the answer); the reaper leaves
    /// the pod alone until then, so its status never lands first.
    status_sent: bool,
    dir: PathBuf,
    uid: String,
    volumes: Vec<k8s_openapi::api::core::v1::Volume>,
    /// The service-account directory (token, ca.crt, namespace) for Docker containers.
    service_account: Option<PathBuf>,
}

#[derive(Clone)]
struct Finished {
    name: String,
    image: String,
    started_at: Timestamp,
    finished_at: Timestamp,
    exit_code: i32,
    reason: String,
    message: Option<String>,
    init: bool,
}

/// Processes of running pods, held by [`NodeAgent`] too so teardown can kill them even if
/// the agent task is gone.
type PodTable = Arc<Mutex<Pods>>;

/// The pods this agent runs; once `closed` (teardown) no pod starts.
#[derive(Default)]
struct Pods {
    closed: bool,
    map: HashMap<String, PodRunHandle>,
}

/// Opaque holder of a pod's processes; dropping it kills them.
struct PodRunHandle(PodRun);

/// The running agent; dropping it stops the loop and kills every pod process.
pub struct NodeAgent {
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    pods: PodTable,
    /// Pods taken out of the table and being killed (a deletion's grace) right now.
    kills: Arc<AtomicUsize>,
    max_grace: Duration,
}

impl NodeAgent {
    /// Register the node and start the loop.
    ///
    /// # Errors
    /// The Node cannot be created.
    pub async fn start(client: Client, config: AgentConfig) -> Result<Self, kube::Error> {
        register_node(&client, &config.node_name).await?;
        let pods: PodTable = Arc::default();
        let kills = Arc::new(AtomicUsize::new(0));
        let max_grace = config.max_grace;
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(run(client, config, pods.clone(), kills.clone(), rx));
        Ok(Self {
            shutdown,
            task,
            pods,
            kills,
            max_grace,
        })
    }

    /// Stop the loop and kill all pod processes, those of pods being deleted included.
    pub fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
        // Closed in the same lock as the drain: a worker still running (the abort takes
        // effect at its next await) cannot start a pod that nobody would kill.
        let drained: Vec<PodRunHandle> = {
            let mut t = self
                .pods
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            t.closed = true;
            t.map.drain().map(|(_, v)| v).collect()
        };
        drop(drained);
        // A kill under way goes on on a blocking thread whatever the abort; it ends
        // within its grace, and returning earlier would leave its processes behind.
        let deadline = std::time::Instant::now() + self.max_grace + Duration::from_secs(1);
        while self.kills.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = self.kills.load(Ordering::Acquire);
        if left > 0 {
            tracing::warn!(pods = left, "node agent: kills still under way at teardown");
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn register_node(client: &Client, name: &str) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "lbc-local-process",
        }},
    }))
    .map_err(kube::Error::SerdeError)?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    let now = Timestamp::now().to_string();
    let status = json!({"status": {
        "capacity": {"cpu": "2", "memory": "24Gi", "pods": "250"},
        "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "250"},
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "lbc node agent runs pods as local processes",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                      {"type": "Hostname", "address": name}],
        "nodeInfo": {
            "architecture": "amd64", "operatingSystem": "linux",
            "kubeletVersion": crate::programs::k8s::K8S_VERSION,
            "kubeProxyVersion": "", "containerRuntimeVersion": "lbc-process://1",
            "kernelVersion": "", "osImage": "lbc", "machineID": "", "systemUUID": "", "bootID": "",
        },
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

enum Input {
    Apply(Box<Pod>),
    Delete(Box<Pod>),
}

impl Input {
    fn uid(&self) -> String {
        match self {
            Input::Apply(p) | Input::Delete(p) => p.uid().unwrap_or_default(),
        }
    }
}

async fn run(
    client: Client,
    config: AgentConfig,
    pods: PodTable,
    kills: Arc<AtomicUsize>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Pod> = Api::all(client.clone());
    let mut stream = Box::pin(watcher(api, watcher::Config::default()));
    let agent = Arc::new(Agent {
        client,
        config,
        pods,
        kills,
    });
    // One worker per Pod: a Pod's events stay in order, but Pods never wait for each other
    // (a kill waits out its grace; a burst of Jobs starts all their Pods at once). Dropping
    // the set (the loop aborted) stops them all.
    let mut tasks = tokio::task::JoinSet::new();
    let mut workers: HashMap<String, mpsc::UnboundedSender<Input>> = HashMap::new();
    tasks.spawn({
        let agent = agent.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                agent.reap().await;
            }
        }
    });
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            ev = stream.next() => {
                let input = match ev {
                    Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => Input::Apply(Box::new(p)),
                    Some(Ok(watcher::Event::Delete(p))) => Input::Delete(Box::new(p)),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "node agent: pod watch error; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    None => return,
                };
                let uid = input.uid();
                let last = matches!(input, Input::Delete(_));
                let input = match workers.get(&uid) {
                    Some(tx) => tx.send(input).err().map(|mpsc::error::SendError(i)| i),
                    None => Some(input),
                };
                if let Some(input) = input {
                    let (tx, mut rx) = mpsc::unbounded_channel();
                    let _ = tx.send(input);
                    let agent = agent.clone();
                    tasks.spawn(async move {
                        while let Some(input) = rx.recv().await {
                            agent.handle(input).await;
                        }
                    });
                    workers.insert(uid.clone(), tx);
                }
                if last {
                    // The worker drains what it has, then ends.
                    workers.remove(&uid);
                }
            }
        }
    }
}

struct Agent {
    client: Client,
    config: AgentConfig,
    pods: PodTable,
    kills: Arc<AtomicUsize>,
}

impl Agent {
    fn table(&self) -> std::sync::MutexGuard<'_, Pods> {
        self.pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Take pod `uid` out of the table to kill it, counted as a kill under way in the same
    /// lock, so a teardown never finds it in neither place.
    fn take_for_kill(&self, uid: &str) -> Option<(PodRunHandle, KillUnderWay)> {
        let mut t = self.table();
        let run = t.map.remove(uid)?;
        Some((run, KillUnderWay::new(&self.kills)))
    }

    async fn handle(&self, input: Input) {
        match input {
            Input::Apply(pod) => self.on_apply(*pod).await,
            Input::Delete(pod) => {
                let uid = pod.uid().unwrap_or_default();
                if let Some((run, under_way)) = self.take_for_kill(&uid) {
                    kill_pod(run, self.config.max_grace, under_way).await;
                }
            }
        }
    }
}

/// Counts one kill under way for [`NodeAgent::stop`] while it lives.
struct KillUnderWay(Arc<AtomicUsize>);

impl KillUnderWay {
    fn new(kills: &Arc<AtomicUsize>) -> Self {
        kills.fetch_add(1, Ordering::AcqRel);
        Self(kills.clone())
    }
}

impl Drop for KillUnderWay {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The log file of a container the agent ran (for debug bundles).
pub fn container_log(
    run_dir: &Path,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Option<String> {
    let pods = std::fs::read_dir(run_dir.join("pods")).ok()?;
    let prefix = format!("{namespace}_{pod}_");
    pods.filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| log_tail(&e.path().join(format!("{container}.log")), 1 << 20))
}
