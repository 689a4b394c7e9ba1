//! `snapshot`: take the normalized outcome (compared with the committed snapshot).

use std::time::Duration;

use super::{Shown, Step, StepError};
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

/// When the quiet began (monotonic clock): the later of when the harness received the last
/// entry the snapshot shows and when the last step that acts on the cluster ended
/// (`acted_at`: its effects may still be on their way). `now` when neither is known: then
/// nothing proves quiet yet.
fn quiet_since(
    entries: &[crate::recorder::Entry],
    acted_at: Option<std::time::Instant>,
    now: std::time::Instant,
) -> std::time::Instant {
    let last_change = entries.iter().rev().find(|e| shown(e)).map(|e| e.received);
    // `Option`'s order puts `None` first: the later of the two known times.
    last_change.max(acted_at).map_or(now, |t| t.min(now))
}

impl Step for SnapshotStep {
    const KIND: &'static str = "snapshot";
    const MOVES_CURSOR: bool = false;
    const ACTS: bool = false;
    const SHOWN: Shown = Shown::Not;

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        // Let in-flight writes and events land: until nothing that the snapshot shows has
        // changed for QUIET (a slow API stretches the last acknowledgement), bounded. The
        // quiet counts from the last such change received or the last action, whichever is
        // later, so a suite that ends with a `never` window (already quiet, and watched
        // throughout) is not made to wait again.
        let until = cx.within(Some(SETTLE));
        let entries = cx.recorder.trace.since(0);
        let mut seen = entries.len();
        let mut quiet_from = tokio::time::Instant::from_std(quiet_since(
            &entries,
            cx.acted_at,
            std::time::Instant::now(),
        ));
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
            &cx.controller.downtime(),
        ));
        cx.fingerprint = Some(crate::baseline::fingerprint(
            &cx.names,
            cx.cursor.state(),
            &entries,
            &cx.namespace,
            &cx.controller.downtime(),
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{Entry, Kind};
    use serde_json::json;
    use std::time::Instant;

    fn ago(now: Instant, secs: f64) -> Instant {
        now.checked_sub(Duration::from_secs_f64(secs))
            .expect("a time after the boot")
    }

    fn at(kind: Kind, object: serde_json::Value, received: Instant) -> Entry {
        let mut e = Entry::for_test(kind, "x", object);
        e.received = received;
        e
    }

    #[test]
    fn a_suite_quiet_for_longer_than_quiet_is_not_made_to_wait() {
        let now = Instant::now();
        let entries = [at(Kind::Backup, json!({}), ago(now, 5.0))];
        assert_eq!(quiet_since(&entries, None, now), ago(now, 5.0));
    }

    #[test]
    fn the_quiet_counts_from_the_last_change_shown() {
        let now = Instant::now();
        let entries = [
            at(Kind::Backup, json!({}), ago(now, 5.0)),
            at(Kind::Job, json!({}), ago(now, 0.2)),
        ];
        assert_eq!(quiet_since(&entries, None, now), ago(now, 0.2));
    }

    #[test]
    fn an_action_after_the_last_change_restarts_the_quiet() {
        // E.g. `controller: restart` right before the snapshot: its effects are still to come.
        let now = Instant::now();
        let entries = [at(Kind::Backup, json!({}), ago(now, 5.0))];
        assert_eq!(
            quiet_since(&entries, Some(ago(now, 0.1)), now),
            ago(now, 0.1)
        );
        assert_eq!(quiet_since(&[], Some(ago(now, 3.0)), now), ago(now, 3.0));
    }

    #[test]
    fn events_about_other_objects_do_not_count_and_nothing_recorded_proves_no_quiet() {
        let now = Instant::now();
        let other = json!({"regarding": {"kind": "Node"}});
        let entries = [
            at(Kind::Backup, json!({}), ago(now, 5.0)),
            at(Kind::Event, other, now),
        ];
        assert_eq!(quiet_since(&entries, None, now), ago(now, 5.0));
        assert_eq!(quiet_since(&[], None, now), now);
        let about = json!({"regarding": {"kind": "Backup"}});
        assert_eq!(quiet_since(&[at(Kind::Event, about, now)], None, now), now);
    }
}
