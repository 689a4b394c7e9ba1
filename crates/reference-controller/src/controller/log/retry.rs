//! The retry lifecycle of a log Backup's subcommand: a failure recorded (LBR-2) or the
//! budget ended (LBR-5/6/7), a due retry run or recovered from the kernel (LBR-3/4), and its
//! events (LBR-9).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use lbc_api::duration::format_go_duration;
use lbc_api::{
    BackoffRetryRecord, BackupCondition, BackupConditionType as C, BackupStatus, LogSubcommand,
    condition,
};

use super::{JOB_GONE_POLL, RETRY_SUCCEEDED, Reconcile};
use crate::controller::ReconcileError;
use crate::controller::job::attempt_of;
use crate::kernel_state::{KernelState, classify, satisfies};
use crate::retry::{
    DetectedFailure, FailureDecision, RetryPolicy, decide_on_failure, live_records,
    record_subcommand, retry_reason, until_due,
};

/// The note of `RetryStarted` for `record`.
pub(super) fn retry_started_note(record: &BackoffRetryRecord, max: u32) -> String {
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

impl Reconcile<'_> {
    /// LBR-9: `RetryStarted` once per scheduled retry (also after a crash lost it).
    pub(super) async fn retry_started(&self, record: &BackoffRetryRecord, max: u32) {
        self.ctx
            .ensure_event(
                self.backup,
                EventType::Normal,
                "RetryStarted",
                &format!("Retry/{}", super::event_step(self.sub, record)),
                retry_started_note(record, max),
            )
            .await;
    }

    /// LBR-2/5/6/7: a failure of the current attempt's Job.
    pub(super) async fn on_failure(
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
    pub(super) async fn run_due_retry(
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
            if let Some(record) = self
                .backup
                .status
                .as_ref()
                .and_then(|st| st.backoff_retry_status.last())
            {
                self.retry_succeeded(sub, record, &message).await;
            }
        }
        Ok(Action::requeue(self.ctx.config.kernel_sync_period))
    }

    /// Set `realRetryAt` of record `retry_num` (once) with `conds`; returns whether it wrote.
    pub(super) async fn mark_retried(
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
    pub(super) async fn acknowledge_retry_success(
        &self,
        status: &BackupStatus,
    ) -> Result<(), ReconcileError> {
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
        self.retry_succeeded(sub, last, &message).await;
        Ok(())
    }

    /// LBR-9: `RetrySucceeded` once per recovered retry.
    async fn retry_succeeded(
        &self,
        sub: LogSubcommand,
        record: &BackoffRetryRecord,
        message: &str,
    ) {
        let retry_num = record.retry_num;
        self.ctx
            .ensure_event(
                self.backup,
                EventType::Normal,
                RETRY_SUCCEEDED,
                &format!("Recover/{}", super::event_step(sub, record)),
                format!("Log backup {sub} recovered after {retry_num} retries: {message}"),
            )
            .await;
    }
}
