//! The release gate's verdict: two runs of the same suites (an old build and a new one)
//! compared check by check. A check that passed on the old build and fails on the new one
//! is a regression; a suite flaky on either side gates nothing; a check the old build never
//! reached (it failed earlier) is new information, not a regression.

use std::collections::BTreeMap;

use super::check::{Check, CheckState};

/// One suite of one run, as the gate reads it.
#[derive(Debug, Clone, Copy)]
pub struct SuiteChecks<'a> {
    pub name: &'a str,
    pub clauses: &'a [String],
    pub passed: bool,
    /// Failed, then passed when run again: neither a pass nor a failure.
    pub flaky: bool,
    pub checks: &'a [Check],
}

/// How a check moved between the two runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Movement {
    /// Passed on the old build, fails on the new: the only thing that gates.
    Broke,
    /// Failed on the old build, passes on the new.
    Fixed,
    /// Fails on both.
    StillFailing,
    /// Fails on the new build where the old one never got (it failed earlier, or the check
    /// is new): not a regression.
    NewlyFailing,
}

impl Movement {
    pub fn label(self) -> &'static str {
        match self {
            Movement::Broke => "broke",
            Movement::Fixed => "fixed",
            Movement::StillFailing => "still failing",
            Movement::NewlyFailing => "failing, not reached before",
        }
    }
}

/// One group of the summary: a movement of one kind of check, with the suites it moved in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub movement: Movement,
    /// The check's clause, or the suite's clauses for a step.
    pub clause: String,
    /// What the check asks (`assert recordRetried`, `retry not late`).
    pub what: String,
    pub suites: Vec<String>,
}

/// The gate's word on two runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gate {
    /// By movement (broke first), then clause and what.
    pub groups: Vec<Group>,
    /// Suites flaky on either side: their checks are not compared.
    pub flaky: Vec<String>,
    /// Suites of the old run the new one lacks.
    pub missing: Vec<String>,
    /// Suites only the new run has that fail.
    pub new_failing: Vec<String>,
    /// Checks compared (on suites neither flaky nor missing).
    pub compared: usize,
}

impl Gate {
    /// A confirmed regression: a check that broke, or a suite gone or new and failing.
    pub fn regressed(&self) -> bool {
        self.groups.iter().any(|g| g.movement == Movement::Broke)
            || !self.missing.is_empty()
            || !self.new_failing.is_empty()
    }

    /// Checks in groups of `m`, counted per suite.
    pub fn count(&self, m: Movement) -> usize {
        self.groups
            .iter()
            .filter(|g| g.movement == m)
            .map(|g| g.suites.len())
            .sum()
    }
}

/// How check `id` moved, given its state on each side (`None`: that run has no such check).
pub fn movement(old: Option<CheckState>, new: Option<CheckState>) -> Option<Movement> {
    use CheckState::{Failed, Passed};
    match (old, new) {
        (Some(Passed), Some(Failed)) => Some(Movement::Broke),
        (Some(Failed), Some(Passed)) => Some(Movement::Fixed),
        (Some(Failed), Some(Failed)) => Some(Movement::StillFailing),
        (_, Some(Failed)) => Some(Movement::NewlyFailing),
        _ => None,
    }
}

/// A suite's clauses in one short label: `LBR-2/3/8`.
pub fn clauses_label(clauses: &[String]) -> String {
    let numbers: Vec<&str> = clauses
        .iter()
        .map(|c| c.strip_prefix("LBR-").unwrap_or(c))
        .collect();
    if numbers.is_empty() {
        "-".to_owned()
    } else {
        format!("LBR-{}", numbers.join("/"))
    }
}

/// Compare `old` with `new` check by check.
pub fn compare(old: &[SuiteChecks<'_>], new: &[SuiteChecks<'_>]) -> Gate {
    let mut gate = Gate::default();
    let new_by: BTreeMap<&str, &SuiteChecks<'_>> = new.iter().map(|s| (s.name, s)).collect();
    let old_by: BTreeMap<&str, &SuiteChecks<'_>> = old.iter().map(|s| (s.name, s)).collect();
    let mut groups: BTreeMap<(Movement, String, String), Vec<String>> = BTreeMap::new();
    for (name, o) in &old_by {
        let Some(n) = new_by.get(name) else {
            gate.missing.push((*name).to_owned());
            continue;
        };
        if o.flaky || n.flaky {
            gate.flaky.push((*name).to_owned());
            continue;
        }
        let old_checks: BTreeMap<&str, &Check> =
            o.checks.iter().map(|c| (c.id.as_str(), c)).collect();
        let mut broke_here = false;
        for c in n.checks {
            gate.compared += 1;
            let before = old_checks.get(c.id.as_str()).map(|c| c.state);
            if let Some(m) = movement(before, Some(c.state)) {
                broke_here |= m == Movement::Broke;
                let clause = c.clause.clone().unwrap_or_else(|| clauses_label(n.clauses));
                groups
                    .entry((m, clause, c.what.clone()))
                    .or_default()
                    .push((*name).to_owned());
            }
        }
        // A suite that passed on the old build and fails with no broken check (a check
        // only the new run has, a report without checks) still broke: say so.
        if o.passed && !n.passed && !broke_here {
            groups
                .entry((
                    Movement::Broke,
                    clauses_label(n.clauses),
                    "the suite".to_owned(),
                ))
                .or_default()
                .push((*name).to_owned());
        }
    }
    for (name, n) in &new_by {
        if !old_by.contains_key(name) && !n.passed && !n.flaky {
            gate.new_failing.push((*name).to_owned());
        }
    }
    gate.groups = groups
        .into_iter()
        .map(|((movement, clause, what), suites)| Group {
            movement,
            clause,
            what,
            suites,
        })
        .collect();
    gate
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::check::Rule;
    use rstest::rstest;

    fn check(id: &str, what: &str, clause: Option<&str>, state: CheckState) -> Check {
        Check {
            id: id.into(),
            what: what.into(),
            clause: clause.map(Into::into),
            state,
        }
    }

    #[rstest]
    #[case(
        Some(CheckState::Passed),
        Some(CheckState::Failed),
        Some(Movement::Broke)
    )]
    #[case(
        Some(CheckState::Failed),
        Some(CheckState::Passed),
        Some(Movement::Fixed)
    )]
    #[case(
        Some(CheckState::Failed),
        Some(CheckState::Failed),
        Some(Movement::StillFailing)
    )]
    #[case(
        Some(CheckState::NotReached),
        Some(CheckState::Failed),
        Some(Movement::NewlyFailing)
    )]
    #[case(None, Some(CheckState::Failed), Some(Movement::NewlyFailing))]
    #[case(Some(CheckState::Passed), Some(CheckState::NotReached), None)]
    #[case(Some(CheckState::Passed), Some(CheckState::Passed), None)]
    #[case(Some(CheckState::Failed), Some(CheckState::NotReached), None)]
    fn how_a_check_moves(
        #[case] old: Option<CheckState>,
        #[case] new: Option<CheckState>,
        #[case] want: Option<Movement>,
    ) {
        assert_eq!(movement(old, new), want);
    }

    /// Suite `s1` of a run, with `checks`.
    fn suite<'a>(
        clauses: &'a [String],
        passed: bool,
        flaky: bool,
        checks: &'a [Check],
    ) -> SuiteChecks<'a> {
        SuiteChecks {
            name: "s1",
            clauses,
            passed,
            flaky,
            checks,
        }
    }

    #[test]
    fn progress_inside_failing_suites_shows_and_gates_nothing() {
        use CheckState::*;
        let clauses = ["LBR-2".to_owned()];
        // The old build fails at step 1; the new one passes it and fails at step 2.
        let old = [
            check("steps[0] create", "create", None, Passed),
            check("steps[1] assert", "assert recordExists", None, Failed),
            check("steps[2] assert", "assert recordRetried", None, NotReached),
            check(&Rule::NotLate.id(), "retry not late", Some("LBR-3"), Passed),
        ];
        let new = [
            check("steps[0] create", "create", None, Passed),
            check("steps[1] assert", "assert recordExists", None, Passed),
            check("steps[2] assert", "assert recordRetried", None, Failed),
            check(&Rule::NotLate.id(), "retry not late", Some("LBR-3"), Passed),
        ];
        let (o, n) = (
            suite(&clauses, false, false, &old),
            suite(&clauses, false, false, &new),
        );
        let g = compare(&[o], &[n]);
        assert!(!g.regressed(), "{g:?}");
        assert_eq!(g.count(Movement::Fixed), 1);
        assert_eq!(g.count(Movement::NewlyFailing), 1);
        assert_eq!(g.groups[0].what, "assert recordExists");
        assert_eq!(g.groups[0].clause, "LBR-2");
        // The other way round, the step that passed now fails: a regression.
        let g = compare(&[n], &[o]);
        assert!(g.regressed());
        assert_eq!(g.count(Movement::Broke), 1);
    }

    #[test]
    fn flaky_suites_are_not_compared_and_missing_ones_gate() {
        let late = |state| {
            [check(
                "judge not-late",
                "retry not late",
                Some("LBR-3"),
                state,
            )]
        };
        let (failed, passed) = (late(CheckState::Failed), late(CheckState::Passed));
        let g = compare(
            &[suite(&[], true, false, &passed)],
            &[suite(&[], false, true, &failed)],
        );
        assert!(!g.regressed());
        assert_eq!(g.flaky, vec!["s1"]);
        let g = compare(&[suite(&[], true, false, &passed)], &[]);
        assert!(g.regressed());
        assert_eq!(g.missing, vec!["s1"]);
    }
}
