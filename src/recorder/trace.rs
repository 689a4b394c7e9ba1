//! The recorded trace: watch events in arrival order, shared with the watch tasks.

use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

/// What kind of object an entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    Backup,
    Job,
    Pod,
    Event,
}

/// One watch event.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// When the harness received it.
    pub at: Timestamp,
    /// The same on the monotonic clock (waits measure with it: a wall-clock step must not
    /// shorten them).
    #[serde(skip)]
    pub received: std::time::Instant,
    pub kind: Kind,
    pub name: String,
    pub deleted: bool,
    pub object: serde_json::Value,
}

#[cfg(test)]
impl Entry {
    /// An entry for tests, at the epoch.
    pub(crate) fn for_test(kind: Kind, name: &str, object: serde_json::Value) -> Self {
        Self {
            at: Timestamp::UNIX_EPOCH,
            received: std::time::Instant::now(),
            kind,
            name: name.into(),
            deleted: false,
            object,
        }
    }
}

/// The recorded trace, shared with the watch tasks.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Trace {
    // A panic while holding the lock leaves the entries intact (pushes are atomic), so a
    // poisoned lock is still read.
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the entries from `from` on.
    pub fn since(&self, from: usize) -> Vec<Entry> {
        self.lock()
            .get(from..)
            .map(<[Entry]>::to_vec)
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn push(&self, e: Entry) {
        self.lock().push(e);
    }
}
