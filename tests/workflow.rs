//! `ci/github/conformance.yml`, the workflow users copy into an operator repository: its
//! shape is checked against a model of GitHub Actions' workflow syntax (unknown keys
//! refused), and — with the `e2e` feature — its `lbc-*` steps' scripts run here as written,
//! the reference controller standing in for the operator.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

#[cfg(feature = "e2e")]
#[allow(dead_code)] // this binary uses only `require`
mod common;

const WORKFLOW: &str = "ci/github/conformance.yml";

/// The parts of GitHub Actions' workflow syntax the file may use; anything else is a typo.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Workflow {
    name: String,
    on: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    permissions: BTreeMap<String, String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    jobs: BTreeMap<String, Job>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Job {
    runs_on: String,
    timeout_minutes: u32,
    #[serde(default)]
    env: BTreeMap<String, String>,
    steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Step {
    id: Option<String>,
    name: Option<String>,
    uses: Option<String>,
    with: Option<BTreeMap<String, serde_yaml::Value>>,
    run: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    working_directory: Option<String>,
    #[serde(rename = "if")]
    condition: Option<String>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn workflow() -> Workflow {
    let text = std::fs::read_to_string(root().join(WORKFLOW)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{WORKFLOW}: {e}"))
}

/// The `${{ … }}` expressions of a text.
fn expressions(text: &str) -> Vec<&str> {
    text.split("${{")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}").map(|(e, _)| e.trim()))
        .collect()
}

#[test]
fn the_workflow_has_the_shape_github_accepts() {
    let w = workflow();
    assert!(!w.name.is_empty());
    assert!(w.on.contains_key("pull_request") && w.on.contains_key("workflow_dispatch"));
    assert_eq!(
        w.permissions.get("contents").map(String::as_str),
        Some("read")
    );
    assert!(w.env.contains_key("LBC_REPOSITORY"));
    let job = &w.jobs["conformance"];
    assert!(job.runs_on.starts_with("ubuntu-"));
    assert!(job.timeout_minutes <= 90);
    let mut ids = Vec::new();
    for (i, s) in job.steps.iter().enumerate() {
        let at = format!("steps[{i}] ({:?})", s.name.as_deref().or(s.id.as_deref()));
        // Exactly one of `uses` and `run`; `with` only for an action.
        assert!(s.uses.is_some() != s.run.is_some(), "{at}: one of uses/run");
        assert!(
            s.with.is_none() || s.uses.is_some(),
            "{at}: with without uses"
        );
        if let Some(u) = &s.uses {
            // Actions pinned to a major version at least.
            let (_, version) = u.split_once('@').unwrap_or_else(|| panic!("{at}: {u}"));
            assert!(version.starts_with('v') || version == "stable", "{at}: {u}");
        }
        if let Some(id) = &s.id {
            assert!(!ids.contains(id), "{at}: duplicate id {id}");
            ids.push(id.clone());
        }
        if let Some(dir) = &s.working_directory {
            assert!(
                ["operator", "conformance"].contains(&dir.as_str()),
                "{at}: {dir}"
            );
        }
        let _ = (&s.env, &s.condition);
    }
    // Every expression reads a context the workflow has.
    let text = std::fs::read_to_string(root().join(WORKFLOW)).unwrap();
    for e in expressions(&text) {
        assert!(
            ["env.", "github.", "runner.", "steps.", "hashFiles("]
                .iter()
                .any(|c| e.starts_with(c)),
            "unknown context in ${{{{ {e} }}}}"
        );
    }
    // The lbc commands are all in the steps the tests run.
    for s in &job.steps {
        let runs_lbc = s
            .run
            .as_deref()
            .is_some_and(|r| r.lines().any(|l| l.contains("lbc ")));
        let tested = s.id.as_deref().is_some_and(|id| id.starts_with("lbc-"));
        assert_eq!(
            runs_lbc, tested,
            "{:?}: lbc commands only in lbc-* steps",
            s.name
        );
    }
    for id in ["lbc-control-plane", "lbc-doctor", "lbc-run", "lbc-compare"] {
        assert!(ids.iter().any(|i| i == id), "no step {id}");
    }
}

#[test]
fn the_model_refuses_what_github_would() {
    let bad = [
        (
            "name: x\non: {push: {}}\njobs: {j: {runs-on: u, timeout-minutes: 1, stpes: []}}",
            "stpes",
        ),
        (
            "name: x\non: {push: {}}\njobs: {j: {runs-on: u, timeout-minutes: 1, steps: [{runn: ls}]}}",
            "runn",
        ),
        ("name: x\njobs: {}", "on"),
    ];
    for (yaml, word) in bad {
        let e = serde_yaml::from_str::<Workflow>(yaml)
            .unwrap_err()
            .to_string();
        assert!(e.contains(word), "{e}");
    }
}

/// The `lbc-*` steps run here as the workflow writes them: the reference controller as the
/// target, two short suites, `lbc` and `sudo` on PATH as shims.
#[cfg(feature = "e2e")]
mod runs {
    use super::*;
    use crate::common;
    use std::process::{Command, Output};

    struct Runner {
        scratch: tempfile::TempDir,
        env: BTreeMap<String, String>,
        steps: BTreeMap<String, String>,
    }

    impl Runner {
        fn new() -> Self {
            common::require(&[common::Need::ControlPlane, common::Need::Resources]);
            let w = workflow();
            let job = w.jobs.into_values().next().unwrap();
            let scratch = tempfile::tempdir().unwrap();
            let bin = scratch.path().join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_lbc"), bin.join("lbc")).unwrap();
            // sudo: run the command as we are (the tests run as root where they need it).
            let sudo = bin.join("sudo");
            std::fs::write(
                &sudo,
                "#!/bin/sh\nwhile [ \"${1#-}\" != \"$1\" ]; do shift; done\nexec \"$@\"\n",
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&sudo, std::fs::Permissions::from_mode(0o755)).unwrap();
            let s = |p: &Path| p.display().to_string();
            let mut env = job.env.clone();
            env.insert("LBC_TARGET".into(), "reference".into());
            env.insert("LBC_SETS".into(), String::new());
            env.insert(
                "LBC_SUITES".into(),
                "suites/instant-jobs.yaml suites/policy-defaults.yaml".into(),
            );
            env.insert("LBC_REPORT_DIR".into(), s(&scratch.path().join("report")));
            env.insert(
                "LBC_BASELINE".into(),
                s(&scratch.path().join("baseline/report.json")),
            );
            env.insert("GITHUB_OUTPUT".into(), s(&scratch.path().join("output")));
            env.insert(
                "PATH".into(),
                format!("{}:{}", s(&bin), std::env::var("PATH").unwrap_or_default()),
            );
            // The harness's own cache, not the workflow's.
            env.remove("LBC_CACHE_DIR");
            let steps = job
                .steps
                .into_iter()
                .filter_map(|st| Some((st.id?, st.run?)))
                .collect();
            Self {
                scratch,
                env,
                steps,
            }
        }

        fn step(&self, id: &str) -> Output {
            Command::new("bash")
                .args(["-eo", "pipefail", "-c", &self.steps[id]])
                .current_dir(root())
                .envs(&self.env)
                .output()
                .unwrap()
        }
    }

    fn text(o: &Output) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    #[test]
    fn the_workflows_lbc_steps_run_and_gate() {
        let mut r = Runner::new();
        let control_plane = r.step("lbc-control-plane");
        assert!(control_plane.status.success(), "{}", text(&control_plane));
        assert!(
            text(&control_plane).contains("kube-controller-manager:"),
            "{}",
            text(&control_plane)
        );
        let doctor = r.step("lbc-doctor");
        assert!(doctor.status.success(), "{}", text(&doctor));
        assert!(text(&doctor).contains("control plane"), "{}", text(&doctor));

        let run = r.step("lbc-run");
        assert!(run.status.success(), "{}", text(&run));
        assert!(text(&run).contains("2 passed, 0 failed"), "{}", text(&run));
        let output = std::fs::read_to_string(r.scratch.path().join("output")).unwrap();
        assert_eq!(output.trim(), "status=0");
        let report = r.scratch.path().join("report");
        for f in ["report.json", "junit.xml", "index.html"] {
            assert!(report.join(f).is_file(), "{f} missing");
        }

        // No baseline yet: the gate says so, and the run's own status decides.
        r.env.insert("RUN_STATUS".into(), "0".into());
        let first = r.step("lbc-compare");
        assert!(first.status.success(), "{}", text(&first));
        assert!(text(&first).contains("no baseline"), "{}", text(&first));
        r.env.insert("RUN_STATUS".into(), "1".into());
        let failed = r.step("lbc-compare");
        assert!(
            !failed.status.success(),
            "a failed run passed the gate: {}",
            text(&failed)
        );
        r.env.insert("RUN_STATUS".into(), "0".into());

        // This run as the last release's: no regression.
        let baseline = r.scratch.path().join("baseline");
        std::fs::create_dir_all(&baseline).unwrap();
        std::fs::copy(report.join("report.json"), baseline.join("report.json")).unwrap();
        let same = r.step("lbc-compare");
        assert!(same.status.success(), "{}", text(&same));

        // A suite that passed in the baseline and is gone now: the gate fails.
        r.env
            .insert("LBC_SUITES".into(), "suites/instant-jobs.yaml".into());
        let run = r.step("lbc-run");
        assert!(run.status.success(), "{}", text(&run));
        let gate = r.step("lbc-compare");
        assert!(!gate.status.success(), "{}", text(&gate));
        assert!(
            text(&gate).contains("policy-defaults"),
            "the gate names what regressed: {}",
            text(&gate)
        );
    }
}
