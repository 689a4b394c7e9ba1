//! The cluster as of one point of the trace, advanced one watch event at a time.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use lbc_api::Backup;

use super::{Entry, Kind, Trace};

/// The suite namespace's Backups, Jobs and Events as of some point of the trace.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub backups: BTreeMap<String, Backup>,
    pub jobs: BTreeMap<String, Job>,
    pub events: BTreeMap<String, Event>,
}

impl State {
    /// Apply one watch event.
    pub fn apply(&mut self, e: &Entry) {
        fn put<T: serde::de::DeserializeOwned>(map: &mut BTreeMap<String, T>, e: &Entry) {
            if e.deleted {
                map.remove(&e.name);
            } else if let Ok(v) = serde_json::from_value(e.object.clone()) {
                map.insert(e.name.clone(), v);
            }
        }
        match e.kind {
            Kind::Backup => put(&mut self.backups, e),
            Kind::Job => put(&mut self.jobs, e),
            Kind::Event => put(&mut self.events, e),
            Kind::Pod => {}
        }
    }

    /// The state after `entries` (for tests and one-off reads of a finished trace).
    pub fn replay(entries: &[Entry]) -> Self {
        let mut s = Self::default();
        for e in entries {
            s.apply(e);
        }
        s
    }
}

/// A position in a [`Trace`] and the [`State`] there. Each entry is applied once; callers
/// step through new entries with [`Cursor::step`] to see every intermediate state.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    state: State,
    seen: usize,
    pending: std::collections::VecDeque<Entry>,
}

impl Cursor {
    /// The state at the current position.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// How many entries have been applied.
    pub fn position(&self) -> usize {
        self.seen - self.pending.len()
    }

    /// Apply the next entry of `trace`, if there is one; returns it.
    pub fn step(&mut self, trace: &Trace) -> Option<Entry> {
        if self.pending.is_empty() {
            let fresh = trace.since(self.seen);
            self.seen += fresh.len();
            self.pending.extend(fresh);
        }
        let e = self.pending.pop_front()?;
        self.state.apply(&e);
        Some(e)
    }

    /// Apply everything recorded so far.
    pub fn catch_up(&mut self, trace: &Trace) {
        while self.step(trace).is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn job(name: &str, deleted: bool) -> Entry {
        Entry {
            at: Timestamp::UNIX_EPOCH,
            kind: Kind::Job,
            name: name.into(),
            deleted,
            object: json!({"metadata": {"name": name}}),
        }
    }

    #[test]
    fn a_cursor_applies_each_entry_once_in_order() {
        let trace = Trace::default();
        trace.push(job("a", false));
        trace.push(job("b", false));
        let mut c = Cursor::default();
        assert_eq!(c.step(&trace).map(|e| e.name), Some("a".into()));
        assert_eq!(c.state().jobs.len(), 1);
        trace.push(job("a", true));
        c.catch_up(&trace);
        assert_eq!(c.position(), 3);
        assert_eq!(c.state().jobs.keys().collect::<Vec<_>>(), vec!["b"]);
        assert!(c.step(&trace).is_none());
    }
}
