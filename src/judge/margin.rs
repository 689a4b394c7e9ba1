//! Margins as data: how far each retry stood from its `expectedRetryAt` and how long each
//! detection took. The judge computes them once; the snapshot, the baseline, the reports
//! and the timeline read them and never compare against a bound themselves.

use std::fmt;

use k8s_openapi::jiff::SignedDuration;
use lbc_api::BackoffRetryRecord;
use serde::Serialize;

use super::contract::LATENESS;
use super::instant;

/// A retry against its `expectedRetryAt` (LBR-3): the one place the lateness bound is read.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "verdict", content = "seconds", rename_all = "camelCase")]
pub enum Punctuality {
    /// Before `expectedRetryAt`, by this many seconds.
    Early(f64),
    /// Within the bound, this many seconds after.
    OnTime(f64),
    /// Past the bound: this many seconds after.
    Late(f64),
}

impl Punctuality {
    /// A retry `late` seconds after `expectedRetryAt` (negative: before it).
    pub fn of(late: f64) -> Self {
        if late < 0.0 {
            Self::Early(-late)
        } else if late <= LATENESS.as_secs_f64() {
            Self::OnTime(late)
        } else {
            Self::Late(late)
        }
    }

    /// Seconds after `expectedRetryAt` (negative: before).
    pub fn late_by(self) -> f64 {
        match self {
            Self::Early(s) => -s,
            Self::OnTime(s) | Self::Late(s) => s,
        }
    }

    pub fn on_time(self) -> bool {
        matches!(self, Self::OnTime(_))
    }

    /// The bound it was judged by, seconds (for messages).
    pub fn bound() -> u64 {
        LATENESS.as_secs()
    }
}

/// What a record claims, in the contract's terms: the delay it persisted and when it says
/// the retry ran. These are the controller's own timestamps (whole seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Claim {
    /// `expectedRetryAt − detectFailedAt`, when both are set (negative: expected before
    /// the detection, a broken record that must not read as a delay).
    pub delay: Option<SignedDuration>,
    pub real: RealRetry,
}

/// A record's `realRetryAt` against its `expectedRetryAt`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RealRetry {
    /// Not set yet.
    Pending,
    /// Set, without an `expectedRetryAt` to measure it by.
    WithoutExpected,
    Measured(Punctuality),
}

/// The claim of record `r`.
pub fn claim(r: &BackoffRetryRecord) -> Claim {
    claim_with(r, &[])
}

/// The seconds of `down` (intervals the harness had the controller down) between `from`
/// and `to`: the part of a retry's lateness the controller is not answerable for.
pub fn down_between(
    from: k8s_openapi::jiff::Timestamp,
    to: k8s_openapi::jiff::Timestamp,
    down: &[(k8s_openapi::jiff::Timestamp, k8s_openapi::jiff::Timestamp)],
) -> f64 {
    down.iter()
        .map(|(a, b)| {
            (*b).min(to)
                .duration_since((*a).max(from))
                .as_secs_f64()
                .max(0.0)
        })
        .sum()
}

/// The claim of record `r`, its lateness less the time the controller was down after
/// `expectedRetryAt` (as the schedule judge counts a retry).
pub fn claim_with(
    r: &BackoffRetryRecord,
    down: &[(k8s_openapi::jiff::Timestamp, k8s_openapi::jiff::Timestamp)],
) -> Claim {
    let delay = match (instant(&r.detect_failed_at), instant(&r.expected_retry_at)) {
        (Some(d), Some(e)) => Some(e.duration_since(d)),
        _ => None,
    };
    let real = match (instant(&r.expected_retry_at), instant(&r.real_retry_at)) {
        (Some(e), Some(x)) => RealRetry::Measured(Punctuality::of(
            x.duration_since(e).as_secs_f64() - down_between(e, x, down),
        )),
        (_, None) => RealRetry::Pending,
        (None, Some(_)) => RealRetry::WithoutExpected,
    };
    Claim { delay, real }
}

/// What the harness measured of one record of one Backup.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordMargin {
    /// The suite's name for the Backup.
    pub backup: String,
    /// Its name in the cluster.
    pub actual: String,
    pub retry_num: i32,
    /// Seconds from the harness seeing the Job fail to it seeing the record.
    pub detection_lag: Option<f64>,
    /// The retry as the harness saw it (its new Job, or for a recovery its `realRetryAt`),
    /// less `excused`.
    pub retry: Option<Punctuality>,
    /// Seconds after `expectedRetryAt` the controller was down (the harness stopped or
    /// killed it): not counted against the retry.
    pub excused: f64,
}

impl fmt::Display for RecordMargin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.retry_num;
        write!(f, "{}: record {n}", self.backup)?;
        if let Some(lag) = self.detection_lag {
            write!(f, " seen {lag:.2} s after its Job failed")?;
        }
        if let Some(p) = self.retry {
            write!(
                f,
                "; retry seen {:+.2} s after expectedRetryAt",
                p.late_by()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(-0.5, Punctuality::Early(0.5))]
    #[case(0.0, Punctuality::OnTime(0.0))]
    #[case(2.0, Punctuality::OnTime(2.0))]
    #[case(2.01, Punctuality::Late(2.01))]
    fn lateness_has_one_bound(#[case] late: f64, #[case] want: Punctuality) {
        assert_eq!(Punctuality::of(late), want);
        assert!((Punctuality::of(late).late_by() - late).abs() < 1e-9);
    }

    #[test]
    fn a_record_expected_before_its_detection_keeps_its_sign() {
        let r: BackoffRetryRecord = serde_json::from_value(serde_json::json!({
            "retryNum": 1, "detectFailedAt": "2026-01-01T00:00:10Z",
            "expectedRetryAt": "2026-01-01T00:00:04Z"}))
        .unwrap();
        assert_eq!(claim(&r).delay, Some(SignedDuration::from_secs(-6)));
    }

    #[rstest]
    // Down from 1 s before expectedRetryAt to 3 s after it: 3 s of the 4 s are excused.
    #[case::down_across_expected(&[("00:00:09", "00:00:13")], Punctuality::OnTime(1.0))]
    // Down before expectedRetryAt only: nothing excused.
    #[case::down_before(&[("00:00:02", "00:00:08")], Punctuality::Late(4.0))]
    #[case::never_down(&[], Punctuality::Late(4.0))]
    fn a_claimed_lateness_is_excused_by_the_downtime_after_expected_retry_at(
        #[case] down: &[(&str, &str)],
        #[case] want: Punctuality,
    ) {
        let at = |t: &str| {
            format!("2026-01-01T{t}Z")
                .parse::<k8s_openapi::jiff::Timestamp>()
                .unwrap()
        };
        let r: BackoffRetryRecord = serde_json::from_value(serde_json::json!({
            "retryNum": 1, "detectFailedAt": "2026-01-01T00:00:04Z",
            "expectedRetryAt": "2026-01-01T00:00:10Z", "realRetryAt": "2026-01-01T00:00:14Z"}))
        .unwrap();
        let down: Vec<_> = down.iter().map(|(a, b)| (at(a), at(b))).collect();
        match claim_with(&r, &down).real {
            RealRetry::Measured(p) => assert!(
                (p.late_by() - want.late_by()).abs() < 1e-6
                    && std::mem::discriminant(&p) == std::mem::discriminant(&want),
                "{p:?}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_margin_reads_as_one_line() {
        let m = RecordMargin {
            backup: "lb1".into(),
            actual: "lb1-x".into(),
            retry_num: 2,
            detection_lag: Some(0.31),
            retry: Some(Punctuality::OnTime(0.4)),
            excused: 0.0,
        };
        assert_eq!(
            m.to_string(),
            "lb1: record 2 seen 0.31 s after its Job failed; retry seen +0.40 s after expectedRetryAt"
        );
    }
}
