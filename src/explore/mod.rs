//! Restart-equivalence exploration (`lbc explore`, LBR-8 "killed at any moment"): run a
//! suite once through the API proxy to learn the controller's write points (every write
//! it made, in order), then once per write point with the controller SIGKILLed just before
//! that write is forwarded and just after it took effect, and compare each run's contract
//! outcome — the suite's own verdict and its normalized snapshot — with the uninterrupted
//! run. Any difference (a duplicate record, Job or event, a lost retry, a stuck backup) is
//! a finding, reported with the write point and the run's debug bundle.

use futures::StreamExt;
use serde::Serialize;
use std::path::{Path, PathBuf};

use crate::cluster::RunningCluster;
use crate::proxy::{ApiCall, Verb};
use crate::run::{RunConfig, SuiteResult, run_suite};
use crate::suite::Suite;
use crate::suite::model::{
    CrashAt, CrashFault, FaultKind, FaultStep, RequestMatch, SuiteStep, VerbDecl,
};

/// One write of the controller, as a fault can find it again: the nth request with this
/// verb, resource, subresource, name (and an Event's reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WritePoint {
    pub verb: Verb,
    pub resource: String,
    pub subresource: Option<String>,
    pub name: Option<String>,
    pub reason: Option<String>,
    /// Among the requests with the same key, from 1.
    pub occurrence: u32,
}

impl WritePoint {
    pub fn describe(&self) -> String {
        let mut s = format!("{} {}", self.verb.as_str(), self.resource);
        if let Some(sub) = &self.subresource {
            s.push('/');
            s.push_str(sub);
        }
        if let Some(n) = &self.name {
            s.push(' ');
            s.push_str(n);
        }
        if let Some(r) = &self.reason {
            s.push_str(&format!(" ({r})"));
        }
        format!("{s} #{}", self.occurrence)
    }
}

/// The write points of an API log, in order: every successful write (pure). Occurrences
/// count every request with the same key, as a fault's matcher does.
pub fn write_points(calls: &[ApiCall]) -> Vec<WritePoint> {
    let mut seen: Vec<(WritePoint, u32)> = Vec::new();
    let mut out = Vec::new();
    for c in calls {
        let (Some(verb), Some(resource)) = (c.request.verb, &c.request.resource) else {
            continue;
        };
        if !verb.is_write() {
            continue;
        }
        // Event names are generated: an event is found again by its reason instead.
        let name = (resource != "events")
            .then(|| c.request.name.clone())
            .flatten();
        let key = WritePoint {
            verb,
            resource: resource.clone(),
            subresource: c.request.subresource.clone(),
            name,
            reason: c.reason.clone(),
            occurrence: 0,
        };
        let n = match seen.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                seen.push((key.clone(), 1));
                1
            }
        };
        if (200..300).contains(&c.status) {
            out.push(WritePoint {
                occurrence: n,
                ..key
            });
        }
    }
    out
}

/// A crash at a write point, before or after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub point: WritePoint,
    pub after: bool,
}

impl Probe {
    pub fn describe(&self) -> String {
        format!(
            "crash {} {}",
            if self.after { "after" } else { "before" },
            self.point.describe()
        )
    }
}

/// At most `max` probes, spread evenly over every point × {before, after} (pure).
pub fn choose(points: &[WritePoint], max: usize) -> Vec<Probe> {
    let all: Vec<Probe> = points
        .iter()
        .flat_map(|p| {
            [false, true].map(|after| Probe {
                point: p.clone(),
                after,
            })
        })
        .collect();
    if all.len() <= max {
        return all;
    }
    if max == 0 {
        return Vec::new();
    }
    // Evenly spaced indices, first and last included.
    (0..max)
        .map(|i| all[i * (all.len() - 1) / (max - 1).max(1)].clone())
        .collect()
}

/// What a crash at a probe interrupts, as the controller's writes tell it: the side of the
/// write, its kind and the kinds of the writes just before and after it (no names, no
/// counts). Two probes with the same transition stop a controller between the same two
/// steps of its protocol, whatever the suite: the test explores each transition once, in
/// the first suite (by name) that reaches it; `.ci/run` probes every point, `lbc explore` up
/// to `--max-runs` per suite.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Transition {
    pub after: bool,
    pub at: String,
    pub prev: Option<String>,
    pub next: Option<String>,
}

/// A write's kind: verb, resource, subresource, the subcommand of a Job's name, an event's
/// reason (pure).
pub fn kind(p: &WritePoint) -> String {
    let mut s = format!("{} {}", p.verb.as_str(), p.resource);
    if let Some(sub) = &p.subresource {
        s.push('/');
        s.push_str(sub);
    }
    if p.resource == "jobs"
        && let Some(sub) = p.name.as_deref().and_then(job_subcommand)
    {
        s.push(' ');
        s.push_str(sub);
    }
    if let Some(r) = &p.reason {
        s.push_str(&format!(" ({r})"));
    }
    s
}

/// The subcommand a Job's name ends with (`backup-lb1-log-start` → `log-start`).
fn job_subcommand(name: &str) -> Option<&'static str> {
    [
        "log-start",
        "log-stop",
        "log-pause",
        "log-resume",
        "log-truncate",
        "snapshot",
    ]
    .into_iter()
    .find(|s| name.ends_with(s))
}

/// Every probe of `points` with its transition, in order (pure).
pub fn transitions(points: &[WritePoint]) -> Vec<(Probe, Transition)> {
    let kinds: Vec<String> = points.iter().map(kind).collect();
    let mut out = Vec::new();
    for (i, p) in points.iter().enumerate() {
        for after in [false, true] {
            out.push((
                Probe {
                    point: p.clone(),
                    after,
                },
                Transition {
                    after,
                    at: kinds[i].clone(),
                    prev: i.checked_sub(1).map(|j| kinds[j].clone()),
                    next: kinds.get(i + 1).cloned(),
                },
            ));
        }
    }
    out
}

/// The probes of `points` whose transition is not in `seen` yet, each transition once
/// (pure); `seen` gains them. A suite whose every transition was seen still gets one probe,
/// the crash after its last write (a restart with nothing left to do), so that every suite
/// is explored.
pub fn choose_new(
    points: &[WritePoint],
    seen: &mut std::collections::BTreeSet<Transition>,
) -> Vec<Probe> {
    let all = transitions(points);
    let fresh: Vec<Probe> = all
        .iter()
        .filter(|(_, t)| seen.insert(t.clone()))
        .map(|(p, _)| p.clone())
        .collect();
    if fresh.is_empty() {
        return all.last().map(|(p, _)| p.clone()).into_iter().collect();
    }
    fresh
}

/// `suite` with a crash at `probe` armed before its first step, under a name of its own.
pub fn probe_suite(suite: &Suite, probe: &Probe, index: usize) -> Suite {
    let p = &probe.point;
    let verb = match p.verb {
        Verb::Create => VerbDecl::Create,
        Verb::Update => VerbDecl::Update,
        Verb::Patch => VerbDecl::Patch,
        _ => VerbDecl::Delete,
    };
    let fault = FaultStep {
        request: RequestMatch {
            verb: Some(verb),
            resource: Some(p.resource.clone()),
            subresource: p.subresource.clone(),
            name: p.name.clone(),
            body: p.reason.as_ref().map(|r| serde_json::json!({"reason": r})),
            makes: None,
        },
        occurrence: Some(p.occurrence),
        inject: FaultKind::Crash(CrashFault {
            at: if probe.after {
                CrashAt::After
            } else {
                CrashAt::Before
            },
            restart_after: None,
        }),
    };
    let mut s = suite.clone();
    s.name = format!("{}-x{index}", suite.name);
    s.steps.insert(0, SuiteStep::Fault(fault));
    s
}

/// How a probe run compares with the uninterrupted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Same,
    Different,
    /// The run never made the write the crash waited for: no finding.
    Unreached,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Same => "same",
            Self::Different => "different",
            Self::Unreached => "unreached",
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub probe: String,
    pub verdict: Verdict,
    pub differences: Vec<String>,
    pub bundle: Option<PathBuf>,
    pub seconds: f64,
}

/// The exploration of one suite.
#[derive(Debug, Clone, Serialize)]
pub struct Exploration {
    pub suite: String,
    pub write_points: usize,
    /// Probes possible (points × 2) and run.
    pub possible: usize,
    pub outcomes: Vec<Outcome>,
    pub seconds: f64,
}

impl Exploration {
    pub fn differing(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes
            .iter()
            .filter(|o| o.verdict == Verdict::Different)
    }

    /// Probes whose crash point the run never reached.
    pub fn unreached(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.verdict == Verdict::Unreached)
            .count()
    }

    /// Each differing probe: the crash point, what differs, where its bundle is.
    pub fn findings(&self) -> Vec<String> {
        self.differing()
            .map(|o| {
                let mut s = format!("{}: {} DIFFERS:", self.suite, o.probe);
                for d in &o.differences {
                    s.push_str(&format!("\n  {}", d.replace('\n', "\n  ")));
                }
                if let Some(b) = &o.bundle {
                    s.push_str(&format!("\n  debug bundle: {}", b.display()));
                }
                s
            })
            .collect()
    }
}

/// How to explore.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Probe runs per suite at most.
    pub max_runs: usize,
    /// Runs at once.
    pub jobs: usize,
}

/// A suite's uninterrupted run, what its probes are compared with.
#[derive(Debug, Clone)]
pub struct Learned {
    pub suite: Suite,
    pub file: PathBuf,
    pub base: SuiteResult,
    pub points: Vec<WritePoint>,
    cfg: RunConfig,
    started: std::time::Instant,
}

/// Run `suite` (from `file`) once without a crash and learn its write points.
///
/// # Errors
/// The suite cannot be explored, or its uninterrupted run fails (nothing to compare with).
pub async fn learn(
    cluster: &RunningCluster,
    suite: &Suite,
    file: &Path,
    root: &Path,
    cfg: &RunConfig,
) -> Result<Learned, String> {
    let started = std::time::Instant::now();
    if let Some(why) = not_explorable(suite) {
        return Err(format!("{}: not explored: {why}", suite.name));
    }
    let mut cfg = cfg.clone();
    // The comparison is with the uninterrupted run, not with the committed snapshots.
    cfg.snapshots = None;
    cfg.api_proxy = true;
    let base = run_suite(cluster, suite, file, root, &cfg).await;
    // A probe's outcome may differ while its own checks pass: keep every bundle, drop
    // those of probes that found nothing.
    cfg.keep_bundles = true;
    if !base.passed {
        return Err(format!(
            "{}: the uninterrupted run failed, nothing to compare with:\n  {}",
            suite.name,
            base.failures.join("\n  ")
        ));
    }
    let points = write_points(&base.api_calls);
    Ok(Learned {
        suite: suite.clone(),
        file: file.to_owned(),
        base,
        points,
        cfg,
        started,
    })
}

/// One probe run of a learned suite, judged against its uninterrupted run (`index` names
/// the probe's namespace).
pub async fn probe(
    cluster: &RunningCluster,
    learned: &Learned,
    probe: &Probe,
    index: usize,
    root: &Path,
) -> Outcome {
    let s = probe_suite(&learned.suite, probe, index);
    let r = run_suite(cluster, &s, &learned.file, root, &learned.cfg).await;
    let mut o = judge_probe(probe, &learned.base, &r);
    if o.verdict != Verdict::Different
        && let Some(b) = o.bundle.take()
    {
        let _ = std::fs::remove_dir_all(b);
    }
    o
}

impl Learned {
    /// The exploration made of these outcomes.
    pub fn exploration(&self, mut outcomes: Vec<Outcome>) -> Exploration {
        outcomes.sort_by(|a, b| a.probe.cmp(&b.probe));
        Exploration {
            suite: self.suite.name.clone(),
            write_points: self.points.len(),
            possible: self.points.len() * 2,
            outcomes,
            seconds: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// Explore `suite` (from `file`): the uninterrupted run, then the probes. `progress` hears
/// one line per finished run.
///
/// # Errors
/// The uninterrupted run fails (nothing to compare with) or has no API proxy.
pub async fn explore(
    cluster: &RunningCluster,
    suite: &Suite,
    file: &Path,
    root: &Path,
    cfg: &RunConfig,
    budget: &Budget,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Exploration, String> {
    let learned = learn(cluster, suite, file, root, cfg).await?;
    let probes = choose(&learned.points, budget.max_runs);
    progress(&format!(
        "{}: {} write points, {} probes possible, running {}",
        suite.name,
        learned.points.len(),
        learned.points.len() * 2,
        probes.len()
    ));
    let total = probes.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let runs = probes.iter().enumerate().map(|(i, p)| {
        let (learned, done) = (&learned, &done);
        async move {
            let o = probe(cluster, learned, p, i, root).await;
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(&format!(
                "[{n}/{total}] {}: {} → {}",
                suite.name,
                o.probe,
                o.verdict.as_str()
            ));
            o
        }
    });
    let outcomes: Vec<Outcome> = futures::stream::iter(runs)
        .buffer_unordered(budget.jobs.max(1))
        .collect()
        .await;
    Ok(learned.exploration(outcomes))
}

/// Why `suite` cannot be compared across a crash, if it cannot (pure): a `metrics`
/// assertion counts since the controller last started, so a restart resets what it reads.
pub fn not_explorable(suite: &Suite) -> Option<&'static str> {
    use crate::suite::model::Assertion;
    suite
        .steps
        .iter()
        .any(|s| matches!(s, SuiteStep::Assert(Assertion::Metrics(_))))
        .then_some(
            "its metrics assertions count since the controller last started, which a crash resets",
        )
}

/// Compare a probe run with the uninterrupted one (pure).
pub fn judge_probe(probe: &Probe, base: &SuiteResult, run: &SuiteResult) -> Outcome {
    let mut differences = Vec::new();
    // The probe's own fault is steps[0]; a crash point the run never reached is no finding.
    let unreached = run.unfired_faults > 0;
    if !unreached {
        differences.extend(
            run.failures
                .iter()
                .map(|f| format!("the suite failed: {f}")),
        );
        if let (Some(a), Some(b)) = (&base.snapshot, &run.snapshot)
            && a != b
        {
            let diff = similar::TextDiff::from_lines(a, b)
                .unified_diff()
                .header("uninterrupted", "with the crash")
                .to_string();
            differences.push(format!("the normalized outcome differs:\n{diff}"));
        }
    }
    Outcome {
        probe: probe.describe(),
        verdict: if unreached {
            Verdict::Unreached
        } else if differences.is_empty() {
            Verdict::Same
        } else {
            Verdict::Different
        },
        differences,
        bundle: run.bundle.clone(),
        seconds: run.seconds,
    }
}

#[cfg(test)]
mod tests;
