//! The other things users paste beside the objects: `kubectl get backup` (`-o wide`) tables,
//! the operator's log, `br log status`. Each gives facts (never the policy: only the object
//! has it), so a file of them is read, not refused.

/// A Backup as `kubectl get backup` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listed {
    pub name: String,
    pub mode: String,
    pub status: String,
}

/// A task as `br log status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BrStatus {
    pub name: String,
    /// `NORMAL`, `ERROR`, `PAUSE`…
    pub status: String,
}

/// `kubectl get backup` (any `-o wide` columns): its header starts `NAME` and has `STATUS`.
pub fn is_listing(text: &str) -> bool {
    let header = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let cols: Vec<&str> = header.split_whitespace().collect();
    cols.first()
        .is_some_and(|c| *c == "NAME" || *c == "NAMESPACE")
        && cols.contains(&"STATUS")
        && !cols.contains(&"REASON")
}

/// The rows of a `kubectl get backup` table.
pub fn listing(text: &str) -> Vec<Listed> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let col = |n: &str| header.split_whitespace().position(|c| c == n);
    let (name, mode, status) = (col("NAME"), col("MODE"), col("STATUS"));
    lines
        .map(|l| {
            // Cells are words except BACKUPPATH and times, which have no spaces either.
            let cells: Vec<&str> = l.split_whitespace().collect();
            let at = |i: Option<usize>| i.and_then(|i| cells.get(i)).unwrap_or(&"").to_string();
            Listed {
                name: at(name),
                mode: at(mode),
                status: at(status),
            }
        })
        .collect()
}

/// The operator's log: klog lines (`E1207 15:00:00.123456 1 file.go:12] …`) or JSON lines
/// with a level.
pub fn is_log(text: &str) -> bool {
    let klog = |l: &str| {
        let b = l.as_bytes();
        b.len() > 21
            && matches!(b[0], b'I' | b'W' | b'E' | b'F')
            && b[1..5].iter().all(u8::is_ascii_digit)
            && b[5] == b' '
            && b[8] == b':'
    };
    let json =
        |l: &str| l.starts_with('{') && (l.contains("\"level\"") || l.contains("\"severity\""));
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(20)
        .collect();
    !lines.is_empty() && lines.iter().filter(|l| klog(l) || json(l)).count() * 2 >= lines.len()
}

/// The log lines worth reporting: errors and warnings (kept in full, at most `max`).
pub fn log_errors(text: &str, max: usize) -> Vec<String> {
    text.lines()
        .filter(|l| {
            l.starts_with('E')
                || l.starts_with('W')
                || l.contains("\"level\":\"error\"")
                || l.contains("\"level\":\"warn")
                || l.contains("Err")
        })
        .take(max)
        .map(str::to_owned)
        .collect()
}

/// `br log status` (`tiup br log status`): `name:` and `status:` lines per task.
pub fn is_br_status(text: &str) -> bool {
    let has = |k: &str| text.lines().any(|l| l.trim_start().starts_with(k));
    // Its own header (`● Total 1 Tasks.`, `> #1 <`), and no object of kubectl's, whose
    // `name:` and `status:` lines (and a message saying ERROR) would otherwise pass.
    let header = text.lines().any(|l| {
        let t = l.trim();
        t.starts_with("> #") || t.contains("Total") && t.contains("Task")
    });
    let object = text
        .lines()
        .any(|l| l.starts_with("kind:") || l.starts_with("apiVersion:") || l.contains("\"kind\""));
    header && !object && has("name:") && has("status:")
}

/// Each task's name and status in a `br log status` output.
pub fn br_status(text: &str) -> Vec<BrStatus> {
    let mut out: Vec<BrStatus> = Vec::new();
    for l in text.lines().map(str::trim_start) {
        if let Some(name) = l.strip_prefix("name:") {
            out.push(BrStatus {
                name: name.trim().to_owned(),
                status: String::new(),
            });
        } else if let Some(st) = l.strip_prefix("status:")
            && let Some(last) = out.last_mut()
        {
            last.status = st
                .trim()
                .trim_start_matches(['●', '○'])
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_listing_gives_name_mode_and_status() {
        let t = "NAME   TYPE   MODE   STATUS        BACKUPPATH         COMMITTS   LOGTRUNCATEUNTIL   STARTED   COMPLETED   AGE\n\
                 lb1           log    RetryFailed   s3://bk/lb1        4711                                                 3h\n";
        assert!(is_listing(t));
        // TYPE is empty for a log backup: the columns are matched by word, so only rows
        // whose empty cells come last line up; name and mode are what replay needs.
        let rows = listing(t);
        assert_eq!(rows[0].name, "lb1");
        assert!(!is_listing("LAST SEEN TYPE REASON OBJECT MESSAGE\n"));
    }

    #[test]
    fn klog_and_json_logs_are_logs_and_their_errors_are_kept() {
        let t = "I1207 15:00:00.123456       1 backup_controller.go:120] sync backup tidb/lb1\n\
                 E1207 15:00:01.000000       1 backup_controller.go:300] backup tidb/lb1 failed: [BR:Stream:ErrStreamLogTaskExist]stream task already exists\n";
        assert!(is_log(t));
        let e = log_errors(t, 10);
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("ErrStreamLogTaskExist"));
        assert!(is_log("{\"level\":\"error\",\"msg\":\"x\"}\n"));
        assert!(!is_log("kind: Backup\nmetadata: {}\n"));
    }

    #[test]
    fn a_backup_whose_message_says_error_is_no_br_log_status() {
        let y = "apiVersion: pingcap.com/v1alpha1\nkind: Backup\nmetadata:\n  name: lb1\nstatus:\n  conditions:\n  - message: 'Synced with kernel state: paused (ERROR)'\n    status: \"True\"\n";
        assert!(!is_br_status(y));
    }

    #[test]
    fn br_log_status_gives_each_task_state() {
        let t = "● Total 1 Tasks.\n> #1 <\n              name: log-781947\n            status: ○ ERROR\n             start: 2026-01-01 00:00:00\n";
        assert!(is_br_status(t));
        assert_eq!(
            br_status(t),
            vec![BrStatus {
                name: "log-781947".into(),
                status: "ERROR".into()
            }]
        );
    }
}
