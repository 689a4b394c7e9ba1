//! `lbc run`: the conformance run, its terminal output and reports.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use logbackup_conformance::container::images::Image;

use crate::args::*;
use crate::cluster::*;
use crate::suites::*;
use crate::targets::*;

pub(crate) async fn run_suites(args: RunArgs) -> Result<()> {
    use logbackup_conformance::run::Reporter;
    use logbackup_conformance::run::targets::{TargetRun, run_targets};
    use std::sync::Arc;

    let Selection {
        suites,
        root,
        targets,
    } = selection(&args)?;
    let (mut configs, image_map) = (targets.configs, targets.image_map);
    let (crds, parallel) = (targets.crds, targets.parallel);
    let many = configs.len() > 1;
    for cfg in &mut configs {
        configure(cfg, &args, many)?;
    }
    let provider = cluster_provider(&args, &image_map)?;
    let cluster = Arc::new(start_or_interrupt(provider.as_ref()).await?);
    let pods = configs.iter().any(|c| c.controller.pod.is_some());
    let schedule = schedule(&args, suites.len(), parallel, pods);
    let runs = configs
        .into_iter()
        .zip(crds)
        .map(|(cfg, crds)| TargetRun { cfg, crds })
        .collect();
    let reporter = reporters(&args, many, schedule.gate);
    let run = run_targets(
        cluster.clone(),
        runs,
        &suites,
        root,
        &schedule,
        reporter.clone(),
    )
    .await?;
    if args.local.keep {
        // Never blocks: the processes stop with this command; their logs stay.
        if let Some(dir) = &cluster.run_dir {
            println!(
                "--keep: logs, kubeconfig and data kept in {}",
                dir.display()
            );
        }
    }
    if let Some(e) = reporter.errors().first() {
        bail!("{e}");
    }
    let failed = run.failed();
    let not_run: usize = run.targets.iter().map(|t| t.not_run.len()).sum();
    if run.cut().is_some() {
        bail!("{failed} suite(s) failed");
    }
    if schedule.gate {
        // The gate's exit code is its verdict; failures both builds share do not gate.
        let gate = logbackup_conformance::report::compare::gate_of(&run);
        if gate.is_some_and(|g| g.regressed()) {
            bail!("the gate found a regression (see the summary above)");
        }
    } else if failed > 0 {
        bail!("{failed} suite(s) failed");
    }
    // --fail-fast stopped the run (its failure then proved flaky): not a clean run either.
    if not_run > 0 {
        bail!("{not_run} suite(s) not run");
    }
    let changed = run
        .targets
        .iter()
        .flat_map(|t| &t.results)
        .filter(|r| {
            matches!(
                r.baseline,
                Some(logbackup_conformance::baseline::Verdict::Changed(_))
            )
        })
        .count();
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

/// The reporters `--report` asks for, beside the terminal's progress and summary.
fn reporters(
    args: &RunArgs,
    many: bool,
    gate: bool,
) -> std::sync::Arc<logbackup_conformance::run::Fanout> {
    use logbackup_conformance::report::compare::GateSummary;
    use logbackup_conformance::report::{Files, Terminal, html::HtmlReport, progress::Progress};
    use logbackup_conformance::run::{Fanout, Reporter};
    use std::sync::Arc;
    let mut all: Vec<Arc<dyn Reporter>> = vec![
        Arc::new(Progress::default()),
        Arc::new(Terminal {
            many,
            baseline: args.baseline.clone(),
        }),
        Arc::new(Files::new(
            args.report.contains(&ReportKind::Json),
            args.report.contains(&ReportKind::Junit),
        )),
    ];
    if gate {
        all.push(Arc::new(GateSummary));
    }
    if args.report.contains(&ReportKind::Html) {
        all.push(Arc::new(HtmlReport::new(
            args.report_dir.join("index.html"),
        )));
    }
    Arc::new(Fanout(all))
}

/// A target's run settings from the command line: metric names, its report directory (one
/// per target when there are several), the baseline.
fn configure(
    cfg: &mut logbackup_conformance::run::RunConfig,
    args: &RunArgs,
    many: bool,
) -> Result<()> {
    if let Some(n) = &args.metric_names {
        cfg.metric_names = Some(n.clone());
    }
    // A cluster the harness did not start, or a real node, runs what its nodes hold: the
    // project's images.
    let existing =
        args.provider == ProviderKind::Kubeconfig || args.local.node == NodeKind::Kubelet;
    cfg.job_image = args.job_image.clone().unwrap_or_else(|| {
        if existing {
            Image::FakeBr.tag()
        } else {
            JOB_IMAGE.to_owned()
        }
    });
    cfg.tool_image = args
        .tool_image
        .clone()
        .or_else(|| existing.then(|| Image::Br.tag()));
    cfg.report_dir = if many {
        args.report_dir.join(&cfg.controller.label)
    } else {
        args.report_dir.clone()
    };
    cfg.baseline = args
        .baseline
        .as_ref()
        .map(|name| logbackup_conformance::run::BaselineDir {
            dir: PathBuf::from("tests/baselines").join(name),
            update: args.baseline_update,
        });
    std::fs::create_dir_all(&cfg.report_dir)
        .with_context(|| format!("creating {}", cfg.report_dir.display()))
}

/// How many suites at once (`--concurrency`, else by cores and memory), fail-fast, watchdog.
/// `pods`: a controller is installed as a Deployment (fewer at once, as on a real node).
fn schedule(
    args: &RunArgs,
    n_suites: usize,
    parallel: bool,
    pods: bool,
) -> logbackup_conformance::run::all::Schedule {
    use logbackup_conformance::run::all;
    let concurrency = if parallel {
        let per_core = if args.stress.is_some() {
            all::STRESS_SUITES_PER_CORE
        } else if pods || args.local.node == NodeKind::Kubelet {
            all::REAL_NODE_SUITES_PER_CORE
        } else {
            all::SUITES_PER_CORE
        };
        args.concurrency
            .unwrap_or_else(|| {
                all::concurrency_at(
                    n_suites,
                    all::mem_available_kib(),
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                    per_core,
                )
            })
            .max(1)
    } else {
        1
    };
    all::Schedule {
        concurrency,
        fail_fast: args.fail_fast,
        reruns: args.rerun_failed,
        gate: gate_mode(args),
        timeout: std::time::Duration::from_secs(args.timeout),
    }
}

/// Exactly two named instances (`--target old=… --target new=…`): a release gate.
fn gate_mode(args: &RunArgs) -> bool {
    args.targets.len() == 2
        && args.targets.iter().all(|t| {
            logbackup_conformance::target::instance(t).is_ok_and(|(name, _)| name.is_some())
        })
}

/// The suites of `args.paths` that `args.selector` names (all without one).
pub(crate) fn selected_suites(
    args: &RunArgs,
) -> Result<Vec<(PathBuf, logbackup_conformance::suite::Suite)>> {
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
