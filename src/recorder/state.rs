//! The cluster as of one point of the trace, advanced one watch event at a time.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use lbc_api::Backup;

use super::{Entry, Kind, Trace};

/// The suite namespace's Backups, Jobs, Pods (in brief) and Events as of some point of the
/// trace.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub backups: BTreeMap<String, Backup>,
    pub jobs: BTreeMap<String, Job>,
    pub pods: BTreeMap<String, PodBrief>,
    pub events: BTreeMap<String, Event>,
}

/// What the harness needs of a Pod: its Job and phase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodBrief {
    pub job: Option<String>,
    pub phase: Option<String>,
}

impl PodBrief {
    fn of(object: &serde_json::Value) -> Self {
        let labels = &object["metadata"]["labels"];
        let job = ["batch.kubernetes.io/job-name", "job-name"]
            .iter()
            .find_map(|k| labels[*k].as_str())
            .map(str::to_owned);
        Self {
            job,
            phase: object["status"]["phase"].as_str().map(str::to_owned),
        }
    }
}

/// Whether a Job has a `Complete` or `Failed` condition that is true.
pub fn job_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
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
            Kind::Pod if e.deleted => {
                self.pods.remove(&e.name);
            }
            Kind::Pod => {
                self.pods.insert(e.name.clone(), PodBrief::of(&e.object));
            }
        }
    }

    /// Jobs still on their way to an outcome: not finished, and no Pod of theirs is running
    /// (none yet, pending, or all ended while the Job controller has not caught up). A Job
    /// whose Pod runs (e.g. hangs) is as settled as it will get.
    pub fn unsettled_jobs(&self) -> Vec<&str> {
        self.jobs
            .iter()
            .filter(|(_, j)| !job_finished(j))
            .filter(|(name, _)| {
                !self.pods.values().any(|p| {
                    p.job.as_deref() == Some(name.as_str()) && p.phase.as_deref() == Some("Running")
                })
            })
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Jobs not finished at all, whatever their Pods do.
    pub fn unfinished_jobs(&self) -> Vec<&str> {
        self.jobs
            .iter()
            .filter(|(_, j)| !job_finished(j))
            .map(|(name, _)| name.as_str())
            .collect()
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
            received: std::time::Instant::now(),
            kind: Kind::Job,
            name: name.into(),
            deleted,
            object: json!({"metadata": {"name": name}}),
        }
    }

    fn entry(kind: Kind, name: &str, object: serde_json::Value) -> Entry {
        Entry::for_test(kind, name, object)
    }

    fn pod(name: &str, job: &str, phase: &str) -> Entry {
        entry(
            Kind::Pod,
            name,
            json!({"metadata": {"name": name, "labels": {"batch.kubernetes.io/job-name": job}},
                   "status": {"phase": phase}}),
        )
    }

    fn job_with(name: &str, condition: Option<&str>) -> Entry {
        let conditions: Vec<_> = condition
            .map(|c| json!({"type": c, "status": "True"}))
            .into_iter()
            .collect();
        entry(
            Kind::Job,
            name,
            json!({"metadata": {"name": name}, "status": {"conditions": conditions}}),
        )
    }

    #[test]
    fn a_job_is_settled_when_finished_or_running() {
        let mut s = State::default();
        s.apply(&job_with("j", None));
        assert_eq!(s.unsettled_jobs(), ["j"], "no Pod yet");
        s.apply(&pod("p", "j", "Pending"));
        assert_eq!(s.unsettled_jobs(), ["j"], "Pod pending");
        s.apply(&pod("p", "j", "Running"));
        assert!(
            s.unsettled_jobs().is_empty(),
            "a running (maybe hanging) Pod"
        );
        s.apply(&pod("p", "j", "Succeeded"));
        assert_eq!(
            s.unsettled_jobs(),
            ["j"],
            "the Job controller has not caught up"
        );
        s.apply(&job_with("j", Some("Complete")));
        assert!(s.unsettled_jobs().is_empty());
        s.apply(&job_with("k", Some("Failed")));
        s.apply(&pod("q", "other", "Running"));
        assert!(
            s.unsettled_jobs().is_empty(),
            "another Job's Pod does not count"
        );
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
