//! `fake-br`: the Job entrypoint standing in for backup-manager + br (see `fake_br`).

use lbc_fake_br::{self as fake_br, Outcome};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LBC_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,kube_client::client::builder=off")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    // The node's pause image is this program named `pause`: a sandbox's first process, it
    // only waits to be stopped (a real node needs no other image for it).
    if std::env::args()
        .next()
        .is_some_and(|a| a.rsplit('/').next() == Some("pause"))
    {
        pause().await;
        return;
    }
    // A container's first process ignores signals it has no handler for, unlike the
    // process it stands for: SIGTERM (a deleted Pod, a Job past its deadline) ends it as it
    // would end any other process.
    let pid1 = std::process::id() == 1;
    if pid1 {
        // Registered before anything runs: no window in which SIGTERM is ignored.
        let stop = stop_signals();
        tokio::spawn(async {
            wait_for(stop).await;
            eprintln!("fake-br: terminated");
            std::process::exit(128 + libc::SIGTERM);
        });
    }
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(what) = fake_br::br_copy_stand_in(&argv) {
        eprintln!("fake-br: {what}");
        return;
    }
    let args = match fake_br::parse_args(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fake-br: {e}");
            std::process::exit(2);
        }
    };
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fake-br: no Kubernetes client (KUBECONFIG or in-cluster): {e}");
            std::process::exit(2);
        }
    };
    match fake_br::run(client, args).await {
        Ok(Outcome::Exit(code)) => {
            eprintln!("fake-br: exiting {code}");
            std::process::exit(code)
        }
        Ok(Outcome::Hang) => {
            eprintln!("fake-br: hanging until killed");
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            }
        }
        Ok(Outcome::Sigkill) if pid1 => {
            // The kernel ignores a container's first process signalling itself: leave as a
            // SIGKILL from outside would (exit code 137, nothing written).
            eprintln!("fake-br: SIGKILL to self (as PID 1: exit 137)");
            std::process::exit(128 + libc::SIGKILL);
        }
        Ok(Outcome::Sigkill) => {
            eprintln!("fake-br: SIGKILL to self");
            // SAFETY: plain syscall on our own pid.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        Err(e) => {
            eprintln!("fake-br: {e}");
            std::process::exit(1);
        }
    }
}

type Stop = (
    std::io::Result<tokio::signal::unix::Signal>,
    std::io::Result<tokio::signal::unix::Signal>,
);

/// Handlers for SIGTERM and SIGINT (as PID 1 a signal without a handler is ignored).
fn stop_signals() -> Stop {
    use tokio::signal::unix::{SignalKind, signal};
    (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    )
}

async fn wait_for(stop: Stop) {
    match stop {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

/// The pause image's program: wait to be stopped.
async fn pause() {
    wait_for(stop_signals()).await;
}
