//! The steps that act: create, delete, patch, plan, expireJob, kernel, controller, wait, snapshot —
//! each type with its checks beside it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use lbc_api::plan::Step as PlanStep;

use super::*;
use crate::suite::duration::GoDuration;

/// `create: {backup: NAME}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateStep {
    pub backup: String,
}

/// `delete: {backup: NAME}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteStep {
    pub backup: String,
}

/// `expireJob: {backup, subcommand}`: shorten the running Job's `activeDeadlineSeconds` so
/// the Job controller fails it with `DeadlineExceeded` (a Job that ran out of time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct ExpireJobStep(pub JobRef);

impl Checks for ExpireJobStep {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        self.0.checks(field, out);
    }
}

/// `podFailurePolicy: {failJobOnExitCodes: [42]}`: from now on the API server adds a Pod
/// failure policy to each Job of the suite, so the Job controller fails a Job whose
/// container exits with one of the codes through it (reason `PodFailurePolicy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodFailurePolicyStep {
    pub fail_job_on_exit_codes: Vec<i32>,
}

impl Checks for PodFailurePolicyStep {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        let bad: Vec<String> = self
            .fail_job_on_exit_codes
            .iter()
            .filter(|c| !(1..=255).contains(*c))
            .map(i32::to_string)
            .collect();
        if self.fail_job_on_exit_codes.is_empty() || !bad.is_empty() {
            out.push(Check::Broken {
                field: format!("{field}.failJobOnExitCodes"),
                key: "failJobOnExitCodes",
                value: bad.join(", "),
                message: "give one or more exit codes, each 1..255".into(),
                choices: &[],
            });
        }
    }
}

/// `unstartableJobs: {}`: from now on the API server gives the suite's Jobs an image whose
/// entrypoint is missing, so their containers fail to start (`StartError`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnstartableJobsStep {}

impl Checks for UnstartableJobsStep {
    fn checks<'a>(&'a self, _: &str, _: &mut Vec<Check<'a>>) {}
}

/// `wait: 2s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct WaitStep(pub GoDuration);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchStep {
    pub backup: String,
    /// Merged into `spec`.
    pub spec: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanStepDecl {
    pub backup: String,
    pub subcommand: String,
    pub steps: Vec<PlanStep>,
}

/// What to do to the kernel task of `task` (a Backup name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KernelStep {
    pub task: String,
    /// `running` (put info and checkpoint, clear pause), `absent` (delete the task keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<KernelTaskState>,
    /// Pause the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseDecl>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KernelTaskState {
    Running,
    Absent,
}

/// A pause as TiKV/BR write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PauseDecl {
    /// `v1` (empty value; reason under last-error), `error` or `manual` (PauseV2).
    pub kind: PauseKindDecl,
    /// Text payload (v2) or last-error text (v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// An error payload (`brpb.StreamBackupError`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorPayloadDecl>,
    /// Write `text`'s bytes under this MIME type instead (v2): a payload of a type the
    /// controller does not know, as a newer TiKV could write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PauseKindDecl {
    V1,
    Error,
    Manual,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorPayloadDecl {
    pub store_id: u64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControllerStep {
    pub action: ControllerAction,
    /// Act only once this holds (checked against the live trace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Predicate>,
    /// How long to wait for `when` (Go duration; default: what is left of the suite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ControllerAction {
    Stop,
    Start,
    /// SIGKILL, then start.
    Restart,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotStep {
    /// Round relative times to this granularity (Go duration, default `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granularity: Option<GoDuration>,
}

impl Checks for PatchStep {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        out.push(backup(format!("{field}.backup"), &self.backup));
        if !self.spec.is_object() {
            out.push(Check::Broken {
                field: format!("{field}.spec"),
                key: "spec",
                value: String::new(),
                message: "must be a mapping merged into spec".into(),
                choices: &[],
            });
        }
    }
}

impl Checks for PlanStepDecl {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        out.push(backup(format!("{field}.backup"), &self.backup));
        out.push(Check::Subcommand {
            field: format!("{field}.subcommand"),
            value: &self.subcommand,
            snapshot: true,
        });
    }
}

impl Checks for KernelStep {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        out.push(backup(format!("{field}.task"), &self.task));
        if self.state.is_some() == self.pause.is_some() {
            out.push(Check::Broken {
                field: field.to_owned(),
                key: "kernel",
                value: String::new(),
                message: "give exactly one of `state` or `pause`".into(),
                choices: &[],
            });
        }
        if let Some(p) = &self.pause
            && p.payload_type.is_some()
            && (p.kind == PauseKindDecl::V1 || p.text.is_none() || p.error.is_some())
        {
            out.push(Check::Broken {
                field: format!("{field}.pause.payloadType"),
                key: "payloadType",
                value: p.payload_type.clone().unwrap_or_default(),
                message: "a payloadType carries `text` in a v2 pause (kind error or manual), without `error`".into(),
                choices: &[],
            });
        }
    }
}

impl Checks for ControllerStep {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        if let Some(w) = &self.when {
            out.push(Check::Predicate {
                field: format!("{field}.when"),
                that: w,
            });
        }
        out.extend(duration(
            format!("{field}.timeout"),
            "timeout",
            &self.timeout,
        ));
    }
}

impl Checks for WaitStep {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        out.push(Check::Duration {
            field: field.to_owned(),
            key: "wait",
            value: &self.0,
        });
    }
}

impl Checks for SnapshotStep {
    fn checks<'a>(&'a self, field: &str, out: &mut Vec<Check<'a>>) {
        out.extend(duration(
            format!("{field}.granularity"),
            "granularity",
            &self.granularity,
        ));
    }
}
