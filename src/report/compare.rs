//! `lbc compare OLD.json NEW.json`: which clauses and suites changed verdict between two
//! runs (each a `report.json`), and which checks were fixed, broke or still fail — the
//! release gate. The verdict is the judge's ([`crate::judge::gate`]); this renders it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::judge::Check;
use crate::judge::gate::{self, Gate, Movement, SuiteChecks};
use crate::run::reporter::{Reporter, RunResults, SuiteEvent, TargetResults};
use crate::suite::model::CLAUSES;

/// What a report says, as far as the gate needs.
#[derive(Debug, Deserialize)]
struct Report {
    suites: Vec<SuiteVerdict>,
}

#[derive(Debug, Deserialize)]
struct SuiteVerdict {
    name: String,
    #[serde(default)]
    clauses: Vec<String>,
    passed: bool,
    /// Failed, then passed when run again: neither a pass nor a failure to the gate.
    #[serde(default)]
    flaky: bool,
    #[serde(default)]
    failures: Vec<String>,
    /// Every check (reports of this version on); older reports compare by suite only.
    #[serde(default)]
    checks: Vec<Check>,
}

impl SuiteVerdict {
    fn checks(&self) -> SuiteChecks<'_> {
        SuiteChecks {
            name: &self.name,
            clauses: &self.clauses,
            passed: self.passed,
            flaky: self.flaky,
            checks: &self.checks,
        }
    }
}

/// The comparison: printable text and whether anything got worse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub text: String,
    /// A check, clause or suite that passed before fails now, or a suite disappeared.
    pub regressed: bool,
}

/// The gate over a run of two targets (the first the old build), if it had two.
pub fn gate_of(run: &RunResults) -> Option<Gate> {
    let [old, new] = run.targets.as_slice() else {
        return None;
    };
    Some(gate::compare(&side(old), &side(new)))
}

fn side(t: &TargetResults) -> Vec<SuiteChecks<'_>> {
    t.results
        .iter()
        .map(|r| SuiteChecks {
            name: &r.name,
            clauses: &r.clauses,
            passed: r.passed,
            flaky: r.flaky,
            checks: &r.checks,
        })
        .collect()
}

/// The gate's summary at the end of `lbc run` with two named instances.
#[derive(Debug, Default)]
pub struct GateSummary;

impl Reporter for GateSummary {
    fn report(&self, event: &SuiteEvent) {
        if let SuiteEvent::RunFinished(run) = event
            && let Some(text) = gate_summary(run)
        {
            print!("\n{text}");
        }
    }
}

/// What the gate says of a run of two targets: its summary, or that a cut run has none.
pub fn gate_summary(run: &RunResults) -> Option<String> {
    let (Some(g), [old, new]) = (gate_of(run), run.targets.as_slice()) else {
        return None;
    };
    if run.cut().is_some() {
        return Some("gate: incomplete — the run was cut short; no verdict\n".to_owned());
    }
    Some(render_gate(&old.label, &new.label, &g))
}

/// How many suites a summary line names before "…".
const NAMED: usize = 4;

/// The gate's summary: one line per movement of one kind of check (broke first), then the
/// flaky and missing suites and the verdict.
pub fn render_gate(old_name: &str, new_name: &str, g: &Gate) -> String {
    let mut out = format!(
        "gate: {new_name} against {old_name}, {} checks compared\n",
        g.compared
    );
    for m in [
        Movement::Broke,
        Movement::Fixed,
        Movement::StillFailing,
        Movement::NewlyFailing,
    ] {
        let groups: Vec<_> = g.groups.iter().filter(|x| x.movement == m).collect();
        if groups.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "  {} ({} in {} group(s)):\n",
            m.label(),
            g.count(m),
            groups.len()
        ));
        for x in groups {
            let named: Vec<&str> = x.suites.iter().take(NAMED).map(String::as_str).collect();
            out.push_str(&format!(
                "    {:<12} {:<34} {} suite(s): {}{}\n",
                x.clause,
                x.what,
                x.suites.len(),
                named.join(", "),
                if x.suites.len() > NAMED { ", …" } else { "" }
            ));
        }
    }
    if !g.flaky.is_empty() {
        out.push_str(&format!(
            "  flaky on either side, not compared: {}\n",
            g.flaky.join(", ")
        ));
    }
    if !g.missing.is_empty() {
        out.push_str(&format!(
            "  missing in {new_name}: {}\n",
            g.missing.join(", ")
        ));
    }
    if !g.new_failing.is_empty() {
        out.push_str(&format!(
            "  only in {new_name}, failing: {}\n",
            g.new_failing.join(", ")
        ));
    }
    out.push_str(&if g.regressed() {
        format!(
            "verdict: REGRESSION — {} check(s) that passed on {old_name} fail on {new_name}{}\n",
            g.count(Movement::Broke),
            if g.missing.len() + g.new_failing.len() > 0 {
                ", and suites missing or new and failing"
            } else {
                ""
            }
        )
    } else {
        format!(
            "verdict: no regression ({} check(s) fixed, {} still failing)\n",
            g.count(Movement::Fixed),
            g.count(Movement::StillFailing) + g.count(Movement::NewlyFailing)
        )
    });
    out
}

fn parse(name: &str, text: &str) -> Result<Report, String> {
    serde_json::from_str(text).map_err(|e| {
        format!("{name}: not a report.json of `lbc run` ({e}); pass the report.json of two runs")
    })
}

fn clause_verdict(r: &Report, clause: &str) -> &'static str {
    super::verdict_of(
        r.suites.iter().map(|s| {
            (
                s.clauses.as_slice(),
                super::suite_verdict(s.passed, s.flaky),
            )
        }),
        clause,
    )
}

/// Compare the reports `old` and `new` (their texts; the names are for messages).
///
/// # Errors
/// A text that is not a report.
pub fn compare(old_name: &str, old: &str, new_name: &str, new: &str) -> Result<Comparison, String> {
    let (o, n) = (parse(old_name, old)?, parse(new_name, new)?);
    let mut text = String::new();
    let mut regressed = false;
    let mut clause_lines = Vec::new();
    for clause in CLAUSES {
        let (a, b) = (clause_verdict(&o, clause), clause_verdict(&n, clause));
        if a != b {
            // Flaky is neither a pass nor a failure: only a confirmed failure regresses.
            regressed |= b == "FAIL" && matches!(a, "pass" | "untested");
            clause_lines.push(format!("  {clause:<8} {a} → {b}"));
        }
    }
    let old_by: BTreeMap<&str, &SuiteVerdict> =
        o.suites.iter().map(|s| (s.name.as_str(), s)).collect();
    let new_by: BTreeMap<&str, &SuiteVerdict> =
        n.suites.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut suite_lines = Vec::new();
    let verdict = |s: &SuiteVerdict| super::suite_verdict(s.passed, s.flaky);
    for (name, a) in &old_by {
        match new_by.get(name) {
            None => {
                regressed = true;
                suite_lines.push(format!("  {name:<28} {} → missing", verdict(a)));
            }
            Some(b) if verdict(a) != verdict(b) => {
                regressed |= verdict(a) == "pass" && verdict(b) == "FAIL";
                suite_lines.push(format!(
                    "  {name:<28} {} → {}{}",
                    verdict(a),
                    verdict(b),
                    b.failures.first().map_or(String::new(), |f| format!(
                        ": {}",
                        f.lines().next().unwrap_or_default()
                    ))
                ));
            }
            Some(_) => {}
        }
    }
    for (name, b) in &new_by {
        if !old_by.contains_key(name) {
            regressed |= verdict(b) == "FAIL";
            suite_lines.push(format!("  {name:<28} new → {}", verdict(b)));
        }
    }
    if clause_lines.is_empty() && suite_lines.is_empty() {
        text.push_str(&format!(
            "no verdict changed between {old_name} and {new_name} ({} suites)\n",
            new_by.len()
        ));
    } else {
        if !clause_lines.is_empty() {
            text.push_str(&format!("clauses ({old_name} → {new_name}):\n"));
            text.push_str(&clause_lines.join("\n"));
            text.push('\n');
        }
        if !suite_lines.is_empty() {
            text.push_str(&format!("suites ({old_name} → {new_name}):\n"));
            text.push_str(&suite_lines.join("\n"));
            text.push('\n');
        }
    }
    let gate = gate::compare(
        &o.suites
            .iter()
            .map(SuiteVerdict::checks)
            .collect::<Vec<_>>(),
        &n.suites
            .iter()
            .map(SuiteVerdict::checks)
            .collect::<Vec<_>>(),
    );
    text.push_str(&render_gate(old_name, new_name, &gate));
    Ok(Comparison {
        text,
        regressed: regressed || gate.regressed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(label: &str, cut: Option<crate::run::all::Cut>) -> std::sync::Arc<TargetResults> {
        std::sync::Arc::new(TargetResults {
            label: label.into(),
            results: vec![crate::run::SuiteResult {
                name: "s1".into(),
                passed: true,
                ..crate::run::SuiteResult::default()
            }],
            not_run: vec![],
            wall: std::time::Duration::ZERO,
            report_dir: "r".into(),
            cut,
            why: None,
        })
    }

    #[test]
    fn a_cut_run_gives_no_gate_verdict_and_one_target_no_gate() {
        let run = |cut| RunResults {
            targets: vec![target("old", None), target("new", cut)],
            wall: std::time::Duration::ZERO,
        };
        let whole = gate_summary(&run(None)).unwrap();
        assert!(whole.contains("verdict: no regression"), "{whole}");
        let cut = gate_summary(&run(Some(crate::run::all::Cut::Watchdog))).unwrap();
        assert!(
            cut.contains("incomplete") && !cut.contains("verdict:"),
            "{cut}"
        );
        let one = RunResults {
            targets: vec![target("old", None)],
            wall: std::time::Duration::ZERO,
        };
        assert!(gate_summary(&one).is_none());
    }

    fn report(suites: &[(&str, &str, bool)]) -> String {
        let s: Vec<serde_json::Value> = suites
            .iter()
            .map(|(n, c, p)| serde_json::json!({"name": n, "clauses": [c], "passed": p, "failures": if *p { vec![] } else { vec!["steps[1] (assert): boom"] }}))
            .collect();
        serde_json::json!({"totals": {}, "suites": s}).to_string()
    }

    #[test]
    fn a_flaky_suite_is_no_regression_either_way() {
        let pass = report(&[("s1", "LBR-3", true)]);
        let mut v: serde_json::Value =
            serde_json::from_str(&report(&[("s1", "LBR-3", false)])).unwrap();
        v["suites"][0]["flaky"] = serde_json::json!(true);
        let flaky = v.to_string();
        for (a, b) in [(&pass, &flaky), (&flaky, &pass), (&flaky, &flaky)] {
            let c = compare("old", a, "new", b).unwrap();
            assert!(!c.regressed, "{c:?}");
        }
        let c = compare("old", &pass, "new", &flaky).unwrap();
        assert!(
            c.text.contains("s1") && c.text.contains("pass → flaky"),
            "{}",
            c.text
        );
        // A confirmed failure still gates.
        let fail = report(&[("s1", "LBR-3", false)]);
        // flaky → FAIL: flaky was no pass, so nothing that passed broke.
        assert!(!compare("old", &flaky, "new", &fail).unwrap().regressed);
        assert!(compare("old", &pass, "new", &fail).unwrap().regressed);
    }

    #[test]
    fn same_verdicts_do_not_gate() {
        let a = report(&[("s1", "LBR-3", true), ("s2", "LBR-5", false)]);
        let c = compare("old", &a, "new", &a).unwrap();
        assert!(
            !c.regressed && c.text.contains("no verdict changed"),
            "{c:?}"
        );
    }

    #[test]
    fn a_pass_turning_fail_gates_and_is_named() {
        let a = report(&[("s1", "LBR-3", true), ("s2", "LBR-5", false)]);
        let b = report(&[("s1", "LBR-3", false), ("s2", "LBR-5", true)]);
        let c = compare("v1.json", &a, "v2.json", &b).unwrap();
        assert!(c.regressed);
        assert!(c.text.contains("LBR-3    pass → FAIL"), "{}", c.text);
        assert!(
            c.text.contains("s1") && c.text.contains("pass → FAIL: steps[1] (assert): boom"),
            "{}",
            c.text
        );
        // An improvement alone does not gate.
        let c = compare(
            "v2.json",
            &b,
            "v3.json",
            &report(&[("s1", "LBR-3", true), ("s2", "LBR-5", true)]),
        )
        .unwrap();
        assert!(!c.regressed, "{}", c.text);
    }

    #[test]
    fn a_missing_suite_gates_and_garbage_is_refused() {
        let a = report(&[("s1", "LBR-3", true)]);
        let b = report(&[]);
        assert!(compare("a", &a, "b", &b).unwrap().regressed);
        let e = compare("a", &a, "b.json", "{}").unwrap_err();
        assert!(e.contains("b.json: not a report.json"), "{e}");
    }
}
