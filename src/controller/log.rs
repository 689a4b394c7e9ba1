//! Log-mode reconcile: detection (LBR-1), records (LBR-2), backoff (LBR-3), kernel recovery
//! (LBR-4), budget (LBR-5/6/7/11), kernel sync (LBR-10), bad policy (LBR-14).
//!
//! Every step is idempotent: a write re-checks the fresh object before changing it, so a
//! reconcile re-run after a crash at any point neither records a failure twice nor
//! creates a second Job. Events follow a successful write (at most once per step).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::job::{attempt_of, job_complete, job_failure, job_name, owned_by};
use super::{Ctx, ReconcileError, RetryStrategy, kube_err};
use crate::api::{
    Backup, BackupCondition, BackupConditionType as C, BackupMode, BackupStatus,
    LogSubCommandStatus, LogSubcommand, condition,
};
use crate::kernel::state::{KernelState, PauseKind, classify, satisfies};
use crate::retry::duration::format_go_duration;
use crate::retry::{
    DetectedFailure, FailureDecision, RetryPolicy, decide_on_failure, live_records, pending,
    record_subcommand, resolve_policy, retry_reason, until_due,
};
use crate::status_write::update_backup;
use crate::subcommand::derive;

/// Reasons of the controller's terminal `Failed` writes (nothing more is done after them).
const TERMINAL_REASONS: &[&str] = &["ExceededMaxRetries", "RetryTimeout", "JobFailed"];
const RETRY_SUCCEEDED: &str = "RetrySucceeded";
/// How long to wait for an old Job to disappear before re-creating it.
const JOB_GONE_POLL: Duration = Duration::from_millis(100);

/// The note of `RetryStarted` for `record`.
fn retry_started_note(record: &crate::api::BackoffRetryRecord, max: u32) -> String {
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

struct Names {
    ns: String,
    name: String,
    uid: String,
}

fn labels(n: &Names, sub: LogSubcommand) -> [&str; 3] {
    [n.ns.as_str(), n.name.as_str(), sub.as_str()]
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

/// Apply conditions for `sub` to a fresh object, plus `extra`; returns whether it changed.
fn apply_all(
    b: &mut Backup,
    sub: LogSubcommand,
    conds: &[BackupCondition],
    now: Timestamp,
    extra: impl FnOnce(&mut BackupStatus) -> bool,
) -> bool {
    let status = b.status.get_or_insert_default();
    let mut changed = false;
    for c in conds {
        changed |= status.apply(BackupMode::Log, Some(sub), c.clone(), now);
    }
    changed | extra(status)
}

pub(super) async fn reconcile(backup: &Backup, ctx: &Ctx) -> Result<Action, ReconcileError> {
    let n = Names {
        ns: backup.namespace().unwrap_or_default(),
        name: backup.name_any(),
        uid: backup.uid().unwrap_or_default(),
    };
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &n.ns);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &n.ns);
    let now = ctx.clock.now();
    let status = backup.status.clone().unwrap_or_default();
    let sub = derive(&backup.spec, Some(&status));
    let sub_status = status.log_sub_command_statuses.get(sub.as_str());
    let phase = sub_status.and_then(|s| s.phase);

    if phase == Some(C::Invalid) {
        return Ok(Action::await_change());
    }
    if is_terminal(sub_status) {
        // A crash may have come between the Failed write and its event.
        if let Some(c) = sub_status.and_then(|s| s.conditions.iter().find(|c| c.type_ == C::Failed))
        {
            let message = c.message.clone().unwrap_or_default();
            let (reason, note) = if c.reason.as_deref() == Some("JobFailed") {
                ("BackupFailed", format!("Log backup failed: {message}"))
            } else {
                (
                    "RetryExhausted",
                    format!("Log backup failed permanently: {message}"),
                )
            };
            ctx.ensure_event(
                backup,
                EventType::Warning,
                reason,
                &format!("Fail/{sub}"),
                note,
            )
            .await;
        }
        return Ok(Action::await_change());
    }
    // LBR-14: validate before anything runs.
    let invalid = if backup.spec.br.is_none() {
        Some("spec.br is required for a log backup".to_owned())
    } else {
        resolve_policy(&backup.spec.backoff_retry_policy)
            .err()
            .map(|e| e.to_string())
    };
    let policy = match (invalid, resolve_policy(&backup.spec.backoff_retry_policy)) {
        (None, Ok(p)) => p,
        (message, _) => {
            let message = message.unwrap_or_default();
            let cond = condition(C::Invalid, Some("InvalidSpec"), Some(&message));
            write(ctx, &api, &n, sub, &[cond], now, |_, _| Some(false)).await?;
            return Ok(Action::await_change());
        }
    };

    let live = live_records(&status.backoff_retry_status, &n.name, sub, sub_status);
    let job = jobs
        .get_opt(&job_name(&n.name, Some(sub)))
        .await
        .map_err(kube_err("reading the backup Job"))?;
    let job = match job {
        Some(j) if !owned_by(&j, &n.uid) => {
            tracing::warn!(job = %j.name_any(), "a Job with the backup's name is not owned by it; waiting");
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        other => other,
    };

    let key = format!("{}/{}/{}", n.ns, n.name, sub);
    // The rejected strategy keeps its schedule in memory: a restart forgets it.
    let pending_record = match ctx.config.strategy {
        RetryStrategy::Persisted => pending(live),
        RetryStrategy::Workqueue => pending(live).filter(|_| ctx.memory().scheduled.contains(&key)),
    };
    if let Some(p) = pending_record {
        let max = u32::try_from(
            backup
                .spec
                .backoff_retry_policy
                .max_retry_times_or_default(),
        )
        .unwrap_or(0);
        ctx.ensure_event(
            backup,
            EventType::Normal,
            "RetryStarted",
            &format!("Retry/{sub}/{}", p.retry_num),
            retry_started_note(p, max),
        )
        .await;
        let wait = until_due(p, now);
        if !wait.is_zero() {
            return Ok(Action::requeue(wait));
        }
        return run_due_retry(backup, ctx, &n, sub, p.retry_num, job.as_ref(), now).await;
    }

    if phase == Some(C::Complete) {
        acknowledge_retry_success(backup, ctx, &api, &n, sub, &status, sub_status, now).await?;
        return kernel_sync(backup, ctx, &api, &n, sub, now).await;
    }

    // The attempt that should be running: the last (retried) record's, or the first.
    let attempt = match ctx.config.strategy {
        RetryStrategy::Persisted => live
            .last()
            .map_or(0, |r| u32::try_from(r.retry_num).unwrap_or(0)),
        RetryStrategy::Workqueue => ctx.memory().counts.get(&key).copied().unwrap_or(0),
    };
    let Some(job) = job else {
        if matches!(phase, Some(C::Failed)) {
            // The Job wrote Failed and is gone (deleted by hand): nothing to detect.
            return Ok(Action::await_change());
        }
        create_job(backup, ctx, &api, &n, sub, attempt, now).await?;
        return Ok(Action::await_change());
    };
    if attempt_of(&job) != attempt || phase == Some(C::Repeatable) {
        // A finished Job of an earlier attempt or run: remove it, then run this one.
        ctx.delete_job(backup, &jobs, &job).await?;
        return Ok(Action::requeue(JOB_GONE_POLL));
    }
    let Some(original_reason) = job_failure(&job) else {
        if !job_complete(&job) {
            // Still running: the Job watch brings us back.
        }
        return Ok(Action::await_change());
    };
    on_failure(
        backup,
        ctx,
        &api,
        &n,
        sub,
        &policy,
        live,
        &job,
        original_reason,
        now,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn on_failure(
    backup: &Backup,
    ctx: &Ctx,
    api: &Api<Backup>,
    n: &Names,
    sub: LogSubcommand,
    policy: &RetryPolicy,
    live: &[crate::api::BackoffRetryRecord],
    job: &Job,
    original_reason: String,
    now: Timestamp,
) -> Result<Action, ReconcileError> {
    let failure = DetectedFailure {
        retry_reason: retry_reason(&job.name_any()),
        original_reason,
    };
    let job_uid = job.uid().unwrap_or_default();
    let key = format!("{}/{}/{}", n.ns, n.name, sub);
    // What the decision counts: the persisted records, or (rejected strategy) memory.
    let counted: Vec<crate::api::BackoffRetryRecord> = match ctx.config.strategy {
        RetryStrategy::Persisted => live.to_vec(),
        RetryStrategy::Workqueue => {
            let mem = ctx.memory();
            if mem.seen.contains(&job_uid) {
                return Ok(Action::await_change());
            }
            let count = mem.counts.get(&key).copied().unwrap_or(0) as usize;
            live.iter().rev().take(count).rev().cloned().collect()
        }
    };
    // The CR stores times in whole seconds; deciding on the stored value keeps
    // expectedRetryAt − detectFailedAt exact and lets the requeue hit expectedRetryAt.
    let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
    let decision = decide_on_failure(policy, &counted, &failure, now);
    ctx.metrics
        .job_failures
        .with_label_values(&labels(n, sub))
        .inc();
    match decision {
        FailureDecision::Retry {
            record,
            delay: _,
            message,
        } => {
            let retry_num = record.retry_num;
            let requeue = until_due(&record, ctx.clock.now());
            let record_for_note = record.clone();
            let strategy = ctx.config.strategy;
            let cond = condition(C::RetryFailed, Some("RetryingLogBackup"), Some(&message));
            let wrote = write(ctx, api, n, sub, &[cond], now, |st, _| {
                // Re-check on the fresh object: never record one failure twice.
                let fresh_live = live_records(
                    &st.backoff_retry_status,
                    &n.name,
                    sub,
                    st.log_sub_command_statuses.get(sub.as_str()),
                );
                let fresh_attempt = fresh_live.last().map_or(0, |r| r.retry_num);
                if strategy == RetryStrategy::Persisted
                    && (pending(fresh_live).is_some() || fresh_attempt >= retry_num)
                {
                    return None;
                }
                let mut records = if strategy == RetryStrategy::Persisted {
                    fresh_live.to_vec()
                } else {
                    st.backoff_retry_status.clone()
                };
                records.push(record.clone());
                st.backoff_retry_status = records;
                Some(true)
            })
            .await?;
            if wrote {
                if ctx.config.strategy == RetryStrategy::Workqueue {
                    let mut mem = ctx.memory();
                    mem.seen.insert(job_uid);
                    mem.scheduled.insert(key.clone());
                    *mem.counts.entry(key).or_default() += 1;
                }
                ctx.ensure_event(
                    backup,
                    EventType::Normal,
                    "RetryStarted",
                    &format!("Retry/{sub}/{retry_num}"),
                    retry_started_note(&record_for_note, policy.max_retry_times),
                )
                .await;
            }
            Ok(Action::requeue(requeue))
        }
        FailureDecision::Exhausted { reason, message } => {
            let note = format!("Log backup failed permanently: {message}");
            fail_permanently(
                backup,
                ctx,
                api,
                n,
                sub,
                reason.as_str(),
                "RetryExhausted",
                &message,
                note,
                now,
            )
            .await
        }
        FailureDecision::Disabled { message } => {
            let note = format!("Log backup failed: {message}");
            fail_permanently(
                backup,
                ctx,
                api,
                n,
                sub,
                "JobFailed",
                "BackupFailed",
                &message,
                note,
                now,
            )
            .await
        }
    }
}

/// LBR-5/6/7: write the terminal `Failed` (once) and its Warning event.
#[allow(clippy::too_many_arguments)]
async fn fail_permanently(
    backup: &Backup,
    ctx: &Ctx,
    api: &Api<Backup>,
    n: &Names,
    sub: LogSubcommand,
    reason: &str,
    event_reason: &str,
    message: &str,
    note: String,
    now: Timestamp,
) -> Result<Action, ReconcileError> {
    let cond = condition(C::Failed, Some(reason), Some(message));
    if write(ctx, api, n, sub, &[cond], now, |_, _| Some(false)).await? {
        ctx.metrics
            .retry_exhausted
            .with_label_values(&labels(n, sub))
            .inc();
        ctx.ensure_event(
            backup,
            EventType::Warning,
            event_reason,
            &format!("Fail/{sub}"),
            note,
        )
        .await;
    }
    Ok(Action::await_change())
}

/// LBR-3/LBR-4: the pending retry `retry_num` is due.
async fn run_due_retry(
    backup: &Backup,
    ctx: &Ctx,
    n: &Names,
    sub: LogSubcommand,
    retry_num: i32,
    job: Option<&Job>,
    now: Timestamp,
) -> Result<Action, ReconcileError> {
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &n.ns);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &n.ns);
    let attempt = u32::try_from(retry_num).unwrap_or(0);
    // A crash after creating the retry Job but before recording it: record it now.
    if let Some(j) = job
        && attempt_of(j) == attempt
    {
        let at = j.creation_timestamp().map_or(now, |t| t.0);
        mark_retried(
            ctx,
            &api,
            n,
            sub,
            retry_num,
            at,
            &[condition(C::Scheduled, None, None)],
            |_| {},
        )
        .await?;
        return Ok(Action::await_change());
    }
    // LBR-4: ask the kernel first.
    let kernel = ctx.kernel_for(backup);
    let state = match kernel.read_task(&n.name).await {
        Ok(raw) => classify(&raw).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match &state {
        Ok(s) if satisfies(s, sub) => {
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
            let wrote = mark_retried(ctx, &api, n, sub, retry_num, now, &conds, |st| {
                if sub == LogSubcommand::Start && st.commit_ts.is_none() {
                    st.commit_ts = start_ts.map(|t| t.to_string());
                }
            })
            .await?;
            if wrote {
                ctx.metrics
                    .kernel_recoveries
                    .with_label_values(&labels(n, sub))
                    .inc();
                ctx.ensure_event(
                    backup,
                    EventType::Normal,
                    RETRY_SUCCEEDED,
                    &format!("Recover/{sub}/{retry_num}"),
                    format!("Log backup {sub} recovered after {retry_num} retries: {message}"),
                )
                .await;
            }
            return Ok(Action::requeue(ctx.config.kernel_sync_period));
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(backup = %n.name, error = %e, "kernel unreadable; retrying with a new Job")
        }
    }
    if let Some(j) = job {
        ctx.delete_job(backup, &jobs, j).await?;
    }
    if !ctx
        .create_job(
            backup,
            Some(sub),
            attempt,
            &format!("log backup retry {retry_num}"),
        )
        .await?
    {
        // The old Job is still being deleted.
        return Ok(Action::requeue(JOB_GONE_POLL));
    }
    mark_retried(
        ctx,
        &api,
        n,
        sub,
        retry_num,
        now,
        &[condition(C::Scheduled, None, None)],
        |_| {},
    )
    .await?;
    Ok(Action::await_change())
}

/// Set `realRetryAt` of record `retry_num` (once) with `conds`; returns whether it wrote.
#[allow(clippy::too_many_arguments)]
async fn mark_retried(
    ctx: &Ctx,
    api: &Api<Backup>,
    n: &Names,
    sub: LogSubcommand,
    retry_num: i32,
    at: Timestamp,
    conds: &[BackupCondition],
    extra: impl Fn(&mut BackupStatus),
) -> Result<bool, ReconcileError> {
    let mut lateness = None;
    let wrote = write(ctx, api, n, sub, conds, at, |st, _| {
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
        ctx.metrics.retries.with_label_values(&labels(n, sub)).inc();
        if let Some(l) = lateness {
            ctx.metrics
                .retry_lateness
                .with_label_values(&labels(n, sub))
                .observe(l);
        }
    }
    Ok(wrote)
}

/// LBR-9: when a retried subcommand has completed, say so once (persisted as the reason
/// of its `Complete` condition, so a restart does not repeat the event).
#[allow(clippy::too_many_arguments)]
async fn acknowledge_retry_success(
    backup: &Backup,
    ctx: &Ctx,
    api: &Api<Backup>,
    n: &Names,
    sub: LogSubcommand,
    status: &BackupStatus,
    sub_status: Option<&LogSubCommandStatus>,
    now: Timestamp,
) -> Result<(), ReconcileError> {
    let Some(last) = status.backoff_retry_status.last() else {
        return Ok(());
    };
    if record_subcommand(last, &n.name) != Some(sub) || last.real_retry_at.is_none() {
        return Ok(());
    }
    let retry_num = last.retry_num;
    let message = match sub_status.and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == C::Complete && c.reason.as_deref() == Some(RETRY_SUCCEEDED))
    }) {
        Some(c) => c.message.clone().unwrap_or_default(),
        None => {
            let message = format!("the retried Job completed after {retry_num} retries");
            let cond = condition(C::Complete, Some(RETRY_SUCCEEDED), Some(&message));
            write(ctx, api, n, sub, &[cond], now, |_, _| Some(false)).await?;
            message
        }
    };
    // Also after a crash between the write above and its event.
    ctx.ensure_event(
        backup,
        EventType::Normal,
        RETRY_SUCCEEDED,
        &format!("Recover/{sub}/{retry_num}"),
        format!("Log backup {sub} recovered after {retry_num} retries: {message}"),
    )
    .await;
    Ok(())
}

/// LBR-10: compare the kernel with a completed subcommand; correct the status when they
/// disagree; write nothing when they agree.
async fn kernel_sync(
    backup: &Backup,
    ctx: &Ctx,
    api: &Api<Backup>,
    n: &Names,
    sub: LogSubcommand,
    now: Timestamp,
) -> Result<Action, ReconcileError> {
    let period = ctx.config.kernel_sync_period;
    if !matches!(
        sub,
        LogSubcommand::Start | LogSubcommand::Resume | LogSubcommand::Pause
    ) {
        return Ok(Action::await_change());
    }
    let raw = match ctx.kernel_for(backup).read_task(&n.name).await {
        Ok(raw) => raw,
        Err(e) => {
            tracing::warn!(backup = %n.name, error = %e, "kernel sync: kernel unreachable");
            return Ok(Action::requeue(period));
        }
    };
    let state = match classify(&raw) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(backup = %n.name, error = %e, "kernel sync: unreadable task state");
            return Ok(Action::requeue(period));
        }
    };
    let (target, cond) = match (&state, sub) {
        (KernelState::Absent, _) => (
            sub,
            condition(
                C::Failed,
                Some("LogBackupKeyNotFound"),
                Some(&format!(
                    "log backup task {} not found in the kernel (/tidb/br-stream/info/{})",
                    n.name, n.name
                )),
            ),
        ),
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
            (
                LogSubcommand::Pause,
                condition(C::Complete, Some("LogBackupKernelSync"), Some(&text)),
            )
        }
        (KernelState::Running { .. }, LogSubcommand::Pause) => (
            LogSubcommand::Resume,
            condition(
                C::Complete,
                Some("LogBackupKernelSync"),
                Some("Synced with kernel state: running"),
            ),
        ),
        _ => return Ok(Action::requeue(period)),
    };
    // timeSynced moves only with a correction: with nothing changed, nothing is written.
    write(ctx, api, n, target, &[cond], now, |st, changed| {
        if changed {
            st.time_synced = Some(Time(now));
        }
        Some(changed)
    })
    .await?;
    Ok(Action::requeue(period))
}

async fn create_job(
    backup: &Backup,
    ctx: &Ctx,
    api: &Api<Backup>,
    n: &Names,
    sub: LogSubcommand,
    attempt: u32,
    now: Timestamp,
) -> Result<(), ReconcileError> {
    if ctx
        .create_job(backup, Some(sub), attempt, &format!("log backup {sub}"))
        .await?
    {
        write(
            ctx,
            api,
            n,
            sub,
            &[condition(C::Scheduled, None, None)],
            now,
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
    ctx: &Ctx,
    api: &Api<Backup>,
    n: &Names,
    sub: LogSubcommand,
    conds: &[BackupCondition],
    now: Timestamp,
    mut extra: impl FnMut(&mut BackupStatus, bool) -> Option<bool>,
) -> Result<bool, ReconcileError> {
    let mut wrote = false;
    update_backup(api, &n.name, |b| {
        let original = b.status.clone();
        let conds_changed = apply_all(b, sub, conds, now, |_| false);
        let status = b.status.get_or_insert_default();
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
    .map_err(kube_err(format!("writing the status of {}", n.name)))?;
    if wrote {
        ctx.count_write("status");
    }
    Ok(wrote)
}
