//! `lbc run`: the conformance run, its terminal output and reports.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::args::*;
use crate::cluster::*;
use crate::suites::*;
use crate::targets::*;

pub(crate) async fn run_suites(args: RunArgs) -> Result<()> {
    use logbackup_conformance::report::{self, progress::Progress};
    use logbackup_conformance::run::Reporter;
    use logbackup_conformance::run::all::{Cut, run_all};
    use logbackup_conformance::run::{self as run};
    use std::sync::Arc;

    let Selection {
        suites,
        root,
        targets,
    } = selection(&args)?;
    let (mut configs, image_map) = (targets.configs, targets.image_map);
    let (crds, parallel) = (targets.crds, targets.parallel);
    let n_suites = suites.len();
    let many = configs.len() > 1;
    for cfg in &mut configs {
        configure(cfg, &args, many)?;
    }
    let provider = cluster_provider(&args, &image_map)?;
    let started = std::time::Instant::now();
    let cluster = Arc::new(start_or_interrupt(provider.as_ref()).await?);
    let schedule = schedule(&args, n_suites, parallel);
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
        let t = print_target(&args, &label, many, &results, wall, &report_dir)?;
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
fn schedule(
    args: &RunArgs,
    n_suites: usize,
    parallel: bool,
) -> logbackup_conformance::run::all::Schedule {
    use logbackup_conformance::run::all;
    let concurrency = if parallel {
        let per_core = if args.stress.is_some() {
            all::STRESS_SUITES_PER_CORE
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
        timeout: std::time::Duration::from_secs(args.timeout),
    }
}

/// One target's results on the terminal (each failure, the summary table for a single
/// target, the totals line) and its JSON and JUnit reports.
fn print_target(
    args: &RunArgs,
    label: &str,
    many: bool,
    results: &[logbackup_conformance::run::SuiteResult],
    wall: std::time::Duration,
    report_dir: &std::path::Path,
) -> Result<logbackup_conformance::report::Totals> {
    use logbackup_conformance::report;
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
        print!("{}", report::summary_table(results, label));
    }
    let t = report::totals(results, wall);
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
        std::fs::write(report_dir.join("report.json"), report::json(results, wall))?;
    }
    if args.report.contains(&ReportKind::Junit) {
        std::fs::write(report_dir.join("junit.xml"), report::junit(results, wall)?)?;
    }
    if args.report.contains(&ReportKind::Json) || args.report.contains(&ReportKind::Junit) {
        println!("reports: {}", report_dir.display());
    }
    Ok(t)
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

/// Print the baseline's diffs and counts; returns how many suites changed.
pub(crate) fn baseline_summary(
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
