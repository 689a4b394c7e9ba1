//! The reference controller on the local provider: real apiserver, real Job controller,
//! real kernel etcd, fake-br as the Job image. Every check reads persisted state (the
//! Backup, Jobs, Events), never the controller's memory.
#![cfg(feature = "e2e")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use lbc_api::kernel::KernelClient;
use lbc_api::kernel::keys::task_keys;
use lbc_api::plan::plan_configmap;
use lbc_api::{Backup, BackupConditionType as C};
use logbackup_conformance::cluster::RunningCluster;
use logbackup_conformance::cluster::local::LocalConfig;
use logbackup_conformance::run::controller::{
    ControllerCommand, ControllerProcess, ReferenceFlags,
};
use logbackup_conformance::smoke::ensure_namespace;
use serde_json::json;

const JOB_IMAGE: &str = lbc_api::names::JOB_IMAGE;
const T: Duration = Duration::from_secs(90);
/// LBR-3's lateness bound.
const LATENESS: f64 = 2.0;

fn config() -> LocalConfig {
    common::fake_br_config()
}

fn cluster() -> &'static RunningCluster {
    static SHARED: OnceLock<common::Shared> = OnceLock::new();
    common::shared_cluster(&SHARED, config)
}

/// One namespace, one controller scoped to it.
struct Scene {
    client: Client,
    ns: String,
    controller: ControllerProcess,
    backups: Api<Backup>,
}

impl Scene {
    async fn new(ns: &str, extra_flags: &[&str]) -> Self {
        let c = cluster();
        let client = c.client().unwrap();
        ensure_namespace(&client, ns).await.unwrap();
        let log = c
            .run_dir
            .clone()
            .unwrap()
            .join(format!("controller-{ns}.log"));
        let flags = ReferenceFlags {
            kubeconfig: c.kubeconfig.clone(),
            namespace: ns.into(),
            kernel: c.kernel_endpoints[0].clone(),
            job_image: JOB_IMAGE.into(),
            metrics_addr: None,
            extra: [&["--kernel-sync-period=1s"], extra_flags]
                .concat()
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let controller = ControllerProcess::start(ControllerCommand::reference(
            &common::reference_controller(),
            &flags,
            log,
            &c.run_id,
        ))
        .unwrap();
        Self {
            backups: Api::namespaced(client.clone(), ns),
            client,
            ns: ns.into(),
            controller,
        }
    }

    async fn plan(&self, backup: &str, key: &str, steps: serde_json::Value) {
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns);
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": plan_configmap(backup)},
            "data": {key: serde_yaml::to_string(&steps).unwrap()},
        }))
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }

    async fn create(&self, name: &str, mode: &str, policy: serde_json::Value) {
        let mut spec =
            json!({"backupMode": mode, "br": {"cluster": "basic"}, "backoffRetryPolicy": policy});
        if mode == "log" {
            spec["logSubcommand"] = json!("log-start");
        }
        let b: Backup = serde_json::from_value(json!({
            "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap();
        self.backups
            .create(&PostParams::default(), &b)
            .await
            .unwrap();
    }

    async fn wait(
        &self,
        name: &str,
        what: &str,
        cond: impl Fn(&Backup) -> bool + Send + 'static,
    ) -> Backup {
        let fut = await_condition(self.backups.clone(), name, move |b: Option<&Backup>| {
            b.is_some_and(&cond)
        });
        match tokio::time::timeout(T, fut).await {
            Ok(Ok(Some(b))) => b,
            _ => {
                let b = self.backups.get(name).await.ok();
                let jobs: Vec<_> = self
                    .jobs()
                    .await
                    .into_iter()
                    .map(|j| (j.metadata.name, j.metadata.annotations, j.status))
                    .collect();
                let pods: Api<k8s_openapi::api::core::v1::Pod> =
                    Api::namespaced(self.client.clone(), &self.ns);
                let pods: Vec<_> = pods
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .map(|p| {
                        (
                            p.metadata.name,
                            p.metadata.finalizers,
                            p.metadata.deletion_timestamp,
                            p.status.map(|s| (s.phase, s.container_statuses)),
                        )
                    })
                    .collect();
                panic!(
                    "{}: {what} did not happen within {T:?}; Backup status: {}\njobs: {}\npods: {}\ncontroller log: {}",
                    self.ns,
                    serde_yaml::to_string(&b.and_then(|b| b.status)).unwrap_or_default(),
                    serde_yaml::to_string(&jobs).unwrap_or_default(),
                    serde_yaml::to_string(&pods).unwrap_or_default(),
                    self.controller.log_path().display()
                )
            }
        }
    }

    /// Reasons of the events about `name`, oldest first, one entry per occurrence (a
    /// series of n counts n times).
    async fn events(&self, name: &str) -> Vec<String> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let mut evs: Vec<Event> = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("Backup") && r.name.as_deref() == Some(name)
                })
            })
            .collect();
        evs.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        evs.into_iter()
            .flat_map(|e| {
                let n = e.series.as_ref().map_or(1, |s| s.count.max(1)) as usize;
                std::iter::repeat_n(e.reason.clone().unwrap_or_default(), n)
            })
            .collect()
    }

    /// The events about `name` once one with `reason` is there (bounded wait): the
    /// reference acknowledges a successful retry with an event only, after the status
    /// write a test waits for, so reading events at once races with it.
    async fn events_after(&self, name: &str, reason: &str) -> Vec<String> {
        for _ in 0..50 {
            let ev = self.events(name).await;
            if count(&ev, reason) > 0 {
                return ev;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.events(name).await
    }

    async fn jobs(&self) -> Vec<Job> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.ns);
        api.list(&ListParams::default()).await.unwrap().items
    }

    /// The Backup's name: unique per scene, because every scene shares one kernel and
    /// the kernel's task name is the Backup's name.
    fn bk(&self) -> String {
        format!("bk-{}", self.ns)
    }

    fn kernel(&self) -> KernelClient {
        KernelClient::new(&cluster().kernel_endpoints[0])
    }
}

fn sub_phase(b: &Backup, sub: &str) -> Option<C> {
    b.status.as_ref()?.log_sub_command_statuses.get(sub)?.phase
}

fn records(b: &Backup) -> Vec<lbc_api::BackoffRetryRecord> {
    b.status.clone().unwrap_or_default().backoff_retry_status
}

fn secs(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Timestamp {
    t.as_ref().unwrap().0
}

/// log-start is Complete, and record 1's retry ran.
fn retried_and_complete(b: &Backup) -> bool {
    sub_phase(b, "log-start") == Some(C::Complete)
        && records(b)
            .first()
            .is_some_and(|r| r.real_retry_at.is_some())
}

fn count(events: &[String], reason: &str) -> usize {
    events.iter().filter(|e| *e == reason).count()
}

fn fail_after_running() -> serde_json::Value {
    json!({"action": "fail", "exitCode": 1})
}

#[tokio::test]
async fn silent_death_then_success_is_retried_once() {
    // Below the ephemeral range, so no outgoing connection takes it first.
    let port = logbackup_conformance::programs::process::free_loopback_port().unwrap();
    let metrics_flag = format!("--metrics-addr=127.0.0.1:{port}");
    let s = Scene::new("retry-once", &[&metrics_flag]).await;
    s.plan(&s.bk(), "log-start", json!([fail_after_running()]))
        .await;
    s.create(
        &s.bk(),
        "log",
        json!({"minRetryDuration": "2s", "maxRetryTimes": 2}),
    )
    .await;
    let b = s
        .wait(
            &s.bk(),
            "log-start Complete after a retry",
            retried_and_complete,
        )
        .await;
    let st = b.status.clone().unwrap();
    let r = records(&b);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].retry_num, 1);
    assert_eq!(
        r[0].retry_reason.as_deref(),
        Some(&*format!("Job backup-{}-log-start has failed", s.bk()))
    );
    assert_eq!(
        r[0].original_reason.as_deref(),
        Some("BackoffLimitExceeded")
    );
    let gap = secs(&r[0].expected_retry_at).duration_since(secs(&r[0].detect_failed_at));
    assert_eq!(gap.as_secs(), 2, "expectedRetryAt = detectFailedAt + min");
    let late = secs(&r[0].real_retry_at)
        .duration_since(secs(&r[0].expected_retry_at))
        .as_secs_f64();
    assert!(
        (0.0..=LATENESS).contains(&late),
        "retry ran {late}s after expectedRetryAt"
    );
    assert_eq!(st.phase, Some(C::Running));
    assert!(st.commit_ts.is_some(), "commitTs set");
    let ev = s.events_after(&s.bk(), "RetrySucceeded").await;
    assert_eq!(count(&ev, "RetryStarted"), 1, "{ev:?}");
    assert_eq!(count(&ev, "RetrySucceeded"), 1, "{ev:?}");
    let started = ev.iter().position(|e| e == "RetryStarted").unwrap();
    let succeeded = ev.iter().position(|e| e == "RetrySucceeded").unwrap();
    assert!(started < succeeded, "{ev:?}");
    assert_eq!(count(&ev, "SuccessfulCreate"), 2, "two Jobs ran: {ev:?}");
    assert_eq!(s.jobs().await.len(), 1, "the failed Job was replaced");
    assert!(
        s.kernel()
            .get(&task_keys(&s.bk()).info)
            .await
            .unwrap()
            .is_some(),
        "task started in the kernel"
    );
    // LBR-15: the counters, labelled by namespace, name and subcommand, from the endpoint.
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let labels = format!(
        "{{name=\"{}\",namespace=\"{}\",subcommand=\"log-start\"}}",
        s.bk(),
        s.ns
    );
    for (family, want) in [
        ("log_backup_job_failures_total", 1),
        ("log_backup_retries_total", 1),
        ("log_backup_kernel_recoveries_total", 0),
    ] {
        let line = format!("{family}{labels} {want}");
        let absent_is_zero = want == 0 && !text.contains(&format!("{family}{labels}"));
        assert!(
            text.lines().any(|l| l == line) || absent_is_zero,
            "no `{line}` in /metrics:\n{text}"
        );
    }
}

#[tokio::test]
async fn exhaustion_at_max_retries() {
    let s = Scene::new("exhaust", &[]).await;
    s.plan(&s.bk(), "log-start", json!([fail_after_running(), fail_after_running(), fail_after_running(), {"action": "succeed"}]))
        .await;
    s.create(
        &s.bk(),
        "log",
        json!({"minRetryDuration": "1s", "maxRetryTimes": 2}),
    )
    .await;
    let b = s
        .wait(&s.bk(), "Failed", |b| {
            sub_phase(b, "log-start") == Some(C::Failed)
        })
        .await;
    let st = b.status.clone().unwrap();
    assert_eq!(st.phase, Some(C::Failed));
    let failed = st.conditions.iter().find(|c| c.type_ == C::Failed).unwrap();
    assert_eq!(failed.reason.as_deref(), Some("ExceededMaxRetries"));
    let r = records(&b);
    assert_eq!(
        r.iter().map(|r| r.retry_num).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let d1 = secs(&r[0].expected_retry_at)
        .duration_since(secs(&r[0].detect_failed_at))
        .as_secs();
    let d2 = secs(&r[1].expected_retry_at)
        .duration_since(secs(&r[1].detect_failed_at))
        .as_secs();
    assert_eq!((d1, d2), (1, 2), "the delay doubles");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ev = s.events_after(&s.bk(), "RetryExhausted").await;
    assert_eq!(count(&ev, "RetryExhausted"), 1, "{ev:?}");
    assert_eq!(count(&ev, "RetryStarted"), 2, "{ev:?}");
    assert_eq!(
        count(&ev, "SuccessfulCreate"),
        3,
        "no Job after exhaustion: {ev:?}"
    );
}

#[tokio::test]
async fn zero_max_retry_times_disables_retry() {
    let s = Scene::new("disabled", &[]).await;
    s.plan(&s.bk(), "log-start", json!([fail_after_running()]))
        .await;
    s.create(
        &s.bk(),
        "log",
        json!({"minRetryDuration": "1s", "maxRetryTimes": 0}),
    )
    .await;
    let b = s
        .wait(&s.bk(), "Failed", |b| {
            sub_phase(b, "log-start") == Some(C::Failed)
        })
        .await;
    assert!(records(&b).is_empty());
    assert_eq!(
        b.spec.backoff_retry_policy.max_retry_times,
        Some(0),
        "explicit 0 survives the controller's writes"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ev = s.events_after(&s.bk(), "BackupFailed").await;
    assert_eq!(count(&ev, "BackupFailed"), 1, "{ev:?}");
    assert_eq!(count(&ev, "RetryStarted"), 0, "{ev:?}");
}

#[tokio::test]
async fn retry_timeout_stops_retrying() {
    let s = Scene::new("timeout", &[]).await;
    // The retried attempt fails 3 s after starting: past the 2 s timeout.
    s.plan(
        &s.bk(),
        "log-start",
        json!([fail_after_running(), {"action": "fail", "delay": "3s"}, {"action": "succeed"}]),
    )
    .await;
    s.create(
        &s.bk(),
        "log",
        json!({"minRetryDuration": "1s", "maxRetryTimes": 5, "retryTimeout": "2s"}),
    )
    .await;
    let b = s
        .wait(&s.bk(), "Failed", |b| {
            sub_phase(b, "log-start") == Some(C::Failed)
        })
        .await;
    let failed = b
        .status
        .clone()
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == C::Failed)
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("RetryTimeout"), "{failed:?}");
    assert_eq!(records(&b).len(), 1);
    let ev = s.events_after(&s.bk(), "RetryExhausted").await;
    assert_eq!(count(&ev, "RetryExhausted"), 1, "{ev:?}");
}

#[tokio::test]
async fn kernel_recovery_needs_no_new_job() {
    let s = Scene::new("kernel-recovery", &[]).await;
    // The Job starts the task in the kernel, then dies.
    s.plan(
        &s.bk(),
        "log-start",
        json!([{"action": "fail", "kernel": "perform"}]),
    )
    .await;
    s.create(
        &s.bk(),
        "log",
        json!({"minRetryDuration": "2s", "maxRetryTimes": 2}),
    )
    .await;
    let b = s
        .wait(&s.bk(), "recovered", |b| {
            sub_phase(b, "log-start") == Some(C::Complete)
        })
        .await;
    let r = records(&b);
    assert_eq!(r.len(), 1);
    assert!(r[0].real_retry_at.is_some());
    let ev = s.events_after(&s.bk(), "RetrySucceeded").await;
    assert_eq!(count(&ev, "SuccessfulCreate"), 1, "no new Job: {ev:?}");
    assert_eq!(count(&ev, "RetrySucceeded"), 1, "{ev:?}");
    assert_eq!(b.status.unwrap().phase, Some(C::Running));
}

/// Fail the first attempt, then restart the controller while its retry (6 s) is pending.
async fn restart_during_backoff(s: &mut Scene) {
    s.plan(&s.bk(), "log-start", json!([fail_after_running()]))
        .await;
    s.create(
        &s.bk(),
        "log",
        json!({"minRetryDuration": "6s", "maxRetryTimes": 2}),
    )
    .await;
    s.wait(&s.bk(), "record 1 pending", |b| {
        records(b)
            .first()
            .is_some_and(|r| r.real_retry_at.is_none())
    })
    .await;
    s.controller.restart().unwrap();
}

#[tokio::test]
async fn restart_mid_backoff_keeps_the_count_and_the_schedule() {
    let mut s = Scene::new("restart", &[]).await;
    restart_during_backoff(&mut s).await;
    let b = s
        .wait(&s.bk(), "the retry ran and completed", retried_and_complete)
        .await;
    let r = records(&b);
    assert_eq!(r.len(), 1, "never recorded twice: {r:?}");
    let late = secs(&r[0].real_retry_at)
        .duration_since(secs(&r[0].expected_retry_at))
        .as_secs_f64();
    assert!(
        (0.0..=LATENESS).contains(&late),
        "retry ran {late}s after expectedRetryAt"
    );
}

#[tokio::test]
async fn workqueue_strategy_loses_the_count_on_restart() {
    let mut s = Scene::new("workqueue", &["--retry-strategy=workqueue"]).await;
    restart_during_backoff(&mut s).await;
    let b = s
        .wait(&s.bk(), "a second record", |b| records(b).len() >= 2)
        .await;
    let nums: Vec<i32> = records(&b).iter().map(|r| r.retry_num).collect();
    // The rejected design demonstrably breaks LBR-8: the restarted controller re-records
    // the same failure and numbering starts again.
    assert!(
        nums.iter().filter(|n| **n == 1).count() >= 2,
        "count did not reset: {nums:?}"
    );
}

#[tokio::test]
async fn snapshot_retry_is_unchanged() {
    let s = Scene::new("snapshot", &[]).await;
    s.plan(&s.bk(), "snapshot", json!([fail_after_running()]))
        .await;
    s.create(
        &s.bk(),
        "snapshot",
        json!({"minRetryDuration": "2s", "maxRetryTimes": 2}),
    )
    .await;
    let b = s
        .wait(&s.bk(), "Complete", |b| {
            b.status.as_ref().and_then(|s| s.phase) == Some(C::Complete)
        })
        .await;
    let st = b.status.unwrap();
    assert_eq!(st.backoff_retry_status.len(), 1);
    assert!(st.backoff_retry_status[0].real_retry_at.is_some());
    assert!(
        st.conditions.iter().any(|c| c.type_ == C::Restart),
        "{:?}",
        st.conditions
    );
    assert!(
        st.conditions
            .iter()
            .any(|c| c.type_ == C::RetryFailed && c.reason.as_deref() == Some("RetryFailedBackup"))
    );
    let ev = s.events(&s.bk()).await;
    assert_eq!(
        count(&ev, "RetryStarted"),
        0,
        "snapshot mode emits no retry events: {ev:?}"
    );
}

#[tokio::test]
async fn invalid_durations_are_reported_not_retried() {
    let s = Scene::new("invalid", &[]).await;
    s.create(&s.bk(), "log", json!({"minRetryDuration": "5 minutes"}))
        .await;
    let b = s
        .wait(&s.bk(), "Invalid", |b| {
            sub_phase(b, "log-start") == Some(C::Invalid)
        })
        .await;
    let st = b.status.unwrap();
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == C::Invalid)
        .unwrap();
    assert_eq!(c.reason.as_deref(), Some("InvalidSpec"));
    let msg = c.message.clone().unwrap_or_default();
    assert!(
        msg.contains("spec.backoffRetryPolicy.minRetryDuration") && msg.contains("5 minutes"),
        "{msg}"
    );
    assert!(s.jobs().await.is_empty(), "no Job for an invalid spec");
}

#[tokio::test]
async fn a_job_that_wrote_failed_is_retried_too() {
    let s = Scene::new("wrote-failed", &[]).await;
    s.plan(
        &s.bk(),
        "log-start",
        json!([{"action": "fail", "writeFailed": "StartLogBackupFailed"}]),
    )
    .await;
    s.create(
        &s.bk(),
        "log",
        json!({"minRetryDuration": "1s", "maxRetryTimes": 2}),
    )
    .await;
    let b = s
        .wait(&s.bk(), "Complete after a retry", |b| {
            sub_phase(b, "log-start") == Some(C::Complete)
        })
        .await;
    let r = records(&b);
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0].original_reason.as_deref(),
        Some("BackoffLimitExceeded")
    );
    let st = b.status.unwrap();
    assert_eq!(st.phase, Some(C::Running));
}

/// Start a log backup that succeeds, and wait until it runs.
async fn started(s: &Scene) -> Backup {
    s.create(&s.bk(), "log", json!({"minRetryDuration": "1s"}))
        .await;
    s.wait(&s.bk(), "log-start Complete", |b| {
        sub_phase(b, "log-start") == Some(C::Complete)
    })
    .await
}

#[tokio::test]
async fn kernel_sync_reads_an_error_pause_with_payload() {
    use lbc_api::kernel::keys::{PauseKind, PauseV2Payload, StreamBackupError, pause_v2};
    let s = Scene::new("sync-pause", &[]).await;
    started(&s).await;
    let value = pause_v2(
        PauseKind::Error,
        Some(PauseV2Payload::Error(StreamBackupError {
            store_id: 4,
            error_message: "disk quota exceeded".into(),
            ..Default::default()
        })),
        "tikv-4",
        42,
        "2026-11-29T00:00:00Z",
    );
    s.kernel()
        .put(&task_keys(&s.bk()).pause, &value)
        .await
        .unwrap();
    let b = s
        .wait(&s.bk(), "kernel sync to paused", |b| {
            b.status
                .as_ref()
                .and_then(|st| st.log_sub_command_statuses.get("log-pause"))
                .is_some_and(|p| {
                    p.conditions
                        .iter()
                        .any(|c| c.reason.as_deref() == Some("LogBackupKernelSync"))
                })
        })
        .await;
    let st = b.status.unwrap();
    let c = st.log_sub_command_statuses["log-pause"]
        .conditions
        .iter()
        .find(|c| c.reason.as_deref() == Some("LogBackupKernelSync"))
        .unwrap();
    let msg = c.message.clone().unwrap_or_default();
    assert!(
        msg.contains("paused (ERROR)")
            && msg.contains("Paused by error(store 4): disk quota exceeded"),
        "{msg}"
    );
    assert!(st.time_synced.is_some());
}

#[tokio::test]
async fn a_missing_kernel_task_fails_the_backup() {
    let s = Scene::new("sync-missing", &[]).await;
    started(&s).await;
    s.kernel().delete(&task_keys(&s.bk()).info).await.unwrap();
    let b = s
        .wait(&s.bk(), "KeyNotFound", |b| {
            sub_phase(b, "log-start") == Some(C::Failed)
        })
        .await;
    let st = b.status.unwrap();
    let c = st.conditions.iter().find(|c| c.type_ == C::Failed).unwrap();
    assert_eq!(c.reason.as_deref(), Some("LogBackupKeyNotFound"));
}

#[tokio::test]
async fn a_sync_with_nothing_changed_writes_nothing() {
    let s = Scene::new("sync-quiet", &[]).await;
    let before = started(&s).await;
    // Let the RetrySucceeded/Complete writes settle (no change over more than one sync
    // period, 1 s), then watch several sync periods.
    let rv_now = || async {
        s.backups
            .get(&s.bk())
            .await
            .unwrap()
            .metadata
            .resource_version
    };
    let deadline = tokio::time::Instant::now() + T;
    let mut rv = rv_now().await;
    loop {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let again = rv_now().await;
        if again == rv {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Backup never stopped changing"
        );
        rv = again;
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let after = s.backups.get(&s.bk()).await.unwrap();
    assert_eq!(
        after.metadata.resource_version, rv,
        "the Backup was rewritten by an idle sync"
    );
    assert!(before.status.unwrap().time_synced.is_none());
}

#[tokio::test]
async fn changing_the_subcommand_cancels_a_pending_retry() {
    let s = Scene::new("spec-change", &[]).await;
    s.plan(
        &s.bk(),
        "log-start",
        json!([{"action": "fail", "kernel": "skip"}]),
    )
    .await;
    s.create(
        &s.bk(),
        "log",
        json!({"minRetryDuration": "4s", "maxRetryTimes": 2}),
    )
    .await;
    s.wait(&s.bk(), "record 1 pending", |b| {
        records(b)
            .first()
            .is_some_and(|r| r.real_retry_at.is_none())
    })
    .await;
    let patch = json!({"spec": {"logSubcommand": "log-stop"}});
    s.backups
        .patch(
            &s.bk(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let b = s
        .wait(&s.bk(), "Stopped", |b| {
            b.status.as_ref().and_then(|st| st.phase) == Some(C::Stopped)
        })
        .await;
    // Past the old expectedRetryAt: the start retry must not have run.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let b2 = s.backups.get(&s.bk()).await.unwrap();
    assert_eq!(records(&b2).len(), 1);
    assert!(
        records(&b2)[0].real_retry_at.is_none(),
        "the cancelled retry ran"
    );
    assert_eq!(sub_phase(&b, "log-stop"), Some(C::Complete));
    let ev = s.events(&s.bk()).await;
    assert_eq!(
        count(&ev, "SuccessfulCreate"),
        2,
        "one start Job and one stop Job: {ev:?}"
    );
}

#[tokio::test]
async fn deleting_the_backup_mid_retry_creates_nothing_and_leaves_no_orphan() {
    let s = Scene::new("deleted", &[]).await;
    s.plan(&s.bk(), "log-start", json!([fail_after_running()]))
        .await;
    s.create(
        &s.bk(),
        "log",
        json!({"minRetryDuration": "3s", "maxRetryTimes": 2}),
    )
    .await;
    s.wait(&s.bk(), "record 1 pending", |b| {
        records(b)
            .first()
            .is_some_and(|r| r.real_retry_at.is_none())
    })
    .await;
    let first: Vec<Option<String>> = s.jobs().await.into_iter().map(|j| j.metadata.uid).collect();
    s.backups
        .delete(&s.bk(), &Default::default())
        .await
        .unwrap();
    // Until well past the retry's due time (3 s), no Job other than the first may appear.
    let quiet = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < quiet {
        let new: Vec<_> = s
            .jobs()
            .await
            .into_iter()
            .filter(|j| !first.contains(&j.metadata.uid))
            .map(|j| j.metadata.name)
            .collect();
        assert!(
            new.is_empty(),
            "a Job created for a deleted Backup: {new:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The first Job goes with its owner (the garbage collector, slow on a loaded machine).
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let jobs = s.jobs().await;
        if jobs.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "orphaned Jobs: {:?}",
            jobs.iter().map(|j| &j.metadata.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_job_killed_by_sigkill_is_detected_and_retried() {
    let s = Scene::new("sigkill", &[]).await;
    s.plan(&s.bk(), "log-start", json!([{"action": "sigkill"}]))
        .await;
    s.create(
        &s.bk(),
        "log",
        json!({"minRetryDuration": "1s", "maxRetryTimes": 1}),
    )
    .await;
    let b = s
        .wait(&s.bk(), "Complete after a retry", |b| {
            sub_phase(b, "log-start") == Some(C::Complete)
        })
        .await;
    assert_eq!(records(&b).len(), 1);
    assert_eq!(
        records(&b)[0].original_reason.as_deref(),
        Some("BackoffLimitExceeded")
    );
    let ev = s.events_after(&s.bk(), "RetrySucceeded").await;
    assert_eq!(
        (count(&ev, "RetryStarted"), count(&ev, "RetrySucceeded")),
        (1, 1),
        "{ev:?}"
    );
}
