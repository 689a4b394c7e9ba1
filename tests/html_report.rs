//! The HTML report in a real headless browser (Debian's Chromium; `.ci/run` installs it):
//! the page loads without console messages, and a known suite's timeline has the expected
//! lanes and marks (asserted on the DOM the browser built). The screenshot is kept as a
//! review artefact in `target/lbc-html-report/timeline.png`.
#![cfg(feature = "browser")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

use std::path::Path;
use std::process::Command;

fn chromium() -> std::path::PathBuf {
    use logbackup_conformance::doctor::{Facts, Need, evaluate, first_missing};
    let facts = Facts::probe(&[Need::Chromium]);
    if let Some(line) = first_missing(&evaluate(&facts, &[Need::Chromium])) {
        use std::io::Write;
        // One line past libtest's capture, then stop before any test does its work.
        let _ = writeln!(std::io::stderr(), "error: {line}");
        std::process::exit(2);
    }
    facts.chromium.unwrap_or_default()
}

/// The DOM Chromium built, and its console messages.
fn load(page: &Path) -> (String, Vec<String>) {
    let o = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    (String::from_utf8_lossy(&o.stdout).into_owned(), console)
}

/// The part of the DOM for one suite's section.
fn section<'a>(dom: &'a str, suite: &str) -> &'a str {
    let start = dom
        .find(&format!("data-suite=\"{suite}\""))
        .unwrap_or_else(|| panic!("no section for {suite}"));
    let end = dom[start..]
        .find("</section>")
        .map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

#[test]
fn the_report_loads_cleanly_and_draws_each_attempt_retry_and_failed_check() {
    let scratch = tempfile::tempdir().unwrap();
    // A suite that fails on purpose: its failed check must be drawn where it failed.
    let failing = scratch.path().join("expects-five-retries.yaml");
    std::fs::write(
        &failing,
        r"name: expects-five-retries
description: Fails on purpose (five records never come).
clauses: [LBR-2]
timeout: 30s
backups:
  - name: lb1
    policy: {minRetryDuration: 1s, maxRetryTimes: 1}
plans:
  lb1:
    log-start: [{action: fail}]
steps:
  - create: {backup: lb1}
  - assert:
      eventually:
        that: {recordRetried: {backup: lb1, n: 5}}
        within: 4s
",
    )
    .unwrap();
    let report_dir = scratch.path().join("report");
    let o = Command::new(env!("CARGO_BIN_EXE_lbc"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--report", "html", "--report-dir"])
        .arg(&report_dir)
        .args([
            "suites/job-failure-retry-success.yaml",
            "suites/crash-after-retry-job.yaml",
        ])
        .arg(&failing)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("2 passed, 1 failed"),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !report_dir.join("report.json").exists(),
        "--report html writes only the page"
    );
    let page = report_dir.join("index.html");
    let (dom, console) = load(&page);
    assert!(console.is_empty(), "console messages: {console:?}");
    assert!(dom.contains("id=\"matrix\""), "no clause matrix");

    // job-failure-retry-success: two attempts, the first failed, the second complete; one
    // record with detection, expected and real retry marks; the controller's events.
    let s = section(&dom, "job-failure-retry-success");
    assert!(s.contains("data-verdict=\"pass\""));
    assert_eq!(s.matches("data-lane=\"job\"").count(), 2, "{s}");
    assert_eq!(s.matches("class=\"span job-failed\"").count(), 1, "{s}");
    assert_eq!(s.matches("class=\"span job-complete\"").count(), 1, "{s}");
    assert_eq!(s.matches("data-lane=\"backup\"").count(), 1);
    for mark in ["mark detect", "mark expected", "mark real"] {
        assert_eq!(
            s.matches(&format!("class=\"{mark}\"")).count(),
            1,
            "{mark}: {s}"
        );
    }
    assert!(s.contains("class=\"span late\""), "the lateness bar: {s}");
    assert!(
        s.contains("class=\"mark event\" data-label=\"RetryStarted\""),
        "{s}"
    );
    assert!(!s.contains("class=\"mark failed\""));

    // crash-after-retry-job: the injected crash on the controller's lane.
    let s = section(&dom, "crash-after-retry-job");
    assert!(s.contains("class=\"mark restart fault\""), "{s}");

    // The failing suite: its failed check drawn at about the 4 s its assertion waited.
    let s = section(&dom, "expects-five-retries");
    assert!(s.contains("data-verdict=\"FAIL\""));
    let at = s
        .split("class=\"mark failed\"")
        .nth(1)
        .and_then(|rest| rest.split("data-at=\"").nth(1))
        .and_then(|v| v.split('"').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no failed check drawn: {s}"));
    assert!((3.5..8.0).contains(&at), "drawn at {at}s");

    // Kept for review: a picture of the page.
    let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/lbc-html-report");
    std::fs::create_dir_all(&keep).unwrap();
    std::fs::copy(&page, keep.join("index.html")).unwrap();
    let shot = keep.join("timeline.png");
    let _ = std::fs::remove_file(&shot);
    let o = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,1800",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "an empty screenshot"
    );
}

#[test]
fn the_console_check_can_fail() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        "<html><body><script>undefinedFn()</script></body></html>",
    )
    .unwrap();
    let (_, console) = load(&page);
    assert_eq!(console.len(), 1, "{console:?}");
}
