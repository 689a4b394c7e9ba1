//! `index.html`: one self-contained page (inline CSS and SVG, no script, no network) — the
//! clause × controller matrix with the suites behind each verdict, then per suite its
//! verdict, its failures and its [`timeline`](super::timeline) as an SVG picture. Hovering a
//! mark shows its `<title>`: the object's state at that instant, or the message.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use super::timeline::{Lane, Timeline};
use super::{CLAUSES, clause_verdict};
use crate::run::{Reporter, RunResults, SuiteEvent, SuiteResult};

/// Each suite's timeline, by (target, suite).
pub type Timelines = BTreeMap<(String, String), Timeline>;

/// `--report html`: draws each suite's timeline when it ends (keeping the picture, not the
/// trace) and writes the page when the run is over.
#[derive(Debug)]
pub struct HtmlReport {
    page: PathBuf,
    /// The target whose suites are running, and the timelines so far.
    drawn: Mutex<(String, Timelines)>,
    errors: Mutex<Vec<String>>,
}

impl HtmlReport {
    /// Writing the page to `page`.
    pub fn new(page: PathBuf) -> Self {
        Self {
            page,
            drawn: Mutex::default(),
            errors: Mutex::default(),
        }
    }
}

impl Reporter for HtmlReport {
    fn report(&self, event: &SuiteEvent) {
        let Ok(mut drawn) = self.drawn.lock() else {
            return;
        };
        match event {
            SuiteEvent::TargetStarted { label, .. } => drawn.0.clone_from(label),
            SuiteEvent::Finished { result, story } => {
                let t = super::timeline::build(&super::timeline::Sources::of(result, story));
                let key = (drawn.0.clone(), result.name.clone());
                drawn.1.insert(key, t);
            }
            SuiteEvent::RunFinished(run) => {
                let written = std::fs::write(&self.page, render(run, &drawn.1));
                match written {
                    Ok(()) => println!("html report: {}", self.page.display()),
                    Err(e) => {
                        if let Ok(mut errors) = self.errors.lock() {
                            errors.push(format!("writing {}: {e}", self.page.display()));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

/// Escape text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px} h2{font-size:16px;margin:28px 0 6px}
table.matrix{border-collapse:collapse;margin:8px 0 16px}
table.matrix td,table.matrix th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
td.pass{background:#e3f6e3} td.FAIL{background:#fbe0e0;font-weight:bold} td.untested{color:#999}
.suite{border-top:1px solid #ddd;padding-top:4px}
.verdict-pass{color:#1a7f37} .verdict-FAIL{color:#c62828}
pre.failure{background:#fff4f4;border-left:3px solid #c62828;padding:6px 10px;white-space:pre-wrap;max-height:260px;overflow:auto;font-size:12px}
div.story{background:#f4f8ff;border-left:3px solid #1565c0;padding:4px 10px;font-size:13px}div.story ul{margin:4px 0;padding-left:18px}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
svg.timeline{background:#fafafa;border:1px solid #e2e2e2}
svg text{font-size:11px;fill:#333}
.lane-bg{fill:#fff} .axis{stroke:#bbb;stroke-width:1}
.phase{fill:#d8e7fb} .phase-Running{fill:#cfe8d0} .phase-RetryFailed{fill:#fff3c4} .phase-Failed{fill:#f6c2c2}
.phase-Complete{fill:#b9dfc0} .phase-deleted{fill:#ddd}
.job-complete{fill:#6cbf7a} .job-failed{fill:#e06666} .job-running{fill:#7fa7e0} .job-deleted{fill:#aaa}
.late{fill:#f0a030;opacity:.8} .too-late{fill:#c62828}
.mark.state{fill:#889;opacity:.6}
.mark.detect{fill:#c62828} .mark.expected{fill:#fff;stroke:#1f4e9a;stroke-width:2} .mark.real{fill:#1f4e9a}
.mark.event{fill:#6a1b9a} .mark.restart{fill:#000} .mark.fault{fill:#ef6c00} .mark.harness{fill:#555}
.mark.kernel{fill:#00796b} .mark.failed{fill:#c62828;stroke:#000}
"#;

/// The page for a run: one column of results per controller.
pub fn render(run: &RunResults, timelines: &Timelines) -> String {
    let columns = &run.columns();
    let wall = run.wall;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>logbackup-conformance report</title><style>{STYLE}</style></head><body>\n"
    );
    let total: usize = columns.iter().map(|(_, r)| r.len()).sum();
    let failed: usize = columns
        .iter()
        .map(|(_, r)| r.iter().filter(|s| !s.passed).count())
        .sum();
    let _ = writeln!(
        h,
        "<h1>logbackup-conformance</h1><p id=\"summary\">{} suite run(s), {} failed, wall {:.1}s</p>",
        total,
        failed,
        wall.as_secs_f64()
    );
    h.push_str(&matrix(columns));
    h.push_str(LEGEND);
    for (label, results) in columns {
        for r in results {
            let t = timelines.get(&(label.clone(), r.name.clone()));
            h.push_str(&suite_section(label, r, t, columns.len() > 1));
        }
    }
    h.push_str("</body></html>\n");
    h
}

const LEGEND: &str = "<p class=\"legend\">\
<span>▲ red: failure detected (detectFailedAt)</span>\
<span>○ blue ring: expectedRetryAt</span><span>● blue: realRetryAt</span>\
<span>orange bar: lateness as the judge measured it, expectedRetryAt → the retry as the harness saw it (red: late)</span><span>bars: Job attempts (green complete, red failed, blue running)</span>\
<span>◆ purple: events</span><span>■ black: controller restart · orange: fault</span>\
<span>✖ red: a failed check, where it failed</span>\
<span>Backup lane background: its phase (green Running/Complete, yellow RetryFailed, red Failed); grey ticks: each change, hover for the state</span></p>\n";

fn matrix(columns: &[(String, Vec<SuiteResult>)]) -> String {
    let mut h = String::from("<table class=\"matrix\" id=\"matrix\"><tr><th>clause</th>");
    for (label, _) in columns {
        let _ = write!(h, "<th>{}</th>", esc(label));
    }
    h.push_str("</tr>\n");
    for clause in CLAUSES {
        let _ = write!(h, "<tr data-clause=\"{clause}\"><th>{clause}</th>");
        for (label, results) in columns {
            let verdict = clause_verdict(results, clause);
            let suites: Vec<String> = results
                .iter()
                .filter(|r| r.clauses.iter().any(|c| c == clause))
                .map(|r| {
                    format!(
                        "<a href=\"#{}\">{}{}</a>",
                        anchor(label, &r.name),
                        esc(&r.name),
                        if r.passed { "" } else { " ✖" }
                    )
                })
                .collect();
            let _ = write!(
                h,
                "<td class=\"{verdict}\"><b>{verdict}</b> {}</td>",
                suites.join(", ")
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    h
}

fn anchor(label: &str, suite: &str) -> String {
    format!("{}--{}", esc(label), esc(suite))
}

fn suite_section(label: &str, r: &SuiteResult, t: Option<&Timeline>, many: bool) -> String {
    let verdict = if r.passed { "pass" } else { "FAIL" };
    let mut h = format!(
        "<section class=\"suite\" id=\"{}\" data-suite=\"{}\" data-verdict=\"{verdict}\">\
         <h2>{}{} — <span class=\"verdict-{verdict}\">{verdict}</span> \
         <small>{:.1}s · {}</small></h2>\n",
        anchor(label, &r.name),
        esc(&r.name),
        if many {
            format!("{}: ", esc(label))
        } else {
            String::new()
        },
        esc(&r.name),
        r.seconds,
        esc(&r.clauses.join(", "))
    );
    if !r.story.is_empty() {
        // The field report beside the harness's own account of the replay.
        let _ = writeln!(h, "<div class=\"story\"><b>The report</b><ul>");
        for line in &r.story {
            let _ = writeln!(h, "<li>{}</li>", esc(line));
        }
        let _ = writeln!(h, "</ul></div>");
    }
    for f in &r.failures {
        let _ = writeln!(h, "<pre class=\"failure\">{}</pre>", esc(f));
    }
    if !r.margins.is_empty() {
        let margins: Vec<String> = r.margins.iter().map(ToString::to_string).collect();
        let _ = writeln!(h, "<p class=\"margins\">{}</p>", esc(&margins.join(" · ")));
    }
    match t {
        Some(t) => h.push_str(&svg(t)),
        None => h.push_str("<p><i>no timeline (the suite did not start)</i></p>\n"),
    }
    h.push_str("</section>\n");
    h
}

const LEFT: f64 = 230.0;
const WIDTH: f64 = 1100.0;
const ROW: f64 = 22.0;
const TOP: f64 = 18.0;

/// The timeline as an SVG picture.
pub fn svg(t: &Timeline) -> String {
    let height = TOP + ROW * t.lanes.len() as f64 + 6.0;
    let scale = (WIDTH - LEFT - 10.0) / t.duration.max(0.001);
    let x = |s: f64| LEFT + s.clamp(0.0, t.duration) * scale;
    let mut h = format!(
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" \
         data-duration=\"{:.3}\">\n",
        t.duration
    );
    // Axis: a tick each second (each 5 s on long suites).
    let step = if t.duration > 40.0 { 5.0 } else { 1.0 };
    let mut s = 0.0;
    while s <= t.duration + 1e-9 {
        let _ = writeln!(
            h,
            "<line class=\"axis\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1}\" y2=\"{height:.0}\"/>\
             <text x=\"{0:.1}\" y=\"12\" text-anchor=\"middle\">{2}s</text>",
            x(s),
            TOP - 4.0,
            s
        );
        s += step;
    }
    for (i, lane) in t.lanes.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        h.push_str(&lane_svg(lane, y, &x));
    }
    h.push_str("</svg>\n");
    h
}

fn lane_svg(lane: &Lane, y: f64, x: &dyn Fn(f64) -> f64) -> String {
    let mid = y + ROW / 2.0;
    let mut h = format!(
        "<g class=\"lane\" data-lane=\"{}\" data-label=\"{}\">\
         <rect class=\"lane-bg\" x=\"{LEFT}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"/>\
         <text x=\"4\" y=\"{:.1}\">{}</text>\n",
        lane.group,
        esc(&lane.label),
        y + 1.0,
        WIDTH - LEFT - 10.0,
        ROW - 2.0,
        mid + 4.0,
        esc(&lane.label)
    );
    for s in &lane.spans {
        let (x0, x1) = (x(s.from), x(s.to));
        let (top, hgt) = if s.class.starts_with("late") {
            (mid - 2.0, 4.0)
        } else {
            (y + 4.0, ROW - 8.0)
        };
        let _ = writeln!(
            h,
            "<rect class=\"span {}\" x=\"{x0:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{hgt:.1}\"><title>{}</title></rect>",
            esc(&s.class),
            (x1 - x0).max(1.5),
            esc(&s.title)
        );
    }
    for m in &lane.marks {
        let cx = x(m.at);
        let shape = match m.class.split_whitespace().next().unwrap_or("") {
            "detect" => format!(
                "<polygon points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\"",
                cx,
                y + 3.0,
                cx - 5.0,
                y + ROW - 4.0,
                cx + 5.0,
                y + ROW - 4.0
            ),
            "expected" | "real" => format!("<circle cx=\"{cx:.1}\" cy=\"{mid:.1}\" r=\"5\""),
            "state" => format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"2\" height=\"6\"",
                cx - 1.0,
                y + ROW - 8.0
            ),
            "failed" => format!(
                "<path d=\"M{:.1},{:.1} l10,10 m0,-10 l-10,10\" stroke-width=\"3\" stroke=\"#c62828\"",
                cx - 5.0,
                mid - 5.0
            ),
            "event" => format!(
                "<polygon points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\"",
                cx,
                mid - 6.0,
                cx + 5.0,
                mid,
                cx,
                mid + 6.0,
                cx - 5.0,
                mid
            ),
            _ => format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"9\" height=\"9\"",
                cx - 4.5,
                mid - 4.5
            ),
        };
        let _ = writeln!(
            h,
            "{shape} class=\"mark {}\" data-label=\"{}\" data-at=\"{:.3}\"><title>{}</title>{}",
            esc(&m.class),
            esc(&m.label),
            m.at,
            esc(&m.title),
            if shape.starts_with("<path") {
                "</path>"
            } else if shape.starts_with("<circle") {
                "</circle>"
            } else if shape.starts_with("<polygon") {
                "</polygon>"
            } else {
                "</rect>"
            }
        );
    }
    h.push_str("</g>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::timeline::{Mark, Span};

    #[test]
    fn a_replayed_suite_shows_the_reports_story_beside_its_timeline() {
        let r = SuiteResult {
            name: "paused-after-restart".into(),
            story: vec![
                "reported: kernel: task pitr paused by an error".into(),
                "contract (LBR-10): the status is corrected <LogBackupKernelSync>".into(),
            ],
            ..SuiteResult::default()
        };
        let h = suite_section("reference", &r, None, false);
        assert!(h.contains("<div class=\"story\"><b>The report</b>"), "{h}");
        assert!(
            h.contains("<li>reported: kernel: task pitr paused by an error</li>"),
            "{h}"
        );
        assert!(h.contains("&lt;LogBackupKernelSync&gt;"), "{h}");
        let plain = suite_section("reference", &SuiteResult::default(), None, false);
        assert!(!plain.contains("class=\"story\""));
    }

    #[test]
    fn text_is_escaped_everywhere() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let t = Timeline {
            duration: 10.0,
            lanes: vec![Lane {
                group: "events",
                label: "<script>".into(),
                spans: vec![Span {
                    from: 1.0,
                    to: 2.0,
                    class: "job-failed".into(),
                    title: "a < b".into(),
                }],
                marks: vec![Mark {
                    at: 3.0,
                    class: "event".into(),
                    label: "R&D".into(),
                    title: "\"quoted\"".into(),
                }],
            }],
        };
        let s = svg(&t);
        assert!(!s.contains("<script>"), "{s}");
        assert!(s.contains("&lt;script&gt;"));
        assert!(s.contains("data-label=\"R&amp;D\""));
        assert!(s.contains("<title>a &lt; b</title>"));
        assert_eq!(s.matches("class=\"mark event\"").count(), 1);
    }

    #[test]
    fn marks_sit_at_their_time() {
        let t = Timeline {
            duration: 10.0,
            lanes: vec![Lane {
                group: "backup",
                label: "b".into(),
                spans: vec![],
                marks: vec![Mark {
                    at: 5.0,
                    class: "real".into(),
                    label: "#1".into(),
                    title: String::new(),
                }],
            }],
        };
        let s = svg(&t);
        let mid = LEFT + 5.0 * (WIDTH - LEFT - 10.0) / 10.0;
        assert!(s.contains(&format!("cx=\"{mid:.1}\"")), "{s}");
    }
}
