//! The reference Backup controller: the seed's final design (§11, CONTRACT LBR-1…16) as a
//! kube-rs `Controller`. One target among others; the harness runs its binary and judges it
//! by the contract, never by this code.

pub mod controller;
pub mod kernel_state;
pub mod retry;
pub mod subcommand;
