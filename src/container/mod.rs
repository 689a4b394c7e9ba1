//! Docker: the images the project builds ([`images`]), the daemon it reaches through the
//! `docker` CLI for image work and Pods in containers, and a bridge that lets
//! testcontainers talk to an older daemon ([`api_bridge`]).
//!
//! Every container the harness starts carries [`RUN_LABEL`] (its run id), so a sweep finds
//! whatever a killed run left behind.

pub mod api_bridge;
pub mod archive;
pub mod images;
mod recipe;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Label on every container the harness starts: the run id.
pub const RUN_LABEL: &str = "io.logbackup-conformance.run";
/// Label on every image the harness builds: a hash of what went into it.
pub const INPUTS_LABEL: &str = "io.logbackup-conformance.inputs";

/// Why Docker could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "docker is not installed (no `docker` on PATH): install Debian's docker.io \
         (`apt-get install docker.io`) and start the daemon (`dockerd --iptables=false &`)"
    )]
    Missing,
    #[error(
        "the Docker daemon is not reachable: {detail}. Start it (`dockerd --iptables=false &`)"
    )]
    Daemon { detail: String },
    #[error("`docker {args}` failed ({status}): {stderr}")]
    Command {
        args: String,
        status: String,
        stderr: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// The `docker` CLI (it negotiates the API version with any daemon).
#[derive(Debug, Clone)]
pub struct Docker {
    program: PathBuf,
}

impl Docker {
    /// Find `docker` on PATH and check that its daemon answers.
    ///
    /// # Errors
    /// No CLI, or no daemon.
    pub fn connect() -> Result<Self, DockerError> {
        let docker = Self::find()?;
        docker
            .output(["version", "--format", "{{.Server.Version}}"])
            .map_err(|e| DockerError::Daemon {
                detail: match e {
                    DockerError::Command { stderr, .. } => stderr,
                    other => other.to_string(),
                },
            })?;
        Ok(docker)
    }

    /// Find `docker` on PATH without asking the daemon anything.
    ///
    /// # Errors
    /// No CLI.
    pub fn find() -> Result<Self, DockerError> {
        let program =
            crate::programs::k8s::find_in_path("docker", std::env::var_os("PATH").as_ref())
                .ok_or(DockerError::Missing)?;
        Ok(Self { program })
    }

    /// A `docker` command with these arguments (for callers that stream or supervise it).
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(&self.program);
        c.args(args);
        // The CLI negotiates versions itself: it talks to the daemon, not the bridge.
        if let Some(b) = api_bridge::claimed() {
            c.env("DOCKER_HOST", format!("unix://{}", b.upstream.display()));
        }
        c
    }

    pub fn program(&self) -> &std::path::Path {
        &self.program
    }

    /// Run `docker ARGS` and return its standard output, trimmed.
    ///
    /// # Errors
    /// The command could not start or exited non-zero (its stderr in the error).
    pub fn output<I, S>(&self, args: I) -> Result<String, DockerError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self
            .command(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| DockerError::Io {
                what: format!("running {}", self.program.display()),
                source,
            })?;
        if !out.status.success() {
            return Err(DockerError::Command {
                args: args
                    .iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The daemon's highest API version, e.g. `1.41`.
    ///
    /// # Errors
    /// The daemon does not answer.
    pub fn server_api_version(&self) -> Result<String, DockerError> {
        self.output(["version", "--format", "{{.Server.APIVersion}}"])
    }

    /// The id of image `tag`, if it exists.
    pub fn image_id(&self, tag: &str) -> Option<String> {
        self.output(["image", "inspect", "--format", "{{.Id}}", tag])
            .ok()
            .filter(|id| !id.is_empty())
    }

    /// A label of image `tag` (empty when absent).
    pub fn image_label(&self, tag: &str, label: &str) -> Option<String> {
        let format = format!("{{{{index .Config.Labels {label:?}}}}}");
        self.output(["image", "inspect", "--format", &format, tag])
            .ok()
            .filter(|v| !v.is_empty() && v != "<no value>")
    }

    /// Ids of containers (running or not) carrying `label=value` (any value when `None`).
    pub fn containers_labelled(&self, label: &str, value: Option<&str>) -> Vec<String> {
        let filter = match value {
            Some(v) => format!("label={label}={v}"),
            None => format!("label={label}"),
        };
        self.output(["ps", "-aq", "--no-trunc", "--filter", &filter])
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Remove containers (and their anonymous volumes) now, killing them if they run.
    pub fn remove_containers(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let mut args = vec!["rm".to_owned(), "-f".to_owned(), "-v".to_owned()];
        args.extend(ids.iter().cloned());
        if let Err(e) = self.output(&args) {
            tracing::warn!(error = %e, "removing containers");
        }
    }

    /// Dangling (untagged) image ids: what a rebuild would leave if it did not clean up.
    pub fn dangling_images(&self) -> Vec<String> {
        self.output(["images", "-q", "--no-trunc", "--filter", "dangling=true"])
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

/// The environment a supervised `docker` CLI process starts with (it runs with a cleared
/// environment): PATH, HOME and the daemon's address.
pub fn cli_env() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut env: Vec<(std::ffi::OsString, std::ffi::OsString)> = ["PATH", "HOME"]
        .into_iter()
        .filter_map(|k| Some((k.into(), std::env::var_os(k)?)))
        .collect();
    match api_bridge::claimed() {
        Some(b) => env.push((
            "DOCKER_HOST".into(),
            format!("unix://{}", b.upstream.display()).into(),
        )),
        None => {
            if let Some(h) = std::env::var_os("DOCKER_HOST") {
                env.push(("DOCKER_HOST".into(), h));
            }
        }
    }
    env
}

/// Remove the container `name` if it exists (blocking; a missing one is fine).
pub fn remove_by_name(name: &str) {
    if let Ok(docker) = Docker::find() {
        let _ = docker.output(["rm", "-f", "-v", name]);
    }
}

/// Remove every container left by runs whose label matches `run_id` (all runs when `None`).
/// Returns how many were removed.
pub fn sweep(run_id: Option<&str>) -> usize {
    let Ok(docker) = Docker::find() else {
        return 0;
    };
    let ids = docker.containers_labelled(RUN_LABEL, run_id);
    docker.remove_containers(&ids);
    ids.len()
}
