//! Log-mode reconcile: detection (LBR-1), records (LBR-2), backoff (LBR-3), kernel recovery
//! (LBR-4), budget (LBR-5/6/7/11), kernel sync (LBR-10), bad policy (LBR-14).
//!
//! A reconcile reads what it needs (the Backup, its Job), asks the pure [`decide`] what to
//! do, and does it through a per-reconcile [`Reconcile`] scope. Every step is idempotent: a
//! write re-checks the fresh object before changing it, so a reconcile re-run after a crash
//! at any point neither records a failure twice nor creates a second Job. Events follow a
//! successful write (at most once per step).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use lbc_api::duration::format_go_duration;
use lbc_api::status_write::update_backup_from;
use lbc_api::{
    BackoffRetryRecord, Backup, BackupCondition, BackupConditionType as C, BackupMode,
    BackupStatus, LogSubCommandStatus, LogSubcommand, condition,
};

use super::job::{attempt_of, job_failure, job_name, owned_by};
use super::strategy::Strategy;
use super::{Ctx, ReconcileError, kube_err};
use crate::kernel_state::{KernelState, PauseKind, classify, satisfies};
use crate::retry::{
    DetectedFailure, FailureDecision, RetryPolicy, decide_on_failure, live_records,
    record_subcommand, resolve_policy, retry_reason, until_due,
};
use crate::subcommand::derive;

/// Reasons of the controller's terminal `Failed` writes (nothing more is done after them).
const TERMINAL_REASONS: &[&str] = &["ExceededMaxRetries", "RetryTimeout", "JobFailed"];
const RETRY_SUCCEEDED: &str = "RetrySucceeded";
/// How long to wait for an old Job to disappear before re-creating it.
const JOB_GONE_POLL: Duration = Duration::from_millis(100);

/// What the reconcile knows of the subcommand's Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobFacts {
    /// Owned (as controller) by this Backup.
    pub owned: bool,
    /// Which retry it runs (0: the first attempt).
    pub attempt: u32,
    /// `Some(reason)` when its condition `Failed` is `True`.
    pub failed: Option<String>,
    /// Created by the subcommand's current run: not before the subcommand last became
    /// `Repeatable` (a crash right after creating it must not make it look stale).
    pub this_run: bool,
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    pub phase: Option<C>,
    /// The subcommand already ended in a terminal `Failed` of ours.
    pub terminal: bool,
    /// Why the spec is invalid (LBR-14), if it is.
    pub invalid: Option<String>,
    /// The pending retry (its number) and how long until it is due.
    pub pending: Option<(i32, Duration)>,
    /// The attempt that should be running.
    pub attempt: u32,
    pub job: Option<JobFacts>,
}

/// What a reconcile does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing until something changes.
    Idle,
    /// Make sure the terminal Warning event exists (a crash may have lost it).
    TerminalEvent,
    /// Write `Invalid/InvalidSpec` with this message.
    Invalid(String),
    /// A Job with our name that we do not own: leave it, look again later.
    ForeignJob,
    /// A retry is pending: ensure its event, come back when it is due.
    WaitForRetry { retry_num: i32, wait: Duration },
    /// A retry is due now (LBR-3/LBR-4).
    RunRetry { retry_num: i32 },
    /// The subcommand completed: sync with the kernel (a retry's success is acknowledged on
    /// every reconcile, whatever comes next).
    Completed,
    /// No Job yet: create the attempt.
    CreateJob { attempt: u32 },
    /// A Job of an earlier attempt or run: remove it first.
    RemoveStaleJob,
    /// The current attempt's Job failed (LBR-1): decide on the failure.
    Failed { original_reason: String },
}

/// The log-mode decision, pure.
pub(crate) fn decide(f: &Facts) -> Next {
    if f.phase == Some(C::Invalid) {
        return Next::Idle;
    }
    if f.terminal {
        return Next::TerminalEvent;
    }
    if let Some(message) = &f.invalid {
        return Next::Invalid(message.clone());
    }
    if f.job.as_ref().is_some_and(|j| !j.owned) {
        return Next::ForeignJob;
    }
    if let Some((retry_num, wait)) = f.pending {
        return if wait.is_zero() {
            Next::RunRetry { retry_num }
        } else {
            Next::WaitForRetry { retry_num, wait }
        };
    }
    if f.phase == Some(C::Complete) {
        return Next::Completed;
    }
    match &f.job {
        // The Job wrote Failed and is gone (deleted by hand): nothing to detect.
        None if f.phase == Some(C::Failed) => Next::Idle,
        None => Next::CreateJob { attempt: f.attempt },
        Some(j) if j.attempt != f.attempt || (f.phase == Some(C::Repeatable) && !j.this_run) => {
            Next::RemoveStaleJob
        }
        Some(JobFacts {
            failed: Some(reason),
            ..
        }) => Next::Failed {
            original_reason: reason.clone(),
        },
        // Still running (or complete, awaiting the entrypoint's status): the watches
        // bring us back.
        Some(_) => Next::Idle,
    }
}

/// When `sub` last became `Repeatable` (a new run of it), if it is: pause and resume undo
/// each other, so it is the last change of the other one (whole seconds).
fn repeatable_since(sub: LogSubcommand, status: &BackupStatus) -> Option<Timestamp> {
    let own = status.log_sub_command_statuses.get(sub.as_str())?;
    if own.phase != Some(C::Repeatable) {
        return None;
    }
    let other = match sub {
        LogSubcommand::Pause => LogSubcommand::Resume,
        LogSubcommand::Resume => LogSubcommand::Pause,
        _ => return None,
    };
    status
        .log_sub_command_statuses
        .get(other.as_str())?
        .conditions
        .iter()
        .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .max()
}

/// The note of `RetryStarted` for `record`.
fn retry_started_note(record: &BackoffRetryRecord, max: u32) -> String {
    let delay = match (&record.detect_failed_at, &record.expected_retry_at) {
        (Some(d), Some(e)) => format_go_duration(e.0.duration_since(d.0).unsigned_abs()),
        _ => "?".into(),
    };
    format!(
        "Started retry attempt {}/{max} for log backup due to {} ({}). Next retry in {delay}",
        record.retry_num,
        record.retry_reason.as_deref().unwrap_or_default(),
        record.original_reason.as_deref().unwrap_or_default()
    )
}

fn is_terminal(sub_status: Option<&LogSubCommandStatus>) -> bool {
    sub_status.is_some_and(|s| {
        s.phase == Some(C::Failed)
            && s.conditions.iter().any(|c| {
                c.type_ == C::Failed
                    && c.reason
                        .as_deref()
                        .is_some_and(|r| TERMINAL_REASONS.contains(&r))
            })
    })
}

/// One reconcile of one log Backup: what every step needs, resolved once.
struct Reconcile<'a> {
    backup: &'a Backup,
    ctx: &'a Ctx,
    api: Api<Backup>,
    jobs: Api<Job>,
    ns: String,
    name: String,
    sub: LogSubcommand,
    now: Timestamp,
    strategy: Strategy<'a>,
}

/// LBR-9 for a Backup being deleted: nothing runs for it any more (LBR-12), but a retry it
/// recorded was scheduled, and a crash may have lost that retry's `RetryStarted`.
///
/// Also for a retry the user cancelled by switching the subcommand (LBR-11): it was
/// scheduled all the same. Keyed as `retry_started` keys it: emitted once.
pub(super) async fn owed_events(backup: &Backup, ctx: &Ctx) {
    let status = backup.status.clone().unwrap_or_default();
    let name = backup.name_any();
    let Some(last) = status.backoff_retry_status.last() else {
        return;
    };
    let (Some(sub), Ok(policy)) = (
        record_subcommand(last, &name),
        resolve_policy(&backup.spec.backoff_retry_policy),
    ) else {
        return;
    };
    if last.real_retry_at.is_some() {
        return;
    }
    ctx.ensure_event(
        backup,
        EventType::Normal,
        "RetryStarted",
        &format!("Retry/{sub}/{}", last.retry_num),
        retry_started_note(last, policy.max_retry_times),
    )
    .await;
}

pub(super) async fn reconcile(backup: &Backup, ctx: &Ctx) -> Result<Action, ReconcileError> {
    let ns = backup.namespace().unwrap_or_default();
    let name = backup.name_any();
    let uid = backup.uid().unwrap_or_default();
    let status = backup.status.clone().unwrap_or_default();
    let sub = derive(&backup.spec, Some(&status));
    let sub_status = status.log_sub_command_statuses.get(sub.as_str());
    let rc = Reconcile {
        backup,
        ctx,
        api: Api::namespaced(ctx.client.clone(), &ns),
        jobs: Api::namespaced(ctx.client.clone(), &ns),
        strategy: ctx.strategy(format!("{ns}/{name}/{sub}")),
        ns,
        name,
        sub,
        now: ctx.clock.now(),
    };
    // LBR-14: validate before anything runs.
    let policy = resolve_policy(&backup.spec.backoff_retry_policy);
    let invalid = match (&backup.spec.br, &policy) {
        (None, _) => Some("spec.br is required for a log backup".to_owned()),
        (_, Err(e)) => Some(e.to_string()),
        _ => None,
    };
    if invalid.is_none() {
        owed_events(backup, ctx).await;
    }
    let live = live_records(&status.backoff_retry_status, &rc.name, sub, sub_status);
    let job = match invalid {
        None => rc
            .jobs
            .get_opt(&job_name(&rc.name, Some(sub)))
            .await
            .map_err(kube_err("reading the backup Job"))?,
        Some(_) => None,
    };
    // LBR-8: a crash after creating the retry Job but before recording it, and that Job
    // may have completed since (which ends the budget and hides the record from `live`):
    // the Job is the proof the retry ran; record it before anything else.
    if let (Some(j), Some(last)) = (&job, status.backoff_retry_status.last())
        && last.real_retry_at.is_none()
        && last.retry_num > 0
        && record_subcommand(last, &rc.name) == Some(sub)
        && owned_by(j, &uid)
        && i64::from(attempt_of(j)) == i64::from(last.retry_num)
    {
        let at = j.creation_timestamp().map_or(rc.now, |t| t.0);
        let scheduled = [condition(C::Scheduled, None, None)];
        rc.mark_retried(last.retry_num, at, &scheduled, |_| {})
            .await?;
        return Ok(Action::requeue(Duration::ZERO));
    }
    let pending = rc.strategy.pending(live);
    let facts = Facts {
        phase: sub_status.and_then(|s| s.phase),
        terminal: is_terminal(sub_status),
        invalid,
        pending: pending.map(|p| (p.retry_num, until_due(p, rc.now))),
        attempt: rc.strategy.attempt(live),
        job: job.as_ref().map(|j| JobFacts {
            owned: owned_by(j, &uid),
            attempt: attempt_of(j),
            failed: job_failure(j),
            // Strictly later: a Job of the same second counts as the old run's (at worst
            // it is removed and made again).
            this_run: repeatable_since(sub, &status)
                .is_none_or(|since| j.creation_timestamp().is_some_and(|c| c.0 > since)),
        }),
    };
    let policy = policy.ok();
    let next = decide(&facts);
    // The copy decided on may be the reflector's: confirm it before an irreversible step
    // (e.g. the user switched the subcommand a moment ago, and the cache lags).
    if matches!(
        next,
        Next::RunRetry { .. } | Next::CreateJob { .. } | Next::RemoveStaleJob
    ) && !ctx.still_current(backup).await?
    {
        return Ok(Action::requeue(Duration::ZERO));
    }
    if !matches!(next, Next::TerminalEvent | Next::Invalid(_)) && facts.phase != Some(C::Invalid) {
        rc.acknowledge_retry_success(&status).await?;
    }
    match (next, policy) {
        (Next::Idle, _) => Ok(Action::await_change()),
        (Next::TerminalEvent, _) => {
            rc.terminal_event(sub_status).await;
            Ok(Action::await_change())
        }
        (Next::Invalid(message), _) => {
            let cond = condition(C::Invalid, Some("InvalidSpec"), Some(&message));
            rc.write(sub, &[cond], rc.now, |_, _| Some(false)).await?;
            Ok(Action::await_change())
        }
        (Next::ForeignJob, _) => {
            tracing::warn!(backup = %rc.name, "a Job with the backup's name is not owned by it; waiting");
            Ok(Action::requeue(Duration::from_secs(5)))
        }
        (Next::WaitForRetry { wait, .. }, Some(policy)) => {
            if let Some(p) = pending {
                rc.retry_started(p, policy.max_retry_times).await;
            }
            Ok(Action::requeue(wait))
        }
        (Next::RunRetry { retry_num }, Some(policy)) => {
            // The retry first (LBR-3 is a bound on time); the event it owes (a crash may
            // have lost it, and ensuring it costs a list) after.
            let action = rc.run_due_retry(retry_num, job.as_ref()).await;
            if let Some(p) = pending {
                rc.retry_started(p, policy.max_retry_times).await;
            }
            action
        }
        (Next::Completed, _) => rc.kernel_sync().await,
        (Next::CreateJob { attempt }, _) => {
            rc.create_job(attempt).await?;
            Ok(Action::await_change())
        }
        (Next::RemoveStaleJob, _) => {
            if let Some(j) = &job {
                ctx.delete_job(backup, &rc.jobs, j).await?;
            }
            Ok(Action::requeue(JOB_GONE_POLL))
        }
        (Next::Failed { original_reason }, Some(policy)) => match &job {
            Some(j) => rc.on_failure(&policy, live, j, original_reason).await,
            None => Ok(Action::await_change()),
        },
        // A valid spec always has a policy; `decide` saw `invalid` otherwise.
        (_, None) => Ok(Action::await_change()),
    }
}

impl Reconcile<'_> {
    fn labels(&self, sub: LogSubcommand) -> [&str; 3] {
        [self.ns.as_str(), self.name.as_str(), sub.as_str()]
    }

    /// A crash may have come between the terminal `Failed` write and its event.
    async fn terminal_event(&self, sub_status: Option<&LogSubCommandStatus>) {
        let Some(c) = sub_status.and_then(|s| s.conditions.iter().find(|c| c.type_ == C::Failed))
        else {
            return;
        };
        let message = c.message.clone().unwrap_or_default();
        let (reason, note) = if c.reason.as_deref() == Some("JobFailed") {
            ("BackupFailed", format!("Log backup failed: {message}"))
        } else {
            (
                "RetryExhausted",
                format!("Log backup failed permanently: {message}"),
            )
        };
        self.ctx
            .ensure_event(
                self.backup,
                EventType::Warning,
                reason,
                &format!("Fail/{}", self.sub),
                note,
            )
            .await;
    }

    /// LBR-9: `RetryStarted` once per scheduled retry (also after a crash lost it).
    async fn retry_started(&self, record: &BackoffRetryRecord, max: u32) {
        self.ctx
            .ensure_event(
                self.backup,
                EventType::Normal,
                "RetryStarted",
                &format!("Retry/{}/{}", self.sub, record.retry_num),
                retry_started_note(record, max),
            )
            .await;
    }

    /// LBR-2/5/6/7: a failure of the current attempt's Job.
    async fn on_failure(
        &self,
        policy: &RetryPolicy,
        live: &[BackoffRetryRecord],
        job: &Job,
        original_reason: String,
    ) -> Result<Action, ReconcileError> {
        let failure = DetectedFailure {
            retry_reason: retry_reason(&job.name_any()),
            original_reason,
        };
        let job_uid = job.uid().unwrap_or_default();
        let Some(counted) = self.strategy.counted(live, &job_uid) else {
            return Ok(Action::await_change());
        };
        // The CR stores times in whole seconds; deciding on the stored value keeps
        // expectedRetryAt − detectFailedAt exact and lets the requeue hit expectedRetryAt.
        let now = Timestamp::from_second(self.now.as_second()).unwrap_or(self.now);
        let decision = decide_on_failure(policy, &counted, &failure, now);
        self.ctx
            .metrics
            .job_failures
            .with_label_values(&self.labels(self.sub))
            .inc();
        match decision {
            FailureDecision::Retry {
                record, message, ..
            } => {
                let requeue = until_due(&record, self.ctx.clock.now());
                let cond = condition(C::RetryFailed, Some("RetryingLogBackup"), Some(&message));
                let (name, sub) = (&self.name, self.sub);
                let wrote = self
                    .write(sub, &[cond], now, |st, _| {
                        // Re-check on the fresh object: never record one failure twice.
                        let fresh_live = live_records(
                            &st.backoff_retry_status,
                            name,
                            sub,
                            st.log_sub_command_statuses.get(sub.as_str()),
                        );
                        let records =
                            self.strategy
                                .append(&st.backoff_retry_status, fresh_live, &record)?;
                        st.backoff_retry_status = records;
                        Some(true)
                    })
                    .await?;
                if wrote {
                    self.strategy.recorded(job_uid);
                    self.retry_started(&record, policy.max_retry_times).await;
                }
                Ok(Action::requeue(requeue))
            }
            FailureDecision::Exhausted { reason, message } => {
                let note = format!("Log backup failed permanently: {message}");
                self.fail_permanently(reason.as_str(), "RetryExhausted", &message, note, now)
                    .await
            }
            FailureDecision::Disabled { message } => {
                let note = format!("Log backup failed: {message}");
                self.fail_permanently("JobFailed", "BackupFailed", &message, note, now)
                    .await
            }
        }
    }

    /// LBR-5/6/7: write the terminal `Failed` (once) and its Warning event.
    async fn fail_permanently(
        &self,
        reason: &str,
        event_reason: &str,
        message: &str,
        note: String,
        now: Timestamp,
    ) -> Result<Action, ReconcileError> {
        let cond = condition(C::Failed, Some(reason), Some(message));
        if self
            .write(self.sub, &[cond], now, |_, _| Some(false))
            .await?
        {
            self.ctx
                .metrics
                .retry_exhausted
                .with_label_values(&self.labels(self.sub))
                .inc();
            self.ctx
                .ensure_event(
                    self.backup,
                    EventType::Warning,
                    event_reason,
                    &format!("Fail/{}", self.sub),
                    note,
                )
                .await;
        }
        Ok(Action::await_change())
    }

    /// LBR-3/LBR-4: the pending retry `retry_num` is due.
    async fn run_due_retry(
        &self,
        retry_num: i32,
        job: Option<&Job>,
    ) -> Result<Action, ReconcileError> {
        let (sub, now) = (self.sub, self.now);
        let attempt = u32::try_from(retry_num).unwrap_or(0);
        let scheduled = [condition(C::Scheduled, None, None)];
        // A crash after creating the retry Job but before recording it: record it now.
        if let Some(j) = job
            && attempt_of(j) == attempt
        {
            let at = j.creation_timestamp().map_or(now, |t| t.0);
            self.mark_retried(retry_num, at, &scheduled, |_| {}).await?;
            return Ok(Action::await_change());
        }
        // LBR-4: ask the kernel first.
        let state = match self.ctx.read_kernel_task(self.backup, &self.name).await {
            Ok(raw) => classify(&raw).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match &state {
            Ok(s) if satisfies(s, sub) => return self.recover(retry_num, s).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(backup = %self.name, error = %e, "kernel unreadable; retrying with a new Job")
            }
        }
        let deleted = match job {
            Some(j) => self.ctx.delete_job_quietly(&self.jobs, j).await?,
            None => false,
        };
        let created = self
            .ctx
            .create_job(
                self.backup,
                Some(sub),
                attempt,
                &format!("log backup retry {retry_num}"),
            )
            .await;
        // LBR-3: realRetryAt is when the retry ran — when its Job was created (and its
        // event sent), not when this reconcile began (a slow API stretches the gap).
        let ran = self.ctx.clock.now();
        // The deletion's event after the retry's Job: LBR-3 bounds the retry, not the event.
        if let (true, Some(j)) = (deleted, job) {
            self.ctx.job_deleted_event(self.backup, j).await;
        }
        if !created? {
            // The old Job is still being deleted.
            return Ok(Action::requeue(JOB_GONE_POLL));
        }
        self.mark_retried(retry_num, ran, &scheduled, |_| {})
            .await?;
        Ok(Action::await_change())
    }

    /// LBR-4: the kernel is already where the subcommand wanted it.
    async fn recover(&self, retry_num: i32, s: &KernelState) -> Result<Action, ReconcileError> {
        let sub = self.sub;
        let message = format!(
            "recovered without a new Job: the kernel task is {}",
            s.word()
        );
        let mut conds = Vec::new();
        if matches!(sub, LogSubcommand::Start | LogSubcommand::Resume) {
            conds.push(condition(C::Running, None, None));
        }
        conds.push(condition(
            C::Complete,
            Some(RETRY_SUCCEEDED),
            Some(&message),
        ));
        let start_ts = match s {
            KernelState::Running { checkpoint } => *checkpoint,
            _ => None,
        };
        let wrote = self
            .mark_retried(retry_num, self.now, &conds, |st| {
                if sub == LogSubcommand::Start && st.commit_ts.is_none() {
                    st.commit_ts = start_ts.map(|t| t.to_string());
                }
            })
            .await?;
        if wrote {
            self.ctx
                .metrics
                .kernel_recoveries
                .with_label_values(&self.labels(sub))
                .inc();
            self.retry_succeeded(sub, retry_num, &message).await;
        }
        Ok(Action::requeue(self.ctx.config.kernel_sync_period))
    }

    /// Set `realRetryAt` of record `retry_num` (once) with `conds`; returns whether it wrote.
    async fn mark_retried(
        &self,
        retry_num: i32,
        at: Timestamp,
        conds: &[BackupCondition],
        extra: impl Fn(&mut BackupStatus),
    ) -> Result<bool, ReconcileError> {
        let mut lateness = None;
        let wrote = self
            .write(self.sub, conds, at, |st, _| {
                let r = st
                    .backoff_retry_status
                    .iter_mut()
                    .rev()
                    .find(|r| r.retry_num == retry_num)?;
                if r.real_retry_at.is_some() {
                    return None;
                }
                r.real_retry_at = Some(Time(at));
                lateness = r
                    .expected_retry_at
                    .as_ref()
                    .map(|e| at.duration_since(e.0).as_secs_f64());
                extra(st);
                Some(true)
            })
            .await?;
        if wrote {
            let labels = self.labels(self.sub);
            self.ctx.metrics.retries.with_label_values(&labels).inc();
            if let Some(l) = lateness {
                self.ctx
                    .metrics
                    .retry_lateness
                    .with_label_values(&labels)
                    .observe(l);
            }
        }
        Ok(wrote)
    }

    /// LBR-9: when a retried subcommand has completed, say so once (persisted as the reason
    /// of its `Complete` condition, so a restart does not repeat the event).
    async fn acknowledge_retry_success(&self, status: &BackupStatus) -> Result<(), ReconcileError> {
        let Some(last) = status.backoff_retry_status.last() else {
            return Ok(());
        };
        // The retried subcommand, which may no longer be the current one: a user who
        // switches right after it completed must still hear that it recovered.
        let Some(sub) = record_subcommand(last, &self.name) else {
            return Ok(());
        };
        let sub_status = status.log_sub_command_statuses.get(sub.as_str());
        if last.real_retry_at.is_none() || sub_status.and_then(|s| s.phase) != Some(C::Complete) {
            return Ok(());
        }
        let retry_num = last.retry_num;
        // The event alone (deduplicated in memory and, after a restart, against the Events
        // API) is the acknowledgement: a status write for it would cost one more write per
        // retry cycle, and for a subcommand that is no longer current it would move
        // pause/resume phases under the new one (the operator's update rules).
        let message = format!("the retried Job completed after {retry_num} retries");
        self.retry_succeeded(sub, retry_num, &message).await;
        Ok(())
    }

    /// LBR-9: `RetrySucceeded` once per recovered retry.
    async fn retry_succeeded(&self, sub: LogSubcommand, retry_num: i32, message: &str) {
        self.ctx
            .ensure_event(
                self.backup,
                EventType::Normal,
                RETRY_SUCCEEDED,
                &format!("Recover/{sub}/{retry_num}"),
                format!("Log backup {sub} recovered after {retry_num} retries: {message}"),
            )
            .await;
    }

    /// LBR-10: compare the kernel with a completed subcommand; correct the status when they
    /// disagree; write nothing when they agree.
    async fn kernel_sync(&self) -> Result<Action, ReconcileError> {
        let (sub, name) = (self.sub, &self.name);
        let period = self.ctx.config.kernel_sync_period;
        if !matches!(
            sub,
            LogSubcommand::Start | LogSubcommand::Resume | LogSubcommand::Pause
        ) {
            return Ok(Action::await_change());
        }
        let raw = match self.ctx.read_kernel_task(self.backup, name).await {
            Ok(raw) => raw,
            Err(e) => {
                tracing::warn!(backup = %name, error = %e, "kernel sync: kernel unreachable");
                return Ok(Action::requeue(period));
            }
        };
        let state = match classify(&raw) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(backup = %name, error = %e, "kernel sync: unreadable task state");
                return Ok(Action::requeue(period));
            }
        };
        let Some((target, cond)) = kernel_correction(&state, sub, name) else {
            return Ok(Action::requeue(period));
        };
        let now = self.now;
        // timeSynced moves only with a correction: with nothing changed, nothing is written.
        self.write(target, &[cond], now, |st, changed| {
            if changed {
                st.time_synced = Some(Time(now));
            }
            Some(changed)
        })
        .await?;
        Ok(Action::requeue(period))
    }

    async fn create_job(&self, attempt: u32) -> Result<(), ReconcileError> {
        let sub = self.sub;
        if self
            .ctx
            .create_job(
                self.backup,
                Some(sub),
                attempt,
                &format!("log backup {sub}"),
            )
            .await?
        {
            self.write(
                sub,
                &[condition(C::Scheduled, None, None)],
                self.now,
                |_, _| Some(false),
            )
            .await?;
        }
        Ok(())
    }

    /// Apply `conds` for `sub` to the fresh object, then `extra(status, conditions_changed)`,
    /// and write if anything changed. `extra` returns `None` to abort the whole write (the
    /// fresh object shows the step was already done). Returns whether it wrote.
    async fn write(
        &self,
        sub: LogSubcommand,
        conds: &[BackupCondition],
        now: Timestamp,
        mut extra: impl FnMut(&mut BackupStatus, bool) -> Option<bool>,
    ) -> Result<bool, ReconcileError> {
        let mut wrote = false;
        let known = self
            .ctx
            .latest(self.backup)
            .or_else(|| Some(self.backup.clone()));
        let stored = update_backup_from(&self.api, &self.name, known, |b| {
            let original = b.status.clone();
            let status = b.status.get_or_insert_default();
            let ran = status
                .log_sub_command_statuses
                .get(sub.as_str())
                .and_then(|s| s.phase)
                .is_some_and(|p| matches!(p, C::Prepare | C::Running | C::Complete | C::Failed));
            let mut conds_changed = false;
            for c in conds {
                // LBR-16: the Job already ran (its entrypoint wrote a later phase), so a
                // `Scheduled` decided before that would move the subcommand back.
                if c.type_ == C::Scheduled && ran {
                    continue;
                }
                conds_changed |= status.apply(BackupMode::Log, Some(sub), c.clone(), now);
            }
            wrote = match extra(status, conds_changed) {
                None => {
                    b.status = original.clone();
                    false
                }
                Some(extra_changed) => conds_changed || extra_changed,
            };
            wrote
        })
        .await
        .map_err(kube_err(format!("writing the status of {}", self.name)))?;
        if let Some(stored) = &stored {
            self.ctx.remember(stored);
        }
        if wrote {
            self.ctx.count_write("status");
        }
        Ok(wrote)
    }
}

/// LBR-10, pure: the correction for a kernel that disagrees with the completed `sub` (the
/// subcommand whose status to write, and the condition), or `None` when they agree.
fn kernel_correction(
    state: &KernelState,
    sub: LogSubcommand,
    name: &str,
) -> Option<(LogSubcommand, BackupCondition)> {
    match (state, sub) {
        (KernelState::Absent, _) => Some((
            sub,
            condition(
                C::Failed,
                Some("LogBackupKeyNotFound"),
                Some(&format!(
                    "log backup task {name} not found in the kernel (/tidb/br-stream/info/{name})"
                )),
            ),
        )),
        (KernelState::Paused { kind, message }, LogSubcommand::Start | LogSubcommand::Resume) => {
            let kind = match kind {
                PauseKind::V1 => "v1",
                PauseKind::Manual => "MANUAL",
                PauseKind::Error => "ERROR",
            };
            let text = match message {
                Some(m) => format!("Synced with kernel state: paused ({kind}). {m}"),
                None => format!("Synced with kernel state: paused ({kind})"),
            };
            Some((
                LogSubcommand::Pause,
                condition(C::Complete, Some("LogBackupKernelSync"), Some(&text)),
            ))
        }
        (KernelState::Running { .. }, LogSubcommand::Pause) => Some((
            LogSubcommand::Resume,
            condition(
                C::Complete,
                Some("LogBackupKernelSync"),
                Some("Synced with kernel state: running"),
            ),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn facts() -> Facts {
        Facts {
            phase: Some(C::Running),
            terminal: false,
            invalid: None,
            pending: None,
            attempt: 0,
            job: Some(JobFacts {
                owned: true,
                attempt: 0,
                failed: None,
                this_run: true,
            }),
        }
    }

    fn job(attempt: u32, failed: Option<&str>) -> Option<JobFacts> {
        Some(JobFacts {
            owned: true,
            attempt,
            failed: failed.map(String::from),
            this_run: true,
        })
    }

    #[rstest]
    #[case::running(facts(), Next::Idle)]
    #[case::invalid_is_final(Facts { phase: Some(C::Invalid), ..facts() }, Next::Idle)]
    #[case::terminal(Facts { terminal: true, ..facts() }, Next::TerminalEvent)]
    #[case::bad_policy(Facts { invalid: Some("x".into()), ..facts() }, Next::Invalid("x".into()))]
    #[case::foreign(Facts { job: Some(JobFacts { owned: false, ..job(0, None).unwrap() }), ..facts() }, Next::ForeignJob)]
    #[case::waiting(Facts { pending: Some((1, Duration::from_secs(3))), ..facts() }, Next::WaitForRetry { retry_num: 1, wait: Duration::from_secs(3) })]
    #[case::due(Facts { pending: Some((2, Duration::ZERO)), ..facts() }, Next::RunRetry { retry_num: 2 })]
    #[case::complete(Facts { phase: Some(C::Complete), ..facts() }, Next::Completed)]
    #[case::first_job(Facts { phase: None, job: None, ..facts() }, Next::CreateJob { attempt: 0 })]
    #[case::retry_job_lost(Facts { attempt: 2, job: None, ..facts() }, Next::CreateJob { attempt: 2 })]
    #[case::failed_and_gone(Facts { phase: Some(C::Failed), job: None, ..facts() }, Next::Idle)]
    #[case::stale_attempt(Facts { attempt: 1, job: job(0, Some("BackoffLimitExceeded")), ..facts() }, Next::RemoveStaleJob)]
    #[case::new_run(Facts { phase: Some(C::Repeatable), job: Some(JobFacts { this_run: false, ..job(0, None).unwrap() }), ..facts() }, Next::RemoveStaleJob)]
    // Created after the subcommand became Repeatable: a crash came before its `Scheduled`.
    #[case::new_runs_job(Facts { phase: Some(C::Repeatable), ..facts() }, Next::Idle)]
    #[case::detected(Facts { job: job(0, Some("BackoffLimitExceeded")), ..facts() }, Next::Failed { original_reason: "BackoffLimitExceeded".into() })]
    // A pending retry wins over a failed Job: the failure is already recorded.
    #[case::pending_over_failed(Facts { pending: Some((1, Duration::from_secs(1))), job: job(0, Some("X")), ..facts() }, Next::WaitForRetry { retry_num: 1, wait: Duration::from_secs(1) })]
    fn decisions(#[case] f: Facts, #[case] want: Next) {
        assert_eq!(decide(&f), want);
    }

    #[rstest]
    #[case(KernelState::Running { checkpoint: None }, LogSubcommand::Start, None)]
    #[case(KernelState::Absent, LogSubcommand::Start, Some((LogSubcommand::Start, "LogBackupKeyNotFound")))]
    #[case(KernelState::Paused { kind: PauseKind::V1, message: None }, LogSubcommand::Start, Some((LogSubcommand::Pause, "LogBackupKernelSync")))]
    #[case(KernelState::Running { checkpoint: Some(1) }, LogSubcommand::Pause, Some((LogSubcommand::Resume, "LogBackupKernelSync")))]
    #[case(KernelState::Paused { kind: PauseKind::Manual, message: None }, LogSubcommand::Pause, None)]
    fn kernel_corrections(
        #[case] state: KernelState,
        #[case] sub: LogSubcommand,
        #[case] want: Option<(LogSubcommand, &str)>,
    ) {
        let got = kernel_correction(&state, sub, "lb1");
        assert_eq!(
            got.map(|(s, c)| (s, c.reason.unwrap_or_default())),
            want.map(|(s, r)| (s, r.to_owned()))
        );
    }
}
