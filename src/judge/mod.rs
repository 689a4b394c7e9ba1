//! The judge: verdicts over the recorded trace, by `CONTRACT.md` alone. It never borrows
//! from the system under test — its arithmetic ([`contract`]) is written here, its timing is
//! what the harness saw ([`schedule`]), events are counted however a recorder folded them
//! ([`events`]), and predicates ([`predicates`]) read only the protocol's fields.

pub mod check;
pub mod contract;
pub mod events;
pub mod gate;
pub mod margin;
pub mod metrics;
pub mod phases;
pub mod predicates;
pub mod quiet;
pub mod schedule;
pub mod verdict;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub use check::{Check, CheckState, Finding, Rule};
pub use events::{Occurrence, check_events, events_about};
pub use margin::{Punctuality, RecordMargin};
pub use phases::check_no_regression;
pub use predicates::{describe, eval, job_failed};
pub use schedule::{ScheduleCheck, check_schedule};
pub use verdict::{Finale, Verdict, after_steps, events_hold};

/// The suite's Backup names → their names in the cluster.
#[derive(Debug, Clone, Default)]
pub struct BackupNames(pub BTreeMap<String, String>);

impl BackupNames {
    /// The name in the cluster of the Backup the suite calls `decl` (itself if unknown).
    pub fn actual<'a>(&'a self, decl: &'a str) -> &'a str {
        self.0.get(decl).map_or(decl, String::as_str)
    }
}

/// A status time field as an instant (the CR keeps whole seconds).
pub fn instant(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}
