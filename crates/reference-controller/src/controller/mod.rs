//! The reference controller: the seed's final design (§11, CONTRACT LBR-1…15) as a kube-rs
//! `Controller` over `Backup`, owning Jobs. All retry state lives in the CR; timing comes
//! from what is persisted there (`Action::requeue` at `expectedRetryAt`).

pub mod job;
mod log;
pub mod metrics;
mod snapshot;
mod strategy;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

use lbc_api::kernel::keys::RawTask;
use lbc_api::kernel::{KernelClient, KernelError};
use lbc_api::{Backup, BackupMode, LogSubcommand};
use metrics::Metrics;

/// Where retry state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RetryStrategy {
    /// The seed's final design (§11): everything persisted in `status.backoffRetryStatus`.
    #[default]
    Persisted,
    /// The seed's §3 scheme A, **rejected**: an in-memory per-key counter (and in-memory
    /// dedup of failed Jobs) that a restart resets. Kept so suites can prove they catch it.
    Workqueue,
}

/// The injected clock.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Maps a Backup's `spec.br` cluster to its kernel (PD etcd) endpoint.
#[derive(Debug, Clone, Default)]
pub struct KernelResolver {
    /// Used for every cluster without an entry in `by_cluster`.
    pub default: Option<String>,
    /// `<namespace>/<cluster>` (or `<cluster>`) → endpoint.
    pub by_cluster: HashMap<String, String>,
}

impl KernelResolver {
    /// Parse `--kernel-map` entries `[NAMESPACE/]CLUSTER=ENDPOINT`.
    ///
    /// # Errors
    /// An entry without `=`.
    pub fn parse(default: Option<String>, entries: &[String]) -> Result<Self, String> {
        let mut by_cluster = HashMap::new();
        for e in entries {
            let (k, v) = e
                .split_once('=')
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| {
                    format!("--kernel-map {e:?}: expected [NAMESPACE/]CLUSTER=ENDPOINT")
                })?;
            by_cluster.insert(k.to_owned(), v.to_owned());
        }
        Ok(Self {
            default,
            by_cluster,
        })
    }

    /// The endpoint for `backup`: its map entry, the default, else PD's service as the
    /// operator derives it (`<cluster>-pd.<clusterNamespace>:2379`).
    pub fn endpoint(&self, backup: &Backup) -> String {
        let br = backup.spec.br.clone().unwrap_or_default();
        let ns = br
            .cluster_namespace
            .clone()
            .unwrap_or_else(|| backup.namespace().unwrap_or_default());
        self.by_cluster
            .get(&format!("{ns}/{}", br.cluster))
            .or_else(|| self.by_cluster.get(&br.cluster))
            .or(self.default.as_ref())
            .cloned()
            .unwrap_or_else(|| lbc_api::names::pd_endpoint(&br.cluster, &ns))
    }
}

/// Controller settings (all from flags; nothing read from local files).
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Watch one namespace, or all.
    pub namespace: Option<String>,
    pub job_image: String,
    pub kernel: KernelResolver,
    pub strategy: RetryStrategy,
    /// How often a started log backup's kernel state is compared (LBR-10).
    pub kernel_sync_period: Duration,
    /// Reporter name on events.
    pub reporter: String,
    /// Create no Job until the Backup's `TidbCluster` exists (TiDB Operator's `validateBackup`).
    pub require_tidb_cluster: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            job_image: lbc_api::names::JOB_IMAGE.into(),
            kernel: KernelResolver::default(),
            strategy: RetryStrategy::Persisted,
            kernel_sync_period: Duration::from_secs(10),
            reporter: "lbc-controller".into(),
            require_tidb_cluster: false,
        }
    }
}

/// In-memory state of the rejected workqueue strategy.
#[derive(Debug, Default)]
pub(crate) struct WorkqueueMemory {
    /// Failures counted per `<ns>/<name>/<sub>`.
    pub counts: HashMap<String, u32>,
    /// Failed Job uids already handled.
    pub seen: HashSet<String>,
    /// Keys with a retry scheduled in memory (lost on restart).
    pub scheduled: HashSet<String>,
}

/// `<uid>/<action>` of events known to exist, and the uids whose existing events were read.
#[derive(Debug, Default)]
pub(crate) struct EmittedEvents(pub HashSet<String>, pub HashSet<String>);

/// Shared by all reconciles.
pub struct Ctx {
    pub client: Client,
    pub config: ControllerConfig,
    pub metrics: Metrics,
    pub clock: Arc<dyn Clock>,
    recorder: Recorder,
    pub(crate) memory: Mutex<WorkqueueMemory>,
    emitted: Mutex<EmittedEvents>,
    /// Per Backup (`ns/name`), the latest copy this controller wrote or read: the reflector's
    /// copy is trusted only when it is that one (or when this controller never wrote the
    /// Backup), so a lagging cache is never decided on, and a write starts from it.
    latest: Mutex<HashMap<String, Backup>>,
    /// One kernel client per endpoint: its connections are kept, so a due retry's kernel
    /// read does not open one first.
    kernels: Mutex<HashMap<String, KernelClient>>,
}

impl Ctx {
    pub fn new(
        client: Client,
        config: ControllerConfig,
        metrics: Metrics,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: config.reporter.clone(),
                instance: std::env::var("HOSTNAME").ok(),
            },
        );
        Self {
            client,
            config,
            metrics,
            clock,
            recorder,
            memory: Mutex::default(),
            emitted: Mutex::default(),
            latest: Mutex::default(),
            kernels: Mutex::default(),
        }
    }

    fn latest_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Backup>> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest copy of `backup` this controller wrote or read, if any.
    pub(crate) fn latest(&self, backup: &Backup) -> Option<Backup> {
        self.latest_map().get(&key_of(backup)).cloned()
    }

    /// Remember `stored` as the latest copy (after a write or a read).
    pub(crate) fn remember(&self, stored: &Backup) {
        self.latest_map().insert(key_of(stored), stored.clone());
    }

    /// Before an irreversible step (a Job created or deleted) decided on the reflector's
    /// copy: whether that copy is still the server's. If not, the fresh copy is remembered
    /// (the next reconcile reads it) and the caller stops. One read per such step.
    pub(crate) async fn still_current(&self, backup: &Backup) -> Result<bool, ReconcileError> {
        let api: Api<Backup> =
            Api::namespaced(self.client.clone(), &backup.namespace().unwrap_or_default());
        match api
            .get_opt(&backup.name_any())
            .await
            .map_err(kube_err("reading the Backup"))?
        {
            Some(fresh) => {
                let same = fresh.resource_version() == backup.resource_version();
                self.remember(&fresh);
                Ok(same)
            }
            None => {
                self.forget(backup);
                Ok(false)
            }
        }
    }

    fn forget(&self, backup: &Backup) {
        self.latest_map().remove(&key_of(backup));
    }

    fn kernel_for(&self, backup: &Backup) -> KernelClient {
        let endpoint = self.config.kernel.endpoint(backup);
        let mut kernels = self.kernels.lock().unwrap_or_else(|p| p.into_inner());
        kernels
            .entry(endpoint)
            .or_insert_with_key(|e| KernelClient::new(e))
            .clone()
    }

    /// Read the kernel's task `task` for `backup`. A kept connection may have gone stale
    /// (the kernel restarted, or went away without closing it): a transport error drops
    /// the kept client and the read is tried once more on a new connection.
    pub(crate) async fn read_kernel_task(
        &self,
        backup: &Backup,
        task: &str,
    ) -> Result<RawTask, KernelError> {
        match self.kernel_for(backup).read_task(task).await {
            Err(KernelError::Http { .. }) => {
                self.kernels
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&self.config.kernel.endpoint(backup));
                self.kernel_for(backup).read_task(task).await
            }
            other => other,
        }
    }

    /// Publish an event about `backup` (best effort: a lost event is logged, not retried).
    ///
    /// kube's recorder folds events with the same reason and `action` into one series and
    /// keeps the first note; `action` therefore names the step (e.g. `Retry/2`) wherever
    /// each occurrence has its own message.
    pub(crate) async fn event(
        &self,
        backup: &Backup,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &backup.object_ref(&())).await {
            tracing::warn!(backup = %backup.name_any(), reason, error = %e, "event not published");
        }
    }

    /// Publish the event of one step unless it already exists — in memory, or (after a
    /// restart) in the Events API, found by the involved object's uid and `action`. The
    /// API is read once per Backup per process: a LIST per event cost the API server a scan
    /// of the namespace's events each time. A crash
    /// between a status write and its event thus still yields exactly one event.
    pub(crate) async fn ensure_event(
        &self,
        backup: &Backup,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let uid = backup.uid().unwrap_or_default();
        let key = format!("{uid}/{action}");
        let emitted = || self.emitted.lock().unwrap_or_else(|p| p.into_inner());
        if !emitted().1.contains(&uid) {
            let events: Api<CoreEvent> =
                Api::namespaced(self.client.clone(), &backup.namespace().unwrap_or_default());
            // A consistent read: right after a restart the cache may not hold the event
            // the previous process published just before it died.
            let lp = ListParams::default().fields(&format!("involvedObject.uid={uid}"));
            match events.list(&lp).await {
                Ok(list) => {
                    let mut e = emitted();
                    for ev in &list.items {
                        if let Some(a) = &ev.action {
                            e.0.insert(format!("{uid}/{a}"));
                        }
                    }
                    e.1.insert(uid.clone());
                }
                Err(e) => {
                    // Unknown: better a late event than none; the next reconcile re-checks.
                    tracing::warn!(error = %e, "listing events failed");
                    return;
                }
            }
        }
        if emitted().0.contains(&key) {
            return;
        }
        self.event(backup, type_, reason, action, note).await;
        emitted().0.insert(key);
    }

    /// Create the Job of `sub` (None: snapshot) running `attempt`, and its event. `what`
    /// completes the message ("log backup log-start", "log backup retry 1", …). Returns
    /// `false` if a Job of that name still exists (an old one being deleted).
    pub(crate) async fn create_job(
        &self,
        backup: &Backup,
        sub: Option<LogSubcommand>,
        attempt: u32,
        what: &str,
    ) -> Result<bool, ReconcileError> {
        let ns = backup.namespace().unwrap_or_default();
        if self.config.require_tidb_cluster {
            self.tidb_cluster_exists(backup).await?;
        }
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let job = job::build_job(backup, sub, &self.config.job_image, attempt);
        match jobs.create(&PostParams::default(), &job).await {
            Ok(_) => {
                self.count_write("job-create");
                let action = format!(
                    "CreateJob/{}/{attempt}",
                    sub.map_or("snapshot", LogSubcommand::as_str)
                );
                let note = format!("create job {ns}/{} for {what} successful", job.name_any());
                self.event(backup, EventType::Normal, "SuccessfulCreate", &action, note)
                    .await;
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(kube_err("creating a backup Job")(e)),
        }
    }

    /// TiDB Operator's precondition: the `TidbCluster` named by `spec.br.cluster` exists in
    /// `spec.br.clusterNamespace` (default: the Backup's namespace).
    async fn tidb_cluster_exists(&self, backup: &Backup) -> Result<(), ReconcileError> {
        let br = backup.spec.br.clone().unwrap_or_default();
        let ns = br
            .cluster_namespace
            .unwrap_or_else(|| backup.namespace().unwrap_or_default());
        let gvk = kube::api::GroupVersionKind::gvk("pingcap.com", "v1alpha1", "TidbCluster");
        let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, "tidbclusters");
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(self.client.clone(), &ns, &resource);
        match api.get_opt(&br.cluster).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) | Err(kube::Error::Api(_)) => Err(ReconcileError::Precondition(format!(
                "TidbCluster {ns}/{} not found; no Job until it exists",
                br.cluster
            ))),
            Err(e) => Err(kube_err("reading the TidbCluster")(e)),
        }
    }

    /// Delete an old backup Job (background propagation, so its name is free at once;
    /// guarded by uid so a newer Job of the same name is never hit).
    pub(crate) async fn delete_job(
        &self,
        backup: &Backup,
        jobs: &Api<Job>,
        job: &Job,
    ) -> Result<(), ReconcileError> {
        if self.delete_job_quietly(jobs, job).await? {
            self.job_deleted_event(backup, job).await;
        }
        Ok(())
    }

    /// Delete `job` (that very Job: its uid is a precondition); whether this call deleted
    /// it. The caller owes [`Self::job_deleted_event`] when it did: a retry announces the
    /// deletion after creating its Job, so the event's round trip does not delay the retry.
    pub(crate) async fn delete_job_quietly(
        &self,
        jobs: &Api<Job>,
        job: &Job,
    ) -> Result<bool, ReconcileError> {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: job.uid().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match jobs.delete(&job.name_any(), &dp).await {
            Ok(_) => {
                self.count_write("job-delete");
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(false),
            Err(e) => Err(kube_err("deleting an old Job")(e)),
        }
    }

    /// The `SuccessfulDelete` event of `job`. Like the Job events of the operator, it is not
    /// ensured across a crash (a restarted controller cannot tell it owed one); it is not
    /// one of the contract's events.
    pub(crate) async fn job_deleted_event(&self, backup: &Backup, job: &Job) {
        let note = format!(
            "delete job {}/{} successful",
            job.namespace().unwrap_or_default(),
            job.name_any()
        );
        let action = format!("DeleteJob/{}", job.uid().unwrap_or_default());
        self.event(backup, EventType::Normal, "SuccessfulDelete", &action, note)
            .await;
    }

    pub(crate) fn count_write(&self, kind: &str) {
        self.metrics.api_writes.with_label_values(&[kind]).inc();
    }

    /// Where retry state lives for the Backup subcommand `key` (`<ns>/<name>/<sub>`).
    pub(crate) fn strategy(&self, key: String) -> strategy::Strategy<'_> {
        strategy::Strategy {
            kind: self.config.strategy,
            memory: &self.memory,
            key,
        }
    }
}

/// Reconcile errors (requeued after a short delay).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Something the Backup needs is not there yet (retried with backoff).
    #[error("{0}")]
    Precondition(String),
}

pub(crate) fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
    let what = what.into();
    move |source| ReconcileError::Kube { what, source }
}

async fn reconcile(cached: Arc<Backup>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    // Decide on a fresh read: the reflector's copy can lag our own writes, and a decision
    // on a copy without the latest record would, e.g., replace a retried Job.
    // The read is needed only when the copy may lag a write of ours: the cache is trusted
    // when it holds the very version this controller wrote or read last, or when this
    // controller never wrote the Backup (then it can lag only others' writes, whose watch
    // events reconcile again).
    let api: Api<Backup> =
        Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    let backup = match ctx.latest(&cached) {
        Some(known) if known.resource_version() != cached.resource_version() => {
            match api
                .get_opt(&cached.name_any())
                .await
                .map_err(kube_err("reading the Backup"))?
            {
                Some(fresh) => {
                    ctx.remember(&fresh);
                    fresh
                }
                None => {
                    ctx.forget(&cached);
                    return Ok(Action::await_change());
                }
            }
        }
        _ => (*cached).clone(),
    };
    if backup.meta().deletion_timestamp.is_some() {
        // LBR-12: nothing new for a Backup being deleted; ownerReferences collect its Jobs.
        if backup.spec.backup_mode == BackupMode::Log {
            log::owed_events(&backup, &ctx).await;
        }
        return Ok(Action::await_change());
    }
    match backup.spec.backup_mode {
        BackupMode::Log => log::reconcile(&backup, &ctx).await,
        BackupMode::Snapshot => snapshot::reconcile(&backup, &ctx).await,
        BackupMode::VolumeSnapshot => Ok(Action::await_change()),
    }
}

/// `namespace/name`: the key of the controller's per-Backup memory.
fn key_of(backup: &Backup) -> String {
    format!(
        "{}/{}",
        backup.namespace().unwrap_or_default(),
        backup.name_any()
    )
}

fn error_policy(backup: Arc<Backup>, error: &ReconcileError, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(backup = %backup.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_millis(500))
}

/// Run the controller until SIGTERM/SIGINT.
pub async fn run(ctx: Arc<Ctx>) {
    let client = ctx.client.clone();
    let (backups, jobs): (Api<Backup>, Api<Job>) = match &ctx.config.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    Controller::new(backups, watcher::Config::default())
        .owns(
            jobs,
            watcher::Config::default().labels("app.kubernetes.io/managed-by=backup-operator"),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}

#[cfg(test)]
mod tests;
