//! `lbc bench run` (`lbc run` repeated, and its longest suites alone) and `lbc bench runtime`.

use anyhow::{Context, Result, bail};
use logbackup_conformance::container::images::Image;
use logbackup_conformance::smoke;

use crate::args::*;
use crate::cluster::*;
use crate::suites::*;

/// `lbc bench runtime`.
pub(crate) async fn bench_runtime(jobs: usize, kubelet: bool) -> Result<()> {
    use logbackup_conformance::bench::runtime::measure;
    if jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let mut reports = Vec::new();
    let kinds: &[&str] = if kubelet {
        &["process", "docker", "kubelet"]
    } else {
        &["process", "docker"]
    };
    for &kind in kinds {
        let docker = kind != "process";
        let mut provider = local_provider(&LocalArgs::default(), &[])?;
        let br = Image::Br.tag();
        let (name, image) = match kind {
            "docker" => {
                let mut rt = docker_runtime(&[])?;
                rt.insert("lbc.local/bench-shell", Image::Br.tag());
                provider.config.docker = Some(rt);
                ("docker", "lbc.local/bench-shell")
            }
            // A real node runs the BR image's shell from containerd.
            "kubelet" => {
                provider.config.node = logbackup_conformance::cluster::local::NodeKind::Kubelet;
                ("kubelet", br.as_str())
            }
            _ => ("process", smoke::SHELL_IMAGE),
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
    if let [process, docker, ..] = reports[..] {
        println!(
            "ratio of medians docker / process: {:.2} (the process runtime stays the default)",
            docker / process
        );
    }
    if let [process, _, kubelet] = reports[..] {
        println!(
            "ratio of medians kubelet / process: {:.2}",
            kubelet / process
        );
    }
    Ok(())
}

/// `lbc bench run`: the two longest suites (by their designed waits) alone, then whole runs.
pub(crate) fn bench_run(runs: usize, alone: usize, run_args: &[String]) -> Result<()> {
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
