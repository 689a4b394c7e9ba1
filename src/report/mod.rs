//! Reporters: they consume what a run emits and never touch execution. Terminal progress
//! ([`progress`]), a summary table (clause × verdict and suite × verdict), JUnit XML
//! (quick-junit) with the real error text, and JSON.

pub mod compare;
mod files;
pub mod html;
pub mod progress;
mod terminal;
pub mod timeline;

pub use files::Files;
pub use terminal::Terminal;

use std::collections::BTreeMap;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::run::SuiteResult;
use crate::suite::model::CLAUSES;

/// Totals of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Totals {
    pub suites: usize,
    pub passed: usize,
    pub failed: usize,
    /// Failed, then passed when run again (not counted in `failed`).
    pub flaky: usize,
    pub wall_seconds: f64,
    /// The longest suite's intrinsic backoff time.
    pub longest_backoff_seconds: f64,
    /// wall / longest backoff.
    pub ratio: Option<f64>,
}

pub fn totals(results: &[SuiteResult], wall: Duration) -> Totals {
    let passed = results.iter().filter(|r| r.passed).count();
    let flaky = results.iter().filter(|r| r.flaky).count();
    let longest = results
        .iter()
        .map(|r| r.backoff_seconds)
        .fold(0.0, f64::max);
    Totals {
        suites: results.len(),
        passed,
        failed: results.len() - passed - flaky,
        flaky,
        wall_seconds: wall.as_secs_f64(),
        longest_backoff_seconds: longest,
        ratio: (longest > 0.0).then(|| wall.as_secs_f64() / longest),
    }
}

/// The summary: one row per clause (verdict over the suites naming it), then per suite.
pub fn summary_table(results: &[SuiteResult], controller: &str) -> String {
    let mut out = format!("{:<8} {:<10} {}\n", "CLAUSE", controller, "SUITES");
    let mut by_clause: BTreeMap<&str, Vec<&SuiteResult>> = BTreeMap::new();
    for r in results {
        for c in &r.clauses {
            by_clause.entry(c.as_str()).or_default().push(r);
        }
    }
    for clause in CLAUSES {
        let rs = by_clause.get(clause).cloned().unwrap_or_default();
        let verdict = verdict_of(
            rs.iter()
                .map(|r| (r.clauses.as_slice(), suite_verdict(r.passed, r.flaky))),
            clause,
        );
        let names: Vec<&str> = rs.iter().map(|r| r.name.as_str()).collect();
        out.push_str(&format!("{clause:<8} {verdict:<10} {}\n", names.join(", ")));
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<28} {:<7} {:>8} {:>9}\n",
        "SUITE", "VERDICT", "TIME", "BACKOFF"
    ));
    for r in results {
        out.push_str(&format!(
            "{:<28} {:<7} {:>7.1}s {:>8.1}s\n",
            r.name,
            suite_verdict(r.passed, r.flaky),
            r.seconds,
            r.backoff_seconds
        ));
    }
    out
}

/// A suite's verdict in a word: `pass`, `FAIL`, or `flaky` (failed, then passed again).
pub fn suite_verdict(passed: bool, flaky: bool) -> &'static str {
    match (passed, flaky) {
        (true, _) => "pass",
        (false, true) => "flaky",
        (false, false) => "FAIL",
    }
}

/// The verdict of `clause` over `results`: `pass`, `FAIL`, `flaky` or `untested`.
pub fn clause_verdict(results: &[SuiteResult], clause: &str) -> &'static str {
    verdict_of(
        results
            .iter()
            .map(|r| (r.clauses.as_slice(), suite_verdict(r.passed, r.flaky))),
        clause,
    )
}

/// The verdict of `clause` over suites given as (clauses, verdict): any failure fails it;
/// else a flaky suite makes it flaky; else it passes if any suite names it.
pub fn verdict_of<'a>(
    suites: impl Iterator<Item = (&'a [String], &'static str)>,
    clause: &str,
) -> &'static str {
    let mut seen = "untested";
    for (clauses, verdict) in suites {
        if clauses.iter().any(|c| c == clause) {
            match verdict {
                "FAIL" => return "FAIL",
                "flaky" => seen = "flaky",
                _ if seen == "untested" => seen = "pass",
                _ => {}
            }
        }
    }
    seen
}

/// One clause × target table for a run against several targets, then suite × target.
pub fn matrix_table(columns: &[(String, Vec<SuiteResult>)]) -> String {
    let mut out = format!("{:<8}", "CLAUSE");
    for (label, _) in columns {
        out.push_str(&format!(" {label:<20}"));
    }
    out.push('\n');
    for clause in CLAUSES {
        out.push_str(&format!("{clause:<8}"));
        for (_, results) in columns {
            out.push_str(&format!(" {:<20}", clause_verdict(results, clause)));
        }
        out.push('\n');
    }
    out.push_str(&format!("\n{:<28}", "SUITE"));
    for (label, _) in columns {
        out.push_str(&format!(" {label:<20}"));
    }
    out.push('\n');
    let mut names: Vec<&str> = columns
        .iter()
        .flat_map(|(_, rs)| rs.iter().map(|r| r.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        out.push_str(&format!("{name:<28}"));
        for (_, results) in columns {
            let cell = results.iter().find(|r| r.name == name).map_or_else(
                || "-".to_owned(),
                |r| format!("{} {:.1}s", suite_verdict(r.passed, r.flaky), r.seconds),
            );
            out.push_str(&format!(" {cell:<20}"));
        }
        out.push('\n');
    }
    out
}

/// JUnit XML with the real error text per failed suite.
///
/// # Errors
/// Serialization failure.
pub fn junit(
    results: &[SuiteResult],
    wall: Duration,
) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("logbackup-conformance");
    let mut suite = TestSuite::new("suites");
    for r in results {
        let status = if r.passed {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(r.failures.first().cloned().unwrap_or_default());
            s.set_description(r.failures.join("\n"));
            s
        };
        let mut tc = TestCase::new(r.name.clone(), status);
        tc.set_time(Duration::from_secs_f64(r.seconds.max(0.0)));
        tc.set_classname(r.clauses.join(","));
        suite.add_test_case(tc);
    }
    suite.set_time(wall);
    report.add_test_suite(suite);
    report.set_time(wall);
    report.to_string()
}

/// JSON: totals and every result.
pub fn json(results: &[SuiteResult], wall: Duration) -> String {
    serde_json::to_string_pretty(
        &serde_json::json!({"totals": totals(results, wall), "suites": results}),
    )
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, clauses: &[&str], passed: bool) -> SuiteResult {
        SuiteResult {
            name: name.into(),
            file: format!("suites/{name}.yaml"),
            clauses: clauses.iter().map(|c| c.to_string()).collect(),
            labels: vec![],
            story: vec![],
            passed,
            failures: if passed {
                vec![]
            } else {
                vec!["steps[2] (assert): boom".into()]
            },
            checks: vec![],
            flaky: false,
            attempts: 1,
            margins: vec![],
            seconds: 10.0,
            backoff_seconds: 6.0,
            api_writes: Some(12),
            retry_cycles: 2,
            snapshot: None,
            baseline: None,
            bundle: None,
            steps: vec![],
            api_calls: vec![],
            unfired_faults: 0,
        }
    }

    #[test]
    fn clause_verdicts() {
        let rs = [
            result("a", &["LBR-1", "LBR-2"], true),
            result("b", &["LBR-2"], false),
        ];
        let t = summary_table(&rs, "reference");
        assert!(t.contains("LBR-1    pass       a"), "{t}");
        assert!(t.contains("LBR-2    FAIL       a, b"), "{t}");
        assert!(t.contains("LBR-15   untested"), "{t}");
        // Failures are the triage's (once, above the table), not the table's.
        assert!(!t.contains("steps[2] (assert): boom"), "{t}");
    }

    #[test]
    fn junit_carries_the_error_text() {
        let xml = junit(&[result("b", &["LBR-2"], false)], Duration::from_secs(12)).unwrap();
        assert!(xml.contains("<failure"), "{xml}");
        assert!(xml.contains("steps[2] (assert): boom"), "{xml}");
        let t = totals(&[result("b", &["LBR-2"], false)], Duration::from_secs(12));
        assert_eq!(t.ratio, Some(2.0));
    }
}
