//! Go duration strings (`time.ParseDuration`), as suites and the contract write them,
//! parsed once when a suite is loaded.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A string that is not a Go duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a Go duration ({why}); write e.g. 300s, 1m30s, 1.5h, 500ms")]
pub struct NotADuration {
    pub value: String,
    pub why: String,
}

/// Parse a Go duration (`time.ParseDuration`): an optional sign, then one or more
/// `<decimal><unit>` with units ns, us, µs, ms, s, m, h; `0` alone is zero. Negative
/// durations are refused: no field of the contract can be negative.
///
/// ```
/// use logbackup_conformance::suite::duration::go_duration;
/// use std::time::Duration;
/// assert_eq!(go_duration("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(go_duration("1.5s").unwrap(), Duration::from_millis(1500));
/// assert!(go_duration("5").is_err());
/// ```
///
/// # Errors
/// Anything `time.ParseDuration` rejects, and negative values.
pub fn go_duration(s: &str) -> Result<Duration, NotADuration> {
    let bad = |why: &str| NotADuration {
        value: s.to_owned(),
        why: why.to_owned(),
    };
    let rest = s.strip_prefix('+').unwrap_or(s);
    if rest.starts_with('-') {
        return Err(bad("negative"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    let mut total: f64 = 0.0;
    let mut chars = rest.char_indices().peekable();
    while chars.peek().is_some() {
        let start = chars.peek().map_or(0, |(i, _)| *i);
        let mut end = start;
        while let Some((i, c)) = chars.peek().copied() {
            if c.is_ascii_digit() || c == '.' {
                end = i + c.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        let number = &rest[start..end];
        if number.is_empty() || number == "." {
            return Err(bad("a number must precede each unit"));
        }
        let value: f64 = number.parse().map_err(|_| bad("malformed number"))?;
        let ustart = end;
        let mut uend = end;
        while let Some((i, c)) = chars.peek().copied() {
            if c.is_ascii_digit() || c == '.' {
                break;
            }
            uend = i + c.len_utf8();
            chars.next();
        }
        let nanos_per = match &rest[ustart..uend] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(bad("missing unit")),
            other => return Err(bad(&format!("unknown unit {other:?}"))),
        };
        total += value * nanos_per;
    }
    // Go's limit: about 290 years in nanoseconds.
    if total > i64::MAX as f64 {
        return Err(bad("out of range"));
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// A Go duration in a suite file: the text as written (for messages and the schema) and
/// its value. Reading never fails, so [`super::validate`] can report every bad duration of
/// a file at once with its line; a suite that loaded has only good ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(from = "String", into = "String")]
#[schemars(with = "String")]
pub struct GoDuration {
    text: String,
    #[serde(skip)]
    value: Option<Duration>,
}

impl GoDuration {
    /// The value; zero only for a suite built by hand that skipped validation.
    pub fn get(&self) -> Duration {
        self.value.unwrap_or_default()
    }

    /// The text as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Why the text is not a Go duration, if it is not.
    pub fn error(&self) -> Option<NotADuration> {
        go_duration(&self.text).err()
    }
}

impl From<String> for GoDuration {
    fn from(text: String) -> Self {
        let value = go_duration(&text).ok();
        Self { text, value }
    }
}

impl From<&str> for GoDuration {
    fn from(text: &str) -> Self {
        text.to_owned().into()
    }
}

impl From<GoDuration> for String {
    fn from(d: GoDuration) -> Self {
        d.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("300s", 300_000)]
    #[case("1m30s", 90_000)]
    #[case("1.5h", 5_400_000)]
    #[case("500ms", 500)]
    #[case("2h45m", 9_900_000)]
    #[case("0", 0)]
    #[case("0s", 0)]
    #[case("+3s", 3_000)]
    #[case(".5s", 500)]
    #[case("1000us", 1)]
    #[case("1000µs", 1)]
    fn parses_go_durations(#[case] s: &str, #[case] millis: u128) {
        assert_eq!(go_duration(s).unwrap().as_millis(), millis);
    }

    #[rstest]
    #[case("", "empty")]
    #[case("5", "missing unit")]
    #[case("5 s", "unknown unit")]
    #[case("-1s", "negative")]
    #[case("1d", "unknown unit")]
    #[case("s", "a number must precede each unit")]
    #[case("1..2s", "malformed number")]
    #[case("abc", "a number must precede each unit")]
    fn refuses_what_go_refuses(#[case] s: &str, #[case] why: &str) {
        let e = go_duration(s).unwrap_err();
        assert!(e.why.starts_with(why), "{s:?}: {e}");
    }

    #[test]
    fn a_suite_duration_keeps_its_text_and_value() {
        let d: GoDuration = serde_yaml::from_str("1m30s").unwrap();
        assert_eq!((d.text(), d.get()), ("1m30s", Duration::from_secs(90)));
        let bad: GoDuration = serde_yaml::from_str("soon").unwrap();
        assert!(bad.error().is_some());
    }
}
