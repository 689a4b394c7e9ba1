//! How a container runs: as a local process chosen through the image map, or under
//! `--runtime docker` as a Docker container; and how its end is read.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::super::docker_runtime::{self, RunContext};
use super::env::literal_env;
use super::{Agent, ContainerRun, DockerContainer, Finished, PodRun};
use crate::programs::process::{Spec, Supervised, describe_exit};

impl Agent {
    /// The local image `image` runs from under Docker, if the Docker runtime serves it.
    pub(super) fn docker_image(&self, image: &str) -> Option<&str> {
        self.config.docker.as_ref()?.resolve(image)
    }

    /// A token for the Pod's service account, the cluster CA and the namespace, written
    /// where a Docker container gets them mounted (kubelet's projected volume). `None`
    /// when the account or the token API is missing: the kubeconfig still works.
    pub(super) async fn service_account(&self, pod: &Pod, ns: &str, dir: &Path) -> Option<PathBuf> {
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

    pub(super) fn spawn(
        &self,
        run: &mut PodRun,
        c: &Container,
        env: &[(OsString, OsString)],
        init: bool,
    ) {
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

pub(super) fn finished_from(c: &ContainerRun, status: std::process::ExitStatus) -> Finished {
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
