//! Runs a suite against the controller under test: a namespace per suite, a flight
//! recorder, the controller as a process, the steps in order, then the backoff-schedule
//! oracle and the normalized snapshot. A failing suite leaves a debug bundle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::Backup;
use crate::cluster::RunningCluster;
use crate::controller_process::{ControllerCommand, ControllerProcess, ReferenceFlags};
use crate::fake_br::plan::plan_configmap;
use crate::kernel::KernelClient;
use crate::kernel::state::{PauseKind, PauseV2Payload, StreamBackupError, pause_v2, task_keys};
use crate::oracle::{Names, State, check_schedule, eval, events_about, first_retry_seen};
use crate::recorder::Recorder;
use crate::retry::duration::parse_go_duration;
use crate::smoke::ensure_namespace;
use crate::suite::model::{
    Assertion, BackupDecl, ControllerAction, EventsAssertion, KernelTaskState, PauseKindDecl,
    Predicate, Suite, SuiteStep,
};

/// The controller under test.
#[derive(Debug, Clone)]
pub enum ControllerSpec {
    /// `lbc-controller`, scoped to the suite's namespace, with extra flags.
    Reference { binary: PathBuf, extra: Vec<String> },
    /// Any program: `{kubeconfig}`, `{namespace}`, `{kernel}` and `{job_image}` are
    /// substituted; words are split on whitespace.
    Template(String),
}

/// How suites run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub controller: ControllerSpec,
    pub job_image: String,
    /// Default suite timeout.
    pub suite_timeout: Duration,
    /// Where failing suites leave their debug bundle.
    pub report_dir: PathBuf,
}

/// The verdict of one suite.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SuiteResult {
    pub name: String,
    pub file: String,
    pub clauses: Vec<String>,
    pub labels: Vec<String>,
    pub passed: bool,
    /// The first failure ends the suite; the oracle may add more.
    pub failures: Vec<String>,
    /// Backoff-oracle margins, e.g. "lb1: retry 1 ran +0.31 s after expected".
    pub margins: Vec<String>,
    pub seconds: f64,
    /// Σ (expectedRetryAt − detectFailedAt) over the final records: time the suite must wait.
    pub backoff_seconds: f64,
    pub snapshot: Option<String>,
    pub bundle: Option<PathBuf>,
    /// Each step's kind and duration, seconds.
    pub steps: Vec<(String, f64)>,
}

/// `<decl>-<6 hex of the suite name>`: unique per suite, because suites share one kernel
/// and the kernel's task name is the Backup's name.
pub fn actual_name(suite: &str, decl: &str) -> String {
    let h = Sha256::digest(suite.as_bytes());
    format!("{decl}-{:02x}{:02x}{:02x}", h[0], h[1], h[2])
}

fn backup_manifest(
    suite: &Suite,
    decl: &BackupDecl,
    name: &str,
    root: &Path,
) -> Result<Backup, String> {
    let mut value = match &decl.fixture {
        Some(f) => {
            let text =
                std::fs::read_to_string(root.join(f)).map_err(|e| format!("fixture {f}: {e}"))?;
            serde_yaml::from_str::<serde_json::Value>(&text)
                .map_err(|e| format!("fixture {f}: {e}"))?
        }
        None => {
            let mode = decl.mode.clone().unwrap_or_else(|| "log".into());
            let mut spec = json!({"backupMode": mode, "br": {"cluster": "basic"},
                                  "s3": {"provider": "ceph", "endpoint": "http://minio:9000", "bucket": "backups", "prefix": format!("{}/{}", suite.name, decl.name)}});
            if mode == "log" {
                spec["logSubcommand"] = json!(
                    decl.subcommand
                        .clone()
                        .unwrap_or_else(|| "log-start".into())
                );
            }
            if let Some(p) = &decl.policy {
                spec["backoffRetryPolicy"] = serde_json::to_value(p).unwrap_or_default();
            }
            json!({"apiVersion": "pingcap.com/v1alpha1", "kind": "Backup", "spec": spec})
        }
    };
    value["metadata"] =
        json!({"name": name, "labels": {"logbackup-conformance/suite": suite.name}});
    serde_json::from_value(value).map_err(|e| format!("Backup {}: {e}", decl.name))
}

struct Run<'a> {
    suite: &'a Suite,
    client: Client,
    ns: String,
    names: Names,
    recorder: Recorder,
    controller: ControllerProcess,
    kernel: KernelClient,
    deadline: tokio::time::Instant,
    root: &'a Path,
    snapshot: Option<String>,
}

fn dur(s: &Option<String>) -> Option<Duration> {
    s.as_deref().and_then(|d| parse_go_duration(d).ok())
}

impl Run<'_> {
    fn left(&self) -> Duration {
        self.deadline
            .saturating_duration_since(tokio::time::Instant::now())
    }

    fn within(&self, d: Option<Duration>) -> tokio::time::Instant {
        let d = d.unwrap_or_else(|| self.left()).min(self.left());
        tokio::time::Instant::now() + d
    }

    /// Wait until `p` holds; `history`: also accept a state earlier in the trace.
    async fn wait_until(
        &mut self,
        p: &Predicate,
        until: tokio::time::Instant,
        history: bool,
    ) -> Result<(), String> {
        let entries = self.recorder.trace.since(0);
        let mut state = State::default();
        for e in &entries {
            state.apply(e);
            if history && eval(p, &state, &self.names) {
                return Ok(());
            }
        }
        let mut seen = entries.len();
        if eval(p, &state, &self.names) {
            return Ok(());
        }
        loop {
            if !self.recorder.changed_before(until).await && self.recorder.trace.len() == seen {
                return Err(format!(
                    "{} did not hold; last state:\n{}",
                    describe(p),
                    self.describe_state(&state)
                ));
            }
            for e in self.recorder.trace.since(seen) {
                seen += 1;
                state.apply(&e);
                if eval(p, &state, &self.names) {
                    return Ok(());
                }
            }
        }
    }

    /// Fail if `p` holds at any recorded point from `from` (trace index) until `until`.
    async fn never(
        &mut self,
        p: &Predicate,
        until: Option<tokio::time::Instant>,
    ) -> Result<(), String> {
        let mut state = State::default();
        let mut seen = 0;
        loop {
            for e in self.recorder.trace.since(seen) {
                seen += 1;
                state.apply(&e);
                if eval(p, &state, &self.names) {
                    return Err(format!(
                        "{} held at {}; state:\n{}",
                        describe(p),
                        e.at,
                        self.describe_state(&state)
                    ));
                }
            }
            match until {
                Some(u) if tokio::time::Instant::now() < u => {
                    self.recorder.changed_before(u).await;
                }
                _ => return Ok(()),
            }
        }
    }

    fn describe_state(&self, s: &State) -> String {
        let mut out = String::new();
        for actual in self.names.0.values() {
            if let Some(b) = s.backups.get(actual) {
                out.push_str(&serde_yaml::to_string(&b.status).unwrap_or_default());
            }
        }
        out
    }

    async fn events(&mut self, a: &EventsAssertion) -> Result<(), String> {
        // Events land shortly after the writes they follow: allow a few seconds to settle.
        let until = self.within(Some(Duration::from_secs(5)));
        loop {
            let state = State::replay(&self.recorder.trace.since(0));
            let actual = self.names.actual(&a.backup).to_owned();
            let uid = state
                .backups
                .get(&actual)
                .and_then(|b| b.metadata.uid.clone());
            let occ = events_about(&state, &actual, uid.as_deref());
            let verdict = check_events(a, &occ);
            match verdict {
                Ok(()) => return Ok(()),
                Err(e) if !self.recorder.changed_before(until).await => return Err(e),
                Err(_) => {}
            }
        }
    }

    async fn step(&mut self, step: &SuiteStep) -> Result<(), String> {
        let cm_api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns);
        let backups: Api<Backup> = Api::namespaced(self.client.clone(), &self.ns);
        match step {
            SuiteStep::Create(r) => {
                let decl = self
                    .suite
                    .backups
                    .iter()
                    .find(|d| d.name == r.backup)
                    .ok_or_else(|| format!("unknown backup {}", r.backup))?;
                let b = backup_manifest(self.suite, decl, self.names.actual(&r.backup), self.root)?;
                backups
                    .create(&PostParams::default(), &b)
                    .await
                    .map_err(|e| format!("creating Backup {}: {e}", r.backup))?;
            }
            SuiteStep::Patch(p) => {
                let patch = json!({"spec": p.spec});
                backups
                    .patch(
                        self.names.actual(&p.backup),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .map_err(|e| format!("patching Backup {}: {e}", p.backup))?;
            }
            SuiteStep::Delete(r) => {
                backups
                    .delete(self.names.actual(&r.backup), &DeleteParams::default())
                    .await
                    .map_err(|e| format!("deleting Backup {}: {e}", r.backup))?;
            }
            SuiteStep::Plan(p) => {
                let name = plan_configmap(self.names.actual(&p.backup));
                let yaml = serde_yaml::to_string(&p.steps).unwrap_or_default();
                let patch =
                    json!({"metadata": {"name": name}, "data": {p.subcommand.clone(): yaml}});
                cm_api
                    .patch(&name, &PatchParams::apply("lbc").force(), &Patch::Apply(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": patch["metadata"], "data": patch["data"]})))
                    .await
                    .map_err(|e| format!("writing plan {name}: {e}"))?;
            }
            SuiteStep::Kernel(k) => {
                let keys = task_keys(self.names.actual(&k.task));
                let kernel = &self.kernel;
                let err = |e: crate::kernel::KernelError| e.to_string();
                match (&k.state, &k.pause) {
                    (Some(KernelTaskState::Running), _) => {
                        kernel.put(&keys.info, b"{}").await.map_err(err)?;
                        kernel
                            .put(&keys.checkpoint, &crate::fake_br::tso_now().to_be_bytes())
                            .await
                            .map_err(err)?;
                        kernel.delete(&keys.pause).await.map_err(err)?;
                    }
                    (Some(KernelTaskState::Absent), _) => {
                        for key in [&keys.info, &keys.checkpoint, &keys.pause, &keys.last_error] {
                            kernel.delete(key).await.map_err(err)?;
                        }
                    }
                    (None, Some(p)) => {
                        let value = match p.kind {
                            PauseKindDecl::V1 => {
                                if let Some(t) = &p.text {
                                    kernel
                                        .put(&keys.last_error, t.as_bytes())
                                        .await
                                        .map_err(err)?;
                                }
                                Vec::new()
                            }
                            kind => {
                                let payload = match (&p.error, &p.text) {
                                    (Some(e), _) => {
                                        Some(PauseV2Payload::Error(StreamBackupError {
                                            store_id: e.store_id,
                                            error_message: e.message.clone(),
                                            ..StreamBackupError::default()
                                        }))
                                    }
                                    (None, Some(t)) => Some(PauseV2Payload::Text(t.clone())),
                                    (None, None) => None,
                                };
                                let kind = if kind == PauseKindDecl::Error {
                                    PauseKind::Error
                                } else {
                                    PauseKind::Manual
                                };
                                pause_v2(kind, payload, "lbc", 1, "2026-01-01T00:00:00Z")
                            }
                        };
                        kernel.put(&keys.pause, &value).await.map_err(err)?;
                    }
                    (None, None) => return Err("kernel step without state or pause".into()),
                }
            }
            SuiteStep::KillJob(j) => {
                let actual = self.names.actual(&j.backup);
                let job = if j.subcommand == "snapshot" {
                    format!("backup-{actual}")
                } else {
                    format!("backup-{actual}-{}", j.subcommand)
                };
                let pods: Api<k8s_openapi::api::core::v1::Pod> =
                    Api::namespaced(self.client.clone(), &self.ns);
                let lp = kube::api::ListParams::default().labels(&format!("job-name={job}"));
                let list = pods
                    .list(&lp)
                    .await
                    .map_err(|e| format!("listing pods of {job}: {e}"))?;
                if list.items.is_empty() {
                    return Err(format!("Job {job} has no pod to kill"));
                }
                for p in list.items {
                    let name = p.metadata.name.unwrap_or_default();
                    pods.delete(&name, &DeleteParams::default())
                        .await
                        .map_err(|e| format!("deleting pod {name}: {e}"))?;
                }
            }
            SuiteStep::Controller(c) => {
                if let Some(w) = &c.when {
                    let until = self.within(dur(&c.timeout));
                    self.wait_until(w, until, false)
                        .await
                        .map_err(|e| format!("waiting for `when`: {e}"))?;
                }
                match c.action {
                    ControllerAction::Stop => self.controller.stop(Duration::from_secs(2)),
                    ControllerAction::Start => {
                        self.controller.start_again().map_err(|e| e.to_string())?
                    }
                    ControllerAction::Restart => {
                        self.controller.restart().map_err(|e| e.to_string())?
                    }
                }
            }
            SuiteStep::Wait(d) => {
                tokio::time::sleep(parse_go_duration(d).unwrap_or_default().min(self.left())).await
            }
            SuiteStep::Assert(a) => match a {
                Assertion::Eventually(t) => {
                    let until = self.within(dur(&t.within));
                    self.wait_until(&t.that, until, true).await?;
                }
                Assertion::Never(w) => {
                    let until = dur(&w.for_).map(|d| self.within(Some(d)));
                    self.never(&w.that, until).await?;
                }
                Assertion::AlwaysUntil(a) => {
                    let until = self.within(dur(&a.within));
                    let guard = Predicate::AnyOf(vec![
                        a.until.clone(),
                        Predicate::Not(Box::new(a.that.clone())),
                    ]);
                    self.wait_until(&guard, until, false).await?;
                    let state = State::replay(&self.recorder.trace.since(0));
                    if !eval(&a.until, &state, &self.names) {
                        return Err(format!(
                            "{} stopped holding before {}",
                            describe(&a.that),
                            describe(&a.until)
                        ));
                    }
                }
                Assertion::Events(e) => self.events(e).await?,
            },
            SuiteStep::Snapshot(s) => {
                // Let in-flight writes and events land.
                tokio::time::sleep(Duration::from_millis(1500).min(self.left())).await;
                let state = State::replay(&self.recorder.trace.since(0));
                let g = dur(&s.granularity).unwrap_or(Duration::from_secs(1));
                self.snapshot = Some(crate::snapshot::normalize(&self.names, &self.ns, &state, g));
            }
        }
        Ok(())
    }
}

/// Compare event occurrences with expectations.
///
/// # Errors
/// A description of the first mismatch with the actual events.
pub fn check_events(a: &EventsAssertion, occ: &[crate::oracle::Occurrence]) -> Result<(), String> {
    let actual: Vec<String> = occ
        .iter()
        .map(|o| format!("{} {} ×{}", o.type_, o.reason, o.count))
        .collect();
    let mut last_first = None;
    for x in &a.expect {
        let matching: Vec<&crate::oracle::Occurrence> = occ
            .iter()
            .filter(|o| o.reason == x.reason && x.type_.as_ref().is_none_or(|t| *t == o.type_))
            .collect();
        let n: u32 = matching.iter().map(|o| o.count).sum();
        let want = x.count.unwrap_or(1);
        if n != want {
            return Err(format!(
                "expected {want} × {} event(s), saw {n}; events: {actual:?}",
                x.reason
            ));
        }
        if a.ordered && want > 0 {
            let first = matching.iter().filter_map(|o| o.first).min();
            if let (Some(prev), Some(f)) = (last_first, first)
                && f < prev
            {
                return Err(format!(
                    "{} came before an earlier expected event; events: {actual:?}",
                    x.reason
                ));
            }
            last_first = first.or(last_first);
        }
    }
    if a.exhaustive
        && let Some(o) = occ
            .iter()
            .find(|o| !a.expect.iter().any(|x| x.reason == o.reason))
    {
        return Err(format!("unexpected event {}; events: {actual:?}", o.reason));
    }
    Ok(())
}

fn describe(p: &Predicate) -> String {
    serde_json::to_string(p).unwrap_or_default()
}

fn step_kind(s: &SuiteStep) -> &'static str {
    match s {
        SuiteStep::Create(_) => "create",
        SuiteStep::Patch(_) => "patch",
        SuiteStep::Delete(_) => "delete",
        SuiteStep::Plan(_) => "plan",
        SuiteStep::Kernel(_) => "kernel",
        SuiteStep::KillJob(_) => "killJob",
        SuiteStep::Controller(_) => "controller",
        SuiteStep::Wait(_) => "wait",
        SuiteStep::Assert(_) => "assert",
        SuiteStep::Snapshot(_) => "snapshot",
    }
}

fn controller_command(
    cluster: &RunningCluster,
    ns: &str,
    cfg: &RunConfig,
    log: PathBuf,
) -> Result<ControllerCommand, String> {
    let kernel = cluster
        .kernel_endpoints
        .first()
        .cloned()
        .unwrap_or_default();
    match &cfg.controller {
        ControllerSpec::Reference { binary, extra } => {
            let mut extra_flags = vec!["--kernel-sync-period=1s".to_owned()];
            extra_flags.extend(extra.iter().cloned());
            Ok(ControllerCommand::reference(
                binary,
                &ReferenceFlags {
                    kubeconfig: cluster.kubeconfig.clone(),
                    namespace: ns.into(),
                    kernel,
                    job_image: cfg.job_image.clone(),
                    extra: extra_flags,
                },
                log,
                &cluster.run_id,
            ))
        }
        ControllerSpec::Template(t) => {
            let cmd = t
                .replace("{kubeconfig}", &cluster.kubeconfig.display().to_string())
                .replace("{namespace}", ns)
                .replace("{kernel}", &kernel)
                .replace("{job_image}", &cfg.job_image);
            let mut words = cmd.split_whitespace().map(String::from);
            let program = words.next().ok_or("--controller-cmd is empty")?;
            Ok(ControllerCommand {
                program: program.into(),
                args: words.collect(),
                env: vec![],
                log,
                run_id: cluster.run_id.clone(),
            })
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
    let started = Instant::now();
    let mut result = SuiteResult {
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
        bundle: None,
        steps: Vec::new(),
    };
    let bundle_dir = cfg.report_dir.join(&suite.name);
    let client = match cluster.client() {
        Ok(c) => c,
        Err(e) => {
            result.failures.push(format!("no client: {e}"));
            return result;
        }
    };
    let ns = suite.name.clone();
    if let Err(e) = ensure_namespace(&client, &ns).await {
        result.failures.push(e.to_string());
        return result;
    }
    let names = Names(
        suite
            .backups
            .iter()
            .map(|b| (b.name.clone(), actual_name(&suite.name, &b.name)))
            .collect(),
    );
    let recorder = Recorder::start(&client, &ns).await;
    let _ = std::fs::create_dir_all(&bundle_dir);
    let log = bundle_dir.join("controller.log");
    let _ = std::fs::remove_file(&log);
    let controller = match controller_command(cluster, &ns, cfg, log)
        .and_then(|c| ControllerProcess::start(c).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            result
                .failures
                .push(format!("starting the controller: {e}"));
            return result;
        }
    };
    let timeout = dur(&suite.timeout).unwrap_or(cfg.suite_timeout);
    let mut run = Run {
        suite,
        client: client.clone(),
        ns: ns.clone(),
        names,
        recorder,
        controller,
        kernel: KernelClient::new(
            cluster
                .kernel_endpoints
                .first()
                .map_or("127.0.0.1:2379", String::as_str),
        ),
        deadline: tokio::time::Instant::now() + timeout,
        root,
        snapshot: None,
    };
    // Plans first, so the first attempt already follows them.
    for (backup, subs) in &suite.plans {
        let name = plan_configmap(run.names.actual(backup));
        let data: HashMap<String, String> = subs
            .iter()
            .map(|(k, v)| (k.clone(), serde_yaml::to_string(v).unwrap_or_default()))
            .collect();
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name}, "data": data}))
                .unwrap_or_default();
        if let Err(e) = Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &cm)
            .await
        {
            result.failures.push(format!("plans.{backup}: {e}"));
        }
    }
    if result.failures.is_empty() {
        for (i, step) in suite.steps.iter().enumerate() {
            let step_started = Instant::now();
            let outcome =
                tokio::time::timeout(run.left() + Duration::from_millis(100), run.step(step)).await;
            result.steps.push((
                step_kind(step).to_owned(),
                step_started.elapsed().as_secs_f64(),
            ));
            let err = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(_) => format!("the suite timeout ({}s) ran out", timeout.as_secs()),
            };
            result
                .failures
                .push(format!("steps[{i}] ({}): {err}", step_kind(step)));
            break;
        }
    }
    // The built-in backoff-schedule oracle, on the final state.
    let entries = run.recorder.trace.since(0);
    let state = State::replay(&entries);
    let seen = first_retry_seen(&entries);
    for (decl, actual) in &run.names.0 {
        if let Some(b) = state.backups.get(actual) {
            let check = check_schedule(b, seen.get(actual).unwrap_or(&HashMap::new()));
            result.failures.extend(
                check
                    .violations
                    .into_iter()
                    .map(|v| format!("backoff oracle, {decl}: {v}")),
            );
            result
                .margins
                .extend(check.margins.into_iter().map(|m| format!("{decl}: {m}")));
            for r in &b.status.clone().unwrap_or_default().backoff_retry_status {
                if let (Some(d), Some(e)) = (&r.detect_failed_at, &r.expected_retry_at) {
                    result.backoff_seconds += e.0.duration_since(d.0).as_secs_f64();
                }
            }
        }
    }
    result.snapshot = run.snapshot.take();
    result.passed = result.failures.is_empty();
    run.controller.stop(Duration::from_secs(2));
    // LBC_BUNDLE=always keeps the bundle of passing suites too (to study a run).
    if !result.passed || std::env::var("LBC_BUNDLE").is_ok_and(|v| v == "always") {
        write_bundle(&bundle_dir, &run, &entries, &state, cluster, &result).await;
        result.bundle = Some(bundle_dir.clone());
    } else {
        let _ = std::fs::remove_dir_all(&bundle_dir);
    }
    // Leave nothing behind (the namespace controller deletes the rest).
    let _ = Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::background())
        .await;
    result.seconds = started.elapsed().as_secs_f64();
    result
}

async fn write_bundle(
    dir: &Path,
    run: &Run<'_>,
    entries: &[crate::recorder::Entry],
    state: &State,
    cluster: &RunningCluster,
    result: &SuiteResult,
) {
    let _ = std::fs::create_dir_all(dir);
    let _ = std::fs::write(dir.join("failure.txt"), result.failures.join("\n\n"));
    let _ = std::fs::write(
        dir.join("trace.yaml"),
        serde_yaml::to_string(entries).unwrap_or_default(),
    );
    let objects = json!({"backups": state.backups, "jobs": state.jobs, "events": state.events});
    let _ = std::fs::write(
        dir.join("objects.yaml"),
        serde_yaml::to_string(&objects).unwrap_or_default(),
    );
    let kernel = run
        .kernel
        .list_prefix("/tidb/br-stream/")
        .await
        .map(|kv| {
            kv.into_iter()
                .map(|(k, v)| format!("{k} = {:?}\n", String::from_utf8_lossy(&v)))
                .collect::<String>()
        })
        .unwrap_or_else(|e| e.to_string());
    let _ = std::fs::write(dir.join("kernel.txt"), kernel);
    if let Some(run_dir) = &cluster.run_dir
        && let Ok(pods) = std::fs::read_dir(run_dir.join("pods"))
    {
        for p in pods.filter_map(Result::ok) {
            let name = p.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{}_", run.ns)) {
                let _ = std::fs::create_dir_all(dir.join("pods"));
                for f in std::fs::read_dir(p.path())
                    .into_iter()
                    .flatten()
                    .filter_map(Result::ok)
                {
                    let _ = std::fs::copy(
                        f.path(),
                        dir.join("pods")
                            .join(format!("{name}-{}", f.file_name().to_string_lossy())),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::Occurrence;
    use crate::suite::model::EventExpectation;

    fn occ(reason: &str, count: u32, at: i64) -> Occurrence {
        Occurrence {
            reason: reason.into(),
            type_: "Normal".into(),
            note: String::new(),
            count,
            first: k8s_openapi::jiff::Timestamp::from_second(at).ok(),
        }
    }

    fn expect(reason: &str, count: u32) -> EventExpectation {
        EventExpectation {
            reason: reason.into(),
            type_: None,
            count: Some(count),
        }
    }

    #[test]
    fn event_counts_and_order() {
        let a = EventsAssertion {
            backup: "lb1".into(),
            ordered: true,
            expect: vec![expect("RetryStarted", 1), expect("RetrySucceeded", 1)],
            exhaustive: false,
        };
        assert!(
            check_events(
                &a,
                &[occ("RetryStarted", 1, 1), occ("RetrySucceeded", 1, 2)]
            )
            .is_ok()
        );
        let err = check_events(
            &a,
            &[occ("RetryStarted", 2, 1), occ("RetrySucceeded", 1, 2)],
        )
        .unwrap_err();
        assert!(
            err.contains("expected 1 × RetryStarted event(s), saw 2"),
            "{err}"
        );
        let err = check_events(
            &a,
            &[occ("RetryStarted", 1, 3), occ("RetrySucceeded", 1, 2)],
        )
        .unwrap_err();
        assert!(err.contains("came before"), "{err}");
        let ex = EventsAssertion {
            exhaustive: true,
            ..a
        };
        assert!(
            check_events(
                &ex,
                &[
                    occ("RetryStarted", 1, 1),
                    occ("RetrySucceeded", 1, 2),
                    occ("Other", 1, 3)
                ]
            )
            .is_err()
        );
    }

    #[test]
    fn actual_names_are_stable_and_distinct_per_suite() {
        assert_eq!(actual_name("a", "lb1"), actual_name("a", "lb1"));
        assert_ne!(actual_name("a", "lb1"), actual_name("b", "lb1"));
        assert!(actual_name("a", "lb1").starts_with("lb1-"));
    }
}
