use super::status::terminal_status;
use super::*;

fn finished(code: i32) -> Finished {
    Finished {
        name: "main".into(),
        image: "img".into(),
        started_at: Timestamp::UNIX_EPOCH,
        finished_at: Timestamp::UNIX_EPOCH,
        exit_code: code,
        reason: if code == 0 { "Completed" } else { "Error" }.into(),
        message: None,
        init: false,
    }
}

#[test]
fn terminal_status_reflects_exit_codes() {
    let ok = terminal_status(&[finished(0)], false);
    assert_eq!(ok["status"]["phase"], "Succeeded");
    let st = &ok["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(st["exitCode"], 0);
    assert_eq!(st["reason"], "Completed");
    let bad = terminal_status(&[finished(0), finished(1)], false);
    assert_eq!(bad["status"]["phase"], "Failed");
    let deleted = terminal_status(&[finished(0)], true);
    assert_eq!(deleted["status"]["phase"], "Failed");
}

#[test]
fn status_patch_never_touches_metadata() {
    let s = terminal_status(&[finished(1)], false);
    assert_eq!(
        s.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["status"]
    );
}
