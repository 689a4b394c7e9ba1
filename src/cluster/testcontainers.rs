//! The `container` and `k3s` providers' start-up through testcontainers (cargo feature
//! `containers`, so that a build without it compiles none of testcontainers and its Docker
//! client): the container started, its kubeconfig copied out, `/readyz` checked from the
//! host, and a guard that removes it.

use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::time::Duration;

use testcontainers_modules::k3s::K3s;
use testcontainers_modules::testcontainers::core::{Mount, WaitFor};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerRequest, GenericImage, Image, ImageExt};

use super::in_container::{
    ContainerError, ContainerProvider, DESCRIPTION_FILE, Description, FAKE_BR_INSIDE, Kind,
    READY_LINE,
};
use super::{BootPhases, Capabilities, ClusterGuard, RunningCluster};
use crate::container::images::{self, Image as OurImage};
use crate::container::{Docker, DockerError, RUN_LABEL, api_bridge};

/// What differs between the images: the request, where the kubeconfig is inside, and the
/// hint for a failed start.
struct InContainer<I: Image> {
    request: ContainerRequest<I>,
    kubeconfig_inside: String,
    hint: &'static str,
    image: String,
    /// The run-id label's value: what to sweep when the start fails half-way.
    run_id: String,
}

pub(super) async fn start(p: &ContainerProvider) -> Result<RunningCluster, ContainerError> {
    let t0 = std::time::Instant::now();
    let docker = tokio::task::spawn_blocking(Docker::connect)
        .await
        .map_err(|e| DockerError::Daemon {
            detail: e.to_string(),
        })??;
    let api = docker.server_api_version()?;
    api_bridge::ensure_running(&api).await?;
    let run_id = format!(
        "lbc-{}-{}",
        p_name(p.kind),
        crate::cluster::local::next_run_number()
    );
    let dir = tempfile::Builder::new()
        .prefix(&format!("{run_id}-"))
        .tempdir()
        .map_err(|source| ContainerError::Io {
            what: "creating the shared directory in",
            path: std::env::temp_dir(),
            source,
        })?;
    let shared = dir.path().to_owned();
    let shared_str = shared.to_string_lossy().into_owned();
    let provider = p_name(p.kind);
    let cluster = match p.kind {
        Kind::Lbc => {
            let spec = our_image(p, &docker, &shared_str, &run_id)?;
            in_container(provider, spec, &docker, &shared).await?
        }
        Kind::K3s => in_container(provider, k3s(p, &shared, &run_id), &docker, &shared).await?,
    };
    let (container_id, kubeconfig, description) = cluster;
    let guard = ContainerGuard {
        docker: docker.clone(),
        id: container_id,
        dir: Some(dir),
        keep: p.keep,
    };
    let config = kube_config(&kubeconfig, provider).await?;
    let mut boot: Vec<(String, Duration)> = description
        .as_ref()
        .map(|d| {
            d.boot
                .iter()
                .map(|(n, s)| (format!("inside: {n}"), Duration::from_secs_f64(*s)))
                .collect()
        })
        .unwrap_or_default();
    boot.push((
        "container ready, kubeconfig copied out".into(),
        t0.elapsed(),
    ));
    let (kernel_endpoints, run_dir, local_processes) = match description {
        Some(d) => (d.kernel_endpoints, Some(d.run_dir), true),
        None => (Vec::new(), None, false),
    };
    Ok(RunningCluster {
        provider,
        kubeconfig,
        config,
        kernel_endpoints,
        capabilities: Capabilities {
            local_processes,
            pod_host: None,
            containerd: None,
        },
        run_dir,
        run_id,
        boot: BootPhases(boot),
        guard: Some(Box::new(guard)),
    })
}

/// The `container` provider's container: our cluster image on the host network, the
/// shared directory and each mapped program mounted, fake-br at its place inside.
fn our_image(
    p: &ContainerProvider,
    docker: &Docker,
    shared_str: &str,
    run_id: &str,
) -> Result<InContainer<GenericImage>, ContainerError> {
    let tag = OurImage::Cluster.tag();
    if docker.image_id(&tag).is_none() {
        return Err(ContainerError::NoImage { tag });
    }
    let mut cmd = vec![
        "--dir".to_owned(),
        shared_str.to_owned(),
        "--run-id".to_owned(),
        run_id.to_owned(),
    ];
    let mut request = GenericImage::new(OurImage::Cluster.repository(), images::VERSION)
        .with_wait_for(WaitFor::message_on_stdout(READY_LINE))
        .with_network("host")
        .with_mount(Mount::bind_mount(
            shared_str.to_owned(),
            shared_str.to_owned(),
        ));
    for (image, program) in &p.image_map {
        let inside = if program.file_name().is_some_and(|n| n == "fake-br") {
            PathBuf::from(FAKE_BR_INSIDE)
        } else {
            let s = program.to_string_lossy().into_owned();
            request = request.with_mount(Mount::bind_mount(s.clone(), s));
            program.clone()
        };
        cmd.push("--image-map".into());
        cmd.push(format!("{image}={}", inside.display()));
    }
    let request = request
        .with_cmd(cmd)
        .with_label(RUN_LABEL, run_id.to_owned())
        .with_startup_timeout(p.startup_timeout);
    Ok(InContainer {
        request,
        kubeconfig_inside: format!("{shared_str}/{DESCRIPTION_FILE}"),
        hint: "",
        image: tag,
        run_id: run_id.to_owned(),
    })
}

/// The `k3s` provider's container: rancher/k3s, privileged, on the host network, its
/// kubeconfig written to the shared directory.
fn k3s(p: &ContainerProvider, shared: &Path, run_id: &str) -> InContainer<K3s> {
    let k3s = K3s::default().with_conf_mount(shared);
    let image = format!("{}:{}", k3s.name(), k3s.tag());
    let request = k3s
        .with_network("host")
        .with_privileged(true)
        .with_label(RUN_LABEL, run_id.to_owned())
        .with_startup_timeout(p.startup_timeout);
    InContainer {
        request,
        kubeconfig_inside: "/etc/rancher/k3s/k3s.yaml".into(),
        hint: ". The k3s provider needs the image rancher/k3s from a registry (or \
               loaded with `docker load`) and privileged containers; where either \
               is refused, use the `container` provider",
        image,
        run_id: run_id.to_owned(),
    }
}

fn p_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Lbc => "container",
        Kind::K3s => "k3s",
    }
}

/// Start the container, copy its kubeconfig out; returns the container id, the host
/// kubeconfig and (for our image) the description.
async fn in_container<I: Image>(
    provider: &'static str,
    spec: InContainer<I>,
    docker: &Docker,
    shared: &Path,
) -> Result<(String, PathBuf, Option<Description>), ContainerError> {
    // Until the cluster's guard owns the container, whatever carries this run's label is
    // removed if start-up fails or is dropped (Ctrl-C during the readiness wait):
    // testcontainers leaves a container it created but could not start or wait for.
    let mut pending = SweepUnlessKept(Some(spec.run_id.clone()));
    let started = spec.request.start().await;
    let container = match started {
        Ok(c) => c,
        Err(e) => {
            return Err(ContainerError::Start {
                provider,
                image: spec.image.clone(),
                detail: e.to_string(),
                hint: spec.hint,
            });
        }
    };
    // testcontainers' own drop needs a Tokio runtime at drop time; the guard removes the
    // container itself (CLI, blocking), so this handle is never dropped.
    let container = ManuallyDrop::new(container);
    let id = container.id().to_owned();
    let (kubeconfig, description) =
        copy_out(provider, docker, &id, &spec.kubeconfig_inside, shared).await?;
    pending.0 = None;
    Ok((id, kubeconfig, description))
}

/// Removes the containers of a run (by label) on drop, unless its run id is taken back.
struct SweepUnlessKept(Option<String>);

impl Drop for SweepUnlessKept {
    fn drop(&mut self) {
        if let Some(run_id) = self.0.take() {
            crate::container::sweep(Some(&run_id));
        }
    }
}

/// Copy the kubeconfig (or our description, then the kubeconfig it names) out of the
/// container with `docker cp` (testcontainers' copy future is not `Send`).
async fn copy_out(
    provider: &'static str,
    docker: &Docker,
    id: &str,
    inside: &str,
    shared: &Path,
) -> Result<(PathBuf, Option<Description>), ContainerError> {
    let after = |what: &'static str| {
        move |e: &dyn std::fmt::Display| ContainerError::After {
            provider,
            what,
            detail: e.to_string(),
        }
    };
    let copy = |from: String, to: PathBuf| {
        let (docker, id) = (docker.clone(), id.to_owned());
        async move {
            let target = to.to_string_lossy().into_owned();
            tokio::task::spawn_blocking(move || {
                docker.output(["cp", &format!("{id}:{from}"), &target])
            })
            .await
            .map_err(|e| DockerError::Daemon {
                detail: e.to_string(),
            })?
        }
    };
    let host = shared.join("kubeconfig.copied");
    if inside.ends_with(DESCRIPTION_FILE) {
        let described = shared.join("description.copied");
        copy(inside.to_owned(), described.clone())
            .await
            .map_err(|e| after("its cluster description could not be copied out")(&e))?;
        let bytes = std::fs::read(&described)
            .map_err(|e| after("its cluster description is unreadable")(&e))?;
        let d: Description = serde_json::from_slice(&bytes)
            .map_err(|e| after("its cluster description is unreadable")(&e))?;
        copy(d.kubeconfig.to_string_lossy().into_owned(), host.clone())
            .await
            .map_err(|e| after("its kubeconfig could not be copied out")(&e))?;
        return Ok((host, Some(d)));
    }
    copy(inside.to_owned(), host.clone())
        .await
        .map_err(|e| after("its kubeconfig could not be copied out")(&e))?;
    Ok((host, None))
}

/// A client config from the copied kubeconfig, once `/readyz` answers through it.
async fn kube_config(path: &Path, provider: &'static str) -> Result<kube::Config, ContainerError> {
    let after = |what: &'static str, e: &dyn std::fmt::Display| ContainerError::After {
        provider,
        what,
        detail: e.to_string(),
    };
    let kc = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| after("its kubeconfig is unreadable", &e))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| after("its kubeconfig is unusable", &e))?;
    let client = kube::Client::try_from(config.clone())
        .map_err(|e| after("no client could be built", &e))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let req = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| after("no /readyz request", &e))?;
        match client.request_text(req).await {
            Ok(t) if t.trim() == "ok" => return Ok(config),
            Ok(t) if std::time::Instant::now() > deadline => {
                return Err(after("its /readyz never said ok", &t));
            }
            Err(e) if std::time::Instant::now() > deadline => {
                return Err(after("its /readyz never answered", &e));
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Removes the container (and the shared directory) when the cluster is dropped.
struct ContainerGuard {
    docker: Docker,
    id: String,
    dir: Option<tempfile::TempDir>,
    keep: bool,
}

impl ClusterGuard for ContainerGuard {
    fn dead_components(&self) -> Vec<String> {
        match self.docker.output([
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            &self.id,
        ]) {
            Ok(s) if s.starts_with("running") => Vec::new(),
            Ok(s) => {
                let tail = self
                    .docker
                    .output(["logs", "--tail", "3", &self.id])
                    .unwrap_or_default();
                vec![format!(
                    "the cluster container {} is {s}; its log ends with: {}",
                    short(&self.id),
                    tail.replace('\n', " | ")
                )]
            }
            Err(e) => vec![format!("the cluster container {}: {e}", short(&self.id))],
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        self.docker
            .remove_containers(std::slice::from_ref(&self.id));
        if let Some(dir) = self.dir.take() {
            if self.keep {
                let kept = dir.keep();
                tracing::info!(dir = %kept.display(), "keeping the cluster container's directory");
            } else {
                let _ = dir.close();
            }
        }
    }
}
