//! Go `time.ParseDuration` syntax, as the operator parses `minRetryDuration` and
//! `retryTimeout`: a sequence of decimal numbers with units `ns us µs ms s m h`
//! (e.g. `300s`, `1m30s`, `1.5h`), optionally signed; `0` alone is allowed.

use std::time::Duration;

/// Why a duration string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("invalid duration {0:?}")]
    Invalid(String),
    #[error("missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
    #[error("negative duration {0:?}")]
    Negative(String),
    #[error("duration {0:?} is out of range")]
    Overflow(String),
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parse a Go duration. Negative values are rejected: no policy field means anything by them.
///
/// # Errors
/// See [`DurationError`].
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let mut s = input;
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(DurationError::Invalid(input.into()));
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (int_part, rest) = s.split_at(int_len);
        let (frac_part, rest) = match rest.strip_prefix('.') {
            Some(r) => {
                let l = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                r.split_at(l)
            }
            None => ("", rest),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(DurationError::Invalid(input.into()));
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.into()));
        }
        let scale = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            unit: unit.into(),
            input: input.into(),
        })?;
        let overflow = || DurationError::Overflow(input.into());
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut value = int.checked_mul(scale).ok_or_else(overflow)?;
        // Fraction: digits beyond nanosecond precision are dropped, as Go does.
        let mut frac_scale = scale;
        for d in frac_part.bytes() {
            frac_scale /= 10;
            if frac_scale == 0 {
                break;
            }
            value += u128::from(d - b'0') * frac_scale;
        }
        total = total.checked_add(value).ok_or_else(overflow)?;
        // Go's Duration is an int64 of nanoseconds.
        if total > i64::MAX as u128 {
            return Err(overflow());
        }
        s = rest;
    }
    if negative && total > 0 {
        return Err(DurationError::Negative(input.into()));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Format like Go's `Duration.String()` for whole seconds and above (`5m0s`, `1h2m3s`),
/// falling back to milliseconds below a second.
pub fn format_go_duration(d: Duration) -> String {
    let total = d.as_secs();
    if total == 0 {
        return if d.is_zero() {
            "0s".into()
        } else {
            format!("{}ms", d.as_millis())
        };
    }
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    let ms = d.subsec_millis();
    let secs = if ms > 0 {
        format!("{s}.{ms:03}").trim_end_matches('0').to_owned() + "s"
    } else {
        format!("{s}s")
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    #[rstest]
    #[case("300s", 300_000)]
    #[case("30m", 1_800_000)]
    #[case("1m30s", 90_000)]
    #[case("1.5h", 5_400_000)]
    #[case("500ms", 500)]
    #[case("0", 0)]
    #[case("0s", 0)]
    #[case("+2s", 2_000)]
    #[case(".5s", 500)]
    #[case("1h0m0s", 3_600_000)]
    fn parses_go_syntax(#[case] input: &str, #[case] millis: u128) {
        assert_eq!(parse_go_duration(input).unwrap().as_millis(), millis);
    }

    #[rstest]
    #[case("", "empty duration")]
    #[case("abc", "invalid duration")]
    #[case("300", "missing unit")]
    #[case("5 m", "unknown unit")]
    #[case("5d", "unknown unit \"d\"")]
    #[case("-5s", "negative duration")]
    #[case("1.", "missing unit")]
    #[case(".s", "invalid duration")]
    #[case("9999999999999h", "out of range")]
    fn rejects_bad_input(#[case] input: &str, #[case] message: &str) {
        let err = parse_go_duration(input).unwrap_err().to_string();
        assert!(err.contains(message), "{input:?}: {err}");
    }

    #[rstest]
    #[case(300_000, "5m0s")]
    #[case(30_000, "30s")]
    #[case(3_723_000, "1h2m3s")]
    #[case(1_500, "1.5s")]
    #[case(250, "250ms")]
    fn formats_like_go(#[case] millis: u64, #[case] text: &str) {
        assert_eq!(format_go_duration(Duration::from_millis(millis)), text);
    }

    proptest! {
        #[test]
        fn formatted_whole_seconds_parse_back(secs in 0u64..10_000_000) {
            let d = Duration::from_secs(secs);
            prop_assert_eq!(parse_go_duration(&format_go_duration(d)).unwrap(), d);
        }
    }
}
