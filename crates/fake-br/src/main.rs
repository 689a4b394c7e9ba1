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
