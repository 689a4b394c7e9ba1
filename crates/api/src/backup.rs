//! Backup spec and status types (see CONTRACT.md, Vocabulary).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `metav1.Time`'s schema, exactly as k8s-openapi's `schemars` feature gives it. That feature
/// compiles a schema for every one of the API's types (a third of k8s-openapi's build, on the
/// first run's critical path); the CRD needs this one.
pub struct TimeSchema;

impl JsonSchema for TimeSchema {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON.  Wrappers are provided for many of the factory methods that the time package offers.",
            "type": "string",
            "format": "date-time",
        })
    }
}

/// CRD default for `spec.backoffRetryPolicy.minRetryDuration`.
pub const DEFAULT_MIN_RETRY_DURATION: &str = "300s";
/// CRD default for `spec.backoffRetryPolicy.maxRetryTimes`.
pub const DEFAULT_MAX_RETRY_TIMES: i32 = 2;
/// CRD default for `spec.backoffRetryPolicy.retryTimeout`.
pub const DEFAULT_RETRY_TIMEOUT: &str = "30m";

/// The desired backup. Only the fields the log backup retry contract touches are typed;
/// the real CRD has many more, and a foreign controller may write them.
// Several `printcolumn(type_ = ...)` read as duplicates to clippy; they are distinct columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "pingcap.com",
    version = "v1alpha1",
    kind = "Backup",
    plural = "backups",
    shortname = "bk",
    namespaced,
    status = "BackupStatus",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.backupMode"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "CommitTS", type_ = "string", json_path = ".status.commitTs"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// `snapshot` (default), `log` or `volume-snapshot`.
    #[serde(default)]
    #[schemars(extend("default" = "snapshot"))]
    pub backup_mode: BackupMode,
    /// The user's log subcommand; `log-resume` and `log-truncate` are derived, never set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_subcommand: Option<LogSubcommand>,
    /// Legacy switch, superseded by `logSubcommand`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_stop: Option<bool>,
    /// Truncate log data before this TSO / time (derives `log-truncate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_truncate_until: Option<String>,
    /// Start TS for `log start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_ts: Option<String>,
    /// The TiDB cluster whose PD is the kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub br: Option<BrConfig>,
    /// S3-compatible storage (minimal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3StorageProvider>,
    /// Retry policy for failed backup Jobs.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub backoff_retry_policy: BackoffRetryPolicy,
    /// BR tool image for the init container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_image: Option<String>,
}

/// `spec.backupMode`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BackupMode {
    #[default]
    Snapshot,
    Log,
    VolumeSnapshot,
}

/// The log subcommands. The CRD enum admits only start, stop and pause; resume and
/// truncate exist in status keys and job names.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum LogSubcommand {
    #[serde(rename = "log-start")]
    Start,
    #[serde(rename = "log-stop")]
    Stop,
    #[serde(rename = "log-pause")]
    Pause,
    #[serde(rename = "log-resume")]
    #[schemars(skip)]
    Resume,
    #[serde(rename = "log-truncate")]
    #[schemars(skip)]
    Truncate,
}

impl LogSubcommand {
    /// The operator's spelling, e.g. `log-start`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "log-start",
            Self::Stop => "log-stop",
            Self::Pause => "log-pause",
            Self::Resume => "log-resume",
            Self::Truncate => "log-truncate",
        }
    }
}

impl std::fmt::Display for LogSubcommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LogSubcommand {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Start,
            Self::Stop,
            Self::Pause,
            Self::Resume,
            Self::Truncate,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
        .ok_or_else(|| format!("unknown log subcommand {s:?}"))
    }
}

/// `spec.br`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrConfig {
    /// The TidbCluster name.
    pub cluster: String,
    /// The TidbCluster namespace (default: the Backup's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// `spec.s3`, the fields a log backup Job needs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3StorageProvider {
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// `spec.backoffRetryPolicy`. Fields are optional so that an explicit `maxRetryTimes: 0`
/// serializes as `0` (the Go operator's `omitempty` loses it); the CRD fills the defaults.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackoffRetryPolicy {
    /// Go duration string, e.g. `300s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "300s"))]
    pub min_retry_duration: Option<String>,
    /// At most this many retries; 0 disables retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 2))]
    pub max_retry_times: Option<i32>,
    /// Go duration string, e.g. `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "30m"))]
    pub retry_timeout: Option<String>,
}

impl BackoffRetryPolicy {
    /// `minRetryDuration` as written, or the CRD default.
    pub fn min_retry_duration_or_default(&self) -> &str {
        self.min_retry_duration
            .as_deref()
            .unwrap_or(DEFAULT_MIN_RETRY_DURATION)
    }
    /// `maxRetryTimes` as written, or the CRD default.
    pub fn max_retry_times_or_default(&self) -> i32 {
        self.max_retry_times.unwrap_or(DEFAULT_MAX_RETRY_TIMES)
    }
    /// `retryTimeout` as written, or the CRD default.
    pub fn retry_timeout_or_default(&self) -> &str {
        self.retry_timeout
            .as_deref()
            .unwrap_or(DEFAULT_RETRY_TIMEOUT)
    }
}

/// `status.phase` and condition types (`BackupConditionType` in the operator).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum BackupConditionType {
    Scheduled,
    Prepare,
    Running,
    Complete,
    Failed,
    Invalid,
    Paused,
    Stopped,
    Restart,
    /// The operator's `BackupRetryTheFailed`.
    RetryFailed,
    Clean,
    CleanFailed,
    Repeatable,
}

/// One condition, in the whole status or a subcommand status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupCondition {
    #[serde(rename = "type")]
    pub type_: BackupConditionType,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<TimeSchema>")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The subcommand this condition was written for (cleared in the whole status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// `status.logSubCommandStatuses.<subcommand>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogSubCommandStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupConditionType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<BackupCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<TimeSchema>")]
    pub time_started: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<TimeSchema>")]
    pub time_completed: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_truncating_until: Option<String>,
}

/// One persisted retry attempt (`BackoffRetryRecord` in the operator).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackoffRetryRecord {
    /// 1 for the first retry, then +1.
    pub retry_num: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<TimeSchema>")]
    pub detect_failed_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<TimeSchema>")]
    pub expected_retry_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<TimeSchema>")]
    pub real_retry_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_reason: Option<String>,
}

/// The observed state; written by full-object update (the CRD has no status subresource).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupConditionType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<BackupCondition>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub log_sub_command_statuses: BTreeMap<String, LogSubCommandStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_ts: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<TimeSchema>")]
    pub time_synced: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<TimeSchema>")]
    pub time_started: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<TimeSchema>")]
    pub time_completed: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_checkpoint_ts: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_success_truncate_until: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backoff_retry_status: Vec<BackoffRetryRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_zero_max_retry_times_round_trips() {
        let yaml = r#"
apiVersion: pingcap.com/v1alpha1
kind: Backup
metadata: {name: lb1, namespace: ns}
spec:
  backupMode: log
  logSubcommand: log-start
  br: {cluster: basic}
  backoffRetryPolicy: {maxRetryTimes: 0}
"#;
        let b: Backup = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(b.spec.backoff_retry_policy.max_retry_times, Some(0));
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["spec"]["backoffRetryPolicy"]["maxRetryTimes"], 0);
        assert!(
            v["spec"]["backoffRetryPolicy"]
                .get("minRetryDuration")
                .is_none()
        );
    }

    #[test]
    fn absent_policy_reads_crd_defaults() {
        let p = BackoffRetryPolicy::default();
        assert_eq!(p.min_retry_duration_or_default(), "300s");
        assert_eq!(p.max_retry_times_or_default(), 2);
        assert_eq!(p.retry_timeout_or_default(), "30m");
    }

    #[test]
    fn status_uses_operator_field_names() {
        let yaml = r#"
phase: RetryFailed
logSubCommandStatuses:
  log-start: {command: log-start, phase: Running}
backoffRetryStatus:
- retryNum: 1
  detectFailedAt: "2026-01-01T00:00:00Z"
  expectedRetryAt: "2026-01-01T00:05:00Z"
  retryReason: Job backup-lb1-log-start has failed
  originalReason: BackoffLimitExceeded
"#;
        let s: BackupStatus = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(s.phase, Some(BackupConditionType::RetryFailed));
        assert_eq!(s.backoff_retry_status[0].retry_num, 1);
        assert!(s.backoff_retry_status[0].real_retry_at.is_none());
        assert_eq!(
            s.log_sub_command_statuses["log-start"].phase,
            Some(BackupConditionType::Running)
        );
    }

    #[test]
    fn subcommand_spellings_round_trip() {
        for c in [
            "log-start",
            "log-stop",
            "log-pause",
            "log-resume",
            "log-truncate",
        ] {
            let parsed: LogSubcommand = c.parse().unwrap();
            assert_eq!(parsed.as_str(), c);
            assert_eq!(serde_json::to_value(parsed).unwrap(), c);
        }
        assert!("log-unknown".parse::<LogSubcommand>().is_err());
    }
}
