//! The per-attempt plan that tells fake-br how to behave.
//!
//! It lives in a ConfigMap `fake-br-plan-<backup>` in the Backup's namespace (so it works in
//! any cluster): each data key is a subcommand (`log-start`, …, or `snapshot`) whose value is
//! a YAML list of steps. Each run of fake-br pops the first step of its key atomically
//! (an update guarded by resourceVersion), so attempt 1, 2, 3 can behave differently even
//! across controller restarts. An empty or missing list means: behave like the real thing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Name of the plan ConfigMap for a Backup.
pub fn plan_configmap(backup: &str) -> String {
    format!("fake-br-plan-{backup}")
}

/// ConfigMap in a suite's namespace naming the suite's own kernel; fake-br reads it before
/// its environment, so concurrent suites each use their own kernel.
pub const KERNEL_CONFIGMAP: &str = "fake-br-kernel";
/// Its data key: the kernel endpoints, comma separated.
pub const KERNEL_CONFIGMAP_KEY: &str = "endpoints";

/// What one run does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Prepare, Running, the kernel effect, Complete, exit 0.
    #[default]
    Succeed,
    /// Exit non-zero (optionally writing `Failed` first).
    Fail,
    /// Never exit (until killed).
    Hang,
    /// SIGKILL itself.
    Sigkill,
}

/// Whether the run changes the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KernelEffect {
    Perform,
    Skip,
}

/// One attempt's behaviour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    #[serde(default)]
    pub action: Action,
    /// Exit code for `fail` (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Go duration to wait before the action takes effect (after `Running` unless
    /// `beforeRunning`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// Act before writing `Running` (only `Prepare` is written).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub before_running: bool,
    /// For `fail`: write condition `Failed` with this reason before exiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_failed: Option<String>,
    /// Default: `perform` for `succeed`, `skip` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelEffect>,
}

impl Step {
    /// Whether this run changes the kernel.
    pub fn performs_kernel_effect(&self) -> bool {
        match self.kernel {
            Some(k) => k == KernelEffect::Perform,
            None => self.action == Action::Succeed,
        }
    }
}

/// A bad plan value.
#[derive(Debug, thiserror::Error)]
#[error("plan key {key:?} of ConfigMap {configmap}: {source}")]
pub struct PlanError {
    pub configmap: String,
    pub key: String,
    #[source]
    pub source: serde_yaml::Error,
}

/// Pop the first step of a plan list; returns it and the remaining list as YAML.
///
/// # Errors
/// The value is not a YAML list of steps.
pub fn pop_step(
    configmap: &str,
    key: &str,
    yaml: &str,
) -> Result<(Option<Step>, String), PlanError> {
    let mut steps: Vec<Step> = if yaml.trim().is_empty() {
        Vec::new()
    } else {
        serde_yaml::from_str(yaml).map_err(|source| PlanError {
            configmap: configmap.into(),
            key: key.into(),
            source,
        })?
    };
    if steps.is_empty() {
        return Ok((None, yaml.to_owned()));
    }
    let first = steps.remove(0);
    let rest = if steps.is_empty() {
        "[]\n".to_owned()
    } else {
        serde_yaml::to_string(&steps).unwrap_or_default()
    };
    Ok((Some(first), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_order() {
        let yaml = "- action: fail\n  exitCode: 3\n- action: succeed\n";
        let (first, rest) = pop_step("cm", "log-start", yaml).unwrap();
        assert_eq!(first.unwrap().exit_code, Some(3));
        let (second, rest) = pop_step("cm", "log-start", &rest).unwrap();
        assert_eq!(second.unwrap().action, Action::Succeed);
        let (none, _) = pop_step("cm", "log-start", &rest).unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn kernel_effect_defaults() {
        assert!(Step::default().performs_kernel_effect());
        let fail = Step {
            action: Action::Fail,
            ..Step::default()
        };
        assert!(!fail.performs_kernel_effect());
        let fail_after_start = Step {
            kernel: Some(KernelEffect::Perform),
            ..fail
        };
        assert!(fail_after_start.performs_kernel_effect());
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = pop_step(
            "fake-br-plan-lb1",
            "log-start",
            "- action: fail\n  exitcode: 2\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("fake-br-plan-lb1"), "{err}");
        assert!(err.contains("exitcode"), "{err}");
    }
}
