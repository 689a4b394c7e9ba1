//! The retry decision for log backups (CONTRACT LBR-2, 3, 5, 6, 7, 11, 14): plain functions
//! over the Backup's own data and an injected `now`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use lbc_api::duration::{DurationError, format_go_duration, parse_go_duration};
use lbc_api::{
    BackoffRetryPolicy, BackoffRetryRecord, BackupConditionType, LogSubCommandStatus, LogSubcommand,
};

/// A parsed `spec.backoffRetryPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub min_retry_duration: Duration,
    /// 0 disables retry; negative values read as 0.
    pub max_retry_times: u32,
    pub retry_timeout: Duration,
}

/// LBR-14: a policy field that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.backoffRetryPolicy.{field}: {error} (value {value:?})")]
pub struct InvalidPolicy {
    pub field: &'static str,
    pub value: String,
    pub error: DurationError,
}

/// Parse the policy, applying the CRD defaults to absent fields.
///
/// # Errors
/// The first field that does not parse, named.
pub fn resolve_policy(p: &BackoffRetryPolicy) -> Result<RetryPolicy, InvalidPolicy> {
    let parse = |field: &'static str, value: &str| {
        parse_go_duration(value).map_err(|error| InvalidPolicy {
            field,
            value: value.to_owned(),
            error,
        })
    };
    Ok(RetryPolicy {
        min_retry_duration: parse("minRetryDuration", p.min_retry_duration_or_default())?,
        max_retry_times: u32::try_from(p.max_retry_times_or_default()).unwrap_or(0),
        retry_timeout: parse("retryTimeout", p.retry_timeout_or_default())?,
    })
}

/// `min × 2^(retry_num − 1)`, saturating instead of overflowing for large `retry_num`.
pub fn backoff(min: Duration, retry_num: u32) -> Duration {
    let shift = retry_num.saturating_sub(1);
    if min.is_zero() {
        return Duration::ZERO;
    }
    if shift >= 64 {
        return Duration::MAX;
    }
    let nanos = min.as_nanos().saturating_mul(1u128 << shift);
    let secs = nanos / 1_000_000_000;
    match u64::try_from(secs) {
        Ok(secs) => Duration::new(secs, (nanos % 1_000_000_000) as u32),
        Err(_) => Duration::MAX,
    }
}

/// `t + d`, saturating at the end of representable time.
pub fn add_saturating(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|sd| t.checked_add(sd).ok())
        .unwrap_or(Timestamp::MAX)
}

fn ts(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

/// What to do about a newly detected failure of the current subcommand's Job.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureDecision {
    /// LBR-2: append this record and retry at its `expectedRetryAt`.
    Retry {
        record: BackoffRetryRecord,
        delay: Duration,
        /// The condition message (`RetryFailed`): attempt n/max and the delay.
        message: String,
    },
    /// LBR-5 / LBR-6: the budget is spent.
    Exhausted {
        reason: ExhaustReason,
        message: String,
    },
    /// LBR-7: `maxRetryTimes: 0`.
    Disabled { message: String },
}

/// Why the budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExhaustReason {
    ExceededMaxRetries,
    RetryTimeout,
}

impl ExhaustReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExceededMaxRetries => "ExceededMaxRetries",
            Self::RetryTimeout => "RetryTimeout",
        }
    }
}

/// The failure being decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedFailure {
    /// `Job <name> has failed`.
    pub retry_reason: String,
    /// The Job condition's reason, e.g. `BackoffLimitExceeded`.
    pub original_reason: String,
}

/// Decide on a failure detected at `now`, given the records of the current budget.
pub fn decide_on_failure(
    policy: &RetryPolicy,
    live_records: &[BackoffRetryRecord],
    failure: &DetectedFailure,
    now: Timestamp,
) -> FailureDecision {
    let what = format!("{} ({})", failure.retry_reason, failure.original_reason);
    if policy.max_retry_times == 0 {
        return FailureDecision::Disabled {
            message: format!("{what}; retry is disabled (maxRetryTimes: 0)"),
        };
    }
    let done = live_records.len();
    if done >= policy.max_retry_times as usize {
        return FailureDecision::Exhausted {
            reason: ExhaustReason::ExceededMaxRetries,
            message: format!(
                "Failed after {done} retries (maxRetryTimes {}). Last error: {what}",
                policy.max_retry_times
            ),
        };
    }
    if let Some(first) = live_records.first().and_then(|r| ts(&r.detect_failed_at)) {
        let elapsed = now.duration_since(first);
        let limit = SignedDuration::try_from(policy.retry_timeout).unwrap_or(SignedDuration::MAX);
        if elapsed > limit {
            return FailureDecision::Exhausted {
                reason: ExhaustReason::RetryTimeout,
                message: format!(
                    "Retry timeout: {} since the first failure exceeds retryTimeout {}. Last error: {what}",
                    format_go_duration(elapsed.unsigned_abs()),
                    format_go_duration(policy.retry_timeout)
                ),
            };
        }
    }
    let retry_num = u32::try_from(done).unwrap_or(u32::MAX).saturating_add(1);
    let delay = backoff(policy.min_retry_duration, retry_num);
    let record = BackoffRetryRecord {
        retry_num: i32::try_from(retry_num).unwrap_or(i32::MAX),
        detect_failed_at: Some(Time(now)),
        expected_retry_at: Some(Time(add_saturating(now, delay))),
        real_retry_at: None,
        retry_reason: Some(failure.retry_reason.clone()),
        original_reason: Some(failure.original_reason.clone()),
    };
    FailureDecision::Retry {
        message: format!(
            "Retrying log backup (attempt {retry_num}/{}) after {}: {what}",
            policy.max_retry_times,
            format_go_duration(delay)
        ),
        record,
        delay,
    }
}

/// The pending record (retry scheduled, not yet run), if the budget has one.
pub fn pending(live_records: &[BackoffRetryRecord]) -> Option<&BackoffRetryRecord> {
    live_records.last().filter(|r| r.real_retry_at.is_none())
}

/// How long until `record` is due (zero when due).
pub fn until_due(record: &BackoffRetryRecord, now: Timestamp) -> Duration {
    ts(&record.expected_retry_at)
        .map(|at| at.duration_since(now))
        .filter(|d| d.is_positive())
        .map(|d| d.unsigned_abs())
        .unwrap_or(Duration::ZERO)
}

/// `retryReason` for a failed Job, as the operator writes it.
pub fn retry_reason(job_name: &str) -> String {
    format!("Job {job_name} has failed")
}

/// The subcommand whose Job a record's `retryReason` names (`Job backup-<name>-<sub> has
/// failed`).
pub fn record_subcommand(record: &BackoffRetryRecord, backup_name: &str) -> Option<LogSubcommand> {
    let reason = record.retry_reason.as_deref()?;
    let job = reason.strip_prefix("Job ")?.strip_suffix(" has failed")?;
    job.strip_prefix(&format!("backup-{backup_name}-"))?
        .parse()
        .ok()
}

/// LBR-11: the records that form the current budget of `sub`. The budget belongs to one
/// run of one subcommand: records of another subcommand, or of a run of `sub` that has
/// completed since, are stale, and the next failure starts afresh.
pub fn live_records<'a>(
    records: &'a [BackoffRetryRecord],
    backup_name: &str,
    sub: LogSubcommand,
    sub_status: Option<&LogSubCommandStatus>,
) -> &'a [BackoffRetryRecord] {
    let Some(last) = records.last() else {
        return records;
    };
    if record_subcommand(last, backup_name) != Some(sub) {
        return &[];
    }
    let completed_at = sub_status.and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == BackupConditionType::Complete && c.status == "True")
            .and_then(|c| ts(&c.last_transition_time))
    });
    match (completed_at, ts(&last.detect_failed_at)) {
        (Some(done), Some(detected)) if done > detected => &[],
        _ => records,
    }
}

#[cfg(test)]
mod tests;
