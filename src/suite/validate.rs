//! Semantic checks of a parsed suite: references, names, durations, clause ids.

use std::collections::BTreeSet;
use std::path::Path;

use super::duration::GoDuration;
use super::locate::{closest, locate};
use super::model::{self as m, CLAUSES, Predicate, Suite};

/// A problem found by [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

/// Subcommand keys a plan or a predicate may name.
pub const SUBCOMMANDS: &[&str] = &[
    "log-start",
    "log-stop",
    "log-pause",
    "log-resume",
    "log-truncate",
];

struct Checker<'a> {
    text: &'a str,
    backups: BTreeSet<String>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn push(
        &mut self,
        field: String,
        key: &str,
        value: &str,
        message: String,
        hint: Option<String>,
    ) {
        // A bad map key (e.g. a plan's subcommand) is found as `value:`.
        let at = locate(self.text, key, value).or_else(|| locate(self.text, value, ""));
        self.problems.push(Problem {
            line: at.map(|a| a.0),
            column: at.map(|a| a.1),
            field,
            message,
            hint,
        });
    }

    fn backup(&mut self, field: String, name: &str) {
        if !self.backups.contains(name) {
            let known: Vec<&str> = self.backups.iter().map(String::as_str).collect();
            let hint = closest(name, &known);
            self.push(
                field,
                "backup",
                name,
                format!("unknown backup {name:?}; declared: {known:?}"),
                hint,
            );
        }
    }

    fn duration(&mut self, field: String, key: &str, d: &GoDuration) {
        if let Some(e) = d.error() {
            let value = d.text();
            self.push(field, key, value, e.to_string(), None);
        }
    }

    fn subcommand(&mut self, field: String, value: &str, allow_snapshot: bool) {
        let ok = SUBCOMMANDS.contains(&value) || (allow_snapshot && value == "snapshot");
        if !ok {
            let mut known: Vec<&str> = SUBCOMMANDS.to_vec();
            if allow_snapshot {
                known.push("snapshot");
            }
            self.push(
                field,
                "subcommand",
                value,
                format!("unknown subcommand {value:?}; one of {known:?}"),
                closest(value, &known),
            );
        }
    }

    /// One check a suite element declared (see [`m::Checks`]).
    fn check(&mut self, check: m::Check<'_>) {
        match check {
            m::Check::Backup { field, name } => self.backup(field, name),
            m::Check::Subcommand {
                field,
                value,
                snapshot,
            } => self.subcommand(field, value, snapshot),
            m::Check::Duration { field, key, value } => self.duration(field, key, value),
            m::Check::Predicate { field, that } => self.predicate(&field, that),
            m::Check::Broken {
                field,
                key,
                value,
                message,
                choices,
            } => {
                let hint = closest(&value, choices);
                self.push(field, key, &value, message, hint);
            }
        }
    }

    fn predicate(&mut self, field: &str, p: &Predicate) {
        match p {
            Predicate::RecordExists(r)
            | Predicate::RecordPending(r)
            | Predicate::RecordRetried(r) => {
                self.backup(format!("{field}.backup"), &r.backup);
                if r.n == 0 {
                    self.push(
                        format!("{field}.n"),
                        "n",
                        "0",
                        "records are numbered from 1".into(),
                        None,
                    );
                }
            }
            Predicate::Phase(r) => self.backup(format!("{field}.backup"), &r.backup),
            Predicate::SubPhase(r) => {
                self.backup(format!("{field}.backup"), &r.backup);
                self.subcommand(format!("{field}.subcommand"), &r.subcommand, false);
            }
            Predicate::Condition(r) => {
                self.backup(format!("{field}.backup"), &r.backup);
                if let Some(s) = &r.subcommand {
                    self.subcommand(format!("{field}.subcommand"), s, false);
                }
            }
            Predicate::JobFailed(r) | Predicate::JobExists(r) | Predicate::JobComplete(r) => {
                self.backup(format!("{field}.backup"), &r.backup);
                self.subcommand(format!("{field}.subcommand"), &r.subcommand, true);
            }
            Predicate::Deleted(r) => self.backup(format!("{field}.backup"), &r.backup),
            Predicate::AllOf(ps) | Predicate::AnyOf(ps) => {
                if ps.is_empty() {
                    self.push(
                        field.to_owned(),
                        "allOf",
                        "",
                        "an empty list of conditions".into(),
                        None,
                    );
                }
                for (i, q) in ps.iter().enumerate() {
                    self.predicate(&format!("{field}[{i}]"), q);
                }
            }
            Predicate::Not(q) => self.predicate(&format!("{field}.not"), q),
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Check `suite` (parsed from `text`); fixtures resolve against `root`.
pub fn validate(suite: &Suite, text: &str, root: &Path) -> Vec<Problem> {
    let mut c = Checker {
        text,
        backups: BTreeSet::new(),
        problems: Vec::new(),
    };
    if !is_dns_label(&suite.name) {
        c.push(
            "name".into(),
            "name",
            &suite.name,
            "must be lowercase letters, digits and `-`, at most 40 characters".into(),
            None,
        );
    }
    if suite.clauses.is_empty() {
        c.push(
            "clauses".into(),
            "clauses",
            "",
            "name at least one contract clause (LBR-1 … LBR-17)".into(),
            None,
        );
    }
    for (i, clause) in suite.clauses.iter().enumerate() {
        c.clause(i, clause);
    }
    if let Some(t) = &suite.timeout {
        c.duration("timeout".into(), "timeout", t);
    }
    if suite.backups.is_empty() {
        c.push(
            "backups".into(),
            "backups",
            "",
            "declare at least one Backup".into(),
            None,
        );
    }
    for (i, b) in suite.backups.iter().enumerate() {
        c.declared_backup(&format!("backups[{i}]"), b, root);
    }
    c.plans(suite);
    if suite.steps.is_empty() {
        c.push(
            "steps".into(),
            "steps",
            "",
            "a suite needs at least one step".into(),
            None,
        );
    }
    for (i, step) in suite.steps.iter().enumerate() {
        let mut checks = Vec::new();
        step.checks(&format!("steps[{i}]"), &mut checks);
        for check in checks {
            c.check(check);
        }
    }
    c.problems
}

/// The checks of the suite's top-level declarations, in the order [`validate`] makes them.
impl Checker<'_> {
    /// `clauses[i]` names a contract clause; a near miss (`lbr 3`) gets a hint.
    fn clause(&mut self, i: usize, clause: &str) {
        let valid = CLAUSES.contains(&clause);
        if !valid {
            let hint = clause
                .to_uppercase()
                .strip_prefix("LBR")
                .and_then(|n| n.trim_start_matches(['-', '_', ' ']).parse::<u32>().ok())
                .map(|n| format!("LBR-{n}"))
                .filter(|h| CLAUSES.contains(&h.as_str()))
                .filter(|h| h != clause);
            self.push(
                format!("clauses[{i}]"),
                "clauses",
                "",
                format!("{clause:?} is not a contract clause (LBR-1 … LBR-17)"),
                hint,
            );
        }
    }

    /// One declared Backup (`field`): its name (a DNS label, declared once; remembered for
    /// the references), mode, first subcommand and fixture.
    fn declared_backup(&mut self, field: &str, b: &m::BackupDecl, root: &Path) {
        if !is_dns_label(&b.name) {
            self.push(
                format!("{field}.name"),
                "name",
                &b.name,
                "must be a DNS label (lowercase letters, digits, `-`)".into(),
                None,
            );
        }
        if !self.backups.insert(b.name.clone()) {
            self.push(
                format!("{field}.name"),
                "name",
                &b.name,
                format!("backup {:?} is declared twice", b.name),
                None,
            );
        }
        if let Some(m) = &b.mode
            && m != "log"
            && m != "snapshot"
        {
            self.push(
                format!("{field}.mode"),
                "mode",
                m,
                format!("unknown mode {m:?}; one of [\"log\", \"snapshot\"]"),
                closest(m, &["log", "snapshot"]),
            );
        }
        if let Some(s) = &b.subcommand
            && !["log-start", "log-stop", "log-pause"].contains(&s.as_str())
        {
            let known = ["log-start", "log-stop", "log-pause"];
            self.push(
                format!("{field}.subcommand"),
                "subcommand",
                s,
                format!("unknown subcommand {s:?}; one of {known:?}"),
                closest(s, &known),
            );
        }
        if let Some(f) = &b.fixture
            && !root.join(f).is_file()
        {
            self.push(
                format!("{field}.fixture"),
                "fixture",
                f,
                format!("fixture {f:?} not found under {}", root.display()),
                None,
            );
        }
    }

    /// fake-br plans: a declared Backup, a known subcommand, durations that parse.
    fn plans(&mut self, suite: &Suite) {
        for (backup, subs) in &suite.plans {
            self.backup(format!("plans.{backup}"), backup);
            for (sub, steps) in subs {
                self.subcommand(format!("plans.{backup}.{sub}"), sub, true);
                for (i, s) in steps.iter().enumerate() {
                    if let Some(d) = &s.delay {
                        self.duration(
                            format!("plans.{backup}.{sub}[{i}].delay"),
                            "delay",
                            &GoDuration::from(d.as_str()),
                        );
                    }
                }
            }
        }
    }
}
