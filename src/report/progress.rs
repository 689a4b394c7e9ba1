//! Terminal progress: a bar on a TTY (indicatif), else one line per finished suite.

use std::io::IsTerminal;

use crate::run::{Reporter, SuiteEvent};

/// Prints a line per finished suite (and, on a TTY, a progress bar).
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// For a run of `suites` suites.
    pub fn new(suites: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(suites as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed}] {bar:30} {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Self { bar }
    }

    /// Remove the bar (before the summary is printed).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Reporter for Progress {
    fn report(&self, event: &SuiteEvent) {
        let SuiteEvent::Finished(r) = event else {
            return;
        };
        let line = format!(
            "{} {} ({:.1}s)",
            if r.passed { "pass" } else { "FAIL" },
            r.name,
            r.seconds
        );
        match &self.bar {
            Some(b) => {
                b.println(line);
                b.inc(1);
            }
            None => eprintln!("{line}"),
        }
    }
}
