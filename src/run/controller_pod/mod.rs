//! The controller under test installed from its image, as users deploy it: a Deployment of
//! one replica in the suite's namespace under a ServiceAccount of its own (a Role with the
//! target's rules), reaching the API server through the harness's proxy by a kubeconfig
//! mounted from a Secret. The proxy acts as that ServiceAccount, so the target's rules are
//! the rights it has.
//!
//! Stopping scales the Deployment to 0 and deletes its Pod (grace 0 for a crash, as a
//! SIGKILL); starting scales it to 1 and waits for the container to run. The calls go from a
//! thread of its own (its own runtime and client), so the harness can stop it from anywhere,
//! a proxy fault's handler included, without waiting on the run's runtime.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::controller::ControllerCommand;

/// Its objects' name, and the label its Pods carry.
pub const NAME: &str = "lbc-controller-under-test";
/// Where the Pod finds its kubeconfig.
pub const KUBECONFIG_PATH: &str = "/etc/lbc/kubeconfig";
/// Where a program built into the project's image is, by its file name.
pub const PROGRAM_DIR: &str = "/usr/local/bin";

/// What the Pod form is made of, for one suite.
#[derive(Debug, Clone)]
pub struct PodTemplate {
    pub namespace: String,
    pub image: String,
    /// Its program (inside the image), arguments and environment.
    pub command: ControllerCommand,
    /// The API proxy (reachable from Pods): the kubeconfig of each generation of Pods.
    pub proxy: crate::proxy::Access,
    pub rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule>,
    /// `/etc/hosts` entries: PD's service names → the suite kernel's Service.
    pub host_aliases: Vec<(String, Vec<String>)>,
}

/// The ServiceAccount, Role, RoleBinding, kubeconfig Secret and Deployment (one replica).
pub fn manifests(t: &PodTemplate) -> Vec<Value> {
    let labels = json!({"app.kubernetes.io/name": NAME});
    let env: Vec<Value> = t
        .command
        .env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let aliases: Vec<Value> = t
        .host_aliases
        .iter()
        .map(|(ip, names)| json!({"ip": ip, "hostnames": names}))
        .collect();
    let kubeconfig_dir = KUBECONFIG_PATH
        .rsplit_once('/')
        .map_or("/etc/lbc", |(d, _)| d);
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": NAME}, "rules": t.rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": NAME},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
               "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": t.namespace}]}),
        secret(&t.proxy.kubeconfig_yaml(crate::proxy::PLACEHOLDER_TOKEN)),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": NAME, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                // A new Pod only after the old one is gone: never two controllers at once.
                "strategy": {"type": "Recreate"},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": NAME,
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "terminationGracePeriodSeconds": 2,
                        "hostAliases": aliases,
                        "containers": [{
                            "name": "controller",
                            "image": t.image,
                            "imagePullPolicy": pull_policy(&t.image),
                            "command": [t.command.program.display().to_string()],
                            "args": t.command.args,
                            "env": env,
                            "volumeMounts": [{"name": "kubeconfig", "mountPath": kubeconfig_dir, "readOnly": true}],
                        }],
                        "volumes": [{"name": "kubeconfig", "secret": {"secretName": NAME}}],
                    },
                },
            },
        }),
    ]
}

/// The Secret holding the controller's kubeconfig.
fn secret(kubeconfig_yaml: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": NAME},
           "stringData": {"kubeconfig": kubeconfig_yaml}})
}

/// The project's images exist only where they were loaded: never pull them.
fn pull_policy(image: &str) -> &'static str {
    if image.starts_with(crate::container::archive::PROGRAM_REPOSITORY) {
        "Never"
    } else {
        "IfNotPresent"
    }
}

/// What a Pod's container says when it cannot run its image (no point waiting longer).
const HOPELESS: [&str; 6] = [
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerError",
    "CreateContainerConfigError",
];

/// The controller container's state in `pod`: `Ok(true)` running, `Ok(false)` not yet,
/// `Err` it cannot start (with why).
pub fn container_state(pod: &Pod) -> Result<bool, String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(false);
    }
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let Some(c) = statuses.first() else {
        return Ok(false);
    };
    let state = c.state.clone().unwrap_or_default();
    if state.running.is_some() {
        return Ok(true);
    }
    match state.waiting {
        Some(w) if HOPELESS.contains(&w.reason.as_deref().unwrap_or_default()) => Err(format!(
            "its container is {} ({}): the image {} must be on the cluster's nodes \
             (`lbc image build-target --bin PROGRAM` then `lbc image load`)",
            w.reason.unwrap_or_default(),
            w.message.unwrap_or_default(),
            c.image
        )),
        _ => Ok(false),
    }
}

/// How its container ended without being stopped by the harness: its restarts and last exit.
fn restarts(pod: &Pod) -> Option<String> {
    let c = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .clone();
    (c.restart_count > 0).then(|| {
        let last = c
            .last_state
            .and_then(|s| s.terminated)
            .map(|t| {
                format!(
                    ", last exit code {} ({})",
                    t.exit_code,
                    t.reason.unwrap_or_default()
                )
            })
            .unwrap_or_default();
        format!("its container restarted {} times{last}", c.restart_count)
    })
}

enum Op {
    Install(Vec<Value>),
    /// With the new generation's kubeconfig.
    Start(String),
    Stop(Duration),
    Crashed,
}

type Reply = Result<Option<String>, String>;

/// The Pod form of a running (or stopped) controller.
#[derive(Debug)]
pub struct ControllerPod {
    tx: mpsc::Sender<(Op, mpsc::Sender<Reply>)>,
    thread: Option<std::thread::JoinHandle<()>>,
    running: bool,
    starts: u32,
    log: PathBuf,
    proxy: crate::proxy::Access,
}

impl ControllerPod {
    /// Create its objects and wait for its container to run.
    ///
    /// # Errors
    /// An object refused, or the container not running within `ready_within`.
    pub fn start(
        config: kube::Config,
        t: &PodTemplate,
        ready_within: Duration,
    ) -> Result<Self, String> {
        let (tx, rx) = mpsc::channel::<(Op, mpsc::Sender<Reply>)>();
        let ns = t.namespace.clone();
        let log = t.command.log.clone();
        let thread_log = log.clone();
        let thread = std::thread::Builder::new()
            .name("controller-pod".into())
            .spawn(move || serve(config, &ns, &thread_log, ready_within, &rx))
            .map_err(|e| format!("starting its thread: {e}"))?;
        let mut p = Self {
            tx,
            thread: Some(thread),
            running: false,
            starts: 0,
            log,
            proxy: t.proxy.clone(),
        };
        p.call(Op::Install(manifests(t)))?;
        p.running = true;
        p.starts = 1;
        Ok(p)
    }

    fn call(&self, op: Op) -> Reply {
        let (reply, answer) = mpsc::channel();
        self.tx
            .send((op, reply))
            .map_err(|_| "its thread ended".to_owned())?;
        answer.recv().map_err(|_| "its thread ended".to_owned())?
    }

    /// Scale it to 1 and wait for its container, unless it runs; its kubeconfig carries
    /// `token` (the proxy's fence lets only this generation through).
    ///
    /// # Errors
    /// Its container did not run.
    pub fn start_again(&mut self, token: &str) -> Result<(), String> {
        if self.running {
            return Ok(());
        }
        self.call(Op::Start(self.proxy.kubeconfig_yaml(token)))?;
        self.running = true;
        self.starts += 1;
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Scale it to 0 and delete its Pod with `grace` (zero: a SIGKILL), keeping its logs.
    pub fn stop(&mut self, grace: Duration) {
        if !self.running {
            return;
        }
        self.running = false;
        if let Err(e) = self.call(Op::Stop(grace)) {
            tracing::warn!("stopping the controller's Pod: {e}");
        }
    }

    /// Whether its container restarted on its own (a crash the kubelet hid).
    pub fn crashed(&self) -> Option<String> {
        self.call(Op::Crashed).ok().flatten()
    }

    pub fn starts(&self) -> u32 {
        self.starts
    }

    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }
}

impl Drop for ControllerPod {
    fn drop(&mut self) {
        // Closing the channel ends the thread; the namespace's deletion removes the rest.
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread: each request in turn, on a runtime of its own.
fn serve(
    config: kube::Config,
    ns: &str,
    log: &std::path::Path,
    ready_within: Duration,
    rx: &mpsc::Receiver<(Op, mpsc::Sender<Reply>)>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let client = runtime
        .as_ref()
        .map_err(ToString::to_string)
        .and_then(|rt| {
            let _enter = rt.enter();
            kube::Client::try_from(config).map_err(|e| e.to_string())
        });
    while let Ok((op, reply)) = rx.recv() {
        let answer = match (&runtime, &client) {
            (Ok(rt), Ok(client)) => rt.block_on(handle(client, ns, log, ready_within, op)),
            (Err(e), _) => Err(format!("no runtime: {e}")),
            (_, Err(e)) => Err(format!("no client: {e}")),
        };
        let _ = reply.send(answer);
    }
}

async fn handle(
    client: &kube::Client,
    ns: &str,
    log: &std::path::Path,
    ready_within: Duration,
    op: Op,
) -> Reply {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    match op {
        Op::Install(objects) => {
            super::install::create_objects(client, ns, &objects).await?;
            wait_running(&pods, ready_within).await.map(|()| None)
        }
        Op::Start(kubeconfig) => {
            // A Pod mounts the Secret as it is when the Pod starts.
            let s: k8s_openapi::api::core::v1::Secret =
                serde_json::from_value(secret(&kubeconfig)).map_err(|e| e.to_string())?;
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
                .replace(NAME, &kube::api::PostParams::default(), &s)
                .await
                .map_err(|e| format!("the controller's kubeconfig Secret: {e}"))?;
            scale(client, ns, 1).await?;
            wait_running(&pods, ready_within).await.map(|()| None)
        }
        Op::Stop(grace) => {
            scale(client, ns, 0).await?;
            let listed = list(&pods).await?;
            for p in &listed {
                save_log(&pods, p, log).await;
            }
            let dp = DeleteParams {
                grace_period_seconds: Some(u32::try_from(grace.as_secs()).unwrap_or(u32::MAX)),
                ..DeleteParams::default()
            };
            for p in &listed {
                let name = p.metadata.name.clone().unwrap_or_default();
                let _ = pods.delete(&name, &dp).await;
            }
            wait_gone(&pods, grace + Duration::from_secs(10)).await;
            Ok(None)
        }
        Op::Crashed => Ok(list(&pods).await?.iter().find_map(restarts)),
    }
}

async fn list(pods: &Api<Pod>) -> Result<Vec<Pod>, String> {
    pods.list(&ListParams::default().labels(&format!("app.kubernetes.io/name={NAME}")))
        .await
        .map(|l| l.items)
        .map_err(|e| format!("listing its Pods: {e}"))
}

async fn scale(client: &kube::Client, ns: &str, replicas: i32) -> Result<(), String> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .map(drop)
        .map_err(|e| format!("scaling its Deployment to {replicas}: {e}"))
}

async fn wait_running(pods: &Api<Pod>, within: Duration) -> Result<(), String> {
    let until = tokio::time::Instant::now() + within;
    loop {
        for p in list(pods).await? {
            if container_state(&p)? {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= until {
            return Err(format!(
                "its Pod was not running within {}s",
                within.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_gone(pods: &Api<Pod>, within: Duration) {
    let until = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < until && list(pods).await.is_ok_and(|l| !l.is_empty()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Append the Pod's log (and its previous container's, after a restart) to the suite's
/// controller log.
async fn save_log(pods: &Api<Pod>, pod: &Pod, log: &std::path::Path) {
    use std::io::Write;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let restarted = restarts(pod).is_some();
    let mut text = String::new();
    for previous in [true, false] {
        if previous && !restarted {
            continue;
        }
        let lp = LogParams {
            previous,
            ..LogParams::default()
        };
        if let Ok(l) = pods.logs(&name, &lp).await {
            let which = if previous {
                " (previous container)"
            } else {
                ""
            };
            text.push_str(&format!("--- Pod {name}{which} ---\n{l}"));
        }
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = f.write_all(text.as_bytes());
    }
}

/// PD's names a controller may use for `service` in `ns` (no cluster DNS needed).
pub fn pd_names(service: &str, ns: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{ns}"),
        format!("{service}.{ns}.svc"),
        format!("{service}.{ns}.svc.cluster.local"),
    ]
}

/// `GET /metrics` from its running Pod's `port`, through the API server (kubelet's port
/// forwarding reaches a listener on the Pod's loopback too, as the operator's `:6060` is).
///
/// # Errors
/// No running Pod, or the forward or the answer fails.
pub async fn scrape(client: &kube::Client, ns: &str, port: u16) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = list(&pods)
        .await?
        .into_iter()
        .find(|p| container_state(p).unwrap_or(false))
        .and_then(|p| p.metadata.name)
        .ok_or_else(|| "the controller's Pod is not running".to_owned())?;
    let mut forward = pods
        .portforward(&pod, &[port])
        .await
        .map_err(|e| format!("port-forward to {pod}:{port}: {e}"))?;
    let mut stream = forward
        .take_stream(port)
        .ok_or_else(|| format!("port-forward to {pod}:{port}: no stream"))?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .map_err(|e| format!("scraping {pod}:{port}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("scraping {pod}:{port}: {e}"))?;
    drop(stream);
    let _ = forward.join().await;
    http_body(&String::from_utf8_lossy(&answer))
        .map_err(|e| format!("scraping {pod}:{port}/metrics: {e}"))
}

/// The body of an HTTP/1.x answer, if its status is 200.
pub fn http_body(answer: &str) -> Result<String, String> {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| "no HTTP answer".to_owned())?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(body.to_owned())
    } else {
        Err(format!("answered {status:?}"))
    }
}

/// The port of a `host:port` metrics address.
pub fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

#[cfg(test)]
mod tests;
