//! Targets: how to run one controller under test, as data (`targets/<name>.yaml`).
//!
//! A target says which program to start and with which arguments and environment, what the
//! user must or may set (`--set bin=…`), which CRDs and per-suite objects it needs, how it
//! finds the kernel, which images its Jobs use, whether several instances can run at once,
//! and where its metrics are. `targets/reference.yaml` describes the reference controller;
//! it is also built in, so `--target reference` works without the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::judge::metrics::MetricNames;
use crate::suite::load::{SuiteError, SuiteErrors, parse_yaml};
use crate::suite::locate::{closest, locate};

/// Placeholders the runner fills for each suite.
pub const SUITE_PLACEHOLDERS: [&str; 5] = [
    "kubeconfig",
    "namespace",
    "kernel",
    "job_image",
    "metrics_addr",
];

/// Targets shipped inside the binary, by name.
const BUILTIN: [(&str, &str); 2] = [
    ("reference", include_str!("../../targets/reference.yaml")),
    (
        "reference-operator",
        include_str!("../../targets/reference-operator.yaml"),
    ),
];

/// A target file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// Its name in reports (`reference`, `tidb-operator`, …).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Values given with `--set KEY=VALUE`, used as `{KEY}`; one without a default must be set.
    #[serde(default)]
    pub settings: BTreeMap<String, Setting>,
    /// The program and its arguments. Besides the settings, `{kubeconfig}`, `{namespace}`,
    /// `{kernel}` (the suite's kernel, `http://host:port`), `{job_image}` and
    /// `{metrics_addr}` (a free port the runner chose) are filled for each suite. A program
    /// `builtin:lbc-controller` is the workspace's reference controller.
    pub command: Vec<String>,
    /// Environment variables for the program (same placeholders).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A directory of CRD manifests (YAML) to install instead of the harness's Backup CRD,
    /// e.g. an operator checkout's `manifests/crd/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crds: Option<String>,
    /// Objects created in each suite's namespace before the controller starts (e.g. the
    /// `TidbCluster` the Backups name); `{namespace}` is filled. A kind with no CRD
    /// installed gets a minimal one (any fields kept).
    #[serde(default)]
    pub objects: Vec<serde_json::Value>,
    /// How the controller finds the kernel.
    #[serde(default)]
    pub kernel: KernelAccess,
    /// Image → program for the node agent (`builtin:fake-br` or a path), added to the
    /// harness's own map (backup-manager's image → fake-br).
    #[serde(default)]
    pub image_map: BTreeMap<String, String>,
    /// Whether instances can run side by side (`false`: one suite at a time, e.g. a fixed
    /// port). An isolated target always can.
    #[serde(default = "yes")]
    pub parallel: bool,
    /// Run each instance in its own network and mount namespace (needs root), reaching the
    /// API server and the suite's kernel through the harness: fixed ports do not clash, and
    /// PD's service name resolves to the suite's kernel. Implied by `kernel: pdService`.
    #[serde(default)]
    pub isolate: bool,
    /// Where its Prometheus metrics are and which metric plays which LBR-15 role; without
    /// it, `metrics` assertions fail saying so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<TargetMetrics>,
    /// How it is installed: `process` (on this machine; the default) or `deployment` (from
    /// its image, in each suite's namespace, as users deploy it; `--install` overrides).
    #[serde(default)]
    pub install: Install,
    /// The Deployment form: its image and its ServiceAccount's rights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentDecl>,
}

/// Where the controller under test runs.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "camelCase")]
pub enum Install {
    /// A process on this machine, started and killed by the harness.
    #[default]
    Process,
    /// A Deployment of one replica in the suite's namespace, under its own ServiceAccount;
    /// crash and restart faults act on its Pod.
    Deployment,
}

/// A target's Deployment form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentDecl {
    /// An image the cluster's nodes hold; without it the harness makes one from the
    /// program (`lbc image build-target`) and loads it into a node it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The RBAC rules (`apiGroups`, `resources`, `verbs`) of the controller's Role in the
    /// suite's namespace: it acts with these rights only.
    #[serde(default)]
    pub rules: Vec<serde_json::Value>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Setting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Without a default the setting is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// How the controller reaches the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum KernelAccess {
    /// It is told (`{kernel}` in its command or environment).
    #[default]
    Endpoint,
    /// Only by PD's service name, `<cluster>-pd.<namespace>:2379`, as TiDB Operator does:
    /// the harness runs it where that name resolves to the suite's kernel.
    PdService,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetMetrics {
    /// `host:port` of `/metrics` (placeholders allowed, e.g. `{metrics_addr}`).
    pub addr: String,
    pub names: MetricNamesDecl,
}

/// The metric family of each LBR-15 role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricNamesDecl {
    pub job_failures: String,
    pub retries: String,
    pub kernel_recoveries: String,
}

/// A bad `--target` / `--set`.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    File(#[from] SuiteErrors),
    #[error("no target {0:?}: not a file, and not one of the built-in targets ({1})")]
    Unknown(String, String),
    #[error("target {target} ({file}) has no setting {key:?}{hint}; its settings: {known}")]
    UnknownSetting {
        target: String,
        file: String,
        key: String,
        hint: String,
        known: String,
    },
    #[error("target {target} ({file}) needs `--set {key}=…`{what}")]
    Missing {
        target: String,
        file: String,
        key: String,
        what: String,
    },
    #[error("--set {0:?}: expected KEY=VALUE")]
    SetSyntax(String),
    #[error("target {target}: {what}")]
    Program { target: String, what: String },
    #[error(
        "--target {0:?}: expected TARGET or INSTANCE=TARGET (an instance name of lowercase letters, digits and -)"
    )]
    InstanceSyntax(String),
}

/// `--target [INSTANCE=]TARGET`: the instance's name, if given, and the target. Naming
/// instances runs two builds of one target side by side (`old=tidb-operator`,
/// `new=tidb-operator`), each with its own `--set INSTANCE:KEY=…` and report directory.
///
/// # Errors
/// An `=` with no valid name before it, or nothing after it.
pub fn instance(spec: &str) -> Result<(Option<&str>, &str), TargetError> {
    let Some((name, target)) = spec.split_once('=') else {
        return Ok((None, spec));
    };
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid && !target.is_empty() {
        Ok((Some(name), target))
    } else {
        Err(TargetError::InstanceSyntax(spec.to_owned()))
    }
}

/// What a resolved target names on this machine that is not there: its program (a path),
/// its CRD directory, the programs of its image map. Built-ins (`builtin:…`) and programs
/// found on `PATH` by name are not checked here.
pub fn missing_paths(t: &Resolved) -> Vec<String> {
    let mut out = Vec::new();
    let program = |what: &str, p: &str, out: &mut Vec<String>| {
        if !p.starts_with("builtin:")
            && p.contains('/')
            && !crate::programs::process::is_executable(Path::new(p))
        {
            out.push(format!("{what} {p} is not an executable file"));
        }
    };
    program("the program", &t.program, &mut out);
    if let Some(d) = &t.crds
        && !d.is_dir()
    {
        out.push(format!("crds {} is not a directory", d.display()));
    }
    for (image, p) in &t.image_map {
        program(&format!("image {image}'s program"), p, &mut out);
    }
    out
}

/// A target read from `file` (a path, or `builtin:<name>`).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub target: Target,
    pub file: String,
}

/// Find a target by path or name: an existing file, else `targets/<name>.yaml` under
/// `root`, else a built-in one.
///
/// # Errors
/// Not found, or the file has problems (each located).
pub fn find(spec: &str, root: &Path) -> Result<Loaded, TargetError> {
    let candidates = [
        PathBuf::from(spec),
        root.join("targets").join(format!("{spec}.yaml")),
    ];
    for path in candidates {
        if path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                SuiteErrors(vec![SuiteError::whole_file(
                    &path,
                    format!("cannot read: {e}"),
                )])
            })?;
            return Ok(Loaded {
                target: load_str(&path, &text)?,
                file: path.display().to_string(),
            });
        }
    }
    match BUILTIN.iter().find(|(n, _)| *n == spec) {
        Some((name, text)) => {
            let file = format!("builtin:{name}");
            Ok(Loaded {
                target: load_str(Path::new(&file), text)?,
                file,
            })
        }
        None => Err(TargetError::Unknown(
            spec.to_owned(),
            BUILTIN
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// Parse and check a target file's text.
///
/// # Errors
/// Every problem, located in `path`.
pub fn load_str(path: &Path, text: &str) -> Result<Target, SuiteErrors> {
    let target: Target = parse_yaml(path, text)?;
    let mut problems = Vec::new();
    let problem = |field: String, key: &str, value: &str, message: String| {
        // List items have no key: find the value's line.
        let at = if key.is_empty() {
            text.lines().enumerate().find_map(|(i, l)| {
                l.find(value.lines().next().unwrap_or(value))
                    .filter(|_| !value.is_empty())
                    .map(|c| (i + 1, c + 1))
            })
        } else {
            locate(text, key, value)
        };
        SuiteError {
            file: path.to_owned(),
            line: at.map(|a| a.0),
            column: at.map(|a| a.1),
            field,
            message,
            hint: None,
        }
    };
    if target.command.is_empty() {
        problems.push(problem("command".into(), "command", "", "is empty".into()));
    }
    let known: Vec<&str> = SUITE_PLACEHOLDERS
        .iter()
        .copied()
        .chain(target.settings.keys().map(String::as_str))
        .collect();
    let mut templates: Vec<(String, &str, &str)> = Vec::new();
    for (i, c) in target.command.iter().enumerate() {
        templates.push((format!("command[{i}]"), "", c));
    }
    for (k, v) in &target.env {
        templates.push((format!("env.{k}"), k, v));
    }
    if let Some(c) = &target.crds {
        templates.push(("crds".into(), "crds", c));
    }
    for (k, v) in &target.image_map {
        templates.push((format!("imageMap.{k}"), k, v));
    }
    if let Some(m) = &target.metrics {
        templates.push(("metrics.addr".into(), "addr", &m.addr));
    }
    let object_texts: Vec<(String, String)> = target
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| (format!("objects[{i}]"), o.to_string()))
        .collect();
    for (field, t) in &object_texts {
        templates.push((field.clone(), "", t));
    }
    for (field, key, value) in templates {
        for name in placeholders(value) {
            if !known.contains(&name) {
                let hint = closest(name, &known)
                    .map_or(String::new(), |h| format!(" (did you mean `{{{h}}}`?)"));
                problems.push(problem(
                    field.clone(),
                    key,
                    value,
                    format!(
                        "unknown placeholder `{{{name}}}`{hint}; known: {}",
                        known
                            .iter()
                            .map(|k| format!("{{{k}}}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                ));
            }
        }
    }
    for (field, key, value, message) in deployment_problems(&target) {
        problems.push(problem(field, key, &value, message));
    }
    for (i, o) in target.objects.iter().enumerate() {
        if o.get("apiVersion").and_then(|v| v.as_str()).is_none()
            || o.get("kind").and_then(|v| v.as_str()).is_none()
            || o.pointer("/metadata/name")
                .and_then(|v| v.as_str())
                .is_none()
        {
            problems.push(problem(
                format!("objects[{i}]"),
                "objects",
                "",
                "needs apiVersion, kind and metadata.name".into(),
            ));
        }
    }
    if problems.is_empty() {
        Ok(target)
    } else {
        Err(SuiteErrors(problems))
    }
}

/// What is wrong with the target's `install` and `deployment`: (field, key, value,
/// message) each.
fn deployment_problems(target: &Target) -> Vec<(String, &'static str, String, String)> {
    let mut out = Vec::new();
    if let Some(d) = &target.deployment {
        // Filled once, not per suite: settings only.
        for name in d.image.as_deref().map(placeholders).unwrap_or_default() {
            if !target.settings.contains_key(name) {
                out.push((
                    "deployment.image".into(),
                    "image",
                    d.image.clone().unwrap_or_default(),
                    format!("unknown placeholder `{{{name}}}`: an image may use the target's settings only"),
                ));
            }
        }
        for (i, r) in d.rules.iter().enumerate() {
            if let Err(e) =
                serde_json::from_value::<k8s_openapi::api::rbac::v1::PolicyRule>(r.clone())
            {
                out.push((
                    format!("deployment.rules[{i}]"),
                    "rules",
                    String::new(),
                    e.to_string(),
                ));
            }
        }
    }
    if target.install == Install::Deployment && target.deployment.is_none() {
        out.push((
            "install".into(),
            "install",
            "deployment".into(),
            "is `deployment` but the target has no `deployment:` (its rules at least)".into(),
        ));
    }
    out
}

/// The `{name}` placeholders in `text`.
fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push(name);
        }
        rest = &after[close + 1..];
    }
    out
}

/// Replace `{key}` by value for each pair.
pub fn fill(text: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(text.to_owned(), |t, (k, v)| {
        t.replace(&format!("{{{k}}}"), v)
    })
}

/// Parse `--set KEY=VALUE` arguments.
///
/// # Errors
/// An argument without `=` or with an empty key.
pub fn parse_sets(sets: &[String]) -> Result<Vec<(String, String)>, TargetError> {
    sets.iter()
        .map(|s| {
            s.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| TargetError::SetSyntax(s.clone()))
        })
        .collect()
}

/// A target with its settings filled: everything but the per-suite placeholders.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    /// What the run calls it: the instance name (`--target NAME=…`), else the target's name.
    pub label: String,
    pub file: String,
    /// `command[0]` with settings filled (maybe `builtin:…`).
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub crds: Option<PathBuf>,
    pub objects: Vec<serde_json::Value>,
    pub kernel: KernelAccess,
    pub image_map: Vec<(String, String)>,
    pub parallel: bool,
    pub isolate: bool,
    pub metrics_addr: Option<String>,
    pub metric_names: Option<MetricNames>,
    pub install: Install,
    /// The Deployment form, its image filled.
    pub deployment: Option<DeploymentDecl>,
}

/// Fill `loaded`'s settings from `sets` (and defaults).
///
/// # Errors
/// A `--set` the target does not have, or a required setting not given.
pub fn resolve(loaded: &Loaded, sets: &[(String, String)]) -> Result<Resolved, TargetError> {
    let t = &loaded.target;
    let known: Vec<&str> = t.settings.keys().map(String::as_str).collect();
    for (k, _) in sets {
        if !t.settings.contains_key(k) {
            return Err(TargetError::UnknownSetting {
                target: t.name.clone(),
                file: loaded.file.clone(),
                key: k.clone(),
                hint: closest(k, &known)
                    .map_or(String::new(), |h| format!(" (did you mean {h:?}?)")),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            });
        }
    }
    let mut values: Vec<(String, String)> = Vec::new();
    for (k, s) in &t.settings {
        let given = sets
            .iter()
            .rev()
            .find(|(sk, _)| sk == k)
            .map(|(_, v)| v.clone());
        match given.or_else(|| s.default.clone()) {
            Some(v) => values.push((k.clone(), v)),
            None => {
                return Err(TargetError::Missing {
                    target: t.name.clone(),
                    file: loaded.file.clone(),
                    key: k.clone(),
                    what: s
                        .description
                        .as_ref()
                        .map_or(String::new(), |d| format!(" ({d})")),
                });
            }
        }
    }
    let pairs: Vec<(&str, &str)> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let f = |s: &str| fill(s, &pairs);
    let mut words = t.command.iter().map(|c| f(c));
    let program = words.next().unwrap_or_default();
    let object_fill = |o: &serde_json::Value| -> serde_json::Value {
        serde_json::from_str(&f(&o.to_string())).unwrap_or_else(|_| o.clone())
    };
    Ok(Resolved {
        name: t.name.clone(),
        label: t.name.clone(),
        file: loaded.file.clone(),
        program,
        args: words.collect(),
        env: t.env.iter().map(|(k, v)| (k.clone(), f(v))).collect(),
        crds: t.crds.as_ref().map(|c| PathBuf::from(f(c))),
        objects: t.objects.iter().map(object_fill).collect(),
        kernel: t.kernel,
        image_map: t.image_map.iter().map(|(k, v)| (k.clone(), f(v))).collect(),
        parallel: t.parallel || t.isolate || t.kernel == KernelAccess::PdService,
        isolate: t.isolate || t.kernel == KernelAccess::PdService,
        metrics_addr: t.metrics.as_ref().map(|m| f(&m.addr)),
        metric_names: t.metrics.as_ref().map(|m| MetricNames {
            job_failures: m.names.job_failures.clone(),
            retries: m.names.retries.clone(),
            kernel_recoveries: m.names.kernel_recoveries.clone(),
        }),
        install: t.install,
        deployment: t.deployment.as_ref().map(|d| DeploymentDecl {
            image: d.image.as_deref().map(f),
            rules: d.rules.clone(),
        }),
    })
}

/// The JSON Schema of target files.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Target)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
