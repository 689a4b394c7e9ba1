//! `snapshot`: take the normalized outcome (compared with the committed snapshot).

use std::time::Duration;

use super::{Step, StepError};
use crate::run::scope::Scope;
use crate::suite::model::SnapshotStep;

/// The longest the snapshot waits for Jobs to reach their outcome.
const SETTLE: Duration = Duration::from_secs(10);

/// The longest the snapshot waits for a Job whose Pod still runs.
const RUNNING_SETTLE: Duration = Duration::from_secs(3);

/// How long nothing the snapshot shows must change before it is taken.
const QUIET: Duration = Duration::from_millis(1500);

/// Whether `e` changes what a snapshot shows: any Backup, Job or Pod, and Events about a
/// Backup (not, say, a controller's periodic events about other objects).
fn shown(e: &crate::recorder::Entry) -> bool {
    e.kind != crate::recorder::Kind::Event || e.object["regarding"]["kind"] == "Backup"
}

/// When the quiet began: `now` less the time since the last entry the snapshot shows
/// (received by the harness), or `now` when there is none (nothing proves quiet yet).
fn quiet_since(entries: &[crate::recorder::Entry], now: jiff::Timestamp) -> tokio::time::Instant {
    let start = tokio::time::Instant::now();
    let Some(last) = entries.iter().rev().find(|e| shown(e)) else {
        return start;
    };
    let quiet_for = now
        .duration_since(last.at)
        .try_into()
        .unwrap_or(Duration::ZERO)
        .min(QUIET);
    start.checked_sub(quiet_for).unwrap_or(start)
}

impl Step for SnapshotStep {
    const KIND: &'static str = "snapshot";

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        // Let in-flight writes and events land: until nothing that the snapshot shows has
        // changed for QUIET (a slow API stretches the last acknowledgement), bounded. The
        // quiet counts from the last such change received, so a suite that ends with a
        // `never` window (already quiet) is not made to wait again.
        let until = cx.within(Some(SETTLE));
        let entries = cx.recorder.trace.since(0);
        let mut seen = entries.len();
        let mut quiet_from = quiet_since(&entries, jiff::Timestamp::now());
        loop {
            let deadline = (quiet_from + QUIET).min(until);
            if !cx.recorder.changed_before(deadline).await {
                break;
            }
            let new = cx.recorder.trace.since(seen);
            seen += new.len();
            if new.iter().any(shown) {
                quiet_from = tokio::time::Instant::now();
            }
        }
        cx.cursor.catch_up(&cx.recorder.trace);
        // A Job on its way to an outcome (the Job controller lags on a busy machine) would
        // make the snapshot a race: wait for it, bounded, then for the controller's reaction.
        let until = cx.within(Some(SETTLE));
        let mut waited = false;
        while !cx.cursor.state().unsettled_jobs().is_empty()
            && cx.recorder.changed_before(until).await
        {
            waited = true;
            cx.cursor.catch_up(&cx.recorder.trace);
        }
        // A Job whose Pod still shows Running may be one whose program has exited while the
        // node (a container runtime under load, a real kubelet) has not reported it yet: give
        // it a little longer. One that hangs on purpose costs the suite this much once.
        let until = cx.within(Some(RUNNING_SETTLE));
        while !cx.cursor.state().unfinished_jobs().is_empty()
            && cx.recorder.changed_before(until).await
        {
            waited = true;
            cx.cursor.catch_up(&cx.recorder.trace);
        }
        if waited {
            tokio::time::sleep(Duration::from_millis(500).min(cx.left())).await;
            cx.cursor.catch_up(&cx.recorder.trace);
        }
        let g = self
            .granularity
            .as_ref()
            .map_or(Duration::from_secs(1), |d| d.get());
        let entries = cx.recorder.trace.since(0);
        cx.snapshot = Some(crate::snapshot::normalize(
            &cx.names,
            cx.cursor.state(),
            &entries,
            g,
        ));
        cx.fingerprint = Some(crate::baseline::fingerprint(
            &cx.names,
            cx.cursor.state(),
            &entries,
            &cx.namespace,
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{Entry, Kind};
    use serde_json::json;

    fn at(kind: Kind, object: serde_json::Value, secs_before: f64, now: jiff::Timestamp) -> Entry {
        let mut e = Entry::for_test(kind, "x", object);
        e.at = now - jiff::SignedDuration::from_secs_f64(secs_before);
        e
    }

    /// How long ago the quiet began, as seen now.
    fn quiet_for(entries: &[Entry], now: jiff::Timestamp) -> Duration {
        quiet_since(entries, now).elapsed()
    }

    #[test]
    fn a_suite_quiet_for_longer_than_quiet_is_not_made_to_wait() {
        let now = jiff::Timestamp::now();
        let entries = [at(Kind::Backup, json!({}), 5.0, now)];
        assert!(quiet_for(&entries, now) >= QUIET);
    }

    #[test]
    fn a_recent_change_leaves_the_rest_of_the_quiet_to_wait() {
        let now = jiff::Timestamp::now();
        let entries = [
            at(Kind::Backup, json!({}), 5.0, now),
            at(Kind::Job, json!({}), 0.2, now),
        ];
        let q = quiet_for(&entries, now);
        assert!(
            q >= Duration::from_millis(200) && q < Duration::from_millis(600),
            "{q:?}"
        );
    }

    #[test]
    fn events_about_other_objects_do_not_count_and_nothing_recorded_proves_no_quiet() {
        let now = jiff::Timestamp::now();
        let other = json!({"regarding": {"kind": "Node"}});
        let entries = [
            at(Kind::Backup, json!({}), 5.0, now),
            at(Kind::Event, other, 0.0, now),
        ];
        assert!(quiet_for(&entries, now) >= QUIET);
        assert!(quiet_for(&[], now) < Duration::from_millis(100));
        let about = json!({"regarding": {"kind": "Backup"}});
        let entries = [at(Kind::Event, about, 0.0, now)];
        assert!(quiet_for(&entries, now) < Duration::from_millis(100));
    }
}
