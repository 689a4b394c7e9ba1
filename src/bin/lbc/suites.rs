//! The commands about suites, targets and reports that need no cluster: `list`, `lint`,
//! `schema`, `lint-target`, `replay`, `compare`, `crds`, and `doctor`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use logbackup_conformance::suite;

use crate::targets::*;

/// `lbc replay`: a field report in, a suite out.
pub(crate) fn replay(files: Vec<PathBuf>, out: PathBuf) -> Result<()> {
    let root = std::env::current_dir()?;
    let r = logbackup_conformance::replay::replay(&files, &out, &root)?;
    for src in &r.sources {
        println!("read    {src}");
    }
    for s in &r.skipped {
        println!("skipped {s}");
    }
    for f in &r.situation.facts {
        println!("fact    {f}");
    }
    for u in &r.situation.unknown {
        println!("unknown {u}");
    }
    if let Some(c) = r.suite.story.iter().find(|l| l.starts_with("contract")) {
        println!("expects {c}");
    }
    println!(
        "wrote {} (suite {}, clauses {}); run it: lbc run {}",
        out.display(),
        r.suite.name,
        r.suite.clauses.join(","),
        out.display()
    );
    Ok(())
}

/// `lbc replay --run`: `lbc run` on the written suite (this same program, so its output and
/// exit code are the run's).
pub(crate) fn run_replayed(
    out: &std::path::Path,
    targets: &[String],
    sets: &[String],
) -> Result<()> {
    let exe = std::env::current_exe().context("finding lbc itself")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("run").arg(out);
    for t in targets {
        cmd.arg("--target").arg(t);
    }
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    println!("running {} …", out.display());
    let status = cmd.status().context("running lbc run")?;
    if !status.success() {
        bail!(
            "the replayed suite did not pass against {}",
            if targets.is_empty() {
                "reference".to_owned()
            } else {
                targets.join(", ")
            }
        );
    }
    Ok(())
}

/// `lbc list`.
pub(crate) fn list(paths: Vec<PathBuf>) -> Result<()> {
    for (_, s) in load_suites(&paths)? {
        println!(
            "{:<28} {:<28} {}",
            s.name,
            s.clauses.join(","),
            s.labels.join(",")
        );
    }
    Ok(())
}

/// `lbc lint`.
pub(crate) fn lint(paths: Vec<PathBuf>) -> Result<()> {
    let n = load_suites(&paths)?.len();
    println!("{n} suite(s) ok");
    Ok(())
}

/// `lbc schema [suite|target]`.
pub(crate) fn schema(of: String) -> Result<()> {
    let schema = if of == "target" {
        logbackup_conformance::target::json_schema()
    } else {
        suite::json_schema()
    };
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(())
}

/// `lbc lint-target`.
pub(crate) fn lint_target(targets: Vec<String>, sets: Vec<String>) -> Result<()> {
    let root = std::env::current_dir()?;
    let names = if targets.is_empty() {
        vec!["reference".to_owned()]
    } else {
        targets
    };
    let resolved = resolve_targets(&names, &sets, &root)?;
    let mut problems = 0;
    for t in resolved {
        let missing = logbackup_conformance::target::missing_paths(&t);
        if missing.is_empty() {
            println!(
                "{} ({}): ok; runs {} {}",
                t.label,
                t.file,
                t.program,
                t.args.join(" ")
            );
        }
        for m in &missing {
            eprintln!("{} ({}): {m}", t.label, t.file);
        }
        problems += missing.len();
    }
    if problems > 0 {
        bail!("{problems} problem(s) in the targets' paths");
    }
    Ok(())
}

/// `lbc compare OLD NEW`: the release gate.
pub(crate) fn compare(old: PathBuf, new: PathBuf) -> Result<()> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let c = logbackup_conformance::report::compare::compare(
        &old.display().to_string(),
        &read(&old)?,
        &new.display().to_string(),
        &read(&new)?,
    )
    .map_err(anyhow::Error::msg)?;
    print!("{}", c.text);
    if c.regressed {
        bail!(
            "something that passed in {} fails in {}",
            old.display(),
            new.display()
        );
    }
    Ok(())
}

/// `lbc crds [--write]`.
pub(crate) fn crds(write: bool, dir: PathBuf) -> Result<()> {
    let yaml = lbc_api::backup_crd_yaml()?;
    if write {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("backups.pingcap.com.yaml");
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    } else {
        print!("{yaml}");
    }
    Ok(())
}

/// `lbc doctor`: every check; fails when the main command (`lbc run` on the local control
/// plane) cannot run.
pub(crate) fn doctor() -> Result<()> {
    use logbackup_conformance::doctor::{Facts, Need, Status, evaluate, render};
    let checks = evaluate(&Facts::probe(&Need::ALL), &Need::ALL);
    print!("{}", render(&checks));
    let missing = |needs: &[Need]| {
        checks
            .iter()
            .filter(|c| c.status == Status::Missing && needs.contains(&c.need))
            .map(|c| c.what)
            .collect::<Vec<_>>()
    };
    let main = missing(&[Need::ControlPlane, Need::Resources]);
    let optional = missing(&[Need::Docker, Need::Chromium, Need::Root]);
    if !main.is_empty() {
        bail!(
            "`lbc run` cannot run here: {} missing (fixes above)",
            main.join(", ")
        );
    }
    if optional.is_empty() {
        println!("everything is here: `lbc run` and every test feature can run");
    } else {
        println!(
            "`lbc run` can run here; missing for the parts named above: {}",
            optional.join(", ")
        );
    }
    Ok(())
}

/// The suite files named by `paths` (files, or directories searched for `*.yaml`).
pub(crate) fn suite_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("suites")]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(suite::discover(&p).with_context(|| format!("reading {}", p.display()))?);
        } else {
            files.push(p);
        }
    }
    Ok(files)
}

/// Load every suite; print problems; fail if any.
pub(crate) fn load_suites(paths: &[PathBuf]) -> Result<Vec<(PathBuf, suite::Suite)>> {
    let root = std::env::current_dir()?;
    let mut ok = Vec::new();
    let mut bad = 0;
    let mut named: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for f in suite_files(paths)? {
        match suite::load_file(&f, &root) {
            Ok(s) => {
                // The suite's name is its namespace's: two at once would share it.
                if let Some(first) = named.insert(s.name.clone(), f.clone()) {
                    bad += 1;
                    eprintln!(
                        "{}: name: {:?} is also the name of {}; each suite needs its own",
                        f.display(),
                        s.name,
                        first.display()
                    );
                    continue;
                }
                ok.push((f, s));
            }
            Err(e) => {
                bad += e.0.len();
                eprintln!("{e}");
            }
        }
    }
    if bad > 0 {
        bail!("{bad} problem(s) in suite files");
    }
    Ok(ok)
}
