//! The controller under test as the steps and the API proxy share it: a process here or its
//! Pod in the cluster, crashed, stopped and started again by either, with the time the
//! harness had it down (which the judge excuses) and the proxy's fence kept in step.

use std::time::Duration;

use super::controller::ControllerProcess;
use crate::programs::process::ProcessError;

/// The controller under test, shared between the steps and the API proxy (whose `crash`
/// faults kill and restart it while a step waits).
#[derive(Debug)]
pub struct SharedController {
    inner: std::sync::Mutex<SharedInner>,
    me: std::sync::Weak<SharedController>,
}

/// Where the controller under test runs: a process here, or its Pod in the cluster.
#[derive(Debug)]
pub enum Runner {
    Process(ControllerProcess),
    Pod(super::controller_pod::ControllerPod),
}

/// The controller under test could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("its Pod: {0}")]
    Pod(String),
}

impl Runner {
    fn crashed(&mut self) -> Option<String> {
        match self {
            Self::Process(p) => p.crashed().map(crate::programs::process::describe_exit),
            Self::Pod(p) => p.crashed(),
        }
    }

    fn is_running(&mut self) -> bool {
        match self {
            Self::Process(p) => p.is_running(),
            Self::Pod(p) => p.is_running(),
        }
    }

    /// `token`: what a Pod's new generation authenticates with at the proxy.
    fn start_again(&mut self, token: &str) -> Result<(), ControllerError> {
        match self {
            Self::Process(p) => p.start_again().map_err(Into::into),
            Self::Pod(p) => p.start_again(token).map_err(ControllerError::Pod),
        }
    }

    /// A SIGKILL, or its Pod deleted with grace 0.
    fn kill(&mut self) {
        match self {
            Self::Process(p) => p.kill(),
            Self::Pod(p) => p.stop(Duration::ZERO),
        }
    }

    fn stop(&mut self, grace: Duration) {
        match self {
            Self::Process(p) => p.stop(grace),
            Self::Pod(p) => p.stop(grace),
        }
    }

    fn starts(&self) -> u32 {
        match self {
            Self::Process(p) => p.starts(),
            Self::Pod(p) => p.starts(),
        }
    }
}

#[derive(Debug)]
struct SharedInner {
    process: Runner,
    /// When it last started again after a stop or a kill.
    restarted_at: Option<tokio::time::Instant>,
    /// The suite is over: a pending restart must not start it again.
    closed: bool,
    /// When the harness stopped or killed it, and when it started again (`None`: still
    /// down): the judge excuses a retry's lateness by the time it overlaps these.
    down: Vec<(jiff::Timestamp, Option<jiff::Timestamp>)>,
    /// The API proxy's: nothing of it reaches the API server while it is down.
    fence: Option<crate::proxy::Fence>,
}

impl SharedInner {
    /// It is down from now; `cut`: killed, so nothing more of it may reach the API server
    /// (a graceful stop lets it finish, e.g. release its lease, and is cut once it exited).
    fn went_down(&mut self, cut: bool) {
        if cut {
            self.cut();
        }
        if self.down.last().is_none_or(|(_, up)| up.is_some()) {
            self.down.push((jiff::Timestamp::now(), None));
        }
    }

    fn cut(&self) {
        if let Some(f) = &self.fence {
            f.down();
        }
    }

    fn came_up(&mut self) {
        if let Some((_, up @ None)) = self.down.last_mut() {
            *up = Some(jiff::Timestamp::now());
        }
    }
}

impl SharedController {
    pub fn new(process: Runner) -> std::sync::Arc<Self> {
        std::sync::Arc::new_cyclic(|me| Self {
            inner: std::sync::Mutex::new(SharedInner {
                process,
                restarted_at: None,
                closed: false,
                down: Vec::new(),
                fence: None,
            }),
            me: me.clone(),
        })
    }

    /// Cut it off at `fence` whenever the harness has it down.
    pub fn fence_with(&self, fence: crate::proxy::Fence) {
        self.lock().fence = Some(fence);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SharedInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How it ended or restarted without the harness (a crash).
    pub fn crashed(&self) -> Option<String> {
        off_workers(|| self.lock().process.crashed())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&self, grace: Duration) {
        // Under the lock: a restart due meanwhile must find it stopped, not start a second
        // one beside it while it exits.
        let mut g = self.lock();
        g.went_down(false);
        g.process.stop(grace);
        g.cut();
    }

    /// Start it if it is not running (and the suite is not over).
    ///
    /// # Errors
    /// The program cannot be executed.
    pub fn start_again(&self) -> Result<(), ControllerError> {
        let mut g = self.lock();
        if g.closed || g.process.is_running() {
            return Ok(());
        }
        // Let the new instance through before it starts (its first requests must not find
        // the fence shut); a Pod's with a token of its own, so the old Pod's are refused.
        let token = match g.process {
            Runner::Pod(_) => Some(format!("lbc-proxy-{}", g.process.starts() + 1)),
            Runner::Process(_) => None,
        };
        if let Some(f) = &g.fence {
            f.up(token.clone());
        }
        g.process
            .start_again(token.as_deref().unwrap_or_default())?;
        g.restarted_at = Some(tokio::time::Instant::now());
        g.came_up();
        Ok(())
    }

    /// SIGKILL and start again.
    ///
    /// # Errors
    /// The program cannot be executed.
    pub fn restart(&self) -> Result<(), ControllerError> {
        {
            let mut g = self.lock();
            g.went_down(true);
            g.process.kill();
        }
        self.start_again()
    }

    /// When the harness had it down during the suite: (stopped, started again), an
    /// interval still open ending now.
    pub fn downtime(&self) -> Vec<(jiff::Timestamp, jiff::Timestamp)> {
        let now = jiff::Timestamp::now();
        self.lock()
            .down
            .iter()
            .map(|(from, to)| (*from, to.unwrap_or(now)))
            .collect()
    }

    /// When it last started again (after the first start).
    pub fn restarted_at(&self) -> Option<tokio::time::Instant> {
        self.lock().restarted_at
    }

    pub fn starts(&self) -> u32 {
        self.lock().process.starts()
    }

    /// Stop it for good: the suite is over.
    pub fn close(&self, grace: Duration) {
        // Closed under the lock (no restart after this), stopped outside it: a crash fault
        // that comes meanwhile must not wait for the grace on a runtime worker.
        let running = {
            let mut g = self.lock();
            g.closed = true;
            match &mut g.process {
                Runner::Process(p) => p.take_running(),
                Runner::Pod(p) => {
                    p.stop(grace);
                    None
                }
            }
        };
        if let Some(mut p) = running {
            p.stop(grace);
        }
    }
}

impl crate::proxy::ControllerHook for SharedController {
    fn crash(&self, restart_after: Option<Duration>) {
        {
            let mut g = self.lock();
            // Cut off first: from here nothing of it reaches the API server, however long
            // its Pod takes to go.
            g.went_down(true);
            off_workers(|| g.process.kill());
        }
        if let Some(d) = restart_after {
            // Weak: a restart due after the suite ended finds nothing to start.
            let me = self.me.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                // A Pod takes seconds to run again: off the runtime's workers.
                let again =
                    tokio::task::spawn_blocking(move || me.upgrade().map(|c| c.start_again()));
                if let Ok(Some(Err(e))) = again.await {
                    tracing::warn!("restarting the controller after a crash fault: {e}");
                }
            });
        }
    }
}

/// A [`crate::proxy::ControllerHook`] for a proxy started before the controller: it reaches
/// the controller once [`LateHook::set`] names it (until then a crash fault finds nothing).
#[derive(Debug, Clone, Default)]
pub struct LateHook(std::sync::Arc<std::sync::OnceLock<std::sync::Weak<SharedController>>>);

impl LateHook {
    pub fn set(&self, c: &std::sync::Arc<SharedController>) {
        let _ = self.0.set(std::sync::Arc::downgrade(c));
    }
}

impl crate::proxy::ControllerHook for LateHook {
    fn crash(&self, restart_after: Option<Duration>) {
        if let Some(c) = self.0.get().and_then(std::sync::Weak::upgrade) {
            crate::proxy::ControllerHook::crash(&*c, restart_after);
        }
    }
}

/// Run `f`, which may wait on the cluster (a Pod's deletion takes a second), without holding
/// up the tasks queued on this runtime worker (seen: the recorder's watch events stalled
/// 2.5 s behind a crash fault's wait): on a multi-threaded runtime the worker hands its
/// queue over first.
fn off_workers<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
