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

impl Step for SnapshotStep {
    const KIND: &'static str = "snapshot";

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        // Let in-flight writes and events land: until nothing that the snapshot shows has
        // changed for QUIET (a slow API stretches the last acknowledgement), bounded.
        let until = cx.within(Some(SETTLE));
        let mut seen = cx.recorder.trace.len();
        let mut quiet_from = tokio::time::Instant::now();
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
