//! `lbc`: the logbackup-conformance harness CLI.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use logbackup_conformance::cluster::local::binaries::{self as k8s_binaries, BinaryLookup};
use logbackup_conformance::cluster::local::docker_runtime::DockerRuntime;
use logbackup_conformance::cluster::local::image_map::ImageMap;
use logbackup_conformance::cluster::local::{LocalConfig, LocalProvider, Ports};
use logbackup_conformance::cluster::{ClusterProvider, RunningCluster};
use logbackup_conformance::container::Docker;
use logbackup_conformance::container::images::{self, Image};
use logbackup_conformance::judge::metrics::MetricNames;
use logbackup_conformance::run::binaries::{self, Program};
use logbackup_conformance::{bench, smoke, suite};

/// The job image of TiDB Operator's backup Jobs (fake-br here).
const JOB_IMAGE: &str = lbc_api::names::JOB_IMAGE;

#[derive(Parser, Debug)]
#[command(
    name = "lbc",
    version,
    about = "Conformance harness for TiDB Operator's log backup retry"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `logbackup_conformance=debug`.
    /// (kube-client's per-request errors are off by default: readiness polling expects them.)
    #[arg(
        long,
        global = true,
        env = "LBC_LOG",
        default_value = "warn,kube_client::client::builder=off"
    )]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug, Clone, Default)]
struct LocalArgs {
    /// Map an image to a local executable (IMAGE=/path/to/program); repeatable.
    #[arg(long = "image-map", value_name = "IMAGE=PATH")]
    image_map: Vec<String>,
    /// kube-apiserver port (0: any free port).
    #[arg(long, default_value_t = 0)]
    apiserver_port: u16,
    /// API etcd client port (0: any free port).
    #[arg(long, default_value_t = 0)]
    etcd_port: u16,
    /// Kernel (PD) etcd client port (0: any free port).
    #[arg(long, default_value_t = 0)]
    kernel_port: u16,
    /// Keep the run directory (logs, kubeconfig) after exit, and (`run`) every suite's
    /// bundle, passed or failed.
    #[arg(long)]
    keep: bool,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Suite files or directories (default: suites/).
    paths: Vec<PathBuf>,
    /// Run only suites naming this clause (e.g. LBR-3), label or name; repeatable (any matches).
    #[arg(long)]
    selector: Vec<String>,
    /// Stop starting suites after the first failure.
    #[arg(long)]
    fail_fast: bool,
    /// Suites run at once (default: 8 per core, bounded by the memory available at 256 MiB
    /// per suite; they mostly wait on timers). The longest suites start first.
    #[arg(long)]
    concurrency: Option<usize>,
    /// The controller under test: a target file or name (targets/NAME.yaml, or a built-in:
    /// reference, reference-operator); repeatable for a clause × target matrix. Default:
    /// reference.
    #[arg(long = "target", value_name = "TARGET")]
    targets: Vec<String>,
    /// A target setting, KEY=VALUE (e.g. bin=/path/to/tidb-controller-manager); given to
    /// every target that has the key, or TARGET:KEY=VALUE for one.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Another controller without a target file: a command template with {kubeconfig},
    /// {namespace}, {kernel}, {job_image}, {metrics_addr}. Map its job image with --image-map.
    #[arg(long, conflicts_with = "targets")]
    controller_cmd: Option<String>,
    /// The controller's metric names per LBR-15 role, for `metrics` assertions:
    /// `job-failures=NAME,retries=NAME,kernel-recoveries=NAME` (default: the target's).
    #[arg(long, value_parser = parse_metric_names)]
    metric_names: Option<MetricNames>,
    /// Extra arguments for the controller, e.g. --controller-flag=--retry-strategy=workqueue.
    #[arg(long = "controller-flag", allow_hyphen_values = true)]
    controller_flags: Vec<String>,
    /// Compare each suite's behaviour fingerprint (messages, all events) with
    /// tests/baselines/NAME/, recording it where there is none: what changed between two
    /// builds of the same controller. Not a conformance verdict.
    #[arg(long, value_name = "NAME", value_parser = parse_baseline_name)]
    baseline: Option<String>,
    /// Let the controller talk to the apiserver directly, without the harness's API proxy
    /// (no API traffic in the bundles; `fault` steps then fail).
    #[arg(long)]
    direct_api: bool,
    /// Stress mode: the API proxy adds latency to every request of the controller (0–2×
    /// this many ms), the node agent delays each Pod start as much, and 9 suites per core
    /// run at once (8 without it): ordering races show up.
    #[arg(long, value_name = "MS", num_args = 0..=1, default_missing_value = "20")]
    stress: Option<u64>,
    /// `shared`: suites share the cluster's kernel (PD's etcd), their Backups named
    /// `<hash of the suite>-<name>`. `per-suite`: each suite starts an etcd of its own and
    /// keeps its declared names (local and container providers; ≈ 0.11 s of CPU a suite).
    #[arg(long, value_enum, default_value_t = KernelKind::Shared)]
    kernel: KernelKind,
    /// With --baseline: overwrite the baseline with this run's fingerprints.
    #[arg(long, requires = "baseline")]
    baseline_update: bool,
    /// Where the cluster runs: `local` (processes on this machine), `container` (the same
    /// control plane inside one container of the project's cluster image, built on
    /// demand), `k3s` (rancher/k3s in a privileged container, where it can be pulled),
    /// `kubeconfig` (an existing cluster: --kubeconfig and --kernel-endpoints).
    #[arg(long, value_enum, default_value_t = ProviderKind::Local)]
    provider: ProviderKind,
    /// `--provider kubeconfig`: the existing cluster's kubeconfig. Its nodes must run the
    /// job image (`lbc image save` writes fake-br's).
    #[arg(long, value_name = "PATH", required_if_eq("provider", "kubeconfig"))]
    kubeconfig: Option<PathBuf>,
    /// `--provider kubeconfig`: the kubeconfig's context (default: its current one).
    #[arg(long, value_name = "NAME", requires = "kubeconfig")]
    context: Option<String>,
    /// `--provider kubeconfig`: the kernel (PD's etcd client URL or HOST:PORT), reachable
    /// from this machine and from the cluster's Pods; comma-separated for several. Suites
    /// share it, so each Backup is named `<hash of the suite>-<name>`.
    #[arg(
        long,
        value_name = "ENDPOINTS",
        value_delimiter = ',',
        required_if_eq("provider", "kubeconfig")
    )]
    kernel_endpoints: Vec<String>,
    /// How the local provider's node agent runs Pods: `process` (local programs, the
    /// image map) or `docker` (containers from the project's images, built on demand;
    /// other images fall back to processes).
    #[arg(long, value_enum, default_value_t = RuntimeKind::Process)]
    runtime: RuntimeKind,
    /// Where report.json, junit.xml, index.html and debug bundles go.
    #[arg(long, default_value = "target/lbc-report")]
    report_dir: PathBuf,
    /// Which reports to write (comma-separated): `json` (report.json), `junit`
    /// (junit.xml), `html` (index.html: the clause matrix and each suite's timeline). The
    /// progress lines and the summary always go to the terminal.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "json,junit,html"
    )]
    report: Vec<ReportKind>,
    /// Global watchdog, seconds.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
    #[command(flatten)]
    local: LocalArgs,
}

/// `--provider`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ProviderKind {
    #[default]
    Local,
    Container,
    K3s,
    Kubeconfig,
}

/// `--kernel`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
enum KernelKind {
    #[default]
    Shared,
    PerSuite,
}

/// `--report`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ReportKind {
    Json,
    Junit,
    Html,
}

/// `--runtime`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
enum RuntimeKind {
    #[default]
    Process,
    Docker,
}

/// The project's images, by short name.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ImageName {
    FakeBr,
    Br,
    Cluster,
}

impl From<ImageName> for Image {
    fn from(n: ImageName) -> Self {
        match n {
            ImageName::FakeBr => Image::FakeBr,
            ImageName::Br => Image::Br,
            ImageName::Cluster => Image::Cluster,
        }
    }
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Build the images FROM scratch (static fake-br, busybox, the control plane) with
    /// `docker import`; an image whose inputs did not change is kept.
    Build {
        /// Which (default: all).
        #[arg(value_enum)]
        images: Vec<ImageName>,
    },
    /// Write the images as archives for `kind load image-archive` / `k3s ctr images import`.
    Save {
        /// Which (default: fake-br and br, what a cluster's Jobs run).
        #[arg(value_enum)]
        images: Vec<ImageName>,
        /// Directory to write into.
        #[arg(long, default_value = "target/lbc-images")]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the conformance suites (default: all of suites/) against the controller under
    /// test (default: the reference controller) on the local control plane.
    Run(Box<RunArgs>),
    /// Boot the local control plane, run a succeeding and a failing Job, print what the
    /// Job controller made of them, and tear down.
    Smoke {
        #[command(flatten)]
        local: LocalArgs,
    },
    /// Boot the local control plane and keep it up until Ctrl-C; prints the kubeconfig path.
    Up {
        #[command(flatten)]
        local: LocalArgs,
    },
    /// Check what this machine has of what the harness needs (Go, the control-plane cache,
    /// Docker, Chromium, root, disk, memory) and print the fix for whatever is missing.
    Doctor,
    /// Print the Backup CRD, or write it to fixtures/crds/ with --write.
    Crds {
        #[arg(long)]
        write: bool,
        /// Directory to write into.
        #[arg(long, default_value = "fixtures/crds")]
        dir: PathBuf,
    },
    /// Build (or find) kube-apiserver and kube-controller-manager and print where they are.
    BuildK8s {
        /// Rebuild even if the cache holds a good build.
        #[arg(long)]
        force: bool,
        /// Also verify the cached files' SHA-256 against the manifest.
        #[arg(long)]
        verify: bool,
    },
    /// List the suites with their clauses and labels.
    List {
        /// Suite files or directories (default: suites/).
        paths: Vec<PathBuf>,
    },
    /// Check suite files: every problem with file, line, column and field.
    Lint {
        /// Suite files or directories (default: suites/).
        paths: Vec<PathBuf>,
    },
    /// Print the JSON Schema of suite files, or of target files with `target` (for editors).
    Schema {
        #[arg(value_parser = ["suite", "target"], default_value = "suite")]
        of: String,
    },
    /// Check target files (or built-in names) and their settings (`--set`).
    LintTarget {
        targets: Vec<String>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Which clauses and suites changed verdict between two runs' report.json; exits
    /// non-zero when something that passed fails now (the release gate).
    Compare { old: PathBuf, new: PathBuf },
    /// Restart-equivalence (LBR-8): run each suite once to learn the controller's writes,
    /// then once per write with the controller SIGKILLed just before and just after it,
    /// and report every run whose contract outcome differs from the uninterrupted one.
    Explore {
        #[command(flatten)]
        run: Box<RunArgs>,
        /// Probe runs per suite at most (spread over the write points).
        #[arg(long, default_value_t = 60)]
        max_runs: usize,
        /// Probe runs at once (default: 6 per core, bounded by memory as `lbc run` is).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Turn a field bug report into a suite: the Backup (`kubectl get backup NAME -o yaml`
    /// or -o json), its events (-o yaml, -o json, or the `kubectl get events` table), its
    /// Jobs, a kernel dump (`etcdctl get --prefix /tidb/br-stream/`). The suite asserts what
    /// the contract says should have happened; run it with `lbc run FILE`.
    Replay {
        /// The report's files, in any order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to write the suite (its name is the file's stem).
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Build or save the project's container images.
    Image {
        #[command(subcommand)]
        what: ImageCommand,
    },
    /// Inside the cluster image: run the local control plane, describe it in DIR and print
    /// the readiness line; stop on SIGTERM.
    #[command(hide = true)]
    ServeCluster {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        run_id: String,
        #[arg(long = "image-map", value_name = "IMAGE=PATH")]
        image_map: Vec<String>,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// `lbc run` repeated (each with a fresh control plane), and the longest suites run
    /// alone: wall times, the ratio to the longest suite alone, flaky runs, retry lateness.
    Run {
        /// Full runs (20 for a flakiness series).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Runs of each candidate longest suite alone.
        #[arg(long, default_value_t = 3)]
        alone: usize,
        /// Extra arguments for every `lbc run` (e.g. --concurrency=34).
        #[arg(long = "run-arg", allow_hyphen_values = true)]
        run_args: Vec<String>,
    },
    /// N log backups whose first attempt fails: retry lateness (median, p99), API writes
    /// per retry cycle, and the reference controller's peak RSS.
    Retry {
        #[arg(long, default_value_t = 200)]
        backups: usize,
        /// minRetryDuration of every Backup.
        #[arg(long, default_value = "5s")]
        min_retry: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Backups created per second (0: as fast as the API takes them). Near or above
        /// what the machine carries (≈ 5/s on 2 cores) requests queue and the lateness
        /// measures that queue (on 2 cores: p99 669 ms at 4/s, 224 ms at 3/s).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Keep the run directory: the audit log (every write with its time), the
        /// controller's log (`bench-controller.log`), the control plane's logs.
        #[arg(long)]
        keep: bool,
    },
    /// The node agent's runtimes side by side: Jobs running `sh -c true` as processes (the
    /// default) and as Docker containers, Job create → Pod Succeeded, median and p99.
    Runtime {
        #[arg(long, default_value_t = 20)]
        jobs: usize,
    },
    /// The API proxy's cost (latency added per request, median and p99) and faithfulness
    /// (a watch through it sees every event, in order, as a direct one does).
    Proxy {
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// ConfigMaps created, updated and deleted under both watches.
        #[arg(long, default_value_t = 200)]
        objects: usize,
    },
    /// Median warm boot time of the local control plane and peak resident memory.
    Boot {
        #[arg(long, default_value_t = 5)]
        boots: usize,
        /// `local`, or `container` (the same control plane in a container: cold and warm
        /// start-up through testcontainers).
        #[arg(long, value_enum, default_value_t = ProviderKind::Local)]
        provider: ProviderKind,
        /// Also run the smoke Jobs on each boot (memory under load).
        #[arg(long)]
        with_jobs: bool,
    },
}

fn local_provider(args: &LocalArgs, extra: &[(String, PathBuf)]) -> Result<LocalProvider> {
    let mut image_map =
        ImageMap::parse(args.image_map.iter().map(String::as_str)).context("bad --image-map")?;
    // The targets' entries, unless --image-map says otherwise.
    for (image, program) in extra {
        if image_map.resolve(image).is_none() {
            image_map.insert(image.clone(), program.clone());
        }
    }
    if image_map.resolve(smoke::SHELL_IMAGE).is_none() {
        image_map.insert(smoke::SHELL_IMAGE, "/bin/sh");
    }
    // The job image runs fake-br.
    if image_map.resolve(JOB_IMAGE).is_none() {
        image_map.insert(JOB_IMAGE, binaries::locate(Program::FakeBr)?);
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
            ..LocalConfig::default()
        },
    })
}

/// The cluster `lbc run` and `lbc explore` use: `--provider`, `--runtime`, `--stress`.
fn cluster_provider(
    args: &RunArgs,
    extra: &[(String, PathBuf)],
) -> Result<Box<dyn ClusterProvider>> {
    use logbackup_conformance::cluster::container::{ContainerProvider, Kind};
    if args.provider != ProviderKind::Kubeconfig
        && (args.kubeconfig.is_some() || !args.kernel_endpoints.is_empty())
    {
        bail!("--kubeconfig and --kernel-endpoints are for --provider kubeconfig");
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
            let (Some(path), false) = (&args.kubeconfig, endpoints.is_empty()) else {
                bail!(
                    "--provider kubeconfig needs --kubeconfig PATH and --kernel-endpoints HOST:PORT"
                );
            };
            Ok(Box::new(
                logbackup_conformance::cluster::kubeconfig::KubeconfigProvider {
                    path: path.clone(),
                    context: args.context.clone(),
                    kernel_endpoints: endpoints,
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
fn docker_runtime(extra: &[(String, PathBuf)]) -> Result<DockerRuntime> {
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

/// Build `images` (kept when up to date), printing one line each.
fn build_images(docker: &Docker, images: &[Image]) -> Result<()> {
    let inputs = images::Inputs::locate()?;
    for b in images::build(docker, &inputs, images)? {
        eprintln!(
            "image {}: {} ({:.1}s)",
            b.tag,
            if b.rebuilt { "built" } else { "up to date" },
            b.seconds
        );
    }
    Ok(())
}

fn image_command(what: ImageCommand) -> Result<()> {
    let docker = Docker::connect()?;
    match what {
        ImageCommand::Build { images } => {
            let images: Vec<Image> = if images.is_empty() {
                Image::ALL.to_vec()
            } else {
                images.into_iter().map(Image::from).collect()
            };
            let inputs = images::Inputs::locate()?;
            for b in images::build(&docker, &inputs, &images)? {
                let size = docker
                    .output(["image", "inspect", "--format", "{{.Size}}", &b.tag])
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .map_or_else(String::new, |b| format!(", {:.1} MB", b as f64 / 1e6));
                println!(
                    "{} {} ({:.1}s{size}) {}",
                    b.tag,
                    if b.rebuilt { "built" } else { "up to date" },
                    b.seconds,
                    &b.id[..b.id.len().min(19)]
                );
            }
        }
        ImageCommand::Save { images, dir } => {
            let images: Vec<Image> = if images.is_empty() {
                vec![Image::FakeBr, Image::Br]
            } else {
                images.into_iter().map(Image::from).collect()
            };
            for path in images::save(&docker, &images, &dir)? {
                println!("{}", path.display());
            }
        }
    }
    Ok(())
}

/// `lbc bench runtime`.
async fn bench_runtime(jobs: usize) -> Result<()> {
    use logbackup_conformance::bench::runtime::measure;
    if jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let mut reports = Vec::new();
    for docker in [false, true] {
        let mut provider = local_provider(&LocalArgs::default(), &[])?;
        let (name, image) = if docker {
            let mut rt = docker_runtime(&[])?;
            rt.insert("lbc.local/bench-shell", Image::Br.tag());
            provider.config.docker = Some(rt);
            ("docker", "lbc.local/bench-shell")
        } else {
            ("process", smoke::SHELL_IMAGE)
        };
        let cluster = start_or_interrupt(&provider).await?;
        // One unmeasured Job: first-use costs (image layers, page cache) are not the runtime's.
        measure(&cluster, name, image, docker, 1, "warm")
            .await
            .map_err(anyhow::Error::msg)?;
        let r = measure(&cluster, name, image, docker, jobs, "t")
            .await
            .map_err(anyhow::Error::msg)?;
        let (median, p99, max) = r.figures();
        println!(
            "{name:>7}: {jobs} Jobs, Job create -> Pod Succeeded median {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            median * 1e3,
            p99 * 1e3,
            max * 1e3
        );
        reports.push(median);
        drop(cluster);
    }
    if let [process, docker] = reports[..] {
        println!(
            "ratio of medians docker / process: {:.2} (the process runtime stays the default)",
            docker / process
        );
    }
    Ok(())
}

/// `lbc serve-cluster` (the cluster image's entrypoint).
async fn serve_cluster(dir: PathBuf, run_id: String, image_map: Vec<String>) -> Result<()> {
    use logbackup_conformance::cluster::container::{DESCRIPTION_FILE, Description, READY_LINE};
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
        _ = tokio::signal::ctrl_c() => {}
        dead = died => {
            cluster.shutdown();
            bail!("a component died: {}", dead.join("; "));
        }
    }
    cluster.shutdown();
    Ok(())
}

/// `lbc bench run`: the two longest suites (by their designed waits) alone, then whole runs.
fn bench_run(runs: usize, alone: usize, run_args: &[String]) -> Result<()> {
    use logbackup_conformance::bench::run::{quantile, sample, spread};
    use logbackup_conformance::run::all::estimate;
    if runs == 0 || alone == 0 {
        bail!("--runs and --alone must be at least 1");
    }
    let lbc = std::env::current_exe().context("locating lbc")?;
    let scratch = tempfile::tempdir().context("a scratch directory")?;
    let mut suites = load_suites(&[])?;
    suites.sort_by_key(|(_, s)| std::cmp::Reverse(estimate(s)));
    let mut longest: Option<(String, f64)> = None;
    for (path, s) in suites.iter().take(2) {
        let mut walls = Vec::new();
        for i in 0..alone {
            let dir = scratch.path().join(format!("alone-{}-{i}", s.name));
            let args = vec![path.display().to_string()];
            let r = sample(&lbc, &args, &dir)?;
            eprintln!("alone {} {}/{alone}: {:.1}s", s.name, i + 1, r.suites_wall);
            walls.push(r.suites_wall);
        }
        if let Some((min, median, max)) = spread(&mut walls) {
            println!(
                "{} alone: min {min:.1}s, median {median:.1}s, max {max:.1}s",
                s.name
            );
            if longest.as_ref().is_none_or(|(_, m)| median > *m) {
                longest = Some((s.name.clone(), median));
            }
        }
    }
    let mut walls = Vec::new();
    let mut totals = Vec::new();
    let mut lateness = Vec::new();
    let mut flaky = 0;
    // A failed run's reports (bundles, timelines) outlive the scratch directory; like
    // target/lbc-report, the directory holds the latest series only.
    let kept = std::path::Path::new("target").join("lbc-bench-run");
    let _ = std::fs::remove_dir_all(&kept);
    for i in 0..runs {
        let dir = scratch.path().join(format!("run-{}", i + 1));
        let r = match sample(&lbc, run_args, &dir) {
            Ok(r) => r,
            Err(e) => {
                // A run that left no report is the one most worth reading.
                let to = kept.join(format!("run-{}", i + 1));
                if copy_dir(&dir, &to).is_ok() {
                    eprintln!(
                        "run {}/{runs} failed; what it left: {}",
                        i + 1,
                        to.display()
                    );
                }
                return Err(e.into());
            }
        };
        eprintln!(
            "run {}/{runs}: suites {:.1}s, process {:.1}s, CPU stolen {}, failed: {}",
            i + 1,
            r.suites_wall,
            r.total.as_secs_f64(),
            r.steal.map_or("?".to_owned(), |s| format!("{s:.2}s")),
            if r.failed.is_empty() {
                "none".to_owned()
            } else {
                r.failed.join(", ")
            }
        );
        if !r.failed.is_empty() {
            flaky += 1;
            let to = kept.join(format!("run-{}", i + 1));
            match copy_dir(&dir, &to) {
                Ok(()) => eprintln!("  its reports: {}", to.display()),
                Err(e) => eprintln!("  could not keep its reports in {}: {e}", to.display()),
            }
        }
        walls.push(r.suites_wall);
        totals.push(r.total.as_secs_f64());
        lateness.extend(r.lateness);
    }
    let (wmin, wmed, wmax) = spread(&mut walls).unwrap_or_default();
    let (tmin, tmed, tmax) = spread(&mut totals).unwrap_or_default();
    lateness.sort_by(f64::total_cmp);
    println!(
        "whole run over {runs} runs: suites min {wmin:.1}s, median {wmed:.1}s, max {wmax:.1}s; process (boot, teardown included) min {tmin:.1}s, median {tmed:.1}s, max {tmax:.1}s"
    );
    if let Some((name, alone)) = longest {
        println!(
            "ratio median whole run / longest suite alone ({name}, median {alone:.1}s): {:.2} (goal <= 1.5)",
            wmed / alone
        );
    }
    println!(
        "runs with a failure: {flaky}/{runs}; retry lateness seen by the harness over {} retries: median {:.2}s, p99 {:.2}s, max {:.2}s (LBR-3 bound 2 s)",
        lateness.len(),
        quantile(&lateness, 0.5).unwrap_or(0.0),
        quantile(&lateness, 0.99).unwrap_or(0.0),
        quantile(&lateness, 1.0).unwrap_or(0.0),
    );
    Ok(())
}

/// Copy the directory tree `from` to `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// Start the cluster, but give up cleanly on Ctrl-C.
async fn start_or_interrupt(provider: &dyn ClusterProvider) -> Result<RunningCluster> {
    tokio::select! {
        c = provider.start() => Ok(c?),
        _ = tokio::signal::ctrl_c() => bail!("interrupted during start-up; everything started was stopped"),
    }
}

/// The suites of `args.paths` that `args.selector` names (all without one).
fn selected_suites(args: &RunArgs) -> Result<Vec<(PathBuf, logbackup_conformance::suite::Suite)>> {
    let mut suites = load_suites(&args.paths)?;
    if !args.selector.is_empty() {
        suites.retain(|(_, s)| {
            args.selector
                .iter()
                .any(|sel| s.clauses.contains(sel) || s.labels.contains(sel) || s.name == *sel)
        });
    }
    if suites.is_empty() {
        bail!("no suite matches {:?}", args.selector);
    }
    Ok(suites)
}

/// The run configurations of `args` (one per target), with their image map entries, CRD
/// directories and whether suites may run side by side.
struct Targets {
    configs: Vec<logbackup_conformance::run::RunConfig>,
    image_map: Vec<(String, PathBuf)>,
    crds: Vec<Option<PathBuf>>,
    parallel: bool,
}

fn target_configs(args: &RunArgs, root: &std::path::Path) -> Result<Targets> {
    use logbackup_conformance::run::{ControllerSpec, RunConfig};
    let mut configs: Vec<RunConfig> = Vec::new();
    let mut image_map: Vec<(String, PathBuf)> = Vec::new();
    let mut crds: Vec<Option<PathBuf>> = Vec::new();
    let mut parallel = true;
    if let Some(t) = &args.controller_cmd {
        check_machine(args, false)?;
        prepare_control_plane(args);
        let mut cfg = RunConfig::new(ControllerSpec::template(t).map_err(anyhow::Error::msg)?);
        cfg.controller
            .args
            .extend(args.controller_flags.iter().cloned());
        configs.push(cfg);
        crds.push(None);
    } else {
        let names = if args.targets.is_empty() {
            vec!["reference".to_owned()]
        } else {
            args.targets.clone()
        };
        let resolved = resolve_targets(&names, &args.sets, root)?;
        // Before anything is built or started: what this machine lacks, in one line.
        check_machine(args, resolved.iter().any(|t| t.isolate))?;
        prepare_control_plane(args);
        for t in resolved {
            let mut cfg = RunConfig::from_target(&t).map_err(anyhow::Error::msg)?;
            cfg.controller
                .args
                .extend(args.controller_flags.iter().cloned());
            // Another build of the reference (e.g. a planted bug) is not "the reference".
            if t.program.starts_with("builtin:") && std::env::var_os("LBC_CONTROLLER_BIN").is_some()
            {
                cfg.controller.label = "override".into();
            }
            for (image, program) in &t.image_map {
                let path = match program.as_str() {
                    "builtin:fake-br" => binaries::locate(Program::FakeBr)?,
                    p => PathBuf::from(p),
                };
                image_map.push((image.clone(), path));
            }
            parallel &= t.parallel;
            crds.push(t.crds.clone());
            configs.push(cfg);
        }
    }
    for cfg in &mut configs {
        cfg.api_proxy = !args.direct_api;
        cfg.shared_kernel = args.kernel == KernelKind::Shared;
        // What --keep keeps is for reading afterwards: every suite's bundle, passed or not.
        cfg.keep_bundles = args.local.keep;
        if let Some(ms) = args.stress {
            cfg.api_latency = logbackup_conformance::proxy::Latency {
                base: std::time::Duration::from_millis(ms),
            };
        }
    }
    Ok(Targets {
        configs,
        image_map,
        crds,
        parallel,
    })
}

/// What `lbc run` and `lbc explore` need of the machine for these arguments (`lbc doctor`'s
/// checks, only those).
fn check_machine(args: &RunArgs, isolate: bool) -> Result<()> {
    use logbackup_conformance::doctor::{Need, require};
    let mut needs = vec![Need::Resources];
    match args.provider {
        ProviderKind::Local => needs.push(Need::ControlPlane),
        ProviderKind::Container => needs.extend([Need::ControlPlane, Need::Docker]),
        ProviderKind::K3s => needs.push(Need::Docker),
        ProviderKind::Kubeconfig => {}
    }
    if args.runtime == RuntimeKind::Docker && !needs.contains(&Need::Docker) {
        needs.push(Need::Docker);
    }
    if isolate {
        needs.push(Need::Root);
    }
    for c in require(&needs)? {
        if c.status == logbackup_conformance::doctor::Status::Warn {
            eprintln!("lbc: note: {}", c.line());
        }
    }
    Ok(())
}

/// A first run's Go build of the control plane, started now so that it overlaps the cargo
/// build of the workspace's programs (the provider waits for it on the cache's lock).
fn prepare_control_plane(args: &RunArgs) {
    if matches!(args.provider, ProviderKind::Local | ProviderKind::Container) {
        let lookup = logbackup_conformance::cluster::local::binaries::BinaryLookup::from_env();
        // Detached: the thread ends with the build; the provider reports the outcome.
        drop(logbackup_conformance::cluster::local::binaries::build_in_background(lookup));
    }
}

/// `lbc doctor`: every check; fails when the main command (`lbc run` on the local control
/// plane) cannot run.
fn doctor() -> Result<()> {
    use logbackup_conformance::doctor::{Facts, Need, Status, evaluate, render};
    let checks = evaluate(&Facts::probe(&Need::ALL), &Need::ALL);
    print!("{}", render(&checks));
    let missing = |needs: &[Need]| {
        checks
            .iter()
            .filter(|c| c.status == Status::Missing && needs.contains(&c.need))
            .map(|c| c.what)
            .collect::<Vec<_>>()
    };
    let main = missing(&[Need::ControlPlane, Need::Resources]);
    let optional = missing(&[Need::Docker, Need::Chromium, Need::Root]);
    if !main.is_empty() {
        bail!(
            "`lbc run` cannot run here: {} missing (fixes above)",
            main.join(", ")
        );
    }
    if optional.is_empty() {
        println!("everything is here: `lbc run` and every test feature can run");
    } else {
        println!(
            "`lbc run` can run here; missing for the parts named above: {}",
            optional.join(", ")
        );
    }
    Ok(())
}

async fn explore_suites(args: RunArgs, max_runs: usize, jobs: Option<usize>) -> Result<()> {
    use logbackup_conformance::explore::{Budget, explore};
    use logbackup_conformance::run;
    use std::sync::Arc;

    if args.direct_api {
        bail!(
            "lbc explore crashes the controller at its API requests: it needs the API proxy (drop --direct-api)"
        );
    }
    let suites = selected_suites(&args)?;
    let root = std::env::current_dir()?;
    let Targets {
        mut configs,
        image_map,
        crds,
        parallel,
    } = target_configs(&args, &root)?;
    if configs.len() != 1 {
        bail!("lbc explore explores one controller at a time; give one --target");
    }
    let mut cfg = configs.remove(0);
    cfg.report_dir = args.report_dir.join("explore");
    std::fs::create_dir_all(&cfg.report_dir)
        .with_context(|| format!("creating {}", cfg.report_dir.display()))?;
    let provider = cluster_provider(&args, &image_map)?;
    let cluster = Arc::new(start_or_interrupt(provider.as_ref()).await?);
    if crds[0].is_some() || !cfg.objects.is_empty() {
        run::install::install_crds(&cluster.client()?, crds[0].as_deref(), &cfg.objects)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    let budget = Budget {
        max_runs,
        jobs: if parallel {
            jobs.unwrap_or_else(|| {
                run::all::concurrency_at(
                    max_runs,
                    run::all::mem_available_kib(),
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                    run::all::EXPLORE_SUITES_PER_CORE,
                )
            })
        } else {
            1
        },
    };
    let started = std::time::Instant::now();
    let (mut explored, mut differing, mut unreached, mut points) = (0, 0, 0, 0);
    let mut errors = 0;
    let mut all = Vec::new();
    for (path, suite) in &suites {
        let say = |line: &str| println!("{line}");
        let work = explore(&cluster, suite, path, &root, &cfg, &budget, &say);
        let e = tokio::select! {
            r = tokio::time::timeout(std::time::Duration::from_secs(args.timeout), work) => match r {
                Ok(r) => r,
                Err(_) => bail!("watchdog: exploring {} exceeded {}s", suite.name, args.timeout),
            },
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        };
        match e {
            Ok(x) => {
                points += x.write_points;
                explored += x.outcomes.len();
                unreached += x.unreached();
                for f in x.findings() {
                    differing += 1;
                    eprintln!("\n{f}");
                }
                println!(
                    "{}: {} write points, {} of {} crash points explored, {} differ, {} unreached, {:.1}s",
                    x.suite,
                    x.write_points,
                    x.outcomes.len(),
                    x.possible,
                    x.differing().count(),
                    x.unreached(),
                    x.seconds
                );
                all.push(x);
            }
            Err(e) => {
                errors += 1;
                eprintln!("{e}");
            }
        }
    }
    std::fs::write(
        cfg.report_dir.join("explore.json"),
        serde_json::to_string_pretty(&all)?,
    )?;
    println!(
        "explored {explored} crash points at {points} write points of {} suite(s): {differing} differ, {unreached} unreached; wall {:.1}s; report {}",
        suites.len(),
        started.elapsed().as_secs_f64(),
        cfg.report_dir.join("explore.json").display()
    );
    if differing > 0 || errors > 0 {
        bail!(
            "{differing} crash point(s) changed the outcome, {errors} suite(s) could not be explored"
        );
    }
    Ok(())
}

async fn run_suites(args: RunArgs) -> Result<()> {
    use logbackup_conformance::report::{self, progress::Progress};
    use logbackup_conformance::run::all::{Cut, Schedule, run_all};
    use logbackup_conformance::run::events::Reporter;
    use logbackup_conformance::run::{self as run};
    use std::sync::Arc;

    let suites = selected_suites(&args)?;
    let n_suites = suites.len();
    let root = std::env::current_dir()?;
    let Targets {
        mut configs,
        image_map,
        crds,
        parallel,
    } = target_configs(&args, &root)?;
    let many = configs.len() > 1;
    for cfg in &mut configs {
        if let Some(n) = &args.metric_names {
            cfg.metric_names = Some(n.clone());
        }
        cfg.report_dir = if many {
            args.report_dir.join(&cfg.controller.label)
        } else {
            args.report_dir.clone()
        };
        cfg.baseline = args.baseline.as_ref().map(|name| run::BaselineDir {
            dir: PathBuf::from("tests/baselines").join(name),
            update: args.baseline_update,
        });
        std::fs::create_dir_all(&cfg.report_dir)
            .with_context(|| format!("creating {}", cfg.report_dir.display()))?;
    }
    let provider = cluster_provider(&args, &image_map)?;
    let started = std::time::Instant::now();
    let cluster = Arc::new(start_or_interrupt(provider.as_ref()).await?);
    let schedule = Schedule {
        concurrency: if parallel {
            args.concurrency
                .unwrap_or_else(|| {
                    let per_core = if args.stress.is_some() {
                        run::all::STRESS_SUITES_PER_CORE
                    } else {
                        run::all::SUITES_PER_CORE
                    };
                    run::all::concurrency_at(
                        n_suites,
                        run::all::mem_available_kib(),
                        std::thread::available_parallelism().map_or(2, |n| n.get()),
                        per_core,
                    )
                })
                .max(1)
        } else {
            1
        },
        fail_fast: args.fail_fast,
        timeout: std::time::Duration::from_secs(args.timeout),
    };
    let mut columns: Vec<(String, Vec<run::SuiteResult>)> = Vec::new();
    let mut cut = None;
    let mut failed = 0;
    let mut changed = 0;
    for (cfg, crd_dir) in configs.into_iter().zip(crds) {
        let label = cfg.controller.label.clone();
        if crd_dir.is_some() || !cfg.objects.is_empty() {
            let client = cluster.client()?;
            logbackup_conformance::run::install::install_crds(
                &client,
                crd_dir.as_deref(),
                &cfg.objects,
            )
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("preparing the cluster for target {label}"))?;
        }
        let report_dir = cfg.report_dir.clone();
        let progress = Arc::new(Progress::new(suites.len()));
        let reporter: Arc<dyn Reporter> = progress.clone();
        let target_started = std::time::Instant::now();
        let (results, c) = run_all(
            cluster.clone(),
            suites.clone(),
            root.clone(),
            Arc::new(cfg),
            &schedule,
            reporter,
        )
        .await;
        progress.finish();
        let wall = target_started.elapsed();
        match c {
            Some(Cut::Watchdog) => {
                eprintln!("watchdog: the run exceeded {}s; stopped", args.timeout)
            }
            Some(Cut::Interrupted) => eprintln!("interrupted; stopped"),
            Some(Cut::ClusterDied) => eprintln!(
                "the cluster died; stopped: {}",
                cluster.dead_components().join("; ")
            ),
            None => {}
        }
        for r in results.iter().filter(|r| !r.passed) {
            eprintln!(
                "\n{}{} FAILED:",
                if many {
                    format!("{label}: ")
                } else {
                    String::new()
                },
                r.name
            );
            for f in &r.failures {
                eprintln!("  {}", f.replace('\n', "\n  "));
            }
            if let Some(b) = &r.bundle {
                eprintln!("  debug bundle: {}", b.display());
            }
        }
        if !many {
            print!("{}", report::summary_table(&results, &label));
        }
        let t = report::totals(&results, wall);
        println!(
            "{}{} passed, {} failed; wall {:.1}s, longest suite backoff {:.1}s, ratio {}",
            if many {
                format!("{label}: ")
            } else {
                String::new()
            },
            t.passed,
            t.failed,
            t.wall_seconds,
            t.longest_backoff_seconds,
            t.ratio.map_or("-".into(), |r| format!("{r:.2}"))
        );
        if args.report.contains(&ReportKind::Json) {
            std::fs::write(report_dir.join("report.json"), report::json(&results, wall))?;
        }
        if args.report.contains(&ReportKind::Junit) {
            std::fs::write(report_dir.join("junit.xml"), report::junit(&results, wall)?)?;
        }
        if args.report.contains(&ReportKind::Json) || args.report.contains(&ReportKind::Junit) {
            println!("reports: {}", report_dir.display());
        }
        changed += baseline_summary(&results, args.baseline.as_deref());
        failed += t.failed;
        columns.push((label, results));
        if c.is_some() {
            cut = c;
            break;
        }
    }
    if many {
        print!("{}", report::matrix_table(&columns));
        println!(
            "wall {:.1}s for {} targets",
            started.elapsed().as_secs_f64(),
            columns.len()
        );
    }
    if args.report.contains(&ReportKind::Html) {
        let page = args.report_dir.join("index.html");
        std::fs::write(&page, report::html::render(&columns, started.elapsed()))
            .with_context(|| format!("writing {}", page.display()))?;
        println!("html report: {}", page.display());
    }
    if args.local.keep {
        // Never blocks: the processes stop with this command; their logs stay.
        if let Some(dir) = &cluster.run_dir {
            println!(
                "--keep: logs, kubeconfig and data kept in {}",
                dir.display()
            );
        }
    }
    if failed > 0 || cut.is_some() {
        bail!("{failed} suite(s) failed");
    }
    if changed > 0 {
        bail!(
            "the behaviour of {changed} suite(s) differs from baseline {}; review the diffs \
             (this run's fingerprints are beside the baseline as *.yaml.new) and accept them \
             with --baseline-update",
            args.baseline.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}

/// Find and resolve `names`, giving each the `--set`s that are its own (`TARGET:KEY=V`) or
/// that it has (`KEY=V`); a key no target has is an error.
fn resolve_targets(
    names: &[String],
    sets: &[String],
    root: &std::path::Path,
) -> Result<Vec<logbackup_conformance::target::Resolved>> {
    use logbackup_conformance::target;
    let loaded: Vec<target::Loaded> = names
        .iter()
        .map(|n| target::find(n, root))
        .collect::<Result<_, _>>()?;
    let pairs = target::parse_sets(sets)?;
    let mut out = Vec::new();
    for l in &loaded {
        let mine: Vec<(String, String)> = pairs
            .iter()
            .filter_map(|(k, v)| match k.split_once(':') {
                Some((t, key)) if t == l.target.name => Some((key.to_owned(), v.clone())),
                Some(_) => None,
                None if l.target.settings.contains_key(k) || loaded.len() == 1 => {
                    Some((k.clone(), v.clone()))
                }
                None => None,
            })
            .collect();
        out.push(target::resolve(l, &mine)?);
    }
    for (k, _) in &pairs {
        let known = match k.split_once(':') {
            Some((t, key)) => loaded
                .iter()
                .any(|l| l.target.name == t && l.target.settings.contains_key(key)),
            None => loaded.iter().any(|l| l.target.settings.contains_key(k)),
        };
        if !known && loaded.len() > 1 {
            bail!("--set {k}=…: no target of this run has the setting {k:?}");
        }
    }
    Ok(out)
}

/// Print the baseline's diffs and counts; returns how many suites changed.
fn baseline_summary(
    results: &[logbackup_conformance::run::SuiteResult],
    name: Option<&str>,
) -> usize {
    use logbackup_conformance::baseline::Verdict;
    let Some(name) = name else { return 0 };
    let (mut recorded, mut same, mut changed) = (0, 0, 0);
    for r in results {
        match &r.baseline {
            Some(Verdict::Recorded) => recorded += 1,
            Some(Verdict::Same) => same += 1,
            Some(Verdict::Changed(diff)) => {
                changed += 1;
                eprintln!(
                    "\n{}: behaviour differs from baseline {name}:\n{diff}",
                    r.name
                );
            }
            None => {}
        }
    }
    println!("baseline {name}: {same} same, {changed} changed, {recorded} recorded");
    changed
}

fn parse_baseline_name(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !s.starts_with('.')
    {
        Ok(s.to_owned())
    } else {
        Err("a baseline name is letters, digits, '-', '_' or '.', e.g. v1.6.3".into())
    }
}

async fn smoke_command(args: LocalArgs) -> Result<()> {
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
        _ = tokio::signal::ctrl_c() => bail!("interrupted; the cluster was stopped"),
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

async fn up(args: LocalArgs) -> Result<()> {
    let provider = local_provider(&args, &[])?;
    let cluster = start_or_interrupt(&provider).await?;
    println!("kubeconfig: {}", cluster.kubeconfig.display());
    println!("kernel:     {}", cluster.kernel_endpoints.join(","));
    if let Some(dir) = &cluster.run_dir {
        println!("run dir:    {}", dir.display());
    }
    println!("up; Ctrl-C stops everything");
    tokio::signal::ctrl_c().await?;
    drop(cluster);
    Ok(())
}

/// The suite files named by `paths` (files, or directories searched for `*.yaml`).
fn suite_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("suites")]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(suite::discover(&p).with_context(|| format!("reading {}", p.display()))?);
        } else {
            files.push(p);
        }
    }
    Ok(files)
}

/// Load every suite; print problems; fail if any.
fn load_suites(paths: &[PathBuf]) -> Result<Vec<(PathBuf, suite::Suite)>> {
    let root = std::env::current_dir()?;
    let mut ok = Vec::new();
    let mut bad = 0;
    let mut named: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for f in suite_files(paths)? {
        match suite::load_file(&f, &root) {
            Ok(s) => {
                // The suite's name is its namespace's: two at once would share it.
                if let Some(first) = named.insert(s.name.clone(), f.clone()) {
                    bad += 1;
                    eprintln!(
                        "{}: name: {:?} is also the name of {}; each suite needs its own",
                        f.display(),
                        s.name,
                        first.display()
                    );
                    continue;
                }
                ok.push((f, s));
            }
            Err(e) => {
                bad += e.0.len();
                eprintln!("{e}");
            }
        }
    }
    if bad > 0 {
        bail!("{bad} problem(s) in suite files");
    }
    Ok(ok)
}

fn parse_metric_names(s: &str) -> Result<MetricNames, String> {
    MetricNames::parse(s)
}

// One line per error, never a backtrace: `RUST_BACKTRACE=1` would make anyhow print one.
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let bridged = match &cli.command {
        Command::Run(a) | Command::Explore { run: a, .. } => {
            matches!(a.provider, ProviderKind::Container | ProviderKind::K3s)
        }
        Command::Bench {
            what: BenchCommand::Boot { provider, .. },
        } => *provider == ProviderKind::Container,
        _ => false,
    };
    if bridged {
        // SAFETY: no other thread exists yet (the runtime starts below).
        unsafe { logbackup_conformance::container::api_bridge::claim_env() };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(lbc(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: many errors (ours and kube's)
/// end their own message with their source's ("…: {source}"), and `{:#}` would repeat it.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let repeated = last.ends_with(&text);
        last = text.clone();
        if repeated {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn lbc(cli: Cli) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).context("bad --log filter")?,
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Run(args) => run_suites(*args).await,
        Command::Explore {
            run,
            max_runs,
            jobs,
        } => explore_suites(*run, max_runs, jobs).await,
        Command::Smoke { local } => smoke_command(local).await,
        Command::Doctor => doctor(),
        Command::Image { what } => image_command(what),
        Command::Replay { files, out } => {
            let root = std::env::current_dir()?;
            let r = logbackup_conformance::replay::replay(&files, &out, &root)?;
            for src in &r.sources {
                println!("read    {src}");
            }
            for f in &r.situation.facts {
                println!("fact    {f}");
            }
            for u in &r.situation.unknown {
                println!("unknown {u}");
            }
            println!(
                "wrote {} (suite {}, clauses {}); run it: lbc run {}",
                out.display(),
                r.suite.name,
                r.suite.clauses.join(","),
                out.display()
            );
            Ok(())
        }
        Command::ServeCluster {
            dir,
            run_id,
            image_map,
        } => serve_cluster(dir, run_id, image_map).await,
        Command::Up { local } => up(local).await,
        Command::List { paths } => {
            for (_, s) in load_suites(&paths)? {
                println!(
                    "{:<28} {:<28} {}",
                    s.name,
                    s.clauses.join(","),
                    s.labels.join(",")
                );
            }
            Ok(())
        }
        Command::Lint { paths } => {
            let n = load_suites(&paths)?.len();
            println!("{n} suite(s) ok");
            Ok(())
        }
        Command::Schema { of } => {
            let schema = if of == "target" {
                logbackup_conformance::target::json_schema()
            } else {
                suite::json_schema()
            };
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(())
        }
        Command::LintTarget { targets, sets } => {
            let root = std::env::current_dir()?;
            let names = if targets.is_empty() {
                vec!["reference".to_owned()]
            } else {
                targets
            };
            let resolved = resolve_targets(&names, &sets, &root)?;
            for t in resolved {
                println!(
                    "{} ({}): ok; runs {} {}",
                    t.name,
                    t.file,
                    t.program,
                    t.args.join(" ")
                );
            }
            Ok(())
        }
        Command::Compare { old, new } => {
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            let c = logbackup_conformance::report::compare::compare(
                &old.display().to_string(),
                &read(&old)?,
                &new.display().to_string(),
                &read(&new)?,
            )
            .map_err(anyhow::Error::msg)?;
            print!("{}", c.text);
            if c.regressed {
                bail!(
                    "something that passed in {} fails in {}",
                    old.display(),
                    new.display()
                );
            }
            Ok(())
        }
        Command::Crds { write, dir } => {
            let yaml = lbc_api::backup_crd_yaml()?;
            if write {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let path = dir.join("backups.pingcap.com.yaml");
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            } else {
                print!("{yaml}");
            }
            Ok(())
        }
        Command::BuildK8s { force, verify } => {
            let lookup = BinaryLookup {
                force_build: force,
                ..BinaryLookup::from_env()
            };
            let dir = lookup.version_dir();
            let found = tokio::task::spawn_blocking(move || lookup.resolve()).await??;
            if verify {
                k8s_binaries::verify_hashes(&dir)?;
                println!("verified SHA-256 of the cached binaries");
            }
            println!("kube-apiserver:          {}", found.apiserver.display());
            println!(
                "kube-controller-manager: {}",
                found.controller_manager.display()
            );
            println!("source:                  {:?}", found.source);
            Ok(())
        }
        Command::Bench {
            what:
                BenchCommand::Retry {
                    backups,
                    min_retry,
                    timeout,
                    rate,
                    keep,
                },
        } => {
            let controller_binary = binaries::locate(Program::ReferenceController)?;
            let mut provider = local_provider(&LocalArgs::default(), &[])?;
            provider.config.keep_run_dir = keep;
            // The controller's writes are counted from the API server's audit log.
            provider.config.audit = true;
            let cluster = start_or_interrupt(&provider).await?;
            let report = bench::retry::measure(
                &cluster,
                &bench::retry::RetryBench {
                    backups,
                    min_retry,
                    controller_binary,
                    job_image: JOB_IMAGE.into(),
                    timeout: std::time::Duration::from_secs(timeout),
                    rate,
                },
            )
            .await?;
            if let (true, Some(dir)) = (keep, &cluster.run_dir) {
                println!(
                    "--keep: audit.log, bench-controller.log and the control plane's logs kept in {}",
                    dir.display()
                );
            }
            let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.0} ms", v * 1000.0));
            println!(
                "backups: {} ({} completed in {:.1}s); controller peak RSS {} MiB",
                report.backups,
                report.completed,
                report.wall.as_secs_f64(),
                report.controller_peak_rss_kib / 1024
            );
            println!(
                "retry lateness (first sight of the retry Job - expectedRetryAt) over {} retries: median {}, p99 {}, max {} (goal p99 <= 250 ms)",
                report.lateness.len(),
                ms(report.lateness_quantile(0.5)),
                ms(report.lateness_quantile(0.99)),
                ms(report.lateness_quantile(1.0)),
            );
            println!(
                "detection (first sight of the Job's Failed -> first sight of record 1) over {}: median {}, p99 {}, max {}",
                report.detection.len(),
                ms(report.detection_quantile(0.5)),
                ms(report.detection_quantile(0.99)),
                ms(report.detection_quantile(1.0)),
            );
            let r = &report.reported;
            println!(
                "for comparison, the controller's own realRetryAt - expectedRetryAt (whole seconds, not trusted): median {}, max {}",
                ms(bench::run::quantile(r, 0.5)),
                ms(bench::run::quantile(r, 1.0)),
            );
            match (&report.writes, report.writes_per_cycle()) {
                (Some(w), Some(per_cycle)) => {
                    let n = report.backups.max(1) as f64;
                    let kinds: Vec<String> = w
                        .iter()
                        .map(|(k, v)| format!("{k} {:.2}", *v as f64 / n))
                        .collect();
                    println!(
                        "controller writes per backup (audit log, its own identity): {}; per retry cycle (without events, without the first attempt's 2) {per_cycle:.2} (goal <= 3)",
                        kinds.join(", ")
                    );
                }
                _ => println!("controller writes: no audit log"),
            }
            if report.watch_errors > 0 {
                println!(
                    "watch errors: {} (each re-listed: first sights after one are late, so the figures above are upper bounds)",
                    report.watch_errors
                );
            }
            // Figures of a run that did not finish measure something else: say so, fail.
            if !report.incomplete.is_empty() {
                const SHOWN: usize = 10;
                let more = report.incomplete.len().saturating_sub(SHOWN);
                anyhow::bail!(
                    "{} of {} Backups did not complete within {timeout}s: {}{}; {}",
                    report.incomplete.len(),
                    report.backups,
                    report.incomplete[..report.incomplete.len().min(SHOWN)].join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    },
                    report.controller_log
                );
            }
            Ok(())
        }
        Command::Bench {
            what:
                BenchCommand::Run {
                    runs,
                    alone,
                    run_args,
                },
        } => bench_run(runs, alone, &run_args),
        Command::Bench {
            what: BenchCommand::Proxy { requests, objects },
        } => {
            let provider = local_provider(&LocalArgs::default(), &[])?;
            let cluster = start_or_interrupt(&provider).await?;
            let r = bench::proxy::proxy_bench(&cluster, requests, objects).await?;
            println!(
                "{} GETs each way, interleaved: direct median {:.2} ms p99 {:.2} ms; through the proxy median {:.2} ms p99 {:.2} ms",
                r.requests, r.direct_ms.0, r.direct_ms.1, r.proxied_ms.0, r.proxied_ms.1
            );
            println!(
                "added by the proxy: median {:.2} ms per request (paired)",
                r.added_median_ms
            );
            println!(
                "watch: {} events direct, {} through the proxy, same events in the same order: {}",
                r.watch_events.0,
                r.watch_events.1,
                if r.watch_same { "yes" } else { "NO" }
            );
            if !r.watch_same {
                bail!("the proxy lost or reordered watch events");
            }
            Ok(())
        }
        Command::Bench {
            what: BenchCommand::Runtime { jobs },
        } => bench_runtime(jobs).await,
        Command::Bench {
            what:
                BenchCommand::Boot {
                    boots,
                    provider: kind,
                    with_jobs,
                },
        } => {
            if boots == 0 {
                bail!("--boots must be at least 1");
            }
            let provider: Box<dyn ClusterProvider> = match kind {
                ProviderKind::Local => Box::new(local_provider(&LocalArgs::default(), &[])?),
                ProviderKind::Container => {
                    build_images(&Docker::connect()?, &Image::ALL)?;
                    Box::new(
                        logbackup_conformance::cluster::container::ContainerProvider::new(
                            logbackup_conformance::cluster::container::Kind::Lbc,
                        ),
                    )
                }
                ProviderKind::K3s | ProviderKind::Kubeconfig => {
                    bail!("lbc bench boot measures local or container")
                }
            };
            // One boot first: its time is the cold start (binaries resolved, page cache,
            // for a container the image's first run); the measured boots are warm.
            let cold = std::time::Instant::now();
            drop(provider.start().await?);
            println!(
                "cold boot (unmeasured below): {:.2}s",
                cold.elapsed().as_secs_f64()
            );
            let report = bench::boot::boot_bench(provider.as_ref(), boots, |client| async move {
                if with_jobs {
                    let _ = smoke::smoke(&client, "lbc-bench").await;
                }
            })
            .await?;
            let boot = report.median_boot();
            println!("median time of each boot milestone since the start:");
            let mut prev = std::time::Duration::ZERO;
            for (name, at) in report.median_phases() {
                println!(
                    "  {:>6.2}s  (+{:.2}s)  {name}",
                    at.as_secs_f64(),
                    at.saturating_sub(prev).as_secs_f64()
                );
                prev = at;
            }
            println!(
                "boots: {boots}; median warm boot {:.2}s (goal <= 2 s); peak RSS of all processes {} MiB (goal <= 1024 MiB)",
                boot.as_secs_f64(),
                report.max_peak_rss_kib() / 1024
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read kubeconfig /nope: {0}")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(Outer(io)).context("starting the cluster");
        assert_eq!(
            one_line(&e),
            "starting the cluster: cannot read kubeconfig /nope: no such file"
        );
    }

    #[test]
    fn causes_not_in_the_message_are_kept_in_order() {
        let e = anyhow::anyhow!("root").context("middle").context("top");
        assert_eq!(one_line(&e), "top: middle: root");
    }

    #[test]
    fn a_cause_found_elsewhere_in_the_line_is_kept() {
        let e = anyhow::anyhow!("timed out").context("the kernel timed out once; then");
        assert_eq!(one_line(&e), "the kernel timed out once; then: timed out");
    }
}
