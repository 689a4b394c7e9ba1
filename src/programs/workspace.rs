//! Where the workspace's other programs are: `lbc-controller` (the reference controller),
//! `fake-br` (the job entrypoint) and `lbc-sandbox` (isolated targets run inside it). The harness does not link them — it runs them, like
//! any controller under test.
//!
//! Lookup: `$LBC_CONTROLLER_BIN` / `$LBC_FAKE_BR_BIN`; else, when run by cargo (`cargo run`,
//! `cargo test`: `$CARGO` is set) from a source checkout, `cargo build` both of them once per
//! process — a no-op when fresh, so a test never runs a stale binary, and always the same
//! command, so its artifacts are reused; then beside the running executable.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A workspace program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `lbc-controller`, package `lbc-reference-controller`.
    ReferenceController,
    /// `fake-br`, package `lbc-fake-br`.
    FakeBr,
    /// `lbc-sandbox`, package `lbc-sandbox`: isolated targets run inside it.
    Sandbox,
}

impl Program {
    pub fn binary(self) -> &'static str {
        match self {
            Self::ReferenceController => "lbc-controller",
            Self::FakeBr => "fake-br",
            Self::Sandbox => "lbc-sandbox",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Self::ReferenceController => "lbc-reference-controller",
            Self::FakeBr => "lbc-fake-br",
            Self::Sandbox => "lbc-sandbox",
        }
    }

    fn env(self) -> &'static str {
        match self {
            Self::ReferenceController => "LBC_CONTROLLER_BIN",
            Self::FakeBr => "LBC_FAKE_BR_BIN",
            Self::Sandbox => "LBC_SANDBOX_BIN",
        }
    }
}

/// Why a program cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("${var} names {path}, which is not an executable file")]
    BadOverride { var: &'static str, path: PathBuf },
    #[error("`cargo build -p {package}` failed ({status}); run it to see why")]
    Build {
        package: &'static str,
        status: String,
    },
    #[error("{binary} is not beside {exe}; build it with `cargo build -p {package}` or set ${var}")]
    Missing {
        binary: &'static str,
        exe: String,
        package: &'static str,
        var: &'static str,
    },
}

/// The workspace this crate was built from, if it is still there.
fn workspace() -> Option<&'static Path> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    root.join("crates/fake-br/Cargo.toml")
        .is_file()
        .then_some(root)
}

/// The target directory of the running executable (`target/debug` for both
/// `target/debug/lbc` and `target/debug/deps/suites-…`).
fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    Some(if dir.ends_with("deps") {
        dir.parent()?.to_owned()
    } else {
        dir.to_owned()
    })
}

/// A `cargo` command in `root` with only the environment a build needs.
fn cargo_command(cargo: &std::ffi::OsStr, root: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(cargo);
    // Not the environment cargo gives a test process (CARGO_PKG_*, LD_LIBRARY_PATH…):
    // build scripts that watch variables would rerun and rebuild shared dependencies
    // under the caller's feet.
    cmd.env_clear();
    for (k, v) in std::env::vars_os() {
        let keep = k.to_str().is_some_and(|k| {
            matches!(
                k,
                "PATH" | "HOME" | "USER" | "TMPDIR" | "CARGO_HOME" | "CARGO_TARGET_DIR"
            ) || k.starts_with("RUSTUP_")
        });
        if keep {
            cmd.env(k, v);
        }
    }
    cmd.current_dir(root);
    cmd
}

/// The host's target triple (the static build names it so that `RUSTFLAGS` reach only the
/// program, not build scripts).
const HOST_TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// fake-br linked statically (glibc's static-pie), for images `FROM scratch`:
/// `$LBC_FAKE_BR_STATIC_BIN`, else built with `cargo build --target HOST -p lbc-fake-br`
/// and `-C target-feature=+crt-static` beside the running executable's target directory.
///
/// # Errors
/// A bad override, no workspace to build from, or a failed build.
pub fn locate_static_fake_br() -> Result<PathBuf, ProgramError> {
    const VAR: &str = "LBC_FAKE_BR_STATIC_BIN";
    if let Some(p) = std::env::var_os(VAR) {
        let path = PathBuf::from(p);
        if !crate::programs::process::is_executable(&path) {
            return Err(ProgramError::BadOverride { var: VAR, path });
        }
        return Ok(path);
    }
    let (Some(root), Some(target), Some(cargo)) = (
        workspace(),
        target_dir(),
        std::env::var_os("CARGO").or_else(|| Some("cargo".into())),
    ) else {
        return Err(ProgramError::Missing {
            binary: "fake-br (static)",
            exe: "the workspace".into(),
            package: "lbc-fake-br --target x86_64-unknown-linux-gnu",
            var: VAR,
        });
    };
    let target_root = target.parent().unwrap_or(&target).to_owned();
    let mut cmd = cargo_command(&cargo, root);
    cmd.env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args(["build", "--quiet", "-p", "lbc-fake-br", "--bin", "fake-br"])
        .args(["--target", HOST_TRIPLE])
        .arg("--target-dir")
        .arg(&target_root);
    let profile = if target.ends_with("release") {
        cmd.arg("--release");
        "release"
    } else {
        "debug"
    };
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => {
            return Err(ProgramError::Build {
                package: "lbc-fake-br (static)",
                status: s.to_string(),
            });
        }
        Err(e) => {
            return Err(ProgramError::Build {
                package: "lbc-fake-br (static)",
                status: format!("cannot run cargo: {e}"),
            });
        }
    }
    Ok(target_root.join(HOST_TRIPLE).join(profile).join("fake-br"))
}

/// How long a build runs silently: a fresh one ends well before (nothing to say), a first
/// one takes minutes and then says what it is doing.
const SILENT_BUILD: std::time::Duration = std::time::Duration::from_secs(2);

/// Run the build, and if it is still going after [`SILENT_BUILD`], say so on a terminal once
/// (cargo itself stays quiet: a user's one-line error must not drown in build output).
fn wait_saying(mut cmd: std::process::Command) -> std::io::Result<std::process::ExitStatus> {
    let mut child = cmd.spawn()?;
    let started = std::time::Instant::now();
    let mut said = false;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        // Only to a person at a terminal: logs and tests read stderr line by line.
        if !said && started.elapsed() >= SILENT_BUILD && std::io::stderr().is_terminal() {
            eprintln!(
                "lbc: building lbc-controller, fake-br and lbc-sandbox (cargo build; a first build takes minutes)…"
            );
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Build the programs (once per process).
fn build_once(root: &Path, target: &Path) -> Result<(), ProgramError> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let outcome = BUILT.get_or_init(|| {
        let Some(cargo) = std::env::var_os("CARGO") else {
            return Ok(());
        };
        let mut cmd = cargo_command(&cargo, root);
        cmd.args(["build", "--quiet", "--bins"]);
        for p in [
            Program::ReferenceController,
            Program::FakeBr,
            Program::Sandbox,
        ] {
            cmd.args(["-p", p.package()]);
        }
        if target.ends_with("release") {
            cmd.arg("--release");
        }
        if let Some(t) = target.parent() {
            cmd.arg("--target-dir").arg(t);
        }
        match wait_saying(cmd) {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(s.to_string()),
            Err(e) => Err(format!("cannot run cargo: {e}")),
        }
    });
    outcome.clone().map_err(|status| ProgramError::Build {
        package: "lbc-reference-controller -p lbc-fake-br -p lbc-sandbox",
        status,
    })
}

/// The path of `program`, building it first when run by cargo from a source checkout.
///
/// # Errors
/// A bad override, a failed build, or a missing binary.
pub fn locate(program: Program) -> Result<PathBuf, ProgramError> {
    if let Some(p) = std::env::var_os(program.env()) {
        let path = PathBuf::from(p);
        if !crate::programs::process::is_executable(&path) {
            return Err(ProgramError::BadOverride {
                var: program.env(),
                path,
            });
        }
        return Ok(path);
    }
    let target = target_dir();
    if let (Some(root), Some(target)) = (workspace(), &target) {
        build_once(root, target)?;
    }
    let exe = target.unwrap_or_default();
    let path = exe.join(program.binary());
    if crate::programs::process::is_executable(&path) {
        Ok(path)
    } else {
        Err(ProgramError::Missing {
            binary: program.binary(),
            exe: exe.display().to_string(),
            package: program.package(),
            var: program.env(),
        })
    }
}
