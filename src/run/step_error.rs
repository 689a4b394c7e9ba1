//! Why a step failed: the one error type every step executor and the scope's waits return.
//! Its own file, below both the steps and the scope they share.

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("the kernel: {0}")]
    Kernel(#[from] lbc_api::kernel::KernelError),
    #[error("{0}")]
    Manifest(String),
    #[error("{predicate} did not hold; last state:\n{state}")]
    NotHeld { predicate: String, state: String },
    #[error(
        "{predicate} did not hold, and nothing changed in the namespace for {secs}s with no \
         retry pending (the controller is not acting); last state:\n{state}"
    )]
    Quiet {
        predicate: String,
        secs: u64,
        state: String,
    },
    #[error("{predicate} held at {at}; state:\n{state}")]
    Held {
        predicate: String,
        at: String,
        state: String,
    },
    #[error("{0}")]
    Events(String),
    #[error("{that} stopped holding before {until}")]
    StoppedHolding { that: String, until: String },
    #[error("waiting for `when`: {0}")]
    When(Box<StepError>),
    #[error("the controller under test: {0}")]
    Controller(#[from] crate::run::controller::ControllerError),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("Job {0} has no pod to kill")]
    NoPod(String),
    #[error("Job {0} never had a ready pod (the Job controller's status.ready)")]
    NotRunning(String),
}

impl StepError {
    /// An API error, with what the step was doing.
    pub fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| Self::Kube { what, source }
    }
}
