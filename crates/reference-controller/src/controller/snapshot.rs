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
use crate::retry::{add_saturating, backoff, resolve_policy, retry_reason, until_due};
use lbc_api::status_write::update_backup_from;
use lbc_api::{BackoffRetryRecord, Backup, BackupConditionType as C, BackupMode, condition};

fn ts(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

pub(super) async fn reconcile(backup: &Backup, ctx: &Ctx) -> Result<Action, ReconcileError> {
    let ns = backup.namespace().unwrap_or_default();
    let name = backup.name_any();
    let uid = backup.uid().unwrap_or_default();
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let now = ctx.clock.now();
    let status = backup.status.clone().unwrap_or_default();
    if matches!(status.phase, Some(C::Complete | C::Failed | C::Invalid)) {
        return Ok(Action::await_change());
    }
    let policy = match resolve_policy(&backup.spec.backoff_retry_policy) {
        Ok(p) => p,
        Err(e) => {
            let msg = e.to_string();
            write(ctx, &api, backup, |b| {
                b.status.get_or_insert_default().apply(
                    BackupMode::Snapshot,
                    None,
                    condition(C::Invalid, Some("InvalidSpec"), Some(&msg)),
                    now,
                )
            })
            .await?;
            return Ok(Action::await_change());
        }
    };
    let records = &status.backoff_retry_status;
    let job_n = job_name(&name, None);
    let job = jobs
        .get_opt(&job_n)
        .await
        .map_err(kube_err("reading the snapshot Job"))?
        .filter(|j| owned_by(j, &uid));
    // Retries run so far = records whose retry has happened.
    let attempt = records.iter().filter(|r| r.real_retry_at.is_some()).count() as u32;

    // (a) RetryFailed: delete the Job, mark Restart and realRetryAt.
    if status.phase == Some(C::RetryFailed)
        && records.last().is_some_and(|r| r.real_retry_at.is_none())
    {
        if let Some(j) = &job {
            ctx.delete_job(backup, &jobs, j).await?;
        }
        write(ctx, &api, backup, |b| {
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
        return Ok(Action::requeue(Duration::from_millis(100)));
    }

    // Detect: a failed Job of the current attempt that has no record yet.
    let failed = job
        .as_ref()
        .filter(|j| attempt_of(j) == attempt)
        .and_then(|j| job_failure(j).map(|r| (j.name_any(), r)));
    let pending_record = records
        .last()
        .filter(|r| r.real_retry_at.is_none())
        .cloned();
    let latest: Option<BackoffRetryRecord> = match (pending_record, failed) {
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
            write(ctx, &api, backup, |b| {
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
    };

    if let Some(latest) = latest {
        let reasons = format!(
            "reason {}, original reason {}",
            latest.retry_reason.clone().unwrap_or_default(),
            latest.original_reason.clone().unwrap_or_default()
        );
        // (c) exhausted: strictly more than M, or strictly past the timeout (seconds).
        let first = records
            .first()
            .or(Some(&latest))
            .and_then(|r| ts(&r.detect_failed_at));
        let timed_out = first.is_some_and(|f| {
            now.duration_since(f).as_secs()
                > SignedDuration::try_from(policy.retry_timeout).map_or(i64::MAX, |d| d.as_secs())
        });
        let exhausted = if latest.retry_num > policy.max_retry_times as i32 {
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
        };
        if let Some(msg) = exhausted {
            write(ctx, &api, backup, |b| {
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
        // (d) due: mark RetryFailed; the next pass restarts.
        let wait = until_due(&latest, now);
        if !wait.is_zero() {
            return Ok(Action::requeue(wait));
        }
        write(ctx, &api, backup, |b| {
            b.status.get_or_insert_default().apply(
                BackupMode::Snapshot,
                None,
                condition(C::RetryFailed, Some("RetryFailedBackup"), Some(&reasons)),
                now,
            )
        })
        .await?;
        return Ok(Action::requeue(Duration::from_millis(100)));
    }

    // Create the Job of this attempt when there is none.
    match job {
        None => {
            if !ctx
                .create_job(backup, None, attempt, "snapshot backup")
                .await?
            {
                return Ok(Action::requeue(Duration::from_millis(100)));
            }
            write(ctx, &api, backup, |b| {
                let status = b.status.get_or_insert_default();
                // LBR-16: a Job that finishes at once may have written its outcome already;
                // `Scheduled` now would move the backup back.
                if status
                    .phase
                    .is_some_and(|p| matches!(p, C::Prepare | C::Running | C::Complete | C::Failed))
                {
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
            ctx.delete_job(backup, &jobs, &j).await?;
            Ok(Action::requeue(Duration::from_millis(100)))
        }
        Some(_) => Ok(Action::await_change()),
    }
}

async fn write(
    ctx: &Ctx,
    api: &Api<Backup>,
    backup: &Backup,
    mut f: impl FnMut(&mut Backup) -> bool,
) -> Result<(), ReconcileError> {
    let name = backup.name_any();
    let name = name.as_str();
    let known = ctx.latest(backup).or_else(|| Some(backup.clone()));
    let mut wrote = false;
    let stored = update_backup_from(api, name, known, |b| {
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
