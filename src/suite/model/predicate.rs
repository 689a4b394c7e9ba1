//! The predicates `eventually` / `alwaysUntil` / `when` wait on, and the references they use.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;

/// A condition over one Backup's recorded state. Exactly one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Predicate {
    /// Record `n` exists (`realRetryAt` may or may not be set).
    RecordExists(RecordRef),
    /// Record `n` exists and its retry has not run.
    RecordPending(RecordRef),
    /// Record `n`'s retry has run.
    RecordRetried(RecordRef),
    /// `status.phase` equals.
    Phase(PhaseRef),
    /// `logSubCommandStatuses.<subcommand>.phase` equals.
    SubPhase(SubPhaseRef),
    /// A condition of the whole status (or a subcommand's) has this type (and reason).
    Condition(ConditionRef),
    /// The Job of a subcommand has failed.
    JobFailed(JobRef),
    /// A Job of the subcommand exists (whatever its state).
    JobExists(JobRef),
    /// The Job of a subcommand has completed (condition `Complete=True`).
    JobComplete(JobRef),
    /// The Backup no longer exists.
    Deleted(BackupRef),
    AllOf(Vec<Predicate>),
    AnyOf(Vec<Predicate>),
    Not(Box<Predicate>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordRef {
    pub backup: String,
    pub n: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhaseRef {
    pub backup: String,
    pub phase: lbc_api::BackupConditionType,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubPhaseRef {
    pub backup: String,
    pub subcommand: String,
    pub phase: lbc_api::BackupConditionType,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionRef {
    pub backup: String,
    #[serde(rename = "type")]
    pub type_: lbc_api::BackupConditionType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Look in this subcommand's status instead of the whole status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subcommand: Option<String>,
    /// Text the condition's message must contain, e.g. the field a contract clause says it
    /// names (`minRetryDuration`); any other wording is the controller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_contains: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobRef {
    pub backup: String,
    pub subcommand: String,
}

impl Checks for JobRef {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        out.push(backup(format!("{field}.backup"), &self.backup));
        out.push(Check::Subcommand {
            field: format!("{field}.subcommand"),
            value: &self.subcommand,
            snapshot: true,
        });
    }
}
