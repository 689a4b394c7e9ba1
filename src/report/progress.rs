//! Terminal progress: a bar per target on a TTY (indicatif), else one line per finished
//! suite.

use std::io::IsTerminal;
use std::sync::Mutex;

use crate::run::{Reporter, SuiteEvent};

/// Prints a line per finished suite (and, on a TTY, a progress bar).
#[derive(Debug, Default)]
pub struct Progress {
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

fn bar(suites: usize) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(suites as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed}] {bar:30} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    })
}

impl Reporter for Progress {
    fn report(&self, event: &SuiteEvent) {
        let Ok(mut current) = self.bar.lock() else {
            return;
        };
        match event {
            SuiteEvent::TargetStarted { suites, .. } => *current = bar(*suites),
            // The bar goes before the summary is printed.
            SuiteEvent::TargetFinished(_) => {
                if let Some(b) = current.take() {
                    b.finish_and_clear();
                }
            }
            SuiteEvent::Finished { result: r, .. } => {
                let line = format!(
                    "{} {} ({:.1}s)",
                    if r.passed { "pass" } else { "FAIL" },
                    r.name,
                    r.seconds
                );
                match current.as_ref() {
                    Some(b) => {
                        b.println(line);
                        // A rerun (`--rerun-failed`) is one more suite to finish.
                        if b.length().is_some_and(|n| b.position() >= n) {
                            b.inc_length(1);
                        }
                        b.inc(1);
                    }
                    None => eprintln!("{line}"),
                }
            }
            _ => {}
        }
    }
}
