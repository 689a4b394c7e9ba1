//! Where retry state lives — the one seam between the seed's final design (persisted in
//! `status.backoffRetryStatus`) and its rejected scheme A (an in-memory workqueue count that
//! a restart resets, kept so suites can prove they catch it). Log-mode code asks these
//! questions and never branches on the strategy itself.

use std::sync::{Mutex, MutexGuard};

use lbc_api::BackoffRetryRecord;

use super::{RetryStrategy, WorkqueueMemory};
use crate::retry::pending;

/// The strategy of one reconcile, for the Backup subcommand `key` (`<ns>/<name>/<sub>`).
pub(crate) struct Strategy<'a> {
    pub kind: RetryStrategy,
    pub memory: &'a Mutex<WorkqueueMemory>,
    pub key: String,
}

impl Strategy<'_> {
    fn memory(&self) -> MutexGuard<'_, WorkqueueMemory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The retry waiting to run, as this strategy knows it.
    pub fn pending<'r>(&self, live: &'r [BackoffRetryRecord]) -> Option<&'r BackoffRetryRecord> {
        let p = pending(live);
        match self.kind {
            RetryStrategy::Persisted => p,
            // The schedule lives in memory: a restart forgets it.
            RetryStrategy::Workqueue => p.filter(|_| self.memory().scheduled.contains(&self.key)),
        }
    }

    /// The attempt that should be running: the last (retried) record's, or the first.
    pub fn attempt(&self, live: &[BackoffRetryRecord]) -> u32 {
        match self.kind {
            RetryStrategy::Persisted => live
                .last()
                .map_or(0, |r| u32::try_from(r.retry_num).unwrap_or(0)),
            RetryStrategy::Workqueue => self.memory().counts.get(&self.key).copied().unwrap_or(0),
        }
    }

    /// The records a failure of the Job `job_uid` is counted against; `None` when this
    /// failure was already handled.
    pub fn counted(
        &self,
        live: &[BackoffRetryRecord],
        job_uid: &str,
    ) -> Option<Vec<BackoffRetryRecord>> {
        match self.kind {
            RetryStrategy::Persisted => Some(live.to_vec()),
            RetryStrategy::Workqueue => {
                let mem = self.memory();
                if mem.seen.contains(job_uid) {
                    return None;
                }
                let count = mem.counts.get(&self.key).copied().unwrap_or(0) as usize;
                Some(live.iter().rev().take(count).rev().cloned().collect())
            }
        }
    }

    /// The records to store with `record` appended, judged on the fresh object; `None`
    /// when the fresh object shows the failure was already recorded.
    pub fn append(
        &self,
        all: &[BackoffRetryRecord],
        fresh_live: &[BackoffRetryRecord],
        record: &BackoffRetryRecord,
    ) -> Option<Vec<BackoffRetryRecord>> {
        match self.kind {
            RetryStrategy::Persisted => {
                let fresh_attempt = fresh_live.last().map_or(0, |r| r.retry_num);
                if pending(fresh_live).is_some() || fresh_attempt >= record.retry_num {
                    return None;
                }
                let mut records = fresh_live.to_vec();
                records.push(record.clone());
                Some(records)
            }
            RetryStrategy::Workqueue => {
                let mut records = all.to_vec();
                records.push(record.clone());
                Some(records)
            }
        }
    }

    /// A failure of `job_uid` was recorded.
    pub fn recorded(&self, job_uid: String) {
        if self.kind == RetryStrategy::Workqueue {
            let mut mem = self.memory();
            mem.seen.insert(job_uid);
            mem.scheduled.insert(self.key.clone());
            *mem.counts.entry(self.key.clone()).or_default() += 1;
        }
    }
}
