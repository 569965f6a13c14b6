//! A deterministic simulator for torchat: N instances of the protocol core
//! ([`torchat_core::Node`]) over a virtual network in virtual time.
//!
//! - **Model**: a discrete-event queue ordered by (time, sequence number); per-link latency
//!   and jitter (FIFO per connection, like TCP); links that are down (for a while, flapping,
//!   partitions that heal); nodes that crash (memory lost) and restart from the records they
//!   persisted; a dishonest member that writes forged `groupchat_echoed_message` lines.
//! - **Determinism**: every random choice, including each node's RNG, comes from ChaCha20
//!   seeded from the scenario seed; the same scenario and seed give a byte-identical report.
//! - **Invariants**: no member shows a message twice; a message is never shown `(Direct)`
//!   unless its speaker delivered that line to the member; members connected (at the end) to a
//!   direct receiver have the message; with `torchat_sync`, a message held by any member
//!   reaches every member connected to it long enough, an acknowledgement never names a member
//!   that does not hold the message, and no node stores two messages with one sequence number;
//!   member lists agree at the end. Violations are listed in the [`Report`].
//! - **Sweeps**: [`sweep`] (plain group chat against the seed's redundancy) and [`sync_sweep`]
//!   (cost per message with and without `torchat_sync`, delivery under churn).
//!
//! ```
//! let sc = torchat_sim::Scenario::from_toml(r#"
//!     name = "tiny"
//!     nodes = 3
//!     duration = 60
//!     [[say]]
//!     at = 20
//!     node = 0
//!     text = "hello"
//! "#).unwrap();
//! let report = torchat_sim::run(&sc, 1).unwrap();
//! assert!(report.violations.is_empty());
//! assert_eq!(report.message("hello").unwrap().delivered, 2);
//! ```
#![warn(missing_docs)]

pub mod explore;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod store;
pub mod sweep;
pub mod sync_sweep;

pub use report::{Display, MessageReport, Report, Totals};
pub use scenario::{Mode, Scenario};
pub use sim::{node_id, Options, Sim, WireLine};
pub use torchat_core::Trust;

/// Runs one seed of a scenario with default options.
pub fn run(sc: &Scenario, seed: u64) -> Result<Report, String> {
    Ok(Sim::new(sc, seed, Options::default())?.run())
}

/// Runs every seed of a scenario.
pub fn run_all(sc: &Scenario) -> Result<Vec<Report>, String> {
    sc.seeds.iter().map(|s| run(sc, *s)).collect()
}
