//! The retry benchmark: N log backups whose first attempt fails, on the local provider with
//! the reference controller and fake-br. Everything is measured from outside the controller:
//! lateness is the first sight of the retry Job minus the persisted `expectedRetryAt`,
//! detection the first sight of the record minus the first sight of the Job's failure, and
//! writes come from the API server's audit log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::cluster::RunningCluster;
use crate::cluster::local::{AUDIT_LOG, CONTROLLER_KUBECONFIG, CONTROLLER_USER};
use crate::programs::process::rss_kib;
use crate::run::controller::{ControllerCommand, ControllerProcess, ReferenceFlags};
use crate::smoke::ensure_namespace;
use lbc_api::plan::plan_configmap;
use lbc_api::{Backup, BackupConditionType};

/// Per-backup observations shared with the watch task.
type Shared<T> = std::sync::Arc<std::sync::Mutex<HashMap<String, T>>>;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct RetryBench {
    pub backups: usize,
    /// `minRetryDuration` of every Backup.
    pub min_retry: String,
    pub controller_binary: PathBuf,
    pub job_image: String,
    pub timeout: Duration,
    /// Backups created per second; 0: at once.
    pub rate: f64,
}

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
}

fn kube_err(what: &str) -> impl FnOnce(kube::Error) -> BenchError + '_ {
    move |source| BenchError::Kube {
        what: what.to_owned(),
        source,
    }
}

/// The name of the benchmark's `i`th Backup.
fn backup_name(i: usize) -> String {
    format!("bench-{i:04}")
}

/// What the watches saw of one Backup, each at the instant the harness saw it.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// The first Job's uid, and when its `Failed` condition was first seen.
    first_job: Option<String>,
    first_failed: Option<Timestamp>,
    /// When record 1 was first seen, and its `expectedRetryAt`.
    record: Option<Timestamp>,
    expected: Option<Timestamp>,
    /// When a Job other than the first (the retry) was first seen.
    retry_job: Option<Timestamp>,
    /// Record 1's `realRetryAt` as the controller wrote it (diagnostic only).
    real: Option<Timestamp>,
    complete: bool,
    /// Whether the Backup itself was seen.
    backup: bool,
}

impl Seen {
    /// What a watch event of the Backup shows: record 1 (first sight), its `realRetryAt`,
    /// and whether `log-start` completed.
    fn saw_backup(&mut self, b: &Backup, now: Timestamp) {
        let status = b.status.clone().unwrap_or_default();
        self.backup = true;
        if let Some(r) = status.backoff_retry_status.first()
            && self.record.is_none()
        {
            self.record = Some(now);
            self.expected = r.expected_retry_at.as_ref().map(|t| t.0);
        }
        if let Some(r) = status.backoff_retry_status.first()
            && self.real.is_none()
        {
            self.real = r.real_retry_at.as_ref().map(|t| t.0);
        }
        self.complete |= status
            .log_sub_command_statuses
            .get("log-start")
            .is_some_and(|s| s.phase == Some(BackupConditionType::Complete));
    }

    /// What a watch event of one of the Backup's Jobs shows: the first Job and its failure,
    /// or (any other Job) the retry's.
    fn saw_job(&mut self, j: &Job, now: Timestamp) {
        let uid = j.uid().unwrap_or_default();
        let failed = j
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"));
        match &self.first_job {
            None => {
                self.first_job = Some(uid);
                if failed {
                    self.first_failed = Some(now);
                }
            }
            Some(first) if *first == uid => {
                if failed && self.first_failed.is_none() {
                    self.first_failed = Some(now);
                }
            }
            Some(_) => {
                self.retry_job.get_or_insert(now);
            }
        }
    }

    /// What was seen, in the order a retry cycle goes, for an incomplete Backup.
    fn describe(&self) -> String {
        let steps = [
            ("the Backup", self.backup),
            ("first Job", self.first_job.is_some()),
            ("its Failed", self.first_failed.is_some()),
            ("record 1", self.record.is_some()),
            ("a retry Job", self.retry_job.is_some()),
        ];
        let seen: Vec<&str> = steps.iter().filter(|(_, y)| *y).map(|(n, _)| *n).collect();
        if seen.is_empty() {
            "nothing".into()
        } else {
            seen.join(", ")
        }
    }
}

/// Run the benchmark on `cluster` (which must map `job_image` to fake-br). Every figure is
/// taken from outside the controller: lateness and detection from the harness's watches,
/// writes from the API server's audit log (when the cluster keeps one) under the
/// controller's own identity.
///
/// # Errors
/// Setup failures.
pub async fn measure(
    cluster: &RunningCluster,
    bench: &RetryBench,
) -> Result<RetryReport, BenchError> {
    let client = cluster.client().map_err(kube_err("client"))?;
    let ns = "bench-retry";
    ensure_namespace(&client, ns)
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let run_dir = cluster.run_dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut controller = start_controller(cluster, bench, ns, &run_dir)?;

    let backups: Api<Backup> = Api::namespaced(client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    // Watch before creating, so no first sight is missed.
    let seen: Shared<Seen> = Default::default();
    // A re-list after a watch error makes later first sights late: counted, and reported.
    let watch_errors = std::sync::Arc::new(AtomicUsize::new(0));
    let watch_backups = {
        let seen = seen.clone();
        spawn_watch(
            backups.clone(),
            "Backup",
            &watch_errors,
            move |b: Backup, now| {
                let Ok(mut all) = seen.lock() else { return };
                all.entry(b.name_any()).or_default().saw_backup(&b, now);
            },
        )
    };
    let watch_jobs = {
        let seen = seen.clone();
        spawn_watch(jobs.clone(), "Job", &watch_errors, move |j: Job, now| {
            let Some(owner) = j
                .owner_references()
                .iter()
                .find(|o| o.kind == "Backup")
                .map(|o| o.name.clone())
            else {
                return;
            };
            let Ok(mut all) = seen.lock() else { return };
            all.entry(owner).or_default().saw_job(&j, now);
        })
    };
    let started = Instant::now();
    create_backups(bench, &cms, &backups, started).await?;
    let peak = wait_for_completion(&controller, &seen, bench, started).await;
    let wall = started.elapsed();
    watch_backups.abort();
    watch_jobs.abort();
    let crashed = controller.crashed();
    controller.stop(Duration::from_secs(2));
    let writes = match crate::bench::audit::read_writes(&run_dir.join(AUDIT_LOG)) {
        Ok(all) => Some(crate::bench::audit::count_by_kind(
            &all,
            CONTROLLER_USER,
            ns,
        )),
        Err(_) => None,
    };
    let all = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let incomplete = incomplete(bench.backups, &all);
    let controller_log = if incomplete.is_empty() {
        String::new()
    } else {
        controller_story(crashed, controller.log_path())
    };
    Ok(RetryReport {
        backups: bench.backups,
        completed: completed(&seen),
        incomplete,
        controller_log,
        watch_errors: watch_errors.load(Ordering::Relaxed),
        lateness: sorted_gaps(&all, |s| Some((s.retry_job?, s.expected?))),
        detection: sorted_gaps(&all, |s| Some((s.record?, s.first_failed?))),
        reported: sorted_gaps(&all, |s| Some((s.real?, s.expected?))),
        writes,
        controller_peak_rss_kib: peak,
        wall,
    })
}

/// Start the reference controller on the bench's namespace: its metrics on a port of its
/// own, its log in `run_dir`.
fn start_controller(
    cluster: &RunningCluster,
    bench: &RetryBench,
    ns: &str,
    run_dir: &Path,
) -> Result<ControllerProcess, BenchError> {
    // Below the ephemeral range: a port from `bind(:0)` can be taken by any outgoing
    // connection before the controller binds it.
    let port = crate::programs::process::free_loopback_port()
        .map_err(|e| BenchError::Setup(format!("no free port for the controller: {e}")))?;
    // Its own identity where the cluster made one, so the audit log tells its writes apart.
    let own = run_dir.join(CONTROLLER_KUBECONFIG);
    let kubeconfig = if own.exists() {
        own
    } else {
        cluster.kubeconfig.clone()
    };
    ControllerProcess::start(ControllerCommand::reference(
        &bench.controller_binary,
        &ReferenceFlags {
            kubeconfig,
            namespace: ns.into(),
            kernel: cluster
                .kernel_endpoints
                .first()
                .cloned()
                .unwrap_or_default(),
            job_image: bench.job_image.clone(),
            metrics_addr: None,
            extra: vec![
                format!("--metrics-addr=127.0.0.1:{port}"),
                "--log=warn".into(),
            ],
        },
        run_dir.join("bench-controller.log"),
        &cluster.run_id,
    ))
    .map_err(|e| BenchError::Setup(e.to_string()))
}

/// Create the Backups, each after its plan (the first attempt fails), at `bench.rate` a
/// second from `started`.
async fn create_backups(
    bench: &RetryBench,
    cms: &Api<ConfigMap>,
    backups: &Api<Backup>,
    started: Instant,
) -> Result<(), BenchError> {
    for i in 0..bench.backups {
        if bench.rate > 0.0 {
            let at = started + Duration::from_secs_f64(i as f64 / bench.rate);
            tokio::time::sleep_until(at.into()).await;
        }
        let name = backup_name(i);
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": plan_configmap(&name)},
            "data": {"log-start": "- action: fail\n"},
        }))
        .map_err(|e| BenchError::Setup(e.to_string()))?;
        cms.create(&PostParams::default(), &cm)
            .await
            .map_err(kube_err("creating a plan"))?;
        let b: Backup = serde_json::from_value(json!({
            "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
            "metadata": {"name": name},
            "spec": {"backupMode": "log", "logSubcommand": "log-start", "br": {"cluster": "basic"},
                     "backoffRetryPolicy": {"minRetryDuration": bench.min_retry, "maxRetryTimes": 2}},
        }))
        .map_err(|e| BenchError::Setup(e.to_string()))?;
        backups
            .create(&PostParams::default(), &b)
            .await
            .map_err(kube_err("creating a Backup"))?;
    }
    Ok(())
}

/// How many Backups were seen complete.
fn completed(seen: &Shared<Seen>) -> usize {
    seen.lock()
        .map(|d| d.values().filter(|s| s.complete).count())
        .unwrap_or(0)
}

/// Wait until every Backup is seen complete or the timeout passes; returns the controller's
/// peak RSS (KiB) sampled meanwhile.
async fn wait_for_completion(
    controller: &ControllerProcess,
    seen: &Shared<Seen>,
    bench: &RetryBench,
    started: Instant,
) -> u64 {
    let mut peak = 0;
    loop {
        if let Some((_, hwm)) = controller.pid().and_then(rss_kib) {
            peak = peak.max(hwm);
        }
        if completed(seen) >= bench.backups || started.elapsed() > bench.timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    peak
}

/// The Backups not seen complete, each with what was seen of it.
fn incomplete(backups: usize, all: &HashMap<String, Seen>) -> Vec<String> {
    (0..backups)
        .map(backup_name)
        .filter(|n| !all.get(n).is_some_and(|s| s.complete))
        .map(|n| {
            let seen = all.get(&n).map_or_else(|| "nothing".into(), Seen::describe);
            format!("{n} (seen: {seen})")
        })
        .collect()
}

/// `later − earlier` in seconds for each Backup where `pair` saw both, sorted.
fn sorted_gaps(
    all: &HashMap<String, Seen>,
    pair: impl Fn(&Seen) -> Option<(Timestamp, Timestamp)>,
) -> Vec<f64> {
    let mut gaps: Vec<f64> = all
        .values()
        .filter_map(|s| {
            let (later, earlier) = pair(s)?;
            Some(later.duration_since(earlier).as_secs_f64())
        })
        .collect();
    gaps.sort_by(f64::total_cmp);
    gaps
}

/// Watch `api`, handing `on` each applied object with the instant it was seen. A watch
/// error is counted in `errors` and not the end: the watcher re-lists, where stopping would
/// leave the run waiting for objects it no longer sees.
fn spawn_watch<K>(
    api: Api<K>,
    kind: &'static str,
    errors: &std::sync::Arc<AtomicUsize>,
    mut on: impl FnMut(K, Timestamp) + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let errors = errors.clone();
    tokio::spawn(async move {
        let mut stream = Box::pin(
            watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects(),
        );
        while let Some(event) = stream.next().await {
            match event {
                Ok(obj) => on(obj, Timestamp::now()),
                Err(e) => {
                    tracing::warn!(kind, error = %e, "bench: watch error; re-listing");
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })
}

/// What the controller left to go on when Backups did not complete: its exit if it died,
/// and the end of its log.
fn controller_story(crashed: Option<std::process::ExitStatus>, log: &std::path::Path) -> String {
    let tail = crate::programs::process::log_tail(log, 2000);
    let tail = if tail.trim().is_empty() {
        "the controller logged nothing (--log=warn)".to_owned()
    } else {
        format!("the controller's log ends:\n{tail}")
    };
    match crashed {
        Some(exit) => format!(
            "the controller exited ({}); {tail}",
            crate::programs::process::describe_exit(exit)
        ),
        None => tail,
    }
}

/// Figures of the retry benchmark.
#[derive(Debug, Clone)]
pub struct RetryReport {
    pub backups: usize,
    pub completed: usize,
    /// The Backups whose `log-start` was not seen `Complete`, each with what was seen of it.
    pub incomplete: Vec<String>,
    /// The end of the controller's log (and its exit, if it died); empty when all completed.
    pub controller_log: String,
    /// Watch errors (each followed by a re-list, whose first sights are late).
    pub watch_errors: usize,
    /// First sight of the retry Job − the persisted `expectedRetryAt`, seconds, sorted.
    pub lateness: Vec<f64>,
    /// First sight of the first Job's `Failed` − first sight of record 1, seconds, sorted.
    pub detection: Vec<f64>,
    /// The controller's own `realRetryAt` − `expectedRetryAt` (whole seconds, sorted): not
    /// a measurement, shown only to locate a delay (controller or Job creation).
    pub reported: Vec<f64>,
    /// The controller's successful writes by `verb resource`, from the audit log (`None`:
    /// the cluster keeps none).
    pub writes: Option<std::collections::BTreeMap<String, usize>>,
    pub controller_peak_rss_kib: u64,
    pub wall: Duration,
}

impl RetryReport {
    /// The `q` quantile (0..=1) of the lateness.
    pub fn lateness_quantile(&self, q: f64) -> Option<f64> {
        crate::bench::run::quantile(&self.lateness, q)
    }

    /// The `q` quantile (0..=1) of the detection latency.
    pub fn detection_quantile(&self, q: f64) -> Option<f64> {
        crate::bench::run::quantile(&self.detection, q)
    }

    /// Writes per Backup other than Events, minus the first attempt's two (its Job and its
    /// `Scheduled` status): what one retry cycle costs.
    pub fn writes_per_cycle(&self) -> Option<f64> {
        let w = self.writes.as_ref()?;
        let n = self.backups.max(1) as f64;
        let total: usize = w
            .iter()
            .filter(|(k, _)| !k.ends_with(" events"))
            .map(|(_, v)| v)
            .sum();
        Some(total as f64 / n - 2.0)
    }
}

/// Sum of a Prometheus counter family in a text exposition.
pub fn sum_metric(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_counter_family() {
        let text = "# HELP x\nbackup_controller_api_writes_total{kind=\"status\"} 3\nbackup_controller_api_writes_total{kind=\"job-create\"} 2\nother 9\n";
        assert_eq!(sum_metric(text, "backup_controller_api_writes_total"), 5.0);
    }

    #[test]
    fn quantiles() {
        let r = RetryReport {
            backups: 4,
            completed: 4,
            incomplete: vec![],
            controller_log: String::new(),
            watch_errors: 0,
            lateness: vec![0.1, 0.2, 0.3, 0.4],
            detection: vec![],
            reported: vec![],
            writes: Some(
                [
                    ("update backups".to_owned(), 12),
                    ("create jobs".to_owned(), 8),
                    ("create events".to_owned(), 9),
                ]
                .into_iter()
                .collect(),
            ),
            controller_peak_rss_kib: 0,
            wall: Duration::ZERO,
        };
        assert_eq!(r.lateness_quantile(0.0), Some(0.1));
        assert_eq!(r.lateness_quantile(1.0), Some(0.4));
        assert_eq!(r.lateness_quantile(0.5), Some(0.3));
        assert_eq!(r.detection_quantile(0.5), None);
        assert_eq!(r.writes_per_cycle(), Some(3.0), "events are not counted");
    }

    #[rstest::rstest]
    #[case::not_seen(Seen::default(), "nothing")]
    #[case::created_only(Seen { backup: true, ..Seen::default() }, "the Backup")]
    #[case::failure_never_recorded(
        Seen {
            backup: true,
            first_job: Some("uid".into()),
            first_failed: Some(Timestamp::UNIX_EPOCH),
            ..Seen::default()
        },
        "the Backup, first Job, its Failed"
    )]
    #[case::stuck_before_the_retry(
        Seen {
            backup: true,
            first_job: Some("uid".into()),
            first_failed: Some(Timestamp::UNIX_EPOCH),
            record: Some(Timestamp::UNIX_EPOCH),
            ..Seen::default()
        },
        "the Backup, first Job, its Failed, record 1"
    )]
    fn an_incomplete_backup_says_how_far_it_got(#[case] seen: Seen, #[case] want: &str) {
        assert_eq!(seen.describe(), want);
    }
}
