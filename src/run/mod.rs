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

pub mod admission;
pub mod all;
mod bundle;
pub mod controller;
pub mod controller_pod;
pub mod install;
pub mod isolate;
pub mod job_access;
pub mod kernel;
mod kernel_pod;
pub mod manifest;
pub mod namespace;
mod pod_form;
pub mod reporter;
mod scope;
mod set_up;
mod shared_controller;
mod step_error;
pub mod steps;
pub mod story;
pub mod targets;
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
pub use reporter::{Fanout, Reporter, RunResults, Silent, SuiteEvent, TargetResults};
pub use story::{Shown, StepTime, Story};

use crate::cluster::RunningCluster;
use crate::judge::metrics::MetricNames;
use crate::judge::{BackupNames, Check, CheckState};
use crate::recorder::{Cursor, Recorder};
use crate::suite::Suite;
use controller::{ControllerProcess, SharedController};
use kernel::SuiteKernel;
use scope::Scope;

/// How suites run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub controller: ControllerSpec,
    pub job_image: String,
    /// `spec.toolImage` for the Backups the harness creates (the BR image TiDB Operator's
    /// Jobs copy `br` from); `None` leaves it unset (the operator's default).
    pub tool_image: Option<String>,
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
    /// Each suite's kernel is an etcd Pod of this image behind PD's Service in its namespace,
    /// reached from here by a port-forward (`--kernel in-cluster`): any cluster whose nodes
    /// hold the image.
    pub kernel_in_cluster: Option<String>,
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
            tool_image: None,
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
            kernel_in_cluster: None,
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
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SuiteResult {
    pub name: String,
    pub file: String,
    pub clauses: Vec<String>,
    pub labels: Vec<String>,
    /// The replayed field report's story, if the suite has one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub story: Vec<String>,
    pub passed: bool,
    /// The first failing step ends the steps; the checks after them may add more.
    pub failures: Vec<String>,
    /// Every check, by its stable identity: each step, each judge rule, the snapshot (what
    /// a gate compares between two builds).
    pub checks: Vec<crate::judge::Check>,
    /// It failed, then passed when run again (`--rerun-failed`): neither a pass nor a
    /// failure. `failures` keep the failed attempt's evidence.
    pub flaky: bool,
    /// How many times it ran (1, or more with `--rerun-failed`).
    pub attempts: u32,
    /// What the judge measured of every record (detection lag, the retry's lateness).
    pub margins: Vec<crate::judge::RecordMargin>,
    pub seconds: f64,
    /// The longest, over the suite's Backups, of Σ (expectedRetryAt − detectFailedAt) over
    /// its final records whose retry ran: time the suite must wait.
    pub backoff_seconds: f64,
    /// The controller's writes in the suite (its API cost), when the run had the proxy.
    pub api_writes: Option<usize>,
    /// Retry cycles the suite went through (records at the end, over its Backups).
    pub retry_cycles: usize,
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
}

impl SuiteResult {
    pub(crate) fn new(suite: &Suite, file: &Path) -> Self {
        Self {
            name: suite.name.clone(),
            file: file.display().to_string(),
            clauses: suite.clauses.clone(),
            labels: suite.labels.clone(),
            story: suite.story.clone(),
            passed: false,
            failures: Vec::new(),
            checks: Vec::new(),
            flaky: false,
            attempts: 1,
            margins: Vec::new(),
            seconds: 0.0,
            backoff_seconds: 0.0,
            api_writes: None,
            retry_cycles: 0,
            snapshot: None,
            baseline: None,
            bundle: None,
            steps: Vec::new(),
            api_calls: Vec::new(),
            unfired_faults: 0,
        }
    }
}

/// Run `suite` (read from `file`) on `cluster`; a failing suite leaves its debug bundle.
pub async fn run_suite(
    cluster: &RunningCluster,
    suite: &Suite,
    file: &Path,
    root: &Path,
    cfg: &RunConfig,
) -> SuiteResult {
    run_suite_reporting(cluster, suite, file, root, cfg, &reporter::Silent).await
}

/// [`run_suite`], telling `reporter` what happens. The debug bundle is written by
/// the bundle writer (`bundle.rs`), which hears every suite's end whatever `reporter` is.
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
    let mut cx = match set_up::set_up(cluster, suite, root, cfg, &bundle_dir, &mut result).await {
        Ok(cx) => cx,
        Err(e) => {
            result.failures.push(e);
            result.checks.push(Check::named("set-up", false));
            result.checks.extend(steps_not_reached(suite, 0));
            result.seconds = started.elapsed().as_secs_f64();
            return result;
        }
    };
    // Set-up may have failed after the namespace (a plan not written): no steps then.
    let set_up_ok = result.failures.is_empty();
    result.checks.push(Check::named("set-up", set_up_ok));
    let suite_started = jiff::Timestamp::now();
    let steps = if set_up_ok {
        run_steps(suite, cfg, &mut cx, &mut result, reporter).await
    } else {
        result.checks.extend(steps_not_reached(suite, 0));
        Vec::new()
    };
    let complete =
        set_up_ok && steps.len() == suite.steps.len() && steps.iter().all(|s| s.error.is_none());
    let findings = judge_after_steps(&mut cx, &mut result, suite_started, &steps);
    result
        .checks
        .extend(Check::rules(cx.names.0.keys(), &findings, complete));
    let mut late: Vec<String> = findings.iter().map(ToString::to_string).collect();
    result.snapshot = cx.snapshot.take();
    if let (Some(dir), Some(got)) = (&cfg.snapshots, &result.snapshot) {
        let compared = crate::snapshot::compare(dir, &suite.name, got);
        result
            .checks
            .push(Check::named("snapshot", compared.is_ok()));
        late.extend(compared.err());
    }
    compare_baseline(cfg, &mut cx, &suite.name, &mut result);
    let torn = teardown::teardown(&mut cx).await;
    result
        .checks
        .push(Check::named("teardown", torn.is_empty()));
    late.extend(torn);
    for message in late {
        reporter.report(&SuiteEvent::CheckFailed {
            suite: suite.name.clone(),
            message: message.clone(),
        });
        result.failures.push(message);
    }
    result.passed = result.failures.is_empty();
    if let Some(p) = &cx.proxy {
        result.api_calls = p.log.calls();
    }
    // LBC_BUNDLE=always keeps the bundle of passing suites too (to study a run).
    let keep = !result.passed
        || cfg.keep_bundles
        || std::env::var("LBC_BUNDLE").is_ok_and(|v| v == "always");
    let story = story(&cx, cluster, suite_started, steps, keep).await;
    if keep {
        result.bundle = Some(bundle_dir.clone());
    } else {
        let _ = std::fs::remove_dir_all(&bundle_dir);
    }
    stop_own_kernel(&mut cx, cluster, &suite.name).await;
    result.seconds = started.elapsed().as_secs_f64();
    let finished = SuiteEvent::Finished {
        result: std::sync::Arc::new(result.clone()),
        story: std::sync::Arc::new(story),
    };
    bundle::BundleWriter.report(&finished);
    reporter.report(&finished);
    result
}

/// The steps in order; the first failing step ends them. Returns how each ran.
async fn run_steps(
    suite: &Suite,
    cfg: &RunConfig,
    cx: &mut Scope<'_>,
    result: &mut SuiteResult,
    reporter: &dyn Reporter,
) -> Vec<story::StepTime> {
    let mut times = Vec::new();
    for (i, step) in suite.steps.iter().enumerate() {
        let steps::KindInfo { kind, shown, acts } = steps::info(step);
        cx.step = i;
        let step_started = Instant::now();
        let step_started_at = jiff::Timestamp::now();
        let outcome = tokio::time::timeout(
            cx.left() + Duration::from_millis(100),
            steps::run_step(step, cx),
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
        times.push(story::StepTime {
            kind: kind.to_owned(),
            shown,
            acts,
            started: step_started_at,
            seconds,
            error: err.clone(),
        });
        let state = if err.is_some() {
            CheckState::Failed
        } else {
            CheckState::Passed
        };
        result.checks.push(Check::step(i, step, kind, state));
        if let Some(e) = err {
            result.failures.push(format!("steps[{i}] ({kind}): {e}"));
            break;
        }
    }
    result.checks.extend(steps_not_reached(suite, times.len()));
    times
}

/// The checks of the suite's steps from `from` on, never reached.
fn steps_not_reached(suite: &Suite, from: usize) -> Vec<Check> {
    suite
        .steps
        .iter()
        .enumerate()
        .skip(from)
        .map(|(i, step)| Check::step(i, step, steps::info(step).kind, CheckState::NotReached))
        .collect()
}

/// Hand what the runner observed to the judge ([`crate::judge::after_steps`]); its margins
/// and backoff go into the result, its failures are returned.
fn judge_after_steps(
    cx: &mut Scope<'_>,
    result: &mut SuiteResult,
    started: jiff::Timestamp,
    steps: &[story::StepTime],
) -> Vec<crate::judge::Finding> {
    let controller_exit = cx.controller.crashed();
    let kernel_exit = cx
        .own_kernel
        .as_mut()
        .and_then(SuiteKernel::died)
        .map(|e| e.to_string());
    let faults = cx
        .proxy
        .as_ref()
        .map(|p| p.faults.armed())
        .unwrap_or_default();
    cx.cursor.catch_up(&cx.recorder.trace);
    let entries = cx.recorder.trace.since(0);
    let events_held = std::mem::take(&mut cx.final_events);
    let calls = cx.proxy.as_ref().map(|p| p.log.calls());
    let acts: Vec<(jiff::Timestamp, jiff::Timestamp)> = steps
        .iter()
        .filter(|s| s.acts)
        .map(|s| {
            let end = s
                .started
                .checked_add(Duration::from_secs_f64(s.seconds))
                .unwrap_or(s.started);
            (s.started, end)
        })
        .collect();
    let verdict = crate::judge::after_steps(&crate::judge::Finale {
        names: &cx.names,
        state: cx.cursor.state(),
        entries: &entries,
        events_held: &events_held,
        controller_exit: controller_exit.as_deref(),
        kernel_exit: kernel_exit.as_deref(),
        faults: &faults,
        calls: calls.as_deref(),
        acts: &acts,
        started,
        down: &cx.controller.downtime(),
    });
    result.margins = verdict.margins;
    result.api_writes = verdict.api_writes;
    result.retry_cycles = verdict.retry_cycles;
    result.backoff_seconds = verdict.backoff_seconds;
    result.unfired_faults = verdict.unfired_faults;
    verdict.failures
}

/// With `--baseline`: compare the suite's behaviour fingerprint (a writing error fails it).
fn compare_baseline(cfg: &RunConfig, cx: &mut Scope<'_>, suite: &str, result: &mut SuiteResult) {
    let Some(b) = &cfg.baseline else { return };
    let got = cx.fingerprint.take().unwrap_or_else(|| {
        let entries = cx.recorder.trace.since(0);
        crate::baseline::fingerprint(
            &cx.names,
            cx.cursor.state(),
            &entries,
            &cx.namespace,
            &cx.controller.downtime(),
        )
    });
    result.baseline = match crate::baseline::compare(&b.dir, suite, &got, b.update) {
        Ok(v) => Some(v),
        Err(e) => {
            result
                .failures
                .push(format!("writing the baseline in {}: {e}", b.dir.display()));
            None
        }
    };
}

/// The suite's story for the reporters; the kernel's keys only when a bundle is kept.
async fn story(
    cx: &Scope<'_>,
    cluster: &RunningCluster,
    started: jiff::Timestamp,
    steps: Vec<story::StepTime>,
    keep: bool,
) -> story::Story {
    let kernel_tasks = if keep {
        Some(
            cx.kernel
                .list_prefix("/tidb/br-stream/")
                .await
                .map(|kv| bundle::own_tasks(kv, &cx.names))
                .unwrap_or_else(|e| e.to_string()),
        )
    } else {
        None
    };
    story::Story {
        started,
        ended: jiff::Timestamp::now(),
        entries: cx.recorder.trace.since(0),
        state: cx.cursor.state().clone(),
        steps,
        namespace: cx.namespace.clone(),
        kernel_tasks,
        pod_logs: cluster.run_dir.as_ref().map(|d| d.join("pods")),
    }
}

/// Stop a suite's own kernel (`--kernel per-suite`) and remove its data.
async fn stop_own_kernel(cx: &mut Scope<'_>, cluster: &RunningCluster, suite: &str) {
    let Some(k) = cx.own_kernel.take() else {
        return;
    };
    let dir = cluster
        .run_dir
        .as_ref()
        .map(|d| d.join("kernels").join(suite));
    // Stopping etcd waits for its exit: off the runtime's workers (see teardown).
    crate::programs::process::off_the_runtime(move || {
        drop(k);
        if let Some(dir) = dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    })
    .await;
}

/// PD's service names the suite's Backups resolve (`<cluster>-pd.<clusterNamespace>`).
fn pd_names(suite: &Suite, ns: &str) -> Vec<String> {
    let mut names: Vec<String> = suite
        .backups
        .iter()
        .filter_map(|d| manifest::backup_manifest(suite, d, &d.name, Path::new("."), None).ok())
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
