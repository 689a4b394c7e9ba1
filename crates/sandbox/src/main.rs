//! `lbc-sandbox`: run a program (the controller under test) in its own network and mount
//! namespace, bridged to the harness through Unix sockets.
//!
//! Why: TiDB Operator reaches PD only by its service name on port 2379 and binds fixed
//! ports; in a private namespace that name can resolve (a private `/etc/hosts`) to a
//! loopback address where the suite's kernel is forwarded, and several operators can bind
//! the same port side by side. The machine's own files and network are never touched.
//!
//! ```text
//! lbc-sandbox --hosts FILE --listen 127.0.0.1:2379=/run/x/kernel.sock \
//!             --expose /run/x/metrics.sock=127.0.0.1:6060 -- PROGRAM ARGS…
//! ```
//! `--listen ADDR=SOCKET`: inside, accept on ADDR and forward to the harness's SOCKET.
//! `--expose SOCKET=ADDR`: the harness connects to SOCKET to reach ADDR inside.
//! Needs root (CAP_SYS_ADMIN). Exits with the program's status.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "lbc-sandbox")]
struct Args {
    /// Bind-mounted over /etc/hosts inside.
    #[arg(long)]
    hosts: Option<PathBuf>,
    /// `ADDR=SOCKET`: accept on ADDR inside, forward to the Unix socket SOCKET.
    #[arg(long)]
    listen: Vec<String>,
    /// `SOCKET=ADDR`: listen on the Unix socket SOCKET, forward to ADDR inside.
    #[arg(long)]
    expose: Vec<String>,
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn pair(s: &str, what: &str) -> Result<(String, String)> {
    s.split_once('=')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .with_context(|| format!("{what} {s:?}: expected A=B"))
}

fn main() -> std::process::ExitCode {
    match sandbox(Args::parse()) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("lbc-sandbox: {e:#}");
            std::process::ExitCode::from(125)
        }
    }
}

fn sandbox(args: Args) -> Result<u8> {
    let listen: Vec<(String, String)> = args
        .listen
        .iter()
        .map(|l| pair(l, "--listen"))
        .collect::<Result<_>>()?;
    let expose: Vec<(String, String)> = args
        .expose
        .iter()
        .map(|e| pair(e, "--expose"))
        .collect::<Result<_>>()?;
    // Before any thread exists: unshare(CLONE_NEWNS) refuses a process whose threads share
    // their filesystem attributes.
    enter_namespaces(args.hosts.as_ref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run(listen, expose, args.command))
}

fn enter_namespaces(hosts: Option<&PathBuf>) -> Result<()> {
    // SAFETY: plain syscalls on a single-threaded process, arguments checked below.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWNS) != 0 {
            let e = std::io::Error::last_os_error();
            bail!("unshare(network, mount): {e} (lbc-sandbox needs root: CAP_SYS_ADMIN)");
        }
        // Private propagation: the bind mount below never reaches the machine.
        if libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            bail!("making mounts private: {}", std::io::Error::last_os_error());
        }
        if let Some(h) = hosts {
            let src = CString::new(h.as_os_str().as_encoded_bytes())
                .context("--hosts path has a NUL byte")?;
            if libc::mount(
                src.as_ptr(),
                c"/etc/hosts".as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                bail!(
                    "bind-mounting {} over /etc/hosts: {}",
                    h.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
        loopback_up()?;
    }
    Ok(())
}

/// A new network namespace has `lo` down.
unsafe fn loopback_up() -> Result<()> {
    // SAFETY: a datagram socket for the interface ioctls, closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let r = if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) != 0 {
            Err(std::io::Error::last_os_error())
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) != 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        libc::close(fd);
        r.context("bringing up lo")
    }
}

async fn run(
    listen: Vec<(String, String)>,
    expose: Vec<(String, String)>,
    command: Vec<String>,
) -> Result<u8> {
    for (addr, socket) in listen {
        let l = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("listening on {addr} inside"))?;
        tokio::spawn(async move {
            while let Ok((mut inside, _)) = l.accept().await {
                let socket = socket.clone();
                tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::UnixStream::connect(&socket).await {
                        let _ = tokio::io::copy_bidirectional(&mut inside, &mut out).await;
                    }
                });
            }
        });
    }
    for (socket, addr) in expose {
        let _ = std::fs::remove_file(&socket);
        let l = tokio::net::UnixListener::bind(&socket)
            .with_context(|| format!("listening on {socket}"))?;
        tokio::spawn(async move {
            while let Ok((mut outside, _)) = l.accept().await {
                let addr = addr.clone();
                tokio::spawn(async move {
                    if let Ok(mut inside) = tokio::net::TcpStream::connect(&addr).await {
                        let _ = tokio::io::copy_bidirectional(&mut outside, &mut inside).await;
                    }
                });
            }
        });
    }
    let (program, rest) = command.split_first().context("no program to run")?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    // SAFETY: prctl only, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    let status = tokio::select! {
        s = child.wait() => s.context("waiting for the program")?,
        _ = term.recv() => {
            if let Some(pid) = child.id() {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            child.wait().await.context("waiting for the program")?
        }
    };
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        _ => 1,
    })
}
