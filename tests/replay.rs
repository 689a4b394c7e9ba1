//! `lbc replay` round trip (issue 13): each report fixture → a suite → `lbc lint` → `lbc run`
//! against the reference controller → the expected verdict; malformed reports → one line
//! naming the file, the line and the field.
#![cfg(feature = "e2e")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lbc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lbc"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn report_files(name: &str) -> Vec<String> {
    let dir = Path::new("fixtures/reports").join(name);
    let mut files: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(&dir))
            .unwrap()
            .map(|e| dir.join(e.unwrap().file_name()).display().to_string())
            .collect();
    files.sort();
    files
}

#[test]
fn each_report_replays_into_a_suite_that_lints_runs_and_passes_on_the_reference() {
    let scratch = tempfile::tempdir().unwrap();
    let mut suites: Vec<PathBuf> = Vec::new();
    for (report, clause, facts) in [
        ("exhausted-one-late", "LBR-5", "4 failed attempt(s)"),
        ("retry-ran-late", "LBR-3", "1 failed attempt(s)"),
        (
            "kernel-running-new-job",
            "LBR-4",
            "kernel: task pitr running",
        ),
        // etcdctl -w json, the operator's log with ErrStreamLogTaskExist.
        (
            "task-exists-after-reapply",
            "LBR-4",
            "info (protobuf StreamBackupTaskInfo, name \"pitr-s3\"",
        ),
        // kubectl describe, events -A, --keys-only, an empty file.
        (
            "task-info-gone",
            "LBR-10",
            "skipped fixtures/reports/task-info-gone/notes.txt: empty",
        ),
        // The plain dump with binary values, br log status.
        (
            "paused-after-restart",
            "LBR-10",
            "paused (v2, severity ERROR, by basic-tikv-2)",
        ),
        // A snapshot backup; kubectl get backup -o wide.
        ("snapshot-pod-killed", "LBR-13", "3 failed attempt(s)"),
        ("snapshot-retry-storm", "LBR-13", "2 failed attempt(s)"),
    ] {
        let out = scratch.path().join(format!("replay-{report}.yaml"));
        let mut args = vec![
            "replay".to_owned(),
            "--out".into(),
            out.display().to_string(),
        ];
        args.extend(report_files(report));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = lbc(&args);
        assert!(o.status.success(), "{report}: {}", text(&o));
        let said = text(&o);
        assert!(said.contains(facts), "{report}: {said}");
        let yaml = std::fs::read_to_string(&out).unwrap();
        assert!(yaml.contains(clause), "{report}: {yaml}");
        let o = lbc(&["lint", &out.display().to_string()]);
        assert!(o.status.success(), "{report}: {}", text(&o));
        suites.push(out);
    }
    // What the replay could not know is said, not guessed silently.
    let yaml = std::fs::read_to_string(&suites[0]).unwrap();
    assert!(yaml.contains("# durations scaled by 1/300"), "{yaml}");
    let reports = scratch.path().join("reports");
    let mut args = vec![
        "run".to_owned(),
        "--report".into(),
        "json".into(),
        "--report-dir".into(),
        reports.display().to_string(),
    ];
    args.extend(suites.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = lbc(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("8 passed, 0 failed"),
        "{}",
        text(&o)
    );
}

#[test]
fn malformed_reports_name_the_file_the_line_and_the_field() {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("x.yaml");
    let out = out.display().to_string();
    for (files, expect) in [
        (
            vec!["fixtures/reports/malformed/backup-no-name.yaml"],
            "fixtures/reports/malformed/backup-no-name.yaml:2: metadata.name: missing",
        ),
        (
            vec![
                "fixtures/reports/exhausted-one-late/backup.yaml",
                "fixtures/reports/malformed/events-misaligned.txt",
            ],
            "fixtures/reports/malformed/events-misaligned.txt:2: REASON: empty",
        ),
        (
            vec!["fixtures/reports/exhausted-one-late/events.txt"],
            "no Backup among the report's files",
        ),
        (
            vec!["fixtures/reports/snapshot-pod-killed/backups-wide.txt"],
            "the report lists Backup(s) (full-s3) but holds no Backup object",
        ),
        (
            vec![
                "fixtures/reports/retry-ran-late/backup.json",
                "fixtures/reports/malformed/kernel-bad-json.json",
            ],
            "fixtures/reports/malformed/kernel-bad-json.json: kvs[0].key: missing",
        ),
        (
            vec!["fixtures/reports/task-info-gone/describe.txt"],
            "the report shows nothing the contract judges about pitr-prod",
        ),
    ] {
        let mut args = vec!["replay", "--out", &out];
        args.extend(files);
        let o = lbc(&args);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(expect), "{err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "one line, no backtrace: {err}"
        );
        assert!(!Path::new(&out).exists(), "nothing written on error");
    }
}

#[test]
fn replay_run_replays_and_runs_in_one_command() {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("paused.yaml");
    let mut args = vec![
        "replay".to_owned(),
        "--out".into(),
        out.display().to_string(),
        "--run".into(),
        "--target".into(),
        "reference".into(),
    ];
    args.extend(report_files("paused-after-restart"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = lbc(&args);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("wrote") && said.contains("1 passed, 0 failed"),
        "{said}"
    );
}
