//! The control plane's processes started and supervised until ready, and the ports they
//! listen on claimed first.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use super::LocalError;
use super::args::go_runtime_env;
use crate::programs::process::{Spec, Supervised, describe_exit};

/// A free port on loopback.
pub(super) fn free_port() -> Result<u16, LocalError> {
    crate::programs::process::free_loopback_port().map_err(LocalError::NoFreePort)
}

/// `wanted` if it is free (or a free port for 0).
pub(super) fn claim_port(component: &'static str, wanted: u16) -> Result<u16, LocalError> {
    if wanted == 0 {
        return free_port();
    }
    match TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, wanted)) {
        Ok(_) => Ok(wanted),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(LocalError::PortInUse {
            component,
            port: wanted,
        }),
        Err(e) => Err(LocalError::NoFreePort(e)),
    }
}

/// What starting a process of the control plane needs: where, under which run id, and the
/// list it joins (in start order).
pub(super) struct Ctx<'a> {
    pub(super) run_dir: &'a Path,
    pub(super) run_id: &'a str,
    pub(super) processes: &'a mut Vec<Supervised>,
}

impl Ctx<'_> {
    pub(super) fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: Vec<String>,
    ) -> Result<usize, LocalError> {
        let spec = Spec {
            name: name.into(),
            program: program.to_owned(),
            args: args.into_iter().map(OsString::from).collect(),
            env: go_runtime_env(std::env::var_os("GOGC").is_some()),
            clear_env: false,
            cwd: Some(self.run_dir.to_owned()),
            log: self.run_dir.join(format!("{name}.log")),
            run_id: self.run_id.to_owned(),
        };
        self.processes.push(Supervised::spawn(&spec)?);
        Ok(self.processes.len() - 1)
    }

    /// Poll `probe` until it succeeds; fail early if the process exits.
    pub(super) async fn wait_ready<F, Fut>(
        &mut self,
        idx: usize,
        timeout: Duration,
        mut probe: F,
    ) -> Result<(), LocalError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let started = Instant::now();
        loop {
            let p = &mut self.processes[idx];
            if let Some(status) = p.try_exited() {
                let tail = p.log_tail(2000);
                let component = p.name().to_owned();
                if let Some(port) = address_in_use(&tail) {
                    return Err(LocalError::PortInUse {
                        component: leak_name(&component),
                        port,
                    });
                }
                return Err(LocalError::Exited {
                    component,
                    status: describe_exit(status),
                    log: p.log_path().to_owned(),
                    tail,
                });
            }
            let last = match probe().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if started.elapsed() > timeout {
                let p = &self.processes[idx];
                return Err(LocalError::NotReady {
                    component: p.name().to_owned(),
                    secs: started.elapsed().as_secs_f64(),
                    detail: last,
                    log: p.log_path().to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Component names are a fixed set; map back to a static str for the error.
fn leak_name(name: &str) -> &'static str {
    match name {
        "etcd" => "etcd",
        "kernel-etcd" => "kernel-etcd",
        "kube-apiserver" => "kube-apiserver",
        _ => "kube-controller-manager",
    }
}

/// A port mentioned in an "address already in use" line of a component's log.
pub(super) fn address_in_use(log: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains("address already in use"))?;
    // e.g. "listen tcp 127.0.0.1:6443: bind: address already in use"
    line.split(|c: char| c.is_whitespace() || c == '"')
        .filter_map(|w| w.trim_end_matches(':').rsplit_once(':'))
        .find_map(|(_, port)| port.parse::<u16>().ok())
}
