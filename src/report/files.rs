//! `--report json,junit`: each target's `report.json` and `junit.xml`, written when its
//! suites are over.

use std::sync::Mutex;

use crate::run::{Reporter, SuiteEvent, TargetResults};

/// Writes the file reports asked for.
#[derive(Debug, Default)]
pub struct Files {
    pub json: bool,
    pub junit: bool,
    errors: Mutex<Vec<String>>,
}

impl Files {
    pub fn new(json: bool, junit: bool) -> Self {
        Self {
            json,
            junit,
            errors: Mutex::default(),
        }
    }

    fn write(&self, t: &TargetResults) -> Result<(), String> {
        let put = |name: &str, text: String| {
            let path = t.report_dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
        };
        if self.json {
            put("report.json", super::json(&t.results, t.wall))?;
        }
        if self.junit {
            let xml = super::junit(&t.results, t.wall).map_err(|e| format!("junit: {e}"))?;
            put("junit.xml", xml)?;
        }
        if self.json || self.junit {
            println!("reports: {}", t.report_dir.display());
        }
        Ok(())
    }
}

impl Reporter for Files {
    fn report(&self, event: &SuiteEvent) {
        if let SuiteEvent::TargetFinished(t) = event
            && let Err(e) = self.write(t)
            && let Ok(mut errors) = self.errors.lock()
        {
            errors.push(e);
        }
    }

    fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }
}
