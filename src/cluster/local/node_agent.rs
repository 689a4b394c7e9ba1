//! A small kubelet: registers one Ready `Node`, binds pending Pods to it, and runs each
//! container as a local process chosen through the [`ImageMap`].
//!
//! What it writes follows what the Job controller reads (see KWOK's pod stages): only the
//! `/status` subresource, by merge patch carrying `status` alone, so the
//! `batch.kubernetes.io/job-tracking` finalizer is never touched; a deleted Pod's process is
//! killed and its deletion finished with grace 0, as kubelet does.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, EnvVar, Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::docker_runtime::{self, DockerRuntime, RunContext};
use super::image_map::ImageMap;
use crate::programs::process::{Spec, Supervised, describe_exit, log_tail};

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

    async fn on_apply(&self, pod: Pod) {
        let uid = pod.uid().unwrap_or_default();
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let spec = pod.spec.clone().unwrap_or_default();
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let terminal = phase == "Succeeded" || phase == "Failed";
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);

        if spec.node_name.is_none() {
            if pod.metadata.deletion_timestamp.is_none() {
                self.bind(&pods, &name).await;
            }
            return;
        }
        if spec.node_name.as_deref() != Some(self.config.node_name.as_str()) {
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            if let Some((mut run, under_way)) = self.take_for_kill(&uid) {
                run.0.deleting = true;
                let grace = pod
                    .metadata
                    .deletion_grace_period_seconds
                    .map(|s| Duration::from_secs(s.max(0) as u64))
                    .unwrap_or(self.config.max_grace)
                    .min(self.config.max_grace);
                let finished = kill_pod(run, grace, under_way).await;
                if !terminal {
                    let status = terminal_status(&finished, true);
                    self.patch_status(&pods, &name, status).await;
                }
            }
            // Finish the deletion as kubelet does; the job-tracking finalizer stays until
            // the Job controller removes it.
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if let Err(e) = pods.delete(&name, &dp).await
                && !matches!(&e, kube::Error::Api(a) if a.code == 404 || a.code == 409)
            {
                tracing::warn!(pod = %name, error = %e, "node agent: finishing deletion failed");
            }
            return;
        }
        if terminal || self.table().map.contains_key(&uid) {
            return;
        }
        self.start_pod(&pods, &pod, &uid).await;
    }

    async fn bind(&self, pods: &Api<Pod>, name: &str) {
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.config.node_name},
        });
        let res: Result<serde_json::Value, _> = pods
            .create_subresource("binding", name, &PostParams::default(), &binding)
            .await;
        if let Err(e) = res
            && !matches!(&e, kube::Error::Api(a) if a.code == 409 || a.code == 404)
        {
            tracing::warn!(pod = %name, error = %e, "node agent: bind failed");
        }
    }

    async fn start_pod(&self, pods: &Api<Pod>, pod: &Pod, uid: &str) {
        if !self.config.start_delay.is_zero() {
            // Spread by the Pod's uid: reproducible per Pod, different across Pods.
            let spread = uid
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            let delay = crate::proxy::Latency {
                base: self.config.start_delay,
            }
            .for_request(spread);
            tokio::time::sleep(delay).await;
        }
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let spec = pod.spec.clone().unwrap_or_default();
        let dir = self
            .config
            .run_dir
            .join("pods")
            .join(format!("{ns}_{name}_{}", &uid[..uid.len().min(8)]));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(pod = %name, error = %e, "node agent: cannot create pod dir");
        }
        let init = spec.init_containers.clone().unwrap_or_default();
        // Refuse the whole pod up front if any image is unknown, as a runtime that cannot
        // pull would.
        for c in init.iter().chain(spec.containers.iter()) {
            let image = c.image.clone().unwrap_or_default();
            if self.config.image_map.resolve(&image).is_none()
                && self.docker_image(&image).is_none()
            {
                let message = format!(
                    "image {image:?} (container {:?}) is not in the node agent's image map; \
                     known images: {:?}. Map it to a local executable (IMAGE=/path/to/program)",
                    c.name,
                    self.config.image_map.images()
                );
                tracing::warn!(pod = %name, "{message}");
                let now = Timestamp::now();
                let f = Finished {
                    name: c.name.clone(),
                    image,
                    started_at: now,
                    finished_at: now,
                    exit_code: 128,
                    reason: "ErrImageNeverPull".into(),
                    message: Some(message.clone()),
                    init: init.iter().any(|i| i.name == c.name),
                };
                let mut status = terminal_status(&[f], false);
                status["status"]["reason"] = json!("ErrImageNeverPull");
                status["status"]["message"] = json!(message);
                self.patch_status(pods, &name, status).await;
                return;
            }
        }
        let volumes = spec.volumes.clone().unwrap_or_default();
        let in_docker = init.iter().chain(spec.containers.iter()).any(|c| {
            self.docker_image(c.image.as_deref().unwrap_or_default())
                .is_some()
        });
        let service_account = if in_docker {
            for v in volumes.iter().filter(|v| v.empty_dir.is_some()) {
                let d = docker_runtime::empty_dir(&dir, &v.name);
                if let Err(e) = std::fs::create_dir_all(&d) {
                    tracing::warn!(pod = %name, error = %e, "node agent: cannot create emptyDir");
                }
            }
            self.service_account(pod, &ns, &dir).await
        } else {
            None
        };
        let mut run = PodRun {
            namespace: ns,
            name: name.clone(),
            spec_init: init,
            spec_containers: spec.containers.clone(),
            next_init: Some(0),
            running: Vec::new(),
            finished: Vec::new(),
            deleting: false,
            status_sent: false,
            env: Vec::new(),
            dir,
            uid: uid.to_owned(),
            volumes,
            service_account,
        };
        run.env = self.pod_env(pod).await;
        // Started and put in the table in one lock, before anything is published: a
        // teardown (which closes the table) either stops the pod from starting or finds
        // its processes. The reaper skips the pod until `Running` is out, so its terminal
        // status never lands first.
        let progressed = {
            let mut table = self.table();
            if table.closed {
                return;
            }
            let progressed = self.advance(&mut run);
            table.map.insert(uid.to_owned(), PodRunHandle(run));
            progressed
        };
        if let Some(status) = progressed {
            self.patch_status(pods, &name, status).await;
        }
        if let Some(h) = self.table().map.get_mut(uid) {
            h.0.status_sent = true;
        }
    }

    /// Start whatever should run next; returns the status to publish.
    fn advance(&self, run: &mut PodRun) -> Option<serde_json::Value> {
        if !run.running.is_empty() {
            return None;
        }
        let env = run.env.clone();
        if let Some(i) = run.next_init {
            if let Some(c) = run.spec_init.get(i).cloned() {
                run.next_init = Some(i + 1);
                self.spawn(run, &c, &env, true);
            } else {
                run.next_init = None;
                for c in run.spec_containers.clone() {
                    self.spawn(run, &c, &env, false);
                }
            }
            // Nothing running after a start: it failed (StartError), and no exit will
            // ever come for the reaper to see.
            return Some(if run.running.is_empty() {
                terminal_status(&run.finished, false)
            } else {
                running_status(run)
            });
        }
        None
    }

    /// The local image `image` runs from under Docker, if the Docker runtime serves it.
    fn docker_image(&self, image: &str) -> Option<&str> {
        self.config.docker.as_ref()?.resolve(image)
    }

    /// A token for the Pod's service account, the cluster CA and the namespace, written
    /// where a Docker container gets them mounted (kubelet's projected volume). `None`
    /// when the account or the token API is missing: the kubeconfig still works.
    async fn service_account(&self, pod: &Pod, ns: &str, dir: &Path) -> Option<PathBuf> {
        use k8s_openapi::api::authentication::v1::TokenRequest;
        use k8s_openapi::api::core::v1::ServiceAccount;
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let request: TokenRequest = serde_json::from_value(json!({
            "spec": {"audiences": [], "expirationSeconds": 3600}
        }))
        .ok()?;
        let token = Api::<ServiceAccount>::namespaced(self.client.clone(), ns)
            .create_token_request(&account, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                tracing::info!(pod = %pod.name_any(), account, error = %e,
                    "node agent: no service-account token (the kubeconfig still works)");
            })
            .ok()?
            .status?
            .token;
        let sa = dir.join("serviceaccount");
        std::fs::create_dir_all(&sa).ok()?;
        std::fs::write(sa.join("token"), token).ok()?;
        std::fs::write(sa.join("namespace"), ns).ok()?;
        if let Some(ca) = cluster_ca(&self.config.pod_kubeconfig) {
            std::fs::write(sa.join("ca.crt"), ca).ok()?;
        }
        Some(sa)
    }

    fn spawn(&self, run: &mut PodRun, c: &Container, env: &[(OsString, OsString)], init: bool) {
        let image = c.image.clone().unwrap_or_default();
        if let Some(local) = self.docker_image(&image).map(str::to_owned) {
            return self.spawn_docker(run, c, env, init, &image, &local);
        }
        let entrypoint = self
            .config
            .image_map
            .resolve(&image)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        // `command` names a program inside the image: the image's stand-in gets it as
        // leading arguments. Only an image mapped to `host` runs it on the host.
        let (program, mut args): (PathBuf, Vec<OsString>) = match c.command.as_deref() {
            Some([first, rest @ ..]) if self.config.image_map.runs_host_commands(&image) => {
                (first.into(), rest.iter().map(OsString::from).collect())
            }
            Some(command) => (entrypoint, command.iter().map(OsString::from).collect()),
            None => (entrypoint, Vec::new()),
        };
        args.extend(c.args.iter().flatten().map(OsString::from));
        let mut env = env.to_vec();
        env.extend(literal_env(c.env.as_deref().unwrap_or_default()));
        let spec = Spec {
            name: format!("{}/{}:{}", run.namespace, run.name, c.name),
            program: program.clone(),
            args,
            env,
            clear_env: true,
            cwd: Some(
                c.working_dir
                    .as_ref()
                    .map(PathBuf::from)
                    .filter(|d| d.is_dir())
                    .unwrap_or_else(|| run.dir.clone()),
            ),
            log: run.dir.join(format!("{}.log", c.name)),
            run_id: self.config.run_id.clone(),
        };
        start(run, c, image, init, &spec, None);
    }

    /// Start `c` as a Docker container from `local`: `docker run`, supervised like a process.
    fn spawn_docker(
        &self,
        run: &mut PodRun,
        c: &Container,
        env: &[(OsString, OsString)],
        init: bool,
        image: &str,
        local: &str,
    ) {
        let Some(runtime) = &self.config.docker else {
            return;
        };
        let name = docker_runtime::container_name(&self.config.run_id, &run.uid, &c.name);
        let termination_log = docker_runtime::termination_log(&run.dir, &c.name);
        // The file must exist before Docker mounts it, or Docker makes a directory.
        let _ = std::fs::write(&termination_log, b"");
        let mut env = docker_runtime::without_host_env(env);
        env.extend(literal_env(c.env.as_deref().unwrap_or_default()));
        for dir in docker_runtime::sub_path_dirs(c, &run.volumes, &run.dir) {
            let _ = std::fs::create_dir_all(dir);
        }
        let cx = RunContext {
            name: &name,
            run_id: &self.config.run_id,
            local_image: local,
            pod_dir: &run.dir,
            volumes: &run.volumes,
            env: &env,
            same_path_files: std::slice::from_ref(&self.config.pod_kubeconfig),
            service_account: run.service_account.as_deref(),
        };
        let args = docker_runtime::run_args(c, &cx);
        let spec = Spec {
            name: format!("{}/{}:{} (docker)", run.namespace, run.name, c.name),
            program: runtime.docker.clone(),
            args,
            env: crate::container::cli_env(),
            clear_env: true,
            cwd: Some(run.dir.clone()),
            log: run.dir.join(format!("{}.log", c.name)),
            run_id: self.config.run_id.clone(),
        };
        let docker = DockerContainer {
            name,
            termination_log,
            policy: c.termination_message_policy.clone(),
        };
        start(run, c, image.to_owned(), init, &spec, Some(docker));
    }

    /// Collect exited processes, start what comes next, and publish the resulting status.
    async fn reap(&self) {
        let mut updates = Vec::new();
        {
            let mut table = self.table();
            for handle in table.map.values_mut() {
                let run = &mut handle.0;
                if !run.status_sent {
                    continue;
                }
                let mut changed = false;
                let mut i = 0;
                while i < run.running.len() {
                    if let Some(status) = run.running[i].process.try_exited() {
                        let c = run.running.remove(i);
                        run.finished.push(finished_from(&c, status));
                        if let Some(d) = c.docker {
                            tokio::task::spawn_blocking(move || {
                                crate::container::remove_by_name(&d.name)
                            });
                        }
                        changed = true;
                    } else {
                        i += 1;
                    }
                }
                if !changed {
                    continue;
                }
                let init_failed = run.finished.iter().any(|f| f.init && f.exit_code != 0);
                let status = if run.running.is_empty() && !init_failed && run.next_init.is_some() {
                    // The next init container, or the main ones.
                    self.advance(run)
                } else if run.running.is_empty() {
                    // Finished pods stay in the table until deleted (their processes are gone).
                    Some(terminal_status(&run.finished, false))
                } else {
                    Some(running_status(run))
                };
                if let Some(status) = status {
                    updates.push((run.namespace.clone(), run.name.clone(), status));
                }
            }
        }
        // Each Pod's update on its own: one slow write does not hold up the others.
        let publish = updates.into_iter().map(|(ns, name, status)| async move {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            self.patch_status(&pods, &name, status).await;
        });
        futures::future::join_all(publish).await;
    }

    async fn patch_status(&self, pods: &Api<Pod>, name: &str, status: serde_json::Value) {
        if let Err(e) = pods
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            tracing::warn!(pod = %name, error = %e, "node agent: status patch failed");
        }
    }

    /// The environment every container of `pod` starts with.
    async fn pod_env(&self, pod: &Pod) -> Vec<(OsString, OsString)> {
        let ns = pod.namespace().unwrap_or_default();
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            ),
            ("HOSTNAME".into(), pod.name_any()),
            (
                "KUBECONFIG".into(),
                self.config.pod_kubeconfig.display().to_string(),
            ),
            ("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()),
            (
                "KUBERNETES_SERVICE_PORT".into(),
                self.config.apiserver_port.to_string(),
            ),
            ("LBC_POD_NAMESPACE".into(), ns.clone()),
            ("LBC_POD_NAME".into(), pod.name_any()),
            ("LBC_POD_UID".into(), pod.uid().unwrap_or_default()),
        ];
        if let Ok(home) = std::env::var("HOME") {
            env.push(("HOME".into(), home));
        }
        env.extend(self.config.extra_env.iter().cloned());
        // Resolve valueFrom references once per pod (containers add literal values).
        let spec = pod.spec.clone().unwrap_or_default();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            for var in c.env.iter().flatten() {
                if let Some(value) = self.value_from(pod, &ns, var).await {
                    env.push((var.name.clone(), value));
                }
            }
        }
        env.into_iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    async fn value_from(&self, pod: &Pod, ns: &str, var: &EnvVar) -> Option<String> {
        let from = var.value_from.as_ref()?;
        if let Some(f) = &from.field_ref {
            return match f.field_path.as_str() {
                "metadata.name" => Some(pod.name_any()),
                "metadata.namespace" => Some(ns.to_owned()),
                "metadata.uid" => pod.uid(),
                "spec.nodeName" => Some(self.config.node_name.clone()),
                "status.podIP" | "status.hostIP" => Some("127.0.0.1".into()),
                other => {
                    tracing::warn!(field = other, "node agent: unsupported fieldRef");
                    None
                }
            };
        }
        if let Some(s) = &from.secret_key_ref {
            let api: Api<k8s_openapi::api::core::v1::Secret> =
                Api::namespaced(self.client.clone(), ns);
            let secret = api.get(&s.name).await.ok()?;
            let bytes = secret.data?.get(&s.key)?.0.clone();
            return String::from_utf8(bytes).ok();
        }
        if let Some(c) = &from.config_map_key_ref {
            let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
                Api::namespaced(self.client.clone(), ns);
            return api.get(&c.name).await.ok()?.data?.get(&c.key).cloned();
        }
        None
    }
}

/// Spawn `spec` for container `c`: running, or finished with kubelet's `StartError`.
fn start(
    run: &mut PodRun,
    c: &Container,
    image: String,
    init: bool,
    spec: &Spec,
    docker: Option<DockerContainer>,
) {
    let started_at = Timestamp::now();
    match Supervised::spawn(spec) {
        Ok(process) => run.running.push(ContainerRun {
            name: c.name.clone(),
            image,
            started_at,
            process,
            init,
            docker,
        }),
        Err(e) => run.finished.push(Finished {
            name: c.name.clone(),
            image,
            started_at,
            finished_at: Timestamp::now(),
            exit_code: 128,
            reason: "StartError".into(),
            message: Some(e.to_string()),
            init,
        }),
    }
}

fn literal_env(vars: &[EnvVar]) -> Vec<(OsString, OsString)> {
    vars.iter()
        .filter_map(|v| Some((OsString::from(&v.name), OsString::from(v.value.as_ref()?))))
        .collect()
}

fn finished_from(c: &ContainerRun, status: std::process::ExitStatus) -> Finished {
    use std::os::unix::process::ExitStatusExt;
    let exit_code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    if let Some(d) = &c.docker {
        // 125–127 are `docker run`'s own failures (no such image, bad entrypoint) — kubelet's
        // StartError — unless the container did start and its program exited so (a shell's
        // 127 for "command not found").
        let start_error = matches!(exit_code, 125..=127) && !docker_runtime::started(&d.name);
        let message = docker_runtime::termination_message(
            &d.termination_log,
            d.policy.as_deref(),
            exit_code != 0,
            |n| c.process.log_tail(n),
        )
        .or_else(|| start_error.then(|| c.process.log_tail(1024).trim().to_owned()));
        return Finished {
            name: c.name.clone(),
            image: c.image.clone(),
            started_at: c.started_at,
            finished_at: Timestamp::now(),
            exit_code: if start_error { 128 } else { exit_code },
            reason: if exit_code == 0 {
                "Completed"
            } else if start_error {
                "StartError"
            } else {
                "Error"
            }
            .into(),
            message,
            init: c.init,
        };
    }
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    let message = (exit_code != 0).then(|| {
        let tail = c.process.log_tail(1024);
        let tail = tail.trim();
        if tail.is_empty() {
            describe_exit(status)
        } else {
            format!("{}; last output: {tail}", describe_exit(status))
        }
    });
    Finished {
        name: c.name.clone(),
        image: c.image.clone(),
        started_at: c.started_at,
        finished_at: Timestamp::now(),
        exit_code,
        reason: reason.into(),
        message,
        init: c.init,
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

/// Kill a pod's processes (SIGTERM, `grace`, SIGKILL) off the async threads; returns the
/// finished containers for the final status.
async fn kill_pod(handle: PodRunHandle, grace: Duration, under_way: KillUnderWay) -> Vec<Finished> {
    tokio::task::spawn_blocking(move || {
        let _under_way = under_way;
        let mut run = handle.0;
        let mut finished = run.finished.clone();
        // One grace for the whole pod, as kubelet gives: every container is told at once.
        for c in &run.running {
            c.process.signal_group(libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + grace;
        for mut c in run.running.drain(..) {
            // Told once: a second SIGTERM inside the grace makes some programs (Go's
            // signal handlers) skip their graceful shutdown.
            c.process
                .wait_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
            let status = c.process.stop(Duration::ZERO);
            if let Some(d) = &c.docker {
                // SIGKILL reaches the client only: the container may still run.
                crate::container::remove_by_name(&d.name);
            }
            let mut f = match status {
                Some(s) => finished_from(&c, s),
                None => Finished {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    started_at: c.started_at,
                    finished_at: Timestamp::now(),
                    exit_code: 137,
                    reason: "Error".into(),
                    message: None,
                    init: c.init,
                },
            };
            if run.deleting {
                f.message = Some("killed: the pod was deleted".into());
            }
            finished.push(f);
        }
        finished
    })
    .await
    .unwrap_or_default()
}

fn ready_conditions(ready: bool, now: &str) -> serde_json::Value {
    let s = if ready { "True" } else { "False" };
    json!([
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": s, "lastTransitionTime": now},
        {"type": "Ready", "status": s, "lastTransitionTime": now},
    ])
}

fn container_status_entries(run: &PodRun, init: bool) -> Vec<serde_json::Value> {
    let specs = if init {
        &run.spec_init
    } else {
        &run.spec_containers
    };
    specs
        .iter()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            if let Some(r) = run
                .running
                .iter()
                .find(|r| r.name == c.name && r.init == init)
            {
                json!({"name": c.name, "image": image, "imageID": "", "ready": !init,
                       "started": true, "restartCount": 0,
                       "state": {"running": {"startedAt": r.started_at.to_string()}}})
            } else if let Some(f) = run
                .finished
                .iter()
                .find(|f| f.name == c.name && f.init == init)
            {
                terminated_entry(f)
            } else {
                json!({"name": c.name, "image": image, "imageID": "", "ready": false,
                       "started": false, "restartCount": 0,
                       "state": {"waiting": {"reason": "PodInitializing"}}})
            }
        })
        .collect()
}

fn terminated_entry(f: &Finished) -> serde_json::Value {
    let mut terminated = json!({
        "exitCode": f.exit_code, "reason": f.reason,
        "startedAt": f.started_at.to_string(), "finishedAt": f.finished_at.to_string(),
    });
    if let Some(m) = &f.message {
        terminated["message"] = json!(m);
    }
    json!({"name": f.name, "image": f.image, "imageID": "", "ready": false, "started": false,
           "restartCount": 0, "state": {"terminated": terminated}})
}

fn running_status(run: &PodRun) -> serde_json::Value {
    let now = Timestamp::now().to_string();
    let initializing = run.next_init.is_some();
    let phase = if initializing { "Pending" } else { "Running" };
    json!({"status": {
        "phase": phase,
        "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}], "hostIPs": [{"ip": "127.0.0.1"}],
        "startTime": now,
        "conditions": ready_conditions(!initializing, &now),
        "initContainerStatuses": container_status_entries(run, true),
        "containerStatuses": container_status_entries(run, false),
    }})
}

/// The final status: `Succeeded` when every container exited 0, else `Failed`.
fn terminal_status(finished: &[Finished], deleted: bool) -> serde_json::Value {
    let now = Timestamp::now().to_string();
    let failed = deleted || finished.is_empty() || finished.iter().any(|f| f.exit_code != 0);
    let by_init: BTreeMap<bool, Vec<serde_json::Value>> =
        finished.iter().fold(BTreeMap::new(), |mut m, f| {
            m.entry(f.init).or_default().push(terminated_entry(f));
            m
        });
    json!({"status": {
        "phase": if failed { "Failed" } else { "Succeeded" },
        "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
        "conditions": ready_conditions(false, &now),
        "initContainerStatuses": by_init.get(&true).cloned().unwrap_or_default(),
        "containerStatuses": by_init.get(&false).cloned().unwrap_or_default(),
    }})
}

/// The CA (PEM) of the cluster a kubeconfig points at.
fn cluster_ca(kubeconfig: &Path) -> Option<Vec<u8>> {
    use base64::Engine;
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).ok()?;
    let data = kc
        .clusters
        .first()?
        .cluster
        .as_ref()?
        .certificate_authority_data
        .clone()?;
    base64::engine::general_purpose::STANDARD.decode(data).ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(code: i32) -> Finished {
        Finished {
            name: "main".into(),
            image: "img".into(),
            started_at: Timestamp::UNIX_EPOCH,
            finished_at: Timestamp::UNIX_EPOCH,
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            init: false,
        }
    }

    #[test]
    fn terminal_status_reflects_exit_codes() {
        let ok = terminal_status(&[finished(0)], false);
        assert_eq!(ok["status"]["phase"], "Succeeded");
        let st = &ok["status"]["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(st["exitCode"], 0);
        assert_eq!(st["reason"], "Completed");
        let bad = terminal_status(&[finished(0), finished(1)], false);
        assert_eq!(bad["status"]["phase"], "Failed");
        let deleted = terminal_status(&[finished(0)], true);
        assert_eq!(deleted["status"]["phase"], "Failed");
    }

    #[test]
    fn status_patch_never_touches_metadata() {
        let s = terminal_status(&[finished(1)], false);
        assert_eq!(
            s.as_object().unwrap().keys().collect::<Vec<_>>(),
            vec!["status"]
        );
    }
}
