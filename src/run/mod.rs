//! Runs suites against the controller under test: a namespace per suite, a flight
//! recorder, the controller as a process, the steps in order ([`steps`]), then the judge's
//! checks after the steps and the snapshot comparison. Progress goes out as
//! [`SuiteEvent`]s; a failing suite leaves a debug bundle.
//!
//! ```no_run
//! # async fn demo(cluster: &logbackup_conformance::cluster::RunningCluster) {
//! use std::path::Path;
//! use logbackup_conformance::run::{RunConfig, run_suite};
//! let root = Path::new(".");
//! let suite = logbackup_conformance::suite::load_file(Path::new("suites/retry-timeout.yaml"), root).unwrap();
//! let target = logbackup_conformance::target::find("reference", root).unwrap();
//! let target = logbackup_conformance::target::resolve(&target, &[]).unwrap();
//! let cfg = RunConfig::from_target(&target).unwrap();
//! let result = run_suite(cluster, &suite, Path::new("suites/retry-timeout.yaml"), root, &cfg).await;
//! println!("{}: {}", result.name, if result.passed { "pass" } else { "FAIL" });
//! # }
//! ```

pub mod all;
mod bundle;
pub mod controller;
pub mod install;
pub mod isolate;
pub mod kernel;
pub mod manifest;
pub mod namespace;
pub mod reporter;
mod scope;
mod set_up;
mod step_error;
pub mod steps;
mod teardown;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use lbc_api::kernel::KernelClient;
use lbc_api::plan::plan_configmap;
use serde_json::json;

pub use controller::ControllerSpec;
pub use reporter::{Reporter, SuiteEvent};

use crate::cluster::RunningCluster;
use crate::judge::metrics::MetricNames;
use crate::judge::{BackupNames, check_no_regression, check_schedule};
use crate::recorder::{Cursor, Kind, Recorder};
use crate::suite::Suite;
use controller::{ControllerProcess, SharedController};
use kernel::SuiteKernel;
use scope::Scope;

/// How suites run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub controller: ControllerSpec,
    pub job_image: String,
    /// Default suite timeout.
    pub suite_timeout: Duration,
    /// Where failing suites leave their debug bundle.
    pub report_dir: PathBuf,
    /// Committed snapshots (`suites__<name>.snap`) to compare with; `None`: the caller
    /// compares (the cargo tests, through insta).
    pub snapshots: Option<PathBuf>,
    /// The controller's metric names per LBR-15 role; `None`: `metrics` assertions fail
    /// saying so.
    pub metric_names: Option<MetricNames>,
    /// Objects created in each suite's namespace before the controller starts (the
    /// target's, e.g. a `TidbCluster`); `{namespace}` is filled.
    pub objects: Vec<serde_json::Value>,
    /// Compare each suite's behaviour fingerprint with this baseline directory
    /// (`tests/baselines/NAME`); `update`: overwrite it.
    pub baseline: Option<BaselineDir>,
    /// Put the API proxy between the controller and the apiserver (its traffic in the
    /// bundle, `fault` steps possible). Off: the controller talks to the apiserver directly.
    pub api_proxy: bool,
    /// Latency the proxy adds to every request (stress mode).
    pub api_latency: crate::proxy::Latency,
    /// Keep the debug bundle of passing suites too (as `LBC_BUNDLE=always` does).
    pub keep_bundles: bool,
    /// Suites share the cluster's kernel, their Backups named `<hash of the suite>-<name>`
    /// (the default); off, each suite starts an etcd of its own where its Pods can reach
    /// one on loopback, and keeps its declared names.
    pub shared_kernel: bool,
}

/// Where a run's behaviour fingerprints are compared (`lbc run --baseline NAME`).
#[derive(Debug, Clone)]
pub struct BaselineDir {
    pub dir: PathBuf,
    pub update: bool,
}

impl RunConfig {
    /// Defaults around `controller`: fake-br's job image, 120 s per suite, reports in
    /// `target/lbc-report`, the committed snapshots; no metric names, no per-suite objects.
    pub fn new(controller: ControllerSpec) -> Self {
        Self {
            controller,
            job_image: lbc_api::names::JOB_IMAGE.into(),
            suite_timeout: Duration::from_secs(120),
            report_dir: PathBuf::from("target/lbc-report"),
            snapshots: Some(PathBuf::from("tests/snapshots")),
            metric_names: None,
            objects: Vec::new(),
            baseline: None,
            api_proxy: true,
            api_latency: crate::proxy::Latency::default(),
            keep_bundles: false,
            shared_kernel: true,
        }
    }

    /// A resolved target: its controller, metric names and per-suite objects.
    ///
    /// # Errors
    /// Its program cannot be found or built.
    pub fn from_target(t: &crate::target::Resolved) -> Result<Self, String> {
        Ok(Self {
            metric_names: t.metric_names.clone(),
            objects: t.objects.clone(),
            ..Self::new(ControllerSpec::from_target(t)?)
        })
    }
}

/// The verdict of one suite. It passed when `failures` is empty — the one definition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SuiteResult {
    pub name: String,
    pub file: String,
    pub clauses: Vec<String>,
    pub labels: Vec<String>,
    pub passed: bool,
    /// The first failing step ends the steps; the checks after them may add more.
    pub failures: Vec<String>,
    /// Measured figures, e.g. "lb1: retry 1 seen +0.31 s after expectedRetryAt".
    pub margins: Vec<String>,
    pub seconds: f64,
    /// Σ (expectedRetryAt − detectFailedAt) over the final records whose retry ran: time the
    /// suite must wait.
    pub backoff_seconds: f64,
    pub snapshot: Option<String>,
    /// The comparison with the baseline, when the run has one (never a contract verdict).
    pub baseline: Option<crate::baseline::Verdict>,
    pub bundle: Option<PathBuf>,
    /// Each step's kind and duration, seconds.
    pub steps: Vec<(String, f64)>,
    /// The controller's API calls, when the run had the proxy (for `lbc explore`).
    #[serde(skip)]
    pub api_calls: Vec<crate::proxy::ApiCall>,
    /// Armed faults that never fired.
    #[serde(skip)]
    pub unfired_faults: usize,
    /// The suite's story for the HTML report (absent when it could not start).
    #[serde(skip)]
    pub timeline: Option<crate::report::timeline::Timeline>,
}

impl SuiteResult {
    pub(crate) fn new(suite: &Suite, file: &Path) -> Self {
        Self {
            name: suite.name.clone(),
            file: file.display().to_string(),
            clauses: suite.clauses.clone(),
            labels: suite.labels.clone(),
            passed: false,
            failures: Vec::new(),
            margins: Vec::new(),
            seconds: 0.0,
            backoff_seconds: 0.0,
            snapshot: None,
            baseline: None,
            bundle: None,
            steps: Vec::new(),
            api_calls: Vec::new(),
            unfired_faults: 0,
            timeline: None,
        }
    }
}

/// Run `suite` (read from `file`) on `cluster`.
pub async fn run_suite(
    cluster: &RunningCluster,
    suite: &Suite,
    file: &Path,
    root: &Path,
    cfg: &RunConfig,
) -> SuiteResult {
    run_suite_reporting(cluster, suite, file, root, cfg, &reporter::Silent).await
}

/// [`run_suite`], telling `reporter` what happens.
pub async fn run_suite_reporting(
    cluster: &RunningCluster,
    suite: &Suite,
    file: &Path,
    root: &Path,
    cfg: &RunConfig,
    reporter: &dyn Reporter,
) -> SuiteResult {
    let started = Instant::now();
    let mut result = SuiteResult::new(suite, file);
    reporter.report(&SuiteEvent::Started {
        suite: suite.name.clone(),
    });
    let bundle_dir = cfg.report_dir.join(&suite.name);
    let Some(mut cx) = set_up::set_up(cluster, suite, root, cfg, &bundle_dir, &mut result).await
    else {
        result.seconds = started.elapsed().as_secs_f64();
        return result;
    };
    let suite_started = jiff::Timestamp::now();
    let mut step_times = Vec::new();
    if result.failures.is_empty() {
        for (i, step) in suite.steps.iter().enumerate() {
            let kind = steps::kind(step);
            cx.step = i;
            let step_started = Instant::now();
            let step_started_at = jiff::Timestamp::now();
            let outcome = tokio::time::timeout(
                cx.left() + Duration::from_millis(100),
                steps::run_step(step, &mut cx),
            )
            .await;
            let seconds = step_started.elapsed().as_secs_f64();
            result.steps.push((kind.to_owned(), seconds));
            let err = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!(
                    "the suite timeout ({}s) ran out",
                    suite
                        .timeout
                        .as_ref()
                        .map_or(cfg.suite_timeout, |d| d.get())
                        .as_secs()
                )),
            };
            reporter.report(&SuiteEvent::StepDone {
                suite: suite.name.clone(),
                index: i,
                kind,
                seconds,
                error: err.clone(),
            });
            step_times.push(crate::report::timeline::StepTime {
                kind: kind.to_owned(),
                started: step_started_at,
                seconds,
                error: err.clone(),
            });
            if let Some(e) = err {
                result.failures.push(format!("steps[{i}] ({kind}): {e}"));
                break;
            }
        }
    }
    let checks = after_steps(&mut cx, cfg, &mut result);
    for message in checks {
        reporter.report(&SuiteEvent::CheckFailed {
            suite: suite.name.clone(),
            message: message.clone(),
        });
        result.failures.push(message);
    }
    result.snapshot = cx.snapshot.take();
    if let (Some(dir), Some(got)) = (&cfg.snapshots, &result.snapshot)
        && let Err(diff) = crate::snapshot::compare(dir, &suite.name, got)
    {
        reporter.report(&SuiteEvent::CheckFailed {
            suite: suite.name.clone(),
            message: diff.clone(),
        });
        result.failures.push(diff);
    }
    result.passed = result.failures.is_empty();
    if let Some(b) = &cfg.baseline {
        let got = cx.fingerprint.take().unwrap_or_else(|| {
            let entries = cx.recorder.trace.since(0);
            crate::baseline::fingerprint(&cx.names, cx.cursor.state(), &entries, &cx.namespace)
        });
        result.baseline = match crate::baseline::compare(&b.dir, &suite.name, &got, b.update) {
            Ok(v) => Some(v),
            Err(e) => {
                result
                    .failures
                    .push(format!("writing the baseline in {}: {e}", b.dir.display()));
                result.passed = false;
                None
            }
        };
    }
    for finding in teardown::teardown(&mut cx).await {
        reporter.report(&SuiteEvent::CheckFailed {
            suite: suite.name.clone(),
            message: finding.clone(),
        });
        result.failures.push(finding);
        result.passed = false;
    }
    if let Some(p) = &cx.proxy {
        result.api_calls = p.log.calls();
    }
    let entries = cx.recorder.trace.since(0);
    let faults: Vec<(jiff::Timestamp, String)> = result
        .api_calls
        .iter()
        .filter_map(|c| Some((c.start, c.fault.clone()?)))
        .collect();
    let step_failures = step_times.iter().filter(|s| s.error.is_some()).count();
    result.timeline = Some(crate::report::timeline::build(
        &crate::report::timeline::Sources {
            started: suite_started,
            ended: jiff::Timestamp::now(),
            entries: &entries,
            steps: &step_times,
            faults: &faults,
            late_failures: result.failures.get(step_failures..).unwrap_or_default(),
        },
    ));
    // LBC_BUNDLE=always keeps the bundle of passing suites too (to study a run).
    if !result.passed
        || cfg.keep_bundles
        || std::env::var("LBC_BUNDLE").is_ok_and(|v| v == "always")
    {
        bundle::write_bundle(
            &bundle_dir,
            &cx,
            &entries,
            cx.cursor.state(),
            cluster,
            &result,
        )
        .await;
        result.bundle = Some(bundle_dir.clone());
    } else {
        let _ = std::fs::remove_dir_all(&bundle_dir);
    }
    if let Some(k) = cx.own_kernel.take() {
        let dir = cluster
            .run_dir
            .as_ref()
            .map(|d| d.join("kernels").join(&suite.name));
        // Stopping etcd waits for its exit: off the runtime's workers (see teardown).
        crate::programs::process::off_the_runtime(move || {
            drop(k);
            if let Some(dir) = dir {
                let _ = std::fs::remove_dir_all(dir);
            }
        })
        .await;
    }
    result.seconds = started.elapsed().as_secs_f64();
    reporter.report(&SuiteEvent::Finished(std::sync::Arc::new(result.clone())));
    result
}

/// The checks of every suite after its steps: the controller under test is still running
/// (LBR-14 "neither crashes"), every `events` assertion still holds over the whole trace,
/// no subcommand went back to an earlier phase (LBR-16), and the schedule judge
/// (LBR-1/2/3) on every Backup. Returns the failures.
fn after_steps(cx: &mut Scope<'_>, _cfg: &RunConfig, result: &mut SuiteResult) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(status) = cx.controller.crashed() {
        out.push(format!(
            "the controller under test exited during the suite ({status}); see controller.log"
        ));
    }
    if let Some(exit) = cx.own_kernel.as_mut().and_then(SuiteKernel::died) {
        out.push(format!(
            "the suite's kernel (etcd) died during the suite ({exit})"
        ));
    }
    if let Some(proxy) = &cx.proxy {
        let unfired = unfired(&proxy.faults.armed());
        result.unfired_faults = unfired.len();
        out.extend(unfired);
    }
    cx.cursor.catch_up(&cx.recorder.trace);
    for a in std::mem::take(&mut cx.final_events) {
        if let Err(e) = steps::events_hold(&a, cx) {
            out.push(format!(
                "events about {} changed after the assertion held (checked again at the end): {e}",
                a.backup
            ));
        }
    }
    let entries = cx.recorder.trace.since(0);
    for (decl, actual) in &cx.names.0 {
        out.extend(
            check_no_regression(&entries, actual)
                .into_iter()
                .map(|v| format!("phases, {decl}: {v}")),
        );
        // A Backup deleted during the suite is judged as it last was.
        let last_seen = || {
            entries
                .iter()
                .rev()
                .find(|e| e.kind == Kind::Backup && !e.deleted && e.name == *actual)
                .and_then(|e| serde_json::from_value::<lbc_api::Backup>(e.object.clone()).ok())
        };
        let backup = cx
            .cursor
            .state()
            .backups
            .get(actual)
            .cloned()
            .or_else(last_seen);
        if let Some(b) = &backup {
            let check = check_schedule(b, &entries);
            out.extend(
                check
                    .violations
                    .into_iter()
                    .map(|v| format!("schedule judge, {decl}: {v}")),
            );
            result
                .margins
                .extend(check.margins.into_iter().map(|m| format!("{decl}: {m}")));
            // Only retries that ran: a suite that stops before a long delay does not wait it.
            for r in &b.status.clone().unwrap_or_default().backoff_retry_status {
                if let (Some(d), Some(e), Some(_)) =
                    (&r.detect_failed_at, &r.expected_retry_at, &r.real_retry_at)
                {
                    result.backoff_seconds += e.0.duration_since(d.0).as_secs_f64();
                }
            }
        }
    }
    out
}

/// A failure for each armed fault that never fired: its suite tested nothing with it.
fn unfired(armed: &[crate::proxy::Armed]) -> Vec<String> {
    armed
        .iter()
        .filter(|a| a.fired.is_none())
        .map(|a| {
            format!(
                "{}: the fault ({}) never fired: {} matching request(s) came, it waited for number {}",
                a.fault.label,
                a.fault.action.describe(),
                a.seen,
                a.fault.occurrence
            )
        })
        .collect()
}

/// PD's service names the suite's Backups resolve (`<cluster>-pd.<clusterNamespace>`).
fn pd_names(suite: &Suite, ns: &str) -> Vec<String> {
    let mut names: Vec<String> = suite
        .backups
        .iter()
        .filter_map(|d| manifest::backup_manifest(suite, d, &d.name, Path::new(".")).ok())
        .filter_map(|b| b.spec.br)
        .map(|br| {
            let cns = br.cluster_namespace.unwrap_or_else(|| ns.to_owned());
            lbc_api::names::pd_endpoint(&br.cluster, &cns)
                .trim_end_matches(&format!(":{}", isolate::PD_PORT))
                .to_owned()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}
