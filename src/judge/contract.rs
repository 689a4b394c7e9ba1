//! The contract's arithmetic, written again from `CONTRACT.md` on purpose: Go duration
//! strings, the policy defaults (300s / 2 / 30m), `min × 2^(n−1)`. The system under test
//! (the reference controller included) never supplies the yardstick it is measured with.

use std::time::Duration;

use lbc_api::BackoffRetryPolicy;

pub use crate::suite::duration::{NotADuration, go_duration};

/// CONTRACT Vocabulary: the CRD defaults of `spec.backoffRetryPolicy`.
pub const MIN_RETRY_DURATION: Duration = Duration::from_secs(300);
/// CONTRACT Vocabulary: `maxRetryTimes` default.
pub const MAX_RETRY_TIMES: u32 = 2;
/// CONTRACT Vocabulary: `retryTimeout` default (30m).
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// LBR-3's harness default lateness bound.
pub const LATENESS: Duration = Duration::from_secs(2);
/// LBR-1's harness default detection bound.
pub const DETECT_WITHIN: Duration = Duration::from_secs(10);

/// A policy as the contract reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub min_retry_duration: Duration,
    pub max_retry_times: u32,
    pub retry_timeout: Duration,
}

/// The policy of a Backup spec, with the CRD defaults for absent fields.
///
/// # Errors
/// The field (`minRetryDuration` or `retryTimeout`) that does not parse, and why.
pub fn policy(p: &BackoffRetryPolicy) -> Result<Policy, (&'static str, NotADuration)> {
    let min = match &p.min_retry_duration {
        Some(v) => go_duration(v).map_err(|e| ("minRetryDuration", e))?,
        None => MIN_RETRY_DURATION,
    };
    let timeout = match &p.retry_timeout {
        Some(v) => go_duration(v).map_err(|e| ("retryTimeout", e))?,
        None => RETRY_TIMEOUT,
    };
    Ok(Policy {
        min_retry_duration: min,
        // A negative count disables retry, as 0 does.
        max_retry_times: p
            .max_retry_times
            .map_or(MAX_RETRY_TIMES, |n| n.max(0) as u32),
        retry_timeout: timeout,
    })
}

/// LBR-2: the delay before retry `n` (1-based): `min × 2^(n−1)`; `None` when it does not
/// fit in a `Duration`.
///
/// ```
/// use logbackup_conformance::judge::contract::delay;
/// use std::time::Duration;
/// assert_eq!(delay(Duration::from_secs(2), 3), Some(Duration::from_secs(8)));
/// ```
pub fn delay(min: Duration, n: u32) -> Option<Duration> {
    let factor = 2u32.checked_pow(n.checked_sub(1)?)?;
    min.checked_mul(factor)
}

/// Whole seconds and a Go-ish rendering (`6s`, `1m30s`, `1.5s`) for messages and snapshots.
pub fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{}s", d.as_secs_f64());
    }
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    #[rstest]
    #[case(None, None, None, (300, 2, 1800))]
    #[case(Some("2s"), Some(0), Some("1m"), (2, 0, 60))]
    #[case(Some("2s"), Some(-3), None, (2, 0, 1800))]
    fn policy_defaults(
        #[case] min: Option<&str>,
        #[case] max: Option<i32>,
        #[case] timeout: Option<&str>,
        #[case] want: (u64, u32, u64),
    ) {
        let p = policy(&BackoffRetryPolicy {
            min_retry_duration: min.map(String::from),
            max_retry_times: max,
            retry_timeout: timeout.map(String::from),
        })
        .unwrap();
        assert_eq!(
            (
                p.min_retry_duration.as_secs(),
                p.max_retry_times,
                p.retry_timeout.as_secs()
            ),
            want
        );
    }

    #[test]
    fn bad_policy_names_the_field() {
        let e = policy(&BackoffRetryPolicy {
            min_retry_duration: Some("2s".into()),
            max_retry_times: None,
            retry_timeout: Some("soon".into()),
        })
        .unwrap_err();
        assert_eq!(e.0, "retryTimeout");
    }

    #[rstest]
    #[case(1, 2)]
    #[case(2, 4)]
    #[case(3, 8)]
    #[case(5, 32)]
    fn delay_doubles(#[case] n: u32, #[case] secs: u64) {
        assert_eq!(
            delay(Duration::from_secs(2), n),
            Some(Duration::from_secs(secs))
        );
    }

    #[test]
    fn delay_of_record_zero_or_overflow_is_none() {
        assert_eq!(delay(Duration::from_secs(1), 0), None);
        assert_eq!(delay(Duration::from_secs(1), 40), None);
    }

    #[rstest]
    #[case(6_000, "6s")]
    #[case(90_000, "1m30s")]
    #[case(1_500, "1.5s")]
    #[case(3_600_000, "1h0m0s")]
    fn shows_durations(#[case] ms: u64, #[case] want: &str) {
        assert_eq!(show(Duration::from_millis(ms)), want);
    }

    proptest! {
        #[test]
        fn shown_durations_parse_back(s in 0u64..1_000_000) {
            prop_assert_eq!(go_duration(&show(Duration::from_secs(s))).unwrap(), Duration::from_secs(s));
        }

        #[test]
        fn each_delay_is_twice_the_previous(min in 1u64..10_000, n in 1u32..20) {
            let a = delay(Duration::from_millis(min), n).unwrap();
            let b = delay(Duration::from_millis(min), n + 1).unwrap();
            prop_assert_eq!(b, a * 2);
        }
    }
}
