//! Many targets on one cluster, one after another: each target's CRDs and objects, its
//! suites ([`super::all::run_all`]), and the events its reporters hear around them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::all::{Cut, GATE_RERUNS, Schedule, run_all};
use super::reporter::{Reporter, RunResults, SuiteEvent, TargetResults};
use super::{RunConfig, install};
use crate::cluster::RunningCluster;
use crate::suite::Suite;

/// A target to run: its settings and the CRDs it brings (`None`: the project's).
#[derive(Debug, Clone)]
pub struct TargetRun {
    pub cfg: RunConfig,
    pub crds: Option<PathBuf>,
}

/// A target could not be prepared.
#[derive(Debug, thiserror::Error)]
#[error("preparing the cluster for target {label}: {message}")]
pub struct PrepareError {
    pub label: String,
    pub message: String,
}

/// Run `suites` on each target in turn; a run cut short (watchdog, Ctrl-C, the cluster
/// died) skips the targets after it. Reporters hear `TargetStarted`, the suites' events,
/// `TargetFinished` and, at the end, `RunFinished`.
///
/// # Errors
/// A target whose CRDs or objects could not be installed (the run stops there).
pub async fn run_targets(
    cluster: Arc<RunningCluster>,
    targets: Vec<TargetRun>,
    suites: &[(PathBuf, Suite)],
    root: PathBuf,
    schedule: &Schedule,
    reporter: Arc<dyn Reporter>,
) -> Result<Arc<RunResults>, PrepareError> {
    let started = Instant::now();
    // What a killed run left on a cluster that outlives it.
    if let Ok(client) = cluster.client() {
        let swept = super::admission::sweep_orphans(&client).await;
        if swept > 0 {
            tracing::info!(swept, "removed admission policies a killed run left");
        }
    }
    let mut done: Vec<Arc<TargetResults>> = Vec::new();
    for mut t in targets {
        let label = t.cfg.controller.label.clone();
        prepare(&cluster, &mut t)
            .await
            .map_err(|message| PrepareError {
                label: label.clone(),
                message,
            })?;
        let report_dir = t.cfg.report_dir.clone();
        reporter.report(&SuiteEvent::TargetStarted {
            label: label.clone(),
            suites: suites.len(),
            report_dir: report_dir.clone(),
        });
        let target_started = Instant::now();
        let cfg = Arc::new(t.cfg);
        let (mut results, mut cut) = run_all(
            cluster.clone(),
            suites.to_vec(),
            root.clone(),
            cfg.clone(),
            schedule,
            reporter.clone(),
        )
        .await;
        if cut.is_none() {
            // One watchdog for the target's first run and its reruns together.
            let reruns = Schedule {
                timeout: schedule.timeout.saturating_sub(target_started.elapsed()),
                ..schedule.clone()
            };
            // The gate's new build: a suite the old build passed runs again before it
            // counts as broken (rerun on flip).
            let base = done.first().filter(|_| schedule.gate && done.len() == 1);
            let flipped = |r: &super::SuiteResult| {
                base.is_some_and(|b| {
                    b.results
                        .iter()
                        .any(|o| o.name == r.name && (o.passed || broke(o, r)))
                })
            };
            let again = Again {
                times: if base.is_some() {
                    schedule.reruns.max(GATE_RERUNS)
                } else {
                    schedule.reruns
                },
                worth: &|r| schedule.reruns > 0 || flipped(r),
            };
            cut = rerun_failed(
                &cluster,
                suites,
                &root,
                &cfg,
                (&reruns, &again),
                &reporter,
                &mut results,
            )
            .await;
        }
        let why = cut.map(|c| match c {
            Cut::Watchdog => format!(
                "watchdog: the run exceeded {}s; stopped",
                schedule.timeout.as_secs()
            ),
            Cut::Interrupted => "interrupted; stopped".to_owned(),
            Cut::ClusterDied => format!(
                "the cluster died; stopped: {}",
                cluster.dead_components().join("; ")
            ),
        });
        let not_run = not_run(
            suites.iter().map(|(_, s)| s.name.as_str()),
            &results.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        );
        let finished = Arc::new(TargetResults {
            label,
            not_run,
            results,
            wall: target_started.elapsed(),
            report_dir,
            cut,
            why,
        });
        reporter.report(&SuiteEvent::TargetFinished(finished.clone()));
        done.push(finished);
        if cut.is_some() {
            break;
        }
    }
    let run = Arc::new(RunResults {
        targets: done,
        wall: started.elapsed(),
    });
    reporter.report(&SuiteEvent::RunFinished(run.clone()));
    Ok(run)
}

/// Whether a check that passed in `old` fails in `new` (the gate's only regression).
fn broke(old: &super::SuiteResult, new: &super::SuiteResult) -> bool {
    new.checks.iter().any(|c| {
        let before = old.checks.iter().find(|o| o.id == c.id).map(|o| o.state);
        crate::judge::gate::movement(before, Some(c.state))
            == Some(crate::judge::gate::Movement::Broke)
    })
}

/// Which failed suites run again, and how often at most.
struct Again<'a> {
    times: u32,
    worth: &'a dyn Fn(&super::SuiteResult) -> bool,
}

/// `--rerun-failed N` (and the gate's rerun on flip): each failed suite `again` finds worth
/// it runs again, up to `again.times` times, until it passes; one that does is marked flaky
/// (its first failures kept as the evidence). Each attempt's bundles go to `rerun-<k>/`
/// beside the target's. Returns a cut, if one came.
async fn rerun_failed(
    cluster: &Arc<RunningCluster>,
    suites: &[(PathBuf, Suite)],
    root: &std::path::Path,
    cfg: &Arc<RunConfig>,
    (schedule, again): (&Schedule, &Again<'_>),
    reporter: &Arc<dyn Reporter>,
    results: &mut [super::SuiteResult],
) -> Option<Cut> {
    let started = Instant::now();
    for k in 1..=again.times {
        let due: Vec<(PathBuf, Suite)> = suites
            .iter()
            .filter(|(_, s)| {
                results
                    .iter()
                    .any(|r| r.name == s.name && !r.passed && !r.flaky && (again.worth)(r))
            })
            .cloned()
            .collect();
        if due.is_empty() {
            return None;
        }
        // What is left of the watchdog, over every rerun.
        let left = Schedule {
            timeout: schedule.timeout.saturating_sub(started.elapsed()),
            ..schedule.clone()
        };
        if left.timeout.is_zero() {
            return Some(Cut::Watchdog);
        }
        let mut attempt = (**cfg).clone();
        attempt.report_dir = cfg.report_dir.join(format!("rerun-{k}"));
        let (reruns, cut) = run_all(
            cluster.clone(),
            due,
            root.to_owned(),
            Arc::new(attempt),
            &left,
            reporter.clone(),
        )
        .await;
        for rerun in reruns {
            if let Some(r) = results.iter_mut().find(|r| r.name == rerun.name) {
                r.attempts += 1;
                r.flaky = rerun.passed;
            }
        }
        if cut.is_some() {
            return cut;
        }
    }
    None
}

/// A target's own CRDs and the objects it needs beside them.
async fn prepare(cluster: &RunningCluster, t: &mut TargetRun) -> Result<(), String> {
    if let Some(pod) = &mut t.cfg.controller.pod
        && pod.image.is_none()
    {
        pod.image = Some(super::pod_form::image_of(cluster, &t.cfg.controller.program, pod).await?);
    }
    if t.crds.is_none() && t.cfg.objects.is_empty() {
        return Ok(());
    }
    let client = cluster.client().map_err(|e| e.to_string())?;
    install::install_crds(&client, t.crds.as_deref(), &t.cfg.objects).await
}

/// The suites that did not run (cut short by `--fail-fast`, the watchdog, Ctrl-C), sorted.
fn not_run<'a>(all: impl Iterator<Item = &'a str>, ran: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = all
        .filter(|n| !ran.contains(n))
        .map(str::to_owned)
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use crate::judge::{Check, CheckState};
    use crate::run::SuiteResult;

    fn result(states: &[(&str, CheckState)]) -> SuiteResult {
        SuiteResult {
            name: "s1".into(),
            checks: states
                .iter()
                .map(|(id, state)| Check {
                    id: (*id).into(),
                    what: (*id).into(),
                    clause: None,
                    state: *state,
                })
                .collect(),
            ..SuiteResult::default()
        }
    }

    #[test]
    fn a_check_that_passed_and_fails_now_broke_whatever_the_suites_did() {
        use CheckState::{Failed, NotReached, Passed};
        // The old build failed the suite too, at a later step: the step it passed broke.
        let old = result(&[("steps[1] assert", Passed), ("steps[2] assert", Failed)]);
        let new = result(&[("steps[1] assert", Failed), ("steps[2] assert", NotReached)]);
        assert!(super::broke(&old, &new));
        // The other way round is progress, and a check new to the run is news.
        assert!(!super::broke(&new, &old));
        assert!(!super::broke(&result(&[]), &new));
    }

    #[test]
    fn the_suites_cut_short_are_named() {
        let all = ["c", "a", "b"];
        assert_eq!(super::not_run(all.into_iter(), &["b"]), ["a", "c"]);
        assert!(super::not_run(all.into_iter(), &all).is_empty());
    }
}
