//! The cluster a command runs on (`--provider`, `--runtime`) and the commands that only
//! boot one: `smoke`, `up`, `serve-cluster`, `build-k8s`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use logbackup_conformance::cluster::local::docker_runtime::DockerRuntime;
use logbackup_conformance::cluster::local::image_map::ImageMap;
use logbackup_conformance::cluster::local::{LocalConfig, LocalProvider, Ports};
use logbackup_conformance::cluster::{ClusterProvider, RunningCluster};
use logbackup_conformance::container::Docker;
use logbackup_conformance::container::images::Image;
use logbackup_conformance::programs::workspace::{self, Program};
use logbackup_conformance::smoke;

use crate::args::*;
use crate::image::*;

/// The job image of TiDB Operator's backup Jobs (fake-br here).
pub(crate) const JOB_IMAGE: &str = lbc_api::names::JOB_IMAGE;

pub(crate) fn local_provider(
    args: &LocalArgs,
    extra: &[(String, PathBuf)],
) -> Result<LocalProvider> {
    let mut image_map =
        ImageMap::parse(args.image_map.iter().map(String::as_str)).context("bad --image-map")?;
    // The targets' entries, unless --image-map says otherwise.
    for (image, program) in extra {
        image_map.insert_missing(image, program.clone());
    }
    image_map.insert_missing(smoke::SHELL_IMAGE, "/bin/sh");
    // fake-br runs the job image and the project's own (as `--provider kubeconfig` names them).
    let fake_br = workspace::locate(Program::FakeBr)?;
    for image in [
        JOB_IMAGE,
        Image::FakeBr.repository(),
        Image::Br.repository(),
    ] {
        image_map.insert_missing(image, fake_br.clone());
    }
    Ok(LocalProvider {
        config: LocalConfig {
            image_map,
            ports: Ports {
                apiserver: args.apiserver_port,
                etcd: args.etcd_port,
                kernel: args.kernel_port,
            },
            keep_run_dir: args.keep,
            node: args.node,
            ..LocalConfig::default()
        },
    })
}

/// The cluster `lbc run` and `lbc explore` use: `--provider`, `--runtime`, `--stress`.
pub(crate) fn cluster_provider(
    args: &RunArgs,
    extra: &[(String, PathBuf)],
) -> Result<Box<dyn ClusterProvider>> {
    use logbackup_conformance::cluster::in_container::{ContainerProvider, Kind};
    if args.provider != ProviderKind::Kubeconfig
        && (args.kubeconfig.is_some()
            || !args.kernel_endpoints.is_empty()
            || args.pod_host.is_some())
    {
        bail!("--kubeconfig, --kernel-endpoints and --pod-host are for --provider kubeconfig");
    }
    match args.provider {
        ProviderKind::Local => {
            let mut provider = local_provider(&args.local, extra)?;
            if let Some(ms) = args.stress {
                provider.config.pod_start_delay = std::time::Duration::from_millis(ms);
            }
            if args.runtime == RuntimeKind::Docker {
                provider.config.docker = Some(docker_runtime(extra)?);
            }
            Ok(Box::new(provider))
        }
        ProviderKind::Kubeconfig => {
            if args.runtime == RuntimeKind::Docker || args.stress.is_some() {
                bail!(
                    "--runtime docker and --stress need --provider local: they change the local node agent, and an existing cluster has its own"
                );
            }
            let endpoints: Vec<String> = args
                .kernel_endpoints
                .iter()
                .map(|e| e.trim().to_owned())
                .filter(|e| !e.is_empty())
                .collect();
            let in_cluster = args.kernel == KernelKind::InCluster;
            let (Some(path), false) = (&args.kubeconfig, endpoints.is_empty() && !in_cluster)
            else {
                bail!(
                    "--provider kubeconfig needs --kubeconfig PATH and --kernel-endpoints HOST:PORT (or --kernel in-cluster)"
                );
            };
            Ok(Box::new(
                logbackup_conformance::cluster::kubeconfig::KubeconfigProvider {
                    path: path.clone(),
                    context: args.context.clone(),
                    kernel_endpoints: endpoints,
                    pod_host: args.pod_host,
                },
            ))
        }
        kind => {
            if args.runtime == RuntimeKind::Docker {
                bail!(
                    "--runtime docker needs --provider local: the node agent of a cluster in a container runs Pods as processes inside it"
                );
            }
            if args.stress.is_some() {
                bail!("--stress needs --provider local (it slows the local node agent)");
            }
            let kind = if kind == ProviderKind::K3s {
                Kind::K3s
            } else {
                let docker = Docker::connect()?;
                build_images(&docker, &Image::ALL)?;
                Kind::Lbc
            };
            let mut p = ContainerProvider::new(kind);
            p.keep = args.local.keep;
            p.image_map = extra.to_vec();
            for entry in &args.local.image_map {
                if let Some((image, path)) = entry.split_once('=')
                    && path != "host"
                {
                    p.image_map.push((image.to_owned(), PathBuf::from(path)));
                }
            }
            Ok(Box::new(p))
        }
    }
}

/// `--runtime docker`: the job image and images mapped to fake-br run from the fake-br
/// image; TiDB Operator's BR image (`pingcap/br`) from the BR stand-in, whose shell runs
/// the init container's copy.
pub(crate) fn docker_runtime(extra: &[(String, PathBuf)]) -> Result<DockerRuntime> {
    let docker = Docker::connect()?;
    build_images(&docker, &[Image::FakeBr, Image::Br])?;
    let mut rt = DockerRuntime::new(docker.program().to_owned());
    rt.insert(JOB_IMAGE, Image::FakeBr.tag());
    rt.insert("pingcap/br", Image::Br.tag());
    for (image, program) in extra {
        if rt.resolve(image).is_none() && program.file_name().is_some_and(|n| n == "fake-br") {
            rt.insert(image.clone(), Image::FakeBr.tag());
        }
    }
    Ok(rt)
}

/// Start the cluster, but give up cleanly on Ctrl-C.
pub(crate) async fn start_or_interrupt(provider: &dyn ClusterProvider) -> Result<RunningCluster> {
    tokio::select! {
        c = provider.start() => Ok(c?),
        _ = logbackup_conformance::programs::process::stop_requested() => bail!("interrupted during start-up; everything started was stopped"),
    }
}

pub(crate) async fn smoke_command(args: LocalArgs) -> Result<()> {
    let provider = local_provider(&args, &[])?;
    let started = std::time::Instant::now();
    let cluster = start_or_interrupt(&provider).await?;
    println!(
        "local control plane up in {:.2}s (kubeconfig {}, kernel {})",
        started.elapsed().as_secs_f64(),
        cluster.kubeconfig.display(),
        cluster.kernel_endpoints.join(",")
    );
    let client = cluster.client()?;
    let outcomes = tokio::select! {
        r = smoke::smoke(&client, "lbc-smoke") => r.map_err(|e| {
            let dead = cluster.dead_components();
            if dead.is_empty() { anyhow::Error::from(e) } else { anyhow::anyhow!("{e}; {}", dead.join("; ")) }
        })?,
        _ = logbackup_conformance::programs::process::stop_requested() => bail!("interrupted; the cluster was stopped"),
    };
    println!(
        "{:<16} {:<9} {:<22} {:>4}  {:>7}",
        "JOB", "CONDITION", "REASON", "EXIT", "TIME"
    );
    for o in &outcomes {
        println!(
            "{:<16} {:<9} {:<22} {:>4}  {:>6.2}s",
            o.name,
            o.condition,
            o.reason.as_deref().unwrap_or("-"),
            o.exit_code.map_or("-".into(), |c| c.to_string()),
            o.elapsed.as_secs_f64()
        );
    }
    let expected = [("Complete", Some(0)), ("Failed", Some(1))];
    for (o, (cond, code)) in outcomes.iter().zip(expected) {
        if o.condition != cond || o.exit_code != code {
            bail!(
                "smoke Job {} ended {} (exit {:?}); expected {cond} (exit {code:?})",
                o.name,
                o.condition,
                o.exit_code
            );
        }
    }
    println!("smoke: ok");
    Ok(())
}

pub(crate) async fn up(args: LocalArgs) -> Result<()> {
    let provider = local_provider(&args, &[])?;
    let cluster = start_or_interrupt(&provider).await?;
    println!("kubeconfig: {}", cluster.kubeconfig.display());
    println!("kernel:     {}", cluster.kernel_endpoints.join(","));
    if let Some(dir) = &cluster.run_dir {
        println!("run dir:    {}", dir.display());
    }
    println!("up; Ctrl-C stops everything");
    logbackup_conformance::programs::process::stop_requested().await;
    drop(cluster);
    Ok(())
}

/// `lbc serve-cluster` (the cluster image's entrypoint).
pub(crate) async fn serve_cluster(
    dir: PathBuf,
    run_id: String,
    image_map: Vec<String>,
) -> Result<()> {
    use logbackup_conformance::cluster::in_container::{DESCRIPTION_FILE, Description, READY_LINE};
    use tokio::signal::unix::{SignalKind, signal};
    let mut provider = local_provider(
        &LocalArgs {
            image_map,
            ..LocalArgs::default()
        },
        &[],
    )?;
    provider.config.run_dir_parent = Some(dir.clone());
    provider.config.run_id = Some(run_id.clone());
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let cluster = tokio::select! {
        c = provider.start() => c?,
        _ = term.recv() => bail!("stopped during start-up"),
    };
    let description = Description {
        kubeconfig: cluster.kubeconfig.clone(),
        kernel_endpoints: cluster.kernel_endpoints.clone(),
        run_dir: cluster.run_dir.clone().unwrap_or_else(|| dir.clone()),
        run_id,
        boot: cluster
            .boot
            .0
            .iter()
            .map(|(n, d)| (n.clone(), d.as_secs_f64()))
            .collect(),
    };
    let path = dir.join(DESCRIPTION_FILE);
    std::fs::write(&path, serde_json::to_vec_pretty(&description)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("{READY_LINE}");
    // A component that dies takes the container with it, so the host sees it.
    let died = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let dead = cluster.dead_components();
            if !dead.is_empty() {
                return dead;
            }
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = logbackup_conformance::programs::process::stop_requested() => {}
        dead = died => {
            cluster.shutdown();
            bail!("a component died: {}", dead.join("; "));
        }
    }
    cluster.shutdown();
    Ok(())
}
