//! `assert`: check the recorded trace — `eventually`, `never`, `alwaysUntil`, `events`.

use std::time::Duration;

use super::{Shown, Step, StepError};
use crate::judge::metrics::{Series, check_counts};
use crate::judge::{describe, eval};
use crate::run::scope::{MetricsAt, Scope};
use crate::suite::model::{Assertion, EventsAssertion, MetricsAssertion, Predicate};

impl Step for Assertion {
    const KIND: &'static str = "assert";
    const MOVES_CURSOR: bool = false;
    const ACTS: bool = false;
    const SHOWN: Shown = Shown::Not;

    async fn run(&self, cx: &mut Scope<'_>) -> Result<(), StepError> {
        match self {
            Assertion::Eventually(t) => {
                let within = t.within.as_ref().map(|d| d.get());
                cx.wait_until(&t.that, cx.within(within), within, false)
                    .await
            }
            Assertion::Never(w) => match &w.for_ {
                Some(d) => {
                    let until = cx.within(Some(d.get()));
                    cx.never(&w.that, Some(until)).await
                }
                // Over the whole suite so far.
                None => {
                    if let Some((at, state)) = cx.held_before(&w.that) {
                        return Err(StepError::Held {
                            predicate: describe(&w.that),
                            at: at.to_string(),
                            state: cx.describe(&state),
                        });
                    }
                    cx.never(&w.that, None).await
                }
            },
            Assertion::AlwaysUntil(a) => {
                let within = a.within.as_ref().map(|d| d.get());
                let until = cx.within(within);
                let guard = Predicate::AnyOf(vec![
                    a.until.clone(),
                    Predicate::Not(Box::new(a.that.clone())),
                ]);
                cx.wait_until(&guard, until, within, false).await?;
                if eval(&a.until, cx.cursor.state(), &cx.names) {
                    Ok(())
                } else {
                    Err(StepError::StoppedHolding {
                        that: describe(&a.that),
                        until: describe(&a.until),
                    })
                }
            }
            Assertion::Metrics(m) => metrics(m, cx).await,
            Assertion::Events(e) => {
                events(e, cx).await?;
                // A late duplicate must fail too: checked again when the suite ends.
                cx.final_events.push(e.clone());
                Ok(())
            }
        }
    }
}

/// Whether the events about `a.backup` match `a` in the current state.
fn events_hold(a: &EventsAssertion, cx: &Scope<'_>) -> Result<(), String> {
    crate::judge::events_hold(a, &cx.names, cx.cursor.state())
}

async fn events(a: &EventsAssertion, cx: &mut Scope<'_>) -> Result<(), StepError> {
    // Events land shortly after the writes they follow: allow a few seconds to settle.
    let until = cx.within(Some(Duration::from_secs(5)));
    loop {
        cx.cursor.catch_up(&cx.recorder.trace);
        match events_hold(a, cx) {
            Ok(()) => return Ok(()),
            Err(e) if !cx.recorder.changed_before(until).await => {
                return Err(StepError::Events(e));
            }
            Err(_) => {}
        }
    }
}

/// Scrape until the counters match (they follow the status writes), at most `within`.
async fn metrics(m: &MetricsAssertion, cx: &mut Scope<'_>) -> Result<(), StepError> {
    let (Some(at), Some(names)) = (cx.metrics_at.clone(), cx.metric_names.clone()) else {
        return Err(StepError::Metrics(
            "the harness knows no metrics endpoint of the controller under test (a target's \
             `metrics`, or `{metrics_addr}` in --controller-cmd) or no metric names \
             (--metric-names)"
                .into(),
        ));
    };
    let series = Series {
        namespace: &cx.namespace,
        name: cx.names.actual(&m.backup),
        subcommand: &m.subcommand,
    };
    let until = cx.within(Some(
        m.within
            .as_ref()
            .map_or(Duration::from_secs(5), |d| d.get()),
    ));
    loop {
        let text = match &at {
            MetricsAt::Tcp(addr) => {
                let url = format!("http://{addr}/metrics");
                match reqwest::get(&url)
                    .await
                    .and_then(reqwest::Response::error_for_status)
                {
                    Ok(r) => r.text().await.map_err(|e| format!("reading {url}: {e}")),
                    Err(e) => Err(format!("scraping {url}: {e}")),
                }
            }
            MetricsAt::Unix(sock) => crate::run::isolate::scrape_unix(sock).await,
            MetricsAt::Pod(port) => {
                crate::run::controller_pod::scrape(&cx.client, &cx.namespace, *port).await
            }
        };
        let verdict = text.and_then(|t| check_counts(&t, &names, series, &m.expect));
        match verdict {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= until => {
                return Err(StepError::Metrics(e));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
