//! Log-mode reconcile: detection (LBR-1), records (LBR-2), backoff (LBR-3), kernel recovery
//! (LBR-4), budget (LBR-5/6/7/11), kernel sync (LBR-10), bad policy (LBR-14).
//!
//! A reconcile reads what it needs (the Backup, its Job), asks the pure [`decide`] what to
//! do, and does it through a per-reconcile [`Reconcile`] scope. Every step is idempotent: a
//! write re-checks the fresh object before changing it, so a reconcile re-run after a crash
//! at any point neither records a failure twice nor creates a second Job. Events follow a
//! successful write (at most once per step).
//!
//! The steps of the retry lifecycle are in `retry.rs`, the kernel sync (LBR-10) in
//! `kernel_sync.rs`.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use lbc_api::status_write::update_backup_from;
use lbc_api::{
    BackoffRetryRecord, Backup, BackupCondition, BackupConditionType as C, BackupMode,
    BackupStatus, LogSubCommandStatus, LogSubcommand, condition,
};

use super::job::{attempt_of, job_failure, job_name, owned_by};
use super::strategy::Strategy;
use super::{Ctx, ReconcileError, kube_err};
use crate::retry::{RetryPolicy, live_records, record_subcommand, resolve_policy, until_due};
use crate::subcommand::derive;
use retry::retry_started_note;

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
/// An event's `action` for the step of `record`: its subcommand, number and detection
/// second, so a later run of the subcommand (a fresh budget, retryNum 1 again) gets events
/// of its own while one step's event is still sent once, also across restarts.
pub(super) fn event_step(sub: LogSubcommand, record: &BackoffRetryRecord) -> String {
    let detected = record
        .detect_failed_at
        .as_ref()
        .map_or(0, |t| t.0.as_second());
    format!("{sub}/{}/{detected}", record.retry_num)
}

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
        &format!("Retry/{}", event_step(sub, last)),
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
    if rc.record_proven_retry(job.as_ref(), &status, &uid).await? {
        return Ok(Action::requeue(Duration::ZERO));
    }
    let pending = rc.strategy.pending(live);
    let facts = Facts {
        phase: sub_status.and_then(|s| s.phase),
        terminal: is_terminal(sub_status),
        invalid,
        pending: pending.map(|p| (p.retry_num, until_due(p, rc.now))),
        attempt: rc.strategy.attempt(live),
        job: job.as_ref().map(|j| job_facts(j, &uid, sub, &status)),
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
    rc.act(
        next,
        policy.as_ref(),
        pending,
        job.as_ref(),
        live,
        sub_status,
    )
    .await
}

/// What [`decide`] is told of `job`, the subcommand's Job.
fn job_facts(job: &Job, uid: &str, sub: LogSubcommand, status: &BackupStatus) -> JobFacts {
    JobFacts {
        owned: owned_by(job, uid),
        attempt: attempt_of(job),
        failed: job_failure(job),
        // Strictly later: a Job of the same second counts as the old run's (at worst
        // it is removed and made again).
        this_run: repeatable_since(sub, status)
            .is_none_or(|since| job.creation_timestamp().is_some_and(|c| c.0 > since)),
    }
}

impl Reconcile<'_> {
    /// LBR-8: a crash after creating the retry Job but before recording it, and that Job
    /// may have completed since (which ends the budget and hides the record from `live`):
    /// the Job is the proof the retry ran; record it before anything else. Returns whether
    /// it did (the reconcile then starts over).
    async fn record_proven_retry(
        &self,
        job: Option<&Job>,
        status: &BackupStatus,
        uid: &str,
    ) -> Result<bool, ReconcileError> {
        if let (Some(j), Some(last)) = (job, status.backoff_retry_status.last())
            && last.real_retry_at.is_none()
            && last.retry_num > 0
            && record_subcommand(last, &self.name) == Some(self.sub)
            && owned_by(j, uid)
            && i64::from(attempt_of(j)) == i64::from(last.retry_num)
        {
            let at = j.creation_timestamp().map_or(self.now, |t| t.0);
            let scheduled = [condition(C::Scheduled, None, None)];
            self.mark_retried(last.retry_num, at, &scheduled, |_| {})
                .await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Carry out `next`, what [`decide`] chose.
    async fn act(
        &self,
        next: Next,
        policy: Option<&RetryPolicy>,
        pending: Option<&BackoffRetryRecord>,
        job: Option<&Job>,
        live: &[BackoffRetryRecord],
        sub_status: Option<&LogSubCommandStatus>,
    ) -> Result<Action, ReconcileError> {
        match (next, policy) {
            (Next::Idle, _) => Ok(Action::await_change()),
            (Next::TerminalEvent, _) => {
                self.terminal_event(sub_status).await;
                Ok(Action::await_change())
            }
            (Next::Invalid(message), _) => {
                let cond = condition(C::Invalid, Some("InvalidSpec"), Some(&message));
                self.write(self.sub, &[cond], self.now, |_, _| Some(false))
                    .await?;
                Ok(Action::await_change())
            }
            (Next::ForeignJob, _) => {
                tracing::warn!(backup = %self.name, "a Job with the backup's name is not owned by it; waiting");
                Ok(Action::requeue(Duration::from_secs(5)))
            }
            (Next::WaitForRetry { wait, .. }, Some(policy)) => {
                if let Some(p) = pending {
                    self.retry_started(p, policy.max_retry_times).await;
                }
                Ok(Action::requeue(wait))
            }
            (Next::RunRetry { retry_num }, Some(policy)) => {
                // The retry first (LBR-3 is a bound on time); the event it owes (a crash may
                // have lost it, and ensuring it costs a list) after.
                let action = self.run_due_retry(retry_num, job).await;
                if let Some(p) = pending {
                    self.retry_started(p, policy.max_retry_times).await;
                }
                action
            }
            (Next::Completed, _) => self.kernel_sync().await,
            (Next::CreateJob { attempt }, _) => {
                self.create_job(attempt).await?;
                Ok(Action::await_change())
            }
            (Next::RemoveStaleJob, _) => {
                if let Some(j) = job {
                    self.ctx.delete_job(self.backup, &self.jobs, j).await?;
                }
                Ok(Action::requeue(JOB_GONE_POLL))
            }
            (Next::Failed { original_reason }, Some(policy)) => match job {
                Some(j) => self.on_failure(policy, live, j, original_reason).await,
                None => Ok(Action::await_change()),
            },
            // A valid spec always has a policy; `decide` saw `invalid` otherwise.
            (_, None) => Ok(Action::await_change()),
        }
    }
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

mod kernel_sync;
mod retry;
#[cfg(test)]
mod tests;
