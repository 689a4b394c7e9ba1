//! `lbc`: the logbackup-conformance harness CLI.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use logbackup_conformance::cluster::local::binaries::{self as k8s_binaries, BinaryLookup};
use logbackup_conformance::cluster::local::image_map::ImageMap;
use logbackup_conformance::cluster::local::{LocalConfig, LocalProvider, Ports};
use logbackup_conformance::cluster::{ClusterProvider, RunningCluster};
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
    /// Keep the run directory (logs, kubeconfig) after exit.
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
    /// Suites run at once (default: the CPU count).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Another controller: a command template with {kubeconfig}, {namespace}, {kernel},
    /// {job_image}, {metrics_addr}. Map its job image with --image-map.
    #[arg(long)]
    controller_cmd: Option<String>,
    /// The controller's metric names per LBR-15 role, for `metrics` assertions:
    /// `job-failures=NAME,retries=NAME,kernel-recoveries=NAME` (the reference's by default).
    #[arg(long, value_parser = parse_metric_names)]
    metric_names: Option<MetricNames>,
    /// Extra flags for the reference controller, e.g. --controller-flag=--retry-strategy=workqueue.
    #[arg(long = "controller-flag", allow_hyphen_values = true)]
    controller_flags: Vec<String>,
    /// Compare each suite's behaviour fingerprint (messages, all events) with
    /// tests/baselines/NAME/, recording it where there is none: what changed between two
    /// builds of the same controller. Not a conformance verdict.
    #[arg(long, value_name = "NAME", value_parser = parse_baseline_name)]
    baseline: Option<String>,
    /// With --baseline: overwrite the baseline with this run's fingerprints.
    #[arg(long, requires = "baseline")]
    baseline_update: bool,
    /// Where report.json, junit.xml and debug bundles go.
    #[arg(long, default_value = "target/lbc-report")]
    report_dir: PathBuf,
    /// Global watchdog, seconds.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
    #[command(flatten)]
    local: LocalArgs,
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
    /// Print the JSON Schema of suite files (for editors).
    Schema,
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
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
    },
    /// Median warm boot time of the local control plane and peak resident memory.
    Boot {
        #[arg(long, default_value_t = 5)]
        boots: usize,
        /// Also run the smoke Jobs on each boot (memory under load).
        #[arg(long)]
        with_jobs: bool,
    },
}

fn local_provider(args: &LocalArgs) -> Result<LocalProvider> {
    let mut image_map =
        ImageMap::parse(args.image_map.iter().map(String::as_str)).context("bad --image-map")?;
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

/// Start the cluster, but give up cleanly on Ctrl-C.
async fn start_or_interrupt(provider: &dyn ClusterProvider) -> Result<RunningCluster> {
    tokio::select! {
        c = provider.start() => Ok(c?),
        _ = tokio::signal::ctrl_c() => bail!("interrupted during start-up; everything started was stopped"),
    }
}

async fn run_suites(args: RunArgs) -> Result<()> {
    use logbackup_conformance::report::{self, progress::Progress};
    use logbackup_conformance::run::all::{Cut, Schedule, run_all};
    use logbackup_conformance::run::events::Reporter;
    use logbackup_conformance::run::{self as run, ControllerSpec, RunConfig};
    use std::sync::Arc;

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
    let controller = match &args.controller_cmd {
        Some(t) => ControllerSpec::Template(t.clone()),
        None => ControllerSpec::Reference {
            binary: binaries::locate(Program::ReferenceController)?,
            extra: args.controller_flags.clone(),
        },
    };
    std::fs::create_dir_all(&args.report_dir)
        .with_context(|| format!("creating {}", args.report_dir.display()))?;
    // Another build of the reference (e.g. a planted bug) is not "the reference".
    let label = match std::env::var_os("LBC_CONTROLLER_BIN") {
        Some(_) if args.controller_cmd.is_none() => "override",
        _ => controller.label(),
    };
    let cfg = Arc::new(RunConfig {
        // Another controller's names are its own; the reference's are only a default for it.
        metric_names: match (&args.metric_names, &controller) {
            (Some(n), _) => Some(n.clone()),
            (None, ControllerSpec::Reference { .. }) => Some(run::reference_metric_names()),
            (None, ControllerSpec::Template(_)) => None,
        },
        controller,
        job_image: JOB_IMAGE.into(),
        suite_timeout: std::time::Duration::from_secs(120),
        report_dir: args.report_dir.clone(),
        snapshots: Some(PathBuf::from("tests/snapshots")),
        baseline: args.baseline.as_ref().map(|name| run::BaselineDir {
            dir: PathBuf::from("tests/baselines").join(name),
            update: args.baseline_update,
        }),
    });
    let provider = local_provider(&args.local)?;
    let started = std::time::Instant::now();
    let cluster = Arc::new(start_or_interrupt(&provider).await?);
    let root = std::env::current_dir()?;
    let schedule = Schedule {
        concurrency: args
            .concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1),
        fail_fast: args.fail_fast,
        timeout: std::time::Duration::from_secs(args.timeout),
    };
    let progress = Arc::new(Progress::new(suites.len()));
    let reporter: Arc<dyn Reporter> = progress.clone();
    let (results, cut) = run_all(cluster.clone(), suites, root, cfg, &schedule, reporter).await;
    progress.finish();
    match cut {
        Some(Cut::Watchdog) => eprintln!("watchdog: the run exceeded {}s; stopped", args.timeout),
        Some(Cut::Interrupted) => eprintln!("interrupted; stopped"),
        None => {}
    }
    let wall = started.elapsed();
    for r in results.iter().filter(|r| !r.passed) {
        eprintln!("\n{} FAILED:", r.name);
        for f in &r.failures {
            eprintln!("  {}", f.replace('\n', "\n  "));
        }
        if let Some(b) = &r.bundle {
            eprintln!("  debug bundle: {}", b.display());
        }
    }
    print!("{}", report::summary_table(&results, label));
    let t = report::totals(&results, wall);
    println!(
        "{} passed, {} failed; wall {:.1}s, longest suite backoff {:.1}s, ratio {}",
        t.passed,
        t.failed,
        t.wall_seconds,
        t.longest_backoff_seconds,
        t.ratio.map_or("-".into(), |r| format!("{r:.2}"))
    );
    std::fs::write(
        args.report_dir.join("report.json"),
        report::json(&results, wall),
    )?;
    std::fs::write(
        args.report_dir.join("junit.xml"),
        report::junit(&results, wall)?,
    )?;
    println!("reports: {}", args.report_dir.display());
    let changed = baseline_summary(&results, args.baseline.as_deref());
    if t.failed > 0 || cut.is_some() {
        if args.local.keep && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            println!(
                "--keep: the cluster stays up; kubeconfig {}; Ctrl-C tears it down",
                cluster.kubeconfig.display()
            );
            tokio::signal::ctrl_c().await?;
        }
        bail!("{} suite(s) failed", t.failed);
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
    let provider = local_provider(&args)?;
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
    let provider = local_provider(&args)?;
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
    for f in suite_files(paths)? {
        match suite::load_file(&f, &root) {
            Ok(s) => ok.push((f, s)),
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
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match lbc(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
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
        Command::Smoke { local } => smoke_command(local).await,
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
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&suite::json_schema())?);
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
                },
        } => {
            let controller_binary = binaries::locate(Program::ReferenceController)?;
            let provider = local_provider(&LocalArgs::default())?;
            let cluster = start_or_interrupt(&provider).await?;
            let report = bench::retry::measure(
                &cluster,
                &bench::retry::RetryBench {
                    backups,
                    min_retry,
                    controller_binary,
                    job_image: JOB_IMAGE.into(),
                    timeout: std::time::Duration::from_secs(timeout),
                },
            )
            .await?;
            let q = |x: f64| {
                report
                    .lateness_quantile(x)
                    .map_or("-".into(), |v| format!("{:.0} ms", v * 1000.0))
            };
            println!(
                "backups: {} ({} completed in {:.1}s); retry lateness (watch-observed realRetryAt - expectedRetryAt) over {} retries: median {}, p99 {}, max {} (goal p99 <= 250 ms); API writes per retry cycle {:.2} (goal <= 3); controller peak RSS {} MiB",
                report.backups,
                report.completed,
                report.wall.as_secs_f64(),
                report.lateness.len(),
                q(0.5),
                q(0.99),
                q(1.0),
                report.writes_per_cycle,
                report.controller_peak_rss_kib / 1024
            );
            Ok(())
        }
        Command::Bench {
            what: BenchCommand::Boot { boots, with_jobs },
        } => {
            if boots == 0 {
                bail!("--boots must be at least 1");
            }
            let provider = local_provider(&LocalArgs::default())?;
            // One unmeasured boot so the figures are warm (binaries resolved, page cache).
            drop(provider.start().await?);
            let report = bench::boot::boot_bench(&provider, boots, |client| async move {
                if with_jobs {
                    let _ = smoke::smoke(&client, "lbc-bench").await;
                }
            })
            .await?;
            let boot = report.median_boot();
            println!(
                "boots: {boots}; median warm boot {:.2}s (goal <= 3 s); peak RSS of all processes {} MiB (goal <= 1024 MiB)",
                boot.as_secs_f64(),
                report.max_peak_rss_kib() / 1024
            );
            Ok(())
        }
    }
}
