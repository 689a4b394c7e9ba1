//! `lbc explore`: restart-equivalence over the selected suites.

use anyhow::{Context, Result, bail};

use crate::args::*;
use crate::cluster::*;
use crate::targets::*;

pub(crate) async fn explore_suites(
    args: RunArgs,
    max_runs: usize,
    jobs: Option<usize>,
) -> Result<()> {
    use logbackup_conformance::explore::{Budget, explore};
    use logbackup_conformance::run;
    use std::sync::Arc;

    if args.direct_api {
        bail!(
            "lbc explore crashes the controller at its API requests: it needs the API proxy (drop --direct-api)"
        );
    }
    let sel = selection(&args)?;
    let (suites, root) = (sel.suites, sel.root);
    let Targets {
        mut configs,
        image_map,
        crds,
        parallel,
    } = sel.targets;
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
            _ = logbackup_conformance::programs::process::stop_requested() => bail!("interrupted"),
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
