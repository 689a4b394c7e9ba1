//! LBR-15: the controller's counters about one Backup's subcommand, read from its
//! Prometheus text exposition.
//!
//! The contract fixes the labels (`namespace`, `name`, `subcommand`) and what is counted
//! (job failures, retries, kernel recoveries), not the metric names: those come from the
//! target's configuration ([`MetricNames`]).

use std::fmt::Write as _;

use crate::suite::model::MetricCounts;

/// Which metric family plays each role, for one controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricNames {
    pub job_failures: String,
    pub retries: String,
    pub kernel_recoveries: String,
}

impl MetricNames {
    /// Parse `job-failures=NAME,retries=NAME,kernel-recoveries=NAME` (all three).
    ///
    /// # Errors
    /// An unknown role, a missing one, or an empty name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (mut jf, mut r, mut kr) = (None, None, None);
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (role, name) = part
                .split_once('=')
                .filter(|(_, n)| !n.trim().is_empty())
                .ok_or_else(|| format!("{part:?}: expected ROLE=METRIC_NAME"))?;
            let slot = match role.trim() {
                "job-failures" => &mut jf,
                "retries" => &mut r,
                "kernel-recoveries" => &mut kr,
                other => {
                    return Err(format!(
                        "unknown role {other:?}; the roles are job-failures, retries, kernel-recoveries"
                    ));
                }
            };
            *slot = Some(name.trim().to_owned());
        }
        match (jf, r, kr) {
            (Some(job_failures), Some(retries), Some(kernel_recoveries)) => Ok(Self {
                job_failures,
                retries,
                kernel_recoveries,
            }),
            _ => Err("give all three roles: job-failures, retries, kernel-recoveries".into()),
        }
    }
}

/// Which series to read: the contract's three labels.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub subcommand: &'a str,
}

/// Compare the counters in `exposition` with `expect`. A family or series that is absent
/// counts as 0 only when 0 is expected; the error lists what the endpoint had instead.
///
/// # Errors
/// The text does not parse, or a counter differs (every difference, with the samples seen).
pub fn check_counts(
    exposition: &str,
    names: &MetricNames,
    series: Series<'_>,
    expect: &MetricCounts,
) -> Result<(), String> {
    let scrape = prometheus_parse::Scrape::parse(exposition.lines().map(|l| Ok(l.to_owned())))
        .map_err(|e| format!("the metrics endpoint's text does not parse: {e}"))?;
    let mut wrong = Vec::new();
    for (role, name, want) in [
        ("job failures", &names.job_failures, expect.job_failures),
        ("retries", &names.retries, expect.retries),
        (
            "kernel recoveries",
            &names.kernel_recoveries,
            expect.kernel_recoveries,
        ),
    ] {
        let Some(want) = want else { continue };
        let family: Vec<&prometheus_parse::Sample> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == *name)
            .collect();
        let ours: Vec<f64> = family
            .iter()
            .filter(|s| {
                s.labels.get("namespace") == Some(series.namespace)
                    && s.labels.get("name") == Some(series.name)
                    && s.labels.get("subcommand") == Some(series.subcommand)
            })
            .filter_map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => {
                    Some(v)
                }
                _ => None,
            })
            .collect();
        let got = ours.iter().sum::<f64>();
        // Counters are whole numbers; compare with a margin for the float text.
        if ours.len() > 1 || (got - want as f64).abs() > 0.5 {
            let mut msg = format!(
                "{role} ({name}{{namespace={:?},name={:?},subcommand={:?}}}): expected {want}, got {}",
                series.namespace,
                series.name,
                series.subcommand,
                if ours.is_empty() {
                    "no such series".to_owned()
                } else if ours.len() > 1 {
                    format!("{} series with those labels", ours.len())
                } else {
                    format!("{got}")
                }
            );
            if family.is_empty() {
                let _ = write!(msg, "; the endpoint exports no {name}");
            } else if ours.is_empty() {
                let seen: Vec<String> = family
                    .iter()
                    .take(5)
                    .map(|s| format!("{}", s.labels))
                    .collect();
                let _ = write!(msg, "; its series: {}", seen.join(" "));
            }
            wrong.push(msg);
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const TEXT: &str = "\
# HELP fails Failed Jobs
# TYPE fails counter
fails{namespace=\"s1\",name=\"lb1\",subcommand=\"log-start\"} 2
fails{namespace=\"s1\",name=\"lb10\",subcommand=\"log-start\"} 7
# TYPE retries counter
retries{namespace=\"s1\",name=\"lb1\",subcommand=\"log-start\"} 2
";

    fn names() -> MetricNames {
        MetricNames::parse("job-failures=fails,retries=retries,kernel-recoveries=recovered")
            .unwrap()
    }

    fn expect(jf: Option<u64>, r: Option<u64>, kr: Option<u64>) -> MetricCounts {
        MetricCounts {
            job_failures: jf,
            retries: r,
            kernel_recoveries: kr,
        }
    }

    const LB1: Series<'static> = Series {
        namespace: "s1",
        name: "lb1",
        subcommand: "log-start",
    };

    #[rstest]
    #[case::all_equal(expect(Some(2), Some(2), None), None)]
    // An absent family is 0: a controller that never recovered need not export one.
    #[case::absent_is_zero(expect(None, None, Some(0)), None)]
    #[case::too_few(expect(Some(3), None, None), Some("expected 3, got 2"))]
    #[case::absent_not_zero(expect(None, None, Some(1)), Some("exports no recovered"))]
    fn counts(#[case] want: MetricCounts, #[case] err: Option<&str>) {
        let got = check_counts(TEXT, &names(), LB1, &want);
        match err {
            None => assert_eq!(got, Ok(())),
            Some(e) => assert!(got.as_ref().unwrap_err().contains(e), "{got:?}"),
        }
    }

    #[test]
    fn series_are_matched_by_exact_labels() {
        // lb10's 7 must not count for lb1 (nor the other way round).
        let lb10 = Series {
            name: "lb10",
            ..LB1
        };
        assert_eq!(
            check_counts(TEXT, &names(), lb10, &expect(Some(7), None, None)),
            Ok(())
        );
        let other_ns = Series {
            namespace: "s2",
            ..LB1
        };
        let e = check_counts(TEXT, &names(), other_ns, &expect(Some(2), None, None)).unwrap_err();
        assert!(
            e.contains("no such series") && e.contains("its series"),
            "{e}"
        );
    }

    #[rstest]
    #[case("retries=a,job-failures=b")]
    #[case("job-failures=a,retries=b,kernel-recoveries=")]
    #[case("job-failures=a,retries=b,kernel-recoveries=c,restarts=d")]
    fn bad_name_maps_are_refused(#[case] text: &str) {
        assert!(MetricNames::parse(text).is_err());
    }
}
