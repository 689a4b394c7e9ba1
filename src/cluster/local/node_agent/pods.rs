//! A Pod's lifecycle on the node: bound, started (init containers, then the main ones),
//! reaped as its containers exit, killed and its deletion finished.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::super::docker_runtime;
use super::runtime::finished_from;
use super::status::{running_status, terminal_status};
use super::{Agent, Finished, KillUnderWay, PodRun, PodRunHandle};

impl Agent {
    pub(super) async fn on_apply(&self, pod: Pod) {
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
        if self
            .refused_for_image(pods, &name, &init, &spec.containers)
            .await
        {
            return;
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

    /// Refuse the whole pod up front if any image is unknown, as a runtime that cannot
    /// pull would: its status says `ErrImageNeverPull`. Returns whether it did.
    async fn refused_for_image(
        &self,
        pods: &Api<Pod>,
        name: &str,
        init: &[Container],
        containers: &[Container],
    ) -> bool {
        for c in init.iter().chain(containers.iter()) {
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
                self.patch_status(pods, name, status).await;
                return true;
            }
        }
        false
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

    /// Collect exited processes, start what comes next, and publish the resulting status.
    pub(super) async fn reap(&self) {
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
}

/// Kill a pod's processes (SIGTERM, `grace`, SIGKILL) off the async threads; returns the
/// finished containers for the final status.
pub(super) async fn kill_pod(
    handle: PodRunHandle,
    grace: Duration,
    under_way: KillUnderWay,
) -> Vec<Finished> {
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
