use super::kernel_sync::kernel_correction;
use super::*;
use crate::kernel_state::{KernelState, PauseKind};
use rstest::rstest;

fn facts() -> Facts {
    Facts {
        phase: Some(C::Running),
        terminal: false,
        invalid: None,
        pending: None,
        attempt: 0,
        job: Some(JobFacts {
            owned: true,
            attempt: 0,
            failed: None,
            this_run: true,
        }),
    }
}

fn job(attempt: u32, failed: Option<&str>) -> Option<JobFacts> {
    Some(JobFacts {
        owned: true,
        attempt,
        failed: failed.map(String::from),
        this_run: true,
    })
}

#[rstest]
#[case::running(facts(), Next::Idle)]
#[case::invalid_is_final(Facts { phase: Some(C::Invalid), ..facts() }, Next::Idle)]
#[case::terminal(Facts { terminal: true, ..facts() }, Next::TerminalEvent)]
#[case::bad_policy(Facts { invalid: Some("x".into()), ..facts() }, Next::Invalid("x".into()))]
#[case::foreign(Facts { job: Some(JobFacts { owned: false, ..job(0, None).unwrap() }), ..facts() }, Next::ForeignJob)]
#[case::waiting(Facts { pending: Some((1, Duration::from_secs(3))), ..facts() }, Next::WaitForRetry { retry_num: 1, wait: Duration::from_secs(3) })]
#[case::due(Facts { pending: Some((2, Duration::ZERO)), ..facts() }, Next::RunRetry { retry_num: 2 })]
#[case::complete(Facts { phase: Some(C::Complete), ..facts() }, Next::Completed)]
#[case::first_job(Facts { phase: None, job: None, ..facts() }, Next::CreateJob { attempt: 0 })]
#[case::retry_job_lost(Facts { attempt: 2, job: None, ..facts() }, Next::CreateJob { attempt: 2 })]
#[case::failed_and_gone(Facts { phase: Some(C::Failed), job: None, ..facts() }, Next::Idle)]
#[case::stale_attempt(Facts { attempt: 1, job: job(0, Some("BackoffLimitExceeded")), ..facts() }, Next::RemoveStaleJob)]
#[case::new_run(Facts { phase: Some(C::Repeatable), job: Some(JobFacts { this_run: false, ..job(0, None).unwrap() }), ..facts() }, Next::RemoveStaleJob)]
// Created after the subcommand became Repeatable: a crash came before its `Scheduled`.
#[case::new_runs_job(Facts { phase: Some(C::Repeatable), ..facts() }, Next::Idle)]
#[case::detected(Facts { job: job(0, Some("BackoffLimitExceeded")), ..facts() }, Next::Failed { original_reason: "BackoffLimitExceeded".into() })]
// A pending retry wins over a failed Job: the failure is already recorded.
#[case::pending_over_failed(Facts { pending: Some((1, Duration::from_secs(1))), job: job(0, Some("X")), ..facts() }, Next::WaitForRetry { retry_num: 1, wait: Duration::from_secs(1) })]
fn decisions(#[case] f: Facts, #[case] want: Next) {
    assert_eq!(decide(&f), want);
}

#[rstest]
#[case(KernelState::Running { checkpoint: None }, LogSubcommand::Start, None)]
#[case(KernelState::Absent, LogSubcommand::Start, Some((LogSubcommand::Start, "LogBackupKeyNotFound")))]
#[case(KernelState::Paused { kind: PauseKind::V1, message: None }, LogSubcommand::Start, Some((LogSubcommand::Pause, "LogBackupKernelSync")))]
#[case(KernelState::Running { checkpoint: Some(1) }, LogSubcommand::Pause, Some((LogSubcommand::Resume, "LogBackupKernelSync")))]
#[case(KernelState::Paused { kind: PauseKind::Manual, message: None }, LogSubcommand::Pause, None)]
fn kernel_corrections(
    #[case] state: KernelState,
    #[case] sub: LogSubcommand,
    #[case] want: Option<(LogSubcommand, &str)>,
) {
    let got = kernel_correction(&state, sub, "lb1");
    assert_eq!(
        got.map(|(s, c)| (s, c.reason.unwrap_or_default())),
        want.map(|(s, r)| (s, r.to_owned()))
    );
}
