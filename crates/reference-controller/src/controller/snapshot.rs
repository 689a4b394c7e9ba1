//! Snapshot mode, unchanged from the operator (LBR-13, `retrySnapshotBackupAccordingToBackoffPolicy`):
//! a record at each failure (up to retryNum M+1), `RetryFailed` → `Restart` with
//! `realRetryAt`, exhaustion `Failed`/`AlreadyFailed`. No retry events.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::job::{attempt_of, job_failure, job_name, owned_by};
use super::{Ctx, ReconcileError, kube_err};
use crate::retry::{RetryPolicy, add_saturating, backoff, resolve_policy, retry_reason, until_due};
use lbc_api::status_write::update_backup_from;
use lbc_api::{BackoffRetryRecord, Backup, BackupConditionType as C, BackupMode, condition};

fn ts(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

pub(super) async fn reconcile(backup: &Backup, ctx: &Ctx) -> Result<Action, ReconcileError> {
    let ns = backup.namespace().unwrap_or_default();
    let name = backup.name_any();
    let uid = backup.uid().unwrap_or_default();
    let pass = Pass {
        backup,
        ctx,
        api: Api::namespaced(ctx.client.clone(), &ns),
        jobs: Api::namespaced(ctx.client.clone(), &ns),
        now: ctx.clock.now(),
    };
    let status = backup.status.clone().unwrap_or_default();
    if matches!(status.phase, Some(C::Complete | C::Failed | C::Invalid)) {
        return Ok(Action::await_change());
    }
    let policy = match resolve_policy(&backup.spec.backoff_retry_policy) {
        Ok(p) => p,
        Err(e) => {
            pass.invalid(&e.to_string()).await?;
            return Ok(Action::await_change());
        }
    };
    let records = &status.backoff_retry_status;
    let job_n = job_name(&name, None);
    let job = pass
        .jobs
        .get_opt(&job_n)
        .await
        .map_err(kube_err("reading the snapshot Job"))?
        .filter(|j| owned_by(j, &uid));
    // Retries run so far = records whose retry has happened.
    let attempt = records.iter().filter(|r| r.real_retry_at.is_some()).count() as u32;

    if status.phase == Some(C::RetryFailed)
        && records.last().is_some_and(|r| r.real_retry_at.is_none())
    {
        return pass.restart(job.as_ref()).await;
    }
    let latest = pass
        .latest_record(records, job.as_ref(), attempt, &policy)
        .await?;
    if let Some(latest) = latest {
        return pass.fail_or_retry(records, &latest, &policy).await;
    }
    pass.ensure_job(job, attempt).await
}

/// One reconcile of one snapshot Backup: what every step needs, resolved once.
struct Pass<'a> {
    backup: &'a Backup,
    ctx: &'a Ctx,
    api: Api<Backup>,
    jobs: Api<Job>,
    now: Timestamp,
}

impl Pass<'_> {
    /// LBR-14: an unusable retry policy makes the Backup `Invalid`.
    async fn invalid(&self, msg: &str) -> Result<(), ReconcileError> {
        let now = self.now;
        self.write(|b| {
            b.status.get_or_insert_default().apply(
                BackupMode::Snapshot,
                None,
                condition(C::Invalid, Some("InvalidSpec"), Some(msg)),
                now,
            )
        })
        .await
    }

    /// (a) RetryFailed: delete the Job, mark Restart and realRetryAt.
    async fn restart(&self, job: Option<&Job>) -> Result<Action, ReconcileError> {
        let now = self.now;
        if let Some(j) = job {
            self.ctx.delete_job(self.backup, &self.jobs, j).await?;
        }
        self.write(|b| {
            let st = b.status.get_or_insert_default();
            let Some(last) = st.backoff_retry_status.last_mut() else {
                return false;
            };
            if last.real_retry_at.is_some() {
                return false;
            }
            last.real_retry_at = Some(Time(now));
            // Restart is recorded as a condition; it never becomes the phase.
            let phase = st.phase;
            st.apply(
                BackupMode::Snapshot,
                None,
                condition(C::Restart, None, None),
                now,
            );
            st.phase = phase;
            true
        })
        .await?;
        Ok(Action::requeue(Duration::from_millis(100)))
    }

    /// (b) The record the retry waits on: the pending one, or a new one for a failed Job of
    /// the current attempt that has none yet (written before it is returned).
    async fn latest_record(
        &self,
        records: &[BackoffRetryRecord],
        job: Option<&Job>,
        attempt: u32,
        policy: &RetryPolicy,
    ) -> Result<Option<BackoffRetryRecord>, ReconcileError> {
        let now = self.now;
        let failed = job
            .filter(|j| attempt_of(j) == attempt)
            .and_then(|j| job_failure(j).map(|r| (j.name_any(), r)));
        let pending_record = records
            .last()
            .filter(|r| r.real_retry_at.is_none())
            .cloned();
        Ok(match (pending_record, failed) {
            (Some(r), _) => Some(r),
            (None, Some((job_name, original))) => {
                let n = records.len() + 1;
                let delay = backoff(policy.min_retry_duration, n as u32);
                let record = BackoffRetryRecord {
                    retry_num: n as i32,
                    detect_failed_at: Some(Time(now)),
                    expected_retry_at: Some(Time(add_saturating(now, delay))),
                    real_retry_at: None,
                    retry_reason: Some(retry_reason(&job_name)),
                    original_reason: Some(original),
                };
                let r2 = record.clone();
                self.write(|b| {
                    let st = b.status.get_or_insert_default();
                    if st.backoff_retry_status.len() >= n {
                        return false;
                    }
                    st.backoff_retry_status.push(r2.clone());
                    true
                })
                .await?;
                Some(record)
            }
            (None, None) => None,
        })
    }

    /// (c) exhausted: `Failed/AlreadyFailed`; else (d) due: mark RetryFailed (the next pass
    /// restarts), or come back when it is.
    async fn fail_or_retry(
        &self,
        records: &[BackoffRetryRecord],
        latest: &BackoffRetryRecord,
        policy: &RetryPolicy,
    ) -> Result<Action, ReconcileError> {
        let now = self.now;
        let reasons = format!(
            "reason {}, original reason {}",
            latest.retry_reason.clone().unwrap_or_default(),
            latest.original_reason.clone().unwrap_or_default()
        );
        if let Some(msg) = exhausted(records, latest, policy, &reasons, now) {
            self.write(|b| {
                b.status.get_or_insert_default().apply(
                    BackupMode::Snapshot,
                    None,
                    condition(C::Failed, Some("AlreadyFailed"), Some(&msg)),
                    now,
                )
            })
            .await?;
            return Ok(Action::await_change());
        }
        let wait = until_due(latest, now);
        if !wait.is_zero() {
            return Ok(Action::requeue(wait));
        }
        self.write(|b| {
            b.status.get_or_insert_default().apply(
                BackupMode::Snapshot,
                None,
                condition(C::RetryFailed, Some("RetryFailedBackup"), Some(&reasons)),
                now,
            )
        })
        .await?;
        Ok(Action::requeue(Duration::from_millis(100)))
    }

    /// Create the Job of this attempt when there is none; remove one of an earlier attempt.
    async fn ensure_job(&self, job: Option<Job>, attempt: u32) -> Result<Action, ReconcileError> {
        let now = self.now;
        match job {
            None => {
                if !self
                    .ctx
                    .create_job(self.backup, None, attempt, "snapshot backup")
                    .await?
                {
                    return Ok(Action::requeue(Duration::from_millis(100)));
                }
                self.write(|b| {
                    let status = b.status.get_or_insert_default();
                    // LBR-16: a Job that finishes at once may have written its outcome
                    // already; `Scheduled` now would move the backup back.
                    if status.phase.is_some_and(|p| {
                        matches!(p, C::Prepare | C::Running | C::Complete | C::Failed)
                    }) {
                        return false;
                    }
                    status.apply(
                        BackupMode::Snapshot,
                        None,
                        condition(C::Scheduled, None, None),
                        now,
                    )
                })
                .await?;
                Ok(Action::await_change())
            }
            Some(j) if attempt_of(&j) < attempt => {
                self.ctx.delete_job(self.backup, &self.jobs, &j).await?;
                Ok(Action::requeue(Duration::from_millis(100)))
            }
            Some(_) => Ok(Action::await_change()),
        }
    }

    /// Apply `f` to the fresh Backup and write it when `f` says it changed something.
    async fn write(&self, mut f: impl FnMut(&mut Backup) -> bool) -> Result<(), ReconcileError> {
        let (ctx, backup) = (self.ctx, self.backup);
        let name = backup.name_any();
        let name = name.as_str();
        let known = ctx.latest(backup).or_else(|| Some(backup.clone()));
        let mut wrote = false;
        let stored = update_backup_from(&self.api, name, known, |b| {
            wrote = f(b);
            wrote
        })
        .await
        .map_err(kube_err(format!("writing the status of {name}")))?;
        if let Some(stored) = &stored {
            ctx.remember(stored);
        }
        if wrote {
            ctx.count_write("status");
        }
        Ok(())
    }
}

/// (c) Why the retries are exhausted, if they are: strictly more than M, or strictly past
/// the timeout (seconds) since the first failure.
fn exhausted(
    records: &[BackoffRetryRecord],
    latest: &BackoffRetryRecord,
    policy: &RetryPolicy,
    reasons: &str,
    now: Timestamp,
) -> Option<String> {
    let first = records
        .first()
        .or(Some(latest))
        .and_then(|r| ts(&r.detect_failed_at));
    let timed_out = first.is_some_and(|f| {
        now.duration_since(f).as_secs()
            > SignedDuration::try_from(policy.retry_timeout).map_or(i64::MAX, |d| d.as_secs())
    });
    if latest.retry_num > policy.max_retry_times as i32 {
        Some(format!(
            "exceed retry times, max is {}, failed {reasons}",
            policy.max_retry_times
        ))
    } else if timed_out {
        Some(format!(
            "retry timeout, max is {}, failed {reasons}",
            lbc_api::duration::format_go_duration(policy.retry_timeout)
        ))
    } else {
        None
    }
}
