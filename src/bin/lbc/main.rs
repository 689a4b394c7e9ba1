//! `lbc`: the logbackup-conformance harness CLI. `main` parses and dispatches; each command
//! family lives in a file of its own.

mod args;
mod bench;
mod bench_run;
mod cluster;
mod explore;
mod image;
mod k8s;
mod run;
mod suites;
mod targets;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::args::*;
use crate::bench::*;
use crate::image::*;

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
        /// Also build a real node's programs (kubelet, kube-proxy, kube-scheduler), which
        /// `--node kubelet` needs.
        #[arg(long)]
        node: bool,
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
        /// Then run the suite (`lbc run OUT`), against `--target` (default: reference):
        /// does this build still do what the report shows?
        #[arg(long)]
        run: bool,
        /// With `--run`: the controller under test, as for `lbc run` (repeatable).
        #[arg(long = "target", value_name = "TARGET", requires = "run")]
        targets: Vec<String>,
        /// With `--run`: a target setting, as for `lbc run` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", requires = "run")]
        sets: Vec<String>,
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
        Command::Run(args) => run::run_suites(*args).await,
        Command::Explore {
            run,
            max_runs,
            jobs,
        } => explore::explore_suites(*run, max_runs, jobs).await,
        Command::Smoke { local } => cluster::smoke_command(local).await,
        Command::Doctor => suites::doctor(),
        Command::Image { what } => image::image_command(what),
        Command::Replay {
            files,
            out,
            run,
            targets,
            sets,
        } => {
            suites::replay(files, out.clone())?;
            if run {
                suites::run_replayed(&out, &targets, &sets)?;
            }
            Ok(())
        }
        Command::ServeCluster {
            dir,
            run_id,
            image_map,
        } => cluster::serve_cluster(dir, run_id, image_map).await,
        Command::Up { local } => cluster::up(local).await,
        Command::List { paths } => suites::list(paths),
        Command::Lint { paths } => suites::lint(paths),
        Command::Schema { of } => suites::schema(of),
        Command::LintTarget { targets, sets } => suites::lint_target(targets, sets),
        Command::Compare { old, new } => suites::compare(old, new),
        Command::Crds { write, dir } => suites::crds(write, dir),
        Command::BuildK8s {
            force,
            verify,
            node,
        } => {
            k8s::build_k8s(force, verify).await?;
            if node {
                k8s::build_node(force).await?;
            }
            Ok(())
        }
        Command::Bench { what } => bench::bench(what).await,
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
