//! Cutting the controller off while the harness has it down. A process killed with SIGKILL
//! sends nothing more, but a Pod deleted with grace 0 runs on until its kubelet kills it
//! (seen: a "crashed" controller's retried write landing 0.5 s after the crash). From the
//! moment the harness stops or kills it the proxy closes every connection it had and
//! accepts none; when it starts again, a Pod's new generation carries a token of its own
//! and a request with another (the old Pod's, still dying) is refused.

use std::sync::Arc;

use tokio::sync::watch;

/// What the proxy lets through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Gate {
    pub(super) down: bool,
    /// How many times it went down: a connection accepted in one generation is closed when
    /// the next begins.
    pub(super) generation: u64,
    /// The bearer token requests must carry (`None`: any).
    pub(super) token: Option<String>,
}

impl Gate {
    /// Whether a request with this `Authorization` header may pass.
    pub(super) fn admits(&self, authorization: Option<&str>) -> bool {
        match &self.token {
            None => true,
            Some(t) => authorization.and_then(|a| a.strip_prefix("Bearer ")) == Some(t.as_str()),
        }
    }
}

/// The controller's gate at the proxy.
#[derive(Debug, Clone)]
pub struct Fence(Arc<watch::Sender<Gate>>);

impl Default for Fence {
    fn default() -> Self {
        Self(Arc::new(watch::channel(Gate::default()).0))
    }
}

impl Fence {
    /// The controller is down: close its connections, refuse new ones.
    pub fn down(&self) {
        self.0.send_modify(|g| {
            g.down = true;
            g.generation += 1;
        });
    }

    /// It runs again; `token`: only requests carrying it pass from now on.
    pub fn up(&self, token: Option<String>) {
        self.0.send_modify(|g| {
            g.down = false;
            if token.is_some() {
                g.token = token;
            }
        });
    }

    pub(super) fn watch(&self) -> watch::Receiver<Gate> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn going_down_begins_a_generation_and_a_token_then_admits_only_its_holder() {
        let f = Fence::default();
        let rx = f.watch();
        assert!(!rx.borrow().down);
        assert!(rx.borrow().admits(None));
        f.down();
        assert_eq!((rx.borrow().down, rx.borrow().generation), (true, 1));
        f.up(Some("g2".into()));
        let g = rx.borrow().clone();
        assert_eq!((g.down, g.generation), (false, 1));
        assert!(g.admits(Some("Bearer g2")));
        assert!(!g.admits(Some("Bearer lbc-proxy")));
        assert!(!g.admits(None));
        // A process restarted without a token keeps the last one required.
        f.down();
        f.up(None);
        assert!(rx.borrow().admits(Some("Bearer g2")));
        assert_eq!(rx.borrow().generation, 2);
    }
}
