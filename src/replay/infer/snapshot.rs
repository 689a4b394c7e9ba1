//! LBR-13 for a replayed snapshot backup: the operator's own retry — a record at each
//! failure, up to `maxRetryTimes + 1`, `Failed`/`AlreadyFailed` when they run out — and
//! none of the log backup's retry events.

use std::fmt::Write;

use super::{Expect, Situation};

/// The assertions (`max`: the effective `maxRetryTimes`).
pub(super) fn write_assertions(y: &mut String, s: &Situation, expect: Expect, max: i64) {
    let b = &s.backup;
    if expect == Expect::SnapshotExhaust {
        let _ = writeln!(
            y,
            "  # LBR-13: the operator's retries run out: Failed (AlreadyFailed), at most maxRetryTimes + 1 records.\n  - assert:\n      eventually:\n        that: {{condition: {{backup: {b}, type: Failed, reason: AlreadyFailed}}}}\n  - assert:\n      never:\n        that: {{recordExists: {{backup: {b}, n: {}}}}}\n        for: 3s",
            max + 2
        );
    } else {
        let _ = writeln!(
            y,
            "  # LBR-13: each failure recorded and retried by the operator's algorithm, then the backup completes.\n  - assert:\n      eventually:\n        that: {{allOf: [{{recordExists: {{backup: {b}, n: {}}}}}, {{phase: {{backup: {b}, phase: Complete}}}}]}}",
            s.failures
        );
    }
    let _ = writeln!(
        y,
        "  - assert:\n      events:\n        backup: {b}\n        expect:\n          - {{reason: RetryStarted, count: 0}}\n          - {{reason: RetryExhausted, count: 0}}"
    );
}
