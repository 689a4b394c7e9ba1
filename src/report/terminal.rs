//! The run on the terminal once a target is over: each failure with its bundle, the
//! summary table (one target) or the matrix (several), the totals line, the baseline's
//! diffs; and where the file reports went.

use std::sync::Arc;

use crate::baseline::Verdict;
use crate::run::{Reporter, RunResults, SuiteEvent, TargetResults};

/// Prints what a person reads after a run.
#[derive(Debug, Clone, Default)]
pub struct Terminal {
    /// Several targets: lines are prefixed with the target, the matrix comes at the end.
    pub many: bool,
    /// The baseline the run compared with (`--baseline NAME`).
    pub baseline: Option<String>,
}

impl Reporter for Terminal {
    fn report(&self, event: &SuiteEvent) {
        match event {
            SuiteEvent::TargetFinished(t) => self.target(t),
            SuiteEvent::RunFinished(run) if self.many => matrix(run),
            _ => {}
        }
    }
}

impl Terminal {
    fn prefix(&self, label: &str) -> String {
        if self.many {
            format!("{label}: ")
        } else {
            String::new()
        }
    }

    fn target(&self, t: &Arc<TargetResults>) {
        if let Some(why) = &t.why {
            eprintln!("{why}");
        }
        for r in t.results.iter().filter(|r| !r.passed) {
            eprintln!();
            for line in triage(&self.prefix(&t.label), r) {
                eprintln!("{line}");
            }
        }
        let flaky: Vec<&str> = t
            .results
            .iter()
            .filter(|r| r.flaky)
            .map(|r| r.name.as_str())
            .collect();
        if !flaky.is_empty() {
            eprintln!(
                "{}flaky (failed, then passed when run again): {}",
                self.prefix(&t.label),
                flaky.join(", ")
            );
        }
        if !self.many {
            print!("{}", super::summary_table(&t.results, &t.label));
        }
        let totals = super::totals(&t.results, t.wall);
        println!(
            "{}{} passed, {} failed{}; wall {:.1}s, longest suite backoff {:.1}s, ratio {}",
            self.prefix(&t.label),
            totals.passed,
            totals.failed,
            if totals.flaky > 0 {
                format!(", {} flaky", totals.flaky)
            } else {
                String::new()
            },
            totals.wall_seconds,
            totals.longest_backoff_seconds,
            totals.ratio.map_or("-".into(), |r| format!("{r:.2}"))
        );
        if let Some(cost) = api_cost(&t.results) {
            println!("{}{cost}", self.prefix(&t.label));
        }
        if !t.not_run.is_empty() {
            println!(
                "{}{} suite(s) not run (cut short): {}",
                self.prefix(&t.label),
                t.not_run.len(),
                t.not_run.join(", ")
            );
        }
        if let Some(name) = &self.baseline {
            baseline(t, name);
        }
    }
}

/// At most this many failures of a suite are shown on the terminal (the rest, and every
/// failure whole, are in its bundle and the HTML report).
const SHOWN_FAILURES: usize = 3;
/// A failure's line is cut here.
const LINE: usize = 200;

/// A failed suite in at most five lines: which suite and clauses, the first line of each of
/// its first failures, and where the rest is. The whole text (a state dump, a diff) lives in
/// the bundle's `failure.txt` and the HTML report.
pub(crate) fn triage(prefix: &str, r: &crate::run::SuiteResult) -> Vec<String> {
    let verdict = if r.flaky {
        format!("FLAKY (failed, then passed on attempt {})", r.attempts)
    } else {
        "FAILED".to_owned()
    };
    let mut out = vec![format!(
        "{prefix}{} {verdict} [{}]",
        r.name,
        r.clauses.join(", ")
    )];
    // A replayed suite says what the field report expects instead of its third failure.
    let expects = r.story.iter().find(|l| l.starts_with("contract"));
    let shown = if expects.is_some() {
        SHOWN_FAILURES - 1
    } else {
        SHOWN_FAILURES
    };
    if let Some(line) = expects {
        let cut: String = line.chars().take(LINE).collect();
        out.push(format!("  replayed report: {cut}"));
    }
    for f in r.failures.iter().take(shown) {
        let first = f.lines().next().unwrap_or_default().trim_end_matches(':');
        let cut: String = first.chars().take(LINE).collect();
        let more = if cut.len() < first.len() || f.lines().nth(1).is_some() {
            " …"
        } else {
            ""
        };
        out.push(format!("  {cut}{more}"));
    }
    let rest = r.failures.len().saturating_sub(shown);
    let rest = if rest > 0 {
        format!("{rest} more failure(s); ")
    } else {
        String::new()
    };
    out.push(match &r.bundle {
        Some(b) => format!("  {rest}all of it: {}", b.join("failure.txt").display()),
        None => format!("  {rest}(no bundle)"),
    });
    out
}

/// LBR-17's cost line: the controller's writes over the retry cycles, when the run had the
/// proxy.
pub(crate) fn api_cost(results: &[crate::run::SuiteResult]) -> Option<String> {
    let writes: usize = results.iter().filter_map(|r| r.api_writes).sum();
    if results.iter().all(|r| r.api_writes.is_none()) {
        return None;
    }
    let cycles: usize = results.iter().map(|r| r.retry_cycles).sum();
    Some(format!(
        "API cost: {writes} write(s) over {cycles} retry cycle(s){}",
        if cycles > 0 {
            format!(", {:.1} per cycle", writes as f64 / cycles as f64)
        } else {
            String::new()
        }
    ))
}

/// The baseline's diffs and counts.
fn baseline(t: &TargetResults, name: &str) {
    let (mut recorded, mut same, mut changed) = (0, 0, 0);
    for r in &t.results {
        match &r.baseline {
            Some(Verdict::Recorded) => recorded += 1,
            Some(Verdict::Same) => same += 1,
            Some(Verdict::Changed(diff)) => {
                changed += 1;
                eprintln!(
                    "\n{}: behaviour differs from baseline {name}:\n{diff}",
                    r.name
                );
            }
            None => {}
        }
    }
    println!("baseline {name}: {same} same, {changed} changed, {recorded} recorded");
}

/// Clause × target and suite × target, for a run of several targets.
fn matrix(run: &RunResults) {
    print!("{}", super::matrix_table(&run.columns()));
    println!(
        "wall {:.1}s for {} targets",
        run.wall.as_secs_f64(),
        run.targets.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_suite_reads_in_five_lines_at_most() {
        let long_state = format!("did not hold; last state:\n{}", "phase: X\n".repeat(300));
        let r = crate::run::SuiteResult {
            name: "s".into(),
            clauses: vec!["LBR-2".into(), "LBR-3".into()],
            failures: vec![
                format!("steps[2] (assert): {{\"recordRetried\":1}} {long_state}"),
                "schedule judge, lb1: retry 1 ran 6.0 s after expectedRetryAt".into(),
                "x".repeat(500),
                "fourth".into(),
                "fifth".into(),
            ],
            bundle: Some("target/lbc-report/s".into()),
            ..crate::run::SuiteResult::default()
        };
        let lines = triage("", &r);
        assert!(lines.len() <= 5, "{lines:#?}");
        assert_eq!(lines[0], "s FAILED [LBR-2, LBR-3]");
        assert_eq!(
            lines[1],
            "  steps[2] (assert): {\"recordRetried\":1} did not hold; last state …"
        );
        assert!(lines[3].len() < 220);
        assert_eq!(
            lines[4],
            "  2 more failure(s); all of it: target/lbc-report/s/failure.txt"
        );
    }
}
